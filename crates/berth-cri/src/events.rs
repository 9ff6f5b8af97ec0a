//! GetContainerEvents (kubelet's evented PLEG): the engine's container
//! events of pods and their containers, with the pod's status and its
//! containers' statuses at that moment, as containerd sends them.

use std::sync::Arc;

use k8s_cri::v1::{ContainerEventResponse, ContainerEventType, ContainerStatus};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::sandbox::SANDBOX_ID_LABEL;
use crate::Cri;

/// How long an event of a sandbox waits for the sandbox's record.
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn kind(action: &str) -> Option<ContainerEventType> {
    Some(match action {
        "create" => ContainerEventType::ContainerCreatedEvent,
        "start" => ContainerEventType::ContainerStartedEvent,
        "die" => ContainerEventType::ContainerStoppedEvent,
        "destroy" => ContainerEventType::ContainerDeletedEvent,
        _ => return None,
    })
}

impl Cri {
    /// The event of engine event `e`, if it is one of a pod's.
    fn event_of(&self, e: &berth_engine::events::Event) -> Option<ContainerEventResponse> {
        if e.typ != "container" {
            return None;
        }
        let kind = kind(&e.action)?;
        let id = e.actor_id.clone();
        // A pod's own container, or one of its containers.
        // A container's create comes before its CRI record is written: its
        // label names the pod then.
        let sandbox = match self.store.sandbox(&id) {
            Some(s) => s,
            None => {
                let pod = match self.store.container(&id) {
                    Some(c) => c.sandbox_id.clone(),
                    None => self.engine.inspect(&id).ok()?.config.labels.get(SANDBOX_ID_LABEL)?.clone(),
                };
                self.store.sandbox(&pod)?
            }
        };
        let statuses: Vec<ContainerStatus> = self
            .store
            .containers()
            .iter()
            .filter(|c| c.sandbox_id == sandbox.id)
            .filter_map(|c| self.container_status(&c.id).ok()?.status)
            .collect();
        Some(ContainerEventResponse {
            container_id: id,
            container_event_type: kind as i32,
            created_at: e.time_nano,
            pod_sandbox_status: self.sandbox_status(&sandbox.id).ok().and_then(|s| s.status),
            containers_statuses: statuses,
        })
    }

    /// [`Cri::event_of`], waiting for a sandbox's record: a sandbox's
    /// record is written while the engine makes its container, so its
    /// create may come first (for up to [`RECORD_WAIT`]; a sandbox whose
    /// record is not written is removed).
    async fn event_of_soon(&self, e: &berth_engine::events::Event) -> Option<ContainerEventResponse> {
        let t = tokio::time::Instant::now();
        loop {
            if let Some(ev) = self.event_of(e) {
                return Some(ev);
            }
            let unrecorded_sandbox = e.typ == "container"
                && e.action == "create"
                && self.store.sandbox(&e.actor_id).is_none()
                && self.engine.inspect(&e.actor_id).is_ok_and(|c| c.pod_sandbox);
            if !unrecorded_sandbox || t.elapsed() > RECORD_WAIT {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Events from now on, until the client goes.
    pub(crate) fn events(self: &Arc<Self>) -> mpsc::Receiver<Result<ContainerEventResponse, Status>> {
        let (tx, rx) = mpsc::channel(64);
        let (_, mut sub) = self.engine.events.subscribe(None);
        let cri = self.clone();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! {
                    _ = tx.closed() => return,
                    e = sub.recv() => e,
                };
                match e {
                    Ok(e) => {
                        if let Some(ev) = cri.event_of_soon(&e).await {
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "CRI event stream fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}
