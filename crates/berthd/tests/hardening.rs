//! What a container or a local user must not reach: host sysctls, values
//! the kernel would take for the host, the daemon's files. Each test tries
//! it the way an attacker would and checks the host afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn read_sysctl(k: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap().trim().to_owned()
}

#[test]
fn host_sysctls_are_refused_at_create() {
    if !can_run("host sysctls") {
        return;
    }
    let d = Daemon::start("sysctl");
    d.load_busybox();
    let pattern = read_sysctl("kernel/core_pattern");
    let uses_pid = read_sysctl("kernel/core_uses_pid");
    let flipped = if uses_pid == "0" { "1" } else { "0" };

    // The raw API: core_pattern names a program the host's kernel runs as root.
    let body = r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Sysctls":{"kernel.core_pattern":"|/tmp/pwn %p"}}}"#;
    let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
    assert_eq!(s, 400, "{b}");
    assert!(b.contains(r#"sysctl \"kernel.core_pattern\" is not in a separate kernel namespace"#), "{b}");
    let body = format!(
        r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"Sysctls":{{"kernel/core_uses_pid":"{flipped}"}}}}}}"#
    );
    let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
    assert_eq!(s, 400, "{b}");
    // net.* is the host's in host network mode.
    let fwd = read_sysctl("net/ipv4/ip_forward");
    let body = format!(
        r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"NetworkMode":"host","Sysctls":{{"net.ipv4.ip_forward":"{fwd}"}}}}}}"#
    );
    let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("not allowed in host network namespace"), "{b}");

    // Both command lines refuse it before it is sent.
    let arg = format!("kernel.core_uses_pid={flipped}");
    for o in [
        d.docker(&["run", "--rm", "--sysctl", &arg, "busybox", "true"]),
        d.berth(&["run", "--rm", "--sysctl", &arg, "busybox", "true"]),
    ] {
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        assert!(stderr(&o).contains("is not allowed"), "{}", stderr(&o));
    }
    assert!(stdout(&d.docker(&["ps", "-aq"])).trim().is_empty(), "a refused create left a container");
    assert_eq!(read_sysctl("kernel/core_pattern"), pattern);
    assert_eq!(read_sysctl("kernel/core_uses_pid"), uses_pid);

    // What the container's own namespaces hold still works.
    let out = d.ok(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.shmmax=123456",
        "busybox",
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/shmmax",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1", "123456"]);
    assert_eq!(read_sysctl("net/ipv4/ip_forward"), fwd);
    assert_clean(&d);
}

#[test]
fn bad_resource_values_answer_400_at_create() {
    if !can_run("resource values") {
        return;
    }
    let d = Daemon::start("resvals");
    d.load_busybox();
    let cases = [
        (r#""NanoCpus":1"#, "Range of CPUs is from 0.01"),
        (r#""NanoCpus":-1"#, "Range of CPUs is from 0.01"),
        (r#""CpuQuota":1"#, "CPU cfs quota can not be less than 1ms"),
        (r#""CpuPeriod":5"#, "CPU cfs period can not be less than 1ms"),
        (r#""BlkioWeight":5000"#, "Range of blkio weight is from 10 to 1000"),
        (r#""CpuShares":-5"#, "invalid CPU shares (-5)"),
        (r#""ShmSize":-1"#, "SHM size can not be less than 0"),
        (r#""OomScoreAdj":5000"#, "range for oom score adj is [-1000, 1000]"),
        (r#""MemoryReservation":100"#, "Minimum memory reservation allowed is 6MB"),
        (r#""MemorySwappiness":500"#, "valid memory swappiness range is 0-100"),
        (r#""CpusetCpus":"0-4095""#, "Requested CPUs are not available"),
        (r#""Binds":["/tmp:/proc/sys"]"#, "cannot be mounted because it is inside /proc"),
        (r#""Tmpfs":{"/proc/sysrq-trigger":""}"#, "cannot be mounted because it is inside /proc"),
    ];
    for (field, want) in cases {
        let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{{field}}}}}"#);
        let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
        assert_eq!(s, 400, "{field}: {b}");
        assert!(b.contains(want), "{field}: {b}");
    }
    // An anonymous volume planned before the refused mount is gone too.
    let body =
        r#"{"Image":"busybox","Cmd":["true"],"Volumes":{"/data":{}},"HostConfig":{"Binds":["/tmp:/proc/kcore"]}}"#;
    let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
    assert_eq!(s, 400, "{b}");
    assert!(stdout(&d.docker(&["ps", "-aq"])).trim().is_empty(), "a refused create left a container");
    assert!(stdout(&d.docker(&["volume", "ls", "-q"])).trim().is_empty(), "a refused create left a volume");
    let left: Vec<_> = std::fs::read_dir(d.dir.join("data/containers")).unwrap().flatten().collect();
    assert!(left.is_empty(), "container dirs left: {left:?}");

    // A swappiness in range is applied, and shown.
    let got = d.ok(&[
        "run",
        "--rm",
        "--memory-swappiness",
        "23",
        "busybox",
        "cat",
        "/sys/fs/cgroup/memory/memory.swappiness",
    ]);
    assert_eq!(got.trim(), "23");
    let id = d.ok(&["create", "--memory-swappiness", "-1", "busybox", "true"]).trim().to_owned();
    assert_eq!(inspect(&d, &id, "{{.HostConfig.MemorySwappiness}}"), "<nil>");
    d.ok(&["rm", &id]);
    // The same values through update.
    let id = d.ok(&["create", "busybox", "true"]);
    let id = id.trim();
    for field in [r#""NanoCpus":1"#, r#""BlkioWeight":5000"#, r#""CpuShares":-5"#, r#""CpuQuota":1"#] {
        let (s, b) = d.http("POST", &format!("/containers/{id}/update"), format!("{{{field}}}").as_bytes());
        assert_eq!(s, 400, "{field}: {b}");
    }
    d.ok(&["rm", id]);
    assert_clean(&d);
}

/// Runs `script` under busybox sh as uid and gid 65534 (nobody) with no
/// supplementary groups, `input` on its stdin; its stdout.
fn as_nobody(script: &str, input: &str, gid: u32) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("setpriv")
        .args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups", "/bin/busybox", "sh", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned()
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out);
        }
    }
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn other_users_reach_nothing_of_the_daemon() {
    if !can_run("modes on disk") {
        return;
    }
    let mut d = Daemon::start_with("perms", &["-G", "4242"]);
    d.load_busybox();
    let id = d.ok(&["run", "-d", "-e", "SECRET=hunter2", "busybox", "sh", "-c", "echo secret-log; exec sleep 1000"]);
    let id = id.trim().to_owned();
    let data = d.dir.join("data");
    let run = d.dir.join("run");
    assert_eq!(mode(&data), 0o710);
    assert_eq!(mode(&data.join("containers")), 0o710);
    assert_eq!(mode(&data.join("overlay")), 0o710);
    assert_eq!(mode(&run), 0o700);
    let cdir = data.join("containers").join(&id);
    let log =
        std::fs::read_dir(&cdir).unwrap().flatten().find(|e| e.file_name().to_string_lossy().ends_with("-json.log"));
    assert_eq!(mode(&log.unwrap().path()), 0o640);
    for e in std::fs::read_dir(&cdir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".json") {
            assert_eq!(mode(&e.path()), 0o600, "{n}");
        }
    }
    assert_eq!(mode(&run.join(&id).join("config.json")), 0o600);
    let sock = d.socket();
    assert_eq!(mode(&sock), 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&sock).unwrap()), 4242);

    // Every file and directory under both roots, the running root's too.
    let mut all = vec![data.clone(), run.clone()];
    walk(&data, &mut all);
    walk(&run, &mut all);
    assert!(all.iter().any(|p| p.ends_with("merged/bin/busybox")), "the walk reached the running root");
    let list: String = all.iter().map(|p| format!("{}\n", p.display())).collect();
    let reached = as_nobody(
        r#"while read -r p; do
             if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "listed $p";
             elif [ -x "$p" ] || [ -f "$p" ]; then head -c1 "$p" >/dev/null 2>&1 && echo "read $p"; fi
           done"#,
        &list,
        65534,
    );
    assert!(reached.is_empty(), "nobody reached:\n{reached}");
    // No binary of a layer or of a running root can be run.
    let bins: String =
        all.iter().filter(|p| p.ends_with("bin/busybox")).map(|p| format!("{}\n", p.display())).collect();
    let ran = as_nobody(r#"while read -r p; do "$p" true 2>/dev/null && echo "ran $p"; done"#, &bins, 65534);
    assert!(ran.is_empty(), "nobody ran:\n{ran}");

    // The socket: not for nobody, but for the -G group; and never exposed
    // across restarts under umask 000, watched by a nobody that keeps trying.
    let ping = format!("curl -s -m 2 --unix-socket {} http://b/_ping", sock.display());
    assert_eq!(as_nobody(&ping, "", 65534), "");
    assert_eq!(as_nobody(&ping, "", 4242), "OK");
    let stop = d.dir.join("stop-watch");
    let watch = format!(
        "while [ ! -e {} ]; do curl -s -m 1 --unix-socket {} http://b/_ping && echo REACHED; done",
        stop.display(),
        sock.display()
    );
    let watcher = std::thread::spawn(move || as_nobody(&watch, "", 65534));
    d.umask = Some(0);
    for _ in 0..10 {
        d.crash();
        d.spawn();
        assert_eq!(mode(&sock), 0o660);
        assert_eq!(mode(&run), 0o700);
    }
    std::fs::write(&stop, b"").unwrap();
    let seen = watcher.join().unwrap();
    assert!(!seen.contains("REACHED"), "nobody reached the socket during a restart");
    assert!(stdout(&d.docker(&["logs", &id])).contains("secret-log"));
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

fn inspect(d: &Daemon, id: &str, f: &str) -> String {
    d.ok(&["inspect", "-f", f, id]).trim().to_owned()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Nothing of any container is left in the runtime's state either.
fn assert_no_runtime_state(d: &Daemon) {
    let left: Vec<_> = std::fs::read_dir(d.dir.join("run/runtime"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).filter(|n| n != "@seccomp").collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime state left: {left:?}");
}

#[test]
fn a_lost_shim_takes_its_container_down_with_exit_137() {
    if !can_run("lost shim") {
        return;
    }
    let d = Daemon::start("lostshim");
    d.load_busybox();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    let pid: i32 = inspect(&d, &id, "{{.State.Pid}}").parse().unwrap();
    let shim: i32 =
        std::fs::read_to_string(d.dir.join("run").join(&id).join("shim.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    let t = std::time::Instant::now();
    while inspect(&d, &id, "{{.State.Status}}") != "exited" {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "still {}", inspect(&d, &id, "{{.State.Status}}"));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(inspect(&d, &id, "{{.State.ExitCode}}"), "137");
    assert!(!alive(pid), "the container's process outlived its shim");
    assert_no_runtime_state(&d);
    // Nothing stands in the way of the next start.
    d.ok(&["start", &id]);
    assert_eq!(inspect(&d, &id, "{{.State.Status}}"), "running");
    d.ok(&["rm", "-f", &id]);
    assert_no_runtime_state(&d);
    assert_clean(&d);
}

#[test]
fn a_daemon_killed_during_starts_strands_no_container() {
    if !can_run("crash during starts") {
        return;
    }
    let mut d = Daemon::start("crashstarts");
    d.load_busybox();
    let ids: Vec<String> = (0..20).map(|_| d.ok(&["create", "busybox", "sleep", "1000"]).trim().to_owned()).collect();
    let sock = d.socket();
    let starters: Vec<_> = ids
        .iter()
        .map(|id| {
            let (id, sock) = (id.clone(), sock.clone());
            std::thread::spawn(move || {
                std::process::Command::new(DOCKER)
                    .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                    .args(["start", &id])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    // Some starts are done, some are halfway, some have not begun: the
    // crash comes once a few bundles are being written.
    let t = std::time::Instant::now();
    let bundles = || std::fs::read_dir(d.dir.join("run")).map(|rd| rd.count()).unwrap_or(0);
    while bundles() < 12 && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(40));
    d.crash();
    for s in starters {
        let _ = s.join();
    }
    d.spawn();
    let mut running = 0;
    for id in &ids {
        let status = inspect(&d, id, "{{.State.Status}}");
        if status != "running" {
            let o = d.docker(&["start", id]);
            assert!(o.status.success(), "{id} was {status} and cannot start: {}", stderr(&o));
        } else {
            running += 1;
        }
        assert_eq!(inspect(&d, id, "{{.State.Status}}"), "running");
    }
    eprintln!("{running} of 20 were running after the restart");
    for id in &ids {
        d.ok(&["rm", "-f", id]);
    }
    assert_no_runtime_state(&d);
    let shims = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|p| {
            let cmd =
                String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).unwrap_or_default()).into_owned();
            cmd.contains("berth-shim") && cmd.contains(d.dir.to_str().unwrap()) && !cmd.contains("--standby")
        })
        .count();
    assert_eq!(shims, 0, "shims left");
    assert_clean(&d);
}

/// An export holds its view of a stopped container's root for as long as
/// its client reads; meanwhile another container stops and is removed.
/// The view must not keep that container's root busy.
#[test]
fn an_export_in_progress_keeps_no_other_root_busy() {
    use std::io::{Read, Write};
    if !can_run("export beside rm") {
        return;
    }
    let d = Daemon::start("exportrm");
    d.load_busybox();
    // 32 MiB in its layer: more than every buffer between berthd and here.
    let a = d.ok(&["create", "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=32"]).trim().to_owned();
    d.ok(&["start", "-a", &a]);
    let b = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    write!(s, "GET /containers/{a}/export HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").unwrap();
    let mut first = [0u8; 512];
    s.read_exact(&mut first).unwrap();
    // The export now waits on a full socket, its view mounted.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = d.docker(&["rm", "-f", &b]);
    assert!(o.status.success(), "rm of another container during an export: {}", stderr(&o));
    let o = d.docker(&["inspect", &b]);
    assert!(!o.status.success(), "{b} is still there: {}", stdout(&o));
    // Its files go from the trash while the export still runs.
    let trash = d.dir.join("data/trash");
    let t = std::time::Instant::now();
    while std::fs::read_dir(&trash).unwrap().count() > 0 && t.elapsed() < std::time::Duration::from_secs(3) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left: Vec<_> = std::fs::read_dir(&trash).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the removed container's files are held: {left:?}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let body = [&first[..], &rest].concat();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(200)]);
    assert!(body.len() > 32 << 20, "the export came whole ({} bytes)", body.len());
    d.ok(&["rm", &a]);
    assert_clean(&d);
}

fn daemon_pid(d: &Daemon) -> i32 {
    // The daemon is the process whose command line names this socket.
    let sock = d.socket().display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
                .into_owned();
            cmd.contains("berthd") && cmd.contains(&sock)
        })
        .expect("berthd's pid")
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|rd| rd.count()).unwrap_or(0)
}

/// A docker CLI command, killed after 20 s; its output and how long it took.
fn timed(d: &Daemon, args: &[&str]) -> (std::process::Output, std::time::Duration) {
    let t = std::time::Instant::now();
    let o = std::process::Command::new("timeout")
        .arg("20")
        .arg(DOCKER)
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .output()
        .unwrap();
    (o, t.elapsed())
}

#[test]
fn quiet_followers_leave_the_daemon_responsive() {
    use std::io::Write;
    if !can_run("600 followers") {
        return;
    }
    let d = Daemon::start("followers");
    d.load_busybox();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    let pid = daemon_pid(&d);
    // berthd's soft descriptor limit is raised to its hard one; containers
    // keep the limits it was started with (this test's own).
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(files[3], files[4], "{limits}");
    let mut own = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) };
    let got = d.ok(&["run", "--rm", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(got, format!("{}\n{}\n", own.rlim_cur, own.rlim_max));
    let before = open_fds(pid);
    let followers: Vec<_> = (0..600)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
            write!(s, "GET /containers/{id}/logs?follow=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: b\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(open_fds(pid) >= before + 600, "the followers are being served");
    for args in [&["images"][..], &["run", "--rm", "--network", "none", "busybox", "true"][..], &["ps"][..]] {
        let (o, took) = timed(&d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(took < std::time::Duration::from_secs(1), "{args:?} took {took:?} beside 600 followers");
    }
    // Followers whose clients leave are dropped at once, with their files.
    drop(followers);
    let t = std::time::Instant::now();
    while open_fds(pid) > before + 20 && t.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(open_fds(pid) <= before + 20, "{} descriptors open, {before} before the followers", open_fds(pid));
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = s.rsplit_once(") ").unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime, fields 14 and 15 of the whole line.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn idle_connections_past_the_descriptor_limit_do_not_wedge_the_daemon() {
    use std::io::Write;
    if !can_run("idle connections") {
        return;
    }
    let mut d = Daemon::start("idleconns");
    d.crash();
    d.nofile = Some(1024);
    d.spawn();
    let pid = daemon_pid(&d);
    // More connections than berthd has descriptors, none sending a byte,
    // and one that sends half a request.
    let mut idle: Vec<_> = (0..1100).map(|_| std::os::unix::net::UnixStream::connect(d.socket()).unwrap()).collect();
    idle[0].write_all(b"GET /_ping HTTP/1.1\r\nHost: b\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = cpu_ticks(pid) - t0;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(used < hz / 2, "berthd used {used} ticks of CPU in 2 s with its descriptors gone (it spins)");
    // The idle ones are closed after the header-read timeout, and then a
    // ping gets its answer.
    let t = std::time::Instant::now();
    let (status, body) = d.http("GET", "/_ping", b"");
    assert_eq!((status, body.as_str()), (200, "OK"), "after {:?}", t.elapsed());
    let mut buf = [0u8; 1];
    idle[0].set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    assert_eq!(std::io::Read::read(&mut idle[0], &mut buf).unwrap_or(0), 0, "the half-sent request was closed");
    drop(idle);
    assert_clean(&d);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A layer tar holding `files` (name, content).
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A docker-archive of `images` (tag, layers bottom first); each layer's
/// diff id is the sha256 of its bytes unless it is given.
/// An image of a docker-load archive: its tag and its layers, each a tar
/// with the diff id its config claims (its own digest when `None`).
type ArchiveImage<'a> = (&'a str, Vec<(Vec<u8>, Option<String>)>);

fn docker_archive(images: &[ArchiveImage<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let put = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut manifest = vec![];
    for (n, (tag, layers)) in images.iter().enumerate() {
        let mut paths = vec![];
        let mut diff_ids = vec![];
        for (i, (data, diff)) in layers.iter().enumerate() {
            let p = format!("img{n}-l{i}/layer.tar");
            put(&mut b, &p, data);
            paths.push(p);
            diff_ids.push(format!("sha256:{}", diff.clone().unwrap_or_else(|| sha256_hex(data))));
        }
        let cfg = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let cname = format!("{}.json", sha256_hex(&cfg));
        put(&mut b, &cname, &cfg);
        manifest.push(serde_json::json!({"Config": cname, "RepoTags": [tag], "Layers": paths}));
    }
    put(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.into_inner().unwrap()
}

fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = std::process::Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = c.wait_with_output().unwrap();
    w.join().unwrap();
    out.stdout
}

/// Directories under overlay/, the layers' and containers' (not `l/`).
fn overlay_dirs(d: &Daemon) -> usize {
    std::fs::read_dir(d.dir.join("data/overlay")).unwrap().flatten().filter(|e| e.file_name() != "l").count()
}

fn peak_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
}

#[test]
fn image_archives_load_as_docker_loads_them_and_bad_ones_leave_nothing() {
    if !can_run("image input") {
        return;
    }
    let mut d = Daemon::start("imginput");
    let load = |d: &Daemon, body: &[u8]| d.http("POST", "/images/load?quiet=1", body);
    let a = layer(&[("a.txt", b"A")]);
    let b = layer(&[("b.txt", b"B")]);
    let empty = layer(&[]);
    let archive = docker_archive(&[
        ("aba:1", vec![(a.clone(), None), (b.clone(), None), (a.clone(), None)]),
        ("ee:1", vec![(empty.clone(), None), (empty.clone(), None)]),
        ("top:1", vec![(a.clone(), None)]),
        ("deep:1", vec![(b.clone(), None), (a.clone(), None)]),
    ]);
    let (s, body) = load(&d, &archive);
    assert_eq!(s, 200, "{body}");
    for (tag, n) in [("aba:1", 3), ("ee:1", 2), ("top:1", 1), ("deep:1", 2)] {
        let layers = d.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", tag]);
        assert_eq!(layers.trim(), n.to_string(), "{tag}");
    }
    // The files of [A, B, A] are all there, through a container's root.
    let id = d.ok(&["create", "aba:1"]).trim().to_owned();
    let tar = std::process::Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .args(["export", &id])
        .output()
        .unwrap()
        .stdout;
    let mut names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt"]);
    d.ok(&["rm", &id]);
    let layer_dirs = overlay_dirs(&d);

    // Compressed archives load too.
    let c = layer(&[("c.txt", b"C")]);
    for (n, tool) in ["gzip", "xz", "zstd"].iter().enumerate() {
        let tag = format!("packed{n}:1");
        let (s, body) = load(&d, &compress(tool, &docker_archive(&[(&tag, vec![(c.clone(), None)])])));
        assert_eq!(s, 200, "{tool}: {body}");
        d.ok(&["image", "inspect", &tag]);
    }
    let layer_dirs = layer_dirs + 1;
    assert_eq!(overlay_dirs(&d), layer_dirs);

    // A long name that claims 128 MiB, gzipped to almost nothing: refused
    // with 400 before it is read, in bounded memory, with a short message.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(128 << 20);
    h.set_path("././@LongLink").unwrap_or(());
    h.set_cksum();
    let mut bomb = h.as_bytes().to_vec();
    bomb.resize(bomb.len() + (128 << 20) + 1024, b'a');
    let bomb = compress("gzip", &bomb);
    let pid = daemon_pid(&d);
    // As moby: a 200 whose stream ends in the error.
    let refused = |(s, body): (u16, String)| {
        assert_eq!(s, 200, "{}", &body[..body.len().min(300)]);
        let v: serde_json::Value = serde_json::from_str(body.lines().last().unwrap_or("")).unwrap();
        assert!(v["errorDetail"]["message"].is_string(), "{body}");
        body
    };
    let body = refused(load(&d, &docker_archive(&[("bomb:1", vec![(bomb, None)])])));
    assert!(body.len() < 4096, "a message of {} bytes", body.len());
    assert!(body.contains("over the limit"), "{body}");
    assert!(peak_rss_kib(pid) < 100 << 10, "berthd peaked at {} KiB", peak_rss_kib(pid));

    // Whiteouts that hide nothing, the directory itself or its parent.
    for wh in [".wh.", "x/.wh..", "x/.wh..."] {
        let bad = layer(&[("x/keep", b"k"), (wh, b"")]);
        let body = refused(load(&d, &docker_archive(&[("wh:1", vec![(bad, None)])])));
        assert!(body.contains("whiteout") || body.contains(".wh."), "{wh}: {body}");
    }
    // A layer whose content is not its diff id, and one that is no tar.
    refused(load(&d, &docker_archive(&[("lie:1", vec![(c.clone(), Some("0".repeat(64)))])])));
    refused(load(&d, &docker_archive(&[("junk:1", vec![(b"not a tar at all".repeat(100), None)])])));
    refused(load(&d, b"\x1f\x8b junk"));
    // The stock CLI says so and fails.
    let junk = d.dir.join("junk.tar");
    std::fs::write(&junk, b"not an archive").unwrap();
    let o = d.docker(&["load", "-i", junk.to_str().unwrap()]);
    assert!(!o.status.success() && !stderr(&o).is_empty(), "{o:?}");
    // None of them left an image, a staged layer or a spool, and what was
    // loaded before is whole.
    for tag in ["bomb:1", "wh:1", "lie:1", "junk:1"] {
        assert!(!d.docker(&["image", "inspect", tag]).status.success(), "{tag} was recorded");
    }
    assert_eq!(overlay_dirs(&d), layer_dirs, "staging directories left");
    assert_eq!(std::fs::read_dir(d.dir.join("data/tmp")).unwrap().count(), 0, "spools left");
    d.ok(&["image", "inspect", "aba:1"]);

    // A spool a crash left is gone at the next open.
    std::fs::write(d.dir.join("data/tmp/upload-left.tar"), b"partial").unwrap();
    d.crash();
    d.spawn();
    assert_eq!(std::fs::read_dir(d.dir.join("data/tmp")).unwrap().count(), 0);
    assert_clean(&d);
}

#[test]
fn docker_cp_resolves_parents_in_the_container_and_reaches_its_etc_files() {
    if !can_run("docker cp") {
        return;
    }
    let d = Daemon::start("cpparents");
    d.load_busybox();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--add-host",
            "db.test:10.1.2.3",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /opt/alt && ln -s /opt/alt /etc/alt && sleep 1000",
        ])
        .trim()
        .to_owned();
    let t = std::time::Instant::now();
    while !d.docker(&["exec", &id, "test", "-L", "/etc/alt"]).status.success() {
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A tar whose entry `alt/file` passes through the absolute symlink
    // /etc/alt: it lands in /opt/alt, as with Docker. A stopped container
    // without the link gets a directory /etc/alt.
    let tar = layer(&[("alt/file", b"through the link")]);
    d.ok(&["create", "--name", "stopped", "busybox", "true"]);
    for target in [id.as_str(), "stopped"] {
        let o = d.docker_in(&["cp", "-", &format!("{target}:/etc")], Some(&tar));
        assert!(o.status.success(), "{target}: {}", stderr(&o));
    }
    assert_eq!(d.ok(&["exec", &id, "cat", "/opt/alt/file"]), "through the link");
    assert!(!d.docker(&["exec", &id, "test", "-e", "/etc/opt"]).status.success(), "written under /etc/opt");
    let out = std::process::Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .args(["export", "stopped"])
        .output()
        .unwrap()
        .stdout;
    let names: Vec<String> = tar::Archive::new(&out[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "etc/alt/file"), "a stopped container without the link gets a directory");

    // The engine's own files come back with their content.
    let read = |path: &str| {
        let o = std::process::Command::new(DOCKER)
            .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
            .args(["cp", &format!("{id}:{path}"), "-"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{path}: {}", String::from_utf8_lossy(&o.stderr));
        let mut a = tar::Archive::new(&o.stdout[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        (e.path().unwrap().display().to_string(), s)
    };
    assert_eq!(read("/etc/hostname"), ("hostname".into(), format!("{}\n", &id[..12])));
    let (name, hosts) = read("/etc/hosts");
    assert_eq!(name, "hosts");
    assert!(hosts.contains("10.1.2.3\tdb.test") || hosts.contains("10.1.2.3 db.test"), "{hosts}");
    assert!(read("/etc/resolv.conf").1.contains("nameserver"));
    d.ok(&["rm", "-f", &id, "stopped"]);
    assert_clean(&d);
}

#[test]
fn small_compatibility_items() {
    use std::os::fd::FromRawFd;
    if !can_run("compatibility items") {
        return;
    }
    let d = Daemon::start("compat");
    d.load_busybox();
    // Content-Type as moby's CheckForJSON checks it.
    let raw = |ct: &str, body: &str| {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        let ct = if ct.is_empty() { String::new() } else { format!("Content-Type: {ct}\r\n") };
        let req = format!(
            "POST /containers/create HTTP/1.1\r\nHost: b\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        // The daemon may answer a bad header and close before it reads the
        // body: a write that finds the socket closed is no failure here.
        let _ = s.write_all(req.as_bytes());
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let body = r#"{"Image":"busybox","Cmd":["true"]}"#;
    let r = raw("text/plain", body);
    assert!(
        r.starts_with("HTTP/1.1 400")
            && r.contains("unsupported Content-Type header (text/plain): must be 'application/json'"),
        "{r}"
    );
    assert!(raw("", body).starts_with("HTTP/1.1 400"));
    assert!(raw("application/json; charset=utf-8", body).starts_with("HTTP/1.1 201"));
    // A malformed chunk is a bad request, not a body too large.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        s.write_all(b"POST /containers/create HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }
    // A volume name longer than a file name can be.
    let long = "v".repeat(300);
    let (s, b) = d.http("POST", "/volumes/create", format!(r#"{{"Name":"{long}"}}"#).as_bytes());
    assert_eq!(s, 400, "{b}");
    assert!(b.len() < 300, "the message repeats the name: {b}");
    // MemorySwap as Docker records it: twice the memory limit by default.
    let id = d.ok(&["create", "-m", "64m", "busybox", "true"]).trim().to_owned();
    assert_eq!(inspect(&d, &id, "{{.HostConfig.MemorySwap}}"), (128u64 << 20).to_string());
    d.ok(&["rm", &id]);
    // The CLI with a closed pipe for stderr ends with its exit code.
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors, owned from here on.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: as above; the read end closes at once.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
    // SAFETY: as above.
    let w = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
    let st = std::process::Command::new(berth_bin())
        .args(["-H", "unix:///nonexistent/berth.sock", "ps"])
        .stderr(std::process::Stdio::from(w))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1), "{st:?}");
    assert_clean(&d);
}

#[test]
fn a_full_disk_under_a_log_is_reported_once_and_loses_no_line_before_it() {
    if !can_run("full disk") {
        return;
    }
    let d = Daemon::start("diskfull");
    d.load_busybox();
    let script = "i=0; while [ $i -lt 20000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; \
                  touch /tmp/phase1; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after-the-disk-came-back; exec sleep 1000";
    let id = d.ok(&["create", "busybox", "sh", "-c", script]).trim().to_owned();
    // The container's directory on a file system of 256 KiB, its files
    // copied in first.
    let cdir = d.dir.join("data/containers").join(&id);
    let keep = d.dir.join("cdir-copy");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        assert!(std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success());
    };
    cp(&cdir, &keep);
    let mount = |opts: &str| {
        let st =
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs"]).arg(&cdir).status().unwrap();
        assert!(st.success());
    };
    mount("size=256k,mode=0710");
    for e in std::fs::read_dir(&keep).unwrap().flatten() {
        cp(&e.path(), &cdir);
    }
    d.ok(&["start", &id]);
    let t = std::time::Instant::now();
    while !d.docker(&["exec", &id, "test", "-e", "/tmp/phase1"]).status.success() {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the writer did not finish");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let shim_log = std::fs::read_to_string(d.dir.join("run").join(&id).join("shim.log")).unwrap();
    assert_eq!(shim_log.matches("output is lost until a write succeeds").count(), 1, "{shim_log}");
    assert!(shim_log.len() < 1024, "shim.log holds {} bytes", shim_log.len());
    let log_path = cdir.join(format!("{id}-json.log"));
    let whole = |p: &std::path::Path| {
        let text = std::fs::read_to_string(p).unwrap();
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("a torn line {l:?}: {e}"));
        }
        text.lines().count()
    };
    let before = whole(&log_path);
    assert!(before > 100, "{before} lines kept");
    // Room again: the next output is logged, and that is reported.
    let st = std::process::Command::new("mount").args(["-o", "remount,size=8m"]).arg(&cdir).status().unwrap();
    assert!(st.success());
    d.ok(&["exec", &id, "touch", "/tmp/go"]);
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&log_path).unwrap().contains("after-the-disk-came-back") {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "nothing logged after the disk had room");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(whole(&log_path), before + 1);
    let shim_log = std::fs::read_to_string(d.dir.join("run").join(&id).join("shim.log")).unwrap();
    assert!(shim_log.contains("written again after"), "{shim_log}");
    let logs = d.ok(&["logs", "--tail", "1", &id]);
    assert_eq!(logs, "after-the-disk-came-back\n");
    d.ok(&["kill", &id]);
    let c = std::ffi::CString::new(cdir.to_str().unwrap()).unwrap();
    // SAFETY: umount2 with a valid C string.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}
