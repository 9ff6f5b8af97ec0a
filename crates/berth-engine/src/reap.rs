//! The forced end of a container that nothing manages any more: its shim
//! died, or a daemon crash cut its start short. Whatever still runs in its
//! cgroup is killed, the shim too, and the runtime's state is deleted by
//! force, so that the next start or `rm` finds nothing in the way. Docker
//! does the same when containerd reports a task lost (exit 137).

use std::time::{Duration, Instant};

use crate::shim::ShimDir;
use crate::Engine;

/// How long the processes of a cgroup get to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The exit code of a container whose shim was lost: SIGKILL's.
pub(crate) const LOST: i32 = 137;

impl Engine {
    /// The shim of `id`, if it still runs: its pid file names it, and its
    /// command line names this container's config (a pid can be reused).
    fn shim_alive(&self, sd: &ShimDir) -> Option<i32> {
        let pid = sd.live_pid()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let want = sd.config();
        let ours = cmd.split(|b| *b == 0).any(|a| a == want.as_os_str().as_encoded_bytes());
        ours.then_some(pid)
    }

    /// Whether anything of `id` is left for [`Engine::reap`]: a shim, a
    /// process in its cgroup, or runtime state.
    pub(crate) fn has_remains(&self, id: &str) -> bool {
        let sd = ShimDir::new(&self.cfg.exec_root, id);
        self.shim_alive(&sd).is_some()
            || self.cgroup_of(id).ok().and_then(|cg| cg.pids().ok()).is_some_and(|p| !p.is_empty())
            || self.runtime_root().join(id).exists()
    }

    /// [`Engine::reap`] on a blocking thread.
    pub(crate) async fn reap_off(self: &std::sync::Arc<Self>, id: &str) {
        let (engine, id) = (self.clone(), id.to_owned());
        let _ = tokio::task::spawn_blocking(move || engine.reap(&id)).await;
    }

    /// Kill the shim and everything in the container's cgroup, remove the
    /// cgroup, and delete the runtime's state by force. Blocking; safe to
    /// call when nothing is left.
    pub(crate) fn reap(&self, id: &str) {
        let sd = ShimDir::new(&self.cfg.exec_root, id);
        if let Some(pid) = self.shim_alive(&sd) {
            // SAFETY: kill with a pid checked above and a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Ok(cg) = self.cgroup_of(id) {
            // Frozen tasks take SIGKILL only once thawed.
            let _ = cg.freeze(false);
            let t = Instant::now();
            loop {
                let pids = cg.pids().unwrap_or_default();
                if pids.is_empty() || t.elapsed() > KILL_WAIT {
                    break;
                }
                for p in pids {
                    // SAFETY: kill with a pid and a signal.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Err(e) = cg.destroy() {
                tracing::warn!(container = id, "remove its cgroup: {e}");
            }
        }
        let state = self.runtime_root().join(id);
        let named = self.find(id).ok().and_then(|e| e.rec.lock().ok().map(|r| r.host.runtime.clone()));
        match &self.runtime_path(named.as_deref().unwrap_or_default()) {
            Some(rt) => {
                let out = std::process::Command::new(rt)
                    .arg("--root")
                    .arg(self.runtime_root())
                    .args(["delete", "--force", id])
                    .stdin(std::process::Stdio::null())
                    .output();
                if let Some(o) = out.ok().filter(|o| !o.status.success() && state.exists()) {
                    let why = String::from_utf8_lossy(&o.stderr);
                    tracing::warn!(container = id, "{} delete --force: {}", rt.display(), why.trim());
                }
            }
            None => match std::fs::remove_dir_all(&state) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(container = id, "remove {}: {e}", state.display());
                }
                _ => {}
            },
        }
    }
}
