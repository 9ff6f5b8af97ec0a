//! Reading a container's json-file log: whole, from the end, or following
//! as the shim writes it.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

/// Docker's stdcopy frame header, which attach and logs share.
pub use berth_shim_proto::{frame_header, Deframer, STDERR, STDOUT};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 1 stdout, 2 stderr.
    pub stream: u8,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub time_nano: i64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Seconds since the epoch, with a fraction.
    pub since: Option<f64>,
    pub until: Option<f64>,
    /// Lines from the end; `None` is all.
    pub tail: Option<usize>,
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// Nanoseconds since the epoch of an RFC 3339 time in UTC
/// (`2024-01-02T03:04:05.123456789Z`).
pub fn rfc3339_nanos(t: &str) -> Option<i64> {
    berth_core::time::parse_rfc3339_nanos(t)
}

/// A line of a json-file log, or of a CRI log (`<time> <stream> <F|P>
/// <text>`, where P is a part of a line, given without a newline).
fn parse(line: &str) -> Option<LogLine> {
    if !line.starts_with('{') {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut parts = line.splitn(4, ' ');
        let (time, stream, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let mut data = parts.next().unwrap_or_default().as_bytes().to_vec();
        if tag != "P" {
            data.push(b'\n');
        }
        let stream = if stream == "stderr" { 2 } else { 1 };
        let time_nano = rfc3339_nanos(time).unwrap_or(0);
        return Some(LogLine { stream, time: time.to_owned(), time_nano, data });
    }
    let e: Entry = serde_json::from_str(line).ok()?;
    let stream = if e.stream == "stderr" { 2 } else { 1 };
    let time_nano = rfc3339_nanos(&e.time).unwrap_or(0);
    Some(LogLine { stream, time: e.time, time_nano, data: e.log.into_bytes() })
}

fn wanted(l: &LogLine, o: &LogOptions) -> bool {
    let t = l.time_nano as f64 / 1e9;
    (if l.stream == 1 { o.stdout } else { o.stderr })
        && o.since.is_none_or(|s| t >= s)
        && o.until.is_none_or(|u| t <= u)
}

/// Files oldest first: `log.N` … `log.1`, `log`.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = vec![];
    for n in 1..1000 {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            break;
        }
        rotated.push((n, p));
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(path.to_owned());
    out
}

/// The lines already in the log (rotated files first), the open current
/// file and the offset after its last whole line.
fn backlog(path: &Path, o: &LogOptions) -> (Vec<LogLine>, Option<std::fs::File>, u64) {
    let mut lines: Vec<LogLine> = vec![];
    for f in files(path).iter().filter(|f| **f != path) {
        if let Ok(file) = std::fs::File::open(f) {
            lines.extend(BufReader::new(file).lines().map_while(|l| l.ok()).filter_map(|l| parse(&l)));
        }
    }
    let mut file = std::fs::File::open(path).ok();
    let mut offset = 0u64;
    if let Some(f) = &mut file {
        let mut r = BufReader::new(&*f);
        let mut s = String::new();
        while r.read_line(&mut s).unwrap_or(0) > 0 {
            if !s.ends_with('\n') {
                break;
            }
            offset += s.len() as u64;
            lines.extend(parse(&s));
            s.clear();
        }
    }
    lines.retain(|l| wanted(l, o));
    let skip = o.tail.map_or(0, |t| lines.len().saturating_sub(t));
    lines.drain(..skip);
    (lines, file, offset)
}

/// The shortest and longest wait of a follower between looks at the file:
/// it looks again soon after a line came, and less often while the
/// container is quiet.
const FOLLOW_MIN: Duration = Duration::from_millis(10);
const FOLLOW_MAX: Duration = Duration::from_millis(100);

/// Send the log's lines to `tx`; with `follow`, keep sending until
/// `running()` says the container is gone and the file has no more, or
/// until the receiver is dropped.
///
/// The backlog is read on a blocking thread; a follower then waits on the
/// runtime's timer, not on a thread of the blocking pool, so any number of
/// quiet followers leave the pool to the rest of the daemon. Its looks at
/// the file are a stat and a read from the page cache.
pub fn read(path: PathBuf, o: LogOptions, tx: mpsc::Sender<LogLine>, running: impl Fn() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let (p, oo) = (path.clone(), o.clone());
        let Ok((lines, file, offset)) = tokio::task::spawn_blocking(move || backlog(&p, &oo)).await else { return };
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if o.follow {
            follow(&path, &o, &tx, running, file, offset).await;
        }
    });
}

async fn follow(
    path: &Path,
    o: &LogOptions,
    tx: &mpsc::Sender<LogLine>,
    running: impl Fn() -> bool,
    mut file: Option<std::fs::File>,
    mut offset: u64,
) {
    let mut partial = String::new();
    let mut wait = FOLLOW_MIN;
    loop {
        let alive = running();
        let mut got = Vec::new();
        match &mut file {
            None => match std::fs::File::open(path) {
                Ok(f) => {
                    file = Some(f);
                    continue;
                }
                Err(_) if !alive => return,
                Err(_) => {}
            },
            Some(f) => {
                // A rotation replaced the file: start the new one from its top.
                let now = std::fs::metadata(path).ok();
                let same = now.as_ref().zip(f.metadata().ok()).is_some_and(|(a, b)| {
                    std::os::unix::fs::MetadataExt::ino(a) == std::os::unix::fs::MetadataExt::ino(&b)
                });
                if !same || now.map_or(0, |m| m.len()) < offset {
                    file = None;
                    offset = 0;
                    partial.clear();
                    continue;
                }
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    let mut r = BufReader::new(&*f);
                    let mut s = String::new();
                    while r.read_line(&mut s).unwrap_or(0) > 0 {
                        offset += s.len() as u64;
                        partial.push_str(&s);
                        s.clear();
                        if partial.ends_with('\n') {
                            got.extend(parse(&partial).filter(|l| wanted(l, o)));
                            partial.clear();
                        }
                        // A burst is sent in pieces, so one follower reads
                        // no more than a bounded amount at a time.
                        if got.len() >= 256 {
                            break;
                        }
                    }
                }
            }
        }
        if got.is_empty() {
            if !alive && file.is_some() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(FOLLOW_MAX);
            continue;
        }
        wait = FOLLOW_MIN;
        for l in got {
            if tx.send(l).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_to_unix_nanos() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(rfc3339_nanos("2024-02-29T12:00:00.000000001Z"), Some(1_709_208_000_000_000_001));
        assert_eq!(rfc3339_nanos("nonsense"), None);
    }

    #[test]
    fn cri_lines_read_as_json_file_lines_do() {
        let l = parse("2024-01-01T00:00:00.5Z stderr F oops it failed\n").unwrap();
        assert_eq!(
            (l.stream, l.data.as_slice(), l.time_nano),
            (2, &b"oops it failed\n"[..], 1_704_067_200_500_000_000)
        );
        assert_eq!(parse("2024-01-01T00:00:00Z stdout P part").unwrap().data, b"part");
        assert_eq!(parse("2024-01-01T00:00:00Z stdout F ").unwrap().data, b"\n");
    }
}
