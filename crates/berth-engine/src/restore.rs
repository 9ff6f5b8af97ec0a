//! The restore of a previous run at the daemon's start: container records
//! read back, live shims reconnected, exits that happened meanwhile
//! recorded, and volumes taken into use again by the containers running.

use std::sync::Arc;
use std::time::Duration;

use crate::containers::new_entry;
use crate::model::{Container, Status};
use crate::shim::ShimDir;
use crate::{Engine, Error, Result};

impl Engine {
    /// Find the records of a previous run; reconnect to live shims, and
    /// record the exits that happened while the daemon was away.
    pub(crate) async fn restore(self: &Arc<Self>) -> Result<()> {
        let dir = self.containers_dir();
        let rd = std::fs::read_dir(&dir).map_err(Error::io(format!("list {}", dir.display())))?;
        // Containers of builds that died with the daemon: no one will
        // commit or remove them, so they go once restored.
        let mut stranded = vec![];
        for ent in rd.flatten() {
            let (durable, volatile) =
                (ent.path().join(crate::record::DURABLE), ent.path().join(crate::record::VOLATILE));
            let Some((generation, mut c)) = crate::record::load::<Container>(&durable, &volatile) else { continue };
            self.record_gen.seen(generation);
            if c.mount_points.is_empty() && !c.host.binds.is_empty() {
                // A record from before mount points: its binds, planned now.
                if self.plan_mounts(&mut c).is_ok() {
                    let _ = self.save(&c);
                }
            }
            let id = c.id.clone();
            if c.build_step {
                stranded.push(id.clone());
            }
            let live = c.state.status.is_live();
            let e = new_entry(c);
            if let Ok(mut m) = self.containers.lock() {
                m.insert(id.clone(), e.clone());
            }
            if !live {
                // A crash between recording an exit and unmounting, or in
                // the middle of a start: a shim and an init waiting for a
                // start that will never come, its cgroup and runtime state.
                if let Ok(c) = e.rec.lock().map(|r| r.clone()) {
                    if self.has_remains(&c.id) {
                        self.reap_off(&c.id).await;
                    }
                    let _ = self.teardown(&c);
                    if crate::restart::start_on_open(&c) {
                        if let Ok(mut r) = e.rec.lock() {
                            r.state.status = Status::Restarting;
                        }
                        self.restart_later(e.clone(), Duration::ZERO);
                    }
                }
                continue;
            }
            let sd = ShimDir::new(&self.cfg.exec_root, &id);
            if sd.live_pid().is_some() {
                if let Ok(c) = e.rec.lock().map(|r| r.clone()) {
                    self.network_restore(&c);
                    for p in c.mount_points.iter().filter(|p| p.kind == crate::model::MountKind::Volume) {
                        let _ = self.volumes.acquire(&p.name, &c.id);
                    }
                }
                if e.rec.lock().is_ok_and(|r| r.state.status == Status::Running) {
                    self.health_start(&e, false);
                }
                self.monitor(e, sd);
            } else {
                let rec = match sd.read_exit() {
                    Some(r) => {
                        self.reap_off(&id).await;
                        r
                    }
                    None => self.lost(&e).await,
                };
                self.exited(&e, rec).await;
            }
        }
        for id in stranded {
            if let Err(e) = self.remove(&id, true, true).await {
                tracing::warn!(id, "remove a stranded build container: {e}");
            }
        }
        self.volumes.sweep();
        Ok(())
    }
}
