//! `berth stats`: each container's usage computed from its stats stream
//! as the docker CLI computes it (CPU % over the host's CPU time between
//! two readings, memory without the inactive page cache), printed once
//! with `--no-stream` or redrawn every second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api_types::spec::ContainerCpuStats;
use berth_api_types::{ContainerSummary, StatsResponse};
use berth_client::{Body, Client, Query};
use berth_core::units::{bytes_size, human_size_with_precision};
use serde_json::{json, Value};

use crate::cli::StatsArgs;
use crate::format::{print_out, short_id, Format};
use crate::{CliError, Result};

/// One row of the table, in the numbers the columns are made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpu_percent: f64,
    pub memory: f64,
    pub memory_limit: f64,
    pub memory_percent: f64,
    pub net_rx: f64,
    pub net_tx: f64,
    pub block_read: f64,
    pub block_write: f64,
    pub pids: u64,
}

/// The docker CLI's arithmetic over one reading.
pub fn usage(s: &StatsResponse) -> Usage {
    let total = |c: &Option<ContainerCpuStats>| {
        c.as_ref().and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0) as f64
    };
    let system = |c: &Option<ContainerCpuStats>| c.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0) as f64;
    let cpu_delta = total(&s.cpu_stats) - total(&s.precpu_stats);
    let system_delta = system(&s.cpu_stats) - system(&s.precpu_stats);
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let cpus = match cpu.online_cpus {
        Some(n) if n > 0 => f64::from(n),
        _ => cpu.cpu_usage.and_then(|u| u.percpu_usage).map_or(0, |p| p.len()) as f64,
    };
    let cpu_percent = if system_delta > 0.0 && cpu_delta > 0.0 { cpu_delta / system_delta * cpus * 100.0 } else { 0.0 };
    let m = s.memory_stats.clone().unwrap_or_default();
    let stat = |k: &str| m.stats.as_ref().and_then(|st| st.get(k)).copied();
    let usage = m.usage.unwrap_or(0);
    // Page cache that can be dropped is not counted: v1's
    // total_inactive_file, else v2's inactive_file.
    let cache = match stat("total_inactive_file") {
        Some(v) if v < usage => v,
        Some(_) => 0,
        None => stat("inactive_file").filter(|v| *v < usage).unwrap_or(0),
    };
    let memory = (usage - cache) as f64;
    let memory_limit = m.limit.unwrap_or(0) as f64;
    let memory_percent = if memory_limit > 0.0 { memory / memory_limit * 100.0 } else { 0.0 };
    let (mut net_rx, mut net_tx) = (0.0, 0.0);
    for n in s.networks.iter().flat_map(|n| n.values()) {
        net_rx += n.rx_bytes.unwrap_or(0) as f64;
        net_tx += n.tx_bytes.unwrap_or(0) as f64;
    }
    let (mut block_read, mut block_write) = (0.0, 0.0);
    let io = s.blkio_stats.as_ref().and_then(|b| b.io_service_bytes_recursive.as_ref());
    for e in io.into_iter().flatten() {
        match e.op.as_deref().unwrap_or("").to_ascii_lowercase().as_str() {
            "read" => block_read += e.value.unwrap_or(0) as f64,
            "write" => block_write += e.value.unwrap_or(0) as f64,
            _ => {}
        }
    }
    Usage {
        cpu_percent,
        memory,
        memory_limit,
        memory_percent,
        net_rx,
        net_tx,
        block_read,
        block_write,
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}

/// A row as the `--format` fields name it.
fn row(container: &str, s: &StatsResponse, u: &Usage, no_trunc: bool) -> Value {
    let full = s.id.clone().unwrap_or_default();
    let id = if no_trunc { full } else { short_id(&full) };
    json!({
        "Container": container,
        "ID": id,
        "Name": s.name.as_deref().unwrap_or("").trim_start_matches('/'),
        "CPUPerc": format!("{:.2}%", u.cpu_percent),
        "MemUsage": format!("{} / {}", bytes_size(u.memory), bytes_size(u.memory_limit)),
        "MemPerc": format!("{:.2}%", u.memory_percent),
        "NetIO": format!("{} / {}", human_size_with_precision(u.net_rx, 3), human_size_with_precision(u.net_tx, 3)),
        "BlockIO": format!(
            "{} / {}",
            human_size_with_precision(u.block_read, 3),
            human_size_with_precision(u.block_write, 3)
        ),
        "PIDs": u.pids.to_string(),
    })
}

fn header() -> Value {
    json!({
        "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

const COLUMNS: &[&str] = &["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"];

/// The latest row of each container, by the order it was asked for in.
type Rows = Arc<Mutex<BTreeMap<(usize, String), Value>>>;

/// Follows one container's stream into `rows` until it ends; the first
/// error is returned (for `--no-stream` and named containers).
fn follow(c: &Client, key: (usize, String), stream: bool, no_trunc: bool, rows: &Rows) -> Result<()> {
    let q = Query::new().add("stream", if stream { "true" } else { "false" });
    let mut r = c.call("GET", &format!("/containers/{}/stats", key.1), &q, Body::None)?;
    let mut line = Vec::new();
    while r.next_line(&mut line)? {
        let s: StatsResponse = serde_json::from_slice(&line)?;
        let v = row(&key.1, &s, &usage(&s), no_trunc);
        if let Ok(mut m) = rows.lock() {
            m.insert(key.clone(), v);
        }
    }
    Ok(())
}

fn running(c: &Client, all: bool) -> Result<Vec<String>> {
    let list: Vec<ContainerSummary> = c.get("/containers/json", &Query::new().flag("all", all))?;
    Ok(list.into_iter().filter_map(|s| s.id).collect())
}

pub fn stats(c: &Client, a: StatsArgs) -> Result<()> {
    let format = Format::parse(a.format.as_deref())?;
    let named = !a.containers.is_empty();
    let rows: Rows = Arc::default();
    if a.no_stream {
        let ids = if named { a.containers.clone() } else { running(c, a.all)? };
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let rows = rows.clone();
                    s.spawn(move || follow(c, (i, id.clone()), false, a.no_trunc, &rows))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(Err(CliError::Partial))).collect()
        });
        let failed = results.iter().filter(|r| r.is_err()).count();
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            say!("{e}");
        }
        if failed < ids.len() || ids.is_empty() {
            print(&format, &rows)?;
        }
        return if failed > 0 { Err(CliError::Partial) } else { Ok(()) };
    }
    // Streaming: one thread per container; without names the running set
    // is listed again every second so new containers join the table.
    let mut started: Vec<String> = Vec::new();
    loop {
        let ids = if named { a.containers.clone() } else { running(c, a.all)? };
        for (i, id) in ids.iter().enumerate() {
            if started.contains(id) {
                continue;
            }
            started.push(id.clone());
            let (rows, client, no_trunc) = (rows.clone(), c.clone(), a.no_trunc);
            let key = (if named { i } else { usize::MAX }, id.clone());
            std::thread::spawn(move || {
                let r = follow(&client, key.clone(), true, no_trunc, &rows);
                if let Ok(mut m) = rows.lock() {
                    m.remove(&key);
                }
                if let Err(e) = r {
                    say!("{e}");
                }
            });
        }
        if !named {
            started.retain(|s| ids.contains(s));
        }
        std::thread::sleep(Duration::from_secs(1));
        print_out("\x1b[2J\x1b[H")?;
        print(&format, &rows)?;
        if named && rows.lock().map(|m| m.is_empty()).unwrap_or(true) {
            return Err(CliError::Partial);
        }
    }
}

fn print(format: &Format, rows: &Rows) -> Result<()> {
    let list: Vec<Value> = rows.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
    format.print(COLUMNS, &header(), &list)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_as_the_docker_cli_computes_it() {
        let s: StatsResponse = serde_json::from_value(json!({
            "id": "0123456789abcdef",
            "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000u64}, "system_cpu_usage": 20_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000u64}, "system_cpu_usage": 18_000_000_000u64},
            "memory_stats": {"usage": 10_485_760, "limit": 67_108_864, "stats": {"total_inactive_file": 2_097_152}},
            "pids_stats": {"current": 4},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 1_000_000},
                {"major": 8, "minor": 0, "op": "Total", "value": 1_004_096}
            ]},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 500, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0}}
        }))
        .unwrap();
        let u = usage(&s);
        assert!((u.cpu_percent - 100.0).abs() < 1e-9, "{}", u.cpu_percent);
        assert_eq!(u.memory, 8_388_608.0);
        assert!((u.memory_percent - 12.5).abs() < 1e-9);
        assert_eq!((u.block_read, u.block_write), (4096.0, 1_000_000.0));
        let r = row("web", &s, &u, false);
        assert_eq!(r["CPUPerc"], "100.00%");
        assert_eq!(r["MemUsage"], "8MiB / 64MiB");
        assert_eq!(r["MemPerc"], "12.50%");
        assert_eq!(r["NetIO"], "1.5kB / 500B");
        assert_eq!(r["BlockIO"], "4.1kB / 1MB");
        assert_eq!(r["PIDs"], "4");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["ID"], "0123456789ab");
    }

    #[test]
    fn a_first_reading_has_no_cpu_percent() {
        let s: StatsResponse = serde_json::from_value(json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 10, "online_cpus": 1},
        }))
        .unwrap();
        assert_eq!(usage(&s).cpu_percent, 100.0 * 0.5);
        assert_eq!(usage(&StatsResponse::default()).cpu_percent, 0.0);
    }
}
