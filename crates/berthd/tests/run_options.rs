//! `docker run` options as the container sees them: limits, capabilities,
//! seccomp, read-only roots, --init, OOM kills, and the files of /etc.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn run(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    d.ok(&a)
}

#[test]
fn limits_capabilities_and_seccomp_are_applied() {
    if !can_run("run options") {
        return;
    }
    let d = Daemon::start("runopts");
    d.load_busybox();

    // Resource limits, read back from the container's own cgroups.
    let got = run(
        &d,
        &[
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "--cpuset-cpus",
            "0",
            "busybox",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
             /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpuset/cpuset.cpus",
        ],
    );
    assert_eq!(got.split_whitespace().collect::<Vec<_>>(), ["67108864", "50000", "100000", "20", "0"]);
    let got = run(&d, &["--ulimit", "nofile=512:1024", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(got, "512\n1024\n");

    // Capabilities: Docker's default set, none, all.
    let caps = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&["busybox", "grep", "CapEff", "/proc/self/status"]);
        let out = run(&d, &a);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(caps(&[]), 0xa80425fb);
    assert_eq!(caps(&["--cap-drop", "ALL"]), 0);
    assert_eq!(caps(&["--cap-drop", "ALL", "--cap-add", "CHOWN"]), 1);
    assert!(caps(&["--privileged"]).count_ones() > 30);
    let o = d.docker(&["run", "--rm", "--cap-drop", "ALL", "busybox", "chown", "1", "/tmp"]);
    assert!(!o.status.success());

    // --privileged: the host's devices, and mounts are allowed.
    let got = run(
        &d,
        &["--privileged", "busybox", "sh", "-c", "test -c /dev/kmsg && mkdir -p /m && mount -t tmpfs t /m && echo ok"],
    );
    assert_eq!(got, "ok\n");
    let got = run(&d, &["busybox", "sh", "-c", "test -e /dev/kmsg || echo absent"]);
    assert_eq!(got, "absent\n");

    // Seccomp: Docker's default filter; CAP_SYS_ADMIN widens it; unconfined
    // and a profile of one's own.
    let got =
        run(&d, &["busybox", "sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -n true 2>/dev/null; echo $?"]);
    assert_eq!(got, "Seccomp:\t2\n1\n");
    let got = run(&d, &["--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", "unshare -n true; echo $?"]);
    assert_eq!(got, "0\n");
    let got = run(&d, &["--security-opt", "seccomp=unconfined", "busybox", "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(got, "Seccomp:\t0\n");
    let profile = d.dir.join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let o = d.docker(&["run", "--rm", "--security-opt", &opt, "busybox", "mkdir", "/new"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"), "{o:?}");
    let o = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(stdout(&o), "NoNewPrivs:\t1\n");

    // A read-only root; tmpfs stays writable.
    let got = run(
        &d,
        &[
            "--read-only",
            "--tmpfs",
            "/scratch:size=1m",
            "busybox",
            "sh",
            "-c",
            "touch /x 2>/dev/null; echo $?; touch /scratch/x; echo $?; df -k /scratch | tail -1",
        ],
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(&lines[..2], ["1", "0"]);
    assert!(lines[2].split_whitespace().nth(1) == Some("1024"), "{got}");

    // /etc files of the container's own: hostname, hosts, resolv.conf.
    let got = run(
        &d,
        &[
            "-h",
            "box1",
            "--add-host",
            "db:10.1.2.3",
            "--dns",
            "10.9.9.9",
            "--dns-search",
            "example.test",
            "busybox",
            "sh",
            "-c",
            "hostname; grep db /etc/hosts; cat /etc/resolv.conf",
        ],
    );
    assert!(got.starts_with("box1\n10.1.2.3\tdb\n"), "{got}");
    assert!(got.contains("nameserver 10.9.9.9") && got.contains("search example.test"), "{got}");

    // A bind mount both ways, read-only when asked.
    let shared = d.dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("in"), "from host").unwrap();
    let v = format!("{}:/data", shared.display());
    let got = run(&d, &["-v", &v, "busybox", "sh", "-c", "cat /data/in; echo back > /data/out"]);
    assert_eq!(got, "from host");
    assert_eq!(std::fs::read_to_string(shared.join("out")).unwrap(), "back\n");
    let ro = format!("{}:/data:ro", shared.display());
    let o = d.docker(&["run", "--rm", "-v", &ro, "busybox", "touch", "/data/x"]);
    assert!(!o.status.success());
    assert_clean(&d);
}

#[test]
fn init_reaps_forwards_signals_and_oom_kills_are_reported() {
    if !can_run("init and oom") {
        return;
    }
    let d = Daemon::start("init");
    d.load_busybox();

    // --init: pid 1 is the init; orphans are reaped; the status passes through.
    let o = d.docker(&[
        "run", "--rm", "--init", "busybox", "sh", "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; sh -c 'sleep 0.1 &'; sleep 0.5; ps -o stat,comm | grep -c '^Z'; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    let out = stdout(&o);
    assert!(out.starts_with("/sbin/docker-init -- sh -c"), "{out}");
    assert!(out.ends_with("\n0\n"), "no zombies: {out}");
    // Signals reach the command, which as pid 1 would ignore SIGTERM.
    d.ok(&["run", "-d", "--name", "inited", "--init", "busybox", "sleep", "600"]);
    let t = Instant::now();
    d.ok(&["stop", "-t", "20", "inited"]);
    assert!(t.elapsed() < Duration::from_secs(10), "stop waited for the timeout");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}} {{.HostConfig.Init}}", "inited"]).trim(), "143 true");
    d.ok(&["rm", "inited"]);

    // OOM kill: 137 and OOMKilled.
    let o = d.docker(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog"]).trim(), "true 137");
    d.ok(&["rm", "hog"]);
    assert_clean(&d);
}
