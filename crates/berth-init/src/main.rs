//! berth-init: pid 1 of a container run with `--init`.
//!
//! It starts the command (`berth-init [--] CMD [ARG…]`) in its own process
//! group, in the foreground of the terminal when there is one, forwards
//! every signal it receives to it, reaps every process that ends in the
//! container, and exits with the command's status (128 + the signal when a
//! signal ended it), as tini does for Docker.
//!
//! `berth-init --pin-netns FILE` makes a network namespace and binds it
//! on FILE (an existing empty file), so that it outlives every process in
//! it, as `ip netns add` does: a pod's namespace, made before its sandbox
//! so that CNI sets it up while the sandbox starts, and torn down by CNI
//! even after the sandbox is gone. Unmounting FILE frees it.
//!
//! `berth-init --pause` is a pod sandbox's process: it runs nothing, holds
//! the pod's namespaces, reaps what ends in a pod that shares its PID
//! namespace, and exits 0 at SIGINT or SIGTERM, as Kubernetes' pause does.
//!
//! std and a few libc calls declared here, so berth-engine's build script
//! can compile it statically with plain `rustc` and no crates.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// glibc's `sigset_t`: 1024 bits.
#[repr(C)]
#[derive(Clone, Copy)]
struct SigSet([u64; 16]);

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn sigfillset(set: *mut SigSet) -> i32;
    fn sigemptyset(set: *mut SigSet) -> i32;
    fn sigdelset(set: *mut SigSet, sig: i32) -> i32;
    fn sigprocmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    fn sigtimedwait(set: *const SigSet, info: *mut [u64; 16], timeout: *const Timespec) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn setpgid(pid: i32, pgid: i32) -> i32;
    fn getpid() -> i32;
    fn tcsetpgrp(fd: i32, pgrp: i32) -> i32;
    fn signal(sig: i32, handler: usize) -> usize;
    fn unshare(flags: i32) -> i32;
    fn mount(src: *const u8, target: *const u8, fstype: *const u8, flags: u64, data: *const u8) -> i32;
}

const CLONE_NEWNET: i32 = 0x4000_0000;
const MS_BIND: u64 = 4096;

const SIG_SETMASK: i32 = 2;
const WNOHANG: i32 = 1;
const SIGCHLD: i32 = 17;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGTTOU: i32 = 22;
const SIGTTIN: i32 = 21;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
/// Signals the kernel raises for a fault of the process itself; they are
/// never forwarded, and stay deliverable.
const SYNCHRONOUS: [i32; 8] = [4, 5, 6, 7, 8, 11, 31, SIGTTIN];

fn usage() -> ExitCode {
    eprintln!("usage: berth-init [--] COMMAND [ARG...] | --pause");
    ExitCode::from(2)
}

/// Docker's exit code for a wait status.
fn exit_code(status: i32) -> u8 {
    let sig = status & 0x7f;
    if sig == 0 {
        ((status >> 8) & 0xff) as u8
    } else {
        (128 + sig).min(255) as u8
    }
}

/// Reap every child that has ended; the status of `main` if it was one.
fn reap(main: i32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int to a valid pointer.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == main {
            found = Some(status);
        }
    }
}

/// Hold the namespaces until SIGINT or SIGTERM; reap whatever ends.
fn pause() -> ExitCode {
    let mut all = SigSet([0; 16]);
    // SAFETY: a valid sigset_t-sized buffer.
    unsafe {
        sigfillset(&mut all);
        for s in SYNCHRONOUS {
            sigdelset(&mut all, s);
        }
        sigprocmask(SIG_SETMASK, &all, std::ptr::null_mut());
    }
    loop {
        let mut info = [0u64; 16];
        let t = Timespec { tv_sec: 60, tv_nsec: 0 };
        // SAFETY: valid set, info buffer of siginfo_t's 128 bytes, timeout.
        let sig = unsafe { sigtimedwait(&all, &mut info, &t) };
        if sig == SIGINT || sig == SIGTERM {
            return ExitCode::SUCCESS;
        }
        reap(0);
    }
}

/// A new network namespace, bound on `file`.
fn pin_netns(file: &str) -> ExitCode {
    let target = format!("{file}\0");
    // SAFETY: unshare with a flag; mount with NUL-terminated paths and no
    // file system type or data.
    let ok = unsafe {
        unshare(CLONE_NEWNET) == 0
            && mount(c"/proc/self/ns/net".as_ptr().cast(), target.as_ptr(), std::ptr::null(), MS_BIND, std::ptr::null())
                == 0
    };
    if !ok {
        eprintln!("berth-init: pin a network namespace on {file}: {}", std::io::Error::last_os_error());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 1 && args[0] == "--pause" {
        return pause();
    }
    if args.len() == 2 && args[0] == "--pin-netns" {
        return pin_netns(&args[1]);
    }
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        return usage();
    }
    let mut all = SigSet([0; 16]);
    let mut empty = SigSet([0; 16]);
    // SAFETY: the sets are valid sigset_t-sized buffers.
    unsafe {
        sigfillset(&mut all);
        sigemptyset(&mut empty);
        for s in SYNCHRONOUS.iter().chain([SIGTTOU].iter()) {
            sigdelset(&mut all, *s);
        }
        sigprocmask(SIG_SETMASK, &all, std::ptr::null_mut());
        // Writing to the terminal from the background must not stop us.
        signal(SIGTTOU, SIG_IGN);
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            setpgid(0, 0);
            // Not a terminal (ENOTTY) is fine: there is nothing to lead.
            tcsetpgrp(0, getpid());
            signal(SIGTTOU, SIG_DFL);
            sigprocmask(SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-init: exec {} failed: {e}", args[0]);
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
    };
    let main = child.id() as i32;
    let mut waiting = all;
    // SAFETY: valid set.
    unsafe { sigdelset(&mut waiting, SIGTTOU) };
    loop {
        let mut info = [0u64; 16];
        let t = Timespec { tv_sec: 1, tv_nsec: 0 };
        // SAFETY: valid set, info buffer of siginfo_t's 128 bytes, timeout.
        let sig = unsafe { sigtimedwait(&waiting, &mut info, &t) };
        if sig > 0 && sig != SIGCHLD {
            // SAFETY: kill with a pid and a signal.
            unsafe { kill(main, sig) };
        }
        if let Some(status) = reap(main) {
            // The command is gone; orphans still running are the
            // container's to end, and go with pid 1.
            return ExitCode::from(exit_code(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_become_dockers_exit_codes() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
        assert_eq!(exit_code(15), 143);
    }
}
