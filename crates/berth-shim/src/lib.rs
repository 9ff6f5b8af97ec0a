//! berth-shim: the parent of one container. It holds the container's
//! stdio, writes its log, serves attach and resize, and records the exit
//! status on disk before it exits, so berthd can restart without losing a
//! container.
//!
//! Start-up, in order: read the config; become a child subreaper; block
//! SIGCHLD for a signalfd; bind the socket; create the container with its
//! stdio on our pipes; write one `Ready` line to the daemon's pipe and
//! close it. berthd starts the shim in a process group of its own, so that
//! a signal to berthd's group does not reach it.
//!
//! berthd keeps one shim started ahead (`--standby`), which waits for the
//! path of its config on stdin: a container's start then does not wait for
//! a process and its C library's start-up.
//!
//! The shim does not fork itself away from berthd: berthd reaps it when it
//! exits, and a shim that outlives berthd is reparented to init or the
//! nearest subreaper, like any orphan. A fork there would cost every
//! container start a process and the copy-on-write faults of its pages.

/// `eprintln!` that cannot panic: the shim's stderr is a file, which a full
/// disk makes fail, and the container's parent must not die of that.
macro_rules! say {
    ($($t:tt)*) => {
        berth_core::say(format_args!($($t)*))
    };
}

pub mod jsonlog;
mod runtime;
mod serve;
mod stdio;
mod trim;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use berth_shim_proto::{self as proto, Ready, ShimConfig};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::runtime::Runtime;
use crate::serve::{Proc, Shim};
use crate::stdio::Stdio;

/// A shim berthd started before it had a container for it: it waits for
/// one line on stdin, the path of its config, then sends its stderr to the
/// shim log beside that config (berthd made it) and is that container's
/// shim. Its stdin closing first (berthd took another, or went away)
/// ends it with 0.
pub fn standby() -> i32 {
    // Waiting costs no more than a running container's idle shim: the
    // pages of the start-up just run are not needed again.
    trim::release_clean_file_pages();
    let mut line = Vec::new();
    let read = std::io::BufRead::read_until(&mut std::io::stdin().lock().take(proto::MAX_PATH), b'\n', &mut line);
    if read.is_err() || line.pop() != Some(b'\n') {
        return 0;
    }
    let config = PathBuf::from(std::ffi::OsString::from_vec(line));
    let log = config.parent().unwrap_or(Path::new("/")).join(proto::LOG_FILE);
    match std::fs::OpenOptions::new().append(true).open(&log) {
        // SAFETY: dup2 of an open file over our stderr slot.
        Ok(f) => unsafe {
            libc::dup2(f.as_raw_fd(), 2);
        },
        Err(e) => {
            let error = format!("open {}: {e}", log.display());
            return report(&mut std::io::stdout(), Ready::Failed { error });
        }
    }
    retitle(&config);
    main_with_config(&config)
}

/// Make the command line the one of a shim started for `config`: `argv[0]
/// config`, written over the standby's own arguments (whose placeholder has
/// a config's length), padded with NULs. What `ps` shows is read there.
fn retitle(config: &Path) {
    let Some((start, end)) = argument_area() else { return };
    let mut title: Vec<u8> = std::env::args_os().next().map(|a| a.into_vec()).unwrap_or_default();
    title.push(0);
    title.extend_from_slice(config.as_os_str().as_bytes());
    title.push(0);
    if title.len() > end.saturating_sub(start) {
        return;
    }
    title.resize(end - start, 0);
    // SAFETY: [start, end) is this process's argument area (proc(5),
    // /proc/pid/stat fields 48 and 49): writable memory at the top of its
    // stack that only the kernel reads, for /proc/pid/cmdline; the shim is
    // single-threaded and keeps no reference into it.
    unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, title.len()) };
}

/// Where the argument strings are (arg_start and arg_end of
/// /proc/self/stat; fields counted after the command name, which may hold
/// spaces).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(45);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// Run the shim for the config at `config`; returns the exit code.
pub fn main_with_config(config: &Path) -> i32 {
    let cfg: ShimConfig = match std::fs::read(config)
        .map_err(|e| format!("read {}: {e}", config.display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("parse {}: {e}", config.display())))
    {
        Ok(c) => c,
        Err(error) => return report(&mut std::io::stdout(), Ready::Failed { error }),
    };
    if cfg.version != proto::VERSION {
        let error = format!("shim protocol {} asked for, this shim speaks {}", cfg.version, proto::VERSION);
        return report(&mut std::io::stdout(), Ready::Failed { error });
    }
    // The daemon's pipe leaves fd 1 so the container cannot inherit it.
    let ready = match std::io::stdout().as_raw_fd().try_clone_fd() {
        Ok(fd) => fd,
        Err(_) => return 1,
    };
    let mut ready = std::fs::File::from(ready);
    match setup(&cfg, config).and_then(|mut shim| {
        if cfg.start {
            shim.start_created()?;
        }
        Ok(shim)
    }) {
        Ok(shim) => {
            let msg = Ready::Created { pid: shim.main.pid, shim: std::process::id() as i32 };
            report(&mut ready, msg);
            drop(ready);
            shim.serve()
        }
        Err(error) => report(&mut ready, Ready::Failed { error }),
    }
}

trait TryCloneFd {
    fn try_clone_fd(self) -> std::io::Result<OwnedFd>;
}

impl TryCloneFd for i32 {
    fn try_clone_fd(self) -> std::io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC makes a new fd that we then own.
        let fd = unsafe { libc::fcntl(self, libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stdio::own(fd))
    }
}

fn report(w: &mut impl Write, msg: Ready) -> i32 {
    let code = i32::from(matches!(msg, Ready::Failed { .. }));
    if let Ready::Failed { error } = &msg {
        say!("berth-shim: {error}");
    }
    let _ = proto::write_line(w, &msg);
    code
}

fn setup(cfg: &ShimConfig, config: &Path) -> Result<Shim, String> {
    let null = stdio::devnull()?;
    // SAFETY: prctl and dup2 take no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::dup2(null.as_raw_fd(), 0);
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(|e| format!("block SIGCHLD: {e}"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    let _ = std::fs::remove_file(&cfg.socket);
    let bind_err = |e: std::io::Error| format!("bind {}: {e}", cfg.socket.display());
    let at = berth_core::sockpath::SockPath::new(&cfg.socket).map_err(bind_err)?;
    let listener = UnixListener::bind(at.path()).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(|e| format!("socket: {e}"))?;
    std::fs::write(&cfg.pid_file, std::process::id().to_string())
        .map_err(|e| format!("write {}: {e}", cfg.pid_file.display()))?;
    let log = match &cfg.log {
        Some(l) => Some(
            jsonlog::JsonLog::open(
                &l.path,
                jsonlog::Rotation { max_size: l.max_size, max_files: l.max_files.max(1) },
                l.format,
            )
            .map_err(|e| format!("open log {}: {e}", l.path.display()))?,
        ),
        None => None,
    };
    let dir = config.parent().unwrap_or(Path::new("/")).to_path_buf();
    let rt = match &cfg.runtime {
        Some(binary) => Runtime::External(runtime::External {
            binary: binary.clone(),
            root: cfg.runtime_root.clone(),
            log: dir.join("runtime.log"),
        }),
        None => Runtime::Builtin { root: cfg.runtime_root.clone() },
    };
    let (mut io, mut ends) = Stdio::new(cfg.tty, cfg.open_stdin)?;
    let console = ends.console.take();
    let pid = stdio::with_stdio(&ends, || rt.create(&cfg.id, &cfg.bundle, console, &dir, cfg.cgroups.as_ref()))??;
    if let Err(e) = io.receive_master(&ends, cfg.open_stdin) {
        let _ = rt.delete(&cfg.id);
        return Err(e);
    }
    drop(ends);
    // SAFETY: dup2 of /dev/null over our own stdout and stderr slots; the
    // daemon's pipe was duplicated before.
    unsafe { libc::dup2(null.as_raw_fd(), 1) };
    // As Docker, the end of an attacher's stdin closes the container's only
    // without a TTY: with one, a client going away is a detach.
    let main = Proc {
        pid,
        io,
        tty: cfg.tty,
        stdin_once: cfg.stdin_once && !cfg.tty,
        exit: None,
        exited_at: None,
        done: false,
    };
    Ok(Shim::new(cfg.id.clone(), rt, dir, cfg.socket.clone(), cfg.exit_file.clone(), listener, sigfd, main, log))
}
