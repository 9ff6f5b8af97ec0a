//! `docker exec` against berthd: output, exit codes, stdin, settings, a
//! terminal, detached processes and the exec records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn exec_runs_processes_in_a_running_container() {
    if !can_run("exec") {
        return;
    }
    let d = Daemon::start("exec");
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "box", "-e", "KEEP=1", "-w", "/", "busybox", "sleep", "600"]);

    // top: the host's ps, only the container's processes.
    let top = d.ok(&["top", "box"]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(lines[0].contains("PID") && lines[0].contains("CMD"), "{top}");
    assert_eq!(lines.len(), 2, "one process: {top}");
    assert!(lines[1].ends_with("sleep 600"), "{top}");
    let top = d.ok(&["top", "box", "-o", "pid,comm"]);
    assert!(top.starts_with("PID") && top.contains("sleep"), "{top}");

    // Output on both streams and the exit status.
    let o = d.docker(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");

    // A missing command: Docker's message and 127.
    let o = d.docker(&["exec", "box", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(stdout(&o).contains("executable file not found"), "{o:?}");

    // stdin, and the end of it.
    let o = d.docker_in(&["exec", "-i", "box", "sh", "-c", "cat; echo end"], Some(b"piped\n"));
    assert_eq!(stdout(&o), "piped\nend\n", "{o:?}");

    // Environment merged with the container's, working directory, user.
    let got = d.ok(&[
        "exec",
        "-e",
        "EXTRA=2",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "box",
        "sh",
        "-c",
        "echo $KEEP $EXTRA $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(got, "1 2 /tmp 1000:1000\n");
    let got = d.ok(&["exec", "-u", "nobody", "box", "id", "-un"]);
    assert_eq!(got, "nobody\n");

    // --privileged has every capability; a plain exec has the container's.
    let caps = |args: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["box", "grep", "CapEff", "/proc/self/status"]);
        d.ok(&a).split_whitespace().nth(1).map(|h| u64::from_str_radix(h, 16).unwrap()).unwrap()
    };
    let plain = caps(&[]);
    assert_eq!(plain, 0xa80425fb, "Docker's default set");
    assert!(caps(&["--privileged"]).count_ones() > plain.count_ones());

    // Detached: the process runs on after the call.
    d.ok(&["exec", "-d", "box", "sh", "-c", "sleep 0.3; touch /tmp/detached"]);
    let t = Instant::now();
    while !d.docker(&["exec", "box", "test", "-e", "/tmp/detached"]).status.success() {
        assert!(t.elapsed() < Duration::from_secs(10), "the detached exec did not run");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The records: ids on the container, each with its exit code.
    let ids = d.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}} {{end}}", "box"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert!(ids.len() >= 8, "{ids:?}");
    let mut codes = vec![];
    for id in &ids {
        let (status, body) = d.http("GET", &format!("/exec/{id}/json"), b"");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ContainerID"].as_str().unwrap().len(), 64);
        codes.push(v["ExitCode"].as_i64().unwrap_or(-1));
    }
    assert!(codes.contains(&5) && codes.contains(&127), "{codes:?}");
    let (status, body) = d.http("GET", "/exec/0000/json", b"");
    assert_eq!(status, 404, "{body}");
    // An exec runs once.
    let (status, body) = d.http("POST", &format!("/exec/{}/start", ids[0]), b"{\"Detach\":true}");
    assert_eq!(status, 409, "{body}");

    // Not in a paused or a stopped container.
    d.ok(&["pause", "box"]);
    let o = d.docker(&["exec", "box", "true"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is paused"), "{o:?}");
    d.ok(&["unpause", "box"]);
    d.ok(&["kill", "box"]);
    let o = d.docker(&["exec", "box", "true"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not running"), "{o:?}");
    assert!(!d.docker(&["top", "box"]).status.success());
    let (status, _) = d.http("POST", "/containers/box/exec", b"{\"Cmd\":[\"true\"]}");
    assert_eq!(status, 409);
    d.ok(&["rm", "box"]);
    assert_clean(&d);
}

#[test]
fn exec_with_a_terminal_has_the_clients_size() {
    if !can_run("exec tty") || Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "exec tty: needs script (bsdutils)");
        return;
    }
    let d = Daemon::start("exec-tty");
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "term", "busybox", "sleep", "600"]);
    let cmd = format!(
        "stty rows 33 cols 101; DOCKER_HOST=unix://{} {DOCKER} exec -it term sh -c 'tty; stty size; exit 4'",
        d.socket().display()
    );
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    assert_eq!(o.status.code(), Some(4), "{out}");
    d.ok(&["rm", "-f", "term"]);
    assert_clean(&d);
}
