//! `delete`: remove a container's processes (with force), cgroup and state,
//! then run its poststop hooks.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lifecycle::wait_gone;
use crate::{hooks, Container, Error, Result, Status};

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match Container::load(root, id) {
        // As runc: a forced delete of what is not there has nothing to do.
        Err(Error::NotFound(_)) if force => return Ok(()),
        r => r?,
    };
    let status = c.status();
    if !force && !status.can_delete() {
        return Err(Error::BadState { id: id.into(), action: "delete (without --force)", status: status.to_string() });
    }
    let cg = c.cgroup();
    if status != Status::Stopped {
        let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
    }
    // Without its own pid namespace the container's other processes outlive
    // init; kill whatever is left in the cgroup.
    for p in cg.pids().unwrap_or_default() {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    if status == Status::Paused {
        let _ = cg.freeze(false);
    }
    if !wait_gone(&c, Duration::from_secs(10)) {
        return Err(Error::Init(format!("container {id} init {} did not die", c.pid)));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cg.pids().unwrap_or_default().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    cg.destroy()?;
    let poststop = c.hooks.as_ref().and_then(|h| h.poststop().clone());
    let mut state = c.oci_state();
    state.status = Status::Stopped;
    std::fs::remove_dir_all(&c.dir).map_err(Error::io(format!("remove {}", c.dir.display())))?;
    if let Some(h) = poststop {
        // The container is gone whatever a poststop hook does: failures are
        // logged and the rest run (runtime spec, "Poststop").
        hooks::run_all_logged(&h, &state, "poststop");
    }
    Ok(())
}
