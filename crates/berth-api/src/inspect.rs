//! A container as inspect shows it, in the spec's models: every field
//! named, with no `..`, and the value Docker sends for each that berth has
//! no other value for.

use std::collections::HashMap;

use berth_api_types::{self as w, spec};
use berth_engine::model::{self, Container, Status};
use serde_json::{json, Value};

fn restart_name(r: &model::RestartName) -> spec::RestartPolicyNameEnum {
    match r {
        model::RestartName::No => spec::RestartPolicyNameEnum::NO,
        model::RestartName::OnFailure => spec::RestartPolicyNameEnum::ON_FAILURE,
        model::RestartName::Always => spec::RestartPolicyNameEnum::ALWAYS,
        model::RestartName::UnlessStopped => spec::RestartPolicyNameEnum::UNLESS_STOPPED,
    }
}

fn opt_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn opt_map(m: &std::collections::BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.clone().into_iter().collect())
}

fn opt_text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
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

fn weights(v: &[model::WeightDevice]) -> Option<Vec<spec::ResourcesBlkioWeightDevice>> {
    Some(
        v.iter()
            .map(|d| spec::ResourcesBlkioWeightDevice {
                path: Some(d.path.clone()),
                weight: Some(usize::from(d.weight)),
            })
            .collect(),
    )
}

fn throttles(v: &[model::ThrottleDevice]) -> Option<Vec<spec::ThrottleDevice>> {
    Some(
        v.iter()
            .map(|d| spec::ThrottleDevice {
                path: Some(d.path.clone()),
                rate: Some(i64::try_from(d.rate).unwrap_or(i64::MAX)),
            })
            .collect(),
    )
}

/// A container's HostConfig as inspect shows it; `name` is the container's.
pub fn host_config(h: &model::HostConfig, name: &str) -> w::HostConfig {
    let r = &h.resources;
    let port_bindings = h
        .port_bindings
        .iter()
        .map(|(k, v)| {
            let binds = v
                .iter()
                .map(|b| w::PortBinding { host_ip: Some(b.host_ip.clone()), host_port: Some(b.host_port.clone()) })
                .collect();
            (k.clone(), Some(binds))
        })
        .collect();
    let (rows, cols) = h.console_size.unwrap_or((0, 0));
    let spec = spec::HostConfig {
        cpu_shares: Some(r.cpu_shares),
        memory: Some(r.memory),
        cgroup_parent: Some(h.cgroup_parent.clone()),
        blkio_weight: Some(r.blkio_weight),
        blkio_weight_device: weights(&r.blkio_weight_device),
        blkio_device_read_bps: throttles(&r.blkio_device_read_bps),
        blkio_device_write_bps: throttles(&r.blkio_device_write_bps),
        blkio_device_read_iops: throttles(&r.blkio_device_read_iops),
        blkio_device_write_iops: throttles(&r.blkio_device_write_iops),
        cpu_period: Some(r.cpu_period),
        cpu_quota: Some(r.cpu_quota),
        cpu_realtime_period: Some(r.cpu_realtime_period),
        cpu_realtime_runtime: Some(r.cpu_realtime_runtime),
        cpuset_cpus: Some(r.cpuset_cpus.clone()),
        cpuset_mems: Some(r.cpuset_mems.clone()),
        devices: Some(
            h.devices
                .iter()
                .map(|d| spec::DeviceMapping {
                    path_on_host: Some(d.path_on_host.clone()),
                    path_in_container: Some(d.path_in_container.clone()),
                    cgroup_permissions: Some(d.cgroup_permissions.clone()),
                })
                .collect(),
        ),
        device_cgroup_rules: opt_vec(&h.device_cgroup_rules),
        device_requests: None,
        memory_reservation: Some(r.memory_reservation),
        memory_swap: Some(r.memory_swap),
        memory_swappiness: r.memory_swappiness,
        nano_cpus: Some(r.nano_cpus),
        oom_kill_disable: Some(r.oom_kill_disable),
        init: h.init.then_some(true),
        pids_limit: r.pids_limit.filter(|l| *l != 0),
        ulimits: Some(
            r.ulimits
                .iter()
                .map(|u| spec::ResourcesUlimits { name: Some(u.name.clone()), soft: Some(u.soft), hard: Some(u.hard) })
                .collect(),
        ),
        cpu_count: Some(0),
        cpu_percent: Some(0),
        io_maximum_iops: Some(0),
        io_maximum_bandwidth: Some(0),
        binds: opt_vec(&h.binds),
        container_id_file: Some(h.container_id_file.clone()),
        log_config: Some(spec::HostConfigLogConfig {
            typ: Some(h.log_config.driver.clone()),
            config: Some(h.log_config.options.clone().into_iter().collect()),
        }),
        network_mode: Some(h.network_mode.clone()),
        port_bindings: Some(port_bindings),
        restart_policy: Some(spec::RestartPolicy {
            name: Some(restart_name(&h.restart_policy.name)),
            maximum_retry_count: Some(h.restart_policy.maximum_retry_count),
        }),
        auto_remove: Some(h.auto_remove),
        volume_driver: Some(h.volume_driver.clone()),
        volumes_from: opt_vec(&h.volumes_from),
        mounts: (!h.mounts.is_empty()).then(|| h.mounts.iter().map(wire_mount).collect()),
        console_size: Some(vec![usize::from(rows), usize::from(cols)]),
        annotations: opt_map(&h.annotations),
        cap_add: opt_vec(&h.cap_add),
        cap_drop: opt_vec(&h.cap_drop),
        cgroupns_mode: h.cgroupns_mode.parse().ok(),
        dns: Some(h.dns.clone()),
        dns_options: Some(h.dns_options.clone()),
        dns_search: Some(h.dns_search.clone()),
        extra_hosts: opt_vec(&h.extra_hosts),
        group_add: opt_vec(&h.group_add),
        ipc_mode: Some(h.ipc_mode.clone()),
        cgroup: Some(String::new()),
        links: (!h.links.is_empty()).then(|| h.links.iter().map(|l| shown_link(l, name)).collect()),
        oom_score_adj: Some(i64::from(h.oom_score_adj)),
        pid_mode: Some(h.pid_mode.clone()),
        privileged: Some(h.privileged),
        publish_all_ports: Some(h.publish_all_ports),
        readonly_rootfs: Some(h.readonly_rootfs),
        security_opt: opt_vec(&h.security_opt),
        storage_opt: opt_map(&h.storage_opt),
        tmpfs: opt_map(&h.tmpfs),
        uts_mode: Some(h.uts_mode.clone()),
        userns_mode: Some(h.userns_mode.clone()),
        shm_size: Some(if h.shm_size > 0 { h.shm_size } else { 64 << 20 }),
        sysctls: opt_map(&h.sysctls),
        runtime: Some(h.runtime.clone()),
        isolation: Some(h.isolation.parse().unwrap_or(spec::HostConfigIsolationEnum::EMPTY)),
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
    };
    w::HostConfig { spec, kernel_memory_tcp: Some(r.kernel_memory_tcp) }
}

/// A `--mount` as it was asked for, its unset options left out as Docker
/// echoes them.
fn wire_mount(m: &model::MountRequest) -> w::Mount {
    let bind = w::BindOptions {
        propagation: m.propagation.parse().ok().filter(|_| !m.propagation.is_empty()),
        non_recursive: None,
        create_mountpoint: m.create_mountpoint.then_some(true),
        read_only_non_recursive: None,
        read_only_force_recursive: None,
    };
    let volume = w::VolumeOptions {
        no_copy: m.no_copy.then_some(true),
        labels: opt_map(&m.labels),
        driver_config: (!m.driver.is_empty() || !m.driver_options.is_empty())
            .then(|| w::DriverConfig { name: opt_text(&m.driver), options: opt_map(&m.driver_options) }),
        subpath: opt_text(&m.subpath),
    };
    let tmpfs = w::TmpfsOptions {
        size_bytes: (m.tmpfs_size != 0).then_some(m.tmpfs_size),
        mode: m.tmpfs_mode.map(i64::from),
        options: None,
    };
    w::Mount {
        target: Some(m.target.clone()),
        source: opt_text(&m.source),
        typ: m.kind.as_str().parse().ok(),
        read_only: m.read_only.then_some(true),
        consistency: None,
        bind_options: (bind != w::BindOptions::default()).then_some(bind),
        volume_options: (volume != w::VolumeOptions::default()).then_some(volume),
        image_options: None,
        tmpfs_options: (tmpfs != w::TmpfsOptions::default()).then_some(tmpfs),
    }
}

/// A container's mounts as inspect and list show them.
pub fn mount_points(c: &Container) -> Vec<w::MountPoint> {
    c.mount_points
        .iter()
        .map(|p| w::MountPoint {
            typ: p.kind.as_str().parse().ok(),
            name: opt_text(&p.name),
            source: Some(p.source.clone()),
            destination: Some(p.destination.clone()),
            driver: opt_text(&p.driver),
            mode: Some(p.mode.clone()),
            rw: Some(p.rw),
            propagation: Some(p.propagation.clone()),
        })
        .collect()
}

fn health_config(h: &model::HealthConfig) -> spec::HealthConfig {
    let nonzero = |v: i64| (v != 0).then_some(v);
    spec::HealthConfig {
        test: opt_vec(&h.test),
        interval: nonzero(h.interval),
        timeout: nonzero(h.timeout),
        retries: nonzero(h.retries),
        start_period: nonzero(h.start_period),
        start_interval: nonzero(h.start_interval),
    }
}

pub fn container_config(c: &Container) -> w::ContainerConfig {
    let k = &c.config;
    let spec = spec::ContainerConfig {
        hostname: Some(k.hostname.clone()),
        domainname: Some(k.domainname.clone()),
        user: Some(k.user.clone()),
        attach_stdin: Some(k.attach_stdin),
        attach_stdout: Some(k.attach_stdout),
        attach_stderr: Some(k.attach_stderr),
        exposed_ports: opt_vec(&k.exposed_ports),
        tty: Some(k.tty),
        open_stdin: Some(k.open_stdin),
        stdin_once: Some(k.stdin_once),
        env: Some(k.env.clone()),
        cmd: opt_vec(&k.cmd),
        healthcheck: k.healthcheck.as_ref().map(health_config),
        args_escaped: None,
        image: Some(k.image.clone()),
        volumes: opt_vec(&k.volumes),
        working_dir: Some(k.working_dir.clone()),
        entrypoint: opt_vec(&k.entrypoint),
        network_disabled: None,
        on_build: opt_vec(&k.on_build),
        labels: Some(k.labels.clone().into_iter().collect()),
        stop_signal: k.stop_signal.clone(),
        stop_timeout: k.stop_timeout,
        shell: opt_vec(&k.shell),
    };
    w::ContainerConfig {
        spec,
        mac_address: opt_text(&k.mac_address),
        healthcheck_on_failure_action: (k.health_on_failure != model::OnFailure::None)
            .then(|| k.health_on_failure.as_str().to_owned()),
    }
}

/// A container's endpoint on one network, as inspect shows it.
pub fn endpoint_settings(c: &Container, name: &str, cfg: &model::EndpointConfig) -> w::EndpointSettings {
    let a = c.net.attachments.get(name);
    let mut dns_names: Vec<String> = vec![c.name.trim_start_matches('/').to_owned(), c.id[..12].to_owned()];
    dns_names.extend(cfg.aliases.iter().cloned());
    let predefined = name == "bridge";
    let asked = cfg.ipv4_address.is_some() || cfg.ipv6_address.is_some() || !cfg.link_local_ips.is_empty();
    w::EndpointSettings {
        ipam_config: asked.then(|| w::EndpointIpamConfig {
            ipv4_address: cfg.ipv4_address.map(|ip| ip.to_string()),
            ipv6_address: cfg.ipv6_address.map(|ip| ip.to_string()),
            link_local_ips: (!cfg.link_local_ips.is_empty())
                .then(|| cfg.link_local_ips.iter().map(|ip| ip.to_string()).collect()),
        }),
        links: opt_vec(&cfg.links),
        mac_address: Some(a.map(|a| a.mac.clone()).or_else(|| cfg.mac_address.clone()).unwrap_or_default()),
        aliases: opt_vec(&cfg.aliases),
        driver_opts: opt_map(&cfg.driver_opts),
        gw_priority: None,
        network_id: Some(cfg.network_id.clone()),
        endpoint_id: Some(a.map(|a| a.endpoint_id.clone()).unwrap_or_default()),
        gateway: Some(a.and_then(|a| a.gateway).map(|g| g.to_string()).unwrap_or_default()),
        ip_address: Some(a.and_then(|a| a.ip).map(|g| g.to_string()).unwrap_or_default()),
        ip_prefix_len: Some(a.map_or(0, |a| i64::from(a.prefix))),
        ipv6_gateway: Some(a.and_then(|a| a.gateway6).map(|g| g.to_string()).unwrap_or_default()),
        global_ipv6_address: Some(a.and_then(|a| a.ip6).map(|ip| ip.to_string()).unwrap_or_default()),
        global_ipv6_prefix_len: Some(a.map_or(0, |a| i64::from(a.prefix6))),
        dns_names: (!predefined && a.is_some()).then_some(dns_names),
    }
}

/// Every endpoint of a container, by network: for network none or host,
/// one with every field empty, as Docker shows it.
pub fn endpoints(c: &Container) -> HashMap<String, w::EndpointSettings> {
    if matches!(c.host.network_mode.as_str(), "none" | "host") {
        let empty = w::EndpointSettings {
            mac_address: Some(String::new()),
            network_id: Some(String::new()),
            endpoint_id: Some(String::new()),
            gateway: Some(String::new()),
            ip_address: Some(String::new()),
            ip_prefix_len: Some(0),
            ipv6_gateway: Some(String::new()),
            global_ipv6_address: Some(String::new()),
            global_ipv6_prefix_len: Some(0),
            ..Default::default()
        };
        return HashMap::from([(c.host.network_mode.clone(), empty)]);
    }
    c.networks.iter().map(|(name, cfg)| (name.clone(), endpoint_settings(c, name, cfg))).collect()
}

/// Each host address a published port answers on: a port published on
/// all addresses answers on `::` too where the host has IPv6 (berthd's
/// relay), which Docker lists as a binding of its own.
pub fn bindings(c: &Container) -> impl Iterator<Item = (String, &berth_network::store::Published)> {
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
    let networks: serde_json::Map<String, Value> = endpoints(c)
        .into_iter()
        .map(|(name, ep)| {
            let mut v = serde_json::to_value(ep).unwrap_or_default();
            w::fill_nulls(&mut v, w::ENDPOINT_NULLS);
            (name, v)
        })
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
    v
}

fn state(s: &model::State) -> spec::ContainerState {
    spec::ContainerState {
        status: s.status.as_str().parse().ok(),
        running: Some(s.status.is_running()),
        paused: Some(s.status == Status::Paused),
        restarting: Some(s.status == Status::Restarting),
        oom_killed: Some(s.oom_killed),
        dead: Some(s.status == Status::Dead),
        pid: Some(i64::from(s.pid)),
        exit_code: Some(i64::from(s.exit_code)),
        error: Some(s.error.clone()),
        started_at: Some(s.started_at.clone()),
        finished_at: Some(s.finished_at.clone()),
        health: s.health.as_ref().map(|h| spec::Health {
            status: h.status.as_str().parse().ok(),
            failing_streak: Some(h.failing_streak),
            log: Some(
                h.log
                    .iter()
                    .map(|r| spec::HealthcheckResult {
                        start: Some(r.start.clone()),
                        end: Some(r.end.clone()),
                        exit_code: Some(r.exit_code),
                        output: Some(r.output.clone()),
                    })
                    .collect(),
            ),
        }),
    }
}

/// `GET /containers/{id}/json`; `exec_ids` are its execs, `graph` its
/// overlay directories.
pub fn inspect(c: &Container, exec_ids: Vec<String>, graph: HashMap<String, String>) -> w::ContainerInspect {
    let spec = spec::ContainerInspectResponse {
        id: Some(c.id.clone()),
        created: Some(c.created.clone()),
        path: Some(c.path.clone()),
        args: Some(c.args.clone()),
        state: Some(state(&c.state)),
        image: Some(c.image_id.clone()),
        resolv_conf_path: Some(c.resolv_conf_path.clone()),
        hostname_path: Some(c.hostname_path.clone()),
        hosts_path: Some(c.hosts_path.clone()),
        log_path: Some(c.log_path.clone()),
        name: Some(c.name.clone()),
        restart_count: Some(c.restart_count),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        // Sent by an engine that keeps image manifests (containerd's
        // store); berth keeps images by config id, as Docker's graph
        // drivers do, which send none.
        image_manifest_descriptor: None,
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: (!exec_ids.is_empty()).then_some(exec_ids),
        // Kept in the fields of berth's own below.
        host_config: None,
        graph_driver: Some(spec::DriverData { name: "overlay2".into(), data: graph }),
        // The snapshotter of a containerd image store; berth's is overlay2.
        storage: None,
        // Sent only when asked for with `size=1`.
        size_rw: None,
        size_root_fs: None,
        mounts: Some(mount_points(c)),
        config: None,
        network_settings: None,
    };
    w::ContainerInspect {
        spec,
        host_config: host_config(&c.host, &c.name),
        config: container_config(c),
        network_settings: network_settings(c),
    }
}

/// Inspect's JSON, with the `null`s Docker sends where the spec's models
/// leave a field out.
pub fn to_json(i: &w::ContainerInspect) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    for (at, keys) in w::INSPECT_NULLS {
        if let Some(obj) = v.pointer_mut(at) {
            w::fill_nulls(obj, keys);
        }
    }
    v
}
