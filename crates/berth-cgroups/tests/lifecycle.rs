//! A cgroup in every hierarchy of this host, on the real kernel: created
//! with children below it, joined, and destroyed whole; and the migration
//! lock primed from the calling process's own cgroup.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use berth_cgroups::{Cgroup, Hierarchies};

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "cgroup lifecycle test needs root under CI");
        eprintln!("skipping: needs root");
    }
    root
}

/// The test's cgroup, destroyed on drop whatever the test did.
struct Scratch(Cgroup);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

#[test]
fn destroy_removes_nested_cgroups_in_every_hierarchy() {
    if !can_run() {
        return;
    }
    let h = Hierarchies::detect().unwrap();
    let name = format!("/berth-test-lifecycle-{}", std::process::id());
    let top = Scratch(Cgroup::locate(&h, &name));
    let child = Cgroup::locate(&h, &format!("{name}/child"));
    child.create().unwrap();
    let grandchild = Cgroup::locate(&h, &format!("{name}/child/grandchild"));
    grandchild.create().unwrap();
    let dirs: Vec<_> = top.0.v1.iter().map(|(_, d)| d.clone()).chain(top.0.v2.clone()).collect();
    assert!(!dirs.is_empty());
    assert!(dirs.iter().all(|d| d.join("child/grandchild").is_dir()));

    // A process that lived in the grandchild and has just been reaped: its
    // cgroups may still be busy for a moment, which destroy waits out.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    grandchild.add(sleeper.id() as i32).unwrap();
    assert_eq!(grandchild.pids().unwrap(), vec![sleeper.id() as i32]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    top.0.destroy().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} left", d.display());
    }
    // Destroying what is gone already is fine.
    top.0.destroy().unwrap();
}

#[test]
fn own_procs_is_the_cgroup_the_caller_is_in() {
    if !can_run() {
        return;
    }
    let h = Hierarchies::detect().unwrap();
    let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let procs = h.own_procs().expect("a hierarchy to prime from");
    // A write of the caller's pid there is a migration that moves nothing.
    std::fs::write(&procs, std::process::id().to_string()).unwrap();
    assert_eq!(std::fs::read_to_string("/proc/self/cgroup").unwrap(), before, "the write moved the process");
}
