//! A pod's containers: engine containers that join their sandbox's
//! network, IPC and (with a pod PID namespace) PID namespaces, named and
//! labelled as dockershim named them.

use std::sync::Arc;

use berth_engine::model::{
    CreateRequest, DeviceMapping, HostConfig, MountKind, MountRequest, Resources, RunConfig, Status as EngineStatus,
};
use k8s_cri::v1::*;
use tonic::Status;

use crate::sandbox::{
    check_apparmor, check_groups_policy, check_selinux, check_userns, docker_labels, mode, seccomp_opt, user_of,
    SANDBOX_ID_LABEL,
};
use crate::store;
use crate::{io_status, status, Cri};

fn refuse(what: &str) -> Status {
    Status::invalid_argument(format!("{what}: not supported by berth"))
}

/// A container's network and IPC namespaces are its pod's: POD (or the
/// pod's own mode, named again) is honoured, any other refused by name.
fn shares_pods(what: &str, container: i32, pod: i32) -> Result<(), Status> {
    let (c, p) = (mode(container), mode(pod));
    if c == NamespaceMode::Pod || c == p {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "namespace_options.{what}: a container shares its pod's {what} namespace ({}), not {}",
        p.as_str_name(),
        c.as_str_name()
    )))
}

/// The engine's bind of a CRI mount. A missing host path is made as a
/// directory, as containerd makes it.
fn mount_of(m: &Mount) -> Result<MountRequest, Status> {
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(refuse("mounts: uidMappings and gidMappings"));
    }
    if m.recursive_read_only {
        return Err(refuse("mounts: recursive_read_only"));
    }
    if m.image.is_some() {
        return Err(refuse("mounts: image volumes"));
    }
    // kubelet asks for a relabel only where SELinux is on.
    if m.selinux_relabel {
        return Err(refuse("mounts: selinux_relabel"));
    }
    let propagation = match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationHostToContainer) => "rslave",
        Ok(MountPropagation::PropagationBidirectional) => "rshared",
        _ => "rprivate",
    };
    Ok(MountRequest {
        kind: MountKind::Bind,
        source: m.host_path.clone(),
        target: m.container_path.clone(),
        read_only: m.readonly,
        propagation: propagation.into(),
        create_mountpoint: true,
        ..Default::default()
    })
}

/// The engine's resources of CRI's Linux resources.
pub(crate) fn resources_of(r: &LinuxContainerResources) -> Result<Resources, Status> {
    if r.hugepage_limits.iter().any(|h| h.limit > 0) {
        return Err(refuse("hugepage_limits"));
    }
    if !r.unified.is_empty() {
        return Err(refuse("unified (cgroup v2 settings)"));
    }
    let memory = r.memory_limit_in_bytes;
    Ok(Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory,
        // No swap unless it is asked for, as kubelet means it.
        memory_swap: if r.memory_swap_limit_in_bytes != 0 { r.memory_swap_limit_in_bytes } else { memory },
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        ..Default::default()
    })
}

/// A CRI state of an engine status.
fn state_of(s: EngineStatus) -> ContainerState {
    match s {
        EngineStatus::Created => ContainerState::ContainerCreated,
        EngineStatus::Running | EngineStatus::Paused | EngineStatus::Restarting => ContainerState::ContainerRunning,
        EngineStatus::Exited | EngineStatus::Dead | EngineStatus::Removing => ContainerState::ContainerExited,
    }
}

fn nanos(t: &str) -> i64 {
    berth_core::time::parse_rfc3339_nanos(t).unwrap_or(0).max(0)
}

impl Cri {
    pub(crate) fn container_of(&self, key: &str) -> Result<Arc<store::Container>, Status> {
        self.store.container_by(key)
    }

    pub(crate) async fn create_container(&self, req: CreateContainerRequest) -> Result<String, Status> {
        let s = self.sandbox_of(&req.pod_sandbox_id)?;
        let config = req.config.ok_or_else(|| Status::invalid_argument("container config is required"))?;
        let meta = config.metadata.clone().unwrap_or_default();
        if meta.name.is_empty() {
            return Err(Status::invalid_argument("container metadata needs a name"));
        }
        let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if image.is_empty() {
            return Err(Status::invalid_argument("container config needs an image"));
        }
        if config.windows.is_some() {
            return Err(Status::invalid_argument("windows: a Windows container config on Linux"));
        }
        if !config.cdi_devices.is_empty() {
            return Err(refuse("CDI_devices"));
        }
        let linux = config.linux.clone().unwrap_or_default();
        let sc = linux.security_context.clone().unwrap_or_default();
        let ns = sc.namespace_options.clone().unwrap_or_default();
        check_userns(&ns)?;
        check_selinux(sc.selinux_options.as_ref())?;
        // The deprecated fields are what older kubelets send.
        #[allow(deprecated)]
        let (apparmor_legacy, seccomp_legacy) = (sc.apparmor_profile.clone(), sc.seccomp_profile_path.clone());
        check_apparmor(sc.apparmor.as_ref(), &apparmor_legacy)?;
        check_groups_policy(sc.supplemental_groups_policy)?;
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.add_ambient_capabilities.is_empty() {
            return Err(refuse("add_ambient_capabilities"));
        }
        let pod_meta = s.config.metadata.clone().unwrap_or_default();
        let pod_linux = s.config.linux.clone().unwrap_or_default();
        let pod_ns = pod_linux.security_context.and_then(|c| c.namespace_options).unwrap_or_default();
        shares_pods("network", ns.network, pod_ns.network)?;
        shares_pods("ipc", ns.ipc, pod_ns.ipc)?;
        let joined = format!("container:{}", s.id);
        let pid_mode = match mode(ns.pid) {
            NamespaceMode::Node => "host".to_owned(),
            NamespaceMode::Container => String::new(),
            NamespaceMode::Pod if mode(pod_ns.pid) == NamespaceMode::Node => "host".to_owned(),
            NamespaceMode::Pod => joined.clone(),
            NamespaceMode::Target if ns.target_id.is_empty() => {
                return Err(Status::invalid_argument("namespace_options: TARGET needs a target_id"))
            }
            NamespaceMode::Target => format!("container:{}", self.container_of(&ns.target_id)?.id),
        };
        let mut security_opt = vec![];
        if let Some(opt) = seccomp_opt(sc.seccomp.as_ref(), &seccomp_legacy)? {
            security_opt.push(opt);
        }
        if sc.no_new_privs {
            security_opt.push("no-new-privileges".into());
        }
        let mut host = HostConfig {
            network_mode: joined.clone(),
            ipc_mode: joined,
            pid_mode,
            cgroup_parent: pod_linux.cgroup_parent.clone(),
            privileged: sc.privileged,
            readonly_rootfs: sc.readonly_rootfs,
            group_add: sc.supplemental_groups.iter().map(|g| g.to_string()).collect(),
            cap_add: caps.add_capabilities.clone(),
            cap_drop: caps.drop_capabilities.clone(),
            security_opt,
            mounts: config.mounts.iter().map(mount_of).collect::<Result<_, _>>()?,
            devices: config
                .devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: d.host_path.clone(),
                    path_in_container: d.container_path.clone(),
                    cgroup_permissions: if d.permissions.is_empty() { "rwm".into() } else { d.permissions.clone() },
                })
                .collect(),
            runtime: s.runtime_handler.clone(),
            masked_paths: (!sc.masked_paths.is_empty()).then(|| sc.masked_paths.clone()),
            readonly_paths: (!sc.readonly_paths.is_empty()).then(|| sc.readonly_paths.clone()),
            ..Default::default()
        };
        if let Some(r) = &linux.resources {
            host.resources = resources_of(r)?;
            host.oom_score_adj = i32::try_from(r.oom_score_adj)
                .map_err(|_| Status::invalid_argument(format!("oom_score_adj {} out of range", r.oom_score_adj)))?;
        }
        // kubelet's log file: the container's path under the pod's directory.
        let log_path = match (s.config.log_directory.as_str(), config.log_path.as_str()) {
            (_, "") | ("", _) => String::new(),
            (dir, path) => std::path::Path::new(dir).join(path).display().to_string(),
        };
        let mut labels = docker_labels(&config.labels, &config.annotations, "container");
        labels.insert(SANDBOX_ID_LABEL.into(), s.id.clone());
        let name =
            format!("k8s_{}_{}_{}_{}_{}", meta.name, pod_meta.name, pod_meta.namespace, pod_meta.uid, meta.attempt);
        // The id is chosen here, so the record is written while the
        // container is made.
        let id = berth_engine::names::new_id();
        let create = CreateRequest {
            id: Some(id.clone()),
            name: Some(name),
            config: RunConfig {
                image: image.clone(),
                env: config.envs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect(),
                tty: config.tty,
                open_stdin: config.stdin,
                stdin_once: config.stdin_once,
                attach_stdin: config.stdin,
                attach_stdout: true,
                attach_stderr: !config.tty,
                labels,
                ..Default::default()
            },
            host,
            entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
            cmd: (!config.args.is_empty()).then(|| config.args.clone()),
            working_dir: (!config.working_dir.is_empty()).then(|| config.working_dir.clone()),
            user: Some(user_of(sc.run_as_user.as_ref(), &sc.run_as_username, sc.run_as_group.as_ref()))
                .filter(|u| !u.is_empty()),
            cri_log_path: Some(log_path.clone()).filter(|p| !p.is_empty()),
            ..Default::default()
        };
        let (store, images) = (self.store.clone(), self.engine.images.clone());
        let sandbox_id = s.id.clone();
        let rec_id = id.clone();
        let record = async move {
            tokio::task::spawn_blocking(move || {
                // The image the engine resolves too; if it is gone by then,
                // the create fails and the record goes.
                let image_ref = images.resolve(&image).map(|i| i.to_string()).unwrap_or_default();
                let created_at = berth_core::time::now_nanos();
                store.put_container(store::Container {
                    id: rec_id,
                    sandbox_id,
                    created_at,
                    config,
                    image_ref,
                    log_path,
                })
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(io_status("write the container record"))
        };
        let (created, recorded) = tokio::join!(self.engine.create(create), record);
        match (created.map_err(status), recorded) {
            (Ok(_), Ok(_)) => Ok(id),
            (Ok(_), Err(e)) => {
                let _ = self.engine.remove(&id, true, true).await;
                Err(e)
            }
            (Err(e), recorded) => {
                if recorded.is_ok() {
                    let _ = self.store.remove_container(&id);
                }
                Err(e)
            }
        }
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<(), Status> {
        let c = self.container_of(id)?;
        self.engine.start(&c.id).await.map_err(status)
    }

    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let c = self.container_of(id)?;
        match self.engine.stop(&c.id, Some(timeout.max(0)), None).await {
            Ok(()) | Err(berth_engine::Error::NotModified(_)) => Ok(()),
            Err(e) => Err(status(e)),
        }
    }

    pub(crate) async fn update_resources(&self, req: UpdateContainerResourcesRequest) -> Result<(), Status> {
        let c = self.container_of(&req.container_id)?;
        if req.windows.is_some() {
            return Err(Status::invalid_argument("windows: Windows resources on Linux"));
        }
        if !req.annotations.is_empty() {
            return Err(refuse("annotations in a resources update"));
        }
        let Some(linux) = req.linux else { return Ok(()) };
        if linux.oom_score_adj != 0 {
            return Err(refuse("oom_score_adj in a resources update"));
        }
        let update = berth_engine::Update { resources: resources_of(&linux)?, restart_policy: None };
        self.engine.update(&c.id, update).await.map(drop).map_err(status)
    }

    pub(crate) async fn reopen_log(&self, id: &str) -> Result<(), Status> {
        let c = self.container_of(id)?;
        if c.log_path.is_empty() {
            return Err(Status::failed_precondition(format!("container {} has no log path", c.id)));
        }
        self.engine.reopen_log(&c.id).await.map_err(status)
    }

    pub(crate) async fn remove_container(&self, id: &str) -> Result<(), Status> {
        let c = match self.container_of(id) {
            Ok(c) => c,
            Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match self.engine.remove(&c.id, true, true).await {
            Ok(()) | Err(berth_engine::Error::NotFound(_)) => {}
            Err(e) => return Err(status(e)),
        }
        self.store.remove_container(&c.id).map_err(io_status("remove the container record"))
    }

    fn listed(&self, c: &store::Container) -> Option<k8s_cri::v1::Container> {
        let e = self.engine.inspect(&c.id).ok()?;
        Some(k8s_cri::v1::Container {
            id: c.id.clone(),
            pod_sandbox_id: c.sandbox_id.clone(),
            metadata: c.config.metadata.clone(),
            image: c.config.image.clone(),
            image_ref: c.image_ref.clone(),
            state: state_of(e.state.status) as i32,
            created_at: c.created_at,
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            image_id: c.image_ref.clone(),
        })
    }

    pub(crate) fn list_containers(&self, filter: Option<ContainerFilter>) -> Vec<k8s_cri::v1::Container> {
        let f = filter.unwrap_or_default();
        self.store
            .containers()
            .iter()
            .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| f.label_selector.iter().all(|(k, v)| c.config.labels.get(k) == Some(v)))
            .filter_map(|c| self.listed(c))
            .filter(|c| f.state.as_ref().is_none_or(|s| s.state == c.state))
            .collect()
    }

    pub(crate) fn container_status(&self, id: &str) -> Result<ContainerStatusResponse, Status> {
        let c = self.container_of(id)?;
        let e = self.engine.inspect(&c.id).map_err(status)?;
        let state = state_of(e.state.status);
        let reason = match state {
            ContainerState::ContainerExited if e.state.oom_killed => "OOMKilled",
            ContainerState::ContainerExited if e.state.exit_code == 0 => "Completed",
            ContainerState::ContainerExited => "Error",
            _ => "",
        };
        let r = &e.host.resources;
        let status = ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: state as i32,
            created_at: c.created_at,
            started_at: nanos(&e.state.started_at),
            finished_at: if state == ContainerState::ContainerExited { nanos(&e.state.finished_at) } else { 0 },
            exit_code: e.state.exit_code,
            image: c.config.image.clone(),
            image_ref: c.image_ref.clone(),
            reason: reason.into(),
            message: e.state.error.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c.log_path.clone(),
            resources: Some(ContainerResources {
                linux: Some(LinuxContainerResources {
                    cpu_period: r.cpu_period,
                    cpu_quota: r.cpu_quota,
                    cpu_shares: r.cpu_shares,
                    memory_limit_in_bytes: r.memory,
                    memory_swap_limit_in_bytes: r.memory_swap,
                    oom_score_adj: i64::from(e.host.oom_score_adj),
                    cpuset_cpus: r.cpuset_cpus.clone(),
                    cpuset_mems: r.cpuset_mems.clone(),
                    ..Default::default()
                }),
                windows: None,
            }),
            image_id: c.image_ref.clone(),
            user: None,
        };
        Ok(ContainerStatusResponse { status: Some(status), info: Default::default() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_container_s_network_and_ipc_are_its_pod_s() {
        let (pod, node, ctr, target) = (
            NamespaceMode::Pod as i32,
            NamespaceMode::Node as i32,
            NamespaceMode::Container as i32,
            NamespaceMode::Target as i32,
        );
        assert!(shares_pods("network", pod, node).is_ok());
        assert!(shares_pods("network", node, node).is_ok());
        assert!(shares_pods("ipc", pod, pod).is_ok());
        for (c, p) in [(node, pod), (ctr, pod), (target, pod), (ctr, node)] {
            let e = shares_pods("network", c, p).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with("namespace_options.network: "), "{}", e.message());
        }
    }
}
