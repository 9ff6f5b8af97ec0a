//! Docker API parity items programs rely on: swarm and plugin endpoints,
//! exec's TERM, RestartCount, stop's events, GraphDriver data, cp errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn swarm_endpoints_answer_as_an_inactive_swarm() {
    if !can_run("swarm endpoints") {
        return;
    }
    let d = Daemon::start("swarm");
    for (m, p) in [
        ("GET", "/swarm"),
        ("GET", "/services"),
        ("GET", "/nodes"),
        ("GET", "/secrets"),
        ("GET", "/configs"),
        ("GET", "/tasks"),
        ("POST", "/swarm/init"),
        ("GET", "/v1.41/services/x"),
    ] {
        let (s, b) = d.http(m, p, b"");
        assert_eq!(s, 503, "{m} {p}: {b}");
        assert!(b.contains("This node is not part of a swarm"), "{b}");
    }
    let (s, b) = d.http("GET", "/plugins", b"");
    assert_eq!((s, b.trim()), (200, "[]"));
    let state = d.ok(&["info", "-f", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(state.trim(), "inactive");
    assert_clean(&d);
}

#[test]
fn exec_terminals_restart_counts_stop_events_and_inspect() {
    if !can_run("parity items") {
        return;
    }
    let d = Daemon::start("parity");
    d.load_busybox();
    // exec -t sets TERM, as run -t does.
    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    let out = d.ok(&["exec", "-t", &id, "sh", "-c", "echo TERM=$TERM"]);
    assert!(out.contains("TERM=xterm"), "{out:?}");
    let out = d.ok(&["exec", &id, "sh", "-c", "echo TERM=$TERM"]);
    assert_eq!(out.trim(), "TERM=", "no terminal, no TERM");
    // GraphDriver.Data names the overlay's directories, which exist.
    let data = d.ok(&["inspect", "-f", "{{json .GraphDriver.Data}}", &id]);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    for k in ["LowerDir", "UpperDir", "WorkDir", "MergedDir"] {
        let v = data[k].as_str().unwrap_or_else(|| panic!("{k} missing: {data}"));
        for p in v.split(':') {
            assert!(std::path::Path::new(p).is_dir(), "{k} {p}");
        }
    }
    // stop: kill (the stop signal), die, stop, in that order.
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    d.ok(&["stop", "-t", "1", &id]);
    let t1 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let ev = d.ok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &t1.to_string(),
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = ev.lines().collect();
    let at = |a: &str| actions.iter().position(|x| x.starts_with(a)).unwrap_or_else(|| panic!("no {a} in {actions:?}"));
    assert!(at("kill") < at("die") && at("die") < at("stop"), "{actions:?}");
    // A start by the user sets RestartCount back to 0.
    let r = d.ok(&["run", "-d", "--restart", "on-failure:3", "busybox", "false"]).trim().to_owned();
    let t = std::time::Instant::now();
    while d.ok(&["inspect", "-f", "{{.State.Status}}", &r]).trim() != "exited" {
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(d.ok(&["inspect", "-f", "{{.RestartCount}}", &r]).trim(), "3");
    d.ok(&["start", &r]);
    let count = d.ok(&["inspect", "-f", "{{.RestartCount}}", &r]);
    assert!(count.trim() == "0" || count.trim() == "1", "{count}");
    // cp names the container it looked in.
    let o = d.docker(&["cp", &format!("{id}:/nonexistent"), "-"]);
    assert!(stderr(&o).contains(&format!("Could not find the file /nonexistent in container {id}")), "{}", stderr(&o));
    d.ok(&["rm", "-f", &id, &r]);
    assert_clean(&d);
}

#[test]
fn a_restarted_container_gets_its_address_back() {
    if !can_run("addresses across restarts") {
        return;
    }
    let d = Daemon::start("sameip");
    d.load_busybox();
    let net = format!("n{}", std::process::id());
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("{}.{}.{}.0/24", d.subnet[0], d.subnet[1] ^ 0x80, d.subnet[2]),
        &net,
    ]);
    let ip = |name: &str| {
        d.ok(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"), name])
            .trim()
            .to_owned()
    };
    d.ok(&["run", "-d", "--name", "app", "--network", &net, "busybox", "sleep", "1000"]);
    let first = ip("app");
    assert!(!first.is_empty());
    // Right away (its old veth may still be going) and after others came.
    d.ok(&["restart", "-t", "0", "app"]);
    assert_eq!(ip("app"), first, "after restart");
    d.ok(&["stop", "-t", "0", "app"]);
    d.ok(&["run", "-d", "--name", "other", "--network", &net, "busybox", "sleep", "1000"]);
    assert_ne!(ip("other"), first, "another container took the stopped one's address");
    d.ok(&["start", "app"]);
    assert_eq!(ip("app"), first, "after stop, another start, and start");
    d.ok(&["rm", "-f", "app", "other"]);
    d.ok(&["network", "rm", &net]);
    assert_clean(&d);
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().display().to_string()
}

#[test]
fn namespace_modes_are_honoured_and_shown() {
    if !can_run("namespace modes") {
        return;
    }
    let d = Daemon::start("nsmodes");
    d.load_busybox();
    let ns = |args: &[&str], kind: &str| {
        let path = format!("/proc/self/ns/{kind}");
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "readlink", &path]);
        d.ok(&a).trim().to_owned()
    };
    // Host modes share the caller's namespace; the defaults do not.
    for (flag, kind) in [("--pid", "pid"), ("--ipc", "ipc"), ("--uts", "uts"), ("--cgroupns", "cgroup")] {
        assert_eq!(ns(&[flag, "host"], kind), host_ns(kind), "{flag} host");
    }
    for kind in ["pid", "ipc", "uts"] {
        assert_ne!(ns(&[], kind), host_ns(kind), "default {kind}");
    }
    assert_ne!(ns(&["--cgroupns", "private"], "cgroup"), host_ns("cgroup"));
    // With the host's PID namespace, pid 1 is the host's init.
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(d.ok(&["run", "--rm", "--pid", "host", "busybox", "cat", "/proc/1/comm"]), comm);
    let host_name = nix_hostname();
    assert_eq!(d.ok(&["run", "--rm", "--uts", "host", "busybox", "hostname"]).trim(), host_name);
    // --ipc none has no /dev/shm.
    let mounts = d.ok(&["run", "--rm", "--ipc", "none", "busybox", "cat", "/proc/mounts"]);
    assert!(!mounts.contains(" /dev/shm "), "{mounts}");
    // Another container's PID namespace, named by name, recorded by id.
    let a = d.ok(&["run", "-d", "--name", "pidsrc", "busybox", "sleep", "1000"]).trim().to_owned();
    let b = d.ok(&["run", "-d", "--pid", "container:pidsrc", "busybox", "sleep", "1000"]).trim().to_owned();
    let of = |id: &str| d.ok(&["exec", id, "readlink", "/proc/self/ns/pid"]).trim().to_owned();
    assert_eq!(of(&a), of(&b));
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.PidMode}}", &b]).trim(), format!("container:{a}"));
    let shown =
        d.ok(&["inspect", "-f", "{{.HostConfig.IpcMode}} {{.HostConfig.UTSMode}} {{.HostConfig.CgroupnsMode}}", &a]);
    assert_eq!(shown.trim(), "private  host");
    // Refused, each with its reason.
    let refused: [(&str, &str); 5] = [
        (r#""PidMode":"bogus""#, "invalid PID mode: bogus"),
        (r#""IpcMode":"weird""#, "invalid IPC mode: weird"),
        (r#""IpcMode":"container:nosuch""#, "No such container: nosuch"),
        (r#""UTSMode":"x""#, "invalid UTS mode: x"),
        (r#""PidMode":"container:nosuch""#, "No such container: nosuch"),
    ];
    for (field, want) in refused {
        let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{{field}}}}}"#);
        let (s, msg) = d.http("POST", "/containers/create", body.as_bytes());
        assert_eq!(s, 400, "{field}: {msg}");
        assert!(msg.contains(want), "{field}: {msg}");
    }
    let (s, msg) = d.http(
        "POST",
        "/containers/create",
        br#"{"Image":"busybox","Hostname":"h","Cmd":["true"],"HostConfig":{"UTSMode":"host"}}"#,
    );
    assert_eq!(s, 400, "{msg}");
    let (s, msg) = d.http(
        "POST",
        "/containers/create",
        br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"IpcMode":"host","Sysctls":{"kernel.shmmax":"1"}}}"#,
    );
    assert_eq!(s, 400, "an IPC sysctl in the host's IPC namespace: {msg}");
    // Another container's IPC: its namespace and its /dev/shm, when it
    // made them shareable; a private one is not lent.
    let donor = d
        .ok(&["run", "-d", "--ipc", "shareable", "busybox", "sh", "-c", "echo shared > /dev/shm/x; exec sleep 1000"])
        .trim()
        .to_owned();
    let t = std::time::Instant::now();
    while !d.docker(&["exec", &donor, "test", "-e", "/dev/shm/x"]).status.success() {
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let joiner = d
        .ok(&["run", "-d", "--ipc", &format!("container:{}", &donor[..12]), "busybox", "sleep", "1000"])
        .trim()
        .to_owned();
    assert_eq!(d.ok(&["exec", &joiner, "cat", "/dev/shm/x"]), "shared\n");
    let ipc = |id: &str| d.ok(&["exec", id, "readlink", "/proc/self/ns/ipc"]).trim().to_owned();
    assert_eq!(ipc(&donor), ipc(&joiner));
    assert_ne!(ipc(&donor), host_ns("ipc"));
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.IpcMode}}", &joiner]).trim(), format!("container:{donor}"));
    let o = d.docker(&["run", "--rm", "--ipc", &format!("container:{a}"), "busybox", "true"]);
    assert!(stderr(&o).contains("non-shareable IPC"), "{}", stderr(&o));
    // The shareable /dev/shm goes with its container's run.
    let shm = d.dir.join("data/containers").join(&donor).join("shm");
    let mounted = || std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&format!(" {} ", shm.display()));
    assert!(mounted(), "no shareable /dev/shm at {}", shm.display());
    d.ok(&["rm", "-f", &joiner]);
    d.ok(&["stop", "-t", "0", &donor]);
    assert!(!mounted(), "the shareable /dev/shm outlived its container's run");
    d.ok(&["rm", "-f", &a, &b, &donor]);
    assert_clean(&d);
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

#[test]
fn a_container_runs_under_the_runtime_it_names() {
    if !can_run("runtimes") {
        return;
    }
    let mut d = Daemon::start("runtimes");
    std::fs::write(d.dir.join("daemon.json"), br#"{"runtimes": {"myrunc": {"path": "/usr/sbin/runc"}}}"#).unwrap();
    d.crash();
    d.spawn();
    d.load_busybox();
    let id = d
        .ok(&["run", "-d", "--runtime", "myrunc", "--isolation", "default", "busybox", "sleep", "1000"])
        .trim()
        .to_owned();
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.HostConfig.Runtime}} {{.HostConfig.Isolation}}", &id]).trim(),
        "myrunc default"
    );
    // runc itself knows it: its state, in runc's format, under berth's root.
    let root = d.dir.join("run/runtime");
    let o =
        std::process::Command::new("/usr/sbin/runc").arg("--root").arg(&root).args(["state", &id]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#""status": "running""#));
    assert_eq!(d.ok(&["exec", &id, "echo", "hi"]), "hi\n");
    let def = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", &def]).trim(), "berth");
    let info = d.ok(&["info", "-f", "{{.DefaultRuntime}} {{len .Runtimes}}"]);
    assert_eq!(info.trim(), "berth 3");
    for (field, want) in [
        (r#""Runtime":"nosuch""#, "unknown or invalid runtime name: nosuch"),
        (r#""Isolation":"hyperv""#, "linux only supports 'default'"),
    ] {
        let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{{field}}}}}"#);
        let (s, msg) = d.http("POST", "/containers/create", body.as_bytes());
        assert_eq!(s, 400, "{field}: {msg}");
        assert!(msg.contains(want), "{msg}");
    }
    d.ok(&["rm", "-f", &id, &def]);
    assert_clean(&d);
}

#[test]
fn container_prune_counts_the_space_it_frees() {
    if !can_run("container prune") {
        return;
    }
    let d = Daemon::start("prunespace");
    d.load_busybox();
    d.ok(&["run", "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=2"]);
    let (s, b) = d.http("POST", "/containers/prune", b"");
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["ContainersDeleted"].as_array().map(Vec::len), Some(1), "{b}");
    assert!(v["SpaceReclaimed"].as_u64().unwrap() >= 2 << 20, "{b}");
    assert_clean(&d);
}

#[test]
fn log_levels_follow_dockerd_s() {
    if !can_run("log levels") {
        return;
    }
    let d = Daemon::start_with("loglevel", &["--log-level", "debug"]);
    d.load_busybox();
    let id = d.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "100"]).trim().to_owned();
    d.ok(&["rm", "-f", &id]);
    let log = std::fs::read_to_string(d.dir.join("daemon.log")).unwrap();
    assert!(log.contains("API listen on"), "{log}");
    assert!(log.contains("Calling POST /v") && log.contains("/containers/create"), "no request lines: {log}");
    let started = log.lines().find(|l| l.contains("container started")).unwrap_or_else(|| panic!("{log}"));
    assert!(started.contains(&id) && started.contains("DEBUG"), "{started}");
    assert!(log.lines().any(|l| l.contains("container exited") && l.contains(&id)), "{log}");
    assert_clean(&d);
    // At the default level, only what is worth a user's eye.
    let quiet = Daemon::start("loginfo");
    quiet.ok(&["ps"]);
    let log = std::fs::read_to_string(quiet.dir.join("daemon.log")).unwrap();
    assert!(log.contains("API listen on") && !log.contains("Calling"), "{log}");
    // An unknown level stops berthd before it serves.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args(["--log-level", "chatty", "--config-file", "/nonexistent/daemon.json"])
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("unable to parse logging level: chatty"), "{}", stderr(&o));
    // A daemon.json asking for what berth cannot do stops it too.
    let conf = quiet.dir.join("no-live-restore.json");
    std::fs::write(&conf, br#"{"live-restore": false}"#).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berthd")).arg("--config-file").arg(&conf).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("\"live-restore\": false is not supported"), "{}", stderr(&o));
}

#[test]
fn negative_oom_scores_are_kept_or_raised_with_a_warning() {
    if !can_run("oom score adj") {
        return;
    }
    let d = Daemon::start("oomadj");
    d.load_busybox();
    // berthd has this test's capabilities and score.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap();
    let can_lower = u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 24) != 0;
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    let body = br#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none","OomScoreAdj":-500}}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert_eq!(s, 201, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let id = v["Id"].as_str().unwrap().to_owned();
    d.ok(&["start", &id]);
    let got: i32 = d.ok(&["exec", &id, "cat", "/proc/1/oom_score_adj"]).trim().parse().unwrap();
    let warnings = v["Warnings"].as_array().unwrap();
    if can_lower || own <= -500 {
        assert_eq!((got, warnings.len()), (-500, 0), "{b}");
    } else {
        assert_eq!(got, own, "raised to berthd's own score");
        assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("OomScoreAdj -500 is raised to")), "{b}");
    }
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.OomScoreAdj}}", &id]).trim(), "-500");
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

#[test]
fn request_fields_berth_does_not_know_are_refused_by_name() {
    if !can_run("unknown fields") {
        return;
    }
    let d = Daemon::start("unknown");
    d.load_busybox();
    for (path, body, field) in [
        (
            "/containers/create",
            r#"{"Image":"busybox","HostConfig":{"FancyNewThing":{"x":1}}}"#,
            "HostConfig.FancyNewThing",
        ),
        (
            "/containers/create",
            r#"{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"bridge":{"GwPriority":5}}}}"#,
            "NetworkingConfig.EndpointsConfig.bridge.GwPriority",
        ),
        ("/networks/create", r#"{"Name":"nn","Frobnicate":true}"#, "Frobnicate"),
        ("/volumes/create", r#"{"Name":"vv","ClusterVolumeSpec":{"Group":"g"}}"#, "ClusterVolumeSpec"),
    ] {
        let (s, b) = d.http("POST", path, body.as_bytes());
        assert_eq!(s, 400, "{body}: {b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert!(v["message"].as_str().unwrap().starts_with(&format!("{field}: ")), "{body}: {b}");
    }
    // The same fields with values that ask for nothing are no request.
    let body = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"FancyNewThing":null},"NetworkingConfig":{"EndpointsConfig":{"bridge":{"GwPriority":0}}}}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert_eq!(s, 201, "{b}");
    assert_eq!(d.ok(&["network", "ls", "-q", "--filter", "name=nn"]).trim(), "");
    assert!(!d.docker(&["volume", "inspect", "vv"]).status.success());
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    d.ok(&["rm", v["Id"].as_str().unwrap()]);
    assert_clean(&d);
}

/// Every key of a JSON answer by path, with the kind of its value (`null`
/// told apart from an empty list or map); the names of networks, which
/// are the test's own, and of the kernel's memory counters stand as `*`.
fn shape(v: &serde_json::Value) -> std::collections::BTreeMap<String, &'static str> {
    fn walk(v: &serde_json::Value, path: String, out: &mut std::collections::BTreeMap<String, &'static str>) {
        use serde_json::Value;
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "map",
        };
        out.insert(path.clone(), kind);
        if let Value::Object(m) = v {
            for (k, x) in m {
                let dynamic = path == "/NetworkSettings/Networks" || path == "/memory_stats/stats";
                let k = if dynamic { "*" } else { k.as_str() };
                walk(x, format!("{path}/{k}"), out);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(v, String::new(), &mut out);
    out
}

#[test]
fn inspect_and_stats_have_the_shape_of_dockerd_s() {
    if !can_run("inspect shape") {
        return;
    }
    let d = Daemon::start("shape");
    d.load_busybox();
    d.ok(&["network", "create", "rich"]);
    // The fixtures are dockerd 20.10's answers to `GET /v1.41/containers/
    // {id}/json` (and `/stats?stream=0`, and an exec's inspect before it
    // starts) after these same commands, given by its own CLI.
    let cases: [(&str, Vec<&str>); 3] = [
        ("none", vec!["run", "-d", "--network", "none", "busybox", "sleep", "1000"]),
        ("created", vec!["create", "--name", "plain", "busybox", "true"]),
        (
            "rich",
            "create --name rich --network rich --network-alias web -e A=1 -l k=v -p 8080:80 --expose 90 \
             --restart on-failure:3 --health-cmd true --health-interval 5s -v /data --tmpfs /t \
             --sysctl net.core.somaxconn=1000 --ulimit nofile=100:200 --cap-add NET_ADMIN --dns 1.1.1.1 \
             --add-host h:1.2.3.4 --mount type=volume,dst=/m --memory 64m --pids-limit 50 --init -w /tmp -u 1:1 \
             --entrypoint sh --stop-signal SIGINT --stop-timeout 3 -t -i busybox -c true"
                .split_whitespace()
                .collect(),
        ),
    ];
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dockerd-20.10");
    let mut ids = vec![];
    for (name, args) in cases {
        let id = d.ok(&args).trim().to_owned();
        ids.push(id.clone());
        // Inspect of each, and the stats of a running and a created one.
        let mut answers = vec![("inspect", name)];
        if name != "rich" {
            answers.push(("stats", name));
        }
        if name == "none" {
            answers.push(("exec", "created"));
        }
        for (what, name) in answers {
            let path = match what {
                "inspect" => format!("/v1.41/containers/{id}/json"),
                "stats" => format!("/v1.41/containers/{id}/stats?stream=0"),
                _ => {
                    let (s, b) = d.http("POST", &format!("/v1.41/containers/{id}/exec"), br#"{"Cmd":["true"]}"#);
                    assert_eq!(s, 201, "{b}");
                    let exec: serde_json::Value = serde_json::from_str(&b).unwrap();
                    format!("/v1.41/exec/{}/json", exec["Id"].as_str().unwrap())
                }
            };
            let (s, b) = d.http("GET", &path, b"");
            assert_eq!(s, 200, "{b}");
            let ours: serde_json::Value = serde_json::from_str(&b).unwrap();
            let file = fixtures.join(format!("{what}-{name}.json"));
            let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            let (ours, theirs) = (shape(&ours), shape(&theirs));
            let differ: Vec<String> = theirs
                .iter()
                .filter(|(k, v)| ours.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: dockerd {v}, berth {:?}", ours.get(k)))
                .chain(ours.keys().filter(|k| !theirs.contains_key(*k)).map(|k| format!("{k}: berth only")))
                .collect();
            assert!(differ.is_empty(), "{what} {name}: {differ:#?}\n{b}");
        }
        let env = d.ok(&["inspect", "-f", "{{json .Config.Env}}", &id]);
        if name == "rich" {
            assert!(env.starts_with(r#"["A=1","PATH="#), "the container's env goes first, as Docker's: {env}");
        }
    }
    for id in &ids {
        d.ok(&["rm", "-f", "-v", id]);
    }
    d.ok(&["network", "rm", "rich"]);
    d.ok(&["volume", "prune", "-f"]);
    assert_clean(&d);
}

#[test]
fn inspect_sends_the_fields_docker_always_sends() {
    if !can_run("inspect fields") {
        return;
    }
    let d = Daemon::start("fields");
    d.load_busybox();
    let id = d.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"]).trim().to_owned();
    let (s, b) = d.http("GET", &format!("/v1.41/containers/{id}/json"), b"");
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    // Read off Docker 20.10's inspect of the same container.
    for path in [
        "/Config/OnBuild",
        "/HostConfig/ContainerIDFile",
        "/HostConfig/CpuCount",
        "/HostConfig/CpuPercent",
        "/HostConfig/DeviceRequests",
        "/HostConfig/IOMaximumBandwidth",
        "/HostConfig/IOMaximumIOps",
        "/HostConfig/MaskedPaths",
        "/HostConfig/ReadonlyPaths",
        "/NetworkSettings/EndpointID",
        "/NetworkSettings/SecondaryIPAddresses",
        "/NetworkSettings/SecondaryIPv6Addresses",
        "/NetworkSettings/Networks/none/IPAMConfig",
        "/NetworkSettings/Networks/none/Aliases",
        "/NetworkSettings/Networks/none/GlobalIPv6Address",
        "/NetworkSettings/Networks/none/DriverOpts",
    ] {
        assert!(v.pointer(path).is_some(), "inspect lacks {path}: {b}");
    }
    assert_eq!(v.pointer("/HostConfig/MaskedPaths/0").and_then(|p| p.as_str()), Some("/proc/asound"));
    let (s, b) = d.http("GET", "/v1.41/info", b"");
    assert_eq!(s, 200, "{b}");
    let info: serde_json::Value = serde_json::from_str(&b).unwrap();
    for key in [
        "NEventsListener",
        "KernelMemoryTCP",
        "BridgeNfIptables",
        "HttpProxy",
        "NoProxy",
        "RegistryConfig",
        "RuncCommit",
    ] {
        assert!(info.get(key).is_some(), "info lacks {key}: {b}");
    }
    assert!(d.ok(&["info"]).contains("Cgroup Driver: cgroupfs"));
    let (_, b) = d.http("GET", "/v1.41/images/json", b"");
    let images: serde_json::Value = serde_json::from_str(&b).unwrap();
    for key in ["Containers", "Created", "Id", "Labels", "ParentId", "RepoDigests", "RepoTags", "SharedSize", "Size"] {
        assert!(images[0].get(key).is_some(), "image list lacks {key}: {b}");
    }
    // Volumes, their list and their prune, with every key Docker sends.
    let (s, b) = d.http("POST", "/v1.41/volumes/create", br#"{"Name":"keys"}"#);
    assert_eq!(s, 201, "{b}");
    let vol: serde_json::Value = serde_json::from_str(&b).unwrap();
    for key in ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"] {
        assert!(vol.get(key).is_some(), "volume lacks {key}: {b}");
    }
    assert_eq!(vol["Scope"], "local");
    let (_, b) = d.http("GET", "/v1.41/volumes", b"");
    let list: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert!(list.get("Warnings").is_some() && list["Volumes"][0]["Name"] == "keys", "{b}");
    let (_, b) = d.http("POST", "/v1.41/volumes/prune", b"");
    let pruned: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert!(
        pruned["VolumesDeleted"].as_array().is_some_and(|v| v.len() == 1) && pruned["SpaceReclaimed"].is_u64(),
        "{b}"
    );
    // An image's overlay2 directories, its top layer's diff among them.
    let upper = d.ok(&["image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "busybox"]);
    assert!(std::path::Path::new(upper.trim()).is_dir(), "{upper}");
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

#[test]
fn a_commit_s_config_merges_over_the_container_s_as_docker_s() {
    if !can_run("commit config") {
        return;
    }
    let d = Daemon::start("commitcfg");
    d.load_busybox();
    d.ok(&[
        "create",
        "--name",
        "src",
        "-e",
        "A=1",
        "-l",
        "k=v",
        "--expose",
        "90",
        "-v",
        "/data",
        "--health-cmd",
        "true",
        "--health-interval",
        "5s",
        "-u",
        "1:1",
        "-w",
        "/tmp",
        "--stop-signal",
        "SIGINT",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "true",
    ]);
    let body = br#"{"Env":["B=2","A=5"],"ExposedPorts":{"70/tcp":{}},"Labels":{"x":"y"},"Volumes":{"/v2":{}},
        "Cmd":"echo","Healthcheck":{"Retries":7}}"#;
    let (s, b) = d.http("POST", "/v1.41/commit?container=src&repo=merged", body);
    assert_eq!(s, 201, "{b}");
    // dockerd 20.10's image config for the same container and body.
    let want = serde_json::json!({
        "User": "1:1", "ExposedPorts": {"70/tcp": {}, "90/tcp": {}},
        "Env": ["B=2", "A=5", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": ["sh"], "Cmd": ["echo"], "Volumes": {"/data": {}, "/v2": {}}, "WorkingDir": "/tmp",
        "Labels": {"k": "v", "x": "y"}, "StopSignal": "SIGINT",
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5000000000u64, "Retries": 7}
    });
    let got: serde_json::Value =
        serde_json::from_str(&d.ok(&["image", "inspect", "-f", "{{json .Config}}", "merged"])).unwrap();
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "{k}: {got}");
    }
    // What describes a running container and not an image is refused.
    for field in [r#""Hostname":"h""#, r#""Tty":true"#, r#""StopTimeout":9"#] {
        let (s, b) = d.http("POST", "/v1.41/commit?container=src&repo=no", format!("{{{field}}}").as_bytes());
        assert_eq!(s, 400, "{field}: {b}");
        let name = field.split('"').nth(1).unwrap();
        assert!(b.contains(&format!("{name}: ")), "{b}");
    }
    d.ok(&["rm", "-v", "src"]);
    d.ok(&["rmi", "merged"]);
    assert_clean(&d);
}

#[test]
fn create_fields_are_read_into_the_spec_s_types_or_refused() {
    if !can_run("typed create") {
        return;
    }
    let d = Daemon::start("typed");
    d.load_busybox();
    let hc = |h: &str| format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{{h}}}}}"#);
    for (body, want) in [
        // A value of the wrong type is named by its path.
        (hc(r#""Memory":"lots""#), "HostConfig.Memory: invalid type"),
        (hc(r#""Mounts":[{"Type":"bind","Target":"/x","ReadOnly":"yes"}]"#), "HostConfig.Mounts[0].ReadOnly"),
        // Values outside the spec's enums get moby's messages.
        (hc(r#""RestartPolicy":{"Name":"sometimes"}"#), "invalid restart policy 'sometimes'"),
        (hc(r#""CgroupnsMode":"shared""#), "invalid cgroup namespace mode: shared"),
        (
            hc(r#""Mounts":[{"Type":"weird","Target":"/x"}]"#),
            "invalid mount config for type \"weird\": mount type unknown",
        ),
        (
            hc(r#""Mounts":[{"Type":"bind","Source":"/tmp","Target":"/x","BindOptions":{"Propagation":"sideways"}}]"#),
            "invalid propagation mode: sideways",
        ),
        // The spec's fields berth does not carry out are refused by name.
        (
            hc(r#""Mounts":[{"Type":"image","Source":"busybox","Target":"/x"}]"#),
            "berth does not support this mount type",
        ),
        (
            hc(
                r#""Mounts":[{"Type":"bind","Source":"/tmp","Target":"/x","BindOptions":{"ReadOnlyNonRecursive":true}}]"#,
            ),
            "BindOptions.ReadOnlyNonRecursive",
        ),
        (
            hc(r#""Mounts":[{"Type":"tmpfs","Target":"/x","TmpfsOptions":{"Options":[["exec"]]}}]"#),
            "TmpfsOptions.Options",
        ),
        (hc(r#""CpuCount":2"#), "CpuCount is for Windows containers only"),
        (hc(r#""Cgroup":"other""#), "Cgroup \"other\""),
    ] {
        let (s, b) = d.http("POST", "/v1.41/containers/create", body.as_bytes());
        assert!(s == 400 || s == 501, "{body}: {s} {b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert!(v["message"].as_str().unwrap().contains(want), "{body}: {b}");
    }
    // Init cannot change by an update, and is refused rather than dropped.
    let id = d.ok(&["create", "busybox", "true"]).trim().to_owned();
    let (s, b) = d.http("POST", &format!("/v1.41/containers/{id}/update"), br#"{"Init":true}"#);
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("Init cannot be changed by an update"), "{b}");
    // ContainerIDFile is kept and shown; sizes come with size=1.
    let body = br#"{"Image":"busybox","Cmd":"true","HostConfig":{"ContainerIDFile":"/tmp/cid"}}"#;
    let (s, b) = d.http("POST", "/v1.41/containers/create", body);
    assert_eq!(s, 201, "{b}");
    let made: serde_json::Value = serde_json::from_str(&b).unwrap();
    let made = made["Id"].as_str().unwrap();
    let (_, b) = d.http("GET", &format!("/v1.41/containers/{made}/json?size=1"), b"");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["HostConfig"]["ContainerIDFile"], "/tmp/cid", "{b}");
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["true"]), "a string Cmd is a list of one: {b}");
    assert!(v["SizeRw"].is_number() && v["SizeRootFs"].as_i64().unwrap() > 0, "{b}");
    let (_, b) = d.http("GET", &format!("/v1.41/containers/{made}/json"), b"");
    assert!(!b.contains("SizeRw"), "{b}");
    d.ok(&["rm", &id, made]);
    assert_clean(&d);
}
