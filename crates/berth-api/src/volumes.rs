//! `/volumes/…`.

use std::sync::Arc;

use berth_api_types as w;
use berth_engine::volumes::{CreateVolume, Volume};
use berth_engine::Engine;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::{json_response, read_json, status_only, ApiError, Ctx, Reply};

/// A volume on the wire; with its size and how many containers mount it
/// when `users` is given.
pub fn wire(engine: &Engine, v: &Volume, users: Option<&std::collections::BTreeMap<String, Vec<String>>>) -> w::Volume {
    // Every field named, no `..`: a field the spec grows is a build error
    // here until it is filled.
    w::Volume {
        name: v.name.clone(),
        driver: v.driver.clone(),
        mountpoint: v.mountpoint.display().to_string(),
        created_at: Some(v.created_at.clone()),
        status: None,
        labels: v.labels.clone().into_iter().collect(),
        scope: Some(w::VolumeScopeEnum::LOCAL),
        cluster_volume: None,
        options: v.options.clone().into_iter().collect(),
        usage_data: users.map(|u| w::UsageData {
            size: engine.volumes.size(&v.name).map_or(-1, |s| s as i64),
            ref_count: u.get(&v.name).map_or(0, |ids| ids.len() as i64),
        }),
    }
}

/// Run blocking volume work (directory walks, removals) off the runtime.
async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let e = engine.clone();
    tokio::task::spawn_blocking(move || f(&e))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn label_ok(v: &Volume, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
        None => v.labels.contains_key(want),
    }
}

fn truth(k: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "true" | "True" => Ok(true),
        "0" | "false" | "False" => Ok(false),
        _ => Err(ApiError::bad(format!("invalid filter '{k}={v}'"))),
    }
}

/// `GET /volumes`: filters `dangling`, `driver`, `label`, `name`.
pub async fn list(ctx: &Ctx) -> Reply {
    let f = crate::system::filters(ctx)?;
    if let Some(k) = f.keys().find(|k| !["dangling", "driver", "label", "name"].contains(&k.as_str())) {
        return Err(ApiError::bad(format!("invalid filter '{k}'")));
    }
    let dangling = match f.get("dangling").and_then(|v| v.first()) {
        Some(v) => Some(truth("dangling", v)?),
        None => None,
    };
    let rows = blocking(&ctx.engine, move |e| {
        let users = e.volume_users();
        let mut rows = vec![];
        for v in e.volumes.list().map_err(ApiError::from)? {
            let any = |k: &str, ok: &dyn Fn(&str) -> bool| f.get(k).is_none_or(|vs| vs.iter().any(|x| ok(x)));
            let keep = any("name", &|x| v.name.contains(x))
                && any("driver", &|x| v.driver == x)
                && f.get("label").is_none_or(|ls| ls.iter().all(|l| label_ok(&v, l)))
                && dangling.is_none_or(|d| d != users.contains_key(&v.name));
            // Without UsageData, as Docker lists volumes: only
            // /system/df walks them for their sizes.
            if keep {
                rows.push(wire(e, &v, None));
            }
        }
        Ok(rows)
    })
    .await?;
    json_response(StatusCode::OK, &w::VolumeListResponse { volumes: Some(rows), warnings: Some(vec![]) })
}

pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let body: Option<w::VolumeCreateRequest> = read_json(req).await?;
    let w::VolumeCreateRequest { name, driver, driver_opts, labels, cluster_volume_spec } = body.unwrap_or_default();
    if cluster_volume_spec.is_some() {
        return Err(ApiError::bad(
            "ClusterVolumeSpec: cluster volumes belong to a swarm, and this node is not part of a swarm",
        ));
    }
    let r = CreateVolume {
        name: name.unwrap_or_default(),
        driver: driver.unwrap_or_default(),
        labels: labels.unwrap_or_default().into_iter().collect(),
        options: driver_opts.unwrap_or_default().into_iter().collect(),
    };
    let v = blocking(&ctx.engine, move |e| {
        let v = e.create_volume(r)?;
        Ok(wire(e, &v, None))
    })
    .await?;
    json_response(StatusCode::CREATED, &v)
}

pub async fn inspect(ctx: &Ctx, name: &str) -> Reply {
    let v = ctx.engine.volumes.get(name)?;
    json_response(StatusCode::OK, &wire(&ctx.engine, &v, None))
}

pub async fn remove(ctx: &Ctx, name: &str) -> Reply {
    let (name, force) = (name.to_owned(), ctx.flag("force"));
    blocking(&ctx.engine, move |e| e.remove_volume(&name, force).map_err(ApiError::from)).await?;
    status_only(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune`: filters `label`, `label!` and (API 1.42 on)
/// `all`; before 1.42 every unused volume goes, as Docker did then.
pub async fn prune(ctx: &Ctx) -> Reply {
    let f = crate::system::filters(ctx)?;
    if let Some(k) = f.keys().find(|k| !["label", "label!", "all"].contains(&k.as_str())) {
        return Err(ApiError::bad(format!("invalid filter '{k}'")));
    }
    let mut all = crate::version_cmp(&ctx.version, "1.42").is_lt();
    if let Some(v) = f.get("all").and_then(|v| v.first()) {
        all = truth("all", v)?;
    }
    let (with, without) = (f.get("label").cloned().unwrap_or_default(), f.get("label!").cloned().unwrap_or_default());
    let (deleted, freed) = blocking(&ctx.engine, move |e| {
        let keep = |v: &Volume| with.iter().all(|l| label_ok(v, l)) && !without.iter().any(|l| label_ok(v, l));
        e.prune_volumes(all, keep).map_err(ApiError::from)
    })
    .await?;
    json_response(
        StatusCode::OK,
        &w::VolumePruneResponse { volumes_deleted: Some(deleted), space_reclaimed: Some(freed as i64) },
    )
}
