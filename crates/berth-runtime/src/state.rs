//! The state record of a container, kept in `<root>/<id>/state.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_cgroups::Cgroup;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Status as the OCI runtime spec names it, plus runc's `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    pub fn can_pause(self) -> bool {
        matches!(self, Status::Running | Status::Created)
    }
    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }
    pub fn can_exec(self) -> bool {
        matches!(self, Status::Running | Status::Created)
    }
    /// Whether `delete` without `--force` may remove it.
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created | Status::Creating)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime stores about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of `pid` in clock ticks (field 22 of /proc/pid/stat), to
    /// tell our init from a later process that reused the pid.
    pub pid_start: u64,
    pub created: String,
    pub owner: String,
    pub annotations: HashMap<String, String>,
    pub cgroup_v1: Vec<(Vec<String>, PathBuf)>,
    pub cgroup_v2: Option<PathBuf>,
    /// Whether the container has its own pid namespace (then killing init
    /// kills every process; otherwise `delete --force` kills the cgroup).
    pub own_pidns: bool,
    /// Whether the process has a terminal.
    pub terminal: bool,
    /// The hooks of config.json as it was at create, so `start` and
    /// `delete` need not parse the bundle again (and a config edited since
    /// cannot change them).
    pub hooks: Option<oci_spec::runtime::Hooks>,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The state the OCI spec defines for `state`.
#[derive(Debug, Clone, Serialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl Container {
    pub(crate) fn state_file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub(crate) fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    pub fn cgroup(&self) -> Cgroup {
        Cgroup { v1: self.cgroup_v1.clone(), v2: self.cgroup_v2.clone() }
    }

    pub(crate) fn save(&self) -> Result<()> {
        let data = serde_json::to_vec(self).map_err(|e| Error::Invalid(e.to_string()))?;
        berth_core::atomic::replace(
            &Self::state_file(&self.dir),
            &data,
            0o600,
            berth_core::atomic::Durability::Volatile,
        )
        .map_err(Error::io(format!("write state of {}", self.id)))
    }

    /// Load container `id` from the state root.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let id: berth_core::ContainerId = id.parse()?;
        let dir = root.join(id.as_str());
        let file = Self::state_file(&dir);
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(Error::Io { what: format!("read {}", file.display()), source: e }),
        };
        let mut c: Container = serde_json::from_slice(&text)
            .map_err(|e| Error::Invalid(format!("corrupt state {}: {e}", file.display())))?;
        c.dir = dir;
        Ok(c)
    }

    /// Whether our init process is still alive (not a zombie, not a reused pid).
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && matches!(proc_stat(self.pid), Some((state, start)) if state != 'Z' && state != 'X' && start == self.pid_start)
    }

    /// The current status, read from the kernel as runc does.
    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        if self.cgroup().is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: "1.2.0".to_owned(),
            id: self.id.clone(),
            pid: if status == Status::Stopped { 0 } else { self.pid },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// State letter and start time of a process, from /proc/<pid>/stat.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// RFC 3339 time in UTC with nanoseconds, as runc prints `created`.
pub(crate) use berth_core::time::now_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).unwrap_or(('?', 0));
        assert_ne!(state, '?');
        assert!(start > 0);
    }

    #[test]
    fn guards() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(!Status::Running.can_delete());
        assert!(Status::Paused.can_resume());
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z'));
    }
}
