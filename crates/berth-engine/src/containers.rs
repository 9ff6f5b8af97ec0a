//! The container lifecycle: create, start, stop, kill, pause, wait,
//! remove, attach, logs, and the restore of a previous run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_shim_proto::{self as proto, ExitRecord, Reply, Request, ShimConfig};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::model::{Container, CreateRequest, State, Status, ZERO_TIME};
use crate::shim::{self, ShimDir};
use crate::{names, spec, user, Engine, Entry, Error, Generation, Result};

/// An attach connection to a shim, after its reply: output one way (raw
/// with a terminal, else stdcopy frames), stdin the other.
#[derive(Debug)]
pub struct AttachStream {
    pub stream: UnixStream,
    pub tty: bool,
}

#[derive(Debug)]
pub(crate) struct PendingAttach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tx: oneshot::Sender<Result<UnixStream>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::Internal("container record poisoned".into())
}

pub(crate) fn new_entry(rec: Container) -> Arc<Entry> {
    Arc::new(Entry {
        rec: std::sync::Mutex::new(rec),
        op: tokio::sync::Mutex::new(()),
        exiting: tokio::sync::Mutex::new(()),
        changed: tokio::sync::watch::channel(Generation::default()).0,
        pending: std::sync::Mutex::new(vec![]),
        backoff: std::sync::Mutex::new(Default::default()),
        health: std::sync::Mutex::new(None),
    })
}

fn signal_number(s: &str) -> Result<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let sig = format!("SIG{name}").parse::<nix::sys::signal::Signal>();
    sig.map(|s| s as i32).map_err(|_| Error::Invalid(format!("Invalid signal: {s}")))
}

impl Engine {
    /// `POST /containers/create`.
    pub async fn create(self: &Arc<Self>, req: CreateRequest) -> Result<Container> {
        if req.pod_sandbox {
            if !req.config.image.is_empty() || req.entrypoint.is_some() || req.cmd.is_some() {
                return Err(Error::Invalid("a pod sandbox runs no image and no command of its own".into()));
            }
        } else if req.config.image.is_empty() {
            return Err(Error::Invalid("no image specified".into()));
        }
        self.prime_cgroups();
        let images = self.images.clone();
        let image_name = req.config.image.clone();
        let sandbox = req.pod_sandbox;
        let (image_id, image_cfg, top) = tokio::task::spawn_blocking(move || -> Result<_> {
            if sandbox {
                return Ok((None, None, None));
            }
            let id = images.resolve(&image_name)?;
            let cfg = images.config(&id)?;
            let top = images.get(&id)?.and_then(|r| r.top_layer);
            Ok((Some(id), cfg.config, top))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let run = image_cfg.unwrap_or_default();
        let mut c = Container {
            id: container_id(req.id.as_deref())?,
            created: berth_core::time::now_rfc3339(),
            ..Default::default()
        };
        c.image_id = image_id.map(|i| i.to_string()).unwrap_or_default();
        c.config = req.config.clone();
        c.host = req.host.clone();
        c.build_step = req.build_step;
        c.pod_sandbox = req.pod_sandbox;
        if let Some(ns) = req.netns_path.as_ref().filter(|p| !p.is_empty()) {
            if !matches!(req.host.network_mode.as_str(), "none") {
                return Err(Error::Invalid("a pinned network namespace goes with network mode none".into()));
            }
            c.netns_path = Some(ns.clone());
        }
        // Entrypoint and Cmd as Docker merges them: a given entrypoint drops
        // the image's cmd unless a cmd is given too.
        match (&req.entrypoint, &req.cmd) {
            _ if req.pod_sandbox => {
                c.config.entrypoint = vec![spec::INIT_PATH.to_owned(), "--pause".to_owned()];
                c.config.cmd = vec![];
            }
            (Some(ep), cmd) => {
                c.config.entrypoint = ep.clone();
                c.config.cmd = cmd.clone().unwrap_or_default();
            }
            (None, Some(cmd)) => {
                c.config.entrypoint = run.entrypoint.clone().unwrap_or_default();
                c.config.cmd = cmd.clone();
            }
            (None, None) => {
                c.config.entrypoint = run.entrypoint.clone().unwrap_or_default();
                c.config.cmd = run.cmd.clone().unwrap_or_default();
            }
        }
        if c.config.entrypoint.is_empty() && c.config.cmd.is_empty() {
            return Err(Error::Invalid("No command specified".into()));
        }
        c.config.env = crate::model::env_over(&req.config.env, run.env.as_deref().unwrap_or_default());
        c.config.working_dir =
            req.working_dir.clone().filter(|w| !w.is_empty()).or(run.working_dir.clone()).unwrap_or_default();
        if !c.config.working_dir.is_empty() && !c.config.working_dir.starts_with('/') {
            return Err(Error::Invalid(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                c.config.working_dir
            )));
        }
        c.config.user = req.user.clone().filter(|u| !u.is_empty()).or(run.user.clone()).unwrap_or_default();
        if c.config.stop_signal.is_none() {
            c.config.stop_signal = run.stop_signal.clone();
        }
        if let Some(s) = &c.config.stop_signal {
            signal_number(s)?;
        }
        c.config.healthcheck = crate::health::merge(req.config.healthcheck.clone(), run.healthcheck.as_ref())?;
        if let Some(h) = &c.config.healthcheck {
            crate::health::verify(h)?;
        }
        if c.config.shell.is_empty() {
            c.config.shell = run.shell.clone().unwrap_or_default();
        }
        let mut labels = run.labels.clone().unwrap_or_default();
        labels.extend(req.config.labels.clone());
        c.config.labels = labels;
        let mut exposed: std::collections::BTreeSet<String> =
            run.exposed_ports.clone().unwrap_or_default().into_keys().collect();
        for p in &req.config.exposed_ports {
            exposed.insert(p.parse::<berth_network::ports::Port>()?.to_string());
        }
        for p in req.host.port_bindings.keys() {
            exposed.insert(p.parse::<berth_network::ports::Port>()?.to_string());
        }
        c.config.exposed_ports = exposed.into_iter().collect();
        // The image's VOLUMEs and the request's, each once.
        let mut volumes: std::collections::BTreeSet<String> =
            run.volumes.clone().unwrap_or_default().into_keys().collect();
        volumes.extend(req.config.volumes.iter().cloned());
        c.config.volumes = volumes.into_iter().collect();
        if c.config.hostname.is_empty() && (c.host.network_mode == "host" || c.host.uts_mode == "host") {
            // As moby: on the host's network the host's name is the
            // container's.
            c.config.hostname =
                std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        }
        if c.config.hostname.is_empty() {
            c.config.hostname = c.id[..12].to_owned();
        }
        if c.host.network_mode.is_empty() || c.host.network_mode == "default" {
            c.host.network_mode = "bridge".into();
        }
        self.plan_namespaces(&mut c, !req.config.hostname.is_empty())?;
        if c.host.runtime.is_empty() {
            c.host.runtime = self.cfg.runtime_name.clone();
        }
        if !self.knows_runtime(&c.host.runtime) {
            return Err(Error::Invalid(format!("unknown or invalid runtime name: {}", c.host.runtime)));
        }
        match c.host.isolation.as_str() {
            "" | "default" => {}
            i => return Err(Error::Invalid(format!("Invalid isolation: \"{i}\" - linux only supports 'default'"))),
        }
        crate::verify::host_config(&c.host)?;
        crate::devices::verify(&c)?;
        self.verify_realtime(&c)?;
        // Docker's default swap limit, recorded so inspect shows it.
        if c.host.resources.memory > 0 && c.host.resources.memory_swap == 0 {
            c.host.resources.memory_swap = c.host.resources.memory * 2;
        }
        self.plan_networks(&mut c, &req)?;
        self.plan_links(&mut c)?;
        if !c.host.storage_opt.is_empty() {
            return Err(Error::Invalid(
                "--storage-opt is supported only for overlay over xfs with 'pquota' mount option".into(),
            ));
        }
        if c.host.log_config.driver.is_empty() {
            c.host.log_config.driver = "json-file".into();
        }
        if c.host.log_config.driver != "json-file" && c.host.log_config.driver != "none" {
            return Err(Error::Invalid(format!(
                "logger: no log driver named '{}' is registered",
                c.host.log_config.driver
            )));
        }
        spec::capabilities(&c)?;
        let cri_log = req.cri_log_path.as_ref().filter(|p| !p.is_empty());
        if let Some(p) = cri_log {
            if !p.starts_with('/') {
                return Err(Error::Invalid(format!("the log path {p:?} is not absolute")));
            }
            c.host.log_config =
                crate::model::LogConfig { driver: crate::model::LOG_CRI.into(), options: Default::default() };
        }
        c.path = c.config.entrypoint.iter().chain(&c.config.cmd).next().cloned().unwrap_or_default();
        c.args = c.config.entrypoint.iter().chain(&c.config.cmd).skip(1).cloned().collect();
        let dir = self.container_dir(&c.id);
        c.log_path = match cri_log {
            Some(p) => p.clone(),
            None => dir.join(format!("{}-json.log", c.id)).display().to_string(),
        };
        c.hostname_path = dir.join("hostname").display().to_string();
        c.hosts_path = dir.join("hosts").display().to_string();
        c.resolv_conf_path = dir.join("resolv.conf").display().to_string();
        // As moby: a container on another's network has that one's files.
        let [hostname, hosts, resolv] = self.etc_files(&c).map(|p| p.display().to_string());
        (c.hostname_path, c.hosts_path, c.resolv_conf_path) = (hostname, hosts, resolv);
        c.state = State { started_at: ZERO_TIME.into(), finished_at: ZERO_TIME.into(), ..Default::default() };

        // Name and table entry together, so two creates cannot take one name.
        let entry = {
            let mut map = self.containers.lock().map_err(poisoned)?;
            if map.contains_key(&c.id) {
                return Err(Error::Conflict(format!("the container id {} is in use", c.id)));
            }
            let taken = |n: &str| map.values().find(|e| e.rec.lock().map(|r| r.name == n).unwrap_or(false)).cloned();
            c.name = match &req.name {
                Some(n) if !n.is_empty() => {
                    let n = names::validate(n)?;
                    if let Some(other) = taken(&n) {
                        let oid = other.rec.lock().map(|r| r.id.clone()).unwrap_or_default();
                        return Err(Error::Conflict(format!(
                            "Conflict. The container name \"{n}\" is already in use by container \"{oid}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    n
                }
                _ => {
                    let mut attempt = 0;
                    loop {
                        let n = format!("/{}", names::generate(attempt));
                        if taken(&n).is_none() {
                            break n;
                        }
                        attempt += 1;
                    }
                }
            };
            let e = new_entry(c.clone());
            map.insert(c.id.clone(), e.clone());
            e
        };
        let made = match self.plan_mounts(&mut c).and_then(|()| crate::verify::mount_destinations(&c.mount_points)) {
            Ok(()) => {
                // Seen at once by a volume's removal, which it holds off.
                if let Ok(mut r) = entry.rec.lock() {
                    r.mount_points = c.mount_points.clone();
                }
                self.make_container_files(&mut c, top).await
            }
            Err(e) => Err(e),
        };
        if let Err(err) = made {
            if let Ok(mut m) = self.containers.lock() {
                m.remove(&c.id);
            }
            self.drop_anonymous(&c);
            if let Some(rw) = &c.rw_layer {
                let _ = self.images.layers.remove_rw(rw);
            }
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
        if let Ok(mut r) = entry.rec.lock() {
            r.rw_layer = c.rw_layer.clone();
        }
        tracing::debug!(container = %c.id, name = %c.name, image = %c.config.image, "container created");
        self.event(&c, "create");
        Ok(c)
    }

    /// The container's directory, writable layer (set in `c` as soon as it
    /// exists, so a failure after it can remove it) and record.
    async fn make_container_files(&self, c: &mut Container, top: Option<berth_image::digest::ChainId>) -> Result<()> {
        let dir = self.container_dir(&c.id);
        berth_core::perm::ensure_dir(&dir, berth_core::perm::SHARED_DIR)
            .map_err(Error::io(format!("create {}", dir.display())))?;
        // A pod sandbox has no layer: it runs in the engine's shared empty
        // root (see `sandbox_root`).
        if !c.pod_sandbox {
            let images = self.images.clone();
            let id = c.id.clone();
            let rw = tokio::task::spawn_blocking(move || images.layers.create_rw(&id, top.as_ref()))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            c.rw_layer = Some(rw);
        }
        // Its own files, unless it has another's (network container:X).
        if Path::new(&c.hosts_path).starts_with(&dir) {
            std::fs::write(&c.hostname_path, format!("{}\n", c.config.hostname))
                .map_err(Error::io("write hostname"))?;
            std::fs::write(&c.hosts_path, crate::network::hosts_file(c)).map_err(Error::io("write hosts"))?;
            std::fs::write(&c.resolv_conf_path, crate::network::resolv_conf(c, self.wants_dns(c)))
                .map_err(Error::io("write resolv.conf"))?;
        }
        self.save(c)
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        if let Ok(mut b) = e.backoff.lock() {
            b.reset();
        }
        // A start by the user begins the policy's count again, as Docker's
        // ResetRestartManager does.
        if let Ok(mut r) = e.rec.lock() {
            r.restart_count = 0;
        }
        self.start_locked(&e).await
    }

    pub(crate) async fn start_locked(self: &Arc<Self>, e: &Arc<Entry>) -> Result<()> {
        self.prime_cgroups();
        // An exit being torn down (its root unmounted, its bundle moved
        // away) finishes before this start uses either.
        let _exit_done = e.exiting.lock().await;
        let mut c = e.rec.lock().map_err(poisoned)?.clone();
        match c.state.status {
            Status::Running => return Err(Error::NotModified("container already started".into())),
            Status::Paused => {
                return Err(Error::Conflict("cannot start a paused container, try unpause instead".into()))
            }
            Status::Removing | Status::Dead => {
                return Err(Error::Conflict("container is marked for removal and cannot be started".to_string()))
            }
            _ => {}
        }
        let result = self.launch(&mut c, e).await;
        match result {
            Ok(()) => {
                tracing::debug!(container = %c.id, pid = c.state.pid, "container started");
                self.health_start(e, true);
                self.event(&c, "start");
                Ok(())
            }
            Err(err) => {
                let msg = err.to_string();
                tracing::debug!(container = %c.id, "start failed: {msg}");
                let code = start_exit_code(&msg);
                let _ = self.teardown(&c);
                let mut was_restarting = false;
                if let Ok(mut r) = e.rec.lock() {
                    r.net = Default::default();
                    r.state.error = msg.clone();
                    r.state.exit_code = code;
                    if r.state.status == Status::Restarting {
                        // A restart by policy that failed ends the policy's run.
                        r.state.status = Status::Exited;
                        r.state.finished_at = berth_core::time::now_rfc3339();
                        was_restarting = true;
                    }
                    let _ = self.save_state(&r);
                }
                for p in e.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default() {
                    let _ = p.tx.send(Err(Error::Conflict(msg.clone())));
                }
                e.changed.send_modify(|g| {
                    g.exit_code = code;
                    g.exits += u64::from(was_restarting);
                });
                if c.host.auto_remove {
                    // As Docker: a container that could not start is removed
                    // when it was to be removed at its end.
                    let engine = self.clone();
                    let id = c.id.clone();
                    tokio::spawn(async move {
                        let _ = engine.remove(&id, true, true).await;
                    });
                }
                Err(match err {
                    Error::Internal(m) => Error::Invalid(m),
                    other => other,
                })
            }
        }
    }

    /// Mount the root, write the bundle, start a shim and let it run.
    async fn launch(self: &Arc<Self>, c: &mut Container, e: &Arc<Entry>) -> Result<()> {
        let merged = if c.pod_sandbox {
            self.sandbox_root()?
        } else {
            let m = self.root_mount(c)?;
            let merged = m.target.clone();
            if !is_mountpoint(&merged) {
                tokio::task::spawn_blocking(move || m.mount()).await.map_err(|e| Error::Internal(e.to_string()))??;
            }
            merged
        };
        if self.volumes_up(c, &merged)? {
            let mut r = e.rec.lock().map_err(poisoned)?;
            r.mount_points = c.mount_points.clone();
            self.save(&r)?;
        }
        let u = user::resolve(&merged, &c.config.user, &c.host.group_add)?;
        if !c.config.working_dir.is_empty() {
            let root = std::fs::File::open(&merged).map_err(Error::io("open rootfs"))?;
            let wd = berth_core::rootfs::open_or_create(
                std::os::fd::AsFd::as_fd(&root),
                std::path::Path::new(&c.config.working_dir),
                berth_core::rootfs::Create::Dir,
            );
            wd.map_err(Error::io(format!("create working directory {}", c.config.working_dir)))?;
        }
        let sd = ShimDir::new(&self.cfg.exec_root, &c.id);
        let _ = std::fs::remove_dir_all(&sd.dir);
        std::os::unix::fs::DirBuilderExt::mode(
            std::fs::DirBuilder::new().recursive(true),
            berth_core::perm::PRIVATE_DIR,
        )
        .create(&sd.dir)
        .map_err(Error::io(format!("create {}", sd.dir.display())))?;
        crate::mounts::check_propagation(c)?;
        let shm = self.shm_source(c)?;
        let subpaths = self.stage_subpaths(c)?;
        let linked = self.resolve_links(c)?;
        let [hostname, hosts, resolv] = self.etc_files(c);
        let etc = spec::Etc {
            hostname: &hostname,
            hosts: &hosts,
            resolv: &resolv,
            shm: shm.as_deref(),
            subpaths: &subpaths,
            link_env: &linked.env,
        };
        let init = self.init_binary();
        let defaults = spec::Defaults {
            cgroup_parent: &self.cfg.cgroup_parent,
            ulimits: &self.cfg.default_ulimits,
            init: &init,
            oom_floor: self.oom_floor,
        };
        let mut s = spec::build(c, &merged, &u, &etc, &defaults)?;
        c.net.link_hosts = linked.hosts;
        self.grant_realtime(c).await?;
        if let Some(path) = self.joined_netns(c)? {
            spec::join_namespace(&mut s, "network", &path);
        }
        if let Some(path) = self.joined_ns(&c.host.pid_mode, "pid", "PID")? {
            spec::join_namespace(&mut s, "pid", &path);
        }
        if let Some(path) = self.joined_ns(&c.host.ipc_mode, "ipc", "IPC")? {
            spec::join_namespace(&mut s, "ipc", &path);
        }
        let body = serde_json::to_vec(&s).map_err(|e| Error::Internal(e.to_string()))?;
        berth_core::perm::write_file(&sd.dir.join("config.json"), &body, berth_core::perm::RECORD)
            .map_err(Error::io("write config.json"))?;
        let log = match c.host.log_config.driver.as_str() {
            "json-file" => Some(proto::LogConfig {
                path: PathBuf::from(&c.log_path),
                max_size: c
                    .host
                    .log_config
                    .options
                    .get("max-size")
                    .and_then(|s| spec::parse_bytes(s))
                    .map(|n| n as u64),
                max_files: c.host.log_config.options.get("max-file").and_then(|s| s.parse().ok()).unwrap_or(1),
                format: proto::LogFormat::JsonFile,
            }),
            crate::model::LOG_CRI => {
                // kubelet's pod log directory, made if it is not there yet.
                if let Some(dir) = std::path::Path::new(&c.log_path).parent() {
                    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
                }
                Some(proto::LogConfig {
                    path: PathBuf::from(&c.log_path),
                    max_size: None,
                    max_files: 1,
                    format: proto::LogFormat::Cri,
                })
            }
            _ => None,
        };
        // With no network to set up in it (the host's, or another
        // container's, made already) and no attacher waiting for its
        // first byte, nothing happens between create and start: the shim
        // starts it at once, which saves a round trip to it.
        let at_once = matches!(
            crate::network::mode(&c.host.network_mode),
            crate::network::Mode::Host | crate::network::Mode::Container(_)
        ) && e.pending.lock().map(|p| p.is_empty()).unwrap_or(false);
        let cfg = ShimConfig {
            version: proto::VERSION,
            id: c.id.clone(),
            bundle: sd.dir.clone(),
            runtime_root: self.runtime_root(),
            runtime: self.runtime_path(&c.host.runtime),
            socket: sd.socket(),
            exit_file: sd.exit_file(),
            pid_file: sd.pid_file(),
            log,
            tty: c.config.tty,
            open_stdin: c.config.open_stdin,
            stdin_once: c.config.stdin_once,
            start: at_once,
            cgroups: self.cgroup_mounts(),
        };
        let (pid, shim_pid) = shim::spawn(&self.cfg.shim, &cfg, &sd, &self.standby).await?;
        if let Err(err) = self.network_up(c, pid).await {
            let _ = shim::call(&sd.socket(), &Request::Signal { signal: 9, all: true }).await;
            let _ = shim::wait_exit(&sd.socket()).await;
            return Err(err);
        }
        // The resolver answers by the record from the process's first query.
        e.rec.lock().map_err(poisoned)?.net = c.net.clone();
        // Attachers that came before start get the output from the first byte.
        let pending = e.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        for p in pending {
            let req = Request::Attach { stdin: p.stdin, stdout: p.stdout, stderr: p.stderr };
            let r = match shim::open(&sd.socket(), &req).await {
                Ok((Reply::Ok, s)) => Ok(s),
                Ok((other, _)) => Err(Error::Internal(format!("attach: {other:?}"))),
                Err(e) => Err(e),
            };
            let _ = p.tx.send(r);
        }
        let started = if at_once { Ok(Reply::Ok) } else { shim::call(&sd.socket(), &Request::Start).await };
        if let Err(err) = started {
            let _ = shim::call(&sd.socket(), &Request::Signal { signal: 9, all: true }).await;
            let _ = shim::wait_exit(&sd.socket()).await;
            return Err(match err {
                Error::Conflict(m) => Error::Internal(m),
                other => other,
            });
        }
        c.state.status = Status::Running;
        c.state.pid = pid;
        c.state.shim_pid = shim_pid;
        c.state.started_at = berth_core::time::now_rfc3339();
        c.state.finished_at = ZERO_TIME.into();
        c.state.exit_code = 0;
        c.state.error.clear();
        c.state.oom_killed = false;
        c.state.stopped_by_user = false;
        {
            let mut r = e.rec.lock().map_err(poisoned)?;
            r.state = c.state.clone();
            r.net = c.net.clone();
            self.save_state(&r)?;
        }
        self.monitor(e.clone(), sd);
        Ok(())
    }

    /// Watch a running container's shim for its exit.
    pub(crate) fn monitor(self: &Arc<Self>, e: Arc<Entry>, sd: ShimDir) {
        let engine = self.clone();
        tokio::spawn(async move {
            let rec = match shim::wait_exit(&sd.socket()).await {
                Ok(r) => r,
                Err(_) => {
                    // The shim is gone; what it wrote before going is the truth.
                    let mut tries = 0;
                    loop {
                        if let Some(r) = sd.read_exit() {
                            break r;
                        }
                        if sd.live_pid().is_none() || tries > 100 {
                            break engine.lost(&e).await;
                        }
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            engine.exited(&e, rec).await;
        });
    }

    /// A container whose shim died without recording an exit: what runs in
    /// it is killed and its runtime state deleted; it exited by SIGKILL.
    pub(crate) async fn lost(self: &Arc<Self>, e: &Arc<Entry>) -> ExitRecord {
        let id = e.rec.lock().map(|r| r.id.clone()).unwrap_or_default();
        self.reap_off(&id).await;
        ExitRecord { code: crate::reap::LOST, finished_at: berth_core::time::now_rfc3339(), ..Default::default() }
    }

    /// Record an exit, unmount, and act on AutoRemove.
    pub(crate) async fn exited(self: &Arc<Self>, e: &Arc<Entry>, rec: ExitRecord) {
        self.health_stop(e);
        let exiting = e.exiting.lock().await;
        let (c, again) = {
            let Ok(mut r) = e.rec.lock() else { return };
            let ran = crate::restart::run_time(&r, &rec.finished_at);
            let again = e.backoff.lock().ok().and_then(|mut b| b.decide(&r, rec.code, ran));
            if again.is_some() {
                r.state.status = Status::Restarting;
                r.restart_count += 1;
            } else {
                r.state.status = Status::Exited;
            }
            r.state.pid = 0;
            r.state.shim_pid = 0;
            r.state.exit_code = rec.code;
            r.state.oom_killed = rec.oom_killed;
            r.state.finished_at = rec.finished_at.clone();
            let net = std::mem::take(&mut r.net);
            for a in net.attachments.values() {
                if let Some(ip) = a.ip {
                    r.last_ips.insert(a.network_id.clone(), ip);
                }
            }
            let _ = self.save_state(&r);
            let mut c = r.clone();
            c.net = net;
            (c, again)
        };
        let _ = self.teardown(&c);
        drop(exiting);
        tracing::debug!(container = %c.id, code = rec.code, restart = again.is_some(), "container exited");
        if rec.oom_killed {
            self.event(&c, "oom");
        }
        self.event_with(&c, "die", [("exitCode", rec.code.to_string())]);
        // Waiters learn of every exit, one the policy restarts too, as
        // moby's SetRestarting tells them; the container stays "running"
        // for rm and stop.
        e.changed.send_modify(|g| {
            g.exits += 1;
            g.exit_code = rec.code;
        });
        if let Some(delay) = again {
            self.restart_later(e.clone(), delay);
            return;
        }
        if c.host.auto_remove {
            let engine = self.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                let _ = engine.remove(&id, true, true).await;
            });
        }
    }

    /// The root every pod sandbox runs in, read-only: empty but for the
    /// mount points of its /proc, /dev and init. Nothing joins a sandbox's
    /// mount namespace, so one directory serves all of them, with no layer
    /// to make, mount and delete per pod.
    fn sandbox_root(&self) -> Result<PathBuf> {
        let root = self.cfg.exec_root.join("sandbox-root");
        let init = root.join(spec::INIT_PATH.trim_start_matches('/'));
        if init.exists() {
            return Ok(root);
        }
        // Open to the sandbox's user, who may not be root; the exec root
        // around it is the daemon's alone.
        let err = |p: &Path| Error::io(format!("create {}", p.display()));
        for d in ["", "proc", "dev", "sbin"] {
            let p = root.join(d);
            berth_core::perm::ensure_dir(&p, 0o755).map_err(err(&p))?;
        }
        berth_core::perm::write_file(&init, b"", 0o644).map_err(err(&init))?;
        Ok(root)
    }

    /// How the container's root is mounted.
    fn root_mount(&self, c: &Container) -> Result<berth_image::OverlayMount> {
        Ok(self.images.layers.mount_of(&layer_of(c)?)?)
    }

    /// Unmount the root and remove the bundle of a container that stopped.
    /// The bundle goes whatever happens; the answer is the unmount's.
    pub(crate) fn teardown(&self, c: &Container) -> Result<()> {
        self.dns.stop(&c.id);
        self.proxy_down(&c.id);
        self.shm_down(&c.id);
        self.unstage_subpaths(&c.id);
        self.disconnect_blocking(&c.id, &c.net);
        self.volumes_down(c);
        let unmounted = match self.root_mount(c) {
            Ok(m) if is_mountpoint(&m.target) => m.unmount().map_err(Error::from),
            _ => Ok(()),
        };
        let sd = ShimDir::new(&self.cfg.exec_root, &c.id);
        // Into the trash when the exec root shares its file system (else
        // it is on a tmpfs, where deleting costs little); a restarted
        // container's next shim uses the same directory name.
        let to = self.trash_dir().join(format!("{}-{}", c.id, &names::new_id()[..16]));
        if let Ok(Some(aside)) = berth_core::atomic::move_aside(&sd.dir, &to) {
            self.empty_trash(vec![aside]);
        }
        unmounted
    }

    /// Stop a container waiting to be restarted by its policy: it is
    /// exited, as the user wants, and its waiters are told.
    fn cancel_restart(&self, e: &Entry) -> Result<()> {
        let code = {
            let mut r = e.rec.lock().map_err(poisoned)?;
            r.state.status = Status::Exited;
            r.state.stopped_by_user = true;
            self.save(&r)?;
            r.state.exit_code
        };
        e.changed.send_modify(|g| {
            g.exits += 1;
            g.exit_code = code;
        });
        Ok(())
    }

    pub(crate) fn shim_socket(&self, e: &Entry) -> Result<(PathBuf, Container)> {
        let c = e.rec.lock().map_err(poisoned)?.clone();
        if !c.state.status.is_live() {
            return Err(Error::Conflict(format!("Container {} is not running", c.id)));
        }
        Ok((ShimDir::new(&self.cfg.exec_root, &c.id).socket(), c))
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(self: &Arc<Self>, key: &str, signal: Option<&str>) -> Result<()> {
        let e = self.find(key)?;
        let sig = signal_number(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let restarting = e.rec.lock().map_err(poisoned)?.state.status == Status::Restarting;
        if restarting && sig == 9 {
            // Under the lock a restart by policy takes, so it cannot start
            // the container in between.
            let _op = e.op.lock().await;
            if e.rec.lock().map_err(poisoned)?.state.status == Status::Restarting {
                return self.cancel_restart(&e);
            }
        }
        let (sock, c) = self.shim_socket(&e)?;
        if c.state.status == Status::Paused {
            // A frozen process takes no signal until thawed (Docker's rule).
            return Err(Error::Conflict(format!(
                "cannot kill container: {0}: Container {0} is paused. Unpause the container before stopping or killing",
                c.id
            )));
        }
        // As Docker: a fatal signal (SIGKILL or the stop signal) turns the
        // restart policy off until the next start; others leave it on.
        let stop_sig = signal_number(c.config.stop_signal.as_deref().unwrap_or("SIGTERM")).unwrap_or(15);
        if sig == 9 || sig == stop_sig {
            if let Ok(mut r) = e.rec.lock() {
                r.state.stopped_by_user = true;
                self.save(&r)?;
            }
        }
        let mut rx = e.changed.subscribe();
        let before = rx.borrow_and_update().exits;
        shim::call(&sock, &Request::Signal { signal: sig, all: false }).await?;
        self.event_with(&c, "kill", [("signal", sig.to_string())]);
        if sig == 9 {
            // As Docker's Kill: SIGKILL returns once the exit is recorded
            // and torn down (10 s at most), so an `rm` right after it finds
            // the container stopped.
            let _ = tokio::time::timeout(Duration::from_secs(10), next_exit(&mut rx, before)).await;
        }
        Ok(())
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after
    /// the timeout.
    pub async fn stop(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        self.stop_locked(&e, timeout, signal).await
    }

    async fn stop_locked(self: &Arc<Self>, e: &Arc<Entry>, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let c = e.rec.lock().map_err(poisoned)?.clone();
        if c.state.status == Status::Restarting {
            self.cancel_restart(e)?;
            self.event(&c, "stop");
            return Ok(());
        }
        if !c.state.status.is_live() {
            return Err(Error::NotModified("container already stopped".into()));
        }
        if let Ok(mut r) = e.rec.lock() {
            r.state.stopped_by_user = true;
            let _ = self.save(&r);
        }
        let sock = ShimDir::new(&self.cfg.exec_root, &c.id).socket();
        let sig = signal_number(signal.or(c.config.stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
        let t = timeout.or(c.config.stop_timeout).unwrap_or(10);
        let mut rx = e.changed.subscribe();
        let before = rx.borrow_and_update().exits;
        if c.state.status == Status::Paused {
            let _ = shim::call(&sock, &Request::Resume).await;
        }
        let _ = shim::call(&sock, &Request::Signal { signal: sig, all: false }).await;
        // As Docker: each signal of a stop is a kill event, before the die.
        self.event_with(&c, "kill", [("signal", sig.to_string())]);
        let exited = next_exit(&mut rx, before);
        let in_time = if t < 0 {
            exited.await;
            true
        } else {
            tokio::time::timeout(Duration::from_secs(t as u64), exited).await.is_ok()
        };
        if !in_time {
            let _ = shim::call(&sock, &Request::Signal { signal: 9, all: true }).await;
            self.event_with(&c, "kill", [("signal", "9".to_string())]);
            next_exit(&mut rx, before).await;
        }
        self.event(&c, "stop");
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        if let Ok(mut b) = e.backoff.lock() {
            b.reset();
        }
        match self.stop_locked(&e, timeout, signal).await {
            Ok(()) => {}
            Err(err) if err.is_not_modified() => {}
            Err(err) => return Err(err),
        }
        self.start_locked(&e).await?;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        self.event(&c, "restart");
        Ok(())
    }

    /// `POST /containers/{id}/pause` and `unpause`.
    pub async fn pause(self: &Arc<Self>, key: &str, pause: bool) -> Result<()> {
        let e = self.find(key)?;
        let (sock, c) = self.shim_socket(&e)?;
        match (c.state.status, pause) {
            (Status::Paused, true) => return Err(Error::Conflict(format!("Container {} is already paused", c.id))),
            (Status::Running, false) => return Err(Error::Conflict(format!("Container {} is not paused", c.id))),
            _ => {}
        }
        shim::call(&sock, if pause { &Request::Pause } else { &Request::Resume }).await?;
        if let Ok(mut r) = e.rec.lock() {
            r.state.status = if pause { Status::Paused } else { Status::Running };
            let _ = self.save_state(&r);
        }
        // A frozen container is not checked; its status stays as it was
        // until it runs again (moby's updateHealthMonitor).
        if pause {
            self.health_stop(&e);
        } else {
            self.health_start(&e, false);
        }
        self.event(&c, if pause { "pause" } else { "unpause" });
        Ok(())
    }

    /// `POST /containers/{id}/wait`: registers at once (so an exit right
    /// after this call is not missed) and returns what resolves to the exit
    /// code and error once `cond` holds.
    pub fn waiter(
        self: &Arc<Self>,
        key: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = (i32, String)> + Send + 'static> {
        let e = self.find(key)?;
        let mut rx = e.changed.subscribe();
        let before = *rx.borrow_and_update();
        let (live, code, error) = {
            let r = e.rec.lock().map_err(poisoned)?;
            (r.state.status.is_running(), r.state.exit_code, r.state.error.clone())
        };
        let now = cond == WaitCondition::NotRunning && !live;
        Ok(async move {
            if now {
                return (code, error);
            }
            loop {
                let g = *rx.borrow_and_update();
                let done = match cond {
                    WaitCondition::Removed => g.removed,
                    _ => g.exits > before.exits || g.removed,
                };
                if done || rx.changed().await.is_err() {
                    return (g.exit_code, String::new());
                }
            }
        })
    }

    /// `DELETE /containers/{id}`; with `volumes`, its anonymous volumes go
    /// too (`rm -v`, and `--rm` at its end).
    pub async fn remove(self: &Arc<Self>, key: &str, force: bool, volumes: bool) -> Result<()> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        if c.state.status == Status::Removing {
            return Err(Error::Conflict(format!("removal of container {} is already in progress", c.id)));
        }
        if c.state.status == Status::Restarting {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"{}\": container is restarting: stop the container before removing or force remove",
                    c.name
                )));
            }
            self.cancel_restart(&e)?;
        }
        if c.state.status.is_live() {
            if !force {
                let what = if c.state.status == Status::Paused { "paused" } else { "running" };
                return Err(Error::Conflict(format!(
                    "cannot remove container \"{}\": container is {what}: stop the container before removing or force remove",
                    c.name
                )));
            }
            let mut rx = e.changed.subscribe();
            let before = rx.borrow_and_update().exits;
            if let Ok(mut r) = e.rec.lock() {
                r.state.stopped_by_user = true;
            }
            let sock = ShimDir::new(&self.cfg.exec_root, &c.id).socket();
            if c.state.status == Status::Paused {
                let _ = shim::call(&sock, &Request::Resume).await;
            }
            let _ = shim::call(&sock, &Request::Signal { signal: 9, all: true }).await;
            next_exit(&mut rx, before).await;
        }
        if let Ok(mut r) = e.rec.lock() {
            r.state.status = Status::Removing;
        }
        // Its checks hold the entry; they end with it.
        self.health_stop(&e);
        // Whatever the record says, nothing of the container may outlive
        // it: a shim or processes a crash left, runtime state, cgroups.
        self.reap_off(&c.id).await;
        if let Err(err) = self.remove_files(&c).await {
            // As Docker: a container that could not be removed is dead, and
            // a later `rm` tries again.
            if let Ok(mut r) = e.rec.lock() {
                r.state.status = Status::Dead;
                r.state.error = err.to_string();
                let _ = self.save_state(&r);
            }
            return Err(err);
        }
        if let Ok(mut m) = self.containers.lock() {
            m.remove(&c.id);
        }
        self.forget_execs(&c.id);
        if volumes {
            self.drop_anonymous(&c);
        }
        self.event(&c, "destroy");
        e.changed.send_modify(|g| g.removed = true);
        Ok(())
    }

    /// Unmount, then remove the writable layer and the container directory.
    /// Both are renamed into the trash, and deleted there after the removal
    /// is answered (see `Engine::empty_trash`).
    async fn remove_files(&self, c: &Container) -> Result<()> {
        // A root still mounted stays where it is: moved into the trash, its
        // mount would outlive the container's record.
        self.teardown(c)?;
        let trash = self.trash_dir();
        let mut aside = Vec::new();
        if let Some(rw) = &c.rw_layer {
            aside.extend(self.images.layers.remove_rw_aside(rw, &trash)?);
        }
        let dir = self.container_dir(&c.id);
        aside.extend(
            berth_core::atomic::move_aside(&dir, &trash.join(&c.id))
                .map_err(Error::io(format!("remove {}", dir.display())))?,
        );
        self.empty_trash(aside);
        Ok(())
    }

    /// `POST /containers/{id}/attach`: a connection to the container's
    /// stdio. Before start it waits for the start, so no output is missed.
    pub async fn attach(self: &Arc<Self>, key: &str, stdin: bool, stdout: bool, stderr: bool) -> Result<AttachStream> {
        let e = self.find(key)?;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        let tty = c.config.tty;
        if c.state.status.is_live() {
            let sock = ShimDir::new(&self.cfg.exec_root, &c.id).socket();
            return match shim::open(&sock, &Request::Attach { stdin, stdout, stderr }).await? {
                (Reply::Ok, stream) => Ok(AttachStream { stream, tty }),
                (other, _) => Err(Error::Internal(format!("attach: {other:?}"))),
            };
        }
        if c.state.status == Status::Created || c.state.status == Status::Exited {
            let (tx, rx) = oneshot::channel();
            e.pending.lock().map_err(poisoned)?.push(PendingAttach { stdin, stdout, stderr, tx });
            let stream = rx.await.map_err(|_| Error::Conflict("the container was removed".into()))??;
            return Ok(AttachStream { stream, tty });
        }
        Err(Error::Conflict(format!("You cannot attach to a {} container", c.state.status.as_str())))
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(self: &Arc<Self>, key: &str, width: u16, height: u16) -> Result<()> {
        let e = self.find(key)?;
        let (sock, _) = self.shim_socket(&e)?;
        shim::call(&sock, &Request::Resize { width, height }).await.map(drop)
    }

    /// `POST /containers/{id}/rename`.
    pub fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let e = self.find(key)?;
        let n = names::validate(new_name)?;
        let map = self.containers.lock().map_err(poisoned)?;
        if let Some(other) = map.values().find(|o| o.rec.lock().map(|r| r.name == n).unwrap_or(false)) {
            let oid = other.rec.lock().map(|r| r.id.clone()).unwrap_or_default();
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"{n}\" is already in use by container \"{oid}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let mut r = e.rec.lock().map_err(poisoned)?;
        r.name = n;
        self.save(&r)?;
        let c = r.clone();
        drop(r);
        drop(map);
        self.event(&c, "rename");
        Ok(())
    }

    /// Open the log file again after kubelet renamed it away (CRI's
    /// ReopenContainerLog); the container must be running.
    pub async fn reopen_log(&self, key: &str) -> Result<()> {
        let c = self.find(key)?.rec.lock().map_err(poisoned)?.clone();
        if !c.state.status.is_live() {
            return Err(Error::Conflict(format!("container {} is not running", c.id)));
        }
        let sock = ShimDir::new(&self.cfg.exec_root, &c.id).socket();
        shim::call(&sock, &Request::ReopenLog).await.map(drop)
    }

    /// Stream the container's log.
    pub fn logs(
        self: &Arc<Self>,
        key: &str,
        o: crate::logs::LogOptions,
    ) -> Result<tokio::sync::mpsc::Receiver<crate::logs::LogLine>> {
        let e = self.find(key)?;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        if c.host.log_config.driver != "json-file" && c.host.log_config.driver != crate::model::LOG_CRI {
            return Err(Error::Invalid(format!(
                "configured logging driver does not support reading: {}",
                c.host.log_config.driver
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let entry = e.clone();
        crate::logs::read(PathBuf::from(&c.log_path), o, tx, move || {
            entry.rec.lock().map(|r| r.state.status.is_running()).unwrap_or(false)
        });
        Ok(rx)
    }
}

/// Docker's exit code for a process that could not be started: 127 when
/// the command is missing, 126 when it cannot be run, 128 otherwise.
pub(crate) fn start_exit_code(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        128
    }
}

/// Wait until the exit count passes `before` (or the container is gone).
async fn next_exit(rx: &mut tokio::sync::watch::Receiver<Generation>, before: u64) {
    while rx.borrow_and_update().exits == before {
        if rx.changed().await.is_err() {
            break;
        }
    }
}

pub(crate) fn is_mountpoint(p: &std::path::Path) -> bool {
    // statx says so of any mount, a bind of a directory on the same file
    // system among them (an empty image's root); the device numbers tell
    // only where statx cannot.
    if let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())) {
        // SAFETY: a zeroed statx buffer is valid for the kernel to fill.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a buffer of statx's size.
        let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, 0, &mut stx) };
        let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
        if r == 0 && stx.stx_attributes_mask & bit != 0 {
            return stx.stx_attributes & bit != 0;
        }
    }
    let (Ok(a), Some(Ok(b))) = (std::fs::metadata(p), p.parent().map(std::fs::metadata)) else { return false };
    use std::os::unix::fs::MetadataExt;
    a.dev() != b.dev()
}

/// The id a caller chose, if it is one [`names::new_id`] could have made;
/// a new one otherwise.
fn container_id(given: Option<&str>) -> Result<String> {
    match given {
        Some(id) if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => Ok(id.to_owned()),
        Some(id) => Err(Error::Invalid(format!("invalid container id {id:?}: it must be 64 lowercase hex digits"))),
        None => Ok(names::new_id()),
    }
}

/// The container's writable layer; a pod sandbox has none, and what would
/// read or change its files is refused by name.
pub(crate) fn layer_of(c: &Container) -> Result<berth_image::RwLayer> {
    match &c.rw_layer {
        Some(rw) => Ok(rw.clone()),
        None if c.pod_sandbox => {
            Err(Error::Conflict(format!("container {} is a pod sandbox, which has no file system of its own", c.id)))
        }
        None => Err(Error::Internal(format!("container {} has no layer", c.id))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_id_is_taken_only_in_the_engine_s_own_form() {
        let id = names::new_id();
        assert_eq!(container_id(Some(&id)).unwrap(), id);
        assert_eq!(container_id(None).unwrap().len(), 64);
        for bad in ["", "abc", "../../etc", &id.to_uppercase(), &format!("{id}0"), &format!("{}/", &id[1..])] {
            assert!(matches!(container_id(Some(bad)), Err(Error::Invalid(_))), "{bad:?}");
        }
    }
}
