//! A process's stdio as the shim holds it: the write end of its stdin, the
//! read ends of its stdout and stderr, or a pty master for all three.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;

type Result<T> = std::result::Result<T, String>;

#[derive(Debug)]
pub(crate) struct Stdio {
    /// Where attachers' input goes: a pipe's write end or the pty master.
    pub stdin: Option<OwnedFd>,
    /// Input not yet taken by the process.
    pub stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    pub stdin_closing: bool,
    /// stdout and stderr read ends; with a terminal the master is stdout.
    pub out: [Option<OwnedFd>; 2],
    pub master: Option<OwnedFd>,
}

/// The process's ends, to be put on fds 0..2 while it is created.
#[derive(Debug)]
pub(crate) struct ChildEnds {
    pub fds: [OwnedFd; 3],
    /// The socket pair end the runtime sends the pty master to.
    pub console: Option<OwnedFd>,
    /// Our end, to receive the master from.
    pub console_ours: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

pub(crate) fn devnull() -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("open /dev/null: {e}"))
}

pub(crate) fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

impl Stdio {
    /// Pipes (or a terminal, once its master arrives) for a new process.
    pub(crate) fn new(tty: bool, stdin: bool) -> Result<(Stdio, ChildEnds)> {
        if tty {
            let (ours, theirs) = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| format!("socketpair: {e}"))?;
            let fds = [devnull()?, devnull()?, devnull()?];
            let s = Stdio { stdin: None, stdin_buf: vec![], stdin_closing: false, out: [None, None], master: None };
            return Ok((s, ChildEnds { fds, console: Some(theirs), console_ours: Some(ours) }));
        }
        let (stdin_r, stdin_w) = if stdin {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            (devnull()?, None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        for fd in [Some(&out_r), Some(&err_r), stdin_w.as_ref()].into_iter().flatten() {
            set_nonblocking(fd.as_raw_fd());
        }
        let s = Stdio {
            stdin: stdin_w,
            stdin_buf: vec![],
            stdin_closing: false,
            out: [Some(out_r), Some(err_r)],
            master: None,
        };
        Ok((s, ChildEnds { fds: [stdin_r, out_w, err_w], console: None, console_ours: None }))
    }

    /// Take the pty master the runtime sent; it serves as stdin and stdout.
    pub(crate) fn receive_master(&mut self, ends: &ChildEnds, stdin: bool) -> Result<()> {
        let Some(sock) = &ends.console_ours else { return Ok(()) };
        let master = berth_runtime::console::recv_master(sock.as_raw_fd()).map_err(|e| format!("receive pty: {e}"))?;
        set_nonblocking(master.as_raw_fd());
        let dup = |m: &OwnedFd| m.try_clone().map_err(|e| format!("dup pty: {e}"));
        if stdin {
            self.stdin = Some(dup(&master)?);
        }
        self.out[0] = Some(dup(&master)?);
        self.master = Some(master);
        Ok(())
    }

    pub(crate) fn resize(&self, width: u16, height: u16) -> Result<()> {
        let Some(m) = &self.master else { return Err("the process has no terminal".into()) };
        let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads the winsize it is given.
        if unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(format!("resize: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    pub(crate) fn outputs_open(&self) -> bool {
        self.out.iter().any(Option::is_some)
    }
}

/// Runs `f` with `ends` as fds 0..2, then puts back /dev/null on 0 and 1
/// and the shim's own stderr (its log for the daemon) on 2.
pub(crate) fn with_stdio<T>(ends: &ChildEnds, f: impl FnOnce() -> T) -> Result<T> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd that `saved` then owns.
    let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    let saved = (saved >= 0).then(|| own(saved));
    for (i, fd) in ends.fds.iter().enumerate() {
        // SAFETY: dup2 onto our own stdio slots.
        if unsafe { libc::dup2(fd.as_raw_fd(), i as i32) } < 0 {
            return Err(format!("dup2: {}", std::io::Error::last_os_error()));
        }
    }
    let out = f();
    let null = devnull()?;
    let err = saved.as_ref().unwrap_or(&null);
    for (i, fd) in [&null, &null, err].into_iter().enumerate() {
        // SAFETY: as above.
        unsafe { libc::dup2(fd.as_raw_fd(), i as i32) };
    }
    Ok(out)
}

/// Read what is there; `Ok(None)` is the end (EOF, or EIO from a master
/// whose terminal has no process left).
pub(crate) fn read_some(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
        // SAFETY: reads into a buffer we own, up to its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return Ok(Some(n as usize));
        }
        if n == 0 {
            return Ok(None);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EIO) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Write what the fd takes now; returns how much went.
pub(crate) fn write_some(fd: RawFd, data: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: writes from a buffer we own, up to its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// An fd from a raw number we were handed and now own.
pub(crate) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass fresh fds nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
