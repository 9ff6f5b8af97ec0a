//! Wire models to the engine's types and back, in one place.

use std::collections::BTreeMap;

use berth_api_types as w;
use berth_engine::model::{self, Container, CreateRequest, Status};
use serde_json::{json, Value};

use crate::ApiError;

/// A restart policy as the API names it, checked as Docker checks it.
pub fn restart_policy(p: &w::RestartPolicy) -> Result<model::RestartPolicy, ApiError> {
    let name = match p.name.as_str() {
        "" | "no" => model::RestartName::No,
        "always" => model::RestartName::Always,
        "unless-stopped" => model::RestartName::UnlessStopped,
        "on-failure" => model::RestartName::OnFailure,
        other => return Err(ApiError::bad(format!("invalid restart policy '{other}'"))),
    };
    if p.maximum_retry_count < 0 {
        return Err(ApiError::bad("invalid restart policy: maximum retry count cannot be negative"));
    }
    if p.maximum_retry_count > 0 && name != model::RestartName::OnFailure {
        return Err(ApiError::bad(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".to_string(),
        ));
    }
    Ok(model::RestartPolicy { name, maximum_retry_count: p.maximum_retry_count })
}

/// Fields that only Windows containers have, refused by name when set.
fn windows_only(c: &w::ContainerConfig, h: &w::HostConfig) -> Result<(), ApiError> {
    let r = &h.resources;
    for (name, set) in [
        ("ArgsEscaped", c.args_escaped == Some(true)),
        ("CpuCount", r.cpu_count.is_some_and(|v| v != 0)),
        ("CpuPercent", r.cpu_percent.is_some_and(|v| v != 0)),
        ("IOMaximumIOps", r.io_maximum_iops.is_some_and(|v| v != 0)),
        ("IOMaximumBandwidth", r.io_maximum_bandwidth.is_some_and(|v| v != 0)),
    ] {
        if set {
            return Err(ApiError::bad(format!("{name} is for Windows containers only")));
        }
    }
    Ok(())
}

/// `POST /containers/{id}/update`'s body as the engine's update.
pub fn update(u: w::UpdateConfig) -> Result<berth_engine::Update, ApiError> {
    let restart_policy = match &u.restart_policy {
        Some(p) if !p.name.is_empty() => Some(restart_policy(p)?),
        _ => None,
    };
    // moby's update leaves these alone without a word; berth says so.
    let r = &u.resources;
    for (name, given) in [
        ("CgroupParent", !r.cgroup_parent.is_empty()),
        ("Devices", r.devices.as_ref().is_some_and(|v| !v.is_empty())),
        ("DeviceCgroupRules", r.device_cgroup_rules.as_ref().is_some_and(|v| !v.is_empty())),
        ("DeviceRequests", r.device_requests.as_ref().is_some_and(|v| !v.is_empty())),
        ("BlkioWeightDevice", r.blkio_weight_device.as_ref().is_some_and(|v| !v.is_empty())),
        ("BlkioDeviceReadBps", r.blkio_device_read_bps.as_ref().is_some_and(|v| !v.is_empty())),
        ("BlkioDeviceWriteBps", r.blkio_device_write_bps.as_ref().is_some_and(|v| !v.is_empty())),
        ("BlkioDeviceReadIOps", r.blkio_device_read_iops.as_ref().is_some_and(|v| !v.is_empty())),
        ("BlkioDeviceWriteIOps", r.blkio_device_write_iops.as_ref().is_some_and(|v| !v.is_empty())),
        ("KernelMemoryTCP", r.kernel_memory_tcp.is_some_and(|v| v != 0)),
    ] {
        if given {
            return Err(ApiError::bad(format!("{name} cannot be changed by an update")));
        }
    }
    Ok(berth_engine::Update { resources: resources(r), restart_policy })
}

fn weight_devices(v: &Option<Vec<w::WeightDevice>>) -> Vec<model::WeightDevice> {
    v.iter().flatten().map(|d| model::WeightDevice { path: d.path.clone(), weight: d.weight }).collect()
}

fn throttle_devices(v: &Option<Vec<w::ThrottleDevice>>) -> Vec<model::ThrottleDevice> {
    v.iter().flatten().map(|d| model::ThrottleDevice { path: d.path.clone(), rate: d.rate }).collect()
}

fn wire_weights(v: &[model::WeightDevice]) -> Option<Vec<w::WeightDevice>> {
    Some(v.iter().map(|d| w::WeightDevice { path: d.path.clone(), weight: d.weight }).collect())
}

fn wire_throttles(v: &[model::ThrottleDevice]) -> Option<Vec<w::ThrottleDevice>> {
    Some(v.iter().map(|d| w::ThrottleDevice { path: d.path.clone(), rate: d.rate }).collect())
}

/// The API's Resources as the engine keeps them.
fn resources(r: &w::Resources) -> model::Resources {
    model::Resources {
        memory: r.memory,
        memory_swap: r.memory_swap,
        memory_reservation: r.memory_reservation,
        nano_cpus: r.nano_cpus,
        cpu_shares: r.cpu_shares,
        cpu_quota: r.cpu_quota,
        cpu_period: r.cpu_period,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        pids_limit: r.pids_limit,
        blkio_weight: r.blkio_weight,
        oom_kill_disable: r.oom_kill_disable.unwrap_or(false),
        // -1 is "not set", as Docker's fixMemorySwappiness reads it.
        memory_swappiness: r.memory_swappiness.filter(|v| *v != -1),
        ulimits: r
            .ulimits
            .iter()
            .flatten()
            .map(|u| model::Ulimit { name: u.name.clone(), soft: u.soft, hard: u.hard })
            .collect(),
        blkio_weight_device: weight_devices(&r.blkio_weight_device),
        blkio_device_read_bps: throttle_devices(&r.blkio_device_read_bps),
        blkio_device_write_bps: throttle_devices(&r.blkio_device_write_bps),
        blkio_device_read_iops: throttle_devices(&r.blkio_device_read_iops),
        blkio_device_write_iops: throttle_devices(&r.blkio_device_write_iops),
        cpu_realtime_period: r.cpu_realtime_period,
        cpu_realtime_runtime: r.cpu_realtime_runtime,
        kernel_memory_tcp: r.kernel_memory_tcp.unwrap_or(0),
    }
}

/// One stats reading on the wire; `pre` is the reading before it, whose
/// CPU counters make `precpu_stats`.
pub fn stats(s: &berth_engine::stats::Sample, pre: Option<&berth_engine::stats::Sample>) -> w::StatsResponse {
    let mut out = w::StatsResponse {
        name: s.name.clone(),
        id: s.id.clone(),
        read: s.read.clone(),
        preread: pre.map_or_else(|| model::ZERO_TIME.to_owned(), |p| p.read.clone()),
        storage_stats: serde_json::json!({}),
        ..Default::default()
    };
    if let Some(p) = pre.filter(|p| p.live) {
        out.precpu_stats = cpu_stats(p);
    }
    if !s.live {
        return out;
    }
    out.cpu_stats = cpu_stats(s);
    let c = &s.cgroup;
    out.pids_stats = w::PidsStats { current: Some(c.pids.current), limit: c.pids.limit };
    let entries = |v: &[berth_cgroups::BlkioEntry]| {
        Some(
            v.iter()
                .map(|e| w::BlkioStatEntry { major: e.major, minor: e.minor, op: e.op.clone(), value: e.value })
                .collect(),
        )
    };
    out.blkio_stats.io_service_bytes_recursive = entries(&c.blkio.service_bytes);
    out.blkio_stats.io_serviced_recursive = entries(&c.blkio.serviced);
    // As Docker: no limit, or one above the host's memory, shows the host's.
    let limit = c.memory.limit.filter(|l| s.host_memory == 0 || *l <= s.host_memory).unwrap_or(s.host_memory);
    out.memory_stats = w::MemoryStats {
        usage: Some(c.memory.usage),
        max_usage: (c.memory.max_usage > 0).then_some(c.memory.max_usage),
        stats: Some(c.memory.stat.clone()),
        failcnt: Some(c.memory.failcnt),
        limit: Some(limit),
    };
    if !s.networks.is_empty() {
        out.networks = Some(
            s.networks
                .iter()
                .map(|(n, d)| {
                    (
                        n.clone(),
                        w::NetworkStats {
                            rx_bytes: d.rx_bytes,
                            rx_packets: d.rx_packets,
                            rx_errors: d.rx_errors,
                            rx_dropped: d.rx_dropped,
                            tx_bytes: d.tx_bytes,
                            tx_packets: d.tx_packets,
                            tx_errors: d.tx_errors,
                            tx_dropped: d.tx_dropped,
                        },
                    )
                })
                .collect(),
        );
    }
    out
}

fn cpu_stats(s: &berth_engine::stats::Sample) -> w::CpuStats {
    let c = &s.cgroup.cpu;
    w::CpuStats {
        cpu_usage: w::CpuUsage {
            total_usage: c.total_ns,
            percpu_usage: (!c.per_cpu_ns.is_empty()).then(|| c.per_cpu_ns.clone()),
            usage_in_kernelmode: c.system_ns,
            usage_in_usermode: c.user_ns,
        },
        system_cpu_usage: Some(s.system_ns),
        online_cpus: Some(s.online_cpus),
        throttling_data: w::ThrottlingData {
            periods: c.periods,
            throttled_periods: c.throttled_periods,
            throttled_time: c.throttled_ns,
        },
    }
}

pub fn create_request(name: Option<String>, c: w::ContainerConfig) -> Result<CreateRequest, ApiError> {
    let h = c.host_config.clone().unwrap_or_default();
    let restart = restart_policy(&h.restart_policy)?.name;
    // No user namespace remapping is configured, so "private" (Docker's
    // default) and "host" both run in the host's user namespace.
    if !matches!(h.userns_mode.as_str(), "" | "host" | "private") {
        return Err(ApiError::bad(format!("invalid USER mode: {}", h.userns_mode)));
    }
    if let Some(req) = h.resources.device_requests.as_ref().and_then(|v| v.first()) {
        // As moby with no device driver registered (GPUs need one).
        let driver = req.get("Driver").and_then(Value::as_str).unwrap_or("");
        let caps = req.get("Capabilities").cloned().unwrap_or(Value::Null);
        return Err(ApiError::bad(format!(
            "DeviceRequests: could not select device driver {driver:?} with capabilities: {caps}"
        )));
    }
    if h.auto_remove && restart != model::RestartName::No {
        return Err(ApiError::bad("conflicting options: cannot specify both --restart and --rm"));
    }
    windows_only(&c, &h)?;
    if !h.cgroup.is_empty() {
        return Err(ApiError::bad(format!(
            "Cgroup {:?}: berth does not run a container in another's cgroup",
            h.cgroup
        )));
    }
    let mut network_mode = h.network_mode.clone();
    if c.network_disabled == Some(true) {
        // As moby: a container without networking has only loopback.
        if !matches!(network_mode.as_str(), "" | "default" | "none") {
            return Err(ApiError::bad(format!("conflicting options: NetworkDisabled and network mode {network_mode}")));
        }
        network_mode = "none".into();
    }
    let config = model::RunConfig {
        hostname: c.hostname,
        domainname: c.domainname,
        user: String::new(),
        env: c.env.unwrap_or_default(),
        cmd: vec![],
        entrypoint: vec![],
        working_dir: String::new(),
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: c.stdin_once,
        attach_stdin: c.attach_stdin,
        attach_stdout: c.attach_stdout,
        attach_stderr: c.attach_stderr,
        labels: c.labels.unwrap_or_default(),
        stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: c.stop_timeout,
        image: c.image,
        exposed_ports: c.exposed_ports.clone().unwrap_or_default().into_keys().collect(),
        volumes: c.volumes.clone().unwrap_or_default().into_keys().collect(),
        healthcheck: c.healthcheck.map(|h| model::HealthConfig {
            test: h.test.unwrap_or_default(),
            interval: h.interval,
            timeout: h.timeout,
            start_period: h.start_period,
            start_interval: h.start_interval,
            retries: h.retries,
        }),
        shell: c.shell.unwrap_or_default(),
        mac_address: c.mac_address.clone().unwrap_or_default(),
        on_build: c.on_build.unwrap_or_default(),
        health_on_failure: c
            .healthcheck_on_failure_action
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e: String| ApiError::bad(format!("HealthcheckOnFailureAction: {e}")))?,
    };
    let mut mounts = vec![];
    for m in h.mounts.as_deref().unwrap_or_default() {
        mounts.push(mount_request(m)?);
    }
    let port_bindings = h
        .port_bindings
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let binds = v
                .unwrap_or_default()
                .into_iter()
                .map(|b| model::PortBinding { host_ip: b.host_ip, host_port: b.host_port })
                .collect();
            (k, binds)
        })
        .collect();
    let mut endpoints = BTreeMap::new();
    for (name, ep) in c.networking_config.and_then(|n| n.endpoints_config).unwrap_or_default() {
        endpoints.insert(name, endpoint_config(&ep)?);
    }
    // The container-wide MAC address is the main network's (moby's
    // handleMACAddressBC).
    if let Some(mac) = c.mac_address.filter(|m| !m.is_empty()) {
        let main = match network_mode.as_str() {
            "" | "default" => "bridge",
            m if m == "none" || m == "host" || m.starts_with("container:") => {
                return Err(ApiError::bad("conflicting options: mac-address and the network mode"))
            }
            m => m,
        };
        let ep: &mut model::EndpointConfig = endpoints.entry(main.to_owned()).or_default();
        match &ep.mac_address {
            Some(m) if !m.eq_ignore_ascii_case(&mac) => {
                return Err(ApiError::bad(
                    "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
                ))
            }
            _ => ep.mac_address = Some(mac),
        }
    }
    let host = model::HostConfig {
        binds: h.binds.unwrap_or_default(),
        resources: resources(&h.resources),
        cap_add: h.cap_add.unwrap_or_default(),
        cap_drop: h.cap_drop.unwrap_or_default(),
        privileged: h.privileged,
        readonly_rootfs: h.readonly_rootfs,
        tmpfs: h.tmpfs.unwrap_or_default(),
        init: h.init.unwrap_or(false),
        auto_remove: h.auto_remove,
        restart_policy: model::RestartPolicy {
            name: restart,
            maximum_retry_count: h.restart_policy.maximum_retry_count,
        },
        extra_hosts: h.extra_hosts.unwrap_or_default(),
        dns: h.dns.unwrap_or_default(),
        dns_search: h.dns_search.unwrap_or_default(),
        dns_options: h.dns_options.unwrap_or_default(),
        security_opt: h.security_opt.unwrap_or_default(),
        shm_size: h.shm_size,
        oom_score_adj: h.oom_score_adj,
        sysctls: h.sysctls.unwrap_or_default(),
        group_add: h.group_add.unwrap_or_default(),
        userns_mode: h.userns_mode,
        network_mode,
        port_bindings,
        publish_all_ports: h.publish_all_ports,
        log_config: model::LogConfig { driver: h.log_config.typ, options: h.log_config.config },
        console_size: console_size(h.console_size.as_deref()),
        mounts,
        volumes_from: h.volumes_from.unwrap_or_default(),
        volume_driver: h.volume_driver,
        pid_mode: h.pid_mode,
        ipc_mode: h.ipc_mode,
        uts_mode: h.uts_mode,
        cgroupns_mode: h.cgroupns_mode,
        runtime: h.runtime,
        isolation: h.isolation,
        devices: h
            .resources
            .devices
            .iter()
            .flatten()
            .map(|d| model::DeviceMapping {
                path_on_host: d.path_on_host.clone(),
                path_in_container: d.path_in_container.clone(),
                cgroup_permissions: d.cgroup_permissions.clone(),
            })
            .collect(),
        device_cgroup_rules: h.resources.device_cgroup_rules.clone().unwrap_or_default(),
        cgroup_parent: h.resources.cgroup_parent.clone(),
        links: h.links.clone().unwrap_or_default(),
        annotations: h.annotations.clone().unwrap_or_default(),
        masked_paths: h.masked_paths.clone(),
        readonly_paths: h.readonly_paths.clone(),
        storage_opt: h.storage_opt.clone().unwrap_or_default(),
    };
    Ok(CreateRequest {
        name,
        config,
        host,
        endpoints,
        entrypoint: c.entrypoint.map(|e| e.into_vec().into_iter().filter(|s| !s.is_empty()).collect()),
        cmd: c.cmd.map(w::StrOrVec::into_vec),
        working_dir: Some(c.working_dir).filter(|s| !s.is_empty()),
        user: Some(c.user).filter(|s| !s.is_empty()),
    })
}

fn restart_name(r: &model::RestartName) -> &'static str {
    match r {
        model::RestartName::No => "no",
        model::RestartName::OnFailure => "on-failure",
        model::RestartName::Always => "always",
        model::RestartName::UnlessStopped => "unless-stopped",
    }
}

fn opt_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// A legacy link as inspect shows it: `/name:/container/alias`.
fn shown_link(l: &str, container: &str) -> String {
    let (name, alias) = l.split_once(':').unwrap_or((l, l));
    format!(
        "/{}:/{}/{}",
        name.trim_start_matches('/'),
        container.trim_start_matches('/'),
        alias.trim_start_matches('/')
    )
}

/// A container's HostConfig as inspect shows it; `name` is the container's.
pub fn host_config(h: &model::HostConfig, name: &str) -> w::HostConfig {
    let r = &h.resources;
    w::HostConfig {
        binds: opt_vec(&h.binds),
        log_config: w::LogConfig { typ: h.log_config.driver.clone(), config: h.log_config.options.clone() },
        network_mode: h.network_mode.clone(),
        port_bindings: Some(
            h.port_bindings
                .iter()
                .map(|(k, v)| {
                    let binds = v
                        .iter()
                        .map(|b| w::PortBinding { host_ip: b.host_ip.clone(), host_port: b.host_port.clone() })
                        .collect();
                    (k.clone(), Some(binds))
                })
                .collect(),
        ),
        publish_all_ports: h.publish_all_ports,
        restart_policy: w::RestartPolicy {
            name: restart_name(&h.restart_policy.name).into(),
            maximum_retry_count: h.restart_policy.maximum_retry_count,
        },
        auto_remove: h.auto_remove,
        cap_add: opt_vec(&h.cap_add),
        cap_drop: opt_vec(&h.cap_drop),
        dns: Some(h.dns.clone()),
        dns_options: Some(h.dns_options.clone()),
        dns_search: Some(h.dns_search.clone()),
        extra_hosts: opt_vec(&h.extra_hosts),
        group_add: opt_vec(&h.group_add),
        oom_score_adj: h.oom_score_adj,
        privileged: h.privileged,
        readonly_rootfs: h.readonly_rootfs,
        security_opt: opt_vec(&h.security_opt),
        tmpfs: (!h.tmpfs.is_empty()).then(|| h.tmpfs.clone()),
        userns_mode: h.userns_mode.clone(),
        shm_size: if h.shm_size > 0 { h.shm_size } else { 64 << 20 },
        sysctls: (!h.sysctls.is_empty()).then(|| h.sysctls.clone()),
        init: h.init.then_some(true),
        resources: w::Resources {
            memory: r.memory,
            memory_swap: r.memory_swap,
            memory_reservation: r.memory_reservation,
            nano_cpus: r.nano_cpus,
            cpu_shares: r.cpu_shares,
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            pids_limit: r.pids_limit,
            blkio_weight: r.blkio_weight,
            oom_kill_disable: Some(r.oom_kill_disable),
            memory_swappiness: r.memory_swappiness,
            ulimits: Some(
                r.ulimits.iter().map(|u| w::Ulimit { name: u.name.clone(), soft: u.soft, hard: u.hard }).collect(),
            ),
            cgroup_parent: h.cgroup_parent.clone(),
            blkio_weight_device: wire_weights(&r.blkio_weight_device),
            blkio_device_read_bps: wire_throttles(&r.blkio_device_read_bps),
            blkio_device_write_bps: wire_throttles(&r.blkio_device_write_bps),
            blkio_device_read_iops: wire_throttles(&r.blkio_device_read_iops),
            blkio_device_write_iops: wire_throttles(&r.blkio_device_write_iops),
            cpu_realtime_period: r.cpu_realtime_period,
            cpu_realtime_runtime: r.cpu_realtime_runtime,
            devices: Some(
                h.devices
                    .iter()
                    .map(|d| w::DeviceMapping {
                        path_on_host: d.path_on_host.clone(),
                        path_in_container: d.path_in_container.clone(),
                        cgroup_permissions: d.cgroup_permissions.clone(),
                    })
                    .collect(),
            ),
            device_cgroup_rules: opt_vec(&h.device_cgroup_rules),
            device_requests: None,
            kernel_memory_tcp: Some(r.kernel_memory_tcp),
            cpu_count: Some(0),
            cpu_percent: Some(0),
            io_maximum_iops: Some(0),
            io_maximum_bandwidth: Some(0),
        },
        links: (!h.links.is_empty()).then(|| h.links.iter().map(|l| shown_link(l, name)).collect()),
        annotations: (!h.annotations.is_empty()).then(|| h.annotations.clone()),
        storage_opt: (!h.storage_opt.is_empty()).then(|| h.storage_opt.clone()),
        // The paths in force: the defaults unless asked otherwise (none
        // when privileged), as Docker shows them.
        masked_paths: h
            .masked_paths
            .clone()
            .or_else(|| (!h.privileged).then(|| berth_engine::spec::MASKED.iter().map(|p| p.to_string()).collect())),
        readonly_paths: h
            .readonly_paths
            .clone()
            .or_else(|| (!h.privileged).then(|| berth_engine::spec::READONLY.iter().map(|p| p.to_string()).collect())),
        cgroup: String::new(),
        container_id_file: Some(String::new()),
        console_size: Some(h.console_size.map_or(vec![0, 0], |(a, b)| vec![u32::from(a), u32::from(b)])),
        mounts: (!h.mounts.is_empty()).then(|| h.mounts.iter().map(wire_mount).collect()),
        volumes_from: opt_vec(&h.volumes_from),
        volume_driver: h.volume_driver.clone(),
        pid_mode: h.pid_mode.clone(),
        ipc_mode: h.ipc_mode.clone(),
        uts_mode: h.uts_mode.clone(),
        cgroupns_mode: h.cgroupns_mode.clone(),
        runtime: h.runtime.clone(),
        isolation: if h.isolation.is_empty() { "default".into() } else { h.isolation.clone() },
    }
}

/// One `--mount`, with Docker's checks of which options go with which type.
fn mount_request(m: &w::Mount) -> Result<model::MountRequest, ApiError> {
    let kind = match m.typ.as_str() {
        "bind" => model::MountKind::Bind,
        "volume" => model::MountKind::Volume,
        "tmpfs" => model::MountKind::Tmpfs,
        "" => return Err(ApiError::bad("invalid mount config: mount type unknown")),
        other => return Err(ApiError::bad(format!("invalid mount config for type \"{other}\": mount type unknown"))),
    };
    let extra = |field: &str| {
        ApiError::bad(format!("invalid mount config for type \"{}\": field {field} must not be specified", m.typ))
    };
    let (b, v, t) = (&m.bind_options, &m.volume_options, &m.tmpfs_options);
    match kind {
        model::MountKind::Bind if v.is_some() => return Err(extra("VolumeOptions")),
        model::MountKind::Volume if b.is_some() => return Err(extra("BindOptions")),
        model::MountKind::Tmpfs if b.is_some() => return Err(extra("BindOptions")),
        model::MountKind::Tmpfs if v.is_some() => return Err(extra("VolumeOptions")),
        model::MountKind::Bind | model::MountKind::Volume if t.is_some() => return Err(extra("TmpfsOptions")),
        _ => {}
    }
    if b.as_ref().is_some_and(|b| b.non_recursive) {
        return Err(ApiError::new(hyper::StatusCode::NOT_IMPLEMENTED, "non-recursive bind mounts are not supported"));
    }
    let driver = v.as_ref().and_then(|v| v.driver_config.clone()).unwrap_or_default();
    Ok(model::MountRequest {
        kind,
        source: m.source.clone(),
        target: m.target.clone(),
        read_only: m.read_only,
        propagation: b.as_ref().map(|b| b.propagation.clone()).unwrap_or_default(),
        create_mountpoint: b.as_ref().is_some_and(|b| b.create_mountpoint),
        no_copy: v.as_ref().is_some_and(|v| v.no_copy),
        labels: v.as_ref().and_then(|v| v.labels.clone()).unwrap_or_default(),
        driver: driver.name,
        driver_options: driver.options.unwrap_or_default(),
        tmpfs_size: t.as_ref().map_or(0, |t| t.size_bytes),
        tmpfs_mode: t.as_ref().and_then(|t| t.mode),
        subpath: v.as_ref().map(|v| v.subpath.clone()).unwrap_or_default(),
    })
}

fn wire_mount(m: &model::MountRequest) -> w::Mount {
    let mut out = w::Mount {
        typ: m.kind.as_str().into(),
        source: m.source.clone(),
        target: m.target.clone(),
        read_only: m.read_only,
        ..Default::default()
    };
    match m.kind {
        model::MountKind::Bind => {
            out.bind_options = Some(w::BindOptions {
                propagation: m.propagation.clone(),
                non_recursive: false,
                create_mountpoint: m.create_mountpoint,
            })
        }
        model::MountKind::Volume => {
            out.volume_options = Some(w::VolumeOptions {
                no_copy: m.no_copy,
                labels: (!m.labels.is_empty()).then(|| m.labels.clone()),
                driver_config: (!m.driver.is_empty()).then(|| w::DriverConfig {
                    name: m.driver.clone(),
                    options: (!m.driver_options.is_empty()).then(|| m.driver_options.clone()),
                }),
                subpath: m.subpath.clone(),
            })
        }
        model::MountKind::Tmpfs => {
            out.tmpfs_options = Some(w::TmpfsOptions { size_bytes: m.tmpfs_size, mode: m.tmpfs_mode })
        }
    }
    out
}

/// A container's mounts as inspect and list show them.
pub fn mount_points(c: &Container) -> Vec<w::MountPoint> {
    c.mount_points
        .iter()
        .map(|p| w::MountPoint {
            typ: p.kind.as_str().into(),
            name: p.name.clone(),
            source: p.source.clone(),
            destination: p.destination.clone(),
            driver: p.driver.clone(),
            mode: p.mode.clone(),
            rw: p.rw,
            propagation: p.propagation.clone(),
        })
        .collect()
}

fn set_of(v: &[String]) -> Option<BTreeMap<String, Value>> {
    (!v.is_empty()).then(|| v.iter().map(|k| (k.clone(), json!({}))).collect())
}

pub fn container_config(c: &Container) -> w::ContainerConfig {
    let k = &c.config;
    w::ContainerConfig {
        hostname: k.hostname.clone(),
        domainname: k.domainname.clone(),
        user: k.user.clone(),
        attach_stdin: k.attach_stdin,
        attach_stdout: k.attach_stdout,
        attach_stderr: k.attach_stderr,
        exposed_ports: set_of(&k.exposed_ports),
        tty: k.tty,
        open_stdin: k.open_stdin,
        stdin_once: k.stdin_once,
        env: Some(k.env.clone()),
        cmd: Some(w::StrOrVec::Vec(k.cmd.clone())),
        image: k.image.clone(),
        volumes: set_of(&k.volumes),
        working_dir: k.working_dir.clone(),
        entrypoint: (!k.entrypoint.is_empty()).then(|| w::StrOrVec::Vec(k.entrypoint.clone())),
        labels: Some(k.labels.clone()),
        stop_signal: k.stop_signal.clone(),
        stop_timeout: k.stop_timeout,
        healthcheck: k.healthcheck.as_ref().map(|h| w::HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval,
            timeout: h.timeout,
            start_period: h.start_period,
            start_interval: h.start_interval,
            retries: h.retries,
        }),
        shell: opt_vec(&k.shell),
        mac_address: (!k.mac_address.is_empty()).then(|| k.mac_address.clone()),
        network_disabled: None,
        args_escaped: None,
        on_build: opt_vec(&k.on_build),
        healthcheck_on_failure_action: (k.health_on_failure != model::OnFailure::None)
            .then(|| k.health_on_failure.as_str().to_owned()),
        host_config: None,
        networking_config: None,
    }
}

/// An endpoint as create or connect asks for it.
pub fn endpoint_config(ep: &w::EndpointSettings) -> Result<model::EndpointConfig, ApiError> {
    let ip = ep.ipam_config.as_ref().map(|i| i.ipv4_address.as_str()).filter(|s| !s.is_empty());
    let ipv4_address = match ip {
        Some(ip) => Some(ip.parse().map_err(|_| ApiError::bad(format!("invalid IPv4 address: {ip}")))?),
        None => None,
    };
    let ipam = ep.ipam_config.clone().unwrap_or_default();
    let ipv6_address = match ipam.ipv6_address.as_str() {
        "" => None,
        ip => Some(ip.parse().map_err(|_| ApiError::bad(format!("invalid IPv6 address: {ip}")))?),
    };
    let mut link_local_ips = vec![];
    for ip in ipam.link_local_ips.iter().flatten() {
        match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) if !v4.is_unspecified() => link_local_ips.push(v4),
            Ok(std::net::IpAddr::V6(_)) => {
                return Err(ApiError::bad(format!("LinkLocalIPs {ip}: IPv6 link-local addresses are not supported")))
            }
            _ => return Err(ApiError::bad(format!("invalid link-local IP address: {ip}"))),
        }
    }
    Ok(model::EndpointConfig {
        network_id: ep.network_id.clone(),
        aliases: ep.aliases.clone().unwrap_or_default(),
        ipv4_address,
        ipv6_address,
        mac_address: Some(ep.mac_address.clone()).filter(|m| !m.is_empty()),
        link_local_ips,
        links: ep.links.clone().unwrap_or_default(),
        driver_opts: ep.driver_opts.clone().unwrap_or_default(),
    })
}

/// A container's endpoint on one network, as inspect shows it.
fn endpoint_settings(c: &Container, name: &str, cfg: &model::EndpointConfig) -> w::EndpointSettings {
    let a = c.net.attachments.get(name);
    let mut dns_names: Vec<String> = vec![c.name.trim_start_matches('/').to_owned(), c.id[..12].to_owned()];
    dns_names.extend(cfg.aliases.iter().cloned());
    let predefined = name == "bridge";
    w::EndpointSettings {
        ipam_config: (cfg.ipv4_address.is_some() || cfg.ipv6_address.is_some() || !cfg.link_local_ips.is_empty()).then(
            || w::EndpointIpamConfig {
                ipv4_address: cfg.ipv4_address.map(|ip| ip.to_string()).unwrap_or_default(),
                ipv6_address: cfg.ipv6_address.map(|ip| ip.to_string()).unwrap_or_default(),
                link_local_ips: (!cfg.link_local_ips.is_empty())
                    .then(|| cfg.link_local_ips.iter().map(|ip| ip.to_string()).collect()),
            },
        ),
        links: (!cfg.links.is_empty()).then(|| cfg.links.clone()),
        driver_opts: (!cfg.driver_opts.is_empty()).then(|| cfg.driver_opts.clone()),
        aliases: (!cfg.aliases.is_empty()).then(|| cfg.aliases.clone()),
        mac_address: a.map(|a| a.mac.clone()).or_else(|| cfg.mac_address.clone()).unwrap_or_default(),
        network_id: cfg.network_id.clone(),
        endpoint_id: a.map(|a| a.endpoint_id.clone()).unwrap_or_default(),
        gateway: a.and_then(|a| a.gateway).map(|g| g.to_string()).unwrap_or_default(),
        ip_address: a.and_then(|a| a.ip).map(|g| g.to_string()).unwrap_or_default(),
        ip_prefix_len: a.map_or(0, |a| a.prefix),
        global_ipv6_address: a.and_then(|a| a.ip6).map(|ip| ip.to_string()).unwrap_or_default(),
        global_ipv6_prefix_len: a.map_or(0, |a| a.prefix6),
        ipv6_gateway: a.and_then(|a| a.gateway6).map(|g| g.to_string()).unwrap_or_default(),
        dns_names: (!predefined && a.is_some()).then_some(dns_names),
    }
}

/// Each host address a published port answers on: a port published on
/// all addresses answers on `::` too where the host has IPv6 (berthd's
/// relay), which Docker lists as a binding of its own.
fn bindings(c: &Container) -> impl Iterator<Item = (String, &berth_network::store::Published)> {
    let v6 = berth_network::nft::host_has_ipv6();
    c.net.ports.iter().flat_map(move |p| {
        let all = p.host_ip == std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let also = (all && v6 && p.proto != berth_network::ports::Proto::Sctp).then(|| ("::".to_owned(), p));
        std::iter::once((p.host_ip.to_string(), p)).chain(also)
    })
}

/// `NetworkSettings`: the ports (published, or exposed only) and the
/// endpoints; the top-level address fields are the default bridge's.
pub fn network_settings(c: &Container) -> Value {
    let mut ports = serde_json::Map::new();
    if c.state.status.is_live() {
        for p in &c.config.exposed_ports {
            ports.insert(p.clone(), Value::Null);
        }
        for (ip, p) in bindings(c) {
            let key = format!("{}/{}", p.port, p.proto.as_str());
            let entry = ports.entry(key).or_insert_with(|| json!([]));
            if !entry.is_array() {
                *entry = json!([]);
            }
            if let Some(list) = entry.as_array_mut() {
                list.push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
            }
        }
    }
    let networks: serde_json::Map<String, Value> = c
        .networks
        .iter()
        .map(|(name, cfg)| (name.clone(), serde_json::to_value(endpoint_settings(c, name, cfg)).unwrap_or_default()))
        .collect();
    let mut v = json!({
        "Bridge": "", "SandboxID": "", "SandboxKey": c.net.sandbox_key, "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null, "EndpointID": "",
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "",
        "Networks": networks
    });
    if let Some(a) = c.net.attachments.get("bridge") {
        v["EndpointID"] = json!(a.endpoint_id);
        v["Gateway"] = json!(a.gateway.map(|g| g.to_string()).unwrap_or_default());
        v["IPAddress"] = json!(a.ip.map(|g| g.to_string()).unwrap_or_default());
        v["IPPrefixLen"] = json!(a.prefix);
        v["MacAddress"] = json!(a.mac);
        if let Some(ip6) = a.ip6 {
            v["GlobalIPv6Address"] = json!(ip6.to_string());
            v["GlobalIPv6PrefixLen"] = json!(a.prefix6);
            v["IPv6Gateway"] = json!(a.gateway6.map(|g| g.to_string()).unwrap_or_default());
        }
    }
    if matches!(c.host.network_mode.as_str(), "none" | "host") {
        // Every field of an endpoint, as Docker shows one, though it is empty.
        let empty = serde_json::to_value(w::EndpointSettings::default()).unwrap_or_default();
        v["Networks"] = json!({ c.host.network_mode.clone(): empty });
    }
    v
}

pub fn inspect(c: &Container) -> w::ContainerInspect {
    let s = &c.state;
    w::ContainerInspect {
        id: c.id.clone(),
        created: c.created.clone(),
        path: c.path.clone(),
        args: c.args.clone(),
        state: w::ContainerState {
            status: s.status.as_str().into(),
            running: s.status.is_running(),
            paused: s.status == Status::Paused,
            restarting: s.status == Status::Restarting,
            oom_killed: s.oom_killed,
            dead: s.status == Status::Dead,
            pid: i64::from(s.pid),
            exit_code: i64::from(s.exit_code),
            error: s.error.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            health: s.health.as_ref().map(|h| w::Health {
                status: h.status.as_str().into(),
                failing_streak: h.failing_streak,
                log: h
                    .log
                    .iter()
                    .map(|r| w::HealthcheckResult {
                        start: r.start.clone(),
                        end: r.end.clone(),
                        exit_code: r.exit_code,
                        output: r.output.clone(),
                    })
                    .collect(),
            }),
        },
        image: c.image_id.clone(),
        resolv_conf_path: c.resolv_conf_path.clone(),
        hostname_path: c.hostname_path.clone(),
        hosts_path: c.hosts_path.clone(),
        log_path: c.log_path.clone(),
        name: c.name.clone(),
        restart_count: c.restart_count,
        driver: "overlay2".into(),
        platform: "linux".into(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids: None,
        host_config: host_config(&c.host, &c.name),
        graph_driver: w::GraphDriver { name: "overlay2".into(), data: BTreeMap::new() },
        mounts: mount_points(c),
        config: container_config(c),
        network_settings: network_settings(c),
    }
}

/// Docker's "Up 3 seconds (healthy)" / "Exited (0) 2 minutes ago".
pub fn status_text(c: &Container, now_nanos: i64) -> String {
    let ago = |t: &str| {
        let then = berth_engine::logs::rfc3339_nanos(t).unwrap_or(now_nanos);
        berth_core::units::human_duration((now_nanos - then).max(0) / 1_000_000_000)
    };
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => match &c.state.health {
            // As Docker's State.String.
            Some(h) if h.status == model::HealthStatus::Starting => {
                format!("Up {} (health: starting)", ago(&c.state.started_at))
            }
            Some(h) => format!("Up {} ({})", ago(&c.state.started_at), h.status.as_str()),
            None => format!("Up {}", ago(&c.state.started_at)),
        },
        Status::Paused => format!("Up {} (Paused)", ago(&c.state.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", c.state.exit_code, ago(&c.state.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Exited => format!("Exited ({}) {} ago", c.state.exit_code, ago(&c.state.finished_at)),
    }
}

/// The list's `Ports`, as inspect's `NetworkSettings.Ports` has them: each
/// binding of a published port, and each port only exposed with none.
fn port_summaries(c: &Container) -> Vec<w::PortSummary> {
    if !c.state.status.is_live() {
        return vec![];
    }
    let mut out: Vec<w::PortSummary> = bindings(c)
        .map(|(ip, p)| w::PortSummary {
            ip: Some(ip),
            private_port: p.port,
            public_port: Some(p.host_port),
            typ: p.proto.as_str().parse().ok(),
        })
        .collect();
    for key in &c.config.exposed_ports {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let Ok(port) = port.parse::<u16>() else { continue };
        let published = c.net.ports.iter().any(|p| p.port == port && p.proto.as_str() == proto);
        if !published {
            out.push(w::PortSummary { ip: None, private_port: port, public_port: None, typ: proto.parse().ok() });
        }
    }
    out
}

pub fn summary(c: &Container, now_nanos: i64) -> w::ContainerSummary {
    let cmd: Vec<String> = c.config.entrypoint.iter().chain(&c.config.cmd).cloned().collect();
    // The endpoints as inspect shows them, read back as the spec's
    // EndpointSettings; the network tests hold the two shapes together.
    let networks = serde_json::from_value(network_settings(c)["Networks"].take()).unwrap_or_else(|e| {
        tracing::error!(container = %c.id, "endpoints do not fit the spec's EndpointSettings: {e}");
        Default::default()
    });
    let mounts = c
        .mount_points
        .iter()
        .map(|p| w::spec::MountPoint {
            typ: Some(p.kind.as_str().into()),
            name: (!p.name.is_empty()).then(|| p.name.clone()),
            source: Some(p.source.clone()),
            destination: Some(p.destination.clone()),
            driver: (!p.driver.is_empty()).then(|| p.driver.clone()),
            mode: Some(p.mode.clone()),
            rw: Some(p.rw),
            propagation: Some(p.propagation.clone()),
        })
        .collect();
    // Every field named, no `..`: a field the spec grows is a build
    // error here until it is filled.
    w::ContainerSummary {
        id: Some(c.id.clone()),
        names: Some(vec![c.name.clone()]),
        image: Some(c.config.image.clone()),
        image_id: Some(c.image_id.clone()),
        // Sent by an engine that keeps image manifests (containerd's
        // store); berth keeps images by config id, as Docker's graph
        // drivers do, which send none.
        image_manifest_descriptor: None,
        command: Some(cmd.join(" ")),
        created: Some(berth_engine::logs::rfc3339_nanos(&c.created).unwrap_or(0) / 1_000_000_000),
        ports: Some(port_summaries(c)),
        size_rw: None,
        size_root_fs: None,
        labels: Some(c.config.labels.clone().into_iter().collect()),
        state: c.state.status.as_str().parse().ok(),
        status: Some(status_text(c, now_nanos)),
        host_config: Some(w::ContainerSummaryHostConfig {
            network_mode: Some(c.host.network_mode.clone()),
            annotations: (!c.host.annotations.is_empty()).then(|| c.host.annotations.clone().into_iter().collect()),
        }),
        network_settings: Some(w::ContainerSummaryNetworkSettings { networks: Some(networks) }),
        mounts: Some(mounts),
        // The health summary of API versions after the 1.50 berth
        // serves; at 1.50 the `health=` filter selects by it.
        health: None,
    }
}

/// A [height, width] pair from the wire; zeros mean "not given".
pub fn console_size<T: Copy + TryInto<u64>>(v: Option<&[T]>) -> Option<(u16, u16)> {
    let side = |x: T| x.try_into().ok().filter(|x: &u64| *x > 0).map(|x| x.min(65535) as u16);
    match v {
        Some([h, w]) => side(*h).zip(side(*w)),
        _ => None,
    }
}
