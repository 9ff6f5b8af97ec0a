//! Load: a hundred containers created, then started, at once through the
//! Engine API, all running together, then all removed at once, leaving no
//! mount, cgroup, shim, record or exec-root entry behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_clean, can_run, Daemon};
use serde_json::Value;

const N: usize = 100;

/// berth-shim processes of this daemon's containers (not the standby).
fn shims(d: &Daemon) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|p| {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("berth-shim") && cmd.contains(d.dir.to_str().unwrap()) && !cmd.contains("--standby")
        })
        .count()
}

#[test]
fn a_hundred_containers_start_and_go_in_parallel() {
    if !can_run("100 parallel containers") {
        return;
    }
    let d = Daemon::start("load");
    d.load_busybox();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let d = &d;
                s.spawn(move || {
                    let body = format!(
                        r#"{{"Image":"busybox","Cmd":["sleep","600"],"Labels":{{"load":"{i}"}},"HostConfig":{{"Init":true}}}}"#
                    );
                    let (code, out) = d.http("POST", &format!("/containers/create?name=load-{i}"), body.as_bytes());
                    assert_eq!(code, 201, "create {i}: {out}");
                    serde_json::from_str::<Value>(&out).unwrap()["Id"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Idle shims release their code pages while each container's init,
    // forked from its shim, still waits to be started.
    std::thread::sleep(std::time::Duration::from_millis(600));
    std::thread::scope(|s| {
        for id in &ids {
            let d = &d;
            s.spawn(move || {
                let (code, out) = d.http("POST", &format!("/containers/{id}/start"), b"");
                assert_eq!(code, 204, "start {id}: {out}");
            });
        }
    });
    assert_eq!(ids.len(), N);
    let (_, body) = d.http("GET", "/containers/json?filters=%7B%22label%22%3A%5B%22load%22%5D%7D", b"");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), N, "all running");
    assert!(list.iter().all(|c| c["State"] == "running"), "{body}");
    // Each has a live shim and a process of its own.
    let pids: std::collections::HashSet<i64> = ids
        .iter()
        .map(|id| {
            let (_, b) = d.http("GET", &format!("/containers/{id}/json"), b"");
            serde_json::from_str::<Value>(&b).unwrap()["State"]["Pid"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(pids.len(), N);
    assert!(pids.iter().all(|p| *p > 0 && std::path::Path::new(&format!("/proc/{p}")).exists()));
    assert_eq!(shims(&d), N, "one shim per container");

    std::thread::scope(|s| {
        for id in &ids {
            let d = &d;
            s.spawn(move || {
                let (code, out) = d.http("DELETE", &format!("/containers/{id}?force=1"), b"");
                assert_eq!(code, 204, "remove {id}: {out}");
            });
        }
    });
    let (_, body) = d.http("GET", "/containers/json?all=1", b"");
    assert_eq!(body.trim(), "[]");
    assert!(pids.iter().all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()), "processes left");
    let records = std::fs::read_dir(d.dir.join("data/containers")).unwrap().count();
    assert_eq!(records, 0, "container records left");
    assert_eq!(shims(&d), 0, "shims left");
    assert_clean(&d);
}
