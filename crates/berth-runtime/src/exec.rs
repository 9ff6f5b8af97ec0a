//! `exec`: a new process inside a running container's namespaces and cgroup.
//!
//! Sync points: fork → parent puts the child in the cgroup → 1 `Go` →
//! join namespaces (fork again into the pid namespace) → 2 `Pid` →
//! 3 `Ready` right before execve; the channel closing at execve means
//! success, a `Failed` after `Ready` carries execve's error.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{Capabilities, Capability, LinuxNamespace, LinuxNamespaceBuilder, Process, Spec};

use crate::namespaces::Plan;
use crate::rootfs::Step;
use crate::sync::{Channel, Msg};
use crate::{console, process, seccomp, spec, Container, Error, ExitStatus, Result};

#[derive(Debug)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: ExecProcess,
    pub console_socket: Option<PathBuf>,
    pub console_fd: Option<OwnedFd>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
}

/// The process to run: a whole process.json, or the container's own
/// process with command-line overrides (as runc builds it).
#[derive(Debug)]
pub enum ExecProcess {
    Given(Box<Process>),
    FromConfig(ProcessOverrides),
}

/// `exec` flags applied to the container's process.
#[derive(Debug, Default)]
pub struct ProcessOverrides {
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE; replaces the same key of the config.
    pub env: Vec<String>,
    /// uid, gid
    pub user: Option<(u32, u32)>,
    pub additional_gids: Vec<u32>,
    /// Capability names (with or without CAP_), added to every set.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
}

impl ProcessOverrides {
    fn apply(self, mut p: Process) -> Result<Process> {
        p.set_args(Some(self.args));
        p.set_terminal(Some(self.tty));
        if let Some(cwd) = self.cwd {
            p.set_cwd(cwd);
        }
        let mut env = p.env().clone().unwrap_or_default();
        for kv in self.env {
            let key = kv.split('=').next().unwrap_or("").to_owned();
            env.retain(|x| x.split('=').next() != Some(key.as_str()));
            env.push(kv);
        }
        p.set_env(Some(env));
        let mut user = p.user().clone();
        if let Some((uid, gid)) = self.user {
            user.set_uid(uid);
            user.set_gid(gid);
        }
        if !self.additional_gids.is_empty() {
            user.set_additional_gids(Some(self.additional_gids));
        }
        p.set_user(user);
        if self.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        if !self.caps.is_empty() {
            let mut added = Capabilities::new();
            for c in &self.caps {
                let upper = c.to_ascii_uppercase();
                let name = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
                let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| Error::Invalid(format!("unknown capability {name}")))?;
                added.insert(cap);
            }
            let mut caps = p.capabilities().clone().unwrap_or_default();
            let with =
                |set: &Option<Capabilities>| Some(set.clone().unwrap_or_default().union(&added).copied().collect());
            caps.set_bounding(with(caps.bounding()));
            caps.set_effective(with(caps.effective()));
            caps.set_permitted(with(caps.permitted()));
            caps.set_inheritable(with(caps.inheritable()));
            caps.set_ambient(with(caps.ambient()));
            p.set_capabilities(Some(caps));
        }
        Ok(p)
    }
}

/// Outcome of an exec: the pid when detached, the exit status otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    Detached(i32),
    Exited(ExitStatus),
}

fn container_namespaces(spec: &Spec, pid: i32) -> Result<Vec<LinuxNamespace>> {
    let mut out = Vec::new();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{}", crate::namespaces::proc_name(ns.typ())));
        let built = LinuxNamespaceBuilder::default()
            .typ(ns.typ())
            .path(path)
            .build()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        out.push(built);
    }
    Ok(out)
}

pub fn exec(opts: ExecOptions) -> Result<ExecOutcome> {
    let c = Container::load(&opts.root, &opts.id)?;
    let status = c.status();
    if !status.can_exec() {
        return Err(Error::BadState { id: opts.id.clone(), action: "exec in", status: status.to_string() });
    }
    let spec = spec::load_spec(&c.bundle)?;
    let process = match opts.process {
        ExecProcess::Given(p) => *p,
        ExecProcess::FromConfig(o) => {
            o.apply(spec.process().clone().ok_or_else(|| Error::Invalid("process is missing".into()))?)?
        }
    };
    let plan = Plan::from_spec(&container_namespaces(&spec, c.pid)?)?;
    let terminal = process.terminal().unwrap_or(false);
    let console = console::endpoint(terminal, opts.console_fd, opts.console_socket.as_deref())?;
    let cg = c.cgroup();
    let filter = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| seccomp::program(s, Some(&opts.root)))
        .transpose()
        .map_err(Error::Invalid)?;
    let (parent_ch, child_ch) = Channel::pair()?;
    // SAFETY: the runtime is single-threaded; the child execs or _exits.
    let child = match unsafe { fork() }.map_err(Error::errno("fork"))? {
        ForkResult::Child => {
            drop(parent_ch);
            let code = match exec_child(
                &plan,
                filter,
                &process,
                console.as_ref().map(|f| f.as_raw_fd()),
                opts.preserve_fds,
                &child_ch,
            ) {
                Ok(code) => code,
                Err(msg) => {
                    let _ = child_ch.send(&Msg::Failed(msg));
                    1
                }
            };
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child.as_raw(),
    };
    drop(child_ch);
    drop(console);
    let kill_child = |p: i32| {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(p), None);
    };
    if let Err(e) = cg.add(child) {
        kill_child(child);
        return Err(e.into());
    }
    parent_ch.send(&Msg::Go).map_err(Error::io("sync with exec"))?;
    let mut pid = 0;
    loop {
        match parent_ch.recv().map_err(Error::io("sync with exec"))? {
            Some(Msg::Pid(p)) => {
                pid = p;
                if p != child {
                    let _ = waitpid(Pid::from_raw(child), None);
                }
            }
            Some(Msg::Ready) => {}
            Some(Msg::Failed(reason)) => {
                if pid > 0 {
                    let _ = waitpid(Pid::from_raw(pid), None);
                } else {
                    kill_child(child);
                }
                return Err(Error::Init(reason));
            }
            // Closed at execve: the process runs.
            None => break,
            Some(other) => return Err(Error::Init(format!("unexpected message from exec: {other:?}"))),
        }
    }
    if let Some(p) = &opts.pid_file {
        crate::create::write_pid_file(p, pid)?;
    }
    if opts.detach {
        return Ok(ExecOutcome::Detached(pid));
    }
    Ok(ExecOutcome::Exited(crate::wait_exit(pid)?))
}

fn exec_child(
    plan: &Plan,
    filter: Option<seccomp::Program>,
    p: &Process,
    console_fd: Option<i32>,
    preserve: u32,
    ch: &Channel,
) -> Step<i32> {
    process::set_non_dumpable()?;
    ch.expect(&Msg::Go)?; // sync 1
    plan.join_all()?;
    if plan.pid_changes {
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: a fork-like clone (no stack, no shared VM); single-threaded caller.
        let pid = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_PARENT | libc::SIGCHLD, 0, 0, 0, 0) };
        if pid < 0 {
            return Err(format!("fork into pid namespace: {}", std::io::Error::last_os_error()));
        }
        if pid > 0 {
            ch.send(&Msg::Pid(pid as i32)).map_err(|e| e.to_string())?; // sync 2
            let _ = nix::unistd::write(&w, b"x");
            return Ok(0);
        }
        drop(w);
        let mut b = [0u8; 1];
        if !matches!(nix::unistd::read(r.as_raw_fd(), &mut b), Ok(1)) {
            return Err("the process that forked this one exited before sending its pid".into());
        }
    } else {
        ch.send(&Msg::Pid(std::process::id() as i32)).map_err(|e| e.to_string())?;
        // sync 2
    }
    if p.terminal().unwrap_or(false) {
        let sock = console_fd.ok_or("terminal requested without a console socket")?;
        console::setup(sock, p.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16)))?;
        // SAFETY: the socket was passed for this one message.
        unsafe { libc::close(sock) };
    }
    let ready = process::prepare(p, filter, preserve)?;
    ch.send(&Msg::Ready).map_err(|e| e.to_string())?; // sync 3
    if let Some(f) = &ready.late_filter {
        seccomp::load(f)?;
    }
    let err = process::execve(&ready.exe, &ready.args, &ready.env);
    let _ = ch.send(&Msg::Failed(err.message));
    Ok(err.code)
}
