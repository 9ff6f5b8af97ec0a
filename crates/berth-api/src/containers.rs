//! `/containers/…`.

use berth_api_types as w;
use berth_engine::logs::LogOptions;
use berth_engine::WaitCondition;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::{body, convert, create, json_response, no_content, status_only, stream, ApiError, Ctx, Reply};

pub(crate) use berth_core::time::now_nanos;

pub(crate) fn int_arg(ctx: &Ctx, k: &str) -> Result<Option<i64>, ApiError> {
    ctx.q(k)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| ApiError::bad(format!("invalid value for {k}: {s}"))))
        .transpose()
}

pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let name = ctx.q("name").map(str::to_owned);
    let body = create::read_create(crate::read_json_value(req).await?)?;
    let r = create::create_request(name, body)?;
    let c = ctx.engine.create(r).await?;
    let warnings = ctx.engine.create_warnings(&c);
    json_response(StatusCode::CREATED, &w::CreateResponse { id: c.id, warnings })
}

pub async fn list(ctx: &Ctx) -> Reply {
    let all = ctx.flag("all");
    let limit = int_arg(ctx, "limit")?.filter(|l| *l > 0);
    let f = crate::system::filters(ctx)?;
    if let Some(k) = f.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError::bad(format!("invalid filter '{k}'")));
    }
    for (k, v) in ["publish", "expose"].iter().flat_map(|k| f.get(*k).into_iter().flatten().map(move |v| (k, v))) {
        if port_filter(v).is_none() {
            return Err(ApiError::bad(format!("invalid filter '{k}={v}'")));
        }
    }
    for v in f.get("health").into_iter().flatten() {
        if !matches!(v.as_str(), "starting" | "healthy" | "unhealthy" | "none") {
            return Err(ApiError::bad(format!("Unrecognised filter value for health: {v}")));
        }
    }
    // `before` and `since` name a container; the list is cut at its
    // creation time.
    let created_of = |k: &str| -> Result<Vec<String>, ApiError> {
        let mut out = vec![];
        for key in f.get(k).into_iter().flatten() {
            out.push(ctx.engine.inspect(key)?.created);
        }
        Ok(out)
    };
    let (before, since) = (created_of("before")?, created_of("since")?);
    let now = now_nanos();
    let mut out = vec![];
    for c in ctx.engine.list() {
        let live = c.state.status.is_running();
        if !filter_ok(&c, &f) || before.iter().any(|t| c.created >= *t) || since.iter().any(|t| c.created <= *t) {
            continue;
        }
        if !all && limit.is_none() && !live && !f.contains_key("status") && !f.contains_key("exited") {
            continue;
        }
        let mut sum = convert::summary(&c, now);
        if ctx.flag("size") {
            if let Ok((rw, root)) = ctx.engine.sizes(&c).await {
                sum.size_rw = Some(rw as i64);
                sum.size_root_fs = Some(root as i64);
            }
        }
        out.push(sum);
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    json_response(StatusCode::OK, &out)
}

/// The filters `GET /containers/json` knows, as Docker's.
const FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

/// A `publish` or `expose` filter's value, `80`, `80/udp` or
/// `8000-8080/tcp`: the container ports it takes and their protocol.
fn port_filter(v: &str) -> Option<(std::ops::RangeInclusive<u16>, String)> {
    let (range, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    let proto = proto.to_ascii_lowercase();
    (lo <= hi && matches!(proto.as_str(), "tcp" | "udp" | "sctp")).then_some((lo..=hi, proto))
}

/// Whether a container port, `80/tcp`, falls in a port filter's value.
fn port_in(filter: &str, port: u16, proto: &str) -> bool {
    port_filter(filter).is_some_and(|(r, p)| r.contains(&port) && p == proto)
}

fn filter_ok(c: &berth_engine::model::Container, f: &std::collections::BTreeMap<String, Vec<String>>) -> bool {
    let any = |k: &str, pred: &dyn Fn(&str) -> bool| f.get(k).is_none_or(|vs| vs.iter().any(|v| pred(v)));
    // Docker's `volume` filter: a mount's volume name, source or destination.
    let mounts_have = |v: &str| c.mount_points.iter().any(|p| p.name == v || p.source == v || p.destination == v);
    // `publish` matches the container ports published now, `expose`
    // those the container exposes or asks to publish, as in Docker.
    let published = |v: &str| c.net.ports.iter().any(|p| port_in(v, p.port, p.proto.as_str()));
    let exposed = |v: &str| {
        c.config.exposed_ports.iter().chain(c.host.port_bindings.keys()).any(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            port.parse().is_ok_and(|port| port_in(v, port, proto))
        })
    };
    // Any network the container is on, by name or id.
    let on_network = |v: &str| {
        c.host.network_mode == v
            || c.networks.iter().any(|(name, e)| name == v || (!v.is_empty() && e.network_id.starts_with(v)))
    };
    // Containers are never swarm tasks.
    let health = c.state.health.as_ref().map_or("none", |h| h.status.as_str());
    any("publish", &published)
        && any("expose", &exposed)
        && any("is-task", &|v| v == "false" || v == "0")
        && any("health", &|v| v == health)
        && any("isolation", &|v| v == "default")
        && any("network", &on_network)
        && any("volume", &mounts_have)
        && any("id", &|v| c.id.starts_with(v))
        && any("name", &|v| c.name.trim_start_matches('/').contains(v.trim_start_matches('/')))
        && any("status", &|v| c.state.status.as_str() == v)
        && any("exited", &|v| {
            c.state.status == berth_engine::model::Status::Exited && v.parse() == Ok(c.state.exit_code)
        })
        && any("ancestor", &|v| {
            c.config.image == v || c.image_id == v || c.image_id.trim_start_matches("sha256:").starts_with(v)
        })
        && f.get("label").is_none_or(|ls| {
            ls.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => c.config.labels.get(k).is_some_and(|x| x == v),
                None => c.config.labels.contains_key(l),
            })
        })
}

pub async fn inspect(ctx: &Ctx, id: &str) -> Reply {
    let c = ctx.engine.inspect(id)?;
    let execs = ctx.engine.exec_ids(&c.id);
    let graph = match c.rw_layer.as_ref().and_then(|rw| ctx.engine.images.layers.mount_of(rw).ok()) {
        Some(m) => graph_data(&m),
        None => Default::default(),
    };
    let mut out = crate::inspect::inspect(&c, execs, graph);
    if ctx.flag("size") {
        let (rw, root) = ctx.engine.sizes(&c).await?;
        out.spec.size_rw = Some(i64::try_from(rw).unwrap_or(i64::MAX));
        out.spec.size_root_fs = Some(i64::try_from(root).unwrap_or(i64::MAX));
    }
    let mut v = crate::inspect::to_json(&out);
    if crate::version_cmp(&ctx.version, "1.42").is_lt() {
        // Kernel memory limits left the API at 1.42; before, Docker sent
        // the field, and berth has never set one.
        if let Some(h) = v.get_mut("HostConfig").and_then(serde_json::Value::as_object_mut) {
            h.insert("KernelMemory".into(), 0.into());
        }
    }
    json_response(StatusCode::OK, &v)
}

/// Docker's overlay2 GraphDriver.Data: the layers' diff directories (the
/// short links resolved), the upper, work and merged directories.
fn graph_data(m: &berth_image::OverlayMount) -> std::collections::HashMap<String, String> {
    let lower: Vec<String> = m
        .lowers
        .iter()
        .map(|l| {
            let link = m.base.join(l);
            let real = std::fs::read_link(&link).map(|t| link.parent().map(|p| p.join(&t)).unwrap_or(t));
            let p = real.ok().and_then(|p| std::fs::canonicalize(p).ok()).unwrap_or(link);
            p.display().to_string()
        })
        .collect();
    let mut d = std::collections::HashMap::new();
    if !lower.is_empty() {
        d.insert("LowerDir".into(), lower.join(":"));
    }
    d.insert("UpperDir".into(), m.upper.display().to_string());
    d.insert("WorkDir".into(), m.work.display().to_string());
    d.insert("MergedDir".into(), m.target.display().to_string());
    d
}

/// A 304 from the engine is a success without a body.
fn done(r: berth_engine::Result<()>) -> Reply {
    match r {
        Ok(()) => no_content(),
        Err(e) if e.is_not_modified() => status_only(StatusCode::NOT_MODIFIED),
        Err(e) => Err(e.into()),
    }
}

pub async fn start(ctx: &Ctx, id: &str) -> Reply {
    done(ctx.engine.start(id).await)
}

pub async fn stop(ctx: &Ctx, id: &str) -> Reply {
    let t = int_arg(ctx, "t")?;
    done(ctx.engine.stop(id, t, ctx.q("signal").filter(|s| !s.is_empty())).await)
}

pub async fn restart(ctx: &Ctx, id: &str) -> Reply {
    let t = int_arg(ctx, "t")?;
    done(ctx.engine.restart(id, t, ctx.q("signal").filter(|s| !s.is_empty())).await)
}

pub async fn kill(ctx: &Ctx, id: &str) -> Reply {
    done(ctx.engine.kill(id, ctx.q("signal")).await)
}

pub async fn pause(ctx: &Ctx, id: &str, p: bool) -> Reply {
    done(ctx.engine.pause(id, p).await)
}

pub fn rename(ctx: &Ctx, id: &str) -> Reply {
    let name = ctx.q("name").unwrap_or("");
    done(ctx.engine.rename(id, name))
}

pub async fn resize(ctx: &Ctx, id: &str) -> Reply {
    let h = int_arg(ctx, "h")?.unwrap_or(0).clamp(0, 65535) as u16;
    let wd = int_arg(ctx, "w")?.unwrap_or(0).clamp(0, 65535) as u16;
    done(ctx.engine.resize(id, wd, h).await)
}

/// `DELETE /containers/{id}`; with `link`, `id` is a link's name
/// (`parent/alias`) and only the link goes.
pub async fn remove(ctx: &Ctx, id: &str) -> Reply {
    if ctx.flag("link") {
        return done(ctx.engine.remove_link(id));
    }
    done(ctx.engine.remove(id, ctx.flag("force"), ctx.flag("v")).await)
}

pub async fn prune(ctx: &Ctx) -> Reply {
    let mut deleted = vec![];
    let mut reclaimed: u64 = 0;
    for c in ctx.engine.list() {
        if c.state.status.is_running() {
            continue;
        }
        // What its writable layer held, as Docker counts a prune.
        let rw = ctx.engine.sizes(&c).await.map(|(rw, _)| rw).unwrap_or(0);
        if ctx.engine.remove(&c.id, false, false).await.is_ok() {
            deleted.push(c.id);
            reclaimed += rw;
        }
    }
    json_response(StatusCode::OK, &serde_json::json!({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}))
}

pub async fn wait(ctx: &Ctx, id: &str) -> Reply {
    let cond = match ctx.q("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => return Err(ApiError::bad(format!("invalid condition: \"{other}\""))),
    };
    let fut = ctx.engine.waiter(id, cond)?;
    let (tx, body) = body::channel();
    tokio::spawn(async move {
        let (code, error) = fut.await;
        let r = w::WaitResponse {
            status_code: i64::from(code),
            error: (!error.is_empty()).then_some(w::WaitError { message: Some(error) }),
        };
        let _ = tx.send(Bytes::from(serde_json::to_vec(&r).unwrap_or_default())).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /containers/{id}/attach`: answers 101 at once (the client starts
/// the container only after it), replays the log first with `logs`, then,
/// with `stream`, joins the connection to the shim's.
pub async fn attach(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let c = ctx.engine.inspect(id)?;
    let (logs, stream) = (ctx.flag("logs"), ctx.flag("stream"));
    if !stream && !logs {
        return Err(ApiError::bad("at least one of stream or logs must be true"));
    }
    let keys = stream::detach_keys(ctx.q("detachKeys").unwrap_or(""))?;
    let (stdin, stdout, stderr) = (ctx.flag("stdin"), ctx.flag("stdout"), ctx.flag("stderr"));
    let engine = ctx.engine.clone();
    let (id, tty) = (c.id.clone(), c.config.tty);
    let upgrade = req.headers().get(hyper::header::UPGRADE).is_some();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let mut client = TokioIo::new(upgraded);
        if logs && (stdout || stderr) {
            replay(&engine, &id, tty, stdout, stderr, &mut client).await;
        }
        if !stream {
            let _ = client.shutdown().await;
            return;
        }
        let shim = match engine.attach(&id, stdin, stdout, stderr).await {
            Ok(a) => a.stream,
            Err(e) => {
                let _ = client.write_all(format!("Error: {e}\n").as_bytes()).await;
                let _ = client.shutdown().await;
                return;
            }
        };
        // As moby: detach keys on a terminal's stdin only.
        let s = stream::Streams { detach: (tty && stdin).then_some(keys), reframe: stream::Reframe::Keep };
        stream::proxy(client, shim, s, async {}).await;
    });
    stream::hijacked(tty, upgrade)
}

/// `GET /containers/{id}/attach/ws`: the attach over a websocket, as
/// moby's (binary messages, never multiplexed; stdin, stdout and stderr as
/// the query asks, API 1.42).
pub async fn attach_ws(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let c = ctx.engine.inspect(id)?;
    let keys = stream::detach_keys(ctx.q("detachKeys").unwrap_or(""))?;
    let (logs, live) = (ctx.flag("logs"), ctx.flag("stream"));
    let (stdin, stdout, stderr) = (ctx.flag("stdin"), ctx.flag("stdout"), ctx.flag("stderr"));
    let answer = stream::websocket_accept(&req)?;
    let engine = ctx.engine.clone();
    let (id, tty) = (c.id.clone(), c.config.tty);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), role, None).await;
        let mut replayed = vec![];
        if logs && (stdout || stderr) {
            if let Some(mut rx) = log_so_far(&engine, &id, stdout, stderr) {
                while let Some(l) = rx.recv().await {
                    replayed.push(log_chunk(&l, false));
                }
            }
        }
        let shim = if live { engine.attach(&id, stdin, stdout, stderr).await.ok().map(|a| a.stream) } else { None };
        let Some(shim) = shim else {
            // Nothing live to join: the replay, then the close.
            use futures_util::SinkExt;
            let mut ws = ws;
            for chunk in replayed {
                let _ = ws.send(tokio_tungstenite::tungstenite::Message::binary(chunk)).await;
            }
            let _ = ws.close(None).await;
            return;
        };
        let s =
            stream::Streams { detach: (tty && stdin).then_some(keys), reframe: stream::Reframe::between(tty, true) };
        stream::ws_proxy(ws, shim, s, replayed).await;
    });
    Ok(answer)
}

/// The log so far, as attach's `logs=1` gives it before the live output.
async fn replay<W: tokio::io::AsyncWrite + Unpin>(
    engine: &std::sync::Arc<berth_engine::Engine>,
    id: &str,
    tty: bool,
    stdout: bool,
    stderr: bool,
    to: &mut W,
) {
    let Some(mut rx) = log_so_far(engine, id, stdout, stderr) else { return };
    while let Some(l) = rx.recv().await {
        if to.write_all(&log_chunk(&l, !tty)).await.is_err() {
            return;
        }
    }
}

/// The log of `id` as it is now; `None` when its driver cannot be read.
pub(crate) fn log_so_far(
    engine: &std::sync::Arc<berth_engine::Engine>,
    id: &str,
    stdout: bool,
    stderr: bool,
) -> Option<tokio::sync::mpsc::Receiver<berth_engine::logs::LogLine>> {
    engine.logs(id, LogOptions { stdout, stderr, ..Default::default() }).ok()
}

/// One log line as attach sends it: framed when `mux`, else raw.
pub(crate) fn log_chunk(l: &berth_engine::logs::LogLine, mux: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(l.data.len() + 8);
    if mux {
        out.extend_from_slice(&berth_engine::logs::frame_header(l.stream, l.data.len()));
    }
    out.extend_from_slice(&l.data);
    out
}

pub fn logs(ctx: &Ctx, id: &str) -> Reply {
    let c = ctx.engine.inspect(id)?;
    let (stdout, stderr) = (ctx.flag("stdout"), ctx.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad("You must choose at least one stream"));
    }
    let secs = |k: &str| -> Result<Option<f64>, ApiError> {
        match ctx.q(k).filter(|s| !s.is_empty() && *s != "0") {
            None => Ok(None),
            Some(s) => s
                .parse::<f64>()
                .ok()
                .or_else(|| berth_engine::logs::rfc3339_nanos(s).map(|n| n as f64 / 1e9))
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("invalid value for {k}: {s}"))),
        }
    };
    let tail = match ctx.q("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(n.parse::<i64>().map_err(|_| ApiError::bad(format!("invalid value for tail: {n}")))?.max(0) as usize),
    };
    let o =
        LogOptions { stdout, stderr, follow: ctx.flag("follow"), since: secs("since")?, until: secs("until")?, tail };
    let timestamps = ctx.flag("timestamps");
    let tty = c.config.tty;
    let mut rx = ctx.engine.logs(id, o)?;
    let (tx, body) = body::channel();
    tokio::spawn(async move {
        loop {
            // A client that left drops its follower at once, not at the
            // container's next line.
            let l = tokio::select! {
                l = rx.recv() => match l { Some(l) => l, None => return },
                _ = tx.closed() => return,
            };
            let mut data = Vec::with_capacity(l.data.len() + 40);
            if timestamps {
                data.extend_from_slice(l.time.as_bytes());
                data.push(b' ');
            }
            data.extend_from_slice(&l.data);
            let mut out = Vec::with_capacity(data.len() + 8);
            if !tty {
                out.extend_from_slice(&berth_engine::logs::frame_header(l.stream, data.len()));
            }
            out.extend_from_slice(&data);
            if tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", stream::stream_type(tty))
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /containers/{id}/changes`.
pub async fn changes(ctx: &Ctx, id: &str) -> Reply {
    let list = ctx.engine.changes(id).await?;
    let out: Vec<serde_json::Value> =
        list.iter().map(|c| serde_json::json!({"Path": c.path, "Kind": c.kind.code()})).collect();
    json_response(StatusCode::OK, &out)
}

/// `GET /containers/{id}/export`: the root file system as a tar stream.
pub async fn export(ctx: &Ctx, id: &str) -> Reply {
    ctx.engine.inspect(id)?;
    let (tx, body) = body::channel();
    let engine = ctx.engine.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        // A failure midway leaves the client with a tar cut short.
        let _ = engine.export(&id, body::ChannelWriter::new(tx)).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /commit`.
pub async fn commit(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let key = ctx.q("container").unwrap_or("").to_owned();
    let body = create::read_commit_config(crate::read_json_value(req).await?)?;
    let mut r = berth_engine::CommitRequest {
        reference: ctx.repo_tag()?,
        comment: ctx.q("comment").unwrap_or("").to_owned(),
        author: ctx.q("author").unwrap_or("").to_owned(),
        changes: ctx.all("changes").into_iter().filter(|c| !c.trim().is_empty()).collect(),
        pause: ctx.q("pause").is_none_or(|p| matches!(p, "1" | "true" | "True" | "TRUE")),
        ..Default::default()
    };
    if let Some(b) = body {
        create::commit_config(b, &mut r)?;
    }
    let id = ctx.engine.commit(&key, r).await?;
    json_response(StatusCode::CREATED, &w::IdResponse { id: id.to_string() })
}

/// `GET /containers/{id}/top`.
pub async fn top(ctx: &Ctx, id: &str) -> Reply {
    let t = ctx.engine.top(id, ctx.q("ps_args").unwrap_or("")).await?;
    json_response(StatusCode::OK, &serde_json::json!({"Titles": t.titles, "Processes": t.processes}))
}

/// `GET /containers/{id}/stats?stream=&one-shot=`. A stream sends one
/// reading a second, each with the one before as `precpu_stats`, until the
/// client goes or the container is removed. Without a stream the reading
/// waits a second for a `precpu_stats` of its own, unless `one-shot` is set.
pub async fn stats(ctx: &Ctx, id: &str) -> Reply {
    let stream = ctx.q("stream").is_none_or(|v| matches!(v, "1" | "true" | "True" | "TRUE"));
    let one_shot = ctx.flag("one-shot");
    if one_shot && stream {
        return Err(ApiError::bad("cannot have stream=true and one-shot=true"));
    }
    let first = ctx.engine.stats(id).await?;
    let id = first.id.clone();
    if !stream {
        let (pre, cur) = if one_shot || !first.live {
            (None, first)
        } else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let cur = ctx.engine.stats(&id).await?;
            (Some(first), cur)
        };
        return json_response(StatusCode::OK, &convert::stats_json(&convert::stats(&cur, pre.as_ref())));
    }
    let (tx, body) = body::channel();
    let engine = ctx.engine.clone();
    tokio::spawn(async move {
        let mut pre: Option<berth_engine::stats::Sample> = None;
        let mut cur = first;
        loop {
            let mut line =
                serde_json::to_vec(&convert::stats_json(&convert::stats(&cur, pre.as_ref()))).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match engine.stats(&id).await {
                Ok(next) => pre = Some(std::mem::replace(&mut cur, next)),
                Err(_) => return,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /containers/{id}/update`.
pub async fn update(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let given = crate::read_json_value(req).await?;
    create::check_restart_name(&given)?;
    let body: Option<w::UpdateConfig> = crate::decode(given)?;
    let u = create::update(body.unwrap_or_default())?;
    let warnings = ctx.engine.update(id, u).await?;
    json_response(StatusCode::OK, &serde_json::json!({ "Warnings": warnings }))
}

fn path_arg(ctx: &Ctx) -> Result<String, ApiError> {
    match ctx.q("path") {
        Some(p) if !p.is_empty() => Ok(p.to_owned()),
        _ => Err(ApiError::bad("path is required")),
    }
}

/// Docker's `X-Docker-Container-Path-Stat`: the stat as base64 JSON.
fn path_stat_header(st: berth_image::copy::PathStat) -> String {
    use base64::Engine as _;
    let w = w::ContainerPathStat {
        name: st.name,
        size: st.size,
        mode: st.mode,
        mtime: st.mtime,
        link_target: st.link_target,
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&w).unwrap_or_default())
}

/// `HEAD /containers/{id}/archive?path=`.
pub async fn archive_head(ctx: &Ctx, id: &str) -> Reply {
    let st = ctx.engine.archive_stat(id, &path_arg(ctx)?).await?;
    Response::builder()
        .status(StatusCode::OK)
        .header("X-Docker-Container-Path-Stat", path_stat_header(st))
        .body(body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /containers/{id}/archive?path=`: the stat in a header, the tar as
/// the body.
pub async fn archive_get(ctx: &Ctx, id: &str) -> Reply {
    let path = path_arg(ctx)?;
    let st = ctx.engine.archive_stat(id, &path).await?;
    let (tx, body) = body::channel();
    let engine = ctx.engine.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        // A failure midway leaves the client with a tar cut short.
        let _ = engine.archive_get(&id, &path, body::ChannelWriter::new(tx)).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .header("X-Docker-Container-Path-Stat", path_stat_header(st))
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `PUT /containers/{id}/archive?path=`: a tar extracted into the
/// directory `path`.
pub async fn archive_put(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let path = path_arg(ctx)?;
    ctx.engine.inspect(id)?;
    let spooled = crate::images::spool(ctx, req).await?;
    let f = std::fs::File::open(&spooled).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    let r = match f {
        Ok(f) => ctx.engine.archive_put(id, &path, f, ctx.flag("noOverwriteDirNonDir")).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&spooled);
    r?;
    crate::status_only(StatusCode::OK)
}
