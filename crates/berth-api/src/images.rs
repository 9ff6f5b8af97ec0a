//! `/images/…`.

use std::io::Write;

use berth_api_types as w;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::{body, json_response, ApiError, Ctx, Reply};

fn blocking_err(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn created_secs(t: Option<&str>) -> i64 {
    t.and_then(berth_engine::logs::rfc3339_nanos).map_or(0, |n| n / 1_000_000_000)
}

pub async fn list(ctx: &Ctx) -> Reply {
    let store = ctx.engine.images.clone();
    let dangling_only = crate::system::filters(ctx)?.get("dangling").is_some_and(|v| v.iter().any(|x| x == "true"));
    let users: Vec<String> = ctx.engine.list().into_iter().map(|c| c.image_id).collect();
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<w::ImageSummary>, ApiError> {
        let names = store.names()?;
        let mut out = vec![];
        for rec in store.list()? {
            let cfg = store.config(&rec.id)?;
            let tags: Vec<String> = names.iter().filter(|(_, id)| *id == rec.id).map(|(r, _)| r.familiar()).collect();
            if dangling_only && !tags.is_empty() {
                continue;
            }
            let size: u64 = match &rec.top_layer {
                Some(top) => store.layers.chain(top)?.iter().map(|l| l.size).sum(),
                None => 0,
            };
            let id = rec.id.to_string();
            out.push(w::ImageSummary {
                containers: users.iter().filter(|u| **u == id).count() as i64,
                id,
                parent_id: String::new(),
                repo_tags: tags,
                repo_digests: vec![],
                created: created_secs(cfg.created.as_deref()),
                size: size as i64,
                shared_size: -1,
                labels: cfg.config.and_then(|c| c.labels).unwrap_or_default(),
            });
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(out)
    })
    .await
    .map_err(blocking_err)??;
    json_response(StatusCode::OK, &out)
}

pub async fn inspect(ctx: &Ctx, name: &str) -> Reply {
    let store = ctx.engine.images.clone();
    let name = name.to_owned();
    let v = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let id = store.resolve(&name)?;
        let cfg = store.config(&id)?;
        let rec = store.get(&id)?.ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))?;
        let tags: Vec<String> = store.names_of(&id)?.iter().map(|r| r.familiar()).collect();
        let size: u64 = match &rec.top_layer {
            Some(top) => store.layers.chain(top)?.iter().map(|l| l.size).sum(),
            None => 0,
        };
        let diff_ids: Vec<String> = cfg.rootfs.diff_ids.iter().map(ToString::to_string).collect();
        Ok(json!({
            "Id": id.to_string(),
            "RepoTags": tags,
            "RepoDigests": [],
            "Parent": "",
            "Comment": cfg.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
            "Created": cfg.created,
            "DockerVersion": "",
            "Author": cfg.author.clone().unwrap_or_default(),
            "Config": cfg.config,
            "Architecture": cfg.architecture,
            "Variant": cfg.variant,
            "Os": cfg.os,
            "Size": size,
            "GraphDriver": {"Name": "overlay2", "Data": null},
            "RootFS": {"Type": cfg.rootfs.typ, "Layers": diff_ids},
            "Metadata": {"LastTagTime": rec.added},
        }))
    })
    .await
    .map_err(blocking_err)??;
    json_response(StatusCode::OK, &v)
}

/// Spool a request body to a file under the store's tmp/ (archives are
/// read in place, not as a stream).
async fn spool(ctx: &Ctx, req: Request<Incoming>) -> Result<std::path::PathBuf, ApiError> {
    let dir = ctx.engine.cfg.data_root.join("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let path = dir.join(format!("upload-{}.tar", berth_engine::names::new_id()));
    let mut f =
        std::fs::File::create(&path).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(ApiError::bad(format!("reading the request body: {e}")));
            }
        };
        if let Ok(data) = frame.into_data() {
            if let Err(e) = f.write_all(&data) {
                let _ = std::fs::remove_file(&path);
                return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("spool upload: {e}")));
            }
        }
    }
    Ok(path)
}

pub async fn load(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let path = spool(ctx, req).await?;
    let store = ctx.engine.images.clone();
    let p = path.clone();
    let r = tokio::task::spawn_blocking(move || berth_image::archive::load(&store, &p)).await.map_err(blocking_err);
    let _ = std::fs::remove_file(&path);
    let loaded = r??;
    let mut out = Vec::new();
    for img in loaded {
        let lines: Vec<String> = if img.names.is_empty() {
            vec![format!("Loaded image ID: {}\n", img.id)]
        } else {
            img.names.iter().map(|n| format!("Loaded image: {}\n", n.familiar())).collect()
        };
        for l in lines {
            ctx.engine.events.publish("image", "load", &img.id.to_string(), Default::default());
            out.extend(serde_json::to_vec(&json!({"stream": l})).unwrap_or_default());
            out.push(b'\n');
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body::full(Bytes::from(out)))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /images/create`: `fromSrc` imports a root file system tar;
/// pulling (`fromImage`) needs the registry client, which berth does not
/// have yet.
pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    if let Some(img) = ctx.q("fromImage").filter(|s| !s.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("pulling {img} needs a registry client, which this berth does not have yet; load the image with `docker load` instead"),
        ));
    }
    let src = ctx.q("fromSrc").unwrap_or("");
    if src != "-" {
        return Err(ApiError::bad("fromSrc must be \"-\": importing from a URL is not supported"));
    }
    let tag = match (ctx.q("repo").filter(|s| !s.is_empty()), ctx.q("tag").filter(|s| !s.is_empty())) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.to_owned()),
        _ => None,
    };
    let tag = tag
        .map(|t| berth_image::Reference::parse(&t).map(|r| r.with_default_tag()))
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let changes: Vec<String> =
        ctx.query.iter().filter(|(k, _)| k.as_str() == "changes").map(|(_, v)| v.clone()).collect();
    let message = ctx.q("message").map(str::to_owned);
    let path = spool(ctx, req).await?;
    let store = ctx.engine.images.clone();
    let p = path.clone();
    let r = tokio::task::spawn_blocking(move || {
        let f =
            std::fs::File::open(&p).map_err(|e| berth_image::Error::Io { what: "open upload".into(), source: e })?;
        let opts = berth_image::rootfs::ImportOptions { changes, message, source: "-".into(), tag };
        berth_image::rootfs::import(&store, f, &opts)
    })
    .await
    .map_err(blocking_err);
    let _ = std::fs::remove_file(&path);
    let rec = r??;
    let line = json!({"status": rec.id.to_string()});
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body::full(format!("{line}\n")))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
