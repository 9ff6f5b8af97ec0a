//! Restart policies against berthd: on-failure with a limit, always until
//! stopped, and what the daemon starts again after a crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn restart_policies_restart_with_back_off_until_stopped() {
    if !can_run("restart") {
        return;
    }
    let d = Daemon::start("restart");
    d.load_busybox();

    // on-failure:2 — two restarts, then it stays exited with its code.
    d.ok(&["run", "-d", "--name", "fails", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo try; exit 3"]);
    let fmt = "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}";
    until(&d, &["inspect", "-f", fmt, "fails"], |s| s.trim() == "exited 2 3");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.ok(&["inspect", "-f", fmt, "fails"]).trim(), "exited 2 3");
    assert_eq!(d.ok(&["logs", "fails"]), "try\ntry\ntry\n");
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "fails"]).trim(), "on-failure");

    // on-failure does not restart a success.
    d.ok(&["run", "-d", "--name", "succeeds", "--restart", "on-failure", "busybox", "true"]);
    until(&d, &["inspect", "-f", "{{.State.Status}}", "succeeds"], |s| s.trim() == "exited");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.ok(&["inspect", "-f", "{{.RestartCount}}", "succeeds"]).trim(), "0");

    // always: restarted whatever the code; `docker wait` does not return
    // while it restarts; stop ends it for good.
    d.ok(&["run", "-d", "--name", "loops", "--restart", "always", "busybox", "sh", "-c", "sleep 0.1"]);
    until(&d, &["inspect", "-f", "{{.RestartCount}}", "loops"], |s| s.trim().parse::<i32>().unwrap_or(0) >= 3);
    d.ok(&["stop", "-t", "1", "loops"]);
    let after = d.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "loops"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "loops"]), after);
    assert!(after.starts_with("exited "), "{after}");

    // A fatal kill turns the policy off too; a harmless signal does not.
    d.ok(&["run", "-d", "--name", "killed", "--restart", "always", "busybox", "sleep", "600"]);
    d.ok(&["kill", "killed"]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "killed"]).trim(), "exited");

    // Bad policies.
    let o = d.docker(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    let o = d.docker(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");

    for c in ["fails", "succeeds", "loops", "killed"] {
        d.ok(&["rm", "-f", c]);
    }
    assert_clean(&d);
}

#[test]
fn the_daemon_restarts_containers_by_policy_after_a_crash() {
    if !can_run("restart after crash") {
        return;
    }
    let mut d = Daemon::start("restart-crash");
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "svc", "--restart", "unless-stopped", "busybox", "sleep", "600"]);
    d.ok(&["run", "-d", "--name", "held", "--restart", "unless-stopped", "busybox", "sleep", "600"]);
    d.ok(&["run", "-d", "--name", "ever", "--restart", "always", "busybox", "sleep", "600"]);
    d.ok(&["stop", "-t", "0", "held"]);
    d.ok(&["stop", "-t", "0", "ever"]);
    let pid: i32 = d.ok(&["inspect", "-f", "{{.State.Pid}}", "svc"]).trim().parse().unwrap();

    d.crash();
    // The container dies while no daemon watches it.
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    d.spawn();

    let fmt = "{{.State.Status}} {{.State.Pid}}";
    let now = until(&d, &["inspect", "-f", fmt, "svc"], |s| s.starts_with("running ") && !s.contains(&pid.to_string()));
    assert!(now.trim() != format!("running {pid}"));
    assert_eq!(d.ok(&["inspect", "-f", "{{.RestartCount}}", "svc"]).trim(), "1");
    // always comes back even after a stop; unless-stopped does not.
    until(&d, &["inspect", "-f", "{{.State.Status}}", "ever"], |s| s.trim() == "running");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "held"]).trim(), "exited");

    for c in ["svc", "held", "ever"] {
        d.ok(&["rm", "-f", c]);
    }
    assert_clean(&d);
}
