//! `run`: create, start, wait (forwarding signals and the terminal), delete.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Result;
use berth_runtime::CreateOptions;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// Pid that forwarded signals go to.
static TARGET: AtomicI32 = AtomicI32::new(0);
/// Set by SIGWINCH; the terminal proxy copies the new size to the pty.
static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn forward(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

extern "C" fn winch(_: libc::c_int) {
    RESIZED.store(true, Ordering::Relaxed);
}

/// Signals runc forwards to the container in `run`. SIGWINCH is not
/// forwarded: it resizes the container's terminal, as in runc.
const FORWARDED: &[libc::c_int] =
    &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

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
    // The terminal gets its size and output mode before the process starts,
    // so that nothing it does first sees a 0x0 terminal (runc resizes after
    // start, racing the process).
    let host = master.as_ref().and_then(|_| HostConsole::find());
    if let Some(m) = &master {
        prepare_master(m.as_raw_fd(), host.as_ref());
    }
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
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe { libc::signal(libc::SIGWINCH, winch as *const () as libc::sighandler_t) };
        copy_tty(m.as_raw_fd(), host.as_ref());
    }
    let status = berth_runtime::wait_exit(c.pid)?;
    if !keep {
        berth_runtime::delete(root, &id, true)?;
    }
    Ok(status.code())
}

/// The terminal `run` was started from: the first of stderr, stdout and
/// stdin that is one (as runc looks), put in raw mode while the container
/// runs so keys reach it unprocessed; restored on drop.
struct HostConsole {
    fd: i32,
    saved: nix::sys::termios::Termios,
}

impl HostConsole {
    fn find() -> Option<HostConsole> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        for fd in [2, 1, 0] {
            // SAFETY: fds 0..2 stay open for the life of the process.
            let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let Ok(saved) = tcgetattr(bfd) else { continue };
            let mut raw = saved.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(bfd, SetArg::TCSANOW, &raw);
            return Some(HostConsole { fd, saved });
        }
        None
    }

    /// Give the container's terminal this terminal's size.
    fn copy_size_to(&self, master: i32) {
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ fills the winsize it is given.
        if unsafe { libc::ioctl(self.fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            // SAFETY: TIOCSWINSZ reads the winsize it is given.
            unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
        }
    }
}

impl Drop for HostConsole {
    fn drop(&mut self) {
        // SAFETY: see find.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::sys::termios::tcsetattr(bfd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Output goes to the host as the container wrote it (runc clears ONLCR
/// on the master too), in a terminal of the host's size.
fn prepare_master(master: i32, host: Option<&HostConsole>) {
    // SAFETY: master is an open pty master for the length of this call.
    let bmaster = unsafe { std::os::fd::BorrowedFd::borrow_raw(master) };
    if let Ok(mut t) = nix::sys::termios::tcgetattr(bmaster) {
        t.output_flags.remove(nix::sys::termios::OutputFlags::ONLCR);
        let _ = nix::sys::termios::tcsetattr(bmaster, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    if let Some(h) = host {
        h.copy_size_to(master);
    }
}

/// Copy stdin to the pty master and the master to stdout until it hangs up,
/// following the host terminal's size.
fn copy_tty(master: i32, host: Option<&HostConsole>) {
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        if RESIZED.swap(false, Ordering::Relaxed) {
            if let Some(h) = host {
                h.copy_size_to(master);
            }
        }
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
            write_all(1, &buf[..r as usize]);
        }
        if fds[1].revents != 0 {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                stdin_open = false;
                continue;
            }
            write_all(master, &buf[..r as usize]);
        }
    }
}

/// Write all of `buf`; a reader that went away ends the copy silently.
fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writes at most `buf.len()` bytes from `buf`.
        let w = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        match usize::try_from(w) {
            Ok(n) if n > 0 => buf = &buf[n..],
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}
