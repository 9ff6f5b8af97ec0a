//! Lifecycle semantics SDKs rely on: kill that returns once the container
//! is down, starts right after exits, waits on containers a policy
//! restarts, commits of containers that exit meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn kill_returns_once_the_container_is_down() {
    if !can_run("kill then rm") {
        return;
    }
    let d = Daemon::start("killrm");
    d.load_busybox();
    // Raw requests, as an SDK sends them: no CLI start-up between them;
    // a hundred pairs, as the SDK's suite runs them.
    let body = br#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none"}}"#;
    for i in 0..100 {
        let (s, b) = d.http("POST", "/containers/create", body);
        assert_eq!(s, 201, "{b}");
        let id = serde_json::from_str::<serde_json::Value>(&b).unwrap()["Id"].as_str().unwrap().to_owned();
        let (s, b) = d.http("POST", &format!("/containers/{id}/start"), b"");
        assert_eq!(s, 204, "{b}");
        let kill = match i % 3 {
            0 => format!("/containers/{id}/kill"),
            1 => format!("/containers/{id}/kill?signal=KILL"),
            _ => format!("/containers/{id}/kill?signal=9"),
        };
        let (s, b) = d.http("POST", &kill, b"");
        assert_eq!(s, 204, "{b}");
        let (s, b) = d.http("DELETE", &format!("/containers/{id}"), b"");
        assert_eq!(s, 204, "rm right after kill ({i}): {b}");
    }
    // A paused container takes no signal: Docker's 409, at once.
    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    d.ok(&["pause", &id]);
    let (s, b) = d.http("POST", &format!("/containers/{id}/kill"), b"");
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("is paused. Unpause the container before stopping or killing"), "{b}");
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

#[test]
fn a_start_right_after_an_exit_waits_for_its_teardown() {
    if !can_run("start after exit") {
        return;
    }
    let d = Daemon::start("startexit");
    d.load_busybox();
    let id = d.ok(&["create", "busybox", "true"]).trim().to_owned();
    for i in 0..30 {
        let (s, b) = d.http("POST", &format!("/containers/{id}/start"), b"");
        assert_eq!(s, 204, "start {i}: {b}");
        // The next start as soon as the record says "exited": the exit's
        // teardown may still be under way then.
        let t = Instant::now();
        loop {
            let (_, b) = d.http("GET", &format!("/containers/{id}/json"), b"");
            if b.contains(r#""Status":"exited""#) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{b}");
        }
    }
    let (s, b) = d.http("POST", &format!("/containers/{id}/wait"), b"");
    assert_eq!((s, b.contains(r#""StatusCode":0"#)), (200, true), "{b}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id]).trim(), "0");
    d.ok(&["rm", &id]);
    assert_clean(&d);
}

#[test]
fn wait_returns_at_each_exit_of_a_restarting_container() {
    if !can_run("wait with a restart policy") {
        return;
    }
    let d = Daemon::start("waitrestart");
    d.load_busybox();
    let id = d.ok(&["run", "-d", "--restart", "always", "busybox", "sh", "-c", "sleep 0.3; exit 3"]).trim().to_owned();
    for _ in 0..2 {
        let t = Instant::now();
        let (s, b) = d.http("POST", &format!("/containers/{id}/wait"), b"");
        assert_eq!(s, 200, "{b}");
        assert!(b.contains(r#""StatusCode":3"#), "{b}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

#[test]
fn commit_of_a_container_that_exits_meanwhile_goes_ahead() {
    if !can_run("commit during exit") {
        return;
    }
    let d = Daemon::start("commitexit");
    d.load_busybox();
    for i in 0..5 {
        let id = d
            .ok(&["run", "-d", "busybox", "sh", "-c", &format!("echo {i} > /mark; sleep 0.{}", 2 + i)])
            .trim()
            .to_owned();
        let t = Instant::now();
        let mut n = 0;
        // Commit (with the pause) over and over until the container is gone.
        loop {
            let running = d.ok(&["inspect", "-f", "{{.State.Running}}", &id]).trim() == "true";
            let (s, b) = d.http("POST", &format!("/commit?container={id}&repo=committed&tag={i}-{n}"), b"{}");
            assert_eq!(s, 201, "commit {i}-{n}: {b}");
            n += 1;
            if !running || t.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        d.ok(&["rm", &id]);
        let out = d.ok(&["run", "--rm", &format!("committed:{i}-{}", n - 1), "cat", "/mark"]);
        assert_eq!(out, format!("{i}\n"));
    }
    assert_clean(&d);
}

#[test]
fn committed_images_record_their_parent() {
    if !can_run("commit parent") {
        return;
    }
    let d = Daemon::start("commitparent");
    d.load_busybox();
    let base = d.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).trim().to_owned();
    let id = d.ok(&["create", "busybox", "true"]).trim().to_owned();
    let child = d.ok(&["commit", &id, "child:1"]).trim().to_owned();
    d.ok(&["rm", &id]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Parent}}", "child:1"]).trim(), base);
    let (_, list) = d.http("GET", "/images/json", b"");
    assert!(list.contains(&format!(r#""ParentId":"{base}""#)), "{list}");
    // The parent stays while a child was made from it: by id a conflict
    // no force lifts; by name it is only untagged.
    let o = d.docker(&["rmi", "-f", &base]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("image has dependent child images"), "{}", stderr(&o));
    let o = d.docker(&["rmi", "busybox"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Untagged: busybox:latest"));
    d.ok(&["image", "inspect", &base]);
    // A prune takes neither while the child is named; then both go.
    let o = d.ok(&["image", "prune", "-f"]);
    assert!(!o.contains("Deleted"), "{o}");
    // Removing the child takes the parent it leaves without a name too, as
    // Docker's rmi does unless --no-prune.
    let out = d.ok(&["rmi", &child]);
    assert!(out.contains(&format!("Deleted: {base}")), "{out}");
    assert!(!d.docker(&["image", "inspect", &base]).status.success(), "the untagged parent was left");
    assert_clean(&d);
}
