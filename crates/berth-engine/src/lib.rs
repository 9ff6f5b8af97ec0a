//! berth's engine: containers as records with a lifecycle, run by one
//! berth-shim each. It turns a create request and an image into a record,
//! the record into an OCI bundle, supervises the shim that runs it, and
//! finds every container again when the daemon restarts.

pub mod build;
mod containers;
mod copy;
mod devices;
mod dns;
mod endpoint;
mod error;
pub mod events;
mod exec;
mod health;
mod links;
pub mod logs;
pub mod model;
mod mounts;
pub mod names;
pub mod network;
mod nsmodes;
mod primer;
mod proxy;
mod pull;
mod realtime;
mod reap;
pub mod record;
mod restart;
mod restore;
pub mod seccomp;
mod shim;
mod snapshot;
pub mod spec;
pub mod stats;
pub mod top;
mod update;
pub mod user;
mod verify;
pub mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_core::atomic::Durability;
use berth_image::images::ImageStore;

pub use containers::{AttachStream, WaitCondition};
pub use error::{Error, Result};
pub use exec::{ExecConfig, ExecInfo};
pub use snapshot::CommitRequest;
pub use update::Update;

/// berth-init, built statically by the build script.
static INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-init"));

/// What the engine is given.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The berth-shim binary.
    pub shim: PathBuf,
    /// The default runtime: `berth` (built in), `runc`, one of `runtimes`,
    /// or the path of a runc-compatible binary.
    pub runtime_name: String,
    /// Runtimes a container may name (`HostConfig.Runtime`), from
    /// daemon.json's `runtimes`, besides `berth` (built in) and `runc`.
    pub runtimes: std::collections::BTreeMap<String, PathBuf>,
    pub cgroup_parent: String,
    /// The real-time CPU budget (µs per period) granted to the cgroup
    /// parent for containers to share; 0: none (berthd `--cpu-rt-*`).
    pub cpu_rt_period: u64,
    pub cpu_rt_runtime: i64,
    pub default_ulimits: Vec<model::Ulimit>,
    pub network: berth_network::store::Config,
    /// Mirrors, insecure registries, certificates, download concurrency.
    pub registry: berth_registry::RegistryConfig,
}

/// One container as the engine holds it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub rec: Mutex<model::Container>,
    /// Serialises start, stop, restart and remove of this container.
    pub op: tokio::sync::Mutex<()>,
    /// Held while an exit is recorded and torn down, so that a start right
    /// after it waits for the teardown to finish. Operations that wait for
    /// an exit hold `op` and wait on `changed`, so the exit cannot take `op`.
    pub exiting: tokio::sync::Mutex<()>,
    /// Bumped at every exit and at removal, for waiters.
    pub changed: tokio::sync::watch::Sender<Generation>,
    /// Attachers waiting for the container to be created by its shim.
    pub pending: Mutex<Vec<containers::PendingAttach>>,
    /// The restart policy's count and delay since the user's last start.
    pub backoff: Mutex<restart::Backoff>,
    /// Held by the running health checks; dropped to stop them.
    pub health: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    pub exits: u64,
    pub exit_code: i32,
    pub removed: bool,
}

#[derive(Debug)]
pub struct Engine {
    pub cfg: EngineConfig,
    pub images: Arc<ImageStore>,
    pub events: events::Events,
    pub networks: Arc<berth_network::store::Store>,
    pub volumes: Arc<volumes::VolumeStore>,
    pub registries: Arc<berth_registry::Registries>,
    containers: Mutex<HashMap<String, Arc<Entry>>>,
    dns: dns::Resolvers,
    execs: exec::Execs,
    proxies: proxy::Proxies,
    /// The host's cgroup hierarchies as berthd found them at start.
    hierarchies: Option<berth_cgroups::Hierarchies>,
    /// Keeps the cgroup migration lock switched through a burst of
    /// containers (none when there is no cgroup file system).
    primer: Option<Arc<primer::Primer>>,
    /// berthd's own OOM score when it may not go below it (it has no
    /// CAP_SYS_RESOURCE): containers' scores are raised to it, as
    /// containerd's `restrict_oom_score_adj` does.
    oom_floor: Option<i32>,
    /// The shim the next container start takes.
    standby: Arc<shim::Standby>,
    /// The generations of container records' writes.
    record_gen: record::Generations,
}

/// The OOM score floor of this process: its own score, when it lacks
/// CAP_SYS_RESOURCE (bit 24 of CapEff) and so may not lower a score.
fn oom_floor() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let caps = u64::from_str_radix(eff.trim(), 16).ok()?;
    if caps & (1 << 24) != 0 {
        return None;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj").ok()?.trim().parse().ok()
}

impl Engine {
    /// Open the stores under the data root and find the containers of a
    /// previous run.
    pub async fn open(cfg: EngineConfig) -> Result<Arc<Engine>> {
        use berth_core::perm::{ensure_dir, PRIVATE_DIR, SHARED_DIR};
        // Upload spools of loads, imports and copies, and the directories of
        // builds, that a crash cut short: nothing reads them any more.
        let tmp = cfg.data_root.join("tmp");
        let builds = cfg.data_root.join("builds");
        // A build's bind mounts (overlays in its directory) outlive a crash.
        unmount_under(&builds);
        for d in [&tmp, &builds] {
            if let Err(e) = std::fs::remove_dir_all(d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io(format!("empty {}", d.display()))(e));
                }
            }
        }
        for (d, mode) in [
            (tmp, PRIVATE_DIR),
            (builds, PRIVATE_DIR),
            (cfg.data_root.clone(), SHARED_DIR),
            (cfg.data_root.join("containers"), SHARED_DIR),
            (cfg.data_root.join("trash"), PRIVATE_DIR),
            (cfg.exec_root.clone(), PRIVATE_DIR),
            (cfg.exec_root.join("runtime"), PRIVATE_DIR),
        ] {
            ensure_dir(&d, mode).map_err(Error::io(format!("create {}", d.display())))?;
        }
        // One subdirectory per container in each: apart on the disk, each
        // container's files find free inodes at once (see spread_subdirs).
        for d in [cfg.data_root.join("containers"), cfg.exec_root.clone(), cfg.exec_root.join("runtime")] {
            if let Err(e) = berth_core::perm::spread_subdirs(&d) {
                tracing::debug!("spread the subdirectories of {}: {e}", d.display());
            }
        }
        let root = cfg.data_root.clone();
        let images = tokio::task::spawn_blocking(move || ImageStore::open(&root))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let ncfg = cfg.network.clone();
        let networks = tokio::task::spawn_blocking(move || berth_network::store::Store::open(ncfg))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let vols = volumes::VolumeStore::open(&cfg.data_root.join("volumes"))?;
        let registries = Arc::new(berth_registry::Registries::new(cfg.registry.clone()));
        let hierarchies = berth_cgroups::Hierarchies::detect().ok();
        let engine = Arc::new(Engine {
            cfg,
            registries,
            images: Arc::new(images),
            events: events::Events::default(),
            networks: Arc::new(networks),
            volumes: Arc::new(vols),
            containers: Mutex::new(HashMap::new()),
            dns: dns::Resolvers::default(),
            execs: exec::Execs::default(),
            proxies: proxy::Proxies::default(),
            primer: hierarchies.as_ref().and_then(|h| h.own_procs()).map(|p| primer::Primer::new(p, primer::LINGER)),
            hierarchies,
            oom_floor: oom_floor(),
            standby: Arc::default(),
            record_gen: record::Generations::default(),
        });
        engine.install_init()?;
        // What an earlier daemon left in the trash when it stopped.
        let left = std::fs::read_dir(engine.trash_dir()).map(|rd| rd.flatten().map(|e| e.path()).collect());
        engine.empty_trash(left.unwrap_or_default());
        engine.restore().await?;
        // The default bridge, made if missing, and the table as the running
        // containers need it, replacing whatever an earlier daemon left.
        let networks = engine.networks.clone();
        let ready = move || -> berth_network::Result<()> {
            let default = networks.for_mode("bridge")?;
            networks.bridge_index(&default)?;
            networks.apply()
        };
        tokio::task::spawn_blocking(ready).await.map_err(|e| Error::Internal(e.to_string()))??;
        Ok(engine)
    }

    /// A container process is about to join its cgroup: take the kernel's
    /// migration lock now, and keep it switched for a while (see
    /// [`primer`]), so that the grace period its first taking waits for
    /// passes while the container is set up, and later containers of the
    /// same burst wait for none.
    pub(crate) fn prime_cgroups(&self) {
        if let Some(p) = &self.primer {
            p.touch();
        }
    }

    /// The hierarchies berthd found, as its shims are told them.
    pub(crate) fn cgroup_mounts(&self) -> Option<berth_shim_proto::CgroupMounts> {
        let h = self.hierarchies.as_ref()?;
        Some(berth_shim_proto::CgroupMounts {
            v1: h
                .v1
                .iter()
                .map(|m| berth_shim_proto::CgroupV1Mount {
                    controllers: m.controllers.clone(),
                    mountpoint: m.mountpoint.clone(),
                    own_path: m.own_path.clone(),
                })
                .collect(),
            v2: h.v2.clone(),
        })
    }

    /// Where removed containers' directories wait to be deleted: renaming
    /// a directory there is one metadata change, where deleting it is one
    /// per file. Emptied as each removal is answered, and whole when the
    /// daemon starts.
    pub(crate) fn trash_dir(&self) -> PathBuf {
        self.cfg.data_root.join("trash")
    }

    /// Delete `dirs` (in the trash) on a thread of the blocking pool.
    pub(crate) fn empty_trash(&self, dirs: Vec<PathBuf>) {
        if dirs.is_empty() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            for d in dirs {
                let _ = std::fs::remove_dir_all(&d);
            }
        });
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.cfg.data_root.join("containers")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// The static init `--init` containers run as pid 1.
    fn init_binary(&self) -> PathBuf {
        self.cfg.exec_root.join("berth-init")
    }

    /// A new network namespace bound on `file` (made here, empty), made by
    /// berth-init in a process of its own: the daemon never unshares.
    /// Blocks until that process is done (run it on a blocking thread).
    pub fn pin_netns(&self, file: &Path) -> Result<()> {
        if let Some(dir) = file.parent() {
            berth_core::perm::ensure_dir(dir, berth_core::perm::PRIVATE_DIR)
                .map_err(Error::io(format!("create {}", dir.display())))?;
        }
        berth_core::perm::write_file(file, b"", berth_core::perm::RECORD)
            .map_err(Error::io(format!("create {}", file.display())))?;
        let out = std::process::Command::new(self.init_binary())
            .arg("--pin-netns")
            .arg(file)
            .stdin(std::process::Stdio::null())
            .output();
        let failed = match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => Error::Internal(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Err(e) => Error::io("run berth-init --pin-netns")(e),
        };
        let _ = std::fs::remove_file(file);
        Err(failed)
    }

    /// Pin the namespace pinned on `from` on `to` (made here) instead.
    pub fn move_netns(&self, from: &Path, to: &Path) -> Result<()> {
        berth_core::perm::write_file(to, b"", berth_core::perm::RECORD)
            .map_err(Error::io(format!("create {}", to.display())))?;
        let path = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok();
        let (Some(f), Some(t)) = (path(from), path(to)) else {
            let _ = std::fs::remove_file(to);
            return Err(Error::Invalid(format!("{} holds a NUL byte", to.display())));
        };
        // SAFETY: NUL-terminated paths; no file system type or data.
        if unsafe { libc::mount(f.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) } != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_file(to);
            return Err(Error::io(format!("bind {} on {}", from.display(), to.display()))(e));
        }
        // `to` holds the namespace now, whatever becomes of `from`.
        if let Err(e) = self.unpin_netns(from) {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Let a pinned network namespace go (once nothing runs in it, the
    /// kernel frees it) and remove its file; a file already gone is fine.
    pub fn unpin_netns(&self, file: &Path) -> Result<()> {
        if let Ok(c) = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()) {
            // SAFETY: a NUL-terminated path; EINVAL (not mounted) is fine.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("remove {}", file.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Write the init this engine carries, unless the same is there.
    fn install_init(&self) -> Result<()> {
        let path = self.init_binary();
        if std::fs::read(&path).is_ok_and(|b| b == INIT) {
            return Ok(());
        }
        berth_core::atomic::write_atomic(&path, INIT, 0o755).map_err(Error::io(format!("write {}", path.display())))
    }

    /// The binary of the runtime a container named: `None` for berth's own.
    pub(crate) fn runtime_path(&self, name: &str) -> Option<PathBuf> {
        // A record from before runtimes were kept names none: the default.
        let name = if name.is_empty() { self.cfg.runtime_name.as_str() } else { name };
        match name {
            "" | "berth" => None,
            n => Some(self.cfg.runtimes.get(n).cloned().unwrap_or_else(|| PathBuf::from(n))),
        }
    }

    /// Whether a container may name runtime `name`.
    pub(crate) fn knows_runtime(&self, name: &str) -> bool {
        matches!(name, "berth" | "runc") || self.cfg.runtimes.contains_key(name) || name == self.cfg.runtime_name
    }

    fn runtime_root(&self) -> PathBuf {
        self.cfg.exec_root.join("runtime")
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        self.containers.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Find a container by full id, name, or unique id prefix (Docker's order).
    pub(crate) fn find(&self, key: &str) -> Result<Arc<Entry>> {
        let missing = || Error::NotFound(format!("No such container: {key}"));
        if key.is_empty() {
            return Err(missing());
        }
        let map = self.containers.lock().map_err(|_| Error::Internal("container table poisoned".into()))?;
        if let Some(e) = map.get(key) {
            return Ok(e.clone());
        }
        let name = format!("/{}", key.trim_start_matches('/'));
        for e in map.values() {
            if e.rec.lock().map(|r| r.name == name).unwrap_or(false) {
                return Ok(e.clone());
            }
        }
        let hits: Vec<&Arc<Entry>> = map.iter().filter(|(id, _)| id.starts_with(key)).map(|(_, e)| e).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(missing()),
            _ => Err(Error::Invalid(format!("multiple IDs found with provided prefix: {key}"))),
        }
    }

    /// A copy of a container's record.
    pub fn inspect(&self, key: &str) -> Result<model::Container> {
        let e = self.find(key)?;
        let r = e.rec.lock().map_err(|_| Error::Internal("record poisoned".into()))?;
        Ok(r.clone())
    }

    /// Copies of every record, newest first.
    pub fn list(&self) -> Vec<model::Container> {
        let mut out: Vec<model::Container> =
            self.entries().iter().filter_map(|e| e.rec.lock().ok().map(|r| r.clone())).collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        out
    }

    /// Write a container's record after a change the user asked for
    /// (create, rename, update, stop): `container.json`, whose contents are
    /// on disk before it replaces the old one.
    pub(crate) fn save(&self, rec: &model::Container) -> Result<()> {
        let path = self.container_dir(&rec.id).join(record::DURABLE);
        let (_, body) = self.record_body(rec)?;
        berth_core::atomic::replace(&path, &body, 0o600, Durability::Contents)
            .map_err(Error::io(format!("write {}", path.display())))
    }

    /// Write a container's record after a change of its process's state
    /// (started, exited, paused, dead) without waiting for the disk: into
    /// the `state` file's two slots, in place (`berth_core::twoslot`),
    /// which costs no rename and no write-out on the spot. The record read
    /// back is the newest whole one of the two files; if the machine goes
    /// down before this write reaches the disk, the daemon finds the one
    /// before, with no process behind it, and records the container as
    /// exited, as it does for every container that was running then.
    pub(crate) fn save_state(&self, rec: &model::Container) -> Result<()> {
        let path = self.container_dir(&rec.id).join(record::VOLATILE);
        let (generation, body) = self.record_body(rec)?;
        match berth_core::twoslot::write(&path, generation, &body, 0o600) {
            // A record too large for a slot goes whole, as a durable one.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => self.save(rec),
            r => r.map_err(Error::io(format!("write {}", path.display()))),
        }
    }

    /// The record as JSON, with the generation that orders it among the
    /// container's writes.
    fn record_body(&self, rec: &model::Container) -> Result<(u64, Vec<u8>)> {
        let generation = self.record_gen.next();
        Ok((generation, record::body(rec, generation).map_err(|e| Error::Internal(e.to_string()))?))
    }

    pub(crate) fn event(&self, rec: &model::Container, action: &str) {
        self.event_with(rec, action, []);
    }

    /// A container event with attributes beyond its name, image and labels.
    pub(crate) fn event_with<const N: usize>(&self, rec: &model::Container, action: &str, extra: [(&str, String); N]) {
        let mut attrs: std::collections::BTreeMap<String, String> =
            extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        attrs.insert("name".to_owned(), rec.name.trim_start_matches('/').to_owned());
        attrs.insert("image".to_owned(), rec.config.image.clone());
        for (k, v) in &rec.config.labels {
            attrs.insert(k.clone(), v.clone());
        }
        self.events.publish("container", action, &rec.id, attrs);
    }

    /// What a create did otherwise than asked, for its answer's Warnings.
    pub fn create_warnings(&self, c: &model::Container) -> Vec<String> {
        let mut out = vec![];
        if let Some(floor) = self.oom_floor.filter(|f| c.host.oom_score_adj < *f) {
            out.push(format!(
                "OomScoreAdj {} is raised to {floor}: berthd has no CAP_SYS_RESOURCE and may not set a score below its own (as containerd's restrict_oom_score_adj)",
                c.host.oom_score_adj
            ));
        }
        out
    }

    /// Where a binary shipped beside the daemon lives.
    pub fn sibling_binary(name: &str) -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(name)))
            .filter(|p| p.exists())
            .unwrap_or_else(|| Path::new(name).to_owned())
    }
}

/// Detach every mount at or under `dir`, deepest first.
fn unmount_under(dir: &std::path::Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    for p in berth_core::mountinfo::mount_points_under(&info, dir) {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}
