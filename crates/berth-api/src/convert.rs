//! Wire models to the engine's types and back, in one place.

use berth_api_types as w;
use berth_engine::model::{self, Container, Status};

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
    let mut out: Vec<w::PortSummary> = crate::inspect::bindings(c)
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
    let networks = crate::inspect::endpoints(c);
    let mounts = crate::inspect::mount_points(c);
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
