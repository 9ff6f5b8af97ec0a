//! berthd driven from outside, by the stock docker CLI and raw HTTP: each
//! test starts its own daemon with its own roots, socket and cgroup parent,
//! and leaves nothing behind (containers, shims, mounts, cgroups, files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn run_prints_output_and_exits_with_the_container_status() {
    if !can_run("run") {
        return;
    }
    let d = Daemon::start("run");
    d.load_busybox();
    let v = d.ok(&["version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}"]);
    assert_eq!(v.trim(), "1.50 1.40");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "hello", "berth"]), "hello berth\n");
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", String::from_utf8_lossy(&o.stderr));
    let o = d.docker(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", String::from_utf8_lossy(&o.stderr));
    // The image's environment, the hostname (short id) and the working dir.
    let out = d.ok(&[
        "run",
        "--rm",
        "-w",
        "/made/here",
        "-e",
        "A=b",
        "busybox",
        "sh",
        "-c",
        "pwd; echo $A; cat /etc/hostname; echo $HOSTNAME",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0..2], ["/made/here", "b"]);
    assert_eq!(lines[2].len(), 12);
    assert_eq!(lines[2], lines[3]);
    // Piped stdin, closed at its end.
    let o = d.docker_in(&["run", "-i", "--rm", "busybox", "sh"], Some(b"echo from stdin; exit 5\n"));
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(stdout(&o), "from stdin\n");
    assert_eq!(d.ok(&["ps", "-aq"]), "", "--rm left containers");
    assert_clean(&d);
}

#[test]
fn detached_containers_log_stop_and_are_removed() {
    if !can_run("detached") {
        return;
    }
    let d = Daemon::start("detached");
    d.load_busybox();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    std::thread::sleep(Duration::from_millis(500));
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps.trim(), "ticker running");
    let pid: i32 = d.ok(&["inspect", "-f", "{{.State.Pid}}", "ticker"]).trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let logs = d.ok(&["logs", "ticker"]);
    assert!(logs.starts_with("tick 0\ntick 1\n"), "{logs}");
    assert_eq!(d.ok(&["logs", "--tail", "1", &id[..12]]).lines().count(), 1);
    // Name conflict, a running container not removed without force.
    let o = d.docker(&["run", "-d", "--name", "ticker", "busybox", "true"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is already in use by container"), "{o:?}");
    let o = d.docker(&["rm", "ticker"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("stop the container before removing or force remove"));
    // Stop sends SIGTERM, which the trap answers.
    d.ok(&["stop", "-t", "5", "ticker"]);
    let state = d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}", "ticker"]);
    assert_eq!(state.trim(), "exited 0 false");
    assert!(d.ok(&["logs", "ticker"]).ends_with("bye\n"));
    let fin = d.ok(&["inspect", "-f", "{{.State.StartedAt}} {{.State.FinishedAt}}", "ticker"]);
    for t in fin.split_whitespace() {
        assert_eq!(t.len(), "2024-01-01T00:00:00.123456789Z".len(), "{t}");
    }
    // Started again, killed.
    d.ok(&["start", "ticker"]);
    d.ok(&["kill", "ticker"]);
    assert_eq!(d.ok(&["wait", "ticker"]).trim(), "137");
    d.ok(&["rm", "ticker"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_clean(&d);
}

#[test]
fn a_terminal_has_the_clients_size() {
    if !can_run("tty") || Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "tty: needs script (bsdutils)");
        return;
    }
    let d = Daemon::start("tty");
    d.load_busybox();
    let cmd = format!(
        "stty rows 30 cols 100; DOCKER_HOST=unix://{} {DOCKER} run -it --rm busybox sh -c 'tty; stty size'",
        d.socket().display()
    );
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    let out = stdout(&o);
    // script(1) may pass on a NUL when its stdin ends, which the
    // container's terminal echoes as `^@`; it says nothing of the size.
    assert!(out.replace("^@", "").contains("/dev/pts/0\r\n30 100\r\n"), "{out:?}");
    assert_clean(&d);
}

#[test]
fn containers_survive_a_daemon_crash() {
    if !can_run("crash") {
        return;
    }
    let mut d = Daemon::start("crash");
    d.load_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "keeps",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo n $i; i=$((i+1)); sleep 0.05; done",
    ]);
    d.ok(&["run", "-d", "--name", "ends", "busybox", "sh", "-c", "read x; exit 42"]);
    d.ok(&["run", "-d", "-i", "--name", "ends2", "busybox", "sh", "-c", "read x; exit $x"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "keeps"]);
    let ends2_pid: i32 = d.ok(&["inspect", "-f", "{{.State.Pid}}", "ends2"]).trim().parse().unwrap();
    d.crash();
    // While the daemon is down: one container exits by a signal.
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(ends2_pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    d.spawn();
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Pid}}", "keeps"]), pid, "the running container was not found again");
    let st = d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ends2"]);
    assert_eq!(st.trim(), "exited 137");
    // The log kept flowing: numbers continue without a gap.
    let before = d.ok(&["logs", "keeps"]).lines().count();
    std::thread::sleep(Duration::from_millis(300));
    let logs = d.ok(&["logs", "keeps"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() > before);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, format!("n {i}"));
    }
    // Attach works again after the restart.
    d.ok(&["kill", "-s", "KILL", "keeps"]);
    assert_eq!(d.ok(&["wait", "keeps"]).trim(), "137");
    d.ok(&["rm", "-f", "keeps", "ends", "ends2"]);
    assert_clean(&d);
}

#[test]
fn bad_requests_get_dockers_status_codes() {
    if !can_run("bad") {
        return;
    }
    let d = Daemon::start("bad");
    d.load_busybox();
    let (s, b) = d.http("POST", "/v1.41/containers/create", b"{not json");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("\"message\""), "{b}");
    let (s, b) = d.http("POST", "/containers/create", br#"{"Image":"nope:latest","Cmd":["true"]}"#);
    assert_eq!((s, b.contains("No such image: nope:latest")), (404, true), "{b}");
    let (s, b) = d.http("POST", "/containers/create", br#"{"Image":"busybox","HostConfig":{"Memory":1}}"#);
    assert_eq!(s, 400, "{b}");
    let (s, _) = d.http("GET", "/v1.12/containers/json", b"");
    assert_eq!(s, 400);
    let (s, b) = d.http("GET", "/containers/0000000000000/json", b"");
    assert_eq!((s, b.contains("No such container")), (404, true));
    let big = vec![b' '; 20 << 20];
    let (s, _) = d.http("POST", "/containers/create", &big);
    assert_eq!(s, 413);
    let o = d.docker(&["run", "--rm", "--memory", "12q", "busybox", "true"]);
    assert!(!o.status.success());
    // Two containers whose ids share a prefix: the shortest common prefix
    // of two hex ids is the empty string at worst, so use one character.
    let a = d.ok(&["create", "busybox", "true"]);
    let b2 = d.ok(&["create", "busybox", "true"]);
    let common: String = a.chars().zip(b2.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect();
    if !common.is_empty() {
        let (s, b) = d.http("GET", &format!("/containers/{common}/json"), b"");
        assert_eq!(s, 400, "{b}");
        assert!(b.contains("multiple IDs found with provided prefix"), "{b}");
    }
    // The daemon still serves.
    let (s, b) = d.http("GET", "/_ping", b"");
    assert_eq!((s, b.as_str()), (200, "OK"));
    d.ok(&["rm", a.trim(), b2.trim()]);
    assert_clean(&d);
}

#[test]
fn runc_can_be_the_runtime() {
    if !can_run("runc") {
        return;
    }
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"].into_iter().find(|p| Path::new(p).exists());
    let Some(runc) = runc else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "runc: not installed");
        return;
    };
    let d = Daemon::start_with("runc", &["--default-runtime", runc]);
    d.load_busybox();
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(4), "out\n"));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"), "{o:?}");
    let o = d.docker_in(&["run", "-i", "--rm", "busybox", "cat"], Some(b"through runc\n"));
    assert_eq!(stdout(&o), "through runc\n");
    d.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "100"]);
    d.ok(&["stop", "-t", "1", "sleeper"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "sleeper"]).trim(), "137");
    d.ok(&["rm", "sleeper"]);
    assert_clean(&d);
}

/// On ext4 the directories that hold one subdirectory per container or
/// layer carry the Orlov hint (`chattr +T`), so that containers' files are
/// spread over block groups instead of crowding their parent's.
#[test]
fn per_container_directories_are_spread_on_ext4() {
    if !can_run("spread") {
        return;
    }
    let d = Daemon::start("spread");
    let fs = Command::new("stat").args(["-f", "-c", "%T"]).arg(&d.dir).output().unwrap();
    let ext = String::from_utf8_lossy(&fs.stdout).trim().starts_with("ext");
    for dir in ["data/containers", "data/overlay", "run", "run/runtime"] {
        let out = Command::new("lsattr").arg("-d").arg(d.dir.join(dir)).output().unwrap();
        let attrs = String::from_utf8_lossy(&out.stdout);
        let flags = attrs.split_whitespace().next().unwrap_or("");
        assert_eq!(flags.contains('T'), ext, "{dir}: {attrs}");
    }
}

/// Processes whose command line holds `words`, all of them.
fn pids_with(words: &[&str]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let pid: i32 = p.file_name().to_str()?.parse().ok()?;
            let cmd = String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).ok()?).into_owned();
            words.iter().all(|w| cmd.contains(w)).then_some(pid)
        })
        .collect()
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// A container's start takes the shim started ahead of it: that process
/// becomes the container's shim, named by the container's config in its
/// command line; a standby that is gone is replaced by a shim started then;
/// the last one goes with berthd.
#[test]
fn a_start_takes_the_shim_started_ahead() {
    if !can_run("standby shim") {
        return;
    }
    let mut d = Daemon::start("standby");
    d.load_busybox();
    let root = d.dir.to_str().unwrap().to_owned();
    let standby = || pids_with(&["berth-shim", "--standby", &root]);
    let next_standby = |not: i32| {
        let t = std::time::Instant::now();
        loop {
            if let Some(p) = standby().into_iter().find(|p| *p != not && alive(*p)) {
                return p;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no standby shim");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(standby().is_empty(), "a daemon that ran nothing holds a standby");
    let a = d.ok(&["run", "-d", "busybox", "sleep", "600"]).trim().to_owned();
    let s = next_standby(0);
    let b = d.ok(&["run", "-d", "busybox", "sh", "-c", "echo from b; exec sleep 600"]).trim().to_owned();
    let shim_of_b: i32 = std::fs::read_to_string(d.dir.join("run").join(&b).join("shim.pid")).unwrap().parse().unwrap();
    assert_eq!(shim_of_b, s, "b's shim is not the standby");
    let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{s}/cmdline")).unwrap()).into_owned();
    let want = d.dir.join("run").join(&b).join("shim.json");
    assert!(cmd.contains(want.to_str().unwrap()) && !cmd.contains("--standby"), "{cmd:?}");
    assert_eq!(until(&d, &["logs", &b], |o| !o.is_empty()), "from b\n");
    // One that died is not given the next container.
    let s2 = next_standby(s);
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(s2, libc::SIGKILL) };
    while alive(s2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = d.ok(&["run", "-d", "busybox", "sleep", "600"]).trim().to_owned();
    assert_eq!(d.ok(&["exec", &c, "echo", "c runs"]), "c runs\n");
    d.ok(&["rm", "-f", &a, &b, &c]);
    let s3 = next_standby(s2);
    d.stop();
    let t = std::time::Instant::now();
    while alive(s3) {
        assert!(t.elapsed() < Duration::from_secs(5), "the standby outlived berthd");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_clean(&d);
}
