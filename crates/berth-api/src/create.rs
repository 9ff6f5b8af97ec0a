//! Container requests (create, update, commit) from the spec's models to
//! the engine's. Each wire struct is taken apart field by field, with no
//! `..`: a field the spec grows is a build error here until berth
//! honours or refuses it.

use std::collections::{BTreeMap, HashMap};

use berth_api_types::{self as w, spec};
use berth_engine::model::{self, CreateRequest};
use serde_json::Value;

use crate::ApiError;

fn text(v: Option<String>) -> String {
    v.unwrap_or_default()
}

fn sorted<V>(m: Option<HashMap<String, V>>) -> BTreeMap<String, V> {
    m.unwrap_or_default().into_iter().collect()
}

/// A request field berth does not carry out, refused by name when it asks
/// for something.
fn refuse_if(set: bool, name: &str, why: &str) -> Result<(), ApiError> {
    if set {
        return Err(ApiError::bad(format!("{name}: {why}")));
    }
    Ok(())
}

/// moby's messages for a value outside one of the spec's enums, which
/// serde would name only by the enum's variants; checked on the body as
/// sent, before it is read into the spec's types.
pub fn check_enums(body: &Value) -> Result<(), ApiError> {
    fn bad_value<E: std::str::FromStr>(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| s.parse::<E>().is_err())
    }
    let h = body.get("HostConfig").unwrap_or(&Value::Null);
    check_restart_name(h)?;
    if let Some(m) = bad_value::<spec::HostConfigCgroupnsModeEnum>(h.get("CgroupnsMode")) {
        return Err(ApiError::bad(format!("invalid cgroup namespace mode: {m}")));
    }
    if let Some(i) = bad_value::<spec::HostConfigIsolationEnum>(h.get("Isolation")) {
        return Err(ApiError::bad(format!("Invalid isolation: \"{i}\" - linux only supports 'default'")));
    }
    for m in h.get("Mounts").and_then(Value::as_array).into_iter().flatten() {
        if let Some(t) = bad_value::<w::MountType>(m.get("Type")) {
            return Err(ApiError::bad(format!("invalid mount config for type \"{t}\": mount type unknown")));
        }
        if let Some(p) = bad_value::<w::Propagation>(m.pointer("/BindOptions/Propagation")) {
            return Err(ApiError::bad(format!("invalid propagation mode: {p}")));
        }
    }
    Ok(())
}

/// moby's message for an unknown restart policy; `h` holds `RestartPolicy`
/// (a HostConfig, or an update's body).
pub fn check_restart_name(h: &Value) -> Result<(), ApiError> {
    if let Some(n) = h.pointer("/RestartPolicy/Name").and_then(Value::as_str) {
        if n.parse::<spec::RestartPolicyNameEnum>().is_err() {
            return Err(ApiError::bad(format!("invalid restart policy '{n}'")));
        }
    }
    Ok(())
}

/// A Config as sent: the spec's fields, and berth's two besides, each
/// read on its own so that an error names the field's whole path.
fn read_config(mut body: Value, at: &str) -> Result<w::ContainerConfig, ApiError> {
    let mut take = |key: &str| body.as_object_mut().and_then(|m| m.remove(key)).unwrap_or(Value::Null);
    let mac_address = crate::decode_at(take("MacAddress"), &format!("{at}MacAddress"))?;
    let action = crate::decode_at(take("HealthcheckOnFailureAction"), &format!("{at}HealthcheckOnFailureAction"))?;
    Ok(w::ContainerConfig { spec: crate::decode_at(body, at)?, mac_address, healthcheck_on_failure_action: action })
}

/// `POST /containers/create`'s body, read part by part (see
/// [`read_config`]); Cmd, Entrypoint and Shell may be strings.
pub fn read_create(mut body: Value) -> Result<w::ContainerCreateRequest, ApiError> {
    if body.is_null() {
        return Err(ApiError::bad("config cannot be empty in order to create a container"));
    }
    w::normalize_str_slices(&mut body);
    check_enums(&body)?;
    let mut take = |key: &str| body.as_object_mut().and_then(|m| m.remove(key)).unwrap_or(Value::Null);
    let mut host = take("HostConfig");
    let networking_config = crate::decode_at(take("NetworkingConfig"), "NetworkingConfig.")?;
    let kernel_tcp = host.as_object_mut().and_then(|m| m.remove("KernelMemoryTCP")).unwrap_or(Value::Null);
    let host_config = match host {
        Value::Null => None,
        h => Some(w::HostConfig {
            spec: crate::decode_at(h, "HostConfig.")?,
            kernel_memory_tcp: crate::decode_at(kernel_tcp, "HostConfig.KernelMemoryTCP")?,
        }),
    };
    Ok(w::ContainerCreateRequest { config: read_config(body, "")?, host_config, networking_config })
}

/// `POST /commit`'s Config, if one was sent.
pub fn read_commit_config(mut body: Value) -> Result<Option<w::ContainerConfig>, ApiError> {
    if body.is_null() {
        return Ok(None);
    }
    w::normalize_str_slices(&mut body);
    read_config(body, "").map(Some)
}

/// A restart policy as the API names it, checked as Docker checks it.
pub fn restart_policy(p: Option<spec::RestartPolicy>) -> Result<model::RestartPolicy, ApiError> {
    let spec::RestartPolicy { name, maximum_retry_count } = p.unwrap_or_default();
    use spec::RestartPolicyNameEnum as N;
    let name = match name.unwrap_or(N::EMPTY) {
        N::EMPTY | N::NO => model::RestartName::No,
        N::ALWAYS => model::RestartName::Always,
        N::UNLESS_STOPPED => model::RestartName::UnlessStopped,
        N::ON_FAILURE => model::RestartName::OnFailure,
    };
    let retries = maximum_retry_count.unwrap_or(0);
    if retries < 0 {
        return Err(ApiError::bad("invalid restart policy: maximum retry count cannot be negative"));
    }
    if retries > 0 && name != model::RestartName::OnFailure {
        return Err(ApiError::bad(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".to_string(),
        ));
    }
    Ok(model::RestartPolicy { name, maximum_retry_count: retries })
}

fn weight_devices(v: Option<Vec<spec::ResourcesBlkioWeightDevice>>) -> Result<Vec<model::WeightDevice>, ApiError> {
    let mut out = vec![];
    for spec::ResourcesBlkioWeightDevice { path, weight } in v.unwrap_or_default() {
        let weight = u16::try_from(weight.unwrap_or(0))
            .map_err(|_| ApiError::bad(format!("BlkioWeightDevice {}: weight out of range", text(path.clone()))))?;
        out.push(model::WeightDevice { path: text(path), weight });
    }
    Ok(out)
}

fn throttle_devices(name: &str, v: Option<Vec<spec::ThrottleDevice>>) -> Result<Vec<model::ThrottleDevice>, ApiError> {
    let mut out = vec![];
    for spec::ThrottleDevice { path, rate } in v.unwrap_or_default() {
        let rate = u64::try_from(rate.unwrap_or(0))
            .map_err(|_| ApiError::bad(format!("{name} {}: the rate cannot be negative", text(path.clone()))))?;
        out.push(model::ThrottleDevice { path: text(path), rate });
    }
    Ok(out)
}

/// The parts of a Resources the engine keeps per container; the devices,
/// device rules, cgroup parent and Init go elsewhere, and Windows' fields
/// are refused.
struct Limits {
    resources: model::Resources,
    devices: Vec<model::DeviceMapping>,
    device_cgroup_rules: Vec<String>,
    cgroup_parent: String,
    device_requests: Option<Vec<spec::DeviceRequest>>,
    init: Option<bool>,
}

fn limits(r: spec::Resources, kernel_memory_tcp: Option<i64>) -> Result<Limits, ApiError> {
    let spec::Resources {
        cpu_shares,
        memory,
        cgroup_parent,
        blkio_weight,
        blkio_weight_device,
        blkio_device_read_bps,
        blkio_device_write_bps,
        blkio_device_read_iops,
        blkio_device_write_iops,
        cpu_period,
        cpu_quota,
        cpu_realtime_period,
        cpu_realtime_runtime,
        cpuset_cpus,
        cpuset_mems,
        devices,
        device_cgroup_rules,
        device_requests,
        memory_reservation,
        memory_swap,
        memory_swappiness,
        nano_cpus,
        oom_kill_disable,
        init,
        pids_limit,
        ulimits,
        cpu_count,
        cpu_percent,
        io_maximum_iops,
        io_maximum_bandwidth,
    } = r;
    for (name, set) in [
        ("CpuCount", cpu_count.is_some_and(|v| v != 0)),
        ("CpuPercent", cpu_percent.is_some_and(|v| v != 0)),
        ("IOMaximumIOps", io_maximum_iops.is_some_and(|v| v != 0)),
        ("IOMaximumBandwidth", io_maximum_bandwidth.is_some_and(|v| v != 0)),
    ] {
        if set {
            return Err(ApiError::bad(format!("{name} is for Windows containers only")));
        }
    }
    let resources = model::Resources {
        memory: memory.unwrap_or(0),
        memory_swap: memory_swap.unwrap_or(0),
        memory_reservation: memory_reservation.unwrap_or(0),
        nano_cpus: nano_cpus.unwrap_or(0),
        cpu_shares: cpu_shares.unwrap_or(0),
        cpu_quota: cpu_quota.unwrap_or(0),
        cpu_period: cpu_period.unwrap_or(0),
        cpuset_cpus: text(cpuset_cpus),
        cpuset_mems: text(cpuset_mems),
        pids_limit,
        blkio_weight: blkio_weight.unwrap_or(0),
        oom_kill_disable: oom_kill_disable.unwrap_or(false),
        // -1 is "not set", as Docker's fixMemorySwappiness reads it.
        memory_swappiness: memory_swappiness.filter(|v| *v != -1),
        ulimits: ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|spec::ResourcesUlimits { name, soft, hard }| model::Ulimit {
                name: text(name),
                soft: soft.unwrap_or(0),
                hard: hard.unwrap_or(0),
            })
            .collect(),
        blkio_weight_device: weight_devices(blkio_weight_device)?,
        blkio_device_read_bps: throttle_devices("BlkioDeviceReadBps", blkio_device_read_bps)?,
        blkio_device_write_bps: throttle_devices("BlkioDeviceWriteBps", blkio_device_write_bps)?,
        blkio_device_read_iops: throttle_devices("BlkioDeviceReadIOps", blkio_device_read_iops)?,
        blkio_device_write_iops: throttle_devices("BlkioDeviceWriteIOps", blkio_device_write_iops)?,
        cpu_realtime_period: cpu_realtime_period.unwrap_or(0),
        cpu_realtime_runtime: cpu_realtime_runtime.unwrap_or(0),
        kernel_memory_tcp: kernel_memory_tcp.unwrap_or(0),
    };
    let devices = devices
        .unwrap_or_default()
        .into_iter()
        .map(|spec::DeviceMapping { path_on_host, path_in_container, cgroup_permissions }| model::DeviceMapping {
            path_on_host: text(path_on_host),
            path_in_container: text(path_in_container),
            cgroup_permissions: text(cgroup_permissions),
        })
        .collect();
    Ok(Limits {
        resources,
        devices,
        device_cgroup_rules: device_cgroup_rules.unwrap_or_default(),
        cgroup_parent: text(cgroup_parent),
        device_requests,
        init,
    })
}

/// `POST /containers/{id}/update`'s body as the engine's update.
pub fn update(u: w::UpdateConfig) -> Result<berth_engine::Update, ApiError> {
    let spec::ContainerUpdateBody {
        cpu_shares,
        memory,
        cgroup_parent,
        blkio_weight,
        blkio_weight_device,
        blkio_device_read_bps,
        blkio_device_write_bps,
        blkio_device_read_iops,
        blkio_device_write_iops,
        cpu_period,
        cpu_quota,
        cpu_realtime_period,
        cpu_realtime_runtime,
        cpuset_cpus,
        cpuset_mems,
        devices,
        device_cgroup_rules,
        device_requests,
        memory_reservation,
        memory_swap,
        memory_swappiness,
        nano_cpus,
        oom_kill_disable,
        init,
        pids_limit,
        ulimits,
        cpu_count,
        cpu_percent,
        io_maximum_iops,
        io_maximum_bandwidth,
        restart_policy: policy,
    } = u;
    let restart_policy = match policy {
        Some(p) if p.name.as_ref().is_some_and(|n| n.as_ref() != "") => Some(restart_policy(Some(p))?),
        _ => None,
    };
    let l = limits(
        spec::Resources {
            cpu_shares,
            memory,
            cgroup_parent,
            blkio_weight,
            blkio_weight_device,
            blkio_device_read_bps,
            blkio_device_write_bps,
            blkio_device_read_iops,
            blkio_device_write_iops,
            cpu_period,
            cpu_quota,
            cpu_realtime_period,
            cpu_realtime_runtime,
            cpuset_cpus,
            cpuset_mems,
            devices,
            device_cgroup_rules,
            device_requests,
            memory_reservation,
            memory_swap,
            memory_swappiness,
            nano_cpus,
            oom_kill_disable,
            init,
            pids_limit,
            ulimits,
            cpu_count,
            cpu_percent,
            io_maximum_iops,
            io_maximum_bandwidth,
        },
        None,
    )?;
    // moby's update leaves these alone without a word; berth says so.
    let r = &l.resources;
    for (name, given) in [
        ("CgroupParent", !l.cgroup_parent.is_empty()),
        ("Devices", !l.devices.is_empty()),
        ("DeviceCgroupRules", !l.device_cgroup_rules.is_empty()),
        ("DeviceRequests", l.device_requests.as_ref().is_some_and(|v| !v.is_empty())),
        ("Init", l.init.is_some()),
        ("BlkioWeightDevice", !r.blkio_weight_device.is_empty()),
        ("BlkioDeviceReadBps", !r.blkio_device_read_bps.is_empty()),
        ("BlkioDeviceWriteBps", !r.blkio_device_write_bps.is_empty()),
        ("BlkioDeviceReadIOps", !r.blkio_device_read_iops.is_empty()),
        ("BlkioDeviceWriteIOps", !r.blkio_device_write_iops.is_empty()),
    ] {
        if given {
            return Err(ApiError::bad(format!("{name} cannot be changed by an update")));
        }
    }
    Ok(berth_engine::Update { resources: l.resources, restart_policy })
}

/// One `--mount`, with Docker's checks of which options go with which type.
fn mount_request(m: w::Mount) -> Result<model::MountRequest, ApiError> {
    let w::Mount {
        target,
        source,
        typ,
        read_only,
        consistency,
        bind_options,
        volume_options,
        image_options,
        tmpfs_options,
    } = m;
    let type_name = typ.map(|t| t.to_string()).unwrap_or_default();
    let kind = match typ {
        Some(w::MountType::BIND) => model::MountKind::Bind,
        Some(w::MountType::VOLUME) => model::MountKind::Volume,
        Some(w::MountType::TMPFS) => model::MountKind::Tmpfs,
        None => return Err(ApiError::bad("invalid mount config: mount type unknown")),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "invalid mount config for type \"{other}\": berth does not support this mount type"
            )))
        }
    };
    let extra = |field: &str| {
        ApiError::bad(format!("invalid mount config for type \"{type_name}\": field {field} must not be specified"))
    };
    match kind {
        _ if image_options.is_some() => return Err(extra("ImageOptions")),
        model::MountKind::Bind if volume_options.is_some() => return Err(extra("VolumeOptions")),
        model::MountKind::Volume if bind_options.is_some() => return Err(extra("BindOptions")),
        model::MountKind::Tmpfs if bind_options.is_some() => return Err(extra("BindOptions")),
        model::MountKind::Tmpfs if volume_options.is_some() => return Err(extra("VolumeOptions")),
        model::MountKind::Bind | model::MountKind::Volume if tmpfs_options.is_some() => {
            return Err(extra("TmpfsOptions"))
        }
        _ => {}
    }
    // Consistency is macOS's; Docker on Linux accepts and ignores every
    // value, and so does the kernel: there is nothing to honour.
    let _ = consistency;
    let w::BindOptions {
        propagation,
        non_recursive,
        create_mountpoint,
        read_only_non_recursive,
        read_only_force_recursive,
    } = bind_options.unwrap_or_default();
    for (name, set) in [
        ("NonRecursive", non_recursive),
        ("ReadOnlyNonRecursive", read_only_non_recursive),
        ("ReadOnlyForceRecursive", read_only_force_recursive),
    ] {
        if set == Some(true) {
            return Err(ApiError::new(
                hyper::StatusCode::NOT_IMPLEMENTED,
                format!("BindOptions.{name}: berth's bind mounts are recursive and read-only as a whole"),
            ));
        }
    }
    let w::VolumeOptions { no_copy, labels, driver_config, subpath } = volume_options.unwrap_or_default();
    let w::DriverConfig { name: driver, options: driver_options } = driver_config.unwrap_or_default();
    let w::TmpfsOptions { size_bytes, mode, options } = tmpfs_options.unwrap_or_default();
    refuse_if(
        options.is_some_and(|o| !o.is_empty()),
        "TmpfsOptions.Options",
        "berth takes a tmpfs's size and mode only",
    )?;
    let tmpfs_mode = match mode {
        Some(m) => Some(u32::try_from(m).map_err(|_| ApiError::bad(format!("invalid tmpfs mode: {m}")))?),
        None => None,
    };
    Ok(model::MountRequest {
        kind,
        source: text(source),
        target: text(target),
        read_only: read_only.unwrap_or(false),
        propagation: propagation.map(|p| p.as_ref().to_owned()).unwrap_or_default(),
        create_mountpoint: create_mountpoint.unwrap_or(false),
        no_copy: no_copy.unwrap_or(false),
        labels: sorted(labels),
        driver: text(driver),
        driver_options: sorted(driver_options),
        tmpfs_size: size_bytes.unwrap_or(0),
        tmpfs_mode,
        subpath: text(subpath),
    })
}

/// An endpoint as create or connect asks for it, `at` its path in the
/// request (for errors). The fields that inspect fills (addresses given
/// out, gateways, ids) are the endpoint's state, not a request, and are
/// read as Docker reads them: not at all.
pub fn endpoint_config(ep: w::EndpointSettings, at: &str) -> Result<model::EndpointConfig, ApiError> {
    let w::EndpointSettings {
        ipam_config,
        links,
        mac_address,
        aliases,
        driver_opts,
        gw_priority,
        network_id,
        endpoint_id: _,
        gateway: _,
        ip_address: _,
        ip_prefix_len: _,
        ipv6_gateway: _,
        global_ipv6_address: _,
        global_ipv6_prefix_len: _,
        dns_names: _,
    } = ep;
    refuse_if(
        gw_priority.is_some_and(|p| p != 0),
        &format!("{at}GwPriority"),
        "berth routes through the first network a container joins",
    )?;
    let w::EndpointIpamConfig { ipv4_address, ipv6_address, link_local_ips } = ipam_config.unwrap_or_default();
    let ipv4_address = match ipv4_address.filter(|s| !s.is_empty()) {
        Some(ip) => Some(ip.parse().map_err(|_| ApiError::bad(format!("invalid IPv4 address: {ip}")))?),
        None => None,
    };
    let ipv6_address = match ipv6_address.filter(|s| !s.is_empty()) {
        Some(ip) => Some(ip.parse().map_err(|_| ApiError::bad(format!("invalid IPv6 address: {ip}")))?),
        None => None,
    };
    let mut link_local = vec![];
    for ip in link_local_ips.unwrap_or_default() {
        match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) if !v4.is_unspecified() => link_local.push(v4),
            Ok(std::net::IpAddr::V6(_)) => {
                return Err(ApiError::bad(format!("LinkLocalIPs {ip}: IPv6 link-local addresses are not supported")))
            }
            _ => return Err(ApiError::bad(format!("invalid link-local IP address: {ip}"))),
        }
    }
    Ok(model::EndpointConfig {
        network_id: text(network_id),
        aliases: aliases.unwrap_or_default(),
        ipv4_address,
        ipv6_address,
        mac_address: mac_address.filter(|m| !m.is_empty()),
        link_local_ips: link_local,
        links: links.unwrap_or_default(),
        driver_opts: sorted(driver_opts),
    })
}

/// A [height, width] pair from the wire; zeros mean "not given".
pub fn console_size<T: Copy + TryInto<u64>>(v: Option<&[T]>) -> Option<(u16, u16)> {
    let side = |x: T| x.try_into().ok().filter(|x: &u64| *x > 0).map(|x| x.min(65535) as u16);
    match v {
        Some([h, w]) => side(*h).zip(side(*w)),
        _ => None,
    }
}

fn health_config(h: spec::HealthConfig) -> model::HealthConfig {
    let spec::HealthConfig { test, interval, timeout, retries, start_period, start_interval } = h;
    model::HealthConfig {
        test: test.unwrap_or_default(),
        interval: interval.unwrap_or(0),
        timeout: timeout.unwrap_or(0),
        start_period: start_period.unwrap_or(0),
        start_interval: start_interval.unwrap_or(0),
        retries: retries.unwrap_or(0),
    }
}

/// The container-wide MAC address is the main network's (moby's
/// handleMACAddressBC).
fn main_mac(
    mac: String,
    network_mode: &str,
    endpoints: &mut BTreeMap<String, model::EndpointConfig>,
) -> Result<(), ApiError> {
    let main = match network_mode {
        "" | "default" => "bridge",
        m if m == "none" || m == "host" || m.starts_with("container:") => {
            return Err(ApiError::bad("conflicting options: mac-address and the network mode"))
        }
        m => m,
    };
    let ep: &mut model::EndpointConfig = endpoints.entry(main.to_owned()).or_default();
    match &ep.mac_address {
        Some(m) if !m.eq_ignore_ascii_case(&mac) => Err(ApiError::bad(
            "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
        )),
        _ => {
            ep.mac_address = Some(mac);
            Ok(())
        }
    }
}

/// `POST /containers/create`'s body as the engine's request.
pub fn create_request(name: Option<String>, r: w::ContainerCreateRequest) -> Result<CreateRequest, ApiError> {
    let w::ContainerCreateRequest { config, host_config, networking_config } = r;
    let w::ContainerConfig { spec: c, mac_address, healthcheck_on_failure_action } = config;
    let spec::ContainerConfig {
        hostname,
        domainname,
        user,
        attach_stdin,
        attach_stdout,
        attach_stderr,
        exposed_ports,
        tty,
        open_stdin,
        stdin_once,
        env,
        cmd,
        healthcheck,
        args_escaped,
        image,
        volumes,
        working_dir,
        entrypoint,
        network_disabled,
        on_build,
        labels,
        stop_signal,
        stop_timeout,
        shell,
    } = c;
    if args_escaped == Some(true) {
        return Err(ApiError::bad("ArgsEscaped is for Windows containers only"));
    }
    let w::HostConfig { spec: h, kernel_memory_tcp } = host_config.unwrap_or_default();
    let spec::HostConfig {
        cpu_shares,
        memory,
        cgroup_parent,
        blkio_weight,
        blkio_weight_device,
        blkio_device_read_bps,
        blkio_device_write_bps,
        blkio_device_read_iops,
        blkio_device_write_iops,
        cpu_period,
        cpu_quota,
        cpu_realtime_period,
        cpu_realtime_runtime,
        cpuset_cpus,
        cpuset_mems,
        devices,
        device_cgroup_rules,
        device_requests,
        memory_reservation,
        memory_swap,
        memory_swappiness,
        nano_cpus,
        oom_kill_disable,
        init,
        pids_limit,
        ulimits,
        cpu_count,
        cpu_percent,
        io_maximum_iops,
        io_maximum_bandwidth,
        binds,
        container_id_file,
        log_config,
        network_mode,
        port_bindings,
        restart_policy: policy,
        auto_remove,
        volume_driver,
        volumes_from,
        mounts,
        console_size: console,
        annotations,
        cap_add,
        cap_drop,
        cgroupns_mode,
        dns,
        dns_options,
        dns_search,
        extra_hosts,
        group_add,
        ipc_mode,
        cgroup,
        links,
        oom_score_adj,
        pid_mode,
        privileged,
        publish_all_ports,
        readonly_rootfs,
        security_opt,
        storage_opt,
        tmpfs,
        uts_mode,
        userns_mode,
        shm_size,
        sysctls,
        runtime,
        isolation,
        masked_paths,
        readonly_paths,
    } = h;
    let l = limits(
        spec::Resources {
            cpu_shares,
            memory,
            cgroup_parent,
            blkio_weight,
            blkio_weight_device,
            blkio_device_read_bps,
            blkio_device_write_bps,
            blkio_device_read_iops,
            blkio_device_write_iops,
            cpu_period,
            cpu_quota,
            cpu_realtime_period,
            cpu_realtime_runtime,
            cpuset_cpus,
            cpuset_mems,
            devices,
            device_cgroup_rules,
            device_requests,
            memory_reservation,
            memory_swap,
            memory_swappiness,
            nano_cpus,
            oom_kill_disable,
            init,
            pids_limit,
            ulimits,
            cpu_count,
            cpu_percent,
            io_maximum_iops,
            io_maximum_bandwidth,
        },
        kernel_memory_tcp,
    )?;
    let restart = restart_policy(policy)?;
    let userns_mode = text(userns_mode);
    // No user namespace remapping is configured, so "private" (Docker's
    // default) and "host" both run in the host's user namespace.
    if !matches!(userns_mode.as_str(), "" | "host" | "private") {
        return Err(ApiError::bad(format!("invalid USER mode: {userns_mode}")));
    }
    if let Some(req) = l.device_requests.as_ref().and_then(|v| v.first()) {
        // As moby with no device driver registered (GPUs need one).
        let driver = req.driver.clone().unwrap_or_default();
        let caps = serde_json::to_string(&req.capabilities).unwrap_or_default();
        return Err(ApiError::bad(format!(
            "DeviceRequests: could not select device driver {driver:?} with capabilities: {caps}"
        )));
    }
    let auto_remove = auto_remove.unwrap_or(false);
    if auto_remove && restart.name != model::RestartName::No {
        return Err(ApiError::bad("conflicting options: cannot specify both --restart and --rm"));
    }
    if let Some(g) = cgroup.filter(|g| !g.is_empty()) {
        return Err(ApiError::bad(format!("Cgroup {g:?}: berth does not run a container in another's cgroup")));
    }
    let mut network_mode = text(network_mode);
    if network_disabled == Some(true) {
        // As moby: a container without networking has only loopback.
        if !matches!(network_mode.as_str(), "" | "default" | "none") {
            return Err(ApiError::bad(format!("conflicting options: NetworkDisabled and network mode {network_mode}")));
        }
        network_mode = "none".into();
    }
    let health_on_failure = healthcheck_on_failure_action
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|e: String| ApiError::bad(format!("HealthcheckOnFailureAction: {e}")))?;
    let mut endpoints = BTreeMap::new();
    let spec::NetworkingConfig { endpoints_config } = networking_config.unwrap_or_default();
    for (name, ep) in endpoints_config.unwrap_or_default() {
        let ep = endpoint_config(ep, &format!("NetworkingConfig.EndpointsConfig.{name}."))?;
        endpoints.insert(name, ep);
    }
    let mac = mac_address.filter(|m| !m.is_empty());
    if let Some(mac) = mac.clone() {
        main_mac(mac, &network_mode, &mut endpoints)?;
    }
    let config = model::RunConfig {
        hostname: text(hostname),
        domainname: text(domainname),
        user: String::new(),
        env: env.unwrap_or_default(),
        cmd: vec![],
        entrypoint: vec![],
        working_dir: String::new(),
        tty: tty.unwrap_or(false),
        open_stdin: open_stdin.unwrap_or(false),
        stdin_once: stdin_once.unwrap_or(false),
        attach_stdin: attach_stdin.unwrap_or(false),
        attach_stdout: attach_stdout.unwrap_or(false),
        attach_stderr: attach_stderr.unwrap_or(false),
        labels: sorted(labels),
        stop_signal: stop_signal.filter(|s| !s.is_empty()),
        stop_timeout,
        image: text(image),
        exposed_ports: exposed_ports.unwrap_or_default(),
        volumes: volumes.unwrap_or_default(),
        healthcheck: healthcheck.map(health_config),
        shell: shell.unwrap_or_default(),
        mac_address: mac.unwrap_or_default(),
        on_build: on_build.unwrap_or_default(),
        health_on_failure,
    };
    let mut mount_requests = vec![];
    for m in mounts.unwrap_or_default() {
        mount_requests.push(mount_request(m)?);
    }
    let port_bindings = port_bindings
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let binds = v
                .unwrap_or_default()
                .into_iter()
                .map(|w::PortBinding { host_ip, host_port }| model::PortBinding {
                    host_ip: text(host_ip),
                    host_port: text(host_port),
                })
                .collect();
            (k, binds)
        })
        .collect();
    let spec::HostConfigLogConfig { typ: log_driver, config: log_options } = log_config.unwrap_or_default();
    let oom_score_adj = i32::try_from(oom_score_adj.unwrap_or(0))
        .map_err(|_| ApiError::bad("OomScoreAdj: out of range (-1000 to 1000)"))?;
    let host = model::HostConfig {
        binds: binds.unwrap_or_default(),
        resources: l.resources,
        cap_add: cap_add.unwrap_or_default(),
        cap_drop: cap_drop.unwrap_or_default(),
        privileged: privileged.unwrap_or(false),
        readonly_rootfs: readonly_rootfs.unwrap_or(false),
        tmpfs: sorted(tmpfs),
        init: l.init.unwrap_or(false),
        auto_remove,
        restart_policy: restart,
        extra_hosts: extra_hosts.unwrap_or_default(),
        dns: dns.unwrap_or_default(),
        dns_search: dns_search.unwrap_or_default(),
        dns_options: dns_options.unwrap_or_default(),
        security_opt: security_opt.unwrap_or_default(),
        shm_size: shm_size.unwrap_or(0),
        oom_score_adj,
        sysctls: sorted(sysctls),
        group_add: group_add.unwrap_or_default(),
        userns_mode,
        network_mode,
        port_bindings,
        publish_all_ports: publish_all_ports.unwrap_or(false),
        log_config: model::LogConfig { driver: text(log_driver), options: sorted(log_options) },
        console_size: console_size(console.as_deref()),
        mounts: mount_requests,
        volumes_from: volumes_from.unwrap_or_default(),
        volume_driver: text(volume_driver),
        pid_mode: text(pid_mode),
        ipc_mode: text(ipc_mode),
        uts_mode: text(uts_mode),
        cgroupns_mode: cgroupns_mode.map(|m| m.as_ref().to_owned()).unwrap_or_default(),
        runtime: text(runtime),
        isolation: isolation.map(|i| i.as_ref().to_owned()).unwrap_or_default(),
        devices: l.devices,
        device_cgroup_rules: l.device_cgroup_rules,
        cgroup_parent: l.cgroup_parent,
        links: links.unwrap_or_default(),
        annotations: sorted(annotations),
        masked_paths,
        readonly_paths,
        storage_opt: sorted(storage_opt),
        container_id_file: text(container_id_file),
    };
    Ok(CreateRequest {
        id: None,
        name,
        config,
        host,
        endpoints,
        entrypoint: entrypoint.map(|e| e.into_iter().filter(|s| !s.is_empty()).collect()),
        cmd,
        working_dir: working_dir.filter(|s| !s.is_empty()),
        user: user.filter(|s| !s.is_empty()),
        build_step: false,
        pod_sandbox: false,
        cri_log_path: None,
        netns_path: None,
    })
}

/// `POST /commit`'s Config: the fields an image's config keeps, merged
/// over the container's as moby's commit merges them. The rest describe
/// a running container, not an image, and are refused when given.
pub fn commit_config(c: w::ContainerConfig, r: &mut berth_engine::CommitRequest) -> Result<(), ApiError> {
    let w::ContainerConfig { spec: c, mac_address, healthcheck_on_failure_action } = c;
    let spec::ContainerConfig {
        hostname,
        domainname,
        user,
        attach_stdin,
        attach_stdout,
        attach_stderr,
        exposed_ports,
        tty,
        open_stdin,
        stdin_once,
        env,
        cmd,
        healthcheck,
        args_escaped,
        image,
        volumes,
        working_dir,
        entrypoint,
        network_disabled,
        on_build,
        labels,
        stop_signal,
        stop_timeout,
        shell,
    } = c;
    let nonempty = |s: &Option<String>| s.as_ref().is_some_and(|s| !s.is_empty());
    for (name, set) in [
        ("Hostname", nonempty(&hostname)),
        ("Domainname", nonempty(&domainname)),
        ("AttachStdin", attach_stdin == Some(true)),
        ("AttachStdout", attach_stdout == Some(true)),
        ("AttachStderr", attach_stderr == Some(true)),
        ("Tty", tty == Some(true)),
        ("OpenStdin", open_stdin == Some(true)),
        ("StdinOnce", stdin_once == Some(true)),
        ("ArgsEscaped", args_escaped == Some(true)),
        ("Image", nonempty(&image)),
        ("NetworkDisabled", network_disabled == Some(true)),
        ("StopTimeout", stop_timeout.is_some()),
        ("MacAddress", nonempty(&mac_address)),
        ("HealthcheckOnFailureAction", nonempty(&healthcheck_on_failure_action)),
    ] {
        refuse_if(set, name, "an image's config does not keep this; set it when the container is created")?;
    }
    r.user = user.filter(|s| !s.is_empty());
    r.env = env.filter(|e| !e.is_empty());
    r.cmd = cmd.filter(|c| !c.is_empty());
    r.entrypoint = entrypoint;
    r.working_dir = working_dir.filter(|s| !s.is_empty());
    r.labels = labels.map(|l| l.into_iter().collect());
    r.exposed_ports = exposed_ports.unwrap_or_default();
    r.volumes = volumes.unwrap_or_default();
    r.healthcheck = healthcheck.map(health_config);
    r.stop_signal = stop_signal.filter(|s| !s.is_empty());
    r.shell = shell.filter(|s| !s.is_empty());
    r.on_build = on_build.filter(|s| !s.is_empty());
    Ok(())
}
