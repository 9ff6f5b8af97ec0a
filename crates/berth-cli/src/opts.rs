//! `run` and `create` flags to the create request, as the docker CLI
//! builds it (cli/command/container/opts.go): units, env files, binds,
//! tmpfs, ulimits, the restart policy, and which streams to attach.

use std::collections::HashMap;

use berth_api_types::spec::{
    self, ContainerUpdateBody as Resources, DeviceMapping, HealthConfig, HostConfigLogConfig as LogConfig,
    ResourcesBlkioWeightDevice as WeightDevice, ResourcesUlimits as Ulimit, RestartPolicy, ThrottleDevice,
};
use berth_api_types::{
    ContainerConfig, ContainerCreateRequest, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding,
};
use berth_core::units::ram_in_bytes;

use crate::cli::{ResourceArgs, RunArgs};
use crate::CliError;

fn bad(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

/// A duration flag as Docker's CLI parses it (Go's `time.ParseDuration`),
/// in nanoseconds; negative ones are refused.
fn duration(flag: &str, v: &Option<String>) -> Result<i64, CliError> {
    let Some(s) = v.as_deref() else { return Ok(0) };
    let (negative, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let n = berth_core::units::parse_go_duration(body)
        .ok_or_else(|| bad(format!("invalid argument {s:?} for \"{flag}\" flag: time: invalid duration {s:?}")))?;
    if negative && n != 0 {
        return Err(bad(format!("{flag} cannot be negative")));
    }
    Ok(n)
}

/// The `--health-*` flags as Docker's CLI turns them into a HealthConfig.
fn healthcheck(a: &RunArgs) -> Result<Option<HealthConfig>, CliError> {
    let nonzero = |v: i64| (v != 0).then_some(v);
    let h = HealthConfig {
        test: a.health_cmd.clone().filter(|c| !c.is_empty()).map(|c| vec!["CMD-SHELL".to_owned(), c]),
        interval: nonzero(duration("--health-interval", &a.health_interval)?),
        timeout: nonzero(duration("--health-timeout", &a.health_timeout)?),
        start_period: nonzero(duration("--health-start-period", &a.health_start_period)?),
        start_interval: nonzero(duration("--health-start-interval", &a.health_start_interval)?),
        retries: a.health_retries.filter(|r| *r != 0),
    };
    if h.retries.is_some_and(|r| r < 0) {
        return Err(bad("--health-retries cannot be negative"));
    }
    let given = h != HealthConfig::default();
    if a.no_healthcheck {
        if given {
            return Err(bad("--no-healthcheck conflicts with --health-* options"));
        }
        return Ok(Some(HealthConfig { test: Some(vec!["NONE".to_owned()]), ..Default::default() }));
    }
    Ok(given.then_some(h))
}

pub(crate) fn bytes(flag: &str, v: &Option<String>) -> Result<i64, CliError> {
    match v.as_deref() {
        None => Ok(0),
        Some("-1") => Ok(-1),
        Some(s) => {
            ram_in_bytes(s).ok_or_else(|| bad(format!("invalid argument {s:?} for \"{flag}\" flag: invalid size")))
        }
    }
}

/// `-e K=V`, `-e K` (from this environment, dropped when unset) and
/// `--env-file` lines, in order.
pub fn env(env: &[String], files: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| bad(format!("open {f}: {e}")))?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            push_env(&mut out, l)?;
        }
    }
    for e in env {
        push_env(&mut out, e)?;
    }
    Ok(out)
}

fn push_env(out: &mut Vec<String>, e: &str) -> Result<(), CliError> {
    if e.starts_with('=') {
        return Err(bad(format!("invalid environment variable: {e}")));
    }
    if e.contains('=') {
        out.push(e.to_owned());
    } else if let Ok(v) = std::env::var(e) {
        out.push(format!("{e}={v}"));
    }
    Ok(())
}

fn key_values(flag: &str, list: &[String]) -> Result<Option<HashMap<String, String>>, CliError> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut m = HashMap::new();
    for kv in list {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k.is_empty() {
            return Err(bad(format!("invalid argument {kv:?} for \"{flag}\" flag")));
        }
        m.insert(k.to_owned(), v.to_owned());
    }
    Ok(Some(m))
}

/// `--sysctl name=value`, each checked as Docker's CLI checks it
/// (`opts.ValidateSysctl`): only the IPC and network namespaces' sysctls
/// pass; the daemon checks them again against the container's namespaces.
fn sysctls(list: &[String]) -> Result<Option<HashMap<String, String>>, CliError> {
    for kv in list {
        let name = kv.split_once('=').map(|(k, _)| k);
        if !name.is_some_and(berth_core::sysctl::namespaced) {
            return Err(bad(format!("invalid argument {kv:?} for \"--sysctl\" flag: sysctl '{kv}' is not allowed")));
        }
    }
    key_values("--sysctl", list)
}

/// `name=soft[:hard]`.
pub fn ulimit(s: &str) -> Result<Ulimit, CliError> {
    let e = || bad(format!("invalid argument {s:?} for \"--ulimit\" flag: want name=soft[:hard]"));
    let (name, vals) = s.split_once('=').ok_or_else(e)?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    Ok(Ulimit {
        name: Some(name.to_owned()),
        soft: Some(soft.parse().map_err(|_| e())?),
        hard: Some(hard.parse().map_err(|_| e())?),
    })
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn restart(s: &str) -> Result<RestartPolicy, CliError> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let maximum_retry_count = match (name, count) {
        (_, "") => 0,
        ("on-failure", n) => {
            n.parse().map_err(|_| bad(format!("invalid restart policy: maximum retry count {n:?}")))?
        }
        _ => {
            return Err(bad(format!(
                "invalid restart policy format: maximum retry count is only valid for on-failure: {s}"
            )))
        }
    };
    let name: spec::RestartPolicyNameEnum = name
        .parse()
        .ok()
        .filter(|_| !name.is_empty())
        .ok_or_else(|| bad(format!("invalid restart policy format: {s}")))?;
    Ok(RestartPolicy { name: Some(name), maximum_retry_count: Some(maximum_retry_count) })
}

/// `--security-opt seccomp=<file>` sends the file's content, as the docker
/// CLI does; the daemon never reads client paths.
fn security_opts(list: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for o in list {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o, ""));
        if k == "seccomp" && v != "unconfined" && !v.is_empty() && !v.trim_start().starts_with('{') {
            let text =
                std::fs::read_to_string(v).map_err(|e| bad(format!("opening seccomp profile ({v}) failed: {e}")))?;
            let compact: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(format!("parsing seccomp profile ({v}) failed: {e}")))?;
            out.push(format!("seccomp={compact}"));
        } else {
            out.push(o.clone());
        }
    }
    Ok(out)
}

fn some<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The resource flags as the API's Resources (an update's body).
pub fn resources(a: &ResourceArgs) -> Result<Resources, CliError> {
    let nano_cpus = match a.cpus {
        Some(c) if !(0.0..=1e6).contains(&c) => {
            return Err(bad(format!("invalid argument \"{c}\" for \"--cpus\" flag")))
        }
        Some(c) => Some((c * 1e9).round() as i64),
        None => None,
    };
    let size = |flag: &str, v: &Option<String>| -> Result<Option<i64>, CliError> {
        Ok(if v.is_some() { Some(bytes(flag, v)?) } else { None })
    };
    Ok(Resources {
        memory: size("--memory", &a.memory)?,
        memory_swap: size("--memory-swap", &a.memory_swap)?,
        memory_reservation: size("--memory-reservation", &a.memory_reservation)?,
        nano_cpus,
        cpu_shares: a.cpu_shares,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        pids_limit: a.pids_limit,
        blkio_weight: a.blkio_weight,
        memory_swappiness: a.memory_swappiness,
        cpu_realtime_period: a.cpu_rt_period,
        cpu_realtime_runtime: a.cpu_rt_runtime,
        ..Default::default()
    })
}

/// A create's HostConfig with the limits of `r` in its Resources fields,
/// which have the same names and types in both (the spec composes
/// HostConfig from Resources).
fn with_resources(h: spec::HostConfig, r: Resources) -> Result<spec::HostConfig, CliError> {
    let mut v = serde_json::to_value(h)?;
    if let (Some(m), serde_json::Value::Object(given)) = (v.as_object_mut(), serde_json::to_value(r)?) {
        m.extend(given);
    }
    Ok(serde_json::from_value(v)?)
}

/// `--device host[:container][:perms]`, as Docker's CLI parses it.
fn device(spec: &str) -> Result<DeviceMapping, CliError> {
    let mode = |m: &str| !m.is_empty() && m.len() <= 3 && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, inside, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, m] if mode(m) => (*h, *h, *m),
        [h, c] => (*h, *c, "rwm"),
        [h, c, m] => (*h, *c, *m),
        _ => return Err(bad(format!("invalid device specification: {spec}"))),
    };
    if host.is_empty() || !mode(perms) {
        return Err(bad(format!("invalid device specification: {spec}")));
    }
    Ok(DeviceMapping {
        path_on_host: Some(host.to_owned()),
        path_in_container: Some(inside.to_owned()),
        cgroup_permissions: Some(perms.to_owned()),
    })
}

/// `/dev/x:N`: a device path and what follows the colon.
fn device_value(spec: &str) -> Result<(&str, &str), CliError> {
    match spec.split_once(':') {
        Some((p, v)) if p.starts_with("/dev/") && !v.contains(':') => Ok((p, v)),
        _ => Err(bad(format!("bad format for path: {spec}"))),
    }
}

fn weight_device(spec: &str) -> Result<WeightDevice, CliError> {
    let (path, w) = device_value(spec)?;
    let weight = w
        .parse::<u16>()
        .ok()
        .filter(|w| *w == 0 || (10..=1000).contains(w))
        .ok_or_else(|| bad(format!("invalid weight for device: {spec}")))?;
    Ok(WeightDevice { path: Some(path.to_owned()), weight: Some(usize::from(weight)) })
}

/// A bps limit takes a size (`1mb`), an iops limit a number.
fn throttle(spec: &str, bytes: bool) -> Result<ThrottleDevice, CliError> {
    let (path, v) = device_value(spec)?;
    let rate = if bytes { ram_in_bytes(v).filter(|n| *n >= 0) } else { v.parse::<i64>().ok().filter(|n| *n >= 0) };
    let rate = rate.ok_or_else(|| {
        bad(format!(
            "invalid rate for device: {spec}. The correct format is <device-path>:<number>{}. Number must be a positive integer.{}",
            if bytes { "[<unit>]" } else { "" },
            if bytes { " Unit is optional and can be kb, mb, or gb" } else { "" }
        ))
    })?;
    Ok(ThrottleDevice { path: Some(path.to_owned()), rate: Some(rate) })
}

fn all<T>(v: &[String], f: impl Fn(&str) -> Result<T, CliError>) -> Result<Option<Vec<T>>, CliError> {
    Ok(some(v.iter().map(|s| f(s)).collect::<Result<Vec<T>, CliError>>()?))
}

/// `lo-hi` or `n` as an inclusive range of ports.
fn port_range(s: &str, spec: &str) -> Result<(u16, u16), CliError> {
    let e = || bad(format!("invalid port specification: {spec:?}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let n = |x: &str| x.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(e);
    let (lo, hi) = (n(a)?, n(b)?);
    if hi < lo {
        return Err(e());
    }
    Ok((lo, hi))
}

/// `-p [ip:][host_port[-end]:]port[-end][/proto]` as container port keys
/// and their bindings, as the docker CLI expands them (go-connections'
/// nat.ParsePortSpec): equal ranges pair up, a container port with a host
/// range takes one port of the range.
pub fn publish(spec: &str) -> Result<Vec<(String, PortBinding)>, CliError> {
    let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad(format!("invalid proto: {proto}")));
    }
    let parts: Vec<&str> = if rest.starts_with('[') {
        return Err(bad(format!("IPv6 host addresses are not supported: {spec}")));
    } else {
        rest.split(':').collect()
    };
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(bad(format!("invalid port specification: {spec:?}"))),
    };
    if !ip.is_empty() && ip.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(bad(format!("invalid IP address: {ip}")));
    }
    let (clo, chi) = port_range(ctr, spec)?;
    let host_range = if host.is_empty() { None } else { Some(port_range(host, spec)?) };
    let mut out = Vec::new();
    for (i, p) in (clo..=chi).enumerate() {
        let host_port = match host_range {
            None => String::new(),
            Some((hlo, hhi)) if clo == chi => {
                if hlo == hhi {
                    hlo.to_string()
                } else {
                    format!("{hlo}-{hhi}")
                }
            }
            Some((hlo, hhi)) => {
                if u32::from(hhi - hlo) != u32::from(chi - clo) {
                    return Err(bad(format!(
                        "invalid ranges specified for container and host Ports: {ctr} and {host}"
                    )));
                }
                (hlo + i as u16).to_string()
            }
        };
        out.push((format!("{p}/{proto}"), PortBinding { host_ip: Some(ip.to_owned()), host_port: Some(host_port) }));
    }
    Ok(out)
}

/// The create request for `run`/`create`, and the name.
pub fn create_request(a: &RunArgs, console: Option<(u16, u16)>) -> Result<ContainerCreateRequest, CliError> {
    let (image, cmd) = a.args.split_first().ok_or_else(|| bad("\"run\" requires at least 1 argument"))?;
    let attach: Vec<String> = a.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    for s in &attach {
        if !matches!(s.as_str(), "stdin" | "stdout" | "stderr") {
            return Err(bad(format!(
                "invalid argument {s:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
            )));
        }
    }
    if a.detach && !attach.is_empty() {
        return Err(bad("conflicting options: cannot specify both --attach and --detach"));
    }
    let (stdin, stdout, stderr) = if a.detach {
        (false, false, false)
    } else if attach.is_empty() {
        (a.interactive, true, true)
    } else {
        (
            attach.iter().any(|s| s == "stdin"),
            attach.iter().any(|s| s == "stdout"),
            attach.iter().any(|s| s == "stderr"),
        )
    };
    let mut tmpfs = HashMap::new();
    for t in &a.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(path.to_owned(), opts.to_owned());
    }
    let mut ulimits = Vec::new();
    for u in &a.ulimit {
        ulimits.push(ulimit(u)?);
    }
    let log_config =
        LogConfig { typ: Some(a.log_driver.clone().unwrap_or_default()), config: key_values("--log-opt", &a.log_opt)? };
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed: Vec<String> = vec![];
    let mut expose = |key: String| {
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    };
    for p in &a.publish {
        for (key, b) in publish(p)? {
            expose(key.clone());
            port_bindings.entry(key).or_insert_with(|| Some(vec![])).get_or_insert_with(Vec::new).push(b);
        }
    }
    for e in &a.expose {
        let (r, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (lo, hi) = port_range(r, e)?;
        for p in lo..=hi {
            expose(format!("{p}/{proto}"));
        }
    }
    let network = a.network.clone().unwrap_or_default();
    let user_defined = !(network.is_empty()
        || matches!(network.as_str(), "bridge" | "default" | "host" | "none")
        || network.starts_with("container:"));
    if (a.ip.is_some() || a.ip6.is_some() || !a.network_alias.is_empty()) && !user_defined {
        return Err(bad("--ip, --ip6 and --network-alias need a user-defined --network"));
    }
    // As Docker's CLI: on a user network, --link is the endpoint's.
    let ep_links = if user_defined { a.link.clone() } else { vec![] };
    let networking_config =
        if a.ip.is_some() || !a.network_alias.is_empty() || !a.link_local_ip.is_empty() || !ep_links.is_empty() {
            let ipam = (a.ip.is_some() || a.ip6.is_some() || !a.link_local_ip.is_empty()).then(|| EndpointIpamConfig {
                ipv4_address: a.ip.clone(),
                ipv6_address: a.ip6.clone(),
                link_local_ips: some(a.link_local_ip.clone()),
            });
            let ep = EndpointSettings {
                ipam_config: ipam,
                aliases: some(a.network_alias.clone()),
                links: some(ep_links),
                ..Default::default()
            };
            let key = if network.is_empty() { "bridge".to_owned() } else { network.clone() };
            Some(NetworkingConfig { endpoints_config: Some(HashMap::from([(key, ep)])) })
        } else {
            None
        };
    let (binds, volumes) = crate::mounts::split_volumes(&a.volume);
    let mut mounts = vec![];
    for m in &a.mount {
        mounts.push(crate::mounts::parse_mount(m)?);
    }
    let restart_policy = a.restart.as_deref().map(restart).transpose()?;
    let restarts = restart_policy.as_ref().and_then(|p| p.name).is_some_and(|n| n != spec::RestartPolicyNameEnum::NO);
    if a.rm && restarts {
        return Err(bad("conflicting options: cannot specify both --restart and --rm"));
    }
    let res = Resources {
        oom_kill_disable: a.oom_kill_disable.then_some(true),
        ulimits: some(ulimits),
        devices: all(&a.device, device)?,
        device_cgroup_rules: some(a.device_cgroup_rule.clone()),
        cgroup_parent: a.cgroup_parent.clone(),
        blkio_weight_device: all(&a.blkio_weight_device, weight_device)?,
        blkio_device_read_bps: all(&a.device_read_bps, |s| throttle(s, true))?,
        blkio_device_write_bps: all(&a.device_write_bps, |s| throttle(s, true))?,
        blkio_device_read_iops: all(&a.device_read_iops, |s| throttle(s, false))?,
        blkio_device_write_iops: all(&a.device_write_iops, |s| throttle(s, false))?,
        init: a.init.then_some(true),
        restart_policy,
        ..resources(&a.res)?
    };
    let shm_size = if a.shm_size.is_some() { Some(bytes("--shm-size", &a.shm_size)?) } else { None };
    let host = spec::HostConfig {
        mounts: some(mounts),
        volumes_from: some(a.volumes_from.clone()),
        volume_driver: a.volume_driver.clone(),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        publish_all_ports: a.publish_all.then_some(true),
        binds: some(binds),
        log_config: Some(log_config),
        network_mode: Some(network),
        auto_remove: a.rm.then_some(true),
        cap_add: some(a.cap_add.clone()),
        cap_drop: some(a.cap_drop.clone()),
        dns: some(a.dns.clone()),
        dns_options: some(a.dns_option.clone()),
        dns_search: some(a.dns_search.clone()),
        extra_hosts: some(a.add_host.clone()),
        group_add: some(a.group_add.clone()),
        oom_score_adj: a.oom_score_adj.map(i64::from),
        privileged: a.privileged.then_some(true),
        readonly_rootfs: a.read_only.then_some(true),
        security_opt: some(security_opts(&a.security_opt)?),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        userns_mode: a.userns.clone(),
        pid_mode: a.pid.clone(),
        ipc_mode: a.ipc.clone(),
        uts_mode: a.uts.clone(),
        cgroupns_mode: match &a.cgroupns {
            Some(m) => Some(m.parse().map_err(|_| bad(format!("invalid cgroup namespace mode: {m}")))?),
            None => None,
        },
        runtime: a.runtime.clone(),
        isolation: match &a.isolation {
            Some(i) => Some(i.parse().map_err(|_| bad(format!("invalid isolation: {i}")))?),
            None => None,
        },
        shm_size,
        sysctls: sysctls(&a.sysctl)?,
        console_size: console.map(|(h, w)| vec![usize::from(h), usize::from(w)]),
        links: (!user_defined).then(|| some(a.link.clone())).flatten(),
        annotations: key_values("--annotation", &a.annotation)?,
        storage_opt: key_values("--storage-opt", &a.storage_opt)?,
        ..Default::default()
    };
    let host = HostConfig { spec: with_resources(host, res)?, kernel_memory_tcp: None };
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        // `--entrypoint ""` clears the image's entrypoint.
        if e.is_empty() {
            vec![]
        } else {
            vec![e.clone()]
        }
    });
    let spec = spec::ContainerConfig {
        hostname: a.hostname.clone(),
        domainname: a.domainname.clone(),
        user: a.user.clone(),
        attach_stdin: Some(stdin),
        attach_stdout: Some(stdout),
        attach_stderr: Some(stderr),
        tty: Some(a.tty),
        open_stdin: Some(a.interactive),
        stdin_once: Some(a.interactive && stdin),
        env: some(env(&a.env, &a.env_file)?),
        cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
        image: Some(image.clone()),
        working_dir: a.workdir.clone(),
        entrypoint,
        labels: key_values("--label", &a.label)?,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        healthcheck: healthcheck(a)?,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..Default::default()
    };
    Ok(ContainerCreateRequest {
        config: ContainerConfig {
            spec,
            mac_address: a.mac_address.clone(),
            healthcheck_on_failure_action: a.health_on_failure.clone(),
        },
        host_config: Some(host),
        networking_config,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(restart("on-failure:3").unwrap().maximum_retry_count, Some(3));
        assert!(restart("always:3").is_err());
        assert!(restart("sometimes").is_err());
        let u = ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (Some(1024), Some(2048)));
        assert_eq!(ulimit("nproc=10").unwrap().hard, Some(10));
        assert!(ulimit("nofile").is_err());
        let a = RunArgs {
            args: vec!["busybox".into(), "echo".into(), "-n".into()],
            res: ResourceArgs { memory: Some("64m".into()), cpus: Some(0.5), ..Default::default() },
            interactive: true,
            env: vec!["A=1".into()],
            entrypoint: Some(String::new()),
            ..RunArgs::default()
        };
        let c = create_request(&a, None).unwrap();
        let h = c.host_config.unwrap().spec;
        assert_eq!(h.memory, Some(64 << 20));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        let c = c.config.spec;
        assert_eq!((c.attach_stdin, c.stdin_once, c.open_stdin), (Some(true), Some(true), Some(true)));
        assert_eq!(c.cmd, Some(vec!["echo".into(), "-n".into()]));
        assert_eq!(c.entrypoint, Some(vec![]));
        assert_eq!(c.env, Some(vec!["A=1".into()]));
        let bad = RunArgs {
            args: vec!["x".into()],
            res: ResourceArgs { memory: Some("lots".into()), ..Default::default() },
            ..RunArgs::default()
        };
        assert!(create_request(&bad, None).is_err());
    }

    #[test]
    fn sysctls_outside_the_container_s_namespaces_are_refused() {
        let s = |v: &[&str]| sysctls(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let e = s(&["kernel.core_pattern=|/tmp/x"]).unwrap_err().to_string();
        assert!(e.contains("sysctl 'kernel.core_pattern=|/tmp/x' is not allowed"), "{e}");
        assert!(s(&["net.ipv4.ip_forward"]).is_err());
        assert!(s(&["kernel.core_uses_pid=1"]).is_err());
        let m = s(&["net.ipv4.ip_forward=1", "kernel.shmmax=100"]).unwrap().unwrap();
        assert_eq!(m["kernel.shmmax"], "100");
    }

    #[test]
    fn publish_specs_expand_as_dockers() {
        let one = |s: &str| publish(s).unwrap();
        let pb = |ip: &str, port: &str| PortBinding { host_ip: Some(ip.into()), host_port: Some(port.into()) };
        assert_eq!(one("80"), [("80/tcp".into(), pb("", ""))]);
        let b = one("127.0.0.1:8080:80/udp");
        assert_eq!(b[0].0, "80/udp");
        assert_eq!(b[0].1, pb("127.0.0.1", "8080"));
        let r = one("8000-8001:80-81");
        assert_eq!(r.len(), 2);
        assert_eq!((r[1].0.as_str(), r[1].1.host_port.as_deref()), ("81/tcp", Some("8001")));
        assert_eq!(one("8000-8010:80")[0].1.host_port.as_deref(), Some("8000-8010"));
        assert_eq!(one("127.0.0.1::80")[0].1.host_port.as_deref(), Some(""));
        for bad in ["", "x", "1:2:3:4", "80/icmp", "0", "8000-8002:80-81", "nothere:80:80", "90-80"] {
            assert!(publish(bad).is_err(), "{bad}");
        }
    }
}
