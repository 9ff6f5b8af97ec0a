//! `/_ping`, `/version`, `/info`, `/events`.

use std::path::Path;

use berth_api_types as w;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::{body, json_response, ApiError, Ctx, Reply};

fn server_headers(b: hyper::http::response::Builder) -> hyper::http::response::Builder {
    b.header("Api-Version", w::API_VERSION)
        .header("Ostype", "linux")
        .header("Server", format!("berth/{} (linux)", env!("CARGO_PKG_VERSION")))
        .header("Docker-Experimental", "false")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
}

pub fn ping(method: &str) -> Reply {
    let b =
        server_headers(Response::builder().status(StatusCode::OK)).header("Content-Type", "text/plain; charset=utf-8");
    let body = if method == "HEAD" { body::empty() } else { body::full("OK") };
    b.body(body).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned()
}

pub fn version(_ctx: &Ctx) -> Reply {
    let v = env!("CARGO_PKG_VERSION");
    json_response(
        StatusCode::OK,
        &json!({
            "Platform": {"Name": "berth"},
            "Components": [{"Name": "Engine", "Version": v, "Details": {"ApiVersion": w::API_VERSION, "MinAPIVersion": w::MIN_API_VERSION, "Os": "linux", "Arch": berth_image::config::host_architecture(), "KernelVersion": kernel(), "GitCommit": "", "GoVersion": "", "BuildTime": "", "Experimental": "false"}}],
            "Version": v,
            "ApiVersion": w::API_VERSION,
            "MinAPIVersion": w::MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": berth_image::config::host_architecture(),
            "KernelVersion": kernel(),
            "BuildTime": "",
        }),
    )
}

/// The runtimes a container may name, with their binaries.
fn runtimes(e: &berth_engine::Engine) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("berth".into(), json!({"path": "berth-shim"}));
    m.insert("runc".into(), json!({"path": "runc"}));
    for (name, path) in &e.cfg.runtimes {
        m.insert(name.clone(), json!({"path": path.display().to_string()}));
    }
    serde_json::Value::Object(m)
}

pub fn info(ctx: &Ctx) -> Reply {
    let e = &ctx.engine;
    let list = e.list();
    let count = |f: fn(&berth_engine::model::Status) -> bool| list.iter().filter(|c| f(&c.state.status)).count();
    let images = e.images.list().map(|l| l.len()).unwrap_or(0);
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<i64>().ok()))
        .unwrap_or(0)
        * 1024;
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned())))
        .unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "ID": "",
            "Containers": list.len(),
            "ContainersRunning": count(|s| *s == berth_engine::model::Status::Running),
            "ContainersPaused": count(|s| *s == berth_engine::model::Status::Paused),
            "ContainersStopped": count(|s| !s.is_running()),
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", ""], ["Supports d_type", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
            "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true,
            "CPUShares": true, "CPUSet": true, "PidsLimit": true, "OomKillDisable": true,
            "IPv4Forwarding": true, "Debug": false,
            "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            "NGoroutines": 0,
            "SystemTime": berth_core::time::now_rfc3339(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version,
            "KernelVersion": kernel(),
            "OperatingSystem": os,
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": ncpu,
            "MemTotal": mem,
            "IndexServerAddress": "",
            "DockerRootDir": e.cfg.data_root.display().to_string(),
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": runtimes(e),
            "DefaultRuntime": e.cfg.runtime_name,
            "LiveRestoreEnabled": true,
            // As a dockerd that never joined a swarm.
            "Swarm": {
                "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                "ControlAvailable": false, "Error": "", "RemoteManagers": null,
            },
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
            "NEventsListener": e.events.listeners(),
            "KernelMemory": Path::new("/sys/fs/cgroup/memory/memory.kmem.limit_in_bytes").exists(),
            "KernelMemoryTCP": Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists(),
            "BridgeNfIptables": sysctl_on("/proc/sys/net/bridge/bridge-nf-call-iptables"),
            "BridgeNfIp6tables": sysctl_on("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
            "HttpProxy": proxy_env("HTTP_PROXY"),
            "HttpsProxy": proxy_env("HTTPS_PROXY"),
            "NoProxy": proxy_env("NO_PROXY"),
            "GenericResources": null,
            // No registry client yet (issue 21); Docker's CLI prints none.
            "RegistryConfig": null,
            // berth has no containerd, and its runtime and init are its own.
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
        }),
    )
}

/// Whether a boolean sysctl is on.
fn sysctl_on(path: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1")
}

/// A proxy setting of berthd's environment (upper or lower case), with a
/// password in it masked as Docker masks it.
fn proxy_env(name: &str) -> String {
    let v = std::env::var(name).or_else(|_| std::env::var(name.to_ascii_lowercase())).unwrap_or_default();
    mask_password(&v)
}

fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:xxxxx@{host}"),
        None => url.to_owned(),
    }
}

/// Seconds (with an optional fraction) or an RFC 3339 time, as nanoseconds.
pub(crate) fn time_arg(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return Some((f * 1e9) as i64);
    }
    berth_engine::logs::rfc3339_nanos(s)
}

/// Docker's `filters` query: `{"key": ["v1", "v2"]}` (or the old
/// `{"key": {"v1": true}}`).
pub fn filters(ctx: &Ctx) -> Result<std::collections::BTreeMap<String, Vec<String>>, ApiError> {
    let mut out = std::collections::BTreeMap::new();
    let Some(raw) = ctx.q("filters").filter(|s| !s.is_empty()) else { return Ok(out) };
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("invalid filter: {e}")))?;
    let obj = v.as_object().ok_or_else(|| ApiError::bad("invalid filter: not an object"))?;
    for (k, vals) in obj {
        let list: Vec<String> = match vals {
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            serde_json::Value::Object(o) => o.keys().cloned().collect(),
            _ => return Err(ApiError::bad(format!("invalid filter: {k}"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

pub fn events(ctx: &Ctx) -> Reply {
    let since = ctx
        .q("since")
        .filter(|s| !s.is_empty())
        .map(|s| time_arg(s).ok_or_else(|| ApiError::bad(format!("invalid since: {s}"))))
        .transpose()?;
    let until = ctx
        .q("until")
        .filter(|s| !s.is_empty())
        .map(|s| time_arg(s).ok_or_else(|| ApiError::bad(format!("invalid until: {s}"))))
        .transpose()?;
    let f = filters(ctx)?;
    let (past, mut rx) = ctx.engine.events.subscribe(Some(since.unwrap_or(i64::MAX)));
    let (tx, body) = body::channel();
    let matches = move |e: &berth_engine::events::Event| -> bool {
        let ok = |key: &str, val: &str| f.get(key).is_none_or(|vs| vs.iter().any(|v| v == val));
        let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
        ok("type", &e.typ)
            && (ok("event", &e.action)
                || f.get("event").is_some_and(|vs| vs.iter().any(|v| e.action.starts_with(v.as_str()))))
            && (ok("container", &e.actor_id)
                || ok("container", name)
                || f.get("container").is_some_and(|vs| vs.iter().any(|v| e.actor_id.starts_with(v.as_str()))))
            && ["volume", "network"]
                .iter()
                .all(|t| f.get(*t).is_none_or(|vs| e.typ == *t && vs.iter().any(|v| *v == e.actor_id || v == name)))
            && f.get("label").is_none_or(|ls| {
                ls.iter().all(|l| match l.split_once('=') {
                    Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
                    None => e.attributes.contains_key(l),
                })
            })
    };
    let wire = |e: &berth_engine::events::Event| -> Bytes {
        let w = w::Event {
            spec: w::spec::EventMessage {
                typ: e.typ.parse().ok(),
                action: Some(e.action.clone()),
                actor: Some(w::spec::EventActor {
                    id: Some(e.actor_id.clone()),
                    attributes: Some(e.attributes.clone().into_iter().collect()),
                }),
                scope: Some(w::spec::EventMessageScopeEnum::LOCAL),
                time: Some(e.time_nano / 1_000_000_000),
                time_nano: Some(e.time_nano),
            },
            status: if e.typ == "container" || e.typ == "image" { e.action.clone() } else { String::new() },
            id: if e.typ == "container" || e.typ == "image" { e.actor_id.clone() } else { String::new() },
            from: e.attributes.get("image").cloned().unwrap_or_default(),
        };
        let mut b = serde_json::to_vec(&w).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    };
    tokio::spawn(async move {
        for e in past.iter().filter(|e| until.is_none_or(|u| e.time_nano <= u)) {
            if matches(e) && tx.send(wire(e)).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            let now = crate::containers::now_nanos();
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64)
        });
        loop {
            let next = async { rx.recv().await };
            let e = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(e) => e,
                    Err(_) => return,
                },
                None => tokio::select! {
                    e = next => e,
                    _ = tx.closed() => return,
                },
            };
            match e {
                Ok(e) => {
                    if until.is_some_and(|u| e.time_nano > u) {
                        return;
                    }
                    if matches(&e) && tx.send(wire(&e)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
    server_headers(Response::builder().status(StatusCode::OK))
        .header("Content-Type", "application/json")
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /system/df?type=`: the images with their shared bytes, the
/// containers with their sizes, and the volumes with theirs and how many
/// containers mount them, and the build cache.
pub async fn df(ctx: &Ctx) -> Reply {
    let types = ctx.all("type");
    for t in &types {
        if !matches!(t.as_str(), "container" | "image" | "volume" | "build-cache") {
            return Err(ApiError::bad(format!("unknown object type: {t}")));
        }
    }
    let want = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let mut out = w::DiskUsage::default();
    let list = ctx.engine.list();
    if want("container") {
        let now = crate::containers::now_nanos();
        let mut rows = vec![];
        for c in &list {
            let mut sum = crate::convert::summary(c, now);
            if let Ok((rw, root)) = ctx.engine.sizes(c).await {
                sum.size_rw = Some(rw as i64);
                sum.size_root_fs = Some(root as i64);
            }
            rows.push(sum);
        }
        out.containers = Some(rows);
    }
    if want("image") {
        let store = ctx.engine.images.clone();
        let users: Vec<String> = list.iter().map(|c| c.image_id.clone()).collect();
        let (layers_size, images) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let names = store.names()?;
            let shared = crate::images::layer_users(&store)?;
            let mut rows = vec![];
            for rec in store.list()? {
                let cfg = store.config(&rec.id)?;
                let names =
                    crate::images::tags_and_digests(names.iter().filter(|(_, id)| *id == rec.id).map(|(r, _)| r));
                rows.push(crate::images::summary(&store, &rec, &cfg, names, &users, Some(&shared))?);
            }
            rows.sort_by_key(|i| std::cmp::Reverse(i.created));
            let layers: u64 = store.layers.list()?.iter().map(|l| l.size).sum();
            Ok((layers as i64, rows))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
        out.layers_size = layers_size;
        out.images = Some(images);
    }
    if want("volume") {
        let engine = ctx.engine.clone();
        let vols = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let users = engine.volume_users();
            let list = engine.volumes.list().map_err(ApiError::from)?;
            Ok(list.iter().map(|v| crate::volumes::wire(&engine, v, Some(&users))).collect())
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
        out.volumes = Some(vols);
    }
    if want("build-cache") {
        out.build_cache = Some(crate::build::df_entries(ctx));
    }
    json_response(StatusCode::OK, &out)
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn proxy_passwords_are_masked() {
        assert_eq!(mask_password("http://u:secret@proxy:3128"), "http://u:xxxxx@proxy:3128");
        assert_eq!(mask_password("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask_password("http://u@proxy"), "http://u@proxy");
        assert_eq!(mask_password(""), "");
    }
}
