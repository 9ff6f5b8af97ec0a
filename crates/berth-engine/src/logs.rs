//! Reading a container's json-file log: whole, from the end, or following
//! as the shim writes it.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

/// Docker's stdcopy frame header, which attach and logs share.
pub use berth_shim_proto::{frame_header, Deframer};

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

/// Seconds of an RFC 3339 time (`2024-01-02T03:04:05.123456789Z`).
pub fn rfc3339_nanos(t: &str) -> Option<i64> {
    let (date, rest) = t.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let rest = rest.strip_suffix('Z')?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    let mut h = hms.split(':');
    let (hh, mm, ss): (i64, i64, i64) = (h.next()?.parse().ok()?, h.next()?.parse().ok()?, h.next()?.parse().ok()?);
    let frac = format!("{frac:0<9}");
    let nanos: i64 = frac.get(..9)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000) + nanos)
}

fn parse(line: &str) -> Option<LogLine> {
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
}
