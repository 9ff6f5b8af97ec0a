//! GetContainerEvents (kubelet's evented PLEG): the engine's container
//! events of pods and their containers, with the pod's status and its
//! containers' statuses at that moment, as containerd sends them.

use std::sync::Arc;

use k8s_cri::v1::{ContainerEventResponse, ContainerEventType, ContainerStatus};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::sandbox::SANDBOX_ID_LABEL;
use crate::Cri;

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
                        if let Some(ev) = cri.event_of(&e) {
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
