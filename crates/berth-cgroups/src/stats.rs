//! Usage counters of one cgroup: CPU time, memory, pids and block I/O, read
//! from v1 controllers or from the v2 directory, in the units Docker's
//! stats report (nanoseconds and bytes).

use std::collections::BTreeMap;
use std::path::Path;

use crate::{flat_keyed, Cgroup, Error, Result};

/// CPU time used, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub total_ns: u64,
    /// One entry per CPU (v1 only; v2 has no per-CPU counter).
    pub per_cpu_ns: Vec<u64>,
    pub user_ns: u64,
    pub system_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory use, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage: u64,
    /// The high-water mark (v1 only).
    pub max_usage: u64,
    pub failcnt: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
    /// `memory.stat`, key by key.
    pub stat: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

/// One block I/O counter of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// v1's operation names (`Read`, `Write`, `Sync`, `Async`, `Discard`,
    /// `Total`), or `read`/`write` from v2's io.stat.
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioStats {
    pub service_bytes: Vec<BlkioEntry>,
    pub serviced: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

/// A counter file's text; a missing file (a controller the host lacks) is
/// empty.
fn text(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::Io { path, source: e }),
    }
}

fn number(dir: &Path, file: &str) -> Result<u64> {
    Ok(text(dir, file)?.trim().parse().unwrap_or(0))
}

/// A limit file: `max` (v2), or a number at or above v1's "unlimited"
/// (the largest page-aligned i64), is no limit.
fn limit(dir: &Path, file: &str) -> Result<Option<u64>> {
    let t = text(dir, file)?;
    Ok(t.trim().parse::<u64>().ok().filter(|v| *v < 0x7FFF_FFFF_FFFF_F000))
}

fn flat_map(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// v1 `blkio.*_recursive`: `MAJ:MIN Op value` lines and a last `Total n`.
fn v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, value] = f.as_slice() else { return None };
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: (*op).to_owned(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// v2 `io.stat`: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… …` per device.
fn v2_io(text: &str) -> BlkioStats {
    let mut out = BlkioStats::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut out.service_bytes, "read"),
                "wbytes" => (&mut out.service_bytes, "write"),
                "rios" => (&mut out.serviced, "read"),
                "wios" => (&mut out.serviced, "write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.to_owned(), value });
        }
    }
    out
}

fn v1_stats(cg: &Cgroup) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(d) = cg.v1_dir("cpuacct") {
        s.cpu.total_ns = number(d, "cpuacct.usage")?;
        s.cpu.per_cpu_ns = text(d, "cpuacct.usage_percpu")?.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let st = text(d, "cpuacct.stat")?;
        s.cpu.user_ns = berth_core::time::ticks_to_ns(flat_keyed(&st, "user").unwrap_or(0));
        s.cpu.system_ns = berth_core::time::ticks_to_ns(flat_keyed(&st, "system").unwrap_or(0));
    }
    if let Some(d) = cg.v1_dir("cpu") {
        let st = text(d, "cpu.stat")?;
        s.cpu.periods = flat_keyed(&st, "nr_periods").unwrap_or(0);
        s.cpu.throttled_periods = flat_keyed(&st, "nr_throttled").unwrap_or(0);
        s.cpu.throttled_ns = flat_keyed(&st, "throttled_time").unwrap_or(0);
    }
    if let Some(d) = cg.v1_dir("memory") {
        s.memory.usage = number(d, "memory.usage_in_bytes")?;
        s.memory.max_usage = number(d, "memory.max_usage_in_bytes")?;
        s.memory.failcnt = number(d, "memory.failcnt")?;
        s.memory.limit = limit(d, "memory.limit_in_bytes")?;
        s.memory.stat = flat_map(&text(d, "memory.stat")?);
    }
    if let Some(d) = cg.v1_dir("pids") {
        s.pids.current = number(d, "pids.current")?;
        s.pids.limit = limit(d, "pids.max")?;
    }
    if let Some(d) = cg.v1_dir("blkio") {
        s.blkio.service_bytes = v1_blkio(&text(d, "blkio.throttle.io_service_bytes_recursive")?);
        s.blkio.serviced = v1_blkio(&text(d, "blkio.throttle.io_serviced_recursive")?);
    }
    Ok(s)
}

fn v2_stats(d: &Path) -> Result<Stats> {
    let mut s = Stats::default();
    let cpu = text(d, "cpu.stat")?;
    let usec = |k: &str| flat_keyed(&cpu, k).unwrap_or(0).saturating_mul(1000);
    s.cpu.total_ns = usec("usage_usec");
    s.cpu.user_ns = usec("user_usec");
    s.cpu.system_ns = usec("system_usec");
    s.cpu.periods = flat_keyed(&cpu, "nr_periods").unwrap_or(0);
    s.cpu.throttled_periods = flat_keyed(&cpu, "nr_throttled").unwrap_or(0);
    s.cpu.throttled_ns = usec("throttled_usec");
    s.memory.usage = number(d, "memory.current")?;
    s.memory.max_usage = number(d, "memory.peak")?;
    s.memory.failcnt = flat_keyed(&text(d, "memory.events")?, "max").unwrap_or(0);
    s.memory.limit = limit(d, "memory.max")?;
    s.memory.stat = flat_map(&text(d, "memory.stat")?);
    s.pids.current = number(d, "pids.current")?;
    s.pids.limit = limit(d, "pids.max")?;
    s.blkio = v2_io(&text(d, "io.stat")?);
    Ok(s)
}

impl Cgroup {
    /// Usage counters, from whichever files this host has. A cgroup that
    /// exists in no hierarchy is an error (its container is gone).
    pub fn stats(&self) -> Result<Stats> {
        let exists = self.v1.iter().map(|(_, d)| d).chain(self.v2.iter()).any(|d| d.is_dir());
        if !exists {
            let path = self.v2.clone().or_else(|| self.v1.first().map(|(_, d)| d.clone())).unwrap_or_default();
            return Err(Error::Io { path, source: std::io::Error::from_raw_os_error(libc::ENOENT) });
        }
        match (&self.v2, self.is_pure_v2()) {
            (Some(d), true) => v2_stats(d),
            _ => v1_stats(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("berth-cgstats-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let _ = fs::create_dir_all(&d);
        d
    }

    fn put(dir: &Path, file: &str, body: &str) -> Result<()> {
        fs::write(dir.join(file), body).map_err(crate::io_err(dir))
    }

    /// A v2 tree of files: this host's v2 hierarchy holds only hugetlb.
    #[test]
    fn v2_counters() -> Result<()> {
        let d = fake("v2");
        put(
            &d,
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n",
        )?;
        put(&d, "memory.current", "4096\n")?;
        put(&d, "memory.max", "max\n")?;
        put(&d, "memory.stat", "anon 100\ninactive_file 30\n")?;
        put(&d, "memory.events", "low 0\nhigh 0\nmax 2\noom 0\noom_kill 0\n")?;
        put(&d, "pids.current", "3\n")?;
        put(&d, "pids.max", "10\n")?;
        put(&d, "io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n")?;
        let s = Cgroup { v1: vec![], v2: Some(d.clone()) }.stats()?;
        assert_eq!(s.cpu.total_ns, 1_500_000);
        assert_eq!((s.cpu.user_ns, s.cpu.system_ns), (1_000_000, 500_000));
        assert_eq!((s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_ns), (4, 1, 7000));
        assert_eq!((s.memory.usage, s.memory.limit, s.memory.failcnt), (4096, None, 2));
        assert_eq!(s.memory.stat.get("inactive_file"), Some(&30));
        assert_eq!(s.pids, PidsStats { current: 3, limit: Some(10) });
        assert_eq!(s.blkio.service_bytes.len(), 2);
        assert_eq!(s.blkio.service_bytes[1], BlkioEntry { major: 8, minor: 0, op: "write".into(), value: 8192 });
        assert_eq!(s.blkio.serviced[0].value, 1);
        let _ = fs::remove_dir_all(&d);
        Ok(())
    }

    #[test]
    fn v1_blkio_lines_and_unlimited() {
        let e = v1_blkio("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0], BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 4096 });
        let d = fake("limit");
        let _ = put(&d, "memory.limit_in_bytes", "9223372036854771712\n");
        let _ = put(&d, "pids.max", "max\n");
        assert_eq!(limit(&d, "memory.limit_in_bytes").ok(), Some(None));
        assert_eq!(limit(&d, "pids.max").ok(), Some(None));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_cgroup_is_an_error() {
        let cg = Cgroup { v1: vec![], v2: Some(std::env::temp_dir().join("berth-no-such-cgroup-x")) };
        assert!(cg.stats().is_err());
    }
}
