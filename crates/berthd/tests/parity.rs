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
