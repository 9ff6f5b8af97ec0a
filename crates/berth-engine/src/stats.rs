//! `docker stats`: one sample of a container's usage, read by the daemon
//! from the container's cgroup, the host's /proc/stat and the network
//! devices of the container's network namespace.

use crate::model::Status;
use crate::{Engine, Error, Result};

/// Counters of one network interface, as /proc/net/dev gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One reading of a container's usage.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub id: String,
    /// With Docker's leading slash.
    pub name: String,
    /// Whether the container had a process; a sample of one that had not
    /// holds only zeros and the zero time.
    pub live: bool,
    /// When it was read (RFC 3339).
    pub read: String,
    pub cgroup: berth_cgroups::Stats,
    /// CPU time of the whole host since boot, in nanoseconds.
    pub system_ns: u64,
    pub online_cpus: u32,
    /// The host's memory, the limit shown when the container has none.
    pub host_memory: u64,
    /// Interfaces of the container's network namespace, loopback left out.
    pub networks: Vec<(String, NetDev)>,
}

/// /proc/stat: the host's CPU time (user to softirq, as Docker sums it)
/// in nanoseconds, and the number of CPUs listed.
pub fn parse_proc_stat(text: &str) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let ticks: u64 = f.take(7).filter_map(|v| v.parse::<u64>().ok()).sum();
                total = berth_core::time::ticks_to_ns(ticks);
            }
            Some(c) if c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total, cpus)
}

/// /proc/<pid>/net/dev: every interface but loopback.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetDev)> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if name == "lo" || v.len() < 16 {
                return None;
            }
            Some((
                name.to_owned(),
                NetDev {
                    rx_bytes: v[0],
                    rx_packets: v[1],
                    rx_errors: v[2],
                    rx_dropped: v[3],
                    tx_bytes: v[8],
                    tx_packets: v[9],
                    tx_errors: v[10],
                    tx_dropped: v[11],
                },
            ))
        })
        .collect()
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.split_whitespace().next()?.parse().ok()))
        })
        .map_or(0, |kib: u64| kib * 1024)
}

impl Engine {
    /// The cgroup a container's runtime made: `<cgroup-parent>/<id>`, as
    /// the spec names it (`id` is a full id).
    pub(crate) fn cgroup_of(&self, id: &str) -> Result<berth_cgroups::Cgroup> {
        let h = self.hierarchies.as_ref().ok_or_else(|| Error::Internal("no cgroup file system is mounted".into()))?;
        // A container's own parent, else the daemon's.
        let own = self.find(id).ok().and_then(|e| e.rec.lock().ok().map(|r| r.host.cgroup_parent.clone()));
        let parent = own.filter(|p| !p.is_empty()).unwrap_or_else(|| self.cfg.cgroup_parent.clone());
        Ok(berth_cgroups::Cgroup::locate(h, &crate::spec::cgroup_path(&parent, id)))
    }

    /// `GET /containers/{id}/stats`: one sample. A container without a
    /// process gives a sample of zeros, as Docker's does.
    pub async fn stats(&self, key: &str) -> Result<Sample> {
        let c = self.inspect(key)?;
        let mut s = Sample { id: c.id.clone(), name: c.name.clone(), ..Default::default() };
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            s.read = crate::model::ZERO_TIME.to_owned();
            return Ok(s);
        }
        let cg = self.cgroup_of(&c.id)?;
        let pid = c.state.pid;
        let net = !matches!(c.host.network_mode.as_str(), "host" | "none");
        let s = tokio::task::spawn_blocking(move || -> Result<Sample> {
            s.cgroup = match cg.stats() {
                Ok(st) => st,
                // The container exited between the record and the read.
                Err(_) => {
                    s.read = crate::model::ZERO_TIME.to_owned();
                    return Ok(s);
                }
            };
            s.live = true;
            s.read = berth_core::time::now_rfc3339();
            let stat = std::fs::read_to_string("/proc/stat").map_err(Error::io("read /proc/stat"))?;
            (s.system_ns, s.online_cpus) = parse_proc_stat(&stat);
            s.host_memory = host_memory();
            if net && pid > 0 {
                if let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) {
                    s.networks = parse_net_dev(&t);
                }
            }
            Ok(s)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_cpu_time_and_count() {
        let hz = berth_core::time::ticks_to_ns(1);
        let (ns, n) = parse_proc_stat(
            "cpu  10 1 5 100 2 0 3 7 0 0\ncpu0 5 0 2 50 1 0 1 0 0 0\ncpu1 5 1 3 50 1 0 2 0 0 0\nintr 1\n",
        );
        assert_eq!(ns, 121 * hz);
        assert_eq!(n, 2);
    }

    #[test]
    fn interfaces_without_loopback() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 100 2 3 4 0 0 0 0 200 5 6 7 0 0 0 0\n";
        let n = parse_net_dev(t);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].0, "eth0");
        assert_eq!(
            n[0].1,
            NetDev {
                rx_bytes: 100,
                rx_packets: 2,
                rx_errors: 3,
                rx_dropped: 4,
                tx_bytes: 200,
                tx_packets: 5,
                tx_errors: 6,
                tx_dropped: 7
            }
        );
    }
}
