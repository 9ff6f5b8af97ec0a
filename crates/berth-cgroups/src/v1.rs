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
    if !r.devices.is_empty() {
        if let Some(d) = dir_of("devices") {
            for rule in &r.devices {
                let file = if rule.allow { "devices.allow" } else { "devices.deny" };
                write(&d.join(file), &rule.v1_line())?;
            }
        }
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
