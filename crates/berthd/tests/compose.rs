//! docker-compose 1.29 (docker-py) against berthd: a project whose service
//! waits for another's health check, its published port, a restart that
//! keeps the service's address, and `down` removing all of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

fn compose(d: &Daemon, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .args(["-p", "bt"])
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .output()
        .unwrap()
}

#[test]
fn a_compose_project_waits_for_health_and_keeps_addresses_across_restarts() {
    if !can_run("docker-compose") {
        return;
    }
    if Command::new("docker-compose").arg("version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "docker-compose is not installed");
        return;
    }
    let d = Daemon::start("compose");
    d.load_busybox();
    let dir = d.dir.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    let subnet = format!("{}.{}.{}.0/24", d.subnet[0], d.subnet[1] ^ 0x04, d.subnet[2]);
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  app:
    image: busybox
    command: httpd -f -p 8080 -h /etc
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/hostname"]
      interval: 1s
      retries: 5
  proxy:
    image: busybox
    command: sleep 1000
    depends_on:
      app:
        condition: service_healthy
    ports:
      - "80"
networks:
  default:
    ipam:
      config:
        - subnet: {subnet}
"#
        ),
    )
    .unwrap();
    let up = compose(&d, &dir, &["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "bt_app_1"]).trim(), "healthy");
    let ip = || d.ok(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"bt_default\").IPAddress}}", "bt_app_1"]);
    let before = ip();
    // The proxy reaches the app by name, before and after the app's restart.
    let fetch = || d.docker(&["exec", "bt_proxy_1", "wget", "-q", "-O", "-", "http://app:8080/hostname"]);
    assert!(fetch().status.success());
    let restarted = compose(&d, &dir, &["restart", "-t", "1", "app"]);
    assert!(restarted.status.success(), "{}", stderr(&restarted));
    assert_eq!(ip(), before, "the app's address changed with its restart");
    let t = std::time::Instant::now();
    while !fetch().status.success() {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "the proxy lost the app");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let down = compose(&d, &dir, &["down", "-t", "1"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    assert_clean(&d);
}

#[test]
fn compose_builds_two_services_and_runs_them() {
    if !can_run("docker-compose build") {
        return;
    }
    if Command::new("docker-compose").arg("version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "docker-compose is not installed");
        return;
    }
    let d = Daemon::start("composebuild");
    d.load_busybox();
    let dir = d.dir.join("project");
    for (name, text) in [
        (
            "docker-compose.yml",
            r#"version: "3.8"
services:
  web:
    build:
      context: ./web
      args:
        GREETING: hello from web
      cache_from:
        - busybox
    command: cat /greeting
  worker:
    build:
      context: ./worker
      dockerfile: Worker.dockerfile
      target: run
    command: cat /made
"#,
        ),
        ("web/Dockerfile", "FROM busybox\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\n"),
        (
            "worker/Worker.dockerfile",
            "FROM busybox AS make\nRUN echo made by worker > /made\nFROM busybox AS run\nCOPY --from=make /made /made\nFROM busybox AS unused\nRUN exit 1\n",
        ),
    ] {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let o = compose(&d, &dir, &["up", "--build", "--no-color"]);
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{all}");
    assert!(all.contains("hello from web"), "{all}");
    assert!(all.contains("made by worker"), "{all}");
    let o = compose(&d, &dir, &["down", "--rmi", "local"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_clean(&d);
}
