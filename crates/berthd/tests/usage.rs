//! Usage and changes of running containers: stats (API stream and
//! one-shot, `berth stats`, `docker stats`), update of limits and restart
//! policy, `system df`, and the docker CLI on wait conditions, events and
//! ps filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{assert_clean, can_run, stderr, Daemon};
use serde_json::Value;

/// A control file of the container's cgroup on the host: the v1 controller's
/// directory, else the v2 one.
fn cgroup_file(d: &Daemon, id: &str, controller: &str, v1: &str, v2: &str) -> String {
    let rel = format!("{}/{id}", d.cgroup.trim_start_matches('/'));
    let v1p = format!("/sys/fs/cgroup/{controller}/{rel}/{v1}");
    std::fs::read_to_string(&v1p)
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{rel}/{v2}")))
        .unwrap_or_else(|e| panic!("{v1p}: {e}"))
        .trim()
        .to_owned()
}

/// The first `n` lines of a streamed GET, read as they come.
fn stream_lines(d: &Daemon, path: &str, n: usize) -> Vec<Value> {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: berth\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut out = vec![];
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        // Chunk sizes and the head are not JSON.
        if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
            if v.is_object() {
                out.push(v);
            }
        }
    }
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn json(d: &Daemon, path: &str) -> Value {
    let (code, body) = d.http("GET", path, b"");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn stats_follow_the_cgroup_and_update_changes_it() {
    if !can_run("stats and update") {
        return;
    }
    let d = Daemon::start("usage-stats");
    d.load_busybox();
    // A busy loop held to half a CPU, with 20 MiB in its /dev/shm.
    let id = d
        .bok(&[
            "run",
            "-d",
            "--name",
            "busy",
            "-m",
            "64m",
            "--pids-limit",
            "40",
            "--cpus",
            "0.5",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=20 2>/dev/null; while :; do :; done",
        ])
        .trim()
        .to_owned();
    std::thread::sleep(Duration::from_millis(1500));

    let line = d.bok(&["stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}", "busy"]);
    let f: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(f[0], "busy", "{line}");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    assert!((10.0..=70.0).contains(&cpu), "a loop held to half a CPU: {line}");
    let (used, limit) = f[2].split_once(" / ").unwrap();
    assert_eq!(limit, "64MiB", "{line}");
    assert!(used.ends_with("MiB") && used.trim_end_matches("MiB").parse::<f64>().unwrap() >= 19.0, "{line}");
    assert!(f[3].parse::<u32>().unwrap() >= 1, "{line}");
    // The default table, from berth and from the docker CLI.
    let table = d.bok(&["stats", "--no-stream"]);
    assert!(table.starts_with("CONTAINER ID   NAME"), "{table}");
    assert!(table.contains(&id[..12]), "{table}");
    let o = d.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}"]);
    assert!(o.starts_with("busy ") && o.contains("/ 64MiB"), "{o}");

    // The API: a stream carries the reading before as precpu_stats.
    let lines = stream_lines(&d, "/containers/busy/stats", 2);
    assert_eq!(lines[0]["preread"], "0001-01-01T00:00:00Z");
    assert_eq!(lines[1]["preread"], lines[0]["read"]);
    assert_eq!(lines[1]["precpu_stats"]["cpu_usage"]["total_usage"], lines[0]["cpu_stats"]["cpu_usage"]["total_usage"]);
    let s = &lines[1];
    assert_eq!(s["name"], "/busy");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["pids_stats"]["limit"], 40);
    assert_eq!(s["memory_stats"]["limit"], 64 << 20);
    assert!(s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0);
    assert!(s["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(s["cpu_stats"]["online_cpus"].as_u64().unwrap() >= 1);
    assert!(s["blkio_stats"]["io_service_bytes_recursive"].is_array(), "{s}");
    // Without a stream: one reading; one-shot does not wait for a second.
    let one = json(&d, "/containers/busy/stats?stream=false&one-shot=true");
    assert_eq!(one["preread"], "0001-01-01T00:00:00Z");
    assert!(one["precpu_stats"]["system_cpu_usage"].is_null());
    let two = json(&d, "/containers/busy/stats?stream=false");
    assert!(two["precpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert_eq!(d.http("GET", "/containers/nosuch/stats?stream=false", b"").0, 404);
    assert_eq!(d.http("GET", "/containers/busy/stats?stream=true&one-shot=true", b"").0, 400);

    // update: limits written to the running container's cgroup and kept.
    assert_eq!(
        d.bok(&[
            "update",
            "--memory",
            "48m",
            "--memory-swap",
            "96m",
            "--pids-limit",
            "20",
            "--cpus",
            "0.25",
            "--restart",
            "on-failure:2",
            "busy",
        ]),
        "busy\n"
    );
    assert_eq!(cgroup_file(&d, &id, "memory", "memory.limit_in_bytes", "memory.max"), (48u64 << 20).to_string());
    assert_eq!(cgroup_file(&d, &id, "pids", "pids.max", "pids.max"), "20");
    let quota = cgroup_file(&d, &id, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(quota.starts_with("25000"), "{quota}");
    let o = d.bok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "busy"]);
    assert!(o.trim().ends_with("/ 48MiB"), "{o}");
    let hc = d.bok(&["inspect", "-f", "{{json .HostConfig}}", "busy"]);
    let hc: Value = serde_json::from_str(&hc).unwrap();
    assert_eq!(hc["Memory"], 48 << 20);
    assert_eq!(hc["MemorySwap"], 96 << 20);
    assert_eq!(hc["PidsLimit"], 20);
    assert_eq!(hc["NanoCpus"], 250_000_000);
    assert_eq!(hc["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(hc["RestartPolicy"]["MaximumRetryCount"], 2);
    // The docker CLI's update, and the limit surviving a restart.
    assert_eq!(d.ok(&["update", "--cpu-shares", "512", "busy"]), "busy\n");
    assert_eq!(cgroup_file(&d, &id, "cpu", "cpu.shares", "cpu.weight"), "512");
    d.bok(&["restart", "-t", "0", "busy"]);
    let id_now = d.bok(&["inspect", "-f", "{{.Id}}", "busy"]);
    assert_eq!(id_now.trim(), id);
    assert_eq!(cgroup_file(&d, &id, "memory", "memory.limit_in_bytes", "memory.max"), (48u64 << 20).to_string());
    assert_eq!(cgroup_file(&d, &id, "cpu", "cpu.shares", "cpu.weight"), "512");

    // Refusals, with Docker's messages; nothing changes.
    let o = d.berth(&["update", "--memory", "200m", "busy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("update the memoryswap at the same time"), "{}", stderr(&o));
    let o = d.docker(&["update", "--memory", "1m", "busy"]);
    assert!(stderr(&o).contains("Minimum memory limit allowed is 6MB"), "{}", stderr(&o));
    let o = d.berth(&["update", "busy"]);
    assert!(stderr(&o).contains("you must provide one or more flags"), "{}", stderr(&o));
    assert!(!d.berth(&["update", "--cpus", "0.5", "nosuch"]).status.success());
    d.bok(&["create", "--rm", "--name", "once", "busybox", "true"]);
    let o = d.berth(&["update", "--restart", "always", "once"]);
    assert!(stderr(&o).contains("AutoRemove is enabled"), "{}", stderr(&o));
    let (code, _) = d.http("POST", "/containers/busy/update", b"{\"Memory\": ");
    assert_eq!(code, 400);
    assert_eq!(cgroup_file(&d, &id, "memory", "memory.limit_in_bytes", "memory.max"), (48u64 << 20).to_string());

    // A stopped container reads as zeros.
    d.bok(&["kill", "busy"]);
    let o = d.bok(&["stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", "busy"]);
    assert_eq!(o, "0.00% 0B / 0B 0\n");
    d.bok(&["rm", "-f", "busy", "once"]);
    assert_clean(&d);
}

#[test]
fn disk_usage_counts_images_layers_and_containers() {
    if !can_run("system df") {
        return;
    }
    let d = Daemon::start("usage-df");
    d.load_busybox();
    d.bok(&["run", "--name", "writer", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /blob"]);
    d.bok(&["commit", "writer", "blobbed:1"]);
    d.bok(&["run", "-d", "--name", "idle", "--init", "busybox", "sleep", "600"]);
    let df = json(&d, "/system/df");
    let images = df["Images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{df}");
    let by_tag = |t: &str| images.iter().find(|i| i["RepoTags"][0] == t).unwrap();
    let (base, blob) = (by_tag("busybox:latest"), by_tag("blobbed:1"));
    // The base layer is shared by both images; the blob layer is not.
    assert_eq!(base["SharedSize"], base["Size"]);
    assert_eq!(blob["SharedSize"], base["Size"]);
    let unique = blob["Size"].as_i64().unwrap() - base["Size"].as_i64().unwrap();
    assert!(unique >= 300_000, "{df}");
    assert_eq!(df["LayersSize"].as_i64().unwrap(), blob["Size"].as_i64().unwrap());
    assert_eq!(base["Containers"], 2);
    assert_eq!(blob["Containers"], 0);
    let containers = df["Containers"].as_array().unwrap();
    let writer = containers.iter().find(|c| c["Names"][0] == "/writer").unwrap();
    assert!(writer["SizeRw"].as_i64().unwrap() >= 300_000, "{writer}");
    assert_eq!(df["Volumes"], serde_json::json!([]));
    let only = json(&d, "/system/df?type=image");
    assert!(only["Containers"].is_null() && only["Images"].is_array(), "{only}");
    assert_eq!(d.http("GET", "/system/df?type=bogus", b"").0, 400);

    let rows = d.bok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"]);
    assert_eq!(rows, "Images 2 1\nContainers 2 1\nLocal Volumes 0 0\nBuild Cache 0 0\n");
    let table = d.bok(&["system", "df"]);
    assert!(table.starts_with("TYPE "), "{table}");
    let containers_row = table.lines().find(|l| l.starts_with("Containers")).unwrap();
    // All of the container bytes belong to the stopped writer: reclaimable.
    assert!(containers_row.ends_with("(100%)"), "{table}");
    let v = d.bok(&["system", "df", "-v"]);
    assert!(v.contains("Images space usage:") && v.contains("blobbed") && v.contains("writer"), "{v}");
    let o = d.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(o.starts_with("Images 2\nContainers 2\n"), "{o}");
    let o = d.ok(&["system", "df", "-v"]);
    assert!(o.contains("blobbed") && o.contains("idle"), "{o}");
    d.bok(&["rm", "-f", "writer", "idle"]);
    assert_clean(&d);
}

#[test]
fn docker_cli_waits_events_and_ps_filters() {
    if !can_run("wait conditions, events and filters") {
        return;
    }
    let d = Daemon::start("usage-wait");
    d.load_busybox();
    let t0 = unix_now();
    let id =
        d.ok(&["create", "--name", "waiter", "--label", "role=w", "busybox", "sh", "-c", "exit 7"]).trim().to_owned();
    // not-running holds at once for a created container.
    let (code, body) = d.http("POST", "/containers/waiter/wait?condition=not-running", b"");
    assert_eq!((code, body.contains("\"StatusCode\":0")), (200, true), "{body}");
    let (code, body) = d.http("POST", "/containers/waiter/wait?condition=sometime", b"");
    assert_eq!(code, 400, "{body}");
    // next-exit and removed wait, each for its own event.
    let sock = d.socket();
    let wait = |cond: &'static str| {
        let sock = sock.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            write!(s, "POST /containers/waiter/wait?condition={cond} HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
            let _ = tx.send(out);
        });
        rx
    };
    let next = wait("next-exit");
    let removed = wait("removed");
    std::thread::sleep(Duration::from_millis(500));
    assert!(next.try_recv().is_err() && removed.try_recv().is_err(), "waits hold until the container runs");
    d.ok(&["start", "waiter"]);
    let got = next.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(got.contains("\"StatusCode\":7"), "{got}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(removed.try_recv().is_err(), "removed holds after the exit");
    assert_eq!(d.ok(&["wait", "waiter"]), "7\n");

    // ps filters through the docker CLI, with before and since.
    d.ok(&["run", "-d", "--name", "mid", "--label", "role=m", "busybox", "sleep", "600"]);
    d.ok(&["run", "--name", "last", "busybox", "true"]);
    let names = |args: &[&str]| {
        let mut a = vec!["ps", "-a", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = d.ok(&a).lines().map(str::to_owned).collect();
        v.sort();
        v.join(",")
    };
    assert_eq!(names(&["--filter", "status=exited"]), "last,waiter");
    assert_eq!(names(&["--filter", "exited=7"]), "waiter");
    assert_eq!(names(&["--filter", "label=role"]), "mid,waiter");
    assert_eq!(names(&["--filter", "label=role=m"]), "mid");
    assert_eq!(names(&["--filter", "before=mid"]), "waiter");
    assert_eq!(names(&["--filter", "since=mid"]), "last");
    assert_eq!(names(&["--filter", "since=waiter", "--filter", "before=last"]), "mid");
    assert_eq!(names(&["--filter", &format!("id={}", &id[..10])]), "waiter");
    assert_eq!(names(&["--filter", "ancestor=busybox", "--filter", "status=running"]), "mid");
    assert_eq!(names(&["--filter", "name=wait", "--filter", "name=mi"]), "mid,waiter");
    assert_eq!(d.ok(&["ps", "--format", "{{.Names}}"]), "mid\n");
    let o = d.docker(&["ps", "--filter", "colour=blue"]);
    assert!(stderr(&o).contains("invalid filter 'colour'"), "{}", stderr(&o));
    let o = d.docker(&["ps", "--filter", "before=nosuch"]);
    assert!(stderr(&o).contains("No such container: nosuch"), "{}", stderr(&o));

    // Removal ends the last wait; events tell the whole story in order.
    d.ok(&["rm", "waiter"]);
    let got = removed.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(got.contains("\"StatusCode\":7"), "{got}");
    d.ok(&["update", "--cpu-shares", "256", "mid"]);
    d.ok(&["rm", "-f", "mid", "last"]);
    let until = (unix_now() + 1).to_string();
    let since = t0.to_string();
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=waiter",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(ev, "create\nstart\ndie\ndestroy\n");
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=update",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(ev, "mid\n");
    assert_clean(&d);
}
