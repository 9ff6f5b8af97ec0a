//! Work inside a container's network namespace. berth never creates one:
//! the runtime does, as it clones the container's first process. berthd
//! only enters one, with `setns(2)` on a thread of its own that ends when
//! the work does, so no other thread of the daemon ever changes namespace.
//! Sockets opened there (a netlink socket, the embedded DNS server's) stay
//! bound to that namespace wherever they are used from.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The network namespace file of a process.
pub fn of_pid(pid: i32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/ns/net"))
}

/// Run `f` on a new thread that has joined the network namespace `ns`.
pub fn run_in<T: Send>(ns: &File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            // SAFETY: fd is an open namespace file borrowed for the scope;
            // setns changes only this thread, which ends after `f`.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        });
        t.join().unwrap_or_else(|_| Err(io::Error::other("network namespace worker failed")))
    })
}

/// Whether `ns` is the namespace this thread is in.
pub fn is_current(ns: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata("/proc/thread-self/ns/net")?;
    let there = ns.metadata()?;
    Ok(here.dev() == there.dev() && here.ino() == there.ino())
}
