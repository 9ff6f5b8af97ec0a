//! Container and pod stats, as kubelet's summary API reads them: CPU and
//! memory from the cgroups, the writable layer's size, and the pod's
//! network from its sandbox's namespace.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_cri::v1::*;
use tonic::Status;

use crate::{status, store, Cri};

/// The last CPU reading of each container, for a rate.
#[derive(Debug, Default)]
pub(crate) struct CpuReadings(Mutex<HashMap<String, (i64, u64)>>);

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

/// Bytes and inodes of `dir` and what is under it, not following links
/// or leaving its file system (a layer's or a container's upper dir).
pub(crate) fn usage(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else { return (0, 0) };
    let (mut bytes, mut inodes) = (top.blocks() * 512, 1u64);
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() && m.dev() == top.dev() {
                todo.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

impl Cri {
    /// One container's stats (zeros but its layer when it has no process).
    pub(crate) async fn stats_of(&self, c: &store::Container) -> Result<ContainerStats, Status> {
        Ok(self.stats_and_pids(c).await?.0)
    }

    /// A container's stats and the number of its processes.
    async fn stats_and_pids(&self, c: &store::Container) -> Result<(ContainerStats, u64), Status> {
        let sample = self.engine.stats(&c.id).await.map_err(status)?;
        let now = berth_core::time::now_nanos();
        let attributes = Some(ContainerAttributes {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        });
        let layer = self
            .engine
            .inspect(&c.id)
            .ok()
            .and_then(|e| e.rw_layer)
            .map(|rw| self.engine.cfg.data_root.join("overlay").join(rw.cache_id).join("diff"));
        let (bytes, inodes) = match layer.clone() {
            Some(dir) => tokio::task::spawn_blocking(move || usage(&dir)).await.unwrap_or((0, 0)),
            None => (0, 0),
        };
        let writable_layer = Some(FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: self.engine.cfg.data_root.join("overlay").display().to_string(),
            }),
            used_bytes: value(bytes),
            inodes_used: value(inodes),
        });
        if !sample.live {
            return Ok((ContainerStats { attributes, writable_layer, ..Default::default() }, 0));
        }
        let cg = &sample.cgroup;
        let total = cg.cpu.total_ns;
        let rate = {
            let mut last = self.cpu.0.lock().map_err(|_| Status::internal("stats lock poisoned"))?;
            let prev = last.insert(c.id.clone(), (now, total));
            prev.filter(|(t, u)| now > *t && total >= *u)
                .map(|(t, u)| ((total - u) as u128 * 1_000_000_000 / (now - t) as u128) as u64)
        };
        let stat = |k: &str| cg.memory.stat.get(k).copied();
        // The working set, as cAdvisor and containerd count it: usage less
        // the inactive file pages (v1's total_ counters, v2's own).
        let inactive = stat("total_inactive_file").or(stat("inactive_file")).unwrap_or(0);
        let working = cg.memory.usage.saturating_sub(inactive);
        let memory = MemoryUsage {
            timestamp: now,
            working_set_bytes: value(working),
            available_bytes: cg.memory.limit.map(|l| l.saturating_sub(working)).and_then(value),
            usage_bytes: value(cg.memory.usage),
            rss_bytes: stat("total_rss").or(stat("anon")).and_then(value),
            page_faults: stat("total_pgfault").or(stat("pgfault")).and_then(value),
            major_page_faults: stat("total_pgmajfault").or(stat("pgmajfault")).and_then(value),
        };
        let stats = ContainerStats {
            attributes,
            cpu: Some(CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: value(total),
                usage_nano_cores: rate.and_then(value),
            }),
            memory: Some(memory),
            writable_layer,
            swap: None,
        };
        Ok((stats, cg.pids.current))
    }

    pub(crate) async fn container_stats(&self, id: &str) -> Result<ContainerStats, Status> {
        let c = self.container_of(id)?;
        self.stats_of(&c).await
    }

    pub(crate) async fn list_container_stats(
        &self,
        f: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>, Status> {
        let f = f.unwrap_or_default();
        let mut out = vec![];
        for c in self.store.containers() {
            let wanted = (f.id.is_empty() || c.id.starts_with(&f.id))
                && (f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id))
                && f.label_selector.iter().all(|(k, v)| c.config.labels.get(k) == Some(v));
            // Only running containers have stats, as containerd lists them.
            if wanted && self.engine.inspect(&c.id).is_ok_and(|e| e.state.status.is_live()) {
                out.push(self.stats_of(&c).await?);
            }
        }
        Ok(out)
    }

    /// A pod's stats: its containers', summed, with the sandbox's own
    /// process, and the interfaces of its network namespace.
    pub(crate) async fn pod_stats(&self, id: &str) -> Result<PodSandboxStats, Status> {
        let s = self.sandbox_of(id)?;
        let now = berth_core::time::now_nanos();
        let (mut containers, mut pids) = (vec![], 0);
        for c in self.store.containers().into_iter().filter(|c| c.sandbox_id == s.id) {
            if self.engine.inspect(&c.id).is_ok_and(|e| e.state.status.is_live()) {
                let (st, n) = self.stats_and_pids(&c).await?;
                containers.push(st);
                pids += n;
            }
        }
        let infra = self.engine.stats(&s.id).await.map_err(status)?;
        let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| containers.iter().filter_map(f).sum::<u64>();
        let cpu = CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: value(
                infra.cgroup.cpu.total_ns + sum(&|c| c.cpu.as_ref()?.usage_core_nano_seconds.as_ref().map(|v| v.value)),
            ),
            usage_nano_cores: value(sum(&|c| c.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value))),
        };
        let memory = MemoryUsage {
            timestamp: now,
            working_set_bytes: value(
                infra.cgroup.memory.usage + sum(&|c| c.memory.as_ref()?.working_set_bytes.as_ref().map(|v| v.value)),
            ),
            usage_bytes: value(
                infra.cgroup.memory.usage + sum(&|c| c.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value)),
            ),
            ..Default::default()
        };
        let pid = self.engine.inspect(&s.id).ok().filter(|c| c.state.status.is_live()).map(|c| c.state.pid);
        let interfaces: Vec<NetworkInterfaceUsage> = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/dev")).ok())
            .map(|t| berth_engine::stats::parse_net_dev(&t))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, d)| NetworkInterfaceUsage {
                name,
                rx_bytes: value(d.rx_bytes),
                rx_errors: value(d.rx_errors),
                tx_bytes: value(d.tx_bytes),
                tx_errors: value(d.tx_errors),
            })
            .collect();
        pids += infra.cgroup.pids.current;
        let network = NetworkUsage {
            timestamp: now,
            default_interface: interfaces.iter().find(|i| i.name == "eth0").cloned(),
            interfaces,
        };
        Ok(PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(cpu),
                memory: Some(memory),
                network: Some(network),
                process: Some(ProcessUsage { timestamp: now, process_count: value(pids) }),
                containers,
            }),
            windows: None,
        })
    }

    pub(crate) async fn list_pod_stats(
        &self,
        f: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>, Status> {
        let f = f.unwrap_or_default();
        let mut out = vec![];
        for s in self.store.sandboxes() {
            let wanted = (f.id.is_empty() || s.id.starts_with(&f.id))
                && f.label_selector.iter().all(|(k, v)| s.config.labels.get(k) == Some(v));
            if wanted && self.engine.inspect(&s.id).is_ok_and(|e| e.state.status.is_live()) {
                out.push(self.pod_stats(&s.id).await?);
            }
        }
        Ok(out)
    }
}
