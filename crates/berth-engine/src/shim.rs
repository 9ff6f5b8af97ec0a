//! The daemon's side of a shim: start one, talk to it, and read what it
//! left on disk.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use berth_shim_proto::{self as proto, ExitRecord, Ready, Reply, Request, ShimConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::{Error, Result};

/// A shim's config, in its container's directory under the exec root.
const CONFIG: &str = "shim.json";

/// The files of one running container under the exec root.
#[derive(Debug, Clone)]
pub struct ShimDir {
    pub dir: PathBuf,
}

impl ShimDir {
    pub fn new(exec_root: &Path, id: &str) -> ShimDir {
        ShimDir { dir: exec_root.join(id) }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("shim.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(proto::LOG_FILE)
    }

    /// The exit record the shim wrote, if it got that far.
    pub fn read_exit(&self) -> Option<ExitRecord> {
        let b = std::fs::read(self.exit_file()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The shim's pid, while it lives.
    pub fn live_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    /// The last lines the shim wrote on its stderr.
    pub fn last_error(&self) -> String {
        let s = std::fs::read_to_string(self.log()).unwrap_or_default();
        s.lines().last().unwrap_or("").trim_start_matches("berth-shim: ").to_owned()
    }
}

/// A shim started before its container: [`spawn`] hands it the next
/// config, so that a start does not wait for a process to be made and for
/// its C library to start up (half a millisecond on a VM, where the cpuid
/// instructions of that start-up trap to the hypervisor). One at most,
/// made after the first container's start and again after each use; it
/// exits when berthd goes (its stdin closes).
#[derive(Debug, Default)]
pub struct Standby {
    slot: std::sync::Mutex<Option<Waiting>>,
    /// One is being started: a burst of starts makes one, not one each.
    filling: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Waiting {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Standby {
    fn take(&self) -> Option<Waiting> {
        self.slot.lock().ok()?.take()
    }

    /// Start a standby shim unless one waits already. Its argument has the
    /// length of a config's path under `exec_root`, which it takes over
    /// as its command line once it has one, so that `ps` names the
    /// container as for a shim started for it.
    fn fill(&self, binary: &Path, exec_root: &Path) {
        use std::sync::atomic::Ordering;
        if self.slot.lock().map(|s| s.is_some()).unwrap_or(true) || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        self.start_one(binary, exec_root);
        self.filling.store(false, Ordering::Release);
    }

    fn start_one(&self, binary: &Path, exec_root: &Path) {
        let placeholder = exec_root.join("-".repeat(crate::names::ID_LEN)).join(CONFIG);
        let child = tokio::process::Command::new(binary)
            .arg("--standby")
            .arg(placeholder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        let Ok(mut child) = child else { return };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else { return };
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(Waiting { child, stdin, stdout });
        }
    }
}

/// Give a standby its config's path; None if it is gone.
async fn hand_over(w: Waiting, config: &Path) -> Option<(Child, ChildStdout)> {
    let Waiting { child, mut stdin, stdout } = w;
    let mut line = config.as_os_str().as_bytes().to_vec();
    if line.contains(&b'\n') {
        return None;
    }
    line.push(b'\n');
    stdin.write_all(&line).await.ok()?;
    Some((child, stdout))
}

/// Start a shim for `cfg` (the standby if there is one); returns (init
/// pid, shim pid) once the container is created.
pub async fn spawn(binary: &Path, cfg: &ShimConfig, dir: &ShimDir, standby: &Arc<Standby>) -> Result<(i32, i32)> {
    let body = serde_json::to_vec(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    berth_core::perm::write_file(&dir.config(), &body, berth_core::perm::RECORD)
        .map_err(Error::io(format!("write {}", dir.config().display())))?;
    let log = berth_core::perm::create_file(&dir.log(), berth_core::perm::RECORD, true)
        .map_err(Error::io("create shim log"))?;
    let handed = match standby.take() {
        Some(w) => hand_over(w, &dir.config()).await,
        None => None,
    };
    let (mut child, out) = match handed {
        Some(c) => c,
        None => {
            // A process group of its own: a signal to berthd's group (a
            // terminal's ^C, a supervisor stopping berthd) does not reach
            // the containers.
            let mut child = tokio::process::Command::new(binary)
                .arg(dir.config())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .process_group(0)
                .spawn()
                .map_err(Error::io(format!("run {}", binary.display())))?;
            let out = child.stdout.take().ok_or_else(|| Error::Internal("shim stdout".into()))?;
            (child, out)
        }
    };
    let mut line = String::new();
    let read = BufReader::new(out).read_line(&mut line).await;
    // The shim lives on as berthd's child (it does not fork itself away):
    // reaped whenever it exits. After a restart of berthd, init or the
    // nearest subreaper reaps the shims of before.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    if let Some(exec_root) = dir.dir.parent() {
        let (standby, binary, exec_root) = (standby.clone(), binary.to_owned(), exec_root.to_owned());
        tokio::spawn(async move { standby.fill(&binary, &exec_root) });
    }
    read.map_err(Error::io("read from shim"))?;
    match serde_json::from_str::<Ready>(&line) {
        Ok(Ready::Created { pid, shim }) => Ok((pid, shim)),
        Ok(Ready::Failed { error }) => Err(Error::Internal(error)),
        Err(_) => Err(Error::Internal(format!("shim failed: {}", dir.last_error()))),
    }
}

/// Read one reply line without reading past it (the stream may go on).
pub(crate) async fn read_reply(s: &mut UnixStream) -> Result<Reply> {
    let mut buf = Vec::with_capacity(128);
    loop {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).await.map_err(Error::io("read from shim"))?;
        if n == 0 {
            return Err(Error::Internal("the shim closed the connection".into()));
        }
        if b[0] == b'\n' {
            break;
        }
        buf.push(b[0]);
        if buf.len() > proto::MAX_LINE {
            return Err(Error::Internal("shim reply too long".into()));
        }
    }
    proto::parse(&buf).map_err(|e| Error::Internal(format!("shim reply: {e}")))
}

/// Open a connection and send `req`; returns the first reply and the
/// connection, for requests that go on (attach, wait).
pub async fn open(socket: &Path, req: &Request) -> Result<(Reply, UnixStream)> {
    let to = berth_core::sockpath::SockPath::new(socket).map_err(Error::io(format!("connect {}", socket.display())))?;
    let mut s = UnixStream::connect(to.path()).await.map_err(Error::io(format!("connect {}", socket.display())))?;
    let mut line = serde_json::to_vec(req).map_err(|e| Error::Internal(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line).await.map_err(Error::io("write to shim"))?;
    let r = read_reply(&mut s).await?;
    Ok((r, s))
}

/// One request, one reply; a reply carrying an error becomes `Err`.
pub async fn call(socket: &Path, req: &Request) -> Result<Reply> {
    match open(socket, req).await?.0 {
        Reply::Error { message } => Err(Error::Conflict(message)),
        r => Ok(r),
    }
}

/// Wait on an open `Wait` connection for the exit.
pub async fn wait_exit(socket: &Path) -> Result<ExitRecord> {
    let (first, mut s) = open(socket, &Request::Wait).await?;
    match first {
        Reply::Exited(rec) => Ok(rec),
        Reply::Ok => match read_reply(&mut s).await? {
            Reply::Exited(rec) => Ok(rec),
            other => Err(Error::Internal(format!("unexpected shim reply {other:?}"))),
        },
        Reply::Error { message } => Err(Error::Internal(message)),
        other => Err(Error::Internal(format!("unexpected shim reply {other:?}"))),
    }
}
