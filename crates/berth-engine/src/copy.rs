//! `docker cp`: a container's files read and written through the archive
//! API. A running container's root is its live mount; a stopped one's is
//! mounted for the call alone, in a thread with a private mount namespace.
//! Paths resolve inside the root from fds (berth-image's copy module), so
//! the container's symlinks cannot point a copy at the host.

use std::io::{Read, Write};
use std::path::Path;

use berth_image::copy::PathStat;

use crate::containers::is_mountpoint;
use crate::error::{Error, Result};
use crate::model::Container;
use crate::Engine;

impl Engine {
    /// Runs `f` on the container's merged root, in a blocking thread.
    async fn with_root<T: Send + 'static>(
        &self,
        c: &Container,
        writable: bool,
        f: impl FnOnce(&Path) -> berth_image::Result<T> + Send + 'static,
    ) -> Result<T> {
        let rw = c.rw_layer.clone().ok_or_else(|| Error::Internal(format!("container {} has no layer", c.id)))?;
        let images = self.images.clone();
        let r = tokio::task::spawn_blocking(move || {
            let m = images.layers.mount_of(&rw)?;
            if is_mountpoint(&m.target) {
                f(&m.target)
            } else {
                berth_image::rootfs::with_view(&images, &rw, writable, f)
            }
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(r?)
    }

    /// `HEAD /containers/{id}/archive`.
    pub async fn archive_stat(&self, key: &str, path: &str) -> Result<PathStat> {
        let path = path.to_owned();
        self.with_root(&self.inspect(key)?, false, move |root| berth_image::copy::stat(root, &path)).await
    }

    /// `GET /containers/{id}/archive`: `path` as a tar into `w`.
    pub async fn archive_get(&self, key: &str, path: &str, w: impl Write + Send + 'static) -> Result<PathStat> {
        let path = path.to_owned();
        self.with_root(&self.inspect(key)?, false, move |root| berth_image::copy::archive(root, &path, w)).await
    }

    /// `PUT /containers/{id}/archive`: the tar in `r` extracted into the
    /// directory `path`.
    pub async fn archive_put(
        &self,
        key: &str,
        path: &str,
        r: impl Read + Send + 'static,
        keep_kinds: bool,
    ) -> Result<()> {
        let c = self.inspect(key)?;
        if c.host.readonly_rootfs {
            return Err(Error::Invalid("container rootfs is marked read-only".into()));
        }
        let path = path.to_owned();
        self.with_root(&c, true, move |root| berth_image::copy::extract(root, &path, r, keep_kinds).map(|_| ())).await
    }
}
