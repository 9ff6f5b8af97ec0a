//! Device rules on cgroup v2, on the real kernel: the program berth attaches
//! decides what a process in the cgroup may open and mknod.
//!
//! The test mounts its own view of the unified hierarchy, so it runs on pure
//! v2, on hybrid hosts (whose v2 hierarchy has no controllers, which device
//! programs do not need) and on v1 hosts whose kernel has cgroup2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_cgroups::{Cgroup, DeviceRule, Resources};

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "device program test needs root under CI");
        eprintln!("skipping: needs root");
    }
    root
}

/// A private cgroup2 mount with one child cgroup, and a scratch directory;
/// all removed on drop, whatever the test did.
struct V2Mount {
    mnt: PathBuf,
    cg: Cgroup,
    scratch: PathBuf,
}

impl V2Mount {
    fn new(tag: &str) -> V2Mount {
        let mnt = std::env::temp_dir().join(format!("berth-cg2-mnt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&mnt).unwrap();
        let ok = Command::new("mount").args(["-t", "cgroup2", "none"]).arg(&mnt).status().unwrap().success();
        assert!(ok, "mounting cgroup2 on {}", mnt.display());
        let cg = Cgroup { v1: vec![], v2: Some(mnt.join(format!("berth-test-dev-{tag}-{}", std::process::id()))) };
        let scratch = std::env::temp_dir().join(format!("berth-cg2-scratch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        V2Mount { mnt, cg, scratch }
    }

    fn probe(&self) -> Vec<String> {
        probe(&self.cg.v2.as_ref().unwrap().join("cgroup.procs"), &self.scratch)
    }
}

impl Drop for V2Mount {
    fn drop(&mut self) {
        let _ = self.cg.destroy();
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn rule(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
    DeviceRule { allow, kind, major, minor, access: access.into() }
}

/// Run the checks in a shell that first moves itself into the cgroup; one
/// line per check, `name ok` or `name denied`. Error output goes to a file,
/// since /dev/null itself may be denied.
fn probe(procs: &Path, scratch: &Path) -> Vec<String> {
    let script = format!(
        "echo $$ > {procs}
        check() {{ if ( eval \"$2\" ) 2>>{errors}; then echo \"$1 ok\"; else echo \"$1 denied\"; fi; }}
        check null-read ': </dev/null'
        check null-write ': >/dev/null'
        check zero-read ': </dev/zero'
        check zero-write ': >/dev/zero'
        check full-read ': </dev/full'
        check mknod-full 'mknod {node} c 1 7'
        rm -f {node}",
        procs = procs.display(),
        node = scratch.join("full").display(),
        errors = scratch.join("errors").display(),
    );
    let out = Command::new("/bin/sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn device_program_enforces_and_replaces_rules() {
    if !can_run() {
        return;
    }
    let m = V2Mount::new("rules");
    m.cg.create().unwrap();
    let deny_list = Resources {
        devices: vec![
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', Some(1), Some(5), "r"),
        ],
        ..Default::default()
    };
    m.cg.apply(&deny_list).unwrap();
    let seen = m.probe();
    assert_eq!(
        seen,
        ["null-read ok", "null-write ok", "zero-read ok", "zero-write denied", "full-read denied", "mknod-full denied"]
    );

    // An update replaces the program instead of adding to it.
    let allow_mode = Resources { devices: vec![rule(false, 'c', Some(1), Some(3), "w")], ..Default::default() };
    m.cg.apply(&allow_mode).unwrap();
    let seen = m.probe();
    assert_eq!(
        seen,
        ["null-read ok", "null-write denied", "zero-read ok", "zero-write ok", "full-read ok", "mknod-full ok"]
    );

    // Rules that restrict nothing leave no program behind.
    m.cg.apply(&Resources { devices: vec![rule(true, 'a', None, None, "rwm")], ..Default::default() }).unwrap();
    assert!(m.probe().iter().all(|l| l.ends_with(" ok")));
}

#[test]
fn invalid_rules_attach_nothing() {
    if !can_run() {
        return;
    }
    let m = V2Mount::new("bad");
    m.cg.create().unwrap();
    let bad = Resources {
        devices: vec![rule(false, 'a', None, None, "rwm"), rule(true, 'c', Some(1), Some(3), "rwx")],
        ..Default::default()
    };
    let err = m.cg.apply(&bad).unwrap_err();
    assert!(err.to_string().contains("device access"), "{err}");
    assert!(m.probe().iter().all(|l| l.ends_with(" ok")));
}
