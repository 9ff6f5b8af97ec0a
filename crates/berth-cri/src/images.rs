//! `runtime.v1.ImageService`: the image store the Docker API uses.

use std::sync::Arc;

use berth_engine::Engine;
use berth_image::{ImageId, ImageStore};
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use crate::status;

pub(crate) struct Images {
    pub(crate) engine: Arc<Engine>,
}

/// Runs `f` on the image store on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: Arc<ImageStore>,
    f: impl FnOnce(&ImageStore) -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| Status::internal(e.to_string()))?
}

/// An image as CRI shows it: its full names, its size (all its layers'),
/// and the user it runs as (a number, or a name).
fn image(store: &ImageStore, id: &ImageId) -> Result<Image, Status> {
    let names = store.names_of(id).map_err(status)?;
    let (digests, tags): (Vec<_>, Vec<_>) = names.iter().partition(|r| r.digest().is_some());
    let rec = store.get(id).map_err(status)?.ok_or_else(|| Status::not_found(format!("image {id} not found")))?;
    let size = match &rec.top_layer {
        Some(top) => store.layers.chain(top).map_err(status)?.iter().map(|l| l.size).sum(),
        None => 0,
    };
    let user = store.config(id).map_err(status)?.config.and_then(|c| c.user).unwrap_or_default();
    let user = user.split(':').next().unwrap_or("").to_owned();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        Err(_) if user.is_empty() => (None, String::new()),
        Err(_) => (None, user),
    };
    Ok(Image {
        id: id.to_string(),
        repo_tags: tags.iter().map(|r| r.to_string()).collect(),
        repo_digests: digests.iter().map(|r| r.to_string()).collect(),
        size,
        uid,
        username,
        spec: Some(ImageSpec { image: id.to_string(), ..Default::default() }),
        pinned: false,
    })
}

fn spec_of(s: Option<ImageSpec>) -> Result<String, Status> {
    match s.map(|s| s.image) {
        Some(i) if !i.is_empty() => Ok(i),
        _ => Err(Status::invalid_argument("ImageSpec: no image given")),
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(&self, req: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let want = req.into_inner().filter.and_then(|f| f.image).map(|s| s.image).filter(|s| !s.is_empty());
        let images = blocking(self.engine.images.clone(), move |store| {
            let ids: Vec<ImageId> = match want {
                // A filter names one image: it, or nothing.
                Some(w) => store.resolve(&w).into_iter().collect(),
                None => store.list().map_err(status)?.into_iter().map(|r| r.id).collect(),
            };
            ids.iter().map(|id| image(store, id)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn image_status(&self, req: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        let name = spec_of(req.into_inner().image)?;
        let image = blocking(self.engine.images.clone(), move |store| match store.resolve(&name) {
            // Not here is no error: an empty answer (the CRI's contract).
            Err(_) => Ok(None),
            Ok(id) => image(store, &id).map(Some),
        })
        .await?;
        Ok(Response::new(ImageStatusResponse { image, ..Default::default() }))
    }

    async fn pull_image(&self, req: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        let r = req.into_inner();
        let name = spec_of(r.image)?;
        let creds = r.auth.map(|a| berth_registry::Credentials {
            username: a.username,
            password: a.password,
            server_address: a.server_address,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
            auth: a.auth,
            ..Default::default()
        });
        let (_, pulled) =
            self.engine.pull(&name, "", creds, berth_registry::progress::Reporter(None)).await.map_err(status)?;
        Ok(Response::new(PullImageResponse { image_ref: pulled.id.to_string() }))
    }

    async fn remove_image(&self, req: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let name = spec_of(req.into_inner().image)?;
        let users: Vec<(String, String, bool)> = self
            .engine
            .list()
            .into_iter()
            .map(|c| (c.image_id.clone(), c.id.clone(), c.state.status.is_running()))
            .collect();
        blocking(self.engine.images.clone(), move |store| {
            let Ok(id) = store.resolve(&name) else {
                // Gone already: done (the CRI's contract).
                return Ok(());
            };
            let in_use = |i: &ImageId| {
                let i = i.to_string();
                users
                    .iter()
                    .find(|(img, _, _)| *img == i)
                    .map(|(_, c, running)| berth_image::ContainerUse { id: c.clone(), running: *running })
            };
            // Every name of the image goes, then the image.
            store.delete(&id.to_string(), true, in_use).map_err(status)?;
            store.prune_blobs().map_err(status)?;
            Ok(())
        })
        .await?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Result<Response<ImageFsInfoResponse>, Status> {
        let dir = self.engine.images.layers.overlay_dir().to_owned();
        let usage = blocking(self.engine.images.clone(), move |store| {
            let (mut bytes, mut inodes) = (0u64, 0u64);
            for l in store.layers.list().map_err(status)? {
                bytes += l.size;
                inodes += crate::stats::usage(&store.layers.diff_dir(&l)).1;
            }
            Ok((bytes, inodes))
        })
        .await?;
        let fs = FilesystemUsage {
            timestamp: berth_core::time::now_nanos(),
            fs_id: Some(FilesystemIdentifier { mountpoint: dir.display().to_string() }),
            used_bytes: Some(UInt64Value { value: usage.0 }),
            inodes_used: Some(UInt64Value { value: usage.1 }),
        };
        Ok(Response::new(ImageFsInfoResponse { image_filesystems: vec![fs], container_filesystems: vec![] }))
    }
}
