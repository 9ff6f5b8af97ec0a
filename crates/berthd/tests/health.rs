//! Health checks against berthd: statuses, streaks and the log, the start
//! period, timeouts, the image's HEALTHCHECK and its overrides, `ps` and
//! its filter, events, the actions on failure, and a daemon restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

fn health(d: &Daemon, name: &str) -> serde_json::Value {
    serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .State.Health}}", name])).unwrap()
}

fn status_is(want: &'static str) -> impl Fn(&str) -> bool {
    move |s: &str| s.trim() == want
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn checks_turn_healthy_then_unhealthy_with_log_events_and_ps() {
    if !can_run("health statuses") {
        return;
    }
    let d = Daemon::start("health");
    d.load_busybox();
    let t0 = now();
    d.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "hc",
        "--health-cmd",
        "echo probing; test -e /tmp/ok",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    let cfg = d.ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", "hc"]);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["Test"], serde_json::json!(["CMD-SHELL", "echo probing; test -e /tmp/ok"]), "{cfg}");
    assert_eq!((cfg["Interval"].as_i64(), cfg["Retries"].as_i64()), (Some(100_000_000), Some(2)), "{cfg}");
    // Failing from the start, it turns unhealthy after two runs.
    let fmt = "{{.State.Health.Status}}";
    until(&d, &["inspect", "-f", fmt, "hc"], status_is("unhealthy"));
    let h = health(&d, "hc");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["ExitCode"].as_i64(), last["Output"].as_str()), (Some(1), Some("probing\n")), "{h}");
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap(), "{last}");
    let ps = d.ok(&["ps", "--filter", "health=unhealthy", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("hc Up ") && ps.trim_end().ends_with("(unhealthy)"), "{ps}");
    // Passing: healthy at the next run, the streak back to 0.
    d.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    until(&d, &["inspect", "-f", fmt, "hc"], status_is("healthy"));
    assert_eq!(health(&d, "hc")["FailingStreak"], 0);
    let ps = d.ok(&["ps", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.trim_end().ends_with("(healthy)"), "{ps}");
    assert_eq!(d.ok(&["ps", "-q", "--filter", "health=unhealthy"]).trim(), "");
    assert_eq!(d.ok(&["ps", "-q", "--filter", "health=none"]).trim(), "");
    // The log keeps the last five; the checks' execs do not pile up.
    std::thread::sleep(Duration::from_millis(800));
    let h = health(&d, "hc");
    assert_eq!(h["Log"].as_array().unwrap().len(), 5, "{h}");
    assert!(h["Log"].as_array().unwrap().iter().all(|r| r["ExitCode"] == 0), "{h}");
    let execs = d.ok(&["inspect", "-f", "{{len .ExecIDs}}", "hc"]);
    // The user's `touch`, and at most the check running now, of some eight.
    assert!(execs.trim().parse::<u32>().unwrap() <= 2, "exec records pile up: {execs}");
    let checks = d.ok(&["exec", "hc", "sh", "-c", "ps -o args | grep -c '^/bin/sh -c echo probing' || true"]);
    assert!(checks.trim().parse::<u32>().unwrap() <= 1, "checks pile up: {checks}");
    // Each change of status is an event.
    let ev = d.ok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &(now() + 1).to_string(),
        "--filter",
        "container=hc",
        "--format",
        "{{.Action}}",
    ]);
    let changes: Vec<&str> = ev.lines().filter(|l| l.starts_with("health_status")).collect();
    assert_eq!(changes, ["health_status: unhealthy", "health_status: healthy"], "{ev}");
    // Paused, it is not checked; stopped, its last status stays.
    d.ok(&["pause", "hc"]);
    let before = health(&d, "hc")["Log"].clone();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(health(&d, "hc")["Log"], before, "a paused container was checked");
    d.ok(&["unpause", "hc"]);
    until(&d, &["inspect", "-f", "{{json .State.Health.Log}}", "hc"], |s| {
        serde_json::from_str::<serde_json::Value>(s).is_ok_and(|l| l[4]["End"].as_str() > before[4]["End"].as_str())
    });
    d.ok(&["stop", "-t", "0", "hc"]);
    assert_eq!(d.ok(&["inspect", "-f", fmt, "hc"]).trim(), "healthy");
    // A start begins again at "starting".
    d.ok(&["start", "hc"]);
    let s = d.ok(&["inspect", "-f", "{{.State.Health.Status}} {{.State.Health.FailingStreak}}", "hc"]);
    assert!(s.trim() == "starting 0" || s.trim() == "healthy 0", "{s}");
    // No check, no Health.
    d.ok(&["run", "-d", "--network", "none", "--name", "plain", "busybox", "sleep", "1000"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .State.Health}}", "plain"]).trim(), "null");
    assert_eq!(d.ok(&["ps", "--filter", "health=none", "--format", "{{.Names}}"]).trim(), "plain");
    d.ok(&["rm", "-f", "hc", "plain"]);
    assert_clean(&d);
}

#[test]
fn start_period_timeouts_and_the_image_s_healthcheck() {
    if !can_run("health periods") {
        return;
    }
    let d = Daemon::start("healthimg");
    d.load_busybox();
    // Failures in the start period do not count.
    d.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "slow",
        "--health-cmd",
        "false",
        "--health-interval",
        "100ms",
        "--health-start-interval",
        "100ms",
        "--health-start-period",
        "2s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    let h = health(&d, "slow");
    assert_eq!((h["Status"].as_str(), h["FailingStreak"].as_i64()), (Some("starting"), Some(0)), "{h}");
    assert!(!h["Log"].as_array().unwrap().is_empty(), "not checked at the start interval: {h}");
    until(&d, &["inspect", "-f", "{{.State.Health.Status}}", "slow"], status_is("unhealthy"));

    // A check that outlives its timeout fails with -1 and is killed.
    d.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "hangs",
        "--health-cmd",
        "echo started; sleep 30",
        "--health-timeout",
        "300ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    until(&d, &["inspect", "-f", "{{.State.Health.Status}}", "hangs"], status_is("unhealthy"));
    let r = health(&d, "hangs")["Log"][0].clone();
    assert_eq!(r["ExitCode"], -1, "{r}");
    assert_eq!(r["Output"], "Health check exceeded timeout (300ms): started\n", "{r}");
    std::thread::sleep(Duration::from_millis(500));
    let sleepers = d.ok(&["exec", "hangs", "sh", "-c", "ps -o args | grep -c '^sleep 30' || true"]);
    assert!(sleepers.trim().parse::<u32>().unwrap() <= 1, "killed checks pile up: {sleepers}");

    // The image's HEALTHCHECK is inherited, overridden field by field, and
    // turned off by --no-healthcheck.
    d.ok(&["run", "-d", "--network", "none", "--name", "base", "busybox", "sleep", "1000"]);
    d.ok(&["commit", "--change", "HEALTHCHECK --interval=100ms --retries=4 CMD test -e /bin/sh", "base", "checked:1"]);
    let img = d.ok(&["image", "inspect", "-f", "{{json .Config.Healthcheck}}", "checked:1"]);
    assert!(img.contains(r#""Test":["CMD-SHELL","test -e /bin/sh"]"#), "{img}");
    d.ok(&["run", "-d", "--network", "none", "--name", "inherits", "checked:1", "sleep", "1000"]);
    until(&d, &["inspect", "-f", "{{.State.Health.Status}}", "inherits"], status_is("healthy"));
    d.ok(&["run", "-d", "--network", "none", "--name", "over", "--health-retries", "9", "checked:1", "sleep", "1000"]);
    let cfg = d.ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", "over"]);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["Test"], serde_json::json!(["CMD-SHELL", "test -e /bin/sh"]), "{cfg}");
    assert_eq!((cfg["Retries"].as_i64(), cfg["Interval"].as_i64()), (Some(9), Some(100_000_000)), "{cfg}");
    d.ok(&["run", "-d", "--network", "none", "--name", "off", "--no-healthcheck", "checked:1", "sleep", "1000"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", "off"]).trim(), r#"["NONE"]"#);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.ok(&["inspect", "-f", "{{json .State.Health}}", "off"]).trim(), "null");
    d.ok(&["rm", "-f", "slow", "hangs", "base", "inherits", "over", "off"]);
    d.ok(&["rmi", "checked:1"]);
    assert_clean(&d);
}

#[test]
fn unhealthy_containers_are_restarted_killed_or_stopped_on_request() {
    if !can_run("health on failure") {
        return;
    }
    let d = Daemon::start("healthact");
    d.load_busybox();
    let run = |name: &str, action: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--network", "none", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--health-cmd",
            "test ! -e /tmp/bad",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "--health-on-failure",
            action,
            "busybox",
            "sh",
            "-c",
            "touch /tmp/bad; sleep 1000",
        ]);
        d.bok(&args);
    };
    // restart: the container runs again, started anew, checked again.
    run("re", "restart", &[]);
    let first = d.ok(&["inspect", "-f", "{{.State.StartedAt}}", "re"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.Config.HealthcheckOnFailureAction}}", "re"]).trim(), "restart");
    until(&d, &["inspect", "-f", "{{.State.StartedAt}}", "re"], |s| !s.is_empty() && s != first);
    until(&d, &["inspect", "-f", "{{.State.Status}}", "re"], status_is("running"));
    // kill: SIGKILL, and the restart policy still applies.
    run("ki", "kill", &["--restart", "on-failure:1"]);
    until(&d, &["inspect", "-f", "{{.RestartCount}}", "ki"], status_is("1"));
    until(&d, &["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ki"], status_is("exited 137"));
    // stop: as the user's stop, which the policy leaves stopped.
    run("st", "stop", &["--restart", "always"]);
    until(&d, &["inspect", "-f", "{{.State.Status}}", "st"], status_is("exited"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "st"]).trim(), "exited 0");
    d.ok(&["rm", "-f", "re", "ki", "st"]);
    assert_clean(&d);
}

#[test]
fn checks_go_on_after_a_daemon_restart() {
    if !can_run("health across restarts") {
        return;
    }
    let mut d = Daemon::start("healthrs");
    d.load_busybox();
    d.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "kept",
        "--health-cmd",
        "test ! -e /tmp/bad",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    until(&d, &["inspect", "-f", "{{.State.Health.Status}}", "kept"], status_is("healthy"));
    d.crash();
    d.spawn();
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "kept"]).trim(), "healthy");
    d.ok(&["exec", "kept", "touch", "/tmp/bad"]);
    until(&d, &["inspect", "-f", "{{.State.Health.Status}}", "kept"], status_is("unhealthy"));
    d.ok(&["rm", "-f", "kept"]);
    assert_clean(&d);
}

#[test]
fn bad_checks_are_refused() {
    if !can_run("bad health checks") {
        return;
    }
    let d = Daemon::start("healthbad");
    d.load_busybox();
    let create = |hc: &str| {
        let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"Healthcheck":{hc}}}"#);
        d.http("POST", "/containers/create", body.as_bytes())
    };
    for (hc, msg) in [
        (r#"{"Test":["CMD","true"],"Interval":999}"#, "Interval in Healthcheck cannot be less than 1ms"),
        (r#"{"Test":["CMD","true"],"Timeout":-5}"#, "Timeout in Healthcheck cannot be less than 1ms"),
        (r#"{"Test":["CMD","true"],"Retries":-1}"#, "Retries in Healthcheck cannot be negative"),
        (r#"{"Test":["RUN","true"]}"#, "unknown Healthcheck type"),
        (r#"{"Test":["CMD-SHELL"]}"#, "has no command"),
        (r#"{"Test":"CMD true"}"#, "invalid type: string"),
    ] {
        let (s, b) = create(hc);
        assert_eq!(s, 400, "{hc}: {b}");
        assert!(b.contains(msg), "{hc}: {b}");
    }
    let body = br#"{"Image":"busybox","Cmd":["true"],"HealthcheckOnFailureAction":"reboot"}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("HealthcheckOnFailureAction"), "{b}");
    let (s, b) = d.http("GET", "/containers/json?filters=%7B%22health%22%3A%5B%22sick%22%5D%7D", b"");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("Unrecognised filter value for health: sick"), "{b}");
    for args in [
        &["run", "--no-healthcheck", "--health-cmd", "true", "busybox", "true"][..],
        &["run", "--health-interval", "soon", "busybox", "true"],
        &["run", "--health-timeout", "-1s", "busybox", "true"],
        &["run", "--health-on-failure", "reboot", "--health-cmd", "true", "busybox", "true"],
    ] {
        let o = d.berth(args);
        assert!(!o.status.success(), "berth {args:?} passed");
        assert_eq!(o.status.code(), Some(125), "berth {args:?}: {}", stderr(&o));
    }
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "a refused container was made");
    assert_clean(&d);
}
