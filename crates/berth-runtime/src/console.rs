//! The container's terminal: a pty made inside the container (from its own
//! devpts), whose master is sent over the console socket with SCM_RIGHTS as
//! runc does, and whose slave becomes the process's controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::rootfs::Step;

/// Open a pty in the container (after pivot_root), size it, send the master
/// over `socket` and make the slave our stdio and controlling terminal.
pub(crate) fn setup(socket: RawFd, size: Option<(u16, u16)>) -> Step {
    // SAFETY: posix_openpt returns a new fd or -1.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(format!("open /dev/ptmx: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `master` is a new fd owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: fd-only calls on the fresh master.
    if unsafe { libc::grantpt(master.as_raw_fd()) } < 0 || unsafe { libc::unlockpt(master.as_raw_fd()) } < 0 {
        return Err(format!("unlock pty: {}", std::io::Error::last_os_error()));
    }
    let mut name = [0u8; 128];
    // SAFETY: `name` is writable for its length.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr().cast(), name.len()) } != 0 {
        return Err("ptsname failed".into());
    }
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let slave_path = String::from_utf8_lossy(&name[..end]).into_owned();
    if let Some((rows, cols)) = size {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(slave_path.as_bytes())];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| format!("send pty master over console socket: {e}"))?;
    drop(master);
    // Bind the slave over /dev/console (best effort: /dev may be read-only).
    if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open("/dev/console") {
        drop(f);
        let _ = nix::mount::mount(
            Some(slave_path.as_str()),
            "/dev/console",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        );
    }
    // SAFETY: setsid has no arguments; init already leads its session when forked.
    unsafe { libc::setsid() };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .map_err(|e| format!("open {slave_path}: {e}"))?;
    // SAFETY: TIOCSCTTY on an fd we own.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!("set controlling terminal: {}", std::io::Error::last_os_error()));
    }
    for fd in 0..3 {
        // SAFETY: dup2 onto stdio numbers.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(format!("dup pty to fd {fd}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Where the pty master goes: the caller's own socket, or a connection to
/// the console socket path; nothing without a terminal.
pub(crate) fn endpoint(
    terminal: bool,
    fd: Option<OwnedFd>,
    socket: Option<&std::path::Path>,
) -> crate::Result<Option<OwnedFd>> {
    match (terminal, fd, socket) {
        (false, _, _) => Ok(None),
        (true, Some(fd), _) => Ok(Some(fd)),
        (true, None, Some(p)) => std::os::unix::net::UnixStream::connect(p)
            .map(|s| Some(s.into()))
            .map_err(crate::Error::io(format!("connect console socket {}", p.display()))),
        (true, None, None) => Err(crate::Error::Invalid(
            "a terminal was requested but there is no console socket to send it to (--console-socket)".into(),
        )),
    }
}

/// Receive a pty master sent by `setup` (for `run` with a terminal and no
/// console socket of the caller's).
pub fn recv_master(socket: RawFd) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    for c in msg.cmsgs().map_err(|e| std::io::Error::from_raw_os_error(e as i32))? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no fd in console message"))
}
