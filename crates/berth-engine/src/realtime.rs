//! Real-time CPU time for containers (`--cpu-rt-runtime`): on cgroup v1 a
//! cgroup's budget comes out of its parent's, so the daemon's share
//! (`--cpu-rt-runtime` of berthd, as of dockerd) is granted down the
//! container's cgroup parent before the container's own is set.

use std::sync::Arc;

use crate::model::Container;
use crate::{Engine, Error, Result};

impl Engine {
    /// Whether `c`'s real-time settings can be had here; checked at create.
    pub(crate) fn verify_realtime(&self, c: &Container) -> Result<()> {
        let r = &c.host.resources;
        if r.cpu_realtime_period == 0 && r.cpu_realtime_runtime == 0 {
            return Ok(());
        }
        if self.hierarchies.as_ref().and_then(berth_cgroups::realtime_cpu).is_none() {
            return Err(Error::Invalid(
                "CpuRealtimePeriod/CpuRealtimeRuntime: the kernel has no cgroup cpu real-time scheduler".into(),
            ));
        }
        let budget = self.cfg.cpu_rt_runtime;
        if r.cpu_realtime_runtime > 0 && r.cpu_realtime_runtime > budget {
            return Err(Error::Invalid(format!(
                "CpuRealtimeRuntime {} is more than the {budget} µs the daemon gives its containers (berthd --cpu-rt-runtime)",
                r.cpu_realtime_runtime
            )));
        }
        Ok(())
    }

    /// Grant the daemon's budget down `c`'s cgroup parent, when `c` asks
    /// for real-time time.
    pub(crate) async fn grant_realtime(self: &Arc<Self>, c: &Container) -> Result<()> {
        if c.host.resources.cpu_realtime_runtime <= 0 {
            return Ok(());
        }
        let Some(h) = self.hierarchies.clone() else { return Ok(()) };
        let parent = if c.host.cgroup_parent.is_empty() { &self.cfg.cgroup_parent } else { &c.host.cgroup_parent };
        let parent = parent.clone();
        let (period, runtime) = (self.cfg.cpu_rt_period, self.cfg.cpu_rt_runtime);
        tokio::task::spawn_blocking(move || berth_cgroups::grant_realtime(&h, &parent, period, runtime))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Invalid(format!("real-time budget of the cgroup parent: {e}")))
    }
}
