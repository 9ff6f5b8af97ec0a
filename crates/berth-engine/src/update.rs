//! `docker update`: new resource limits and restart policy for a
//! container, written to its cgroup at once when it runs and kept in its
//! record for later starts.

use std::sync::Arc;

use crate::containers::poisoned;
use crate::model::{Resources, RestartName, RestartPolicy};
use crate::{Engine, Error, Result};

/// What to change. As in Docker's UpdateConfig, a zero or empty field of
/// `resources` leaves the current value; ulimits and the OOM killer switch
/// are not changed by an update.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub resources: Resources,
    pub restart_policy: Option<RestartPolicy>,
}

fn conflict(id: &str, why: &str) -> Error {
    Error::Conflict(format!("Cannot update container {id}: {why}"))
}

/// The swap limit in force: Docker's default is twice the memory limit.
fn effective_swap(r: &Resources) -> i64 {
    match (r.memory, r.memory_swap) {
        (m, 0) if m > 0 => m * 2,
        (_, s) => s,
    }
}

/// `r` with `u` merged in, checked as moby checks an update; and the
/// cgroup writes that make it so on a running container.
pub fn merge(id: &str, r: &Resources, u: &Resources) -> Result<(Resources, berth_cgroups::Resources)> {
    crate::verify::resources(u, true)?;
    if u.nano_cpus > 0 && r.cpu_period > 0 {
        return Err(conflict(
            id,
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set",
        ));
    }
    if u.nano_cpus > 0 && r.cpu_quota > 0 {
        return Err(conflict(id, "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"));
    }
    if u.cpu_period > 0 && r.nano_cpus > 0 {
        return Err(conflict(id, "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"));
    }
    if u.cpu_quota > 0 && r.nano_cpus > 0 {
        return Err(conflict(id, "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"));
    }
    let mut n = r.clone();
    let mut cg = berth_cgroups::Resources::default();
    if u.blkio_weight != 0 {
        n.blkio_weight = u.blkio_weight;
        cg.blkio_weight = Some(u.blkio_weight);
    }
    if u.cpu_shares != 0 {
        n.cpu_shares = u.cpu_shares;
        cg.cpu_shares = Some(u.cpu_shares.max(2) as u64);
    }
    if u.nano_cpus != 0 {
        n.nano_cpus = u.nano_cpus;
        cg.cpu_period = Some(100_000);
        cg.cpu_quota = Some(u.nano_cpus / 10_000);
    }
    if u.cpu_period != 0 {
        n.cpu_period = u.cpu_period;
        cg.cpu_period = Some(u.cpu_period as u64);
    }
    if u.cpu_quota != 0 {
        n.cpu_quota = u.cpu_quota;
        cg.cpu_quota = Some(u.cpu_quota);
    }
    if !u.cpuset_cpus.is_empty() {
        n.cpuset_cpus.clone_from(&u.cpuset_cpus);
        cg.cpuset_cpus = Some(u.cpuset_cpus.clone());
    }
    if !u.cpuset_mems.is_empty() {
        n.cpuset_mems.clone_from(&u.cpuset_mems);
        cg.cpuset_mems = Some(u.cpuset_mems.clone());
    }
    if u.memory != 0 {
        let swap = effective_swap(r);
        if u.memory_swap == 0 && swap > 0 && u.memory > swap {
            return Err(conflict(
                id,
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        // The default swap limit follows from the memory limit at
        // create; an update keeps the limit in force, not the default.
        if r.memory_swap == 0 && r.memory > 0 {
            n.memory_swap = swap;
        }
        n.memory = u.memory;
        cg.memory_limit = Some(u.memory);
    }
    if u.memory_swap != 0 {
        if u.memory_swap > 0 && n.memory <= 0 {
            return Err(Error::Invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
            ));
        }
        if u.memory_swap > 0 && u.memory_swap < n.memory {
            return Err(Error::Invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
        n.memory_swap = u.memory_swap;
        cg.memory_swap = Some(u.memory_swap);
        // v2 derives swap.max from the memory limit.
        cg.memory_limit = (n.memory > 0).then_some(n.memory);
    }
    if u.memory_reservation != 0 {
        n.memory_reservation = u.memory_reservation;
        cg.memory_reservation = Some(u.memory_reservation);
    }
    if let Some(v) = u.memory_swappiness {
        n.memory_swappiness = Some(v);
        cg.memory_swappiness = u64::try_from(v).ok();
    }
    if let Some(p) = u.pids_limit {
        n.pids_limit = Some(p);
        cg.pids_limit = Some(p);
    }
    if u.cpu_realtime_period != 0 {
        n.cpu_realtime_period = u.cpu_realtime_period;
        cg.cpu_realtime_period = u64::try_from(u.cpu_realtime_period).ok();
    }
    if u.cpu_realtime_runtime != 0 {
        n.cpu_realtime_runtime = u.cpu_realtime_runtime;
        cg.cpu_realtime_runtime = Some(u.cpu_realtime_runtime);
    }
    if n.cpu_realtime_period != 0 && n.cpu_realtime_runtime > n.cpu_realtime_period {
        return Err(conflict(id, "cpu-rt-runtime cannot be higher than cpu-rt-period"));
    }
    Ok((n, cg))
}

impl Engine {
    /// `POST /containers/{id}/update`.
    pub async fn update(self: &Arc<Self>, key: &str, u: Update) -> Result<Vec<String>> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        let (resources, cg) = merge(&c.id, &c.host.resources, &u.resources)?;
        if let Some(p) = &u.restart_policy {
            if c.host.auto_remove && p.name != RestartName::No {
                return Err(conflict(
                    &c.id,
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
        }
        let mut after = c.clone();
        after.host.resources = resources.clone();
        self.verify_realtime(&after)?;
        if c.state.status.is_live() && cg != berth_cgroups::Resources::default() {
            self.grant_realtime(&after).await?;
            let group = self.cgroup_of(&c.id)?;
            tokio::task::spawn_blocking(move || group.apply(&cg))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|err| Error::Internal(format!("Cannot update container {}: {err}", c.id)))?;
        }
        let updated = {
            let mut r = e.rec.lock().map_err(poisoned)?;
            r.host.resources = resources;
            if let Some(p) = u.restart_policy {
                r.host.restart_policy = p;
            }
            self.save(&r)?;
            r.clone()
        };
        self.event(&updated, "update");
        Ok(vec![])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_merge_and_conflicts_are_refused() {
        let r = Resources { memory: 32 << 20, ..Default::default() };
        let (n, cg) = merge("x", &r, &Resources { memory: 48 << 20, cpu_shares: 512, ..Default::default() }).unwrap();
        assert_eq!(n.memory, 48 << 20);
        assert_eq!(n.memory_swap, 64 << 20, "the default swap limit is kept as it was");
        assert_eq!(cg.memory_limit, Some(48 << 20));
        assert_eq!(cg.memory_swap, None);
        assert_eq!(cg.cpu_shares, Some(512));
        let e = merge("x", &r, &Resources { memory: 128 << 20, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("update the memoryswap at the same time"), "{e}");
        let (n, cg) = merge("x", &r, &Resources { memory: 128 << 20, memory_swap: -1, ..Default::default() }).unwrap();
        assert_eq!((n.memory, n.memory_swap), (128 << 20, -1));
        assert_eq!((cg.memory_limit, cg.memory_swap), (Some(128 << 20), Some(-1)));
        let unlimited = Resources::default();
        assert!(merge("x", &unlimited, &Resources { memory: 64 << 20, ..Default::default() }).is_ok());
        let nano = Resources { nano_cpus: 500_000_000, ..Default::default() };
        assert!(merge("x", &nano, &Resources { cpu_quota: 1000, ..Default::default() }).is_err());
        assert!(merge("x", &r, &Resources { memory: 1024, ..Default::default() }).is_err());
        let (n, _) = merge("x", &r, &Resources { pids_limit: Some(20), ..Default::default() }).unwrap();
        assert_eq!(n.pids_limit, Some(20));
    }
}
