//! Wire models to the engine's types and back, in one place.

use berth_api_types as w;
use berth_engine::model::{self, Container, Status};

/// One stats reading on the wire; `pre` is the reading before it, whose
/// CPU counters make `precpu_stats`. Every field is named, with the value
/// dockerd sends when it has none (see [`stats_json`] for its nulls).
pub fn stats(s: &berth_engine::stats::Sample, pre: Option<&berth_engine::stats::Sample>) -> w::StatsResponse {
    let zero_cpu = w::spec::ContainerCpuStats {
        cpu_usage: Some(w::spec::ContainerCpuUsage {
            total_usage: Some(0),
            percpu_usage: None,
            usage_in_kernelmode: Some(0),
            usage_in_usermode: Some(0),
        }),
        system_cpu_usage: None,
        online_cpus: None,
        throttling_data: Some(w::spec::ContainerThrottlingData {
            periods: Some(0),
            throttled_periods: Some(0),
            throttled_time: Some(0),
        }),
    };
    let live = s.live;
    let c = &s.cgroup;
    let entries = |v: &[berth_cgroups::BlkioEntry]| {
        live.then(|| {
            v.iter()
                .map(|e| w::spec::ContainerBlkioStatEntry {
                    major: Some(e.major),
                    minor: Some(e.minor),
                    op: Some(e.op.clone()),
                    value: Some(e.value),
                })
                .collect()
        })
    };
    // berth reads bytes and operations; the other lists are there, empty,
    // as dockerd sends them on cgroup v1.
    let none_kept = || live.then(Vec::new);
    // As Docker: no limit, or one above the host's memory, shows the host's.
    let limit = c.memory.limit.filter(|l| s.host_memory == 0 || *l <= s.host_memory).unwrap_or(s.host_memory);
    let networks = (live && !s.networks.is_empty()).then(|| {
        s.networks
            .iter()
            .map(|(n, d)| {
                let st = w::spec::ContainerNetworkStats {
                    rx_bytes: Some(d.rx_bytes),
                    rx_packets: Some(d.rx_packets),
                    rx_errors: Some(d.rx_errors),
                    rx_dropped: Some(d.rx_dropped),
                    tx_bytes: Some(d.tx_bytes),
                    tx_packets: Some(d.tx_packets),
                    tx_errors: Some(d.tx_errors),
                    tx_dropped: Some(d.tx_dropped),
                    // Windows' fields.
                    endpoint_id: None,
                    instance_id: None,
                };
                (n.clone(), st)
            })
            .collect()
    });
    w::StatsResponse {
        id: Some(s.id.clone()),
        name: Some(s.name.clone()),
        // Sent by API 1.46 and later only; berth serves the versions before.
        os_type: None,
        read: Some(s.read.clone()),
        cpu_stats: Some(if live { cpu_stats(s) } else { zero_cpu.clone() }),
        memory_stats: Some(if live {
            w::spec::ContainerMemoryStats {
                usage: Some(c.memory.usage),
                max_usage: (c.memory.max_usage > 0).then_some(c.memory.max_usage),
                stats: Some(c.memory.stat.clone().into_iter().collect()),
                failcnt: (c.memory.failcnt > 0).then_some(c.memory.failcnt),
                limit: Some(limit),
                // Windows' fields.
                commitbytes: None,
                commitpeakbytes: None,
                privateworkingset: None,
            }
        } else {
            w::spec::ContainerMemoryStats::default()
        }),
        networks,
        pids_stats: Some(if live {
            w::spec::ContainerPidsStats { current: Some(c.pids.current), limit: c.pids.limit }
        } else {
            w::spec::ContainerPidsStats::default()
        }),
        blkio_stats: Some(w::spec::ContainerBlkioStats {
            io_service_bytes_recursive: entries(&c.blkio.service_bytes),
            io_serviced_recursive: entries(&c.blkio.serviced),
            io_queue_recursive: none_kept(),
            io_service_time_recursive: none_kept(),
            io_wait_time_recursive: none_kept(),
            io_merged_recursive: none_kept(),
            io_time_recursive: none_kept(),
            sectors_recursive: none_kept(),
        }),
        num_procs: Some(0),
        // Windows' counters; dockerd sends an empty map on Linux.
        storage_stats: Some(w::spec::ContainerStorageStats::default()),
        preread: Some(pre.map_or_else(|| model::ZERO_TIME.to_owned(), |p| p.read.clone())),
        precpu_stats: Some(match pre.filter(|p| p.live) {
            Some(p) => cpu_stats(p),
            None => zero_cpu,
        }),
    }
}

/// A stats reading's JSON, with the nulls dockerd sends for the block
/// I/O lists of a container that does not run.
pub fn stats_json(s: &w::StatsResponse) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(b) = v.get_mut("blkio_stats") {
        w::fill_nulls(
            b,
            &[
                "io_service_bytes_recursive",
                "io_serviced_recursive",
                "io_queue_recursive",
                "io_service_time_recursive",
                "io_wait_time_recursive",
                "io_merged_recursive",
                "io_time_recursive",
                "sectors_recursive",
            ],
        );
    }
    v
}

fn cpu_stats(s: &berth_engine::stats::Sample) -> w::spec::ContainerCpuStats {
    let c = &s.cgroup.cpu;
    w::spec::ContainerCpuStats {
        cpu_usage: Some(w::spec::ContainerCpuUsage {
            total_usage: Some(c.total_ns),
            percpu_usage: (!c.per_cpu_ns.is_empty()).then(|| c.per_cpu_ns.clone()),
            usage_in_kernelmode: Some(c.system_ns),
            usage_in_usermode: Some(c.user_ns),
        }),
        system_cpu_usage: Some(s.system_ns),
        online_cpus: Some(s.online_cpus),
        throttling_data: Some(w::spec::ContainerThrottlingData {
            periods: Some(c.periods),
            throttled_periods: Some(c.throttled_periods),
            throttled_time: Some(c.throttled_ns),
        }),
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
