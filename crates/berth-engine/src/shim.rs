//! The daemon's side of a shim: start one, talk to it, and read what it
//! left on disk.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use berth_shim_proto::{self as proto, ExitRecord, Ready, Reply, Request, ShimConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::{Error, Result};

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
        self.dir.join("shim.json")
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
        self.dir.join("shim.log")
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

/// Start a shim for `cfg`; returns (init pid, shim pid) once the container
/// is created.
pub async fn spawn(binary: &Path, cfg: &ShimConfig, dir: &ShimDir) -> Result<(i32, i32)> {
    let body = serde_json::to_vec(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    berth_core::perm::write_file(&dir.config(), &body, berth_core::perm::RECORD)
        .map_err(Error::io(format!("write {}", dir.config().display())))?;
    let log = berth_core::perm::create_file(&dir.log(), berth_core::perm::RECORD, true)
        .map_err(Error::io("create shim log"))?;
    // A process group of its own: a signal to berthd's group (a terminal's
    // ^C, a supervisor stopping berthd) does not reach the containers.
    let mut child = tokio::process::Command::new(binary)
        .arg(dir.config())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .map_err(Error::io(format!("run {}", binary.display())))?;
    let out = child.stdout.take().ok_or_else(|| Error::Internal("shim stdout".into()))?;
    let mut line = String::new();
    let read = BufReader::new(out).read_line(&mut line).await;
    // The shim lives on as berthd's child (it does not fork itself away):
    // reaped whenever it exits. After a restart of berthd, init or the
    // nearest subreaper reaps the shims of before.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
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
