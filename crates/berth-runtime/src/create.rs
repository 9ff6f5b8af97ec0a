//! `create`: set up a container whose init waits for `start`.
//!
//! Runtime side of the sync points listed in `init.rs`:
//! fork → make the cgroup → 1 write id maps → 2 learn init's pid, put it
//! in the cgroup, `Go` → 3 run prestart/createRuntime hooks → 4 `Ready` →
//! record the state and return, leaving init blocked on the exec fifo.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_cgroups::Cgroup;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use crate::init::{self, InitArgs};
use crate::namespaces::{self, Plan};
use crate::state::{now_rfc3339, proc_stat};
use crate::sync::{Channel, Msg};
use crate::{cgroup, console, hooks, seccomp, spec, Container, Error, Result, Status};

/// What `create` takes besides the bundle's config.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// State root (`--root`).
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    /// Unix socket to send the pty master to (`--console-socket`).
    pub console_socket: Option<PathBuf>,
    /// A connected socket to send the pty master over, for callers that
    /// handle the terminal themselves (`run` in the foreground).
    pub console_fd: Option<OwnedFd>,
    pub pid_file: Option<PathBuf>,
    /// Fds 3..3+N passed on to the container (`--preserve-fds`).
    pub preserve_fds: u32,
    pub no_pivot: bool,
    /// The host's cgroup hierarchies, when the caller knows them; read
    /// from /proc otherwise.
    pub hierarchies: Option<berth_cgroups::Hierarchies>,
}

/// Removes what a failed create made.
struct Undo {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    pids: Vec<i32>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Everything in the cgroup too: an init forked into its pid namespace
        // before its pid reached us is there and nowhere else.
        let members = self.cgroup.as_ref().and_then(|cg| cg.pids().ok()).unwrap_or_default();
        for p in self.pids.iter().chain(&members) {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        for p in self.pids.iter().chain(&members) {
            // Our children (init is one, by CLONE_PARENT) are reaped here.
            let _ = waitpid(Pid::from_raw(*p), None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn create(opts: CreateOptions) -> Result<Container> {
    let id: berth_core::ContainerId = opts.id.parse()?;
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(Error::io(format!("bundle {}", opts.bundle.display())))?;
    let spec = spec::load_spec(&bundle)?;
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Invalid("linux is missing".into()))?;
    let proc_ = spec.process().as_ref().ok_or_else(|| Error::Invalid("process is missing".into()))?;
    let terminal = proc_.terminal().unwrap_or(false);
    let console = console::endpoint(terminal, opts.console_fd, opts.console_socket.as_deref())?;
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;

    std::fs::create_dir_all(&opts.root).map_err(Error::io(format!("create state root {}", opts.root.display())))?;
    // Compiled here, before fork, from the cache when possible.
    let seccomp =
        linux.seccomp().as_ref().map(|s| seccomp::program(s, Some(&opts.root))).transpose().map_err(Error::Invalid)?;
    let dir = opts.root.join(id.as_str());
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists(id.to_string())),
        Err(e) => return Err(Error::Io { what: format!("create {}", dir.display()), source: e }),
    }
    let mut undo = Undo { dir: dir.clone(), cgroup: None, pids: vec![], armed: true };

    // Made after the fork, while init sets up its namespaces and mounts.
    let cg = cgroup::locate(&spec, id.as_str(), opts.hierarchies.as_ref())?;

    let fifo_path = dir.join("exec.fifo");
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(Error::errno("mkfifo exec.fifo"))?;
    // The mode must survive the umask; the container's user may be anyone.
    std::fs::set_permissions(&fifo_path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(Error::io("chmod exec.fifo"))?;
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(Error::errno("open exec.fifo"))?;
    // SAFETY: `open` returned a new fd that nothing else owns.
    let fifo = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fifo) };

    let hooks = spec.hooks().as_ref();
    let prestart: Vec<_> = hooks
        .map(|h| h.prestart().iter().flatten().chain(h.create_runtime().iter().flatten()).cloned().collect())
        .unwrap_or_default();
    let (parent_ch, child_ch) = Channel::pair()?;
    let args = InitArgs {
        spec: &spec,
        rootfs: &rootfs,
        bundle: &bundle,
        plan: &plan,
        cgroup: &cg,
        fifo: fifo.as_raw_fd(),
        console: console.as_ref().map(AsRawFd::as_raw_fd),
        preserve_fds: opts.preserve_fds,
        no_pivot: opts.no_pivot,
        seccomp: seccomp.as_ref(),
        hooks_sync: hooks.is_some_and(|h| {
            [h.prestart(), h.create_runtime(), h.create_container(), h.start_container()]
                .iter()
                .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        }),
    };

    // SAFETY: the runtime is single-threaded; the child runs init and _exits.
    let child = match unsafe { fork() }.map_err(Error::errno("fork"))? {
        ForkResult::Child => {
            drop(parent_ch);
            let code = init::run(&args, &child_ch);
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child.as_raw(),
    };
    drop(child_ch);
    drop(console);
    undo.pids.push(child);
    undo.cgroup = Some(cg.clone());
    cg.create()?;
    cg.apply(&cgroup::resources(linux.resources().as_ref()))?;

    let mut container = Container {
        id: id.to_string(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        pid: 0,
        pid_start: 0,
        created: now_rfc3339(),
        owner: "root".to_owned(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup_v1: cg.v1.clone(),
        cgroup_v2: cg.v2.clone(),
        own_pidns: plan.has_new(oci_spec::runtime::LinuxNamespaceType::Pid),
        terminal,
        hooks: spec.hooks().clone(),
        dir: dir.clone(),
    };
    loop {
        let msg = parent_ch.recv().map_err(Error::io("sync with init"))?;
        match msg {
            Some(Msg::MapIds(pid)) => {
                namespaces::write_id_maps(
                    pid,
                    linux.uid_mappings().as_deref().unwrap_or(&[]),
                    linux.gid_mappings().as_deref().unwrap_or(&[]),
                )?;
                parent_ch.send(&Msg::MapsDone).map_err(Error::io("sync with init"))?;
            }
            Some(Msg::Pid(pid)) => {
                container.pid = pid;
                if pid != child {
                    undo.pids.insert(0, pid);
                    // The intermediate child exits once init is forked.
                    let _ = waitpid(Pid::from_raw(child), None);
                    undo.pids.retain(|p| *p != child);
                }
                cg.add(pid)?;
                parent_ch.send(&Msg::Go).map_err(Error::io("sync with init"))?;
            }
            Some(Msg::RunHooks) => {
                let mut st = container.oci_state();
                st.status = Status::Created;
                st.pid = container.pid;
                hooks::run(&prestart, &st)?;
                parent_ch.send(&Msg::HooksDone(hooks::state_json(&st)?)).map_err(Error::io("sync with init"))?;
            }
            Some(Msg::Ready) => break,
            Some(Msg::Failed(reason)) => return Err(Error::Init(reason)),
            Some(other) => return Err(Error::Init(format!("unexpected message from init: {other:?}"))),
            None => return Err(Error::Init("container init exited before it was ready".into())),
        }
    }
    container.pid_start = proc_stat(container.pid).map(|(_, s)| s).unwrap_or(0);
    container.save()?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, container.pid)?;
    }
    undo.armed = false;
    Ok(container)
}

pub(crate) fn write_pid_file(p: &Path, pid: i32) -> Result<()> {
    let abs = if p.is_absolute() { p.to_owned() } else { std::env::current_dir().map_err(Error::io("cwd"))?.join(p) };
    berth_core::atomic::replace(&abs, pid.to_string().as_bytes(), 0o644, berth_core::atomic::Durability::Volatile)
        .map_err(Error::io(format!("write pid file {}", abs.display())))
}
