//! A container's log file. Docker's `json-file` log: one JSON object per
//! message,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000001Z"}`,
//! in `<id>-json.log`, rotated by size into `<id>-json.log.1` … `.N-1`.
//!
//! Or Kubernetes' CRI log, one line per message: `<time> <stream> F <text>`
//! for a whole line, `P` for a part of one (kubelet's `logs` package reads
//! it back); kubelet rotates it and asks for a reopen.
//!
//! Output is cut into messages at newlines, as Docker's log copier does; a
//! line longer than 16 KiB is cut into several messages, all but the last
//! without a newline, and what is left when a stream ends is written as it
//! is.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_shim_proto::LogFormat;
use serde::{Deserialize, Serialize};

/// The longest message; longer lines are cut (Docker's copier buffer).
pub const MAX_MESSAGE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Rotation, as `--log-opt max-size` and `max-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may reach before the next message starts a new one;
    /// `None` never rotates.
    pub max_size: Option<u64>,
    /// Files kept, the live one included (at least 1).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_size: None, max_files: 1 }
    }
}

/// Parse Docker's size strings for `max-size`: `10m`, `512k`, `1g`, `100`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v > 0.0).then_some(v as u64)
}

/// `<path>.<n>`: the n-th rotated file, 1 the newest.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.to_owned().into_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The writer of one container's log.
#[derive(Debug)]
pub struct JsonLog {
    path: PathBuf,
    rotation: Rotation,
    format: LogFormat,
    file: File,
    size: u64,
    /// Bytes of an unfinished line, per stream.
    pending: [Vec<u8>; 2],
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl JsonLog {
    /// Open (appending to) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation, format: LogFormat) -> io::Result<JsonLog> {
        let file = berth_core::perm::create_file(path, berth_core::perm::LOG, false)?;
        let size = file.metadata()?.len();
        Ok(JsonLog { path: path.to_owned(), rotation, format, file, size, pending: [Vec::new(), Vec::new()] })
    }

    /// Open the path again, as a new file if it was renamed away.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = berth_core::perm::create_file(&self.path, berth_core::perm::LOG, false)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }

    /// Take output of `stream` read at `now`: every complete line becomes a
    /// message; an unfinished one waits for more (up to `MAX_MESSAGE`).
    pub fn write(&mut self, stream: Stream, mut data: &[u8], now: SystemTime) -> io::Result<()> {
        while !data.is_empty() {
            let buf = &mut self.pending[slot(stream)];
            let room = MAX_MESSAGE - buf.len();
            let take = match data[..data.len().min(room)].iter().position(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None => data.len().min(room),
            };
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if buf.last() == Some(&b'\n') || buf.len() >= MAX_MESSAGE {
                let msg = std::mem::take(buf);
                self.emit(stream, &msg, false, now)?;
            }
        }
        Ok(())
    }

    /// The stream ended: write what is left of its last line.
    pub fn close_stream(&mut self, stream: Stream, now: SystemTime) -> io::Result<()> {
        let msg = std::mem::take(&mut self.pending[slot(stream)]);
        if msg.is_empty() {
            return Ok(());
        }
        self.emit(stream, &msg, true, now)
    }

    /// One message; `last` when its stream ended after it.
    fn emit(&mut self, stream: Stream, msg: &[u8], last: bool, now: SystemTime) -> io::Result<()> {
        let time = berth_core::time::rfc3339(now);
        let line = match self.format {
            LogFormat::JsonFile => {
                let entry = Entry { log: String::from_utf8_lossy(msg).into_owned(), stream, time };
                let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
                line.push(b'\n');
                line
            }
            LogFormat::Cri => {
                let (text, tag) = match msg.strip_suffix(b"\n") {
                    Some(t) => (t, "F"),
                    // What is left when the stream ends is a whole line too.
                    None if last => (msg, "F"),
                    None => (msg, "P"),
                };
                let name = if stream == Stream::Stdout { "stdout" } else { "stderr" };
                let mut line = format!("{time} {name} {tag} ").into_bytes();
                line.extend_from_slice(text);
                line.push(b'\n');
                line
            }
        };
        if let Some(max) = self.rotation.max_size {
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate()?;
            }
        }
        if let Err(e) = self.file.write_all(&line) {
            // A full disk took part of the line: cut it off, so the lines
            // before stay whole and the next one starts on its own.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        rotated(&self.path, n)
    }

    /// `.N-2` → `.N-1`, …, live → `.1`, and a new live file; with one file
    /// kept, the live file starts over.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..keep - 1).rev() {
            match fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, self.rotated(1))?;
        self.file = berth_core::perm::create_file(&self.path, berth_core::perm::LOG, false)?;
        self.size = 0;
        Ok(())
    }

    /// Every file of this log, oldest first (what `docker logs` reads).
    pub fn files(path: &Path, rotation: Rotation) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> =
            (1..rotation.max_files.max(1)).rev().map(|n| rotated(path, n)).filter(|p| p.exists()).collect();
        out.push(path.to_owned());
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("berth-jsonlog-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn entries(path: &Path) -> Vec<Entry> {
        fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    const T: Duration = Duration::from_nanos(1_704_067_200_000_000_001);

    #[test]
    fn cri_lines_are_tagged_whole_or_part_and_reopened_after_a_rename() {
        let d = dir("cri");
        let path = d.0.join("0.log");
        let mut log = JsonLog::open(&path, Rotation::default(), LogFormat::Cri).unwrap();
        let now = UNIX_EPOCH + T;
        log.write(Stream::Stdout, b"one\ntw", now).unwrap();
        log.write(Stream::Stderr, &vec![b'x'; MAX_MESSAGE + 2], now).unwrap();
        log.write(Stream::Stdout, b"o\n", now).unwrap();
        log.close_stream(Stream::Stderr, now).unwrap();
        let t = "2024-01-01T00:00:00.000000001Z";
        let x = "x".repeat(MAX_MESSAGE);
        let want = format!("{t} stdout F one\n{t} stderr P {x}\n{t} stdout F two\n{t} stderr F xx\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), want);
        // kubelet's rotation: rename, then reopen; writes go to a new file.
        fs::rename(&path, d.0.join("0.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(Stream::Stdout, b"after\n", now).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{t} stdout F after\n"));
        assert_eq!(fs::read_to_string(d.0.join("0.log.1")).unwrap(), want);
    }

    #[test]
    fn lines_streams_and_partials() {
        let d = dir("lines");
        let path = d.0.join("c-json.log");
        let mut log = JsonLog::open(&path, Rotation::default(), LogFormat::JsonFile).unwrap();
        let now = UNIX_EPOCH + T;
        log.write(Stream::Stdout, b"one\ntw", now).unwrap();
        log.write(Stream::Stderr, b"err \"quoted\" \xff\n", now).unwrap();
        log.write(Stream::Stdout, b"o\nthree", now).unwrap();
        log.close_stream(Stream::Stdout, now).unwrap();
        log.close_stream(Stream::Stderr, now).unwrap();
        let got = entries(&path);
        let logs: Vec<(&str, Stream)> = got.iter().map(|e| (e.log.as_str(), e.stream)).collect();
        assert_eq!(
            logs,
            [
                ("one\n", Stream::Stdout),
                ("err \"quoted\" \u{fffd}\n", Stream::Stderr),
                ("two\n", Stream::Stdout),
                ("three", Stream::Stdout)
            ]
        );
        assert_eq!(got[0].time, "2024-01-01T00:00:00.000000001Z");
        let raw = fs::read_to_string(&path).unwrap();
        assert!(
            raw.starts_with(r#"{"log":"one\n","stream":"stdout","time":"2024-01-01T00:00:00.000000001Z"}"#),
            "{raw}"
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let d = dir("long");
        let path = d.0.join("c-json.log");
        let mut log = JsonLog::open(&path, Rotation::default(), LogFormat::JsonFile).unwrap();
        let mut line = vec![b'x'; MAX_MESSAGE * 2 + 10];
        line.push(b'\n');
        log.write(Stream::Stdout, &line, UNIX_EPOCH).unwrap();
        let got = entries(&path);
        let lens: Vec<usize> = got.iter().map(|e| e.log.len()).collect();
        assert_eq!(lens, [MAX_MESSAGE, MAX_MESSAGE, 11]);
        assert!(got[2].log.ends_with('\n') && !got[0].log.ends_with('\n'));
    }

    #[test]
    fn rotation_keeps_max_files() {
        let d = dir("rotate");
        let path = d.0.join("c-json.log");
        let rotation = Rotation { max_size: Some(200), max_files: 3 };
        let mut log = JsonLog::open(&path, rotation, LogFormat::JsonFile).unwrap();
        for i in 0..20 {
            log.write(Stream::Stdout, format!("message {i:02}\n").as_bytes(), UNIX_EPOCH).unwrap();
        }
        let files = JsonLog::files(&path, rotation);
        assert_eq!(files.len(), 3);
        assert!(!d.0.join("c-json.log.3").exists());
        let mut all = Vec::new();
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 200);
            all.extend(entries(f).into_iter().map(|e| e.log));
        }
        // The newest messages, in order, without a gap.
        let last = all.last().unwrap().clone();
        assert_eq!(last, "message 19\n");
        let first: usize = all[0][8..10].parse().unwrap();
        let want: Vec<String> = (first..20).map(|i| format!("message {i:02}\n")).collect();
        assert_eq!(all, want);

        // One file: the log starts over; reopening appends.
        let one = d.0.join("one-json.log");
        let mut log = JsonLog::open(&one, Rotation { max_size: Some(100), max_files: 1 }, LogFormat::JsonFile).unwrap();
        for i in 0..5 {
            log.write(Stream::Stdout, format!("m{i}\n").as_bytes(), UNIX_EPOCH).unwrap();
        }
        drop(log);
        let mut log = JsonLog::open(&one, Rotation { max_size: Some(100), max_files: 1 }, LogFormat::JsonFile).unwrap();
        log.write(Stream::Stdout, b"m5\n", UNIX_EPOCH).unwrap();
        let logs: Vec<String> = entries(&one).into_iter().map(|e| e.log).collect();
        assert_eq!(logs.last().map(String::as_str), Some("m5\n"));
        assert!(fs::metadata(&one).unwrap().len() <= 100);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5k"), Some(1536));
        for bad in ["", "m", "-1", "10x", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
