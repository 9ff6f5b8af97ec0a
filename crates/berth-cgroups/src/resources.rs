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
