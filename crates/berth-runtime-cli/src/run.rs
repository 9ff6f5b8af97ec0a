//! `run`: create, start, wait (forwarding signals and the terminal), delete.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Result;
use berth_runtime::CreateOptions;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// Pid that forwarded signals go to.
static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Signals runc forwards to the container in `run`.
const FORWARDED: &[libc::c_int] =
    &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

pub(crate) fn run(root: &Path, mut opts: CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    let id = opts.id.clone();
    // Whether there is a terminal is known once create has read the config;
    // create drops this socket unused when there is none.
    let mut ours: Option<OwnedFd> = None;
    if opts.console_socket.is_none() && !detach {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
        opts.console_fd = Some(b);
        ours = Some(a);
    }
    let c = berth_runtime::create(opts)?;
    let master = match &ours {
        Some(sock) if c.terminal => Some(berth_runtime::console::recv_master(sock.as_raw_fd())?),
        _ => None,
    };
    if let Err(e) = berth_runtime::start(root, &id) {
        let _ = berth_runtime::delete(root, &id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    TARGET.store(c.pid, Ordering::Relaxed);
    for s in FORWARDED {
        // SAFETY: installs a handler that only calls kill.
        unsafe { libc::signal(*s, forward as *const () as libc::sighandler_t) };
    }
    if let Some(m) = &master {
        copy_tty(m.as_raw_fd());
    }
    let status = berth_runtime::wait_exit(c.pid)?;
    if !keep {
        berth_runtime::delete(root, &id, true)?;
    }
    Ok(status.code())
}

/// Copy stdin to the pty master and the master to stdout until it hangs up.
fn copy_tty(master: i32) {
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let mut fds = [
            libc::pollfd { fd: master, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if stdin_open { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return; // EIO once the last slave fd closes
            }
            // SAFETY: writes `r` bytes of `buf`.
            unsafe { libc::write(1, buf.as_ptr().cast(), r as usize) };
        }
        if fds[1].revents != 0 {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                stdin_open = false;
                continue;
            }
            // SAFETY: writes `r` bytes of `buf`.
            unsafe { libc::write(master, buf.as_ptr().cast(), r as usize) };
        }
    }
}
