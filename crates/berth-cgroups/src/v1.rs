//! cgroup v1 control files.

use std::path::Path;

use crate::{read, write, Error, Resources, Result};

/// A new cpuset cgroup starts with empty cpus and mems and refuses tasks;
/// copy them down from the nearest ancestor that has them.
pub(crate) fn seed_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut chain: Vec<std::path::PathBuf> = Vec::new();
        let mut cur = dir.to_path_buf();
        loop {
            let val = read(&cur.join(file))?;
            if !val.trim().is_empty() {
                for d in chain.iter().rev() {
                    write(&d.join(file), val.trim())?;
                }
                break;
            }
            chain.push(cur.clone());
            if !cur.pop() || !cur.join(file).exists() {
                break;
            }
        }
    }
    Ok(())
}

pub(crate) fn apply<'a>(dir_of: impl Fn(&str) -> Option<&'a Path>, r: &Resources) -> Result<()> {
    let need = |c: &'static str| dir_of(c).ok_or(Error::Unsupported(c));
    if r.memory_limit.is_some() || r.memory_reservation.is_some() || r.memory_swap.is_some() || r.disable_oom_killer {
        let d = need("memory")?;
        // Without swap accounting there is no memsw file; a swap limit that
        // means "no swap" (equal to the memory limit) or "unlimited" needs none.
        let memsw = d.join("memory.memsw.limit_in_bytes");
        let swap = match r.memory_swap {
            None => None,
            Some(s) if memsw.exists() => Some(s),
            Some(s) if s == -1 || Some(s) == r.memory_limit => None,
            Some(_) => return Err(Error::Unsupported("a swap limit (the kernel has no swap accounting)")),
        };
        // The kernel keeps memory <= memory+swap at every step: a raised
        // memsw goes first, a lowered one after the memory limit.
        let swap_first = swap.is_some_and(|s| {
            s == -1 || read(&memsw).ok().and_then(|t| t.trim().parse::<i64>().ok()).is_none_or(|c| s >= c)
        });
        if let Some(v) = swap.filter(|_| swap_first) {
            write(&memsw, &v.to_string())?;
        }
        if let Some(v) = r.memory_limit {
            write(&d.join("memory.limit_in_bytes"), &v.to_string())?;
        }
        if let Some(v) = swap.filter(|_| !swap_first) {
            write(&memsw, &v.to_string())?;
        }
        if let Some(v) = r.memory_reservation {
            write(&d.join("memory.soft_limit_in_bytes"), &v.to_string())?;
        }
        if r.disable_oom_killer {
            write(&d.join("memory.oom_control"), "1")?;
        }
    }
    if let Some(v) = r.cpu_shares {
        write(&need("cpu")?.join("cpu.shares"), &v.to_string())?;
    }
    if let Some(v) = r.cpu_period {
        write(&need("cpu")?.join("cpu.cfs_period_us"), &v.to_string())?;
    }
    if let Some(v) = r.cpu_quota {
        write(&need("cpu")?.join("cpu.cfs_quota_us"), &v.max(-1).to_string())?;
    }
    if let Some(v) = &r.cpuset_cpus {
        write(&need("cpuset")?.join("cpuset.cpus"), v)?;
    }
    if let Some(v) = &r.cpuset_mems {
        write(&need("cpuset")?.join("cpuset.mems"), v)?;
    }
    if let Some(v) = r.pids_limit {
        let val = if v <= 0 { "max".to_owned() } else { v.to_string() };
        write(&need("pids")?.join("pids.max"), &val)?;
    }
    if let Some(w) = r.blkio_weight {
        let d = need("blkio")?;
        let f = d.join("blkio.weight");
        let f = if f.exists() { f } else { d.join("blkio.bfq.weight") };
        write(&f, &w.to_string())?;
    }
    memory_extras(&dir_of, r)?;
    cpu_extras(&dir_of, r)?;
    blkio_extras(&dir_of, r)?;
    if let Some(id) = r.net_cls_classid {
        let d = dir_of("net_cls").ok_or(Error::Unsupported("linux.resources.network.classID without net_cls"))?;
        write(&d.join("net_cls.classid"), &id.to_string())?;
    }
    if !r.net_prio.is_empty() {
        let d = dir_of("net_prio").ok_or(Error::Unsupported("linux.resources.network.priorities without net_prio"))?;
        for (ifname, prio) in &r.net_prio {
            write(&d.join("net_prio.ifpriomap"), &format!("{ifname} {prio}"))?;
        }
    }
    if !r.rdma.is_empty() {
        let d = dir_of("rdma").ok_or(Error::Unsupported("linux.resources.rdma without the rdma controller"))?;
        for line in crate::resources::rdma_lines(&r.rdma) {
            write(&d.join("rdma.max"), &line)?;
        }
    }
    if !r.unified.is_empty() {
        return Err(Error::Unsupported("linux.resources.unified (cgroup v2 files) on a cgroup v1 host"));
    }
    if !r.devices.is_empty() {
        if let Some(d) = dir_of("devices") {
            // One open of each file for all the rules (a container has
            // about twenty): each write is one rule to the kernel.
            let (mut allow, mut deny) = (None, None);
            for rule in &r.devices {
                let (slot, file) = if rule.allow { (&mut allow, "devices.allow") } else { (&mut deny, "devices.deny") };
                let path = d.join(file);
                let f = match slot {
                    Some(f) => f,
                    None => {
                        slot.insert(std::fs::OpenOptions::new().write(true).open(&path).map_err(crate::io_err(&path))?)
                    }
                };
                std::io::Write::write_all(f, rule.v1_line().as_bytes()).map_err(crate::io_err(&path))?;
            }
        }
    }
    Ok(())
}

/// A control file that must exist for a field to be honoured; its absence
/// names the field.
fn control(dir: &Path, file: &str, field: &'static str) -> Result<std::path::PathBuf> {
    let p = dir.join(file);
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Unsupported(field))
    }
}

fn memory_extras<'a>(dir_of: &impl Fn(&str) -> Option<&'a Path>, r: &Resources) -> Result<()> {
    let any = r.memory_swappiness.is_some()
        || r.kernel_memory.is_some()
        || r.kernel_tcp.is_some()
        || r.memory_use_hierarchy.is_some()
        || r.memory_check_before_update;
    if !any {
        return Ok(());
    }
    let d = dir_of("memory").ok_or(Error::Unsupported("linux.resources.memory without the memory controller"))?;
    if let Some(v) = r.memory_swappiness {
        if v > 100 {
            return Err(Error::Invalid { what: "linux.resources.memory.swappiness", value: v.to_string() });
        }
        write(&control(d, "memory.swappiness", "linux.resources.memory.swappiness")?, &v.to_string())?;
    }
    if let Some(v) = r.kernel_memory {
        let f = control(d, "memory.kmem.limit_in_bytes", "linux.resources.memory.kernel (no kernel memory limits)")?;
        write(&f, &v.to_string())?;
    }
    if let Some(v) = r.kernel_tcp {
        let f =
            control(d, "memory.kmem.tcp.limit_in_bytes", "linux.resources.memory.kernelTCP (no TCP memory limits)")?;
        write(&f, &v.to_string())?;
    }
    if let Some(h) = r.memory_use_hierarchy {
        write(&control(d, "memory.use_hierarchy", "linux.resources.memory.useHierarchy")?, if h { "1" } else { "0" })?;
    }
    if r.memory_check_before_update {
        if let Some(limit) = r.memory_limit.filter(|l| *l > 0) {
            let used: i64 = read(&d.join("memory.usage_in_bytes"))?.trim().parse().unwrap_or(0);
            if limit < used {
                return Err(Error::Invalid {
                    what: "linux.resources.memory.limit (below current usage, checkBeforeUpdate)",
                    value: limit.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn cpu_extras<'a>(dir_of: &impl Fn(&str) -> Option<&'a Path>, r: &Resources) -> Result<()> {
    if r.cpu_realtime_period.is_none()
        && r.cpu_realtime_runtime.is_none()
        && r.cpu_burst.is_none()
        && r.cpu_idle.is_none()
    {
        return Ok(());
    }
    let d = dir_of("cpu").ok_or(Error::Unsupported("linux.resources.cpu without the cpu controller"))?;
    if let Some(v) = r.cpu_idle {
        write(&control(d, "cpu.idle", "linux.resources.cpu.idle (a kernel before 5.15)")?, &v.to_string())?;
    }
    // The period first: a runtime must fit in it.
    if let Some(v) = r.cpu_realtime_period {
        let f = control(d, "cpu.rt_period_us", "linux.resources.cpu.realtimePeriod (no real-time group scheduling)")?;
        write(&f, &v.to_string())?;
    }
    if let Some(v) = r.cpu_realtime_runtime {
        let f = control(d, "cpu.rt_runtime_us", "linux.resources.cpu.realtimeRuntime (no real-time group scheduling)")?;
        write(&f, &v.to_string())?;
    }
    if let Some(v) = r.cpu_burst {
        write(&control(d, "cpu.cfs_burst_us", "linux.resources.cpu.burst")?, &v.to_string())?;
    }
    Ok(())
}

fn blkio_extras<'a>(dir_of: &impl Fn(&str) -> Option<&'a Path>, r: &Resources) -> Result<()> {
    if r.blkio_leaf_weight.is_none() && r.blkio_weight_devices.is_empty() && r.blkio_throttles.is_empty() {
        return Ok(());
    }
    let d = dir_of("blkio").ok_or(Error::Unsupported("linux.resources.blockIO without the blkio controller"))?;
    if let Some(w) = r.blkio_leaf_weight {
        write(&control(d, "blkio.leaf_weight", "linux.resources.blockIO.leafWeight (no CFQ)")?, &w.to_string())?;
    }
    for w in &r.blkio_weight_devices {
        if let Some(v) = w.weight {
            // CFQ's file, else BFQ's.
            let f = d.join("blkio.weight_device");
            let f = if f.exists() {
                f
            } else {
                control(d, "blkio.bfq.weight_device", "linux.resources.blockIO.weightDevice (no CFQ or BFQ)")?
            };
            write(&f, &format!("{}:{} {v}", w.major, w.minor))?;
        }
        if let Some(v) = w.leaf_weight {
            let f =
                control(d, "blkio.leaf_weight_device", "linux.resources.blockIO.weightDevice[].leafWeight (no CFQ)")?;
            write(&f, &format!("{}:{} {v}", w.major, w.minor))?;
        }
    }
    for t in &r.blkio_throttles {
        let f = control(d, t.kind.v1_file(), "linux.resources.blockIO throttles (no blk-throttle)")?;
        write(&f, &format!("{}:{} {}", t.major, t.minor, t.rate))?;
    }
    Ok(())
}

pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let state = dir.join("freezer.state");
    // FREEZING can last while tasks are in uninterruptible sleep; write again
    // until the kernel reports the state, as runc does.
    for _ in 0..1000 {
        write(&state, want)?;
        if read(&state)?.trim() == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::Invalid { what: "freezer.state", value: read(&state)?.trim().to_owned() })
}
