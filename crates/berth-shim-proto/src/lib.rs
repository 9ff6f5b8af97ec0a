//! What berthd and a berth-shim say to each other.
//!
//! The daemon starts a shim with the path of a [`ShimConfig`] file, or
//! writes that path and a newline to the stdin of a shim it started ahead
//! with `--standby`. The shim creates the container and writes one
//! [`Ready`] line to its stdout. From then on it serves its unix socket:
//! every connection sends one [`Request`] as a JSON line and reads one
//! [`Reply`] line. After a successful `Attach` the connection carries the
//! container's output (Docker's 8-byte stream frames, or raw bytes with a
//! terminal) one way and its stdin the other; shutting down the write half
//! ends the attacher's stdin.
//!
//! The exit of the container is written to [`ShimConfig::exit_file`] as an
//! [`ExitRecord`] before the shim exits, so a daemon that was down when it
//! happened still learns it.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped when a message changes shape; a daemon refuses a shim of another
/// version instead of misreading it. 2: `ShimConfig::start` (a shim of 1
/// would leave such a container created and never started).
pub const VERSION: u32 = 2;

/// A request line is never longer than this.
pub const MAX_LINE: usize = 1 << 20;

/// The shim's stderr, in the directory of its config: the daemon makes
/// it, and a standby shim opens it once it is given that config.
pub const LOG_FILE: &str = "shim.log";

/// Nor the config path a standby shim is given (PATH_MAX and its newline).
pub const MAX_PATH: u64 = 4097;

/// Stream numbers of Docker's multiplexed attach frames.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// Docker's json-file rotation options.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Bytes a file may reach before it is rotated.
    pub max_size: Option<u64>,
    /// Files kept, the live one included (at least 1).
    pub max_files: u32,
    #[serde(default)]
    pub format: LogFormat,
}

/// How the log's lines are written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Docker's json-file: `{"log":…,"stream":…,"time":…}`.
    #[default]
    JsonFile,
    /// Kubernetes' CRI log: `<RFC 3339 time> <stream> <F|P> <text>`, F
    /// ending a line and P a part of one. Rotated by kubelet, which asks
    /// for the file to be opened again ([`Request::ReopenLog`]).
    Cri,
}

/// Everything a shim needs to run one container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShimConfig {
    pub version: u32,
    /// The container id (also the runtime's id).
    pub id: String,
    /// The OCI bundle (config.json inside).
    pub bundle: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// An external runc-compatible runtime; `None` runs the built-in one
    /// in the shim's own process.
    pub runtime: Option<PathBuf>,
    /// The socket the shim serves.
    pub socket: PathBuf,
    /// Where the exit record goes.
    pub exit_file: PathBuf,
    /// The shim's pid, for a daemon that restarts.
    pub pid_file: PathBuf,
    pub log: Option<LogConfig>,
    /// The container has a terminal (its stdio is a pty).
    pub tty: bool,
    /// The container's stdin stays open for attachers (`OpenStdin`).
    pub open_stdin: bool,
    /// Close the container's stdin when the first attacher that gave it
    /// stdin detaches (`StdinOnce`).
    pub stdin_once: bool,
    /// Start the container as soon as it is created, before the `Ready`
    /// line, when the daemon has nothing to do in between (no network to
    /// set up in it, no attacher waiting for its first byte): a `Start`
    /// request then saves nothing but a round trip.
    #[serde(default)]
    pub start: bool,
    /// The host's cgroup hierarchies as the daemon found them, so that the
    /// shim need not read mountinfo, which grows with every running
    /// container, at each start; `None`: the runtime looks for itself.
    #[serde(default)]
    pub cgroups: Option<CgroupMounts>,
}

/// Mounted cgroup hierarchies and the daemon's own cgroup in each (its
/// shims are its children, so theirs too).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupMounts {
    pub v1: Vec<CgroupV1Mount>,
    /// The unified hierarchy's mount point and the cgroup in it.
    pub v2: Option<(PathBuf, String)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupV1Mount {
    /// `cpu`, `memory`, `name=systemd`, ...
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    pub own_path: String,
}

/// The shim's first and only line on stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Ready {
    /// The container is created; `pid` is its init, `shim` the shim.
    Created {
        pid: i32,
        shim: i32,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    State,
    /// Let the created container's process run.
    Start,
    /// Reply once the container has exited.
    Wait,
    Signal {
        signal: i32,
        /// Every process of the container, not only its init.
        all: bool,
    },
    Resize {
        width: u16,
        height: u16,
    },
    Pause,
    Resume,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Run a process in the container. The reply comes when it has started;
    /// with `attach` the connection then streams its stdio as for `Attach`,
    /// and a `Exited` frame is not sent: the exit is read with `ExecWait`.
    Exec(ExecRequest),
    ExecWait {
        exec_id: String,
    },
    ExecResize {
        exec_id: String,
        width: u16,
        height: u16,
    },
    /// Signal an exec's process, if it has not exited.
    ExecSignal {
        exec_id: String,
        signal: i32,
    },
    /// Open the log's path again (it was renamed away by a rotation).
    ReopenLog,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecRequest {
    pub exec_id: String,
    /// An OCI runtime-spec `process` object.
    pub process: serde_json::Value,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Nobody streams its stdio (`docker exec -d`).
    pub detach: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit: Option<ExitRecord>,
}

/// How the container's init ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// Docker's exit code: the status, or 128 + the signal that killed it.
    pub code: i32,
    pub signal: Option<i32>,
    /// The container's memory cgroup saw an OOM kill.
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    State(State),
    Exited(ExitRecord),
    ExecStarted { pid: i32 },
    Error { message: String },
}

/// Write one message as a JSON line.
pub fn write_line<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let mut buf = serde_json::to_vec(msg).map_err(io::Error::other)?;
    buf.push(b'\n');
    w.write_all(&buf)?;
    w.flush()
}

/// Read one JSON line; `None` at end of stream.
pub fn read_line<T: for<'de> Deserialize<'de>, R: BufRead>(r: &mut R) -> io::Result<Option<T>> {
    let mut buf = Vec::new();
    let n = <&mut R as io::Read>::take(r, MAX_LINE as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "shim message too long or cut short"));
    }
    serde_json::from_slice(&buf).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Parse one JSON line already read.
pub fn parse<T: for<'de> Deserialize<'de>>(line: &[u8]) -> io::Result<T> {
    serde_json::from_slice(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The header of one multiplexed attach frame (Docker's stdcopy format).
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// Takes the payloads out of a stream of attach frames, however the
/// stream is cut into reads.
#[derive(Debug, Default)]
pub struct Deframer {
    head: Vec<u8>,
    /// Bytes left of the frame being read.
    left: usize,
}

impl Deframer {
    /// Feed `data`; each piece of payload in it goes to `payload`, with the
    /// stream number of its frame.
    pub fn push(&mut self, mut data: &[u8], mut payload: impl FnMut(u8, &[u8])) {
        while !data.is_empty() {
            if self.left == 0 {
                let n = (8 - self.head.len()).min(data.len());
                self.head.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.head.len() == 8 {
                    self.left = u32::from_be_bytes([self.head[4], self.head[5], self.head[6], self.head[7]]) as usize;
                    if self.left == 0 {
                        self.head.clear();
                    }
                }
                continue;
            }
            let n = self.left.min(data.len());
            payload(self.head[0], &data[..n]);
            self.left -= n;
            if self.left == 0 {
                self.head.clear();
            }
            data = &data[n..];
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_apart_however_they_are_cut() {
        let mut wire = frame_header(STDOUT, 3).to_vec();
        wire.extend_from_slice(b"out");
        wire.extend_from_slice(&frame_header(STDERR, 0));
        wire.extend_from_slice(&frame_header(STDERR, 4));
        wire.extend_from_slice(b"err!");
        for cut in 1..wire.len() {
            let mut d = Deframer::default();
            let mut got: Vec<(u8, Vec<u8>)> = vec![];
            for chunk in wire.chunks(cut) {
                d.push(chunk, |s, p| match got.last_mut() {
                    Some((last, bytes)) if *last == s => bytes.extend_from_slice(p),
                    _ => got.push((s, p.to_vec())),
                });
            }
            assert_eq!(got, vec![(STDOUT, b"out".to_vec()), (STDERR, b"err!".to_vec())], "cut {cut}");
        }
    }

    #[test]
    fn requests_round_trip_as_lines() {
        let reqs = vec![
            Request::State,
            Request::Signal { signal: 15, all: false },
            Request::Attach { stdin: true, stdout: true, stderr: false },
            Request::Exec(ExecRequest { exec_id: "e1".into(), tty: true, ..Default::default() }),
        ];
        let mut buf = Vec::new();
        for r in &reqs {
            write_line(&mut buf, r).unwrap();
        }
        let mut rd = io::BufReader::new(&buf[..]);
        for r in &reqs {
            assert_eq!(read_line::<Request, _>(&mut rd).unwrap().as_ref(), Some(r));
        }
        assert_eq!(read_line::<Request, _>(&mut rd).unwrap(), None);
        assert_eq!(String::from_utf8(serde_json::to_vec(&Request::Start).unwrap()).unwrap(), r#"{"op":"start"}"#);
    }

    #[test]
    fn a_line_without_its_end_is_an_error() {
        let mut rd = io::BufReader::new(&b"{\"op\":\"state\"}"[..]);
        assert!(read_line::<Request, _>(&mut rd).is_err());
    }

    #[test]
    fn frame_headers_are_big_endian() {
        assert_eq!(frame_header(STDERR, 0x0102), [2, 0, 0, 0, 0, 0, 1, 2]);
    }
}
