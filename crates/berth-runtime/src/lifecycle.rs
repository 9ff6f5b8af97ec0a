//! `start`, `kill`, `pause`, `resume`, `ps`, `list` and waiting for exit.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::{hooks, Container, Error, Result, Status};

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell's convention, which runc follows: 128+signal when killed.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Let a created container's init exec its process.
pub fn start(root: &Path, id: &str) -> Result<Container> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if !status.can_start() {
        return Err(Error::BadState { id: id.into(), action: "start", status: status.to_string() });
    }
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(c.fifo())
        .map_err(Error::io("open exec fifo"))?;
    // Init opens its end when we open ours, then writes nothing and closes it
    // at execve (close-on-exec): POLLHUP. A failure is written: POLLIN.
    // Poll so that an init killed meanwhile does not block us for ever.
    let mut msg = Vec::new();
    loop {
        let mut pfd = libc::pollfd { fd: fifo.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 {
            let _ = (&fifo).read_to_end(&mut msg);
            break;
        }
        if !c.init_alive() {
            return Err(Error::Init(format!("container {id} init exited before start")));
        }
    }
    let _ = std::fs::remove_file(c.fifo());
    if !msg.is_empty() {
        return Err(Error::Init(String::from_utf8_lossy(&msg).into_owned()));
    }
    if let Some(h) = c.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
        // A failing poststart hook is logged; the rest run and the
        // container keeps running (runtime spec, "Poststart").
        let mut st = c.oci_state();
        st.status = Status::Running;
        st.pid = c.pid;
        hooks::run_all_logged(h, &st, "poststart");
    }
    Ok(c)
}

/// Parse a signal as runc does: a number, or a name with or without SIG.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::Invalid(format!("invalid signal {s}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| Error::Invalid(format!("invalid signal {s}")))
}

/// Send `sig` to init, or with `all` to every process of the container.
pub fn kill(root: &Path, id: &str, sig: &str, all: bool) -> Result<()> {
    let sig = parse_signal(sig)?;
    let c = Container::load(root, id)?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(Error::BadState { id: id.into(), action: "kill", status: "stopped".into() });
    }
    if all {
        for p in c.cgroup().pids()? {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), sig);
        }
        return Ok(());
    }
    nix::sys::signal::kill(Pid::from_raw(c.pid), sig).map_err(Error::errno(format!("kill {}", c.pid)))
}

pub fn pause(root: &Path, id: &str) -> Result<()> {
    set_frozen(root, id, true)
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    set_frozen(root, id, false)
}

fn set_frozen(root: &Path, id: &str, frozen: bool) -> Result<()> {
    let c = Container::load(root, id)?;
    let st = c.status();
    let (allowed, action) = if frozen { (st.can_pause(), "pause") } else { (st.can_resume(), "resume") };
    if !allowed {
        return Err(Error::BadState { id: id.into(), action, status: st.to_string() });
    }
    Ok(c.cgroup().freeze(frozen)?)
}

/// Host pids of every process in the container.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>> {
    let c = Container::load(root, id)?;
    let mut pids = c.cgroup().pids()?;
    pids.sort_unstable();
    Ok(pids)
}

/// Every container under the state root.
pub fn list(root: &Path) -> Result<Vec<Container>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::Io { what: format!("list {}", root.display()), source: e }),
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        if let Some(name) = entry.file_name().to_str() {
            // A directory without a state file is a create in progress.
            if let Ok(c) = Container::load(root, name) {
                out.push(c);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Wait for a child process of ours (init of a container we created).
pub fn wait_exit(pid: i32) -> Result<ExitStatus> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitStatus::Signal(sig as i32)),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::Io { what: format!("wait for {pid}"), source: e.into() }),
        }
    }
}

/// Wait until a process that is not our child is gone.
pub(crate) fn wait_gone(c: &Container, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while c.init_alive() {
        // Reap it if it is ours (run, or created by this process).
        let _ = waitpid(Pid::from_raw(c.pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}
