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
    extras(dir, r)?;
    if !r.devices.is_empty() {
        crate::devices::apply(dir, &r.devices)?;
    }
    Ok(())
}

/// The fields past the common ones: v2's file where it has one, and an
/// error naming the field where v2 has none (swappiness, kernel memory,
/// real-time shares, leaf weights, net_cls and net_prio), as runc refuses
/// them.
fn extras(dir: &Path, r: &Resources) -> Result<()> {
    let refuse = |set: bool, field: &'static str| if set { Err(Error::Unsupported(field)) } else { Ok(()) };
    refuse(r.memory_swappiness.is_some(), "linux.resources.memory.swappiness on cgroup v2")?;
    refuse(r.kernel_memory.is_some(), "linux.resources.memory.kernel on cgroup v2")?;
    refuse(r.kernel_tcp.is_some(), "linux.resources.memory.kernelTCP on cgroup v2")?;
    // v2 is always hierarchical.
    refuse(r.memory_use_hierarchy == Some(false), "linux.resources.memory.useHierarchy false on cgroup v2")?;
    refuse(
        r.cpu_realtime_period.is_some() || r.cpu_realtime_runtime.is_some(),
        "linux.resources.cpu.realtimePeriod/realtimeRuntime on cgroup v2",
    )?;
    refuse(r.blkio_leaf_weight.is_some(), "linux.resources.blockIO.leafWeight on cgroup v2")?;
    refuse(
        r.blkio_weight_devices.iter().any(|w| w.leaf_weight.is_some()),
        "blockIO.weightDevice[].leafWeight on cgroup v2",
    )?;
    refuse(r.net_cls_classid.is_some(), "linux.resources.network.classID on cgroup v2")?;
    refuse(!r.net_prio.is_empty(), "linux.resources.network.priorities on cgroup v2")?;
    if r.memory_check_before_update {
        if let Some(limit) = r.memory_limit.filter(|l| *l > 0) {
            let used: i64 = read(&dir.join("memory.current")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            if limit < used {
                return Err(Error::Invalid {
                    what: "linux.resources.memory.limit (below current usage, checkBeforeUpdate)",
                    value: limit.to_string(),
                });
            }
        }
    }
    if let Some(v) = r.cpu_idle {
        write(&dir.join("cpu.idle"), &v.to_string())?;
    }
    if let Some(v) = r.cpu_burst {
        write(&dir.join("cpu.max.burst"), &v.to_string())?;
    }
    for w in &r.blkio_weight_devices {
        if let Some(v) = w.weight {
            write(&dir.join("io.weight"), &format!("{}:{} {}", w.major, w.minor, blkio_to_io_weight(v)))?;
        }
    }
    for t in &r.blkio_throttles {
        write(&dir.join("io.max"), &format!("{}:{} {}={}", t.major, t.minor, t.kind.v2_key(), t.rate))?;
    }
    for line in crate::resources::rdma_lines(&r.rdma) {
        write(&dir.join("rdma.max"), &line)?;
    }
    for (file, value) in &r.unified {
        // A file of this cgroup, never a path out of it.
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return Err(Error::Invalid { what: "linux.resources.unified key", value: file.clone() });
        }
        write(&dir.join(file), value)?;
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
#[allow(clippy::unwrap_used)]
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
        // The control files a v2 cgroup has (writes never create them).
        for f in FAKE_FILES {
            let _ = fs::write(d.join(f), "");
        }
        d
    }

    const FAKE_FILES: &[&str] = &[
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "cpu.weight",
        "cpu.max",
        "cpu.max.burst",
        "cpu.idle",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
        "io.weight",
        "io.max",
        "cgroup.freeze",
        "hugetlb.2MB.max",
        "rdma.max",
    ];

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
    fn v2_files_for_the_rest_and_refusals_for_what_v2_lacks() -> Result<()> {
        use crate::resources::{Throttle, ThrottleDevice, WeightDevice};
        let dir = fake("extras");
        let mut r = Resources {
            cpu_idle: Some(1),
            cpu_burst: Some(500),
            blkio_weight_devices: vec![WeightDevice { major: 8, minor: 0, weight: Some(1000), leaf_weight: None }],
            blkio_throttles: vec![ThrottleDevice { kind: Throttle::WriteIops, major: 8, minor: 0, rate: 300 }],
            rdma: vec![("mlx5_1".into(), Some(3), None)],
            ..Default::default()
        };
        r.unified.insert("memory.max".into(), "12345".into());
        apply(&dir, &r)?;
        let get = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        assert_eq!(get("cpu.idle"), "1");
        assert_eq!(get("cpu.max.burst"), "500");
        assert_eq!(get("io.weight"), "8:0 10000");
        assert_eq!(get("io.max"), "8:0 wiops=300");
        assert_eq!(get("rdma.max"), "mlx5_1 hca_handle=3");
        assert_eq!(get("memory.max"), "12345");
        let refused = [
            Resources { memory_swappiness: Some(10), ..Default::default() },
            Resources { kernel_memory: Some(1 << 20), ..Default::default() },
            Resources { cpu_realtime_runtime: Some(1), ..Default::default() },
            Resources { net_cls_classid: Some(1), ..Default::default() },
            Resources { memory_use_hierarchy: Some(false), ..Default::default() },
        ];
        for r in refused {
            assert!(matches!(apply(&dir, &r), Err(Error::Unsupported(_))), "{r:?}");
        }
        let mut bad = Resources::default();
        bad.unified.insert("../../cgroup.procs".into(), "1".into());
        assert!(apply(&dir, &bad).is_err());
        // A file v2 does not have is named, not created.
        let mut missing = Resources::default();
        missing.unified.insert("memory.nosuch".into(), "1".into());
        let e = apply(&dir, &missing).unwrap_err().to_string();
        assert!(e.contains("memory.nosuch") && e.contains("No such file"), "{e}");
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
