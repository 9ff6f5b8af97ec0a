//! Resource limits, in the units of the OCI runtime spec.

/// One rule of the device controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a` (all), `c` or `b`.
    pub kind: char,
    /// `None` for any (`*`).
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Some of `rwm`.
    pub access: String,
}

impl DeviceRule {
    /// The v1 `devices.allow`/`devices.deny` line.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<i64>| n.map_or("*".to_owned(), |n| n.to_string());
        if self.kind == 'a' {
            return "a".to_owned();
        }
        format!("{} {}:{} {}", self.kind, num(self.major), num(self.minor), self.access)
    }
}

/// Which of the four block I/O throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl Throttle {
    /// The v1 file.
    pub fn v1_file(self) -> &'static str {
        match self {
            Throttle::ReadBps => "blkio.throttle.read_bps_device",
            Throttle::WriteBps => "blkio.throttle.write_bps_device",
            Throttle::ReadIops => "blkio.throttle.read_iops_device",
            Throttle::WriteIops => "blkio.throttle.write_iops_device",
        }
    }

    /// The key in v2's io.max.
    pub fn v2_key(self) -> &'static str {
        match self {
            Throttle::ReadBps => "rbps",
            Throttle::WriteBps => "wbps",
            Throttle::ReadIops => "riops",
            Throttle::WriteIops => "wiops",
        }
    }
}

/// A per-device block I/O weight (blockIO.weightDevice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

/// A per-device throttle: bytes or operations per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleDevice {
    pub kind: Throttle,
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

/// Limits applied to a container's cgroup. `None` leaves the kernel default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_limit: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// Memory plus swap, as v1's memsw (-1 is unlimited).
    pub memory_swap: Option<i64>,
    pub disable_oom_killer: bool,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Zero or negative is unlimited.
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    /// In order; later rules override earlier ones.
    pub devices: Vec<DeviceRule>,
    pub memory_swappiness: Option<u64>,
    /// v1 kernel memory and TCP buffer limits.
    pub kernel_memory: Option<i64>,
    pub kernel_tcp: Option<i64>,
    pub memory_use_hierarchy: Option<bool>,
    /// Refuse a memory limit below what the cgroup already uses.
    pub memory_check_before_update: bool,
    pub cpu_realtime_runtime: Option<i64>,
    pub cpu_realtime_period: Option<u64>,
    pub cpu_idle: Option<i64>,
    pub cpu_burst: Option<u64>,
    pub blkio_leaf_weight: Option<u16>,
    pub blkio_weight_devices: Vec<WeightDevice>,
    pub blkio_throttles: Vec<ThrottleDevice>,
    /// Page size as the kernel names it (`2MB`, `1GB`) and the limit in bytes.
    pub hugetlb: Vec<(String, u64)>,
    pub net_cls_classid: Option<u32>,
    /// Interface name and priority.
    pub net_prio: Vec<(String, u32)>,
    /// Device, HCA handles, HCA objects.
    pub rdma: Vec<(String, Option<u32>, Option<u32>)>,
    /// v2 control files by name, written as given.
    pub unified: std::collections::BTreeMap<String, String>,
}

/// `rdma.max` lines: `<device> hca_handle=N hca_object=M`.
pub(crate) fn rdma_lines(r: &[(String, Option<u32>, Option<u32>)]) -> Vec<String> {
    r.iter()
        .map(|(dev, h, o)| {
            let mut line = dev.clone();
            if let Some(h) = h {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = o {
                line.push_str(&format!(" hca_object={o}"));
            }
            line
        })
        .collect()
}

/// v1 cpu.shares to v2 cpu.weight, as runc and crun convert
/// (2..262144 onto 1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// v1 blkio weight (10..1000) to v2 io.weight (1..10000), as runc converts.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn device_lines() {
        let r = DeviceRule { allow: true, kind: 'c', major: Some(1), minor: None, access: "rwm".into() };
        assert_eq!(r.v1_line(), "c 1:* rwm");
    }
}
