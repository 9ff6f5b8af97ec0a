//! Pod sandboxes. A sandbox is an engine container of its own kind (no
//! image; berth-init holds the pod's namespaces), named and labelled as
//! dockershim named them, so `docker ps` shows it. Its network is made by
//! CNI in the namespace of that process.

use std::collections::HashMap;
use std::sync::Arc;

use berth_engine::model::{CreateRequest, HostConfig, RunConfig, Status as EngineStatus};
use berth_network::cni::Attachment;
use k8s_cri::v1::*;
use serde_json::json;
use tonic::Status;

use crate::store::{PodNetwork, Sandbox};
use crate::{io_status, status, Cri};

/// The label dockershim marks its containers' kind with.
pub(crate) const TYPE_LABEL: &str = "io.kubernetes.docker.type";
pub(crate) const SANDBOX_ID_LABEL: &str = "io.kubernetes.sandbox.id";
/// Kubelet's annotations are labels with this prefix on the Docker side.
pub(crate) const ANNOTATION_PREFIX: &str = "annotation.";

/// The engine name of a sandbox: `k8s_POD_<name>_<namespace>_<uid>_<attempt>`.
fn engine_name(m: &PodSandboxMetadata) -> String {
    format!("k8s_POD_{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// Docker-side labels: kubelet's labels, its annotations under a prefix,
/// and the kind.
pub(crate) fn docker_labels(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
    kind: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut out: std::collections::BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in annotations {
        out.insert(format!("{ANNOTATION_PREFIX}{k}"), v.clone());
    }
    out.insert(TYPE_LABEL.into(), kind.into());
    out
}

/// A namespace mode of a CRI message (POD for a value it does not know).
pub(crate) fn mode(m: i32) -> NamespaceMode {
    NamespaceMode::try_from(m).unwrap_or(NamespaceMode::Pod)
}

/// The engine's `security_opt` for a CRI seccomp profile: RuntimeDefault
/// is the engine's default (Docker's profile), Unconfined none, and
/// Localhost the JSON profile in the named file. No profile at all means
/// unconfined, as kubelet means it.
pub(crate) fn seccomp_opt(p: Option<&SecurityProfile>, legacy_path: &str) -> Result<Option<String>, Status> {
    use security_profile::ProfileType;
    let (kind, path) = match p {
        Some(p) => (ProfileType::try_from(p.profile_type).unwrap_or(ProfileType::Unconfined), p.localhost_ref.clone()),
        None => match legacy_path {
            "" | "unconfined" => (ProfileType::Unconfined, String::new()),
            "runtime/default" | "docker/default" => (ProfileType::RuntimeDefault, String::new()),
            p => (ProfileType::Localhost, p.strip_prefix("localhost/").unwrap_or(p).to_owned()),
        },
    };
    match kind {
        ProfileType::RuntimeDefault => Ok(None),
        ProfileType::Unconfined => Ok(Some("seccomp=unconfined".into())),
        ProfileType::Localhost => {
            let body = std::fs::read_to_string(&path).map_err(|e| {
                Status::invalid_argument(format!("seccomp: cannot read the localhost profile {path:?}: {e}"))
            })?;
            Ok(Some(format!("seccomp={body}")))
        }
    }
}

/// AppArmor: the default or unconfined are what this host gives without
/// AppArmor; a profile of its own is refused by name.
pub(crate) fn check_apparmor(p: Option<&SecurityProfile>, legacy: &str) -> Result<(), Status> {
    use security_profile::ProfileType;
    let localhost = match p {
        Some(p) => ProfileType::try_from(p.profile_type) == Ok(ProfileType::Localhost),
        None => !matches!(legacy, "" | "unconfined" | "runtime/default"),
    };
    if localhost {
        return Err(Status::invalid_argument("apparmor: a localhost profile is not supported by berth"));
    }
    Ok(())
}

pub(crate) fn check_selinux(o: Option<&SeLinuxOption>) -> Result<(), Status> {
    if o.is_some_and(|o| !(o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty() && o.level.is_empty())) {
        return Err(Status::invalid_argument("selinux_options: SELinux is not supported by berth"));
    }
    Ok(())
}

/// Strict leaves out the groups the image's /etc/group gives the user;
/// berth's engine merges them, as Docker does.
pub(crate) fn check_groups_policy(policy: i32) -> Result<(), Status> {
    if SupplementalGroupsPolicy::try_from(policy) == Ok(SupplementalGroupsPolicy::Strict) {
        return Err(Status::invalid_argument("supplemental_groups_policy: Strict is not supported by berth"));
    }
    Ok(())
}

pub(crate) fn check_userns(ns: &NamespaceOption) -> Result<(), Status> {
    if ns.userns_options.as_ref().is_some_and(|u| mode(u.mode) != NamespaceMode::Node) {
        return Err(Status::invalid_argument("userns_options: only the node's user namespace is supported"));
    }
    Ok(())
}

/// The pod runs on the node's network.
fn host_network(config: &PodSandboxConfig) -> bool {
    let ns = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|c| c.namespace_options.as_ref());
    ns.is_some_and(|n| mode(n.network) == NamespaceMode::Node)
}

/// The engine's request for a sandbox of `config`, checked: its
/// namespaces, DNS, sysctls, cgroup parent and security context.
fn sandbox_request(config: &PodSandboxConfig, handler: &str) -> Result<CreateRequest, Status> {
    let meta = config.metadata.clone().unwrap_or_default();
    if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
        return Err(Status::invalid_argument("sandbox metadata needs a name, a namespace and a uid"));
    }
    if config.windows.is_some() {
        return Err(Status::invalid_argument("windows: a Windows sandbox config on Linux"));
    }
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let ns = sc.namespace_options.clone().unwrap_or_default();
    check_userns(&ns)?;
    check_selinux(sc.selinux_options.as_ref())?;
    check_apparmor(sc.apparmor.as_ref(), "")?;
    check_groups_policy(sc.supplemental_groups_policy)?;
    let host_net = host_network(config);
    let dns = config.dns_config.clone().unwrap_or_default();
    let mut host = HostConfig {
        network_mode: if host_net { "host".into() } else { "none".into() },
        pid_mode: if mode(ns.pid) == NamespaceMode::Node { "host".into() } else { String::new() },
        ipc_mode: if mode(ns.ipc) == NamespaceMode::Node { "host".into() } else { "shareable".into() },
        uts_mode: if host_net { "host".into() } else { String::new() },
        dns: dns.servers,
        dns_search: dns.searches,
        dns_options: dns.options,
        sysctls: linux.sysctls.into_iter().collect(),
        cgroup_parent: linux.cgroup_parent,
        privileged: sc.privileged,
        readonly_rootfs: sc.readonly_rootfs,
        group_add: sc.supplemental_groups.iter().map(|g| g.to_string()).collect(),
        runtime: handler.to_owned(),
        ..Default::default()
    };
    host.log_config.driver = "none".into();
    // The deprecated field is what older kubelets send.
    #[allow(deprecated)]
    let seccomp_legacy = sc.seccomp_profile_path.clone();
    if let Some(opt) = seccomp_opt(sc.seccomp.as_ref(), &seccomp_legacy)? {
        host.security_opt.push(opt);
    }
    Ok(CreateRequest {
        name: Some(engine_name(&meta)),
        config: RunConfig {
            hostname: if host_net { String::new() } else { config.hostname.clone() },
            labels: docker_labels(&config.labels, &config.annotations, "podsandbox"),
            ..Default::default()
        },
        user: Some(user_of(sc.run_as_user.as_ref(), "", sc.run_as_group.as_ref())).filter(|u| !u.is_empty()),
        host,
        pod_sandbox: true,
        ..Default::default()
    })
}

/// `uid[:gid]` for the engine's user.
pub(crate) fn user_of(uid: Option<&Int64Value>, name: &str, gid: Option<&Int64Value>) -> String {
    let user = match uid {
        Some(u) => u.value.to_string(),
        None => name.to_owned(),
    };
    match (gid, user.is_empty()) {
        (Some(g), true) => format!("0:{}", g.value),
        (Some(g), false) => format!("{user}:{}", g.value),
        (None, _) => user,
    }
}

impl Cri {
    pub(crate) fn sandbox_of(&self, key: &str) -> Result<Arc<Sandbox>, Status> {
        self.store.sandbox_by(key)
    }

    pub(crate) async fn run_sandbox(&self, req: RunPodSandboxRequest) -> Result<String, Status> {
        let config = req.config.ok_or_else(|| Status::invalid_argument("sandbox config is required"))?;
        let host_net = host_network(&config);
        // The id is chosen here, so the record is written while the
        // sandbox is made.
        let id = berth_engine::names::new_id();
        let mut create = sandbox_request(&config, &req.runtime_handler)?;
        create.id = Some(id.clone());
        // The network config is read before anything is made: a pod that
        // cannot get a network is not started.
        let list = if host_net {
            None
        } else {
            Some(self.cni.load().map_err(|e| Status::failed_precondition(format!("cni network: {e}")))?)
        };
        let began = std::time::Instant::now();
        // The pod's network namespace is made first and pinned, as
        // containerd makes it: CNI sets it up while the sandbox starts in
        // it, and can tear it down even after the sandbox is gone.
        let netns = (!host_net).then(|| self.pins.new_file());
        create.netns_path = netns.as_ref().map(|p| p.display().to_string());
        let rec = Sandbox {
            id: id.clone(),
            created_at: berth_core::time::now_nanos(),
            config: config.clone(),
            runtime_handler: req.runtime_handler.clone(),
            network: list.as_ref().map(|l| {
                let mut attachment = attachment(&id, &config);
                attachment.netns = netns.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
                PodNetwork { network: l.name.clone(), attachment, result: None, torn_down: false }
            }),
        };
        // The next pod's namespace is made once this one's network is up
        // (or failed): beside the ADD it would take CPU from the plugins
        // and the sandbox's start, on the pod start's longest path.
        let refill = || {
            if netns.is_some() {
                self.pins.refill(&self.engine);
            }
        };
        let made = self.make_networked(create, netns.as_deref(), rec, list.as_ref(), began).await;
        refill();
        let (created, networked, started) = made?;
        tracing::debug!(
            sandbox = %id,
            pod = %config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default(),
            create_ms = created.as_secs_f64() * 1e3,
            started_ms = started.as_secs_f64() * 1e3,
            networked_ms = networked.map(|t| t.as_secs_f64() * 1e3),
            ready_ms = began.elapsed().as_secs_f64() * 1e3,
            "pod sandbox ready"
        );
        Ok(id)
    }

    /// Make and start the sandbox while CNI's ADD sets up its network, all
    /// or nothing, in two lines of work side by side:
    /// - the network's: the pod's namespace pinned on `netns` and the
    ///   sandbox's record written, then the ADD (the record is on disk
    ///   before the ADD, so that a crash after it still knows what to DEL);
    /// - the container's: the engine's create, then its start once the
    ///   namespace it joins is pinned.
    ///
    /// The ADD is the longest part of a pod's start; it begins as soon as
    /// it may, not after the container is made. The times (since `began`)
    /// the container was made, the network set up and the start done.
    async fn make_networked(
        &self,
        create: CreateRequest,
        netns: Option<&std::path::Path>,
        rec: Sandbox,
        list: Option<&berth_network::cni::NetworkList>,
        began: std::time::Instant,
    ) -> Result<(std::time::Duration, Option<std::time::Duration>, std::time::Duration), Status> {
        let id = rec.id.clone();
        let (pinned_tx, pinned_rx) = tokio::sync::oneshot::channel::<bool>();
        let net = async {
            let pin = async {
                let Some(f) = netns else { return Ok(()) };
                let (pins, engine, f) = (self.pins.clone(), self.engine.clone(), f.to_path_buf());
                tokio::task::spawn_blocking(move || pins.pin(&engine, &f))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(status)
            };
            let (pinned, recorded) = tokio::join!(pin, self.record(rec.clone(), false));
            let _ = pinned_tx.send(pinned.is_ok());
            let added = match (&pinned, &recorded, list, rec.network.as_ref()) {
                (Ok(()), Ok(()), Some(list), Some(net)) => {
                    let (cni, l, att) = (self.cni.clone(), list.clone(), net.attachment.clone());
                    let r = tokio::task::spawn_blocking(move || cni.add(&l, &att))
                        .await
                        .map_err(|e| Status::internal(e.to_string()))
                        .and_then(|r| {
                            r.map_err(|e| Status::unknown(format!("failed to set up the network of sandbox {id}: {e}")))
                        });
                    Some(match r {
                        // Recorded as soon as it is known, so that a crash
                        // from here on still has the result to DEL with.
                        Ok(result) => {
                            let mut with = rec.clone();
                            if let Some(n) = with.network.as_mut() {
                                n.result = Some(result.clone());
                            }
                            match self.record(with, true).await {
                                Ok(()) => Ok((result, began.elapsed())),
                                Err(e) => Err((e, Some(result))),
                            }
                        }
                        Err(e) => Err((e, None)),
                    })
                }
                _ => None,
            };
            (pinned, recorded, added)
        };
        let container = async {
            let created = self.engine.create(create).await.map_err(status).map(|_| began.elapsed());
            let started = match (&created, pinned_rx.await) {
                (Ok(_), Ok(true)) => Some(self.engine.start(&id).await.map_err(status).map(|()| began.elapsed())),
                _ => None,
            };
            (created, started)
        };
        let ((pinned, recorded, added), (created, started)) = tokio::join!(net, container);
        if let (Ok(()), Ok(()), Ok(made), Some(Ok(started))) = (&pinned, &recorded, &created, &started) {
            match &added {
                None => return Ok((*made, None, *started)),
                Some(Ok((_, networked))) => return Ok((*made, Some(*networked), *started)),
                Some(Err(_)) => {}
            }
        }
        // Undone in the order made undone: the network (a failed ADD's
        // leftovers go by a DEL without its result, as the spec lets a DEL
        // clean up), the container, the pin, the record.
        match &added {
            Some(Ok((result, _))) | Some(Err((_, Some(result)))) => {
                self.undo_add(list, &rec, Some(result.clone())).await
            }
            Some(Err((_, None))) => self.undo_add(list, &rec, None).await,
            None => {}
        }
        if created.is_ok() {
            let _ = self.engine.remove(&id, true, true).await;
        }
        if let Some(f) = netns {
            let _ = self.engine.unpin_netns(f);
        }
        if recorded.is_ok() {
            let _ = self.store.remove_sandbox(&id);
        }
        let err = pinned
            .err()
            .or(recorded.err())
            .or(added.and_then(|a| a.err().map(|(e, _)| e)))
            .or(created.err())
            .or(started.and_then(|s| s.err()))
            .unwrap_or_else(|| Status::internal("no sandbox"));
        Err(err)
    }

    /// Write the sandbox's record, on a blocking thread (see
    /// [`crate::store::Store::put_sandbox`] for `after_add`).
    async fn record(&self, rec: Sandbox, after_add: bool) -> Result<(), Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put_sandbox(rec, after_add))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(drop)
            .map_err(io_status("write the sandbox record"))
    }

    /// DEL a network that was ADDed, or tried, for a sandbox that will not
    /// be.
    async fn undo_add(
        &self,
        list: Option<&berth_network::cni::NetworkList>,
        rec: &Sandbox,
        result: Option<serde_json::Value>,
    ) {
        if let (Some(list), Some(net)) = (list, rec.network.as_ref()) {
            let (cni, l, att) = (self.cni.clone(), list.clone(), net.attachment.clone());
            let _ = tokio::task::spawn_blocking(move || cni.del(&l, &att, result.as_ref())).await;
        }
    }

    /// Let the pod's pinned namespace go, if it has one.
    fn unpin(&self, s: &Sandbox) {
        if let Some(n) = s.network.as_ref().filter(|n| n.attachment.netns.starts_with('/')) {
            let file = std::path::Path::new(&n.attachment.netns);
            if file.starts_with(self.pins.dir()) {
                if let Err(e) = self.engine.unpin_netns(file) {
                    tracing::warn!(sandbox = %s.id, "{e}");
                }
            }
        }
    }

    /// DEL the sandbox's network, once: it is marked torn down after. A
    /// DEL goes even without a result: the ADD may have been done and a
    /// crash have kept its result from the record, and a DEL of what is
    /// not there succeeds (CNI spec).
    async fn network_down(&self, s: &Sandbox) -> Result<(), Status> {
        let Some(net) = s.network.as_ref().filter(|n| !n.torn_down) else { return Ok(()) };
        let mut att = net.attachment.clone();
        if !std::path::Path::new(&att.netns).exists() {
            // Its pin is gone (a reboot): the plugins free what they hold
            // outside the namespace.
            att.netns = String::new();
        }
        let list = self.cni.load().ok().filter(|l| l.name == net.network);
        let Some(list) = list else {
            tracing::warn!(sandbox = %s.id, network = %net.network, "CNI network config gone; nothing to DEL with");
            return Ok(());
        };
        let (cni, result) = (self.cni.clone(), net.result.clone());
        tokio::task::spawn_blocking(move || cni.del(&list, &att, result.as_ref()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unknown(format!("failed to tear down the network of sandbox {}: {e}", s.id)))?;
        let mut rec = s.clone();
        if let Some(n) = rec.network.as_mut() {
            n.result = None;
            n.torn_down = true;
        }
        self.store.put_sandbox(rec, false).map_err(io_status("write the sandbox record"))?;
        Ok(())
    }

    pub(crate) async fn stop_sandbox(&self, id: &str) -> Result<(), Status> {
        let s = self.sandbox_of(id)?;
        for c in self.store.containers().into_iter().filter(|c| c.sandbox_id == s.id) {
            if self.engine.inspect(&c.id).is_ok_and(|e| e.state.status.is_running()) {
                self.engine.stop(&c.id, Some(0), None).await.map_err(status)?;
            }
        }
        self.network_down(&s).await?;
        match self.engine.inspect(&s.id) {
            Ok(c) if c.state.status.is_running() => {
                self.engine.stop(&s.id, Some(10), None).await.map_err(status)?;
            }
            _ => {}
        }
        self.unpin(&s);
        Ok(())
    }

    pub(crate) async fn remove_sandbox(&self, id: &str) -> Result<(), Status> {
        let s = match self.sandbox_of(id) {
            Ok(s) => s,
            // Removal is idempotent.
            Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_sandbox(&s.id).await?;
        for c in self.store.containers().into_iter().filter(|c| c.sandbox_id == s.id) {
            self.remove_container(&c.id).await?;
        }
        match self.engine.remove(&s.id, true, true).await {
            Err(berth_engine::Error::NotFound(_)) | Ok(()) => {}
            Err(e) => return Err(status(e)),
        }
        self.store.remove_sandbox(&s.id).map_err(io_status("remove the sandbox record"))
    }

    fn state_of(&self, id: &str) -> PodSandboxState {
        match self.engine.inspect(id) {
            Ok(c) if c.state.status == EngineStatus::Running => PodSandboxState::SandboxReady,
            _ => PodSandboxState::SandboxNotready,
        }
    }

    pub(crate) fn sandbox_status(&self, id: &str) -> Result<PodSandboxStatusResponse, Status> {
        let s = self.sandbox_of(id)?;
        let state = self.state_of(&s.id);
        let ips: Vec<String> = s
            .network
            .as_ref()
            .and_then(|n| n.result.as_ref())
            .map(|r| berth_network::cni::addresses(r).into_iter().map(|(ip, _)| ip.to_string()).collect())
            .unwrap_or_default();
        let ns =
            s.config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|c| c.namespace_options.clone());
        let status = PodSandboxStatus {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            state: state as i32,
            created_at: s.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: ips.first().cloned().unwrap_or_default(),
                additional_ips: ips.iter().skip(1).map(|ip| PodIp { ip: ip.clone() }).collect(),
            }),
            linux: Some(LinuxPodSandboxStatus { namespaces: Some(Namespace { options: ns }) }),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            runtime_handler: s.runtime_handler.clone(),
        };
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            timestamp: berth_core::time::now_nanos(),
            ..Default::default()
        })
    }

    pub(crate) fn list_sandboxes(&self, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
        let f = filter.unwrap_or_default();
        self.store
            .sandboxes()
            .into_iter()
            .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
            .filter(|s| f.label_selector.iter().all(|(k, v)| s.config.labels.get(k) == Some(v)))
            .map(|s| PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: self.state_of(&s.id) as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .filter(|p| f.state.as_ref().is_none_or(|st| st.state == p.state))
            .collect()
    }
}

/// The CNI attachment of a sandbox (netns filled in once it runs), with
/// kubelet's CNI_ARGS and its port mappings, as containerd gives them.
fn attachment(id: &str, config: &PodSandboxConfig) -> Attachment {
    let meta = config.metadata.clone().unwrap_or_default();
    let args = vec![
        ("IgnoreUnknown".to_owned(), "1".to_owned()),
        ("K8S_POD_NAMESPACE".to_owned(), meta.namespace.clone()),
        ("K8S_POD_NAME".to_owned(), meta.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".to_owned(), id.to_owned()),
        ("K8S_POD_UID".to_owned(), meta.uid.clone()),
    ];
    let ports: Vec<serde_json::Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match Protocol::try_from(p.protocol) {
                Ok(Protocol::Udp) => "udp",
                Ok(Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": proto, "hostIP": p.host_ip})
        })
        .collect();
    let mut capabilities = std::collections::BTreeMap::new();
    if !ports.is_empty() {
        capabilities.insert("portMappings".to_owned(), serde_json::Value::Array(ports));
    }
    let dns = config.dns_config.clone().unwrap_or_default();
    if !dns.servers.is_empty() || !dns.searches.is_empty() || !dns.options.is_empty() {
        capabilities.insert(
            "dns".to_owned(),
            json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
        );
    }
    Attachment { container_id: id.to_owned(), netns: String::new(), ifname: "eth0".into(), args, capabilities }
}

impl Cri {
    /// At start: the CRI's records and the engine's containers agree
    /// again after a crash. A record whose container is gone goes (with its
    /// network's DEL); a sandbox or pod container the engine has without a
    /// record (a crash between the two writes) is removed.
    pub(crate) async fn restore(&self) {
        for s in self.store.sandboxes() {
            if self.engine.inspect(&s.id).is_err() {
                // Its ADD may have been done before the container was
                // made (they go side by side), with no result recorded.
                if let Err(e) = self.network_down(&s).await {
                    tracing::warn!(sandbox = %s.id, "{}", e.message());
                }
                self.unpin(&s);
                let _ = self.store.remove_sandbox(&s.id);
            }
        }
        // Pins no record names: a crash between the pin and the record.
        let named: std::collections::HashSet<String> = self
            .store
            .sandboxes()
            .iter()
            .filter_map(|s| s.network.as_ref().map(|n| n.attachment.netns.clone()))
            .collect();
        for e in std::fs::read_dir(self.pins.dir()).into_iter().flatten().flatten() {
            let path = e.path();
            if !named.contains(&path.display().to_string()) {
                let _ = self.engine.unpin_netns(&path);
            }
        }
        // The networks of pods that ran on while the daemon was down are
        // checked (CNI CHECK); what fails is logged, and a DEL at the
        // pod's stop still frees it.
        for s in self.store.sandboxes() {
            let live = self.engine.inspect(&s.id).ok().filter(|c| c.state.status.is_live());
            let (Some(c), Some(net)) = (live, s.network.as_ref().filter(|n| n.result.is_some())) else { continue };
            let Ok(list) = self.cni.load() else { continue };
            if list.name != net.network {
                continue;
            }
            let mut att = net.attachment.clone();
            if att.netns.is_empty() {
                att.netns = format!("/proc/{}/ns/net", c.state.pid);
            }
            let (cni, result) = (self.cni.clone(), net.result.clone().unwrap_or_default());
            let checked = tokio::task::spawn_blocking(move || cni.check(&list, &att, &result)).await;
            if let Ok(Err(e)) = checked {
                tracing::warn!(sandbox = %s.id, "CNI CHECK of the pod's network failed: {e}");
            }
        }
        for c in self.store.containers() {
            if self.engine.inspect(&c.id).is_err() || self.store.sandbox(&c.sandbox_id).is_none() {
                let _ = self.engine.remove(&c.id, true, true).await;
                let _ = self.store.remove_container(&c.id);
            }
        }
        let list = self.engine.list();
        let pods: std::collections::HashSet<&str> =
            list.iter().filter(|c| c.pod_sandbox).map(|c| c.id.as_str()).collect();
        for c in &list {
            // Only what CRI made: a sandbox, or a container in one (a
            // Docker user's container with the label alone is left be).
            let in_pod = c.config.labels.get(SANDBOX_ID_LABEL).is_some_and(|p| pods.contains(p.as_str()));
            let ours = c.pod_sandbox || in_pod;
            let known = self.store.sandbox(&c.id).is_some() || self.store.container(&c.id).is_some();
            if ours && !known {
                tracing::info!(container = %c.id, "removing a pod container left without its CRI record");
                let _ = self.engine.remove(&c.id, true, true).await;
            }
        }
    }
}
