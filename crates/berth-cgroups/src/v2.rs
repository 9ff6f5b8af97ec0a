//! cgroup v2 control files.

use std::path::Path;

use crate::resources::{blkio_to_io_weight, shares_to_weight};
use crate::{flat_keyed, io_err, read, write, Error, Resources, Result};

/// Create `dir`, enabling on the way down every controller each parent offers.
pub(crate) fn create(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir.to_path_buf();
    while !cur.exists() {
        missing.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent() {
            enable_controllers(parent);
        }
        // Another container's create may make a shared parent first.
        match std::fs::create_dir(d) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r.map_err(io_err(d))?,
        }
    }
    if let Some(parent) = dir.parent() {
        enable_controllers(parent);
    }
    Ok(())
}

/// Best effort: a controller the parent cannot delegate (the root of a
/// hybrid host's unified hierarchy, or one held by processes) stays off.
fn enable_controllers(parent: &Path) {
    let Ok(avail) = std::fs::read_to_string(parent.join("cgroup.controllers")) else { return };
    for c in avail.split_whitespace() {
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
    }
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

pub(crate) fn apply(dir: &Path, r: &Resources) -> Result<()> {
    if let Some(v) = r.memory_limit {
        write(&dir.join("memory.max"), &limit(v))?;
    }
    if let Some(v) = r.memory_reservation {
        write(&dir.join("memory.low"), &limit(v))?;
    }
    if let Some(swap) = r.memory_swap {
        // The spec's swap is memory+swap (v1 memsw); v2 limits swap alone.
        let val = match (swap, r.memory_limit) {
            (s, _) if s < 0 => "max".to_owned(),
            (s, Some(m)) if m >= 0 => {
                if s < m {
                    return Err(Error::Invalid { what: "memory swap below the memory limit", value: s.to_string() });
                }
                (s - m).to_string()
            }
            _ => return Err(Error::Invalid { what: "memory swap without a memory limit", value: swap.to_string() }),
        };
        write(&dir.join("memory.swap.max"), &val)?;
    }
    // v2 has no switch for the OOM killer (memory.oom_control is v1 only);
    // disableOOMKiller is ignored there, as runc ignores it (Docker warns
    // that the kernel does not support it).
    if let Some(s) = r.cpu_shares {
        write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
    }
    if r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let period = r.cpu_period.unwrap_or(100_000);
        let quota = match r.cpu_quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_owned(),
        };
        write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
    }
    if let Some(v) = &r.cpuset_cpus {
        write(&dir.join("cpuset.cpus"), v)?;
    }
    if let Some(v) = &r.cpuset_mems {
        write(&dir.join("cpuset.mems"), v)?;
    }
    if let Some(v) = r.pids_limit {
        write(&dir.join("pids.max"), &if v <= 0 { "max".to_owned() } else { v.to_string() })?;
    }
    if let Some(w) = r.blkio_weight {
        let bfq = dir.join("io.bfq.weight");
        if bfq.exists() {
            write(&bfq, &w.to_string())?;
        } else {
            write(&dir.join("io.weight"), &format!("default {}", blkio_to_io_weight(w)))?;
        }
    }
    if !r.devices.is_empty() {
        crate::devices::apply(dir, &r.devices)?;
    }
    Ok(())
}

pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let events = dir.join("cgroup.events");
    for _ in 0..1000 {
        match std::fs::read_to_string(&events) {
            Ok(text) if flat_keyed(&text, "frozen") == Some(u64::from(frozen)) => return Ok(()),
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            // A fake or very old tree without cgroup.events: trust the write.
            Err(_) => return Ok(()),
        }
    }
    Err(Error::Invalid { what: "cgroup.events frozen", value: read(&events)?.trim().to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cgroup;
    use std::fs;
    use std::path::PathBuf;

    /// A fake v2 tree: this host cannot show v2 controllers (its v2
    /// hierarchy holds only hugetlb), so the writers are checked on files.
    fn fake(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-cg2-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let _ = fs::create_dir_all(&d);
        d
    }

    #[test]
    fn writes_v2_files() -> Result<()> {
        let dir = fake("apply");
        let r = Resources {
            memory_limit: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            memory_swap: Some(96 << 20),
            disable_oom_killer: true,
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(10),
            blkio_weight: Some(500),
            ..Default::default()
        };
        apply(&dir, &r)?;
        let get = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        assert_eq!(get("memory.max"), "67108864");
        assert_eq!(get("memory.low"), "33554432");
        assert_eq!(get("memory.swap.max"), "33554432");
        assert_eq!(get("cpu.weight"), "39");
        assert_eq!(get("cpu.max"), "50000 100000");
        assert_eq!(get("cpuset.cpus"), "0");
        assert_eq!(get("pids.max"), "10");
        assert_eq!(get("io.weight"), "default 4950");
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn unlimited_values() -> Result<()> {
        let dir = fake("max");
        let r = Resources {
            memory_limit: Some(-1),
            memory_swap: Some(-1),
            pids_limit: Some(0),
            cpu_quota: Some(-1),
            ..Default::default()
        };
        apply(&dir, &r)?;
        let get = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        assert_eq!(get("memory.max"), "max");
        assert_eq!(get("memory.swap.max"), "max");
        assert_eq!(get("pids.max"), "max");
        assert_eq!(get("cpu.max"), "max 100000");
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn freeze_and_oom_on_fake_tree() -> Result<()> {
        let dir = fake("freeze");
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").map_err(io_err(&dir))?;
        let cg = Cgroup { v1: vec![], v2: Some(dir.clone()) };
        cg.freeze(true)?;
        assert!(cg.is_frozen()?);
        cg.freeze(false)?;
        assert!(!cg.is_frozen()?);
        assert_eq!(cg.oom_kill_count()?, 2);
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn swap_below_memory_is_refused() {
        let dir = fake("swap");
        let r = Resources { memory_limit: Some(100), memory_swap: Some(50), ..Default::default() };
        assert!(apply(&dir, &r).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
