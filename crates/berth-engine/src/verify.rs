//! Checks of a container's host settings at create, before anything is made,
//! so that a value the kernel would refuse at start is a 400 now. The rules
//! and messages are moby's `verifyPlatformContainerSettings` and
//! `verifyPlatformContainerResources` (daemon/daemon_unix.go), and runc's
//! checks of sysctls and of mounts inside `/proc`.

use crate::model::{HostConfig, MountPoint, Resources};
use crate::network::{mode, Mode};
use crate::{Error, Result};

/// Docker's floor for memory limits and reservations (4 MiB, though its
/// message says 6MB).
const MIN_MEMORY: i64 = 4 << 20;

fn bad(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// Everything of `h` that can be checked without the image or the disk.
pub(crate) fn host_config(h: &HostConfig) -> Result<()> {
    resources(&h.resources, false)?;
    if h.shm_size < 0 {
        return Err(bad("SHM size can not be less than 0"));
    }
    if !(-1000..=1000).contains(&h.oom_score_adj) {
        return Err(bad(format!("Invalid value {}, range for oom score adj is [-1000, 1000]", h.oom_score_adj)));
    }
    // The parent names a place in each cgroup hierarchy: it may not climb out.
    if h.cgroup_parent.split('/').any(|p| p == "..") {
        return Err(bad(format!("invalid CgroupParent {:?}: it may not name a parent directory", h.cgroup_parent)));
    }
    // `--tmpfs` mounts are not mount points; `--mount type=tmpfs` ones are.
    for dest in h.tmpfs.keys() {
        outside_proc(dest, false)?;
    }
    sysctls(h)
}

/// The sysctls against the namespaces the container will have: each is the
/// host's only in host mode (a joined container's is not the host's).
fn sysctls(h: &HostConfig) -> Result<()> {
    let iso = berth_core::sysctl::Isolation {
        ipc: h.ipc_mode != "host",
        uts: h.uts_mode != "host",
        net: !matches!(mode(&h.network_mode), Mode::Host),
    };
    for name in h.sysctls.keys() {
        berth_core::sysctl::check(name, iso).map_err(Error::Invalid)?;
    }
    Ok(())
}

/// The resource values of a create (or, with `update`, of an update, where
/// a swap limit alone keeps the memory limit already set).
pub(crate) fn resources(r: &Resources, update: bool) -> Result<()> {
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return Err(bad("Minimum memory limit allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return Err(bad("Minimum memoryswap limit should be larger than memory limit, see usage"));
    }
    if r.memory == 0 && r.memory_swap > 0 && !update {
        return Err(bad("You should always set the Memory limit when using Memoryswap limit, see usage"));
    }
    if r.memory_swap < -1 {
        return Err(bad(format!("invalid memory swap limit {}: use -1 for unlimited", r.memory_swap)));
    }
    if r.memory_reservation != 0 && r.memory_reservation < MIN_MEMORY {
        return Err(bad("Minimum memory reservation allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return Err(bad("Minimum memory limit can not be less than memory reservation limit, see usage"));
    }
    if let Some(v) = r.memory_swappiness.filter(|v| !(0..=100).contains(v)) {
        return Err(bad(format!("Invalid value: {v}, valid memory swappiness range is 0-100")));
    }
    if r.nano_cpus > 0 && r.cpu_period > 0 {
        return Err(bad("Conflicting options: Nano CPUs and CPU Period cannot both be set"));
    }
    if r.nano_cpus > 0 && r.cpu_quota > 0 {
        return Err(bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set"));
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    // Docker leaves the floor to the kernel, whose smallest quota is 1 ms of
    // each 100 ms period: 0.01 CPUs, the floor its message already names.
    if r.nano_cpus != 0 && (r.nano_cpus < 10_000_000 || r.nano_cpus > ncpu * 1_000_000_000) {
        return Err(bad(format!("Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")));
    }
    if r.cpu_shares < 0 {
        return Err(bad(format!("invalid CPU shares ({}): value must be a positive integer", r.cpu_shares)));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return Err(bad("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"));
    }
    // -1 is "no quota" to the kernel; anything else below 1 ms it refuses.
    if r.cpu_quota != 0 && r.cpu_quota != -1 && r.cpu_quota < 1000 {
        return Err(bad("CPU cfs quota can not be less than 1ms (i.e. 1000)"));
    }
    cpuset("cpus", &r.cpuset_cpus, "/sys/devices/system/cpu/online")?;
    cpuset("mems", &r.cpuset_mems, "/sys/devices/system/node/online")?;
    if r.blkio_weight != 0 && !(10..=1000).contains(&r.blkio_weight) {
        return Err(bad("Range of blkio weight is from 10 to 1000"));
    }
    if r.cpu_realtime_period < 0 || r.cpu_realtime_runtime < -1 {
        return Err(bad("CPU real-time period and runtime cannot be negative (a runtime of -1 is no limit)"));
    }
    if r.cpu_realtime_period != 0 && r.cpu_realtime_runtime > r.cpu_realtime_period {
        return Err(bad("cpu-rt-runtime cannot be higher than cpu-rt-period"));
    }
    for u in &r.ulimits {
        if u.soft > u.hard {
            return Err(bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
    }
    Ok(())
}

/// A cpuset list (`0-3,7`) parsed, and each member checked against what the
/// host has online, as moby's `IsCpusetCpusAvailable` does.
fn cpuset(what: &str, list: &str, online: &str) -> Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let asked = parse_list(list).ok_or_else(|| bad(format!("Invalid value {list} for cpuset {what}")))?;
    // A host without the file (no NUMA node directory) has node 0 alone.
    let have_text = std::fs::read_to_string(online).unwrap_or_else(|_| "0".into());
    let have = parse_list(have_text.trim()).unwrap_or_default();
    if asked.iter().any(|n| !have.contains(n)) {
        let noun = if what == "cpus" { "CPUs" } else { "memory nodes" };
        return Err(bad(format!(
            "Requested {noun} are not available - requested {list}, available: {}",
            have_text.trim()
        )));
    }
    Ok(())
}

/// `0-3,7` into its members; `None` when malformed or absurdly large.
fn parse_list(s: &str) -> Option<Vec<u32>> {
    let mut out = vec![];
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if a > b || b - a > 8192 || b > 65_535 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// Files inside `/proc` that runc lets a bind cover (lxcfs serves them).
const PROC_FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// No mount may land on `/proc` or inside it, but for runc's list of files
/// a bind may cover: a bind over `/proc/sys` or `/proc/sysrq-trigger` would
/// undo the masked and read-only paths (runc's `checkProcMount`).
pub(crate) fn mount_destinations(mounts: &[MountPoint]) -> Result<()> {
    for m in mounts {
        outside_proc(&m.destination, m.kind != crate::model::MountKind::Tmpfs)?;
    }
    Ok(())
}

fn outside_proc(dest: &str, bind: bool) -> Result<()> {
    let dest = crate::mounts::clean_path(dest);
    if (dest == "/proc" || dest.starts_with("/proc/")) && !(bind && PROC_FILES.contains(&dest.as_str())) {
        return Err(bad(format!("{dest:?} cannot be mounted because it is inside /proc")));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{MountKind, Ulimit};

    fn res(f: impl FnOnce(&mut Resources)) -> Resources {
        let mut r = Resources::default();
        f(&mut r);
        r
    }

    #[test]
    fn values_the_kernel_refuses_are_refused_with_docker_s_messages() {
        let cases: Vec<(Resources, &str)> = vec![
            (res(|r| r.nano_cpus = 1), "Range of CPUs"),
            (res(|r| r.nano_cpus = -1), "Range of CPUs"),
            (res(|r| r.nano_cpus = 1_000_000_000_000), "Range of CPUs"),
            (res(|r| r.cpu_quota = 1), "CPU cfs quota"),
            (res(|r| r.cpu_period = 10), "CPU cfs period"),
            (res(|r| r.cpu_shares = -5), "invalid CPU shares (-5)"),
            (res(|r| r.blkio_weight = 5000), "Range of blkio weight"),
            (res(|r| r.blkio_weight = 5), "Range of blkio weight"),
            (res(|r| r.memory = 1024), "Minimum memory limit"),
            (res(|r| r.memory = -5), "Minimum memory limit"),
            (res(|r| r.memory_swap = 64 << 20), "always set the Memory limit"),
            (res(|r| r.memory_reservation = 1), "Minimum memory reservation"),
            (res(|r| (r.memory, r.memory_reservation) = (8 << 20, 16 << 20)), "less than memory reservation"),
            (res(|r| (r.nano_cpus, r.cpu_quota) = (1_000_000_000, 50_000)), "Nano CPUs and CPU Quota"),
            (res(|r| r.cpuset_cpus = "0-1000".into()), "Requested CPUs are not available"),
            (res(|r| r.cpuset_cpus = "x".into()), "Invalid value x for cpuset cpus"),
            (res(|r| r.cpuset_mems = "7".into()), "Requested memory nodes"),
            (
                res(|r| r.ulimits = vec![Ulimit { name: "nofile".into(), soft: 10, hard: 5 }]),
                "soft limit must be less than or equal",
            ),
        ];
        for (r, want) in cases {
            let e = resources(&r, false).unwrap_err().to_string();
            assert!(e.contains(want), "{r:?}: {e}");
        }
        let ok = res(|r| {
            (r.nano_cpus, r.cpu_shares, r.blkio_weight, r.memory, r.cpuset_cpus) =
                (500_000_000, 512, 500, 64 << 20, "0".into())
        });
        resources(&ok, false).unwrap();
        resources(&res(|r| r.cpu_quota = -1), false).unwrap();
        resources(&res(|r| r.memory_swap = 64 << 20), true).unwrap();
    }

    #[test]
    fn host_settings() {
        let h = |f: fn(&mut HostConfig)| {
            let mut h = HostConfig::default();
            f(&mut h);
            host_config(&h).map_err(|e| e.to_string())
        };
        assert!(h(|h| h.shm_size = -1).unwrap_err().contains("SHM size"));
        assert!(h(|h| h.oom_score_adj = 1001).unwrap_err().contains("oom score adj"));
        assert!(h(|h| {
            h.sysctls.insert("kernel.core_pattern".into(), "|/x".into());
        })
        .unwrap_err()
        .contains("not in a separate kernel namespace"));
        h(|h| {
            h.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        })
        .unwrap();
        assert!(h(|h| {
            h.network_mode = "host".into();
            h.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        })
        .unwrap_err()
        .contains("host network namespace"));
    }

    #[test]
    fn mounts_inside_proc() {
        let m = |kind, dest: &str| MountPoint { kind, destination: dest.into(), ..Default::default() };
        for d in ["/proc", "/proc/sys", "/proc//sys/kernel", "/proc/sysrq-trigger", "/proc/../proc/sys"] {
            let e = mount_destinations(&[m(MountKind::Bind, d)]).unwrap_err().to_string();
            assert!(e.contains("cannot be mounted because it is inside /proc"), "{d}: {e}");
        }
        mount_destinations(&[m(MountKind::Bind, "/proc/meminfo"), m(MountKind::Volume, "/procs")]).unwrap();
        assert!(mount_destinations(&[m(MountKind::Tmpfs, "/proc/meminfo")]).is_err());
    }
}
