//! The OCI runtime a shim drives: the built-in library, in this process, or
//! an external runc-compatible binary run with runc's command line.
//!
//! Either way the process being created or exec'd takes the shim's fds 0, 1
//! and 2 as its stdio; the caller puts the right ends there first.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_runtime::{CreateOptions, ExecOptions, ExecOutcome, ExecProcess};
use berth_shim_proto::CgroupMounts;

#[derive(Debug)]
pub(crate) enum Runtime {
    Builtin { root: PathBuf },
    External(External),
}

/// A runc-compatible binary. Its own messages go to `log` (JSON lines):
/// its stderr is the container's.
#[derive(Debug)]
pub(crate) struct External {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
}

type Result<T> = std::result::Result<T, String>;

fn text(e: impl ToString) -> String {
    e.to_string()
}

impl Runtime {
    /// Create the container; returns its init's pid. `console` is one end of
    /// a socket pair that receives the pty master when there is a terminal.
    /// `cgroups`: the host's hierarchies as the daemon knows them.
    pub(crate) fn create(
        &self,
        id: &str,
        bundle: &Path,
        console: Option<OwnedFd>,
        dir: &Path,
        cgroups: Option<&CgroupMounts>,
    ) -> Result<i32> {
        match self {
            Runtime::Builtin { root } => {
                let hierarchies = cgroups.map(|c| berth_runtime::Hierarchies {
                    v1: c
                        .v1
                        .iter()
                        .map(|m| berth_runtime::V1Mount {
                            controllers: m.controllers.clone(),
                            mountpoint: m.mountpoint.clone(),
                            own_path: m.own_path.clone(),
                        })
                        .collect(),
                    v2: c.v2.clone(),
                });
                let opts = CreateOptions {
                    root: root.clone(),
                    id: id.to_owned(),
                    bundle: bundle.to_owned(),
                    console_fd: console,
                    hierarchies,
                    ..Default::default()
                };
                berth_runtime::create(opts).map(|c| c.pid).map_err(text)
            }
            Runtime::External(x) => {
                let args = ["create".into(), "--bundle".into(), bundle.display().to_string()];
                x.run_for_pid(&args, id, console, &dir.join("console.sock"), &dir.join("init.pid"))
            }
        }
    }

    pub(crate) fn start(&self, id: &str) -> Result<()> {
        match self {
            Runtime::Builtin { root } => berth_runtime::start(root, id).map(drop).map_err(text),
            Runtime::External(x) => x.simple(&["start", id]),
        }
    }

    pub(crate) fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        match self {
            Runtime::Builtin { root } => berth_runtime::kill(root, id, &sig, all).map_err(text),
            Runtime::External(x) if all => x.simple(&["kill", "--all", id, &sig]),
            Runtime::External(x) => x.simple(&["kill", id, &sig]),
        }
    }

    pub(crate) fn pause(&self, id: &str, frozen: bool) -> Result<()> {
        match (self, frozen) {
            (Runtime::Builtin { root }, true) => berth_runtime::pause(root, id).map_err(text),
            (Runtime::Builtin { root }, false) => berth_runtime::resume(root, id).map_err(text),
            (Runtime::External(x), true) => x.simple(&["pause", id]),
            (Runtime::External(x), false) => x.simple(&["resume", id]),
        }
    }

    /// Start `process` (an OCI process object) in the container, detached;
    /// returns its pid. It is a child of the shim either way: the built-in
    /// runtime forks it from here, runc's parent exits and the shim, a
    /// subreaper, inherits it.
    pub(crate) fn exec(
        &self,
        id: &str,
        process: &serde_json::Value,
        console: Option<OwnedFd>,
        dir: &Path,
    ) -> Result<i32> {
        match self {
            Runtime::Builtin { root } => {
                let p: oci_spec::runtime::Process =
                    serde_json::from_value(process.clone()).map_err(|e| format!("exec process: {e}"))?;
                let opts = ExecOptions {
                    root: root.clone(),
                    id: id.to_owned(),
                    process: ExecProcess::Given(Box::new(p)),
                    console_socket: None,
                    console_fd: console,
                    pid_file: None,
                    detach: true,
                    preserve_fds: 0,
                };
                match berth_runtime::exec(opts).map_err(text)? {
                    ExecOutcome::Detached(pid) => Ok(pid),
                    ExecOutcome::Exited(_) => Err("exec did not detach".into()),
                }
            }
            Runtime::External(x) => {
                let spec = dir.join("exec-process.json");
                let body = serde_json::to_vec(process).map_err(text)?;
                std::fs::write(&spec, body).map_err(|e| format!("write {}: {e}", spec.display()))?;
                let args = ["exec".into(), "--detach".into(), "--process".into(), spec.display().to_string()];
                let r = x.run_for_pid(&args, id, console, &dir.join("exec-console.sock"), &dir.join("exec.pid"));
                let _ = std::fs::remove_file(&spec);
                r
            }
        }
    }

    pub(crate) fn delete(&self, id: &str) -> Result<()> {
        match self {
            Runtime::Builtin { root } => berth_runtime::delete(root, id, true).map_err(text),
            Runtime::External(x) => x.simple(&["delete", "--force", id]),
        }
    }

    /// How many OOM kills the container's memory cgroup has seen.
    pub(crate) fn oom_kills(&self, id: &str) -> u64 {
        match self {
            Runtime::Builtin { root } => berth_runtime::Container::load(root, id)
                .ok()
                .and_then(|c| c.cgroup().oom_kill_count().ok())
                .unwrap_or(0),
            Runtime::External(_) => 0,
        }
    }
}

impl External {
    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root).arg("--log").arg(&self.log).args(["--log-format", "json"]).args(args);
        c
    }

    /// Run `args ... --pid-file F ID` with our stdio as the new process's,
    /// relaying the pty master it sends to its console socket while it
    /// runs; returns the pid it wrote.
    fn run_for_pid(
        &self,
        args: &[String],
        id: &str,
        console: Option<OwnedFd>,
        console_path: &Path,
        pid_file: &Path,
    ) -> Result<i32> {
        let mut args: Vec<String> = args.to_vec();
        let listener = console_listener(console, console_path, &mut args)?;
        args.extend(["--pid-file".into(), pid_file.display().to_string(), id.to_owned()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self
            .command(&refs)
            .stdin(inherit(0)?)
            .stdout(inherit(1)?)
            .stderr(inherit(2)?)
            .spawn()
            .map_err(|e| format!("run {}: {e}", self.name()))?;
        let mut relayed = Ok(());
        if let Some((l, to, _alias)) = listener {
            relayed = accept_master(&l, &to, &mut child);
            let _ = std::fs::remove_file(console_path);
        }
        let status = child.wait().map_err(|e| format!("wait for {}: {e}", self.name()))?;
        if !status.success() {
            return Err(self.failure(&[]));
        }
        relayed?;
        let pid = std::fs::read_to_string(pid_file).map_err(|e| format!("read {}: {e}", pid_file.display()))?;
        let _ = std::fs::remove_file(pid_file);
        pid.trim().parse().map_err(|_| format!("bad pid {pid:?} in {}", pid_file.display()))
    }

    fn simple(&self, args: &[&str]) -> Result<()> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("run {}: {e}", self.name()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure(&out.stderr))
        }
    }

    /// The runtime's last message: from its log, else from `stderr`.
    fn failure(&self, stderr: &[u8]) -> String {
        let logged = std::fs::read(&self.log).unwrap_or_default();
        let text = if logged.iter().any(|b| !b.is_ascii_whitespace()) { &logged[..] } else { stderr };
        runtime_error(self.name(), text)
    }
}

/// A console socket for an external runtime to send the pty master to,
/// when there is a terminal; adds `--console-socket` to `args`.
fn console_listener(
    console: Option<OwnedFd>,
    path: &Path,
    args: &mut Vec<String>,
) -> Result<Option<(UnixListener, OwnedFd, berth_core::sockpath::SockPath)>> {
    let Some(sock) = console else { return Ok(None) };
    let _ = std::fs::remove_file(path);
    let err = |e: std::io::Error| format!("console socket {}: {e}", path.display());
    let at = berth_core::sockpath::SockPath::for_children(path).map_err(err)?;
    let l = UnixListener::bind(at.path()).map_err(err)?;
    args.extend(["--console-socket".into(), at.path().display().to_string()]);
    Ok(Some((l, sock, at)))
}

/// A duplicate of one of our stdio fds, for a child to take as its own.
fn inherit(fd: i32) -> Result<Stdio> {
    // SAFETY: fds 0..2 are open for the life of the shim.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    b.try_clone_to_owned().map(Stdio::from).map_err(|e| format!("dup fd {fd}: {e}"))
}

/// runc prints logfmt or JSON lines on stderr; keep the last message.
fn runtime_error(name: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim();
    let msg = serde_json::from_str::<serde_json::Value>(last)
        .ok()
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_owned))
        .or_else(|| last.split("msg=").nth(1).map(|m| m.trim_matches('"').to_owned()))
        .unwrap_or_else(|| last.to_owned());
    format!("{name}: {msg}")
}

/// Take the pty master an external runtime sends to our console socket and
/// pass it to `to`, where the shim receives it as from the built-in runtime.
/// Gives up when the runtime exits without connecting.
fn accept_master(l: &UnixListener, to: &OwnedFd, child: &mut std::process::Child) -> Result<()> {
    l.set_nonblocking(true).map_err(|e| format!("console socket: {e}"))?;
    let conn = loop {
        match l.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                    return Err("the runtime exited without sending the terminal".into());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(format!("console socket: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| format!("console socket: {e}"))?;
    let master = berth_runtime::console::recv_master(conn.as_raw_fd()).map_err(|e| format!("receive pty: {e}"))?;
    let fds = [master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"pty")];
    nix::sys::socket::sendmsg::<()>(to.as_raw_fd(), &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| format!("pass pty master: {e}"))?;
    Ok(())
}
