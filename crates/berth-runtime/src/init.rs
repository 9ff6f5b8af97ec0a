//! The container's init, from fork to execve: one linear path. Sync points
//! with the runtime (numbers match `create.rs`):
//!
//! 1. (new user namespace) send `MapIds`, wait `MapsDone`.
//! 2. send `Pid` with the host pid of the container's init; the runtime,
//!    which makes the cgroup meanwhile, puts init in it and answers `Go`.
//!    Init waits for it only at the first step that needs the cgroup (see
//!    [`CgroupGate`]): the namespaces and the mounts before come first.
//! 3. (hooks before start) send `RunHooks`; the runtime runs prestart and
//!    createRuntime and answers `HooksDone` with the state for the others.
//! 4. send `Ready`: set up; block on the exec fifo until `start`.
//!
//! A failure before 4 is sent as `Failed`; after 4 it is written to the
//! exec fifo, where `start` reads it.

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use berth_cgroups::Cgroup;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::namespaces::Plan;
use crate::rootfs::{RootfsContext, Step};
use crate::sync::{Channel, Msg};
use crate::{console, hooks, process, rootfs, seccomp};

pub(crate) struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub plan: &'a Plan,
    pub cgroup: &'a Cgroup,
    /// O_PATH fd of `<state>/exec.fifo`.
    pub fifo: RawFd,
    pub console: Option<RawFd>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    /// linux.seccomp, compiled.
    pub seccomp: Option<&'a seccomp::Program>,
    /// Whether any hook runs before start (sync point 3).
    pub hooks_sync: bool,
}

/// Run in the forked child; returns the exit code for `_exit`.
pub(crate) fn run(a: &InitArgs<'_>, ch: &Channel) -> i32 {
    match stage1(a, ch) {
        Ok(code) => code,
        Err(msg) => {
            let _ = ch.send(&Msg::Failed(msg));
            1
        }
    }
}

/// Namespaces; then, when the pid namespace changes, fork the init that
/// lands in it, as a sibling (CLONE_PARENT) so the runtime can wait for it.
fn stage1(a: &InitArgs<'_>, ch: &Channel) -> Step<i32> {
    process::set_non_dumpable()?;
    a.plan.join_all()?;
    if a.plan.new_user {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("unshare user namespace: {e}"))?;
        ch.send(&Msg::MapIds(std::process::id() as i32)).map_err(|e| e.to_string())?;
        ch.expect(&Msg::MapsDone)?; // sync 1
    }
    // All but a new cgroup namespace, which waits for the cgroup.
    a.plan.unshare_rest()?;
    if !a.plan.pid_changes {
        ch.send(&Msg::Pid(std::process::id() as i32)).map_err(|e| e.to_string())?; // sync 2
        return stage2(a, ch);
    }
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: a fork-like clone (no stack, no shared VM); the caller is single-threaded.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_PARENT | libc::SIGCHLD, 0, 0, 0, 0) };
    match pid {
        0 => {
            drop(w);
            // Wait until our pid was sent, so messages arrive in order; no
            // byte means the intermediate process died and nobody knows us.
            let mut b = [0u8; 1];
            if !matches!(nix::unistd::read(r.as_raw_fd(), &mut b), Ok(1)) {
                return Err("the process that forked init exited before sending its pid".into());
            }
            drop(r);
            stage2(a, ch)
        }
        p if p > 0 => {
            ch.send(&Msg::Pid(p as i32)).map_err(|e| e.to_string())?; // sync 2
            let _ = nix::unistd::write(&w, b"x");
            Ok(0)
        }
        _ => Err(format!("fork into pid namespace: {}", std::io::Error::last_os_error())),
    }
}

fn stage2(a: &InitArgs<'_>, ch: &Channel) -> Step<i32> {
    let spec = a.spec;
    let Some(proc_) = spec.process().as_ref() else { return Err("process is missing".into()) };
    if a.plan.has(LinuxNamespaceType::User) {
        // Become root of the user namespace, new or joined: the host's uid is
        // not mapped in a joined one, and files made under it would fail
        // with EOVERFLOW (runc's nsexec does the same).
        // SAFETY: integer arguments only.
        let gid = unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) };
        // SAFETY: integer arguments only.
        let uid = if gid < 0 { gid } else { unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) } };
        if uid < 0 {
            return Err(format!("become root in user namespace: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: no arguments.
    unsafe { libc::setsid() };
    // Device nodes and mount points get exactly their modes.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let gate = CgroupGate { ch, new_cgroupns: a.plan.has_new(LinuxNamespaceType::Cgroup), passed: Cell::new(false) };
    let ctx = RootfsContext {
        spec,
        rootfs: a.rootfs,
        bundle: a.bundle,
        in_userns: a.plan.has(LinuxNamespaceType::User),
        cgroup: a.cgroup,
        gate: &gate,
    };
    // Without a mount namespace the container shares the caller's (the
    // spec allows it): nothing is mounted, which would change the host's
    // mounts, and the root is entered by chroot, as runc does.
    let own_mounts = a.plan.has(LinuxNamespaceType::Mount);
    let root_prop = if own_mounts { rootfs::prepare(&ctx)? } else { nix::mount::MsFlags::empty() };
    gate.pass()?;
    // The state the hooks get, from the runtime, which knows the id and
    // init's pid as the host sees it.
    let mut state = Vec::new();
    if a.hooks_sync {
        ch.send(&Msg::RunHooks).map_err(|e| e.to_string())?;
        state = match ch.recv() {
            Ok(Some(Msg::HooksDone(s))) => s.into_bytes(), // sync 3
            Ok(Some(Msg::Failed(e))) => return Err(e),
            other => return Err(format!("sync: expected HooksDone, got {other:?}")),
        };
    }
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.create_container().as_ref()) {
        hooks::run_with_input(h, &state).map_err(|e| e.to_string())?;
    }
    if own_mounts {
        rootfs::enter_root(a.rootfs, a.no_pivot, root_prop)?;
    } else {
        process::hold_proc()?;
        rootfs::chroot_into(a.rootfs)?;
    }
    rootfs::finish(spec, ctx.in_userns)?;
    if proc_.terminal().unwrap_or(false) {
        let sock = a.console.ok_or("terminal requested without a console socket")?;
        let size = proc_.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16));
        console::setup(sock, size)?;
        // SAFETY: the socket was passed for this one message.
        unsafe { libc::close(sock) };
    }
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        set_personality(p)?;
    }
    let ready = process::prepare(proc_, a.seccomp.cloned(), a.preserve_fds)?;
    ch.send(&Msg::Ready).map_err(|e| e.to_string())?; // sync 4
    let fifo =
        process::open_proc_for_write(&format!("self/fd/{}", a.fifo)).map_err(|e| format!("open exec fifo: {e}"))?;
    let fail = |mut fifo: &std::fs::File, msg: &str, code: i32| {
        let _ = fifo.write_all(msg.as_bytes());
        code
    };
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.start_container().as_ref()) {
        if let Err(e) = hooks::run_with_input(h, &state) {
            return Ok(fail(&fifo, &e.to_string(), 1));
        }
    }
    if let Some(f) = &ready.late_filter {
        if let Err(e) = seccomp::load(f) {
            return Ok(fail(&fifo, &e, 1));
        }
    }
    let err = process::execve(&ready.exe, &ready.args, &ready.env);
    Ok(fail(&fifo, &err.message, err.code))
}

/// Sync point 2's `Go`: init is in its cgroup. Waited for once, at the
/// first step that needs it: a new cgroup namespace (rooted where init is
/// when it is made, so made here), a mount of the cgroup file system or of
/// a directory in it, the device nodes (made under the container's device
/// rules, as runc makes them), and at the latest the hooks. runc's nsexec
/// also leaves the cgroup namespace until the cgroup is joined.
pub(crate) struct CgroupGate<'a> {
    ch: &'a Channel,
    pub new_cgroupns: bool,
    passed: Cell<bool>,
}

impl CgroupGate<'_> {
    pub(crate) fn pass(&self) -> Step {
        if self.passed.get() {
            return Ok(());
        }
        self.ch.expect(&Msg::Go)?; // sync 2
        if self.new_cgroupns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("unshare cgroup namespace: {e}"))?;
        }
        self.passed.set(true);
        Ok(())
    }
}

fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Step {
    let persona = match p.domain() {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: integer argument.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(format!("personality: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
