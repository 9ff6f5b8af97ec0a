//! cgroup v1 and v2 for one container: create, join, apply resources, freeze,
//! list pids, count OOM kills, remove.
//!
//! Works on pure v1, pure v2 and hybrid hosts (v1 controllers beside a v2
//! hierarchy that holds few or no controllers). Synchronous, no threads.

mod devices;
mod mounts;
mod prime;
mod resources;
mod stats;
mod v1;
mod v2;

use std::path::{Path, PathBuf};

pub use mounts::{Hierarchies, V1Mount};
pub use resources::{DeviceRule, Resources, Throttle, ThrottleDevice, WeightDevice};
pub use stats::{BlkioEntry, BlkioStats, CpuStats, MemoryStats, PidsStats, Stats};

/// A cgroup error, with the file or directory that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no cgroup file system is mounted")]
    NoCgroupFs,
    #[error("invalid cgroup value for {what}: {value}")]
    Invalid { what: &'static str, value: String },
    #[error("{0} is not supported on this host's cgroup setup")]
    Unsupported(&'static str),
    #[error("{what}: {source}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Bpf { what: &'static str, detail: String, source: std::io::Error },
}

impl berth_core::Kinded for Error {
    fn kind(&self) -> berth_core::ErrorKind {
        match self {
            Error::Io { source, .. } | Error::Bpf { source, .. } => {
                berth_core::ErrorKind::from_errno(source.raw_os_error().unwrap_or(0))
            }
            Error::NoCgroupFs | Error::Unsupported(_) => berth_core::ErrorKind::Unsupported,
            Error::Invalid { .. } => berth_core::ErrorKind::InvalidArgument,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Write a control file. It is opened without O_CREAT: a control the
/// kernel does not have is "No such file or directory", not the
/// "Permission denied" that cgroupfs answers to a create.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    f.write_all(value.as_bytes()).map_err(io_err(path))
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// The directory of the v1 `cpu` hierarchy with real-time group
/// scheduling (`cpu.rt_runtime_us`), if the host has one.
pub fn realtime_cpu(h: &Hierarchies) -> Option<&V1Mount> {
    h.v1.iter().find(|m| m.controllers.iter().any(|c| c == "cpu") && m.mountpoint.join("cpu.rt_runtime_us").exists())
}

/// Give the cgroup `parent` (and each cgroup above it) a real-time budget
/// of `runtime` µs in each `period` µs, so that containers under it may
/// ask for some: on v1 a cgroup's budget comes out of its parent's, which
/// is 0 for a new cgroup (moby's `initCPURtController`). A level that
/// already has as much is left as it is; 0 leaves that value alone.
pub fn grant_realtime(h: &Hierarchies, parent: &str, period: u64, runtime: i64) -> Result<()> {
    let m = realtime_cpu(h).ok_or(Error::Unsupported("real-time group scheduling"))?;
    let base = if parent.starts_with('/') { "/" } else { m.own_path.as_str() };
    let full = Path::new(base).join(parent);
    let mut dir = m.mountpoint.clone();
    for part in full.components().filter(|c| matches!(c, std::path::Component::Normal(_))) {
        dir.push(part);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(io_err(&dir))?;
        }
        let have = |f: &str| read(&dir.join(f)).ok().and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
        if period > 0 && have("cpu.rt_period_us") != period as i64 {
            write(&dir.join("cpu.rt_period_us"), &period.to_string())?;
        }
        if runtime > 0 && have("cpu.rt_runtime_us") < runtime {
            write(&dir.join("cpu.rt_runtime_us"), &runtime.to_string())?;
        }
    }
    Ok(())
}

/// One container's cgroup, in every hierarchy of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// v1 directories, one per mounted hierarchy, with its controllers.
    pub v1: Vec<(Vec<String>, PathBuf)>,
    /// The v2 directory (pure v2, or the unified hierarchy of a hybrid host).
    pub v2: Option<PathBuf>,
}

impl Cgroup {
    /// Where the cgroup named `path` lives on this host. An absolute `path`
    /// is taken from each hierarchy's root; a relative one from the cgroup of
    /// the calling process, as runc does.
    pub fn locate(h: &Hierarchies, path: &str) -> Cgroup {
        let join = |mount: &Path, own: &str| {
            let base = if path.starts_with('/') { "/" } else { own };
            let rel = Path::new(base).join(path);
            mount.join(rel.strip_prefix("/").unwrap_or(&rel))
        };
        Cgroup {
            v1: h.v1.iter().map(|m| (m.controllers.clone(), join(&m.mountpoint, &m.own_path))).collect(),
            v2: h.v2.as_ref().map(|(mp, own)| join(mp, own)),
        }
    }

    /// Create every directory (and, on v1, seed cpuset from the parents).
    pub fn create(&self) -> Result<()> {
        for (ctrls, dir) in &self.v1 {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            if ctrls.iter().any(|c| c == "cpuset") {
                v1::seed_cpuset(dir)?;
            }
        }
        if let Some(dir) = &self.v2 {
            v2::create(dir)?;
        }
        Ok(())
    }

    /// Move process `pid` into the cgroup, in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for (_, dir) in &self.v1 {
            write(&dir.join("cgroup.procs"), &pid)?;
        }
        if let Some(dir) = &self.v2 {
            write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1.iter().find(|(c, _)| c.iter().any(|x| x == controller)).map(|(_, d)| d.as_path())
    }

    /// Whether resources go to v2 files (pure v2) or v1 ones.
    fn is_pure_v2(&self) -> bool {
        self.v1.is_empty() && self.v2.is_some()
    }

    /// Apply resource limits.
    pub fn apply(&self, r: &Resources) -> Result<()> {
        if self.is_pure_v2() {
            if let Some(dir) = &self.v2 {
                v2::apply(dir, r)?;
                return self.apply_hugetlb(r);
            }
        }
        v1::apply(|c| self.v1_dir(c), r)?;
        self.apply_hugetlb(r)
    }

    /// hugetlb limits, wherever the controller is: a v1 hierarchy, or the
    /// v2 one (pure v2, or beside v1 controllers on a hybrid host).
    fn apply_hugetlb(&self, r: &Resources) -> Result<()> {
        for (size, limit) in &r.hugetlb {
            if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(Error::Invalid { what: "linux.resources.hugepageLimits pageSize", value: size.clone() });
            }
            let v1 = self.v1_dir("hugetlb").map(|d| d.join(format!("hugetlb.{size}.limit_in_bytes")));
            let v2 = self.v2.as_ref().map(|d| d.join(format!("hugetlb.{size}.max")));
            let file = v1.into_iter().chain(v2).find(|f| f.exists()).ok_or(Error::Unsupported(
                "linux.resources.hugepageLimits (no hugetlb controller, or no such page size)",
            ))?;
            write(&file, &limit.to_string())?;
        }
        Ok(())
    }

    /// Freeze (`true`) or thaw every process in the cgroup.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if self.is_pure_v2() {
            if let Some(dir) = &self.v2 {
                return v2::freeze(dir, frozen);
            }
        }
        let dir = self.v1_dir("freezer").ok_or(Error::Unsupported("freezing without the freezer controller"))?;
        v1::freeze(dir, frozen)
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        if self.is_pure_v2() {
            if let Some(dir) = &self.v2 {
                return Ok(read(&dir.join("cgroup.freeze"))?.trim() == "1");
            }
        }
        match self.v1_dir("freezer") {
            Some(dir) => Ok(read(&dir.join("freezer.state"))?.trim() == "FROZEN"),
            None => Ok(false),
        }
    }

    /// Every process in the cgroup, children included.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = match (self.v1_dir("pids").or_else(|| self.v1_dir("freezer")), &self.v2) {
            (Some(d), _) => d.to_owned(),
            (None, Some(d)) => d.clone(),
            (None, None) => return Err(Error::NoCgroupFs),
        };
        let mut out = Vec::new();
        collect_pids(&dir, &mut out)?;
        Ok(out)
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64> {
        let (file, key) = match (self.is_pure_v2(), self.v1_dir("memory"), &self.v2) {
            (true, _, Some(d)) => (d.join("memory.events"), "oom_kill"),
            (_, Some(d), _) => (d.join("memory.oom_control"), "oom_kill"),
            _ => return Err(Error::Unsupported("OOM events without the memory controller")),
        };
        Ok(flat_keyed(&read(&file)?, key).unwrap_or(0))
    }

    /// Remove every directory; processes must be gone. Missing ones are fine.
    pub fn destroy(&self) -> Result<()> {
        let dirs = self.v1.iter().map(|(_, d)| d).chain(self.v2.iter());
        let mut first_err = None;
        for d in dirs {
            if let Err(e) = remove_tree(d) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io { path: procs, source: e }),
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&entry.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Remove a cgroup directory and the cgroups below it (cgroup directories
/// hold only control files). The common case, a leaf, costs one rmdir; the
/// directory is read only when the kernel refuses with EBUSY, as it does for
/// a cgroup with children or with tasks still leaving.
fn remove_tree(dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {}
            Err(e) => return Err(Error::Io { path: dir.to_owned(), source: e }),
        }
        let mut children = false;
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
                children = true;
            }
        }
        if !children {
            // A cgroup whose last task just exited stays busy for a moment.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        tries += 1;
    }
}

/// Value of `key` in a flat-keyed file ("key value" lines).
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next().and_then(|v| v.parse().ok())).flatten()
    })
}
