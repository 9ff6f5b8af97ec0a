//! The spec's linux.resources and cgroupsPath, turned into berth-cgroups terms.

use berth_cgroups::{Cgroup, DeviceRule, Hierarchies, Resources, Throttle, ThrottleDevice, WeightDevice};
use oci_spec::runtime::{LinuxDeviceType, LinuxResources, Spec};

use crate::Result;

/// Device nodes every container may use, whatever its rules say; runc's
/// `AllowedDevices` list (libcontainer/specconv), so that the default
/// /dev entries work.
const ALWAYS_ALLOWED: &[(char, Option<i64>, Option<i64>, &str)] = &[
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"),    // null
    ('c', Some(1), Some(8), "rwm"),    // random
    ('c', Some(1), Some(7), "rwm"),    // full
    ('c', Some(5), Some(0), "rwm"),    // tty
    ('c', Some(1), Some(5), "rwm"),    // zero
    ('c', Some(1), Some(9), "rwm"),    // urandom
    ('c', Some(136), None, "rwm"),     // pts
    ('c', Some(5), Some(2), "rwm"),    // ptmx
    ('c', Some(10), Some(200), "rwm"), // tun
];

fn kind_char(t: Option<LinuxDeviceType>) -> char {
    match t {
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
        Some(LinuxDeviceType::A) | None => 'a',
    }
}

/// Resources from the spec.
pub(crate) fn resources(r: Option<&LinuxResources>) -> Resources {
    let mut out = Resources::default();
    let Some(r) = r else {
        out.devices = default_rules().collect();
        return out;
    };
    if let Some(m) = r.memory() {
        out.memory_limit = m.limit();
        out.memory_reservation = m.reservation();
        out.memory_swap = m.swap();
        out.disable_oom_killer = m.disable_oom_killer().unwrap_or(false);
        out.memory_swappiness = m.swappiness();
        out.kernel_memory = m.kernel();
        out.kernel_tcp = m.kernel_tcp();
        out.memory_use_hierarchy = m.use_hierarchy();
        out.memory_check_before_update = m.check_before_update().unwrap_or(false);
    }
    if let Some(c) = r.cpu() {
        out.cpu_shares = c.shares();
        out.cpu_quota = c.quota();
        out.cpu_period = c.period();
        out.cpuset_cpus = c.cpus().clone().filter(|s| !s.is_empty());
        out.cpuset_mems = c.mems().clone().filter(|s| !s.is_empty());
        out.cpu_realtime_runtime = c.realtime_runtime();
        out.cpu_realtime_period = c.realtime_period();
        out.cpu_idle = c.idle();
        out.cpu_burst = c.burst();
    }
    if let Some(p) = r.pids() {
        out.pids_limit = Some(p.limit());
    }
    if let Some(b) = r.block_io() {
        out.blkio_weight = b.weight();
        out.blkio_leaf_weight = b.leaf_weight();
        for w in b.weight_device().iter().flatten() {
            out.blkio_weight_devices.push(WeightDevice {
                major: w.major(),
                minor: w.minor(),
                weight: w.weight(),
                leaf_weight: w.leaf_weight(),
            });
        }
        let throttles = [
            (Throttle::ReadBps, b.throttle_read_bps_device()),
            (Throttle::WriteBps, b.throttle_write_bps_device()),
            (Throttle::ReadIops, b.throttle_read_iops_device()),
            (Throttle::WriteIops, b.throttle_write_iops_device()),
        ];
        for (kind, list) in throttles {
            for t in list.iter().flatten() {
                out.blkio_throttles.push(ThrottleDevice { kind, major: t.major(), minor: t.minor(), rate: t.rate() });
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        // A negative limit is no limit the kernel takes; refused at apply.
        out.hugetlb.push((h.page_size().clone(), u64::try_from(h.limit()).unwrap_or(u64::MAX)));
    }
    if let Some(n) = r.network() {
        out.net_cls_classid = n.class_id();
        for p in n.priorities().iter().flatten() {
            out.net_prio.push((p.name().clone(), p.priority()));
        }
    }
    let mut rdma: Vec<_> =
        r.rdma().iter().flatten().map(|(dev, l)| (dev.clone(), l.hca_handles(), l.hca_objects())).collect();
    rdma.sort();
    out.rdma = rdma;
    out.unified = r.unified().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    for d in r.devices().iter().flatten() {
        out.devices.push(DeviceRule {
            allow: d.allow(),
            kind: kind_char(d.typ()),
            major: d.major(),
            minor: d.minor(),
            access: d.access().clone().unwrap_or_else(|| "rwm".to_owned()),
        });
    }
    out.devices.extend(default_rules());
    out
}

fn default_rules() -> impl Iterator<Item = DeviceRule> {
    ALWAYS_ALLOWED.iter().map(|&(kind, major, minor, access)| DeviceRule {
        allow: true,
        kind,
        major,
        minor,
        access: access.to_owned(),
    })
}

/// The container's cgroup: cgroupsPath, or the id under the caller's cgroup.
pub(crate) fn locate(spec: &Spec, id: &str, known: Option<&Hierarchies>) -> Result<Cgroup> {
    let detected;
    let h = match known {
        Some(h) => h,
        None => {
            detected = Hierarchies::detect()?;
            &detected
        }
    };
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| id.to_owned());
    Ok(Cgroup::locate(h, &path))
}
