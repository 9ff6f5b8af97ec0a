//! `POST /build`: Docker's classic build API. The context tar (plain,
//! gzip or zstd) is unpacked under the data root, the Dockerfile read from
//! it, and the build's JSON stream sent as it runs.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::{body, ApiError, Ctx, Reply};

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn int(ctx: &Ctx, k: &str) -> Result<i64, ApiError> {
    match ctx.q(k).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| ApiError::bad(format!("{k}: {v:?} is not a number"))),
    }
}

/// A JSON map parameter (`buildargs`, `labels`); `null` and absence are empty.
fn json_map<V: serde::de::DeserializeOwned>(ctx: &Ctx, k: &str) -> Result<HashMap<String, V>, ApiError> {
    match ctx.q(k).filter(|v| !v.is_empty() && *v != "null") {
        None => Ok(HashMap::new()),
        Some(v) => serde_json::from_str(v).map_err(|e| ApiError::bad(format!("{k}: {e}"))),
    }
}

/// The build's options from the query, each honoured or refused by name.
fn options(ctx: &Ctx) -> Result<(berth_engine::build::Options, String, bool), ApiError> {
    // What berth's builder does not do yet is refused, not dropped.
    for (k, what) in [("remote", "a remote context"), ("session", "a BuildKit session"), ("buildid", "a build id")] {
        if ctx.q(k).is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad(format!("{k}: {what} is not supported by berth's builder yet")));
        }
    }
    if let Some(i) = ctx.q("isolation").filter(|v| !v.is_empty() && *v != "default") {
        return Err(ApiError::bad(format!(
            "isolation {i:?}: berth isolates build steps with namespaces only (\"default\")"
        )));
    }
    if ctx.flag("squash") {
        return Err(ApiError::bad("squash is only supported with experimental mode"));
    }
    match ctx.q("version").unwrap_or("1") {
        "" | "1" => {}
        "2" => {
            return Err(ApiError::bad(
                "version=2: BuildKit builds are not supported by berth; its own builder takes version=1 (DOCKER_BUILDKIT=0)",
            ))
        }
        v => return Err(ApiError::bad(format!("version: unknown builder version {v:?}"))),
    }
    let cache_from: Vec<String> = match ctx.q("cachefrom").filter(|v| !v.is_empty() && *v != "null") {
        None => vec![],
        Some(v) => serde_json::from_str(v).map_err(|e| ApiError::bad(format!("cachefrom: {e}")))?,
    };
    if let Some(o) = ctx.q("outputs").filter(|v| !v.is_empty() && *v != "null" && *v != "[]") {
        return Err(ApiError::bad(format!(
            "outputs {o}: the classic build API makes an image only (berth build -o writes the image's files out, type=local or tar)"
        )));
    }
    if let Some(p) = ctx.q("platform").filter(|v| !v.is_empty()) {
        let host = format!("linux/{}", berth_image::config::host_architecture());
        if p != host && p != "linux" {
            return Err(ApiError::bad(format!("platform {p}: berth builds for this machine's platform ({host}) only")));
        }
    }
    let mut tags = vec![];
    for t in ctx.all("t") {
        let r = berth_image::Reference::parse(&t).map_err(|e| ApiError::bad(format!("invalid tag {t:?}: {e}")))?;
        tags.push(r.with_default_tag());
    }
    let mut host = berth_engine::model::HostConfig::default();
    let r = &mut host.resources;
    r.memory = int(ctx, "memory")?;
    r.memory_swap = int(ctx, "memswap")?;
    r.cpu_shares = int(ctx, "cpushares")?;
    r.cpu_period = int(ctx, "cpuperiod")?;
    r.cpu_quota = int(ctx, "cpuquota")?;
    r.cpuset_cpus = ctx.q("cpusetcpus").unwrap_or("").to_owned();
    r.cpuset_mems = ctx.q("cpusetmems").unwrap_or("").to_owned();
    if let Some(u) = ctx.q("ulimits").filter(|v| !v.is_empty() && *v != "null") {
        let list: Vec<Value> = serde_json::from_str(u).map_err(|e| ApiError::bad(format!("ulimits: {e}")))?;
        for l in list {
            r.ulimits.push(berth_engine::model::Ulimit {
                name: l["Name"].as_str().unwrap_or("").to_owned(),
                soft: l["Soft"].as_i64().unwrap_or(0),
                hard: l["Hard"].as_i64().unwrap_or(0),
            });
        }
    }
    host.shm_size = int(ctx, "shmsize")?;
    host.cgroup_parent = ctx.q("cgroupparent").unwrap_or("").to_owned();
    let extra_hosts: Vec<String> = match ctx.q("extrahosts").filter(|v| !v.is_empty()) {
        // The CLI sends them comma-separated; the API reference a list.
        Some(v) => v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        None => vec![],
    };
    let network_mode = match ctx.q("networkmode").unwrap_or("") {
        "" | "default" => "default".to_owned(),
        m @ ("none" | "host" | "bridge") => m.to_owned(),
        m => m.to_owned(),
    };
    let opts = berth_engine::build::Options {
        tags,
        target: ctx.q("target").filter(|t| !t.is_empty()).map(str::to_owned),
        build_args: json_map(ctx, "buildargs")?,
        labels: json_map::<String>(ctx, "labels")?.into_iter().collect(),
        pull: ctx.flag("pull"),
        no_cache: ctx.flag("nocache"),
        // `rm` is on unless `rm=0`; `forcerm` also removes after a failure,
        // which berth always does.
        keep_passed: matches!(ctx.q("rm"), Some("0" | "false" | "False")),
        network_mode,
        extra_hosts,
        host,
        ignore: Default::default(),
        local_context: false,
        cache_from,
        registry_auth: vec![],
        secrets: HashMap::new(),
        ssh: HashMap::new(),
    };
    let dockerfile = ctx.q("dockerfile").filter(|d| !d.is_empty()).unwrap_or("Dockerfile").to_owned();
    Ok((opts, dockerfile, ctx.flag("q")))
}

/// A tar stream made whole at its end: the docker CLI's `-f -` context
/// ends with its last file's bytes, without the padding of that file's
/// last block or the end-of-archive blocks, which dockerd's reader lets
/// pass. Zeros are added up to the block, and two blocks more.
struct Padded<R> {
    inner: R,
    read: u64,
    /// Zeros still to give once `inner` has ended.
    tail: Option<u64>,
}

impl<R> Padded<R> {
    fn new(inner: R) -> Padded<R> {
        Padded { inner, read: 0, tail: None }
    }
}

impl<R: std::io::Read> std::io::Read for Padded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.tail.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.read += n as u64;
                return Ok(n);
            }
            self.tail = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.tail.unwrap_or(0);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        buf[..n].fill(0);
        self.tail = Some(left - n as u64);
        Ok(n)
    }
}

/// The Dockerfile at `name` in the context, read without leaving it.
fn read_dockerfile(context: &std::path::Path, name: &str) -> Result<String, String> {
    let missing = || format!("Cannot locate specified Dockerfile: {name}");
    let mut rel = std::path::PathBuf::new();
    for c in std::path::Path::new(name).components() {
        match c {
            std::path::Component::Normal(n) => rel.push(n),
            std::path::Component::ParentDir if !rel.pop() => return Err(missing()),
            _ => {}
        }
    }
    let stat = berth_image::copy::stat(context, &rel.display().to_string()).map_err(|_| missing())?;
    if stat.mode & (1 << 31) != 0 {
        return Err(missing());
    }
    let mut out = Vec::new();
    berth_image::copy::archive(context, &rel.display().to_string(), &mut out).map_err(|_| missing())?;
    let mut a = tar::Archive::new(out.as_slice());
    let mut text = String::new();
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        if e.header().entry_type().is_file() {
            std::io::Read::read_to_string(&mut e, &mut text).map_err(|e| format!("{name}: {e}"))?;
            return Ok(text);
        }
    }
    Err(missing())
}

/// `POST /build`.
/// `X-Registry-Config`: base64 JSON of credentials by registry, as the
/// docker CLI sends them with a build.
fn registry_config(req: &Request<Incoming>) -> Result<Vec<(String, berth_registry::Credentials)>, ApiError> {
    use base64::Engine as _;
    let Some(h) = req.headers().get("x-registry-config").and_then(|v| v.to_str().ok()).map(str::trim) else {
        return Ok(vec![]);
    };
    if h.is_empty() {
        return Ok(vec![]);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
        .map_err(|_| ApiError::bad("X-Registry-Config is not base64"))?;
    let map: HashMap<String, Value> =
        serde_json::from_slice(&raw).map_err(|e| ApiError::bad(format!("X-Registry-Config: {e}")))?;
    let mut out = vec![];
    for (server, v) in map {
        // Each entry reads as X-Registry-Auth does.
        let one = base64::engine::general_purpose::STANDARD.encode(v.to_string());
        let creds = berth_registry::Credentials::from_header(&one)
            .map_err(|e| ApiError::bad(format!("X-Registry-Config: {server}: {e}")))?;
        if let Some(c) = creds {
            out.push((server, c));
        }
    }
    Ok(out)
}

/// The most a build's secrets may weigh, all together.
const SECRETS_MAX: usize = 512 << 10;

/// berth's own `X-Berth-Build-Secrets`: base64 of a JSON object of secret
/// ids and their base64 contents, what `RUN --mount=type=secret` shows
/// (BuildKit takes them through its session, which the classic API does
/// not carry). They key no cache and are written nowhere but the build's
/// private directory.
fn secrets(req: &Request<Incoming>) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    use base64::Engine as _;
    let Some(h) = req.headers().get("x-berth-build-secrets").and_then(|v| v.to_str().ok()).map(str::trim) else {
        return Ok(HashMap::new());
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(h).map_err(|_| ApiError::bad("X-Berth-Build-Secrets is not base64"))?;
    let map: HashMap<String, String> =
        serde_json::from_slice(&raw).map_err(|e| ApiError::bad(format!("X-Berth-Build-Secrets: {e}")))?;
    let mut out = HashMap::new();
    let mut total = 0;
    for (id, v) in map {
        if id.is_empty() || id.contains('/') {
            return Err(ApiError::bad(format!("X-Berth-Build-Secrets: invalid secret id {id:?}")));
        }
        let data =
            b64.decode(v).map_err(|_| ApiError::bad(format!("X-Berth-Build-Secrets: secret {id} is not base64")))?;
        total += data.len();
        if total > SECRETS_MAX {
            return Err(ApiError::bad(format!(
                "X-Berth-Build-Secrets: more than {} KiB of secrets",
                SECRETS_MAX >> 10
            )));
        }
        out.insert(id, data);
    }
    Ok(out)
}

/// berth's own `ssh`: a JSON object of ssh agent ids and the paths of
/// their sockets on this machine, what `RUN --mount=type=ssh` binds.
fn ssh_agents(ctx: &Ctx) -> Result<HashMap<String, std::path::PathBuf>, ApiError> {
    use std::os::unix::fs::FileTypeExt;
    let Some(v) = ctx.q("ssh").filter(|v| !v.is_empty()) else { return Ok(HashMap::new()) };
    let map: HashMap<String, String> = serde_json::from_str(v).map_err(|e| ApiError::bad(format!("ssh: {e}")))?;
    let mut out = HashMap::new();
    for (id, path) in map {
        let p = std::path::PathBuf::from(&path);
        if !p.is_absolute() || !std::fs::metadata(&p).is_ok_and(|m| m.file_type().is_socket()) {
            return Err(ApiError::bad(format!(
                "ssh {id}={path}: not the absolute path of a socket on the daemon's machine"
            )));
        }
        out.insert(id, p);
    }
    Ok(out)
}

pub async fn build(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let (mut opts, dockerfile, quiet) = options(ctx)?;
    opts.registry_auth = registry_config(&req)?;
    opts.secrets = secrets(&req)?;
    opts.ssh = ssh_agents(ctx)?;
    // berth's own: a directory of this host as the context, read where it
    // is (its files hashed, not sent), for a client on this machine. The
    // socket's users are this host's root already.
    let local = match ctx.q("contextdir").filter(|d| !d.is_empty()) {
        Some(d) => {
            let p = std::path::PathBuf::from(d);
            if !p.is_absolute() || !p.is_dir() {
                return Err(ApiError::bad(format!("contextdir {d}: not an absolute path of a directory")));
            }
            // The context is the directory: a tar sent as well is refused.
            let sent = req.headers().get("content-length").is_some_and(|v| v.as_bytes() != b"0")
                || req.headers().contains_key("transfer-encoding");
            if sent {
                return Err(ApiError::bad("contextdir: a build context tar was sent too; send one or the other"));
            }
            Some(p)
        }
        None => None,
    };
    let tar = match local {
        None => Some(crate::images::spool(ctx, req).await?),
        Some(_) => None,
    };
    let dir = ctx.engine.cfg.data_root.join("builds").join(berth_engine::names::new_id());
    let context = local.clone().unwrap_or_else(|| dir.join("context"));
    let made = std::fs::create_dir_all(&dir)
        .and_then(|()| if local.is_none() { std::fs::create_dir_all(&context) } else { Ok(()) })
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("build directory: {e}")));
    if let Err(e) = made {
        if let Some(t) = &tar {
            let _ = std::fs::remove_file(t);
        }
        return Err(e);
    }
    let (c2, t2, df) = (context.clone(), tar.clone(), dockerfile.clone());
    let parsed = tokio::task::spawn_blocking(move || {
        if let Some(t2) = &t2 {
            let f = std::fs::File::open(t2).map_err(|e| e.to_string())?;
            let plain = berth_engine::build::uncompressed(f).map_err(|e| format!("the build context: {e}"))?;
            berth_image::copy::extract(&c2, "/", Padded::new(plain), true)
                .map_err(|e| format!("the build context: {e}"))?;
        }
        let text = read_dockerfile(&c2, &df)?;
        let file =
            std::path::Path::new(&df).file_name().map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned());
        let b = berth_build::instructions::read(&file, &text).map_err(|e| e.to_string())?;
        // `<Dockerfile>.dockerignore` beside the Dockerfile, else the
        // context's `.dockerignore`: what the build does not see. An
        // unpacked context loses those files; a directory of the host is
        // left as it is, and the builder skips them.
        let ignore = read_dockerfile(&c2, &format!("{df}.dockerignore"))
            .or_else(|_| read_dockerfile(&c2, ".dockerignore"))
            .unwrap_or_default();
        let patterns = berth_build::ignore::Patterns::parse(&ignore);
        if t2.is_some() {
            berth_build::ignore::apply(&c2, &patterns).map_err(|e| format!("applying .dockerignore: {e}"))?;
        }
        Ok::<_, String>((b, patterns))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(t) = &tar {
        let _ = std::fs::remove_file(t);
    }
    let b = match parsed {
        Ok((b, patterns)) => {
            opts.ignore = patterns;
            opts.local_context = local.is_some();
            b
        }
        Err(msg) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::bad(msg));
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let builder = berth_engine::build::Builder::new(ctx.engine.clone(), context, dir.clone(), opts, tx.clone());
    let cancel = builder.canceller();
    let job = tokio::spawn(async move { builder.build(&b).await });
    let (out_tx, out) = body::channel();
    tokio::spawn(async move {
        let mut job = job;
        let mut client = true;
        let watch = out_tx.clone();
        let result = loop {
            tokio::select! {
                Some(v) = rx.recv() => {
                    if client && (!quiet || v.get("stream").is_none()) && out_tx.send(line(&v)).await.is_err() {
                        client = false;
                        cancel.send_replace(true);
                    }
                }
                // A client that goes away cancels the build and its step.
                () = watch.closed(), if client => {
                    client = false;
                    cancel.send_replace(true);
                }
                r = &mut job => break r,
            }
        };
        // What the build said after its end.
        while let Ok(v) = rx.try_recv() {
            if client && (!quiet || v.get("stream").is_none()) {
                let _ = out_tx.send(line(&v)).await;
            }
        }
        let end = match result {
            Ok(Ok(id)) => quiet.then(|| json!({"stream": format!("{id}\n")})),
            Ok(Err(e)) => Some(json!({"errorDetail": {"message": e.0}, "error": e.0})),
            Err(e) => Some(json!({"errorDetail": {"message": e.to_string()}, "error": e.to_string()})),
        };
        if let (Some(v), true) = (end, client) {
            let _ = out_tx.send(line(&v)).await;
        }
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
    });
    drop(tx);
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(out)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn rfc3339(t: std::time::SystemTime) -> String {
    berth_core::time::rfc3339(t)
}

/// The build cache as `GET /system/df` lists it.
pub fn df_entries(ctx: &Ctx) -> Vec<Value> {
    berth_build::cache::list(&ctx.engine.cfg.data_root)
        .into_iter()
        .map(|e| {
            json!({
                "ID": e.id, "Parent": "", "Parents": [], "Type": e.kind, "Description": e.description,
                "InUse": e.in_use, "Shared": e.kind == "exec.cachemount", "Size": e.size,
                "CreatedAt": rfc3339(e.created), "LastUsedAt": rfc3339(e.last_used), "UsageCount": 0,
            })
        })
        .collect()
}

/// `POST /build/prune`: the cache entries nothing uses, as
/// `docker builder prune` asks.
pub async fn prune(ctx: &Ctx) -> Reply {
    for k in ["keep-storage", "reserved-space", "max-used-space", "min-free-space"] {
        if ctx.q(k).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(ApiError::bad(format!("{k}: berth prunes whole entries and keeps no storage budget yet")));
        }
    }
    let filters = crate::system::filters(ctx)?;
    let mut p = berth_build::cache::Prune { all: ctx.flag("all"), ..Default::default() };
    for (k, vals) in &filters {
        match k.as_str() {
            "until" => {
                let v = vals.first().cloned().unwrap_or_default();
                // A duration back from now (`24h`), or a time.
                let when = match berth_build::instructions::duration(&v) {
                    Some(ns) => std::time::SystemTime::now()
                        .checked_sub(std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0))),
                    None => crate::system::time_arg(&v)
                        .and_then(|n| u64::try_from(n).ok())
                        .map(|n| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n)),
                };
                p.until = Some(when.ok_or_else(|| ApiError::bad(format!("invalid until: {v}")))?);
            }
            "type" => p.kinds = vals.clone(),
            other => return Err(ApiError::bad(format!("invalid filter '{other}'"))),
        }
    }
    let (root, store) = (ctx.engine.cfg.data_root.clone(), ctx.engine.images.clone());
    let (ids, freed) =
        tokio::task::spawn_blocking(move || berth_build::cache::prune(&root, &p, |id| store.resolve(id).is_ok()))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("build cache: {e}")))?;
    crate::json_response(StatusCode::OK, &json!({"CachesDeleted": ids, "SpaceReclaimed": freed}))
}
