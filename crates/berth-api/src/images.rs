//! `/images/…`.

use std::collections::HashMap;
use std::io::Write;

use berth_image::{ChainId, ImageConfig, ImageRecord, ImageStore};

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
    let f = crate::system::filters(ctx)?;
    let dangling = f.get("dangling").and_then(|v| v.first()).map(|x| x == "true" || x == "1");
    let refs = f.get("reference").cloned().unwrap_or_default();
    let labels = f.get("label").cloned().unwrap_or_default();
    let users: Vec<String> = ctx.engine.list().into_iter().map(|c| c.image_id).collect();
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<w::ImageSummary>, ApiError> {
        let names = store.names()?;
        let mut out = vec![];
        for rec in store.list()? {
            let cfg = store.config(&rec.id)?;
            let (mut tags, digests) = tags_and_digests(names.iter().filter(|(_, id)| *id == rec.id).map(|(r, _)| r));
            if dangling.is_some_and(|d| d != tags.is_empty()) {
                continue;
            }
            if !refs.is_empty() {
                // As Docker: an image shows with the tags that match.
                tags.retain(|t| refs.iter().any(|p| reference_matches(p, t)));
                if tags.is_empty() {
                    continue;
                }
            }
            let img_labels = cfg.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
            if !labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => img_labels.get(k).is_some_and(|x| x == v),
                None => img_labels.contains_key(l),
            }) {
                continue;
            }
            out.push(summary(&store, &rec, &cfg, (tags, digests), &users, None)?);
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(out)
    })
    .await
    .map_err(blocking_err)??;
    json_response(StatusCode::OK, &out)
}

/// An image's names as Docker lists them: its tags, and its repo digests
/// (`name@sha256:…`, recorded by a pull or a push).
pub(crate) fn tags_and_digests<'a>(
    names: impl Iterator<Item = &'a berth_image::Reference>,
) -> (Vec<String>, Vec<String>) {
    let (digests, tags): (Vec<&berth_image::Reference>, Vec<&berth_image::Reference>) =
        names.partition(|r| r.digest().is_some());
    (tags.iter().map(|r| r.familiar()).collect(), digests.iter().map(|r| r.familiar()).collect())
}

/// How many images use each layer, for `SharedSize`.
pub(crate) fn layer_users(store: &ImageStore) -> Result<HashMap<ChainId, usize>, ApiError> {
    let mut n = HashMap::new();
    for rec in store.list()? {
        if let Some(top) = &rec.top_layer {
            for l in store.layers.chain(top)? {
                *n.entry(l.chain_id).or_insert(0) += 1;
            }
        }
    }
    Ok(n)
}

/// One image's row. `SharedSize` (the bytes of its layers that other
/// images use too) is -1 unless `layer_users` is given, as in Docker.
pub(crate) fn summary(
    store: &ImageStore,
    rec: &ImageRecord,
    cfg: &ImageConfig,
    (tags, digests): (Vec<String>, Vec<String>),
    users: &[String],
    layer_users: Option<&HashMap<ChainId, usize>>,
) -> Result<w::ImageSummary, ApiError> {
    let chain = match &rec.top_layer {
        Some(top) => store.layers.chain(top)?,
        None => vec![],
    };
    let size: u64 = chain.iter().map(|l| l.size).sum();
    let shared = layer_users.map_or(-1, |n| {
        chain.iter().filter(|l| n.get(&l.chain_id).is_some_and(|c| *c > 1)).map(|l| l.size).sum::<u64>() as i64
    });
    let id = rec.id.to_string();
    Ok(w::ImageSummary {
        containers: users.iter().filter(|u| **u == id).count() as i64,
        id,
        parent_id: rec.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
        repo_tags: tags,
        repo_digests: digests,
        created: created_secs(cfg.created.as_deref()),
        size: size as i64,
        shared_size: shared,
        labels: cfg.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default().into_iter().collect(),
        // A multi-platform index's manifests and the image's own
        // descriptor: berth stores single-platform images by config id,
        // with no manifest kept to describe.
        manifests: None,
        descriptor: None,
    })
}

/// Docker's `reference` filter: a glob (`*`, `?`) over `repo` or
/// `repo:tag`, where a pattern without a tag matches any tag.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let (repo, _) = tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')).unwrap_or((tag, ""));
    glob(pattern.as_bytes(), tag.as_bytes()) || glob(pattern.as_bytes(), repo.as_bytes())
}

/// Shell-style matching of `*` and `?`; `*` does not cross a `/`, as in
/// Go's path.Match.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (s.first().is_some_and(|c| *c != b'/') && glob(p, &s[1..])),
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

pub async fn inspect(ctx: &Ctx, name: &str) -> Reply {
    let store = ctx.engine.images.clone();
    let name = name.to_owned();
    let v = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let id = store.resolve(&name)?;
        let cfg = store.config(&id)?;
        let rec = store.get(&id)?.ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))?;
        let (tags, digests) = tags_and_digests(store.names_of(&id)?.iter());
        let chain = match &rec.top_layer {
            Some(top) => store.layers.chain(top)?,
            None => vec![],
        };
        let size: u64 = chain.iter().map(|l| l.size).sum();
        // overlay2's directories, as Docker shows an image's: the top
        // layer's, and the diffs of those below it.
        let graph = chain.first().map(|top| {
            let dir = store.layers.overlay_dir().join(&top.cache_id);
            let path = |p: std::path::PathBuf| p.display().to_string();
            let mut data = json!({
                "MergedDir": path(dir.join("merged")),
                "UpperDir": path(dir.join("diff")),
                "WorkDir": path(dir.join("work")),
            });
            if chain.len() > 1 {
                let lowers: Vec<String> = chain[1..].iter().map(|l| path(store.layers.diff_dir(l))).collect();
                data["LowerDir"] = json!(lowers.join(":"));
            }
            data
        });
        let diff_ids: Vec<String> = cfg.rootfs.diff_ids.iter().map(ToString::to_string).collect();
        Ok(json!({
            "Id": id.to_string(),
            "RepoTags": tags,
            "RepoDigests": digests,
            "Parent": rec.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
            "Comment": cfg.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
            "Created": cfg.created,
            "DockerVersion": "",
            "Author": cfg.author.clone().unwrap_or_default(),
            "Config": cfg.config,
            "Architecture": cfg.architecture,
            "Variant": cfg.variant,
            "Os": cfg.os,
            "Size": size,
            "GraphDriver": {"Name": "overlay2", "Data": graph},
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
pub(crate) async fn spool(ctx: &Ctx, req: Request<Incoming>) -> Result<std::path::PathBuf, ApiError> {
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
    // As moby's postImagesLoad: the answer is a stream, so a load that
    // fails is a 200 whose stream ends in the error.
    let loaded = match r? {
        Ok(l) => l,
        Err(e) => {
            let msg = e.to_string();
            tracing::debug!("load: {msg}");
            let mut out =
                serde_json::to_vec(&json!({"errorDetail": {"message": msg}, "error": msg})).unwrap_or_default();
            out.push(b'\n');
            return Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/json")
                .body(body::full(Bytes::from(out)))
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        }
    };
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

/// `POST /images/create`: `fromImage` pulls from a registry, `fromSrc`
/// imports a root file system tar.
pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    if ctx.q("fromImage").is_some_and(|s| !s.is_empty()) {
        return crate::registry::pull(ctx, req).await;
    }
    let src = ctx.q("fromSrc").unwrap_or("");
    if src != "-" {
        return Err(ApiError::bad("fromSrc must be \"-\": importing from a URL is not supported"));
    }
    let tag = ctx.repo_tag()?;
    let changes = ctx.all("changes");
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

/// Which container uses an image, for delete and prune.
fn users(ctx: &Ctx) -> Vec<(String, String, bool)> {
    ctx.engine.list().into_iter().map(|c| (c.image_id.clone(), c.id.clone(), c.state.status.is_running())).collect()
}

fn user_of(users: &[(String, String, bool)], id: &berth_image::ImageId) -> Option<berth_image::ContainerUse> {
    let id = id.to_string();
    users
        .iter()
        .find(|(img, _, _)| *img == id)
        .map(|(_, c, running)| berth_image::ContainerUse { id: c.clone(), running: *running })
}

fn deleted_json(d: &[berth_image::Deleted]) -> Vec<serde_json::Value> {
    d.iter()
        .map(|x| match x {
            berth_image::Deleted::Untagged(n) => json!({"Untagged": n}),
            berth_image::Deleted::Deleted(id) => json!({"Deleted": id.to_string()}),
        })
        .collect()
}

/// `GET /images/{name}/history`: newest first, with each layer's size.
pub async fn history(ctx: &Ctx, name: &str) -> Reply {
    let store = ctx.engine.images.clone();
    let name = name.to_owned();
    let v = tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, ApiError> {
        let id = store.resolve(&name)?;
        let cfg = store.config(&id)?;
        let rec = store.get(&id)?.ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))?;
        let mut sizes: Vec<u64> = match &rec.top_layer {
            Some(top) => store.layers.chain(top)?.iter().map(|l| l.size).collect(),
            None => vec![],
        };
        sizes.reverse();
        let mut sizes = sizes.into_iter();
        let (tags, _) = tags_and_digests(store.names_of(&id)?.iter());
        let mut out: Vec<serde_json::Value> = cfg
            .history
            .iter()
            .map(|h| {
                let size = if h.empty_layer { 0 } else { sizes.next().unwrap_or(0) };
                json!({
                    "Id": "<missing>",
                    "Created": created_secs(h.created.as_deref()),
                    "CreatedBy": h.created_by.clone().unwrap_or_default(),
                    "Tags": null,
                    "Size": size,
                    "Comment": h.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        out.reverse();
        if let Some(top) = out.first_mut() {
            top["Id"] = json!(id.to_string());
            top["Tags"] = json!(tags);
        }
        Ok(out)
    })
    .await
    .map_err(blocking_err)??;
    json_response(StatusCode::OK, &v)
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub async fn tag(ctx: &Ctx, name: &str) -> Reply {
    let r = ctx.repo_tag()?.ok_or_else(|| ApiError::bad("repository name must have at least one component"))?;
    let store = ctx.engine.images.clone();
    let name = name.to_owned();
    let r2 = r.clone();
    let id = tokio::task::spawn_blocking(move || -> Result<berth_image::ImageId, ApiError> {
        let id = store.resolve(&name)?;
        store.tag(&r2, &id)?;
        Ok(id)
    })
    .await
    .map_err(blocking_err)??;
    let attrs = [("name".to_owned(), r.familiar())].into_iter().collect();
    ctx.engine.events.publish("image", "tag", &id.to_string(), attrs);
    crate::status_only(StatusCode::CREATED)
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn delete(ctx: &Ctx, name: &str) -> Reply {
    let store = ctx.engine.images.clone();
    let users = users(ctx);
    let (name, force, prune) = (name.to_owned(), ctx.flag("force"), !ctx.flag("noprune"));
    let done = tokio::task::spawn_blocking(move || -> Result<Vec<berth_image::Deleted>, ApiError> {
        // delete already drops the layers no image uses any more.
        let mut parent = store.resolve(&name).ok().and_then(|id| store.get(&id).ok().flatten()).and_then(|r| r.parent);
        let mut d = store.delete(&name, force, |id| user_of(&users, id))?;
        let gone = d.iter().any(|x| matches!(x, berth_image::Deleted::Deleted(_)));
        if prune && gone {
            // Docker's default: the parents left without a name, a child
            // or a container go with their last child.
            while let Some(p) = parent.take() {
                let Some(rec) = store.get(&p)? else { break };
                let orphan = store.names_of(&p)?.is_empty() && store.children(&p)?.is_empty();
                if !orphan || user_of(&users, &p).is_some() {
                    break;
                }
                d.extend(store.delete(&p.to_string(), false, |id| user_of(&users, id))?);
                parent = rec.parent;
            }
            store.prune_blobs()?;
        }
        Ok(d)
    })
    .await
    .map_err(blocking_err)??;
    for d in &done {
        let (action, id) = match d {
            berth_image::Deleted::Untagged(n) => ("untag", n.clone()),
            berth_image::Deleted::Deleted(id) => ("delete", id.to_string()),
        };
        ctx.engine.events.publish("image", action, &id, Default::default());
    }
    json_response(StatusCode::OK, &deleted_json(&done))
}

/// `POST /images/prune`: dangling images no container uses; with
/// `dangling=false`, every image no container uses.
pub async fn prune(ctx: &Ctx) -> Reply {
    let f = crate::system::filters(ctx)?;
    let all = f.get("dangling").is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    let store = ctx.engine.images.clone();
    let users = users(ctx);
    let (deleted, reclaimed) =
        tokio::task::spawn_blocking(move || -> Result<(Vec<berth_image::Deleted>, u64), ApiError> {
            let before: u64 = store.layers.list()?.iter().map(|l| l.size).sum();
            let names = store.names()?;
            let mut out = vec![];
            // Leaves first: an image others were made from goes once they
            // have gone (Docker prunes parents with their last child).
            loop {
                let mut removed = false;
                for rec in store.list()? {
                    // A repo digest alone leaves an image dangling, as in Docker.
                    let named = names.iter().any(|(r, id)| *id == rec.id && r.digest().is_none());
                    if (named && !all) || user_of(&users, &rec.id).is_some() || !store.children(&rec.id)?.is_empty() {
                        continue;
                    }
                    out.extend(store.delete(&rec.id.to_string(), true, |id| user_of(&users, id))?);
                    removed = true;
                }
                if !removed {
                    break;
                }
            }
            store.prune_blobs()?;
            let after: u64 = store.layers.list()?.iter().map(|l| l.size).sum();
            Ok((out, before.saturating_sub(after)))
        })
        .await
        .map_err(blocking_err)??;
    json_response(StatusCode::OK, &json!({"ImagesDeleted": deleted_json(&deleted), "SpaceReclaimed": reclaimed}))
}

/// `GET /images/{name}/get` and `GET /images/get?names=…`: `docker save`.
pub async fn get(ctx: &Ctx, names: Vec<String>) -> Reply {
    if names.is_empty() {
        return Err(ApiError::bad("no images named"));
    }
    let store = ctx.engine.images.clone();
    {
        let s = store.clone();
        let n = names.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            for name in &n {
                s.resolve(name)?;
            }
            Ok(())
        })
        .await
        .map_err(blocking_err)??;
    }
    let (tx, body) = body::channel();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // A failure midway leaves the client with a tar cut short.
        let _ = berth_image::save::save(&store, &refs, body::ChannelWriter::new(tx));
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:1"));
        assert!(!reference_matches("busybox:1", "busybox:latest"));
        assert!(!reference_matches("*", "library/busybox:latest"));
        assert!(reference_matches("*/busybox", "library/busybox:latest"));
    }
}
