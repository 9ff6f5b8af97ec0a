//! Host devices and the cgroup settings of create: `--device`,
//! `--device-cgroup-rule`, `--cgroup-parent`, the blkio device limits and
//! real-time CPU time, each seen from inside the container or in its cgroup
//! on the host, and echoed by inspect; and what cannot be had, refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::*;

/// The container's directory in the v1 hierarchy `controller`.
fn cgroup_dir(controller: &str, parent: &str, id: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/cgroup/{controller}{}/{id}", parent))
}

fn v1(controller: &str) -> bool {
    std::path::Path::new(&format!("/sys/fs/cgroup/{controller}/cgroup.procs")).exists()
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn devices_and_device_rules_reach_the_container_and_its_cgroup() {
    if !can_run("devices") {
        return;
    }
    let d = Daemon::start("devices");
    d.load_busybox();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--device",
            "/dev/null:/dev/mynull:rw",
            "--device",
            "/dev/fuse",
            "--device",
            "/dev/loop0:/dev/myloop:r",
            "--device-cgroup-rule",
            "c 42:* rmw",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_owned();
    // The nodes, with the host's numbers, at the paths asked for.
    let ls = d.ok(&["exec", &id, "ls", "-l", "/dev/mynull", "/dev/fuse", "/dev/myloop"]);
    let line = |p: &str| ls.lines().find(|l| l.ends_with(p)).unwrap_or_else(|| panic!("no {p} in {ls}")).to_owned();
    assert!(line("/dev/mynull").starts_with('c') && line("/dev/mynull").contains("1,   3"), "{ls}");
    assert!(line("/dev/fuse").contains("10, 229"), "{ls}");
    assert!(line("/dev/myloop").starts_with('b') && line("/dev/myloop").contains("7,   0"), "{ls}");
    d.ok(&["exec", &id, "sh", "-c", "echo x > /dev/mynull"]);
    // /dev/myloop can be read, as `r` allows, and not written.
    d.ok(&["exec", &id, "dd", "if=/dev/myloop", "of=/dev/null", "count=0"]);
    let o = d.docker(&["exec", &id, "sh", "-c", "echo x > /dev/myloop"]);
    assert!(!o.status.success() && stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));
    if v1("devices") {
        let list = read(cgroup_dir("devices", &d.cgroup, &id).join("devices.list"));
        for want in ["b 7:0 r", "c 10:229 rwm", "c 42:* rwm"] {
            assert!(list.lines().any(|l| l == want), "{want} not in {list}");
        }
    }
    let devs = d.ok(&["inspect", "-f", "{{json .HostConfig.Devices}} {{json .HostConfig.DeviceCgroupRules}}", &id]);
    assert!(
        devs.contains(r#"{"PathOnHost":"/dev/null","PathInContainer":"/dev/mynull","CgroupPermissions":"rw"}"#),
        "{devs}"
    );
    assert!(devs.contains(r#"["c 42:* rmw"]"#), "{devs}");
    // The berth CLI's flags say the same.
    let b =
        d.bok(&["run", "--rm", "--network", "none", "--device", "/dev/zero:/dev/z", "busybox", "ls", "-l", "/dev/z"]);
    assert!(b.contains("1,   5"), "{b}");
    // What cannot be had is refused before anything is made.
    for (args, msg) in [
        (&["--device", "/dev/berth-nonexistent"][..], "error gathering device information"),
        (&["--device", "/etc/hostname"], "not a device node"),
    ] {
        let mut a = vec!["create", "--network", "none"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "true"]);
        let o = d.docker(&a);
        assert!(!o.status.success() && stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    // The stock CLI checks rules itself; the daemon does too.
    let body = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"DeviceCgroupRules":["x 1:3 rwm"]}}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert!(s == 400 && b.contains("invalid device cgroup rule format: 'x 1:3 rwm'"), "{s} {b}");
    let o = d.berth(&["create", "--device-cgroup-rule", "c 1 rwm", "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("invalid device cgroup rule format"), "{}", stderr(&o));
    let body = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"DeviceRequests":[{"Driver":"","Count":-1,"Capabilities":[["gpu"]]}]}}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert!(s == 400 && b.contains("could not select device driver"), "{s} {b}");
    d.ok(&["rm", "-f", &id]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    assert_clean(&d);
}

#[test]
fn cgroup_parent_and_blkio_limits() {
    if !can_run("cgroup parent") {
        return;
    }
    let d = Daemon::start("cgparent");
    d.load_busybox();
    let parent = format!("{}/custom", d.cgroup);
    let id = d
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--cgroup-parent",
            &parent,
            "--device-read-bps",
            "/dev/loop0:1mb",
            "--device-write-iops",
            "/dev/loop0:100",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_owned();
    // Its cgroup is under the parent asked for, seen from inside and on the host.
    let own = d.ok(&["exec", &id, "cat", "/proc/self/cgroup"]);
    let memory = own.lines().find(|l| l.contains(":memory:")).unwrap_or_else(|| panic!("{own}"));
    assert!(memory.ends_with(&format!("{parent}/{id}")) || memory.ends_with(":/"), "{own}");
    assert!(cgroup_dir("memory", &parent, &id).is_dir(), "no cgroup under {parent}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.CgroupParent}}", &id]).trim(), parent);
    // The throttles, by the device's numbers.
    if v1("blkio") {
        let dir = cgroup_dir("blkio", &parent, &id);
        assert_eq!(read(dir.join("blkio.throttle.read_bps_device")).trim(), "7:0 1048576");
        assert_eq!(read(dir.join("blkio.throttle.write_iops_device")).trim(), "7:0 100");
    }
    let bps = d.ok(&["inspect", "-f", "{{json .HostConfig.BlkioDeviceReadBps}}", &id]);
    assert_eq!(bps.trim(), r#"[{"Path":"/dev/loop0","Rate":1048576}]"#);
    // stats and top find it under its parent.
    let top = d.ok(&["top", &id]);
    assert!(top.contains("sleep 1000"), "{top}");
    d.ok(&["rm", "-f", &id]);
    assert!(!cgroup_dir("memory", &parent, &id).exists(), "its cgroup outlived it");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join(parent.trim_start_matches('/')));
    }
    // A parent that climbs out, a limit on what is not a block device, and a
    // weight the kernel cannot keep are refused.
    let o = d.docker(&["create", "--cgroup-parent", "/../../escape", "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("CgroupParent"), "{}", stderr(&o));
    let body =
        br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"BlkioDeviceReadBps":[{"Path":"/dev/null","Rate":1}]}}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert!(s == 400 && b.contains("/dev/null is not a block device"), "{s} {b}");
    let o =
        d.docker(&["run", "--rm", "--network", "none", "--blkio-weight-device", "/dev/loop0:300", "busybox", "true"]);
    let weighted = v1("blkio") && std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight_device").exists();
    if !weighted {
        assert!(!o.status.success() && stderr(&o).contains("weightDevice"), "{}", stderr(&o));
    }
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    assert_clean(&d);
}

#[test]
fn real_time_cpu_time_comes_from_the_daemon_s_budget() {
    if !can_run("real-time cpu") {
        return;
    }
    let rt = std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists();
    let d = Daemon::start_with("rt", &["--cpu-rt-runtime", "50000"]);
    d.load_busybox();
    if !rt {
        let o = d.docker(&["create", "--cpu-rt-runtime", "1000", "busybox", "true"]);
        assert!(!o.status.success() && stderr(&o).contains("real-time"), "{}", stderr(&o));
        return;
    }
    let id = d
        .ok(&["run", "-d", "--network", "none", "--cpu-rt-runtime", "10000", "busybox", "sleep", "1000"])
        .trim()
        .to_owned();
    let dir = cgroup_dir("cpu", &d.cgroup, &id);
    assert_eq!(read(dir.join("cpu.rt_runtime_us")).trim(), "10000");
    assert_eq!(read(PathBuf::from(format!("/sys/fs/cgroup/cpu{}/cpu.rt_runtime_us", d.cgroup))).trim(), "50000");
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.CpuRealtimeRuntime}}", &id]).trim(), "10000");
    // update changes it while it runs.
    d.ok(&["update", "--cpu-rt-runtime", "20000", &id]);
    assert_eq!(read(dir.join("cpu.rt_runtime_us")).trim(), "20000");
    // More than the daemon gives, or a runtime over the period, is refused.
    for (args, msg) in [
        (&["--cpu-rt-runtime", "60000"][..], "CpuRealtimeRuntime 60000 is more than"),
        (
            &["--cpu-rt-runtime", "2000", "--cpu-rt-period", "1000"],
            "cpu-rt-runtime cannot be higher than cpu-rt-period",
        ),
    ] {
        let mut a = vec!["create"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "true"]);
        let o = d.docker(&a);
        assert!(!o.status.success() && stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    let o = d.docker(&["update", "--cpu-rt-runtime", "90000", &id]);
    assert!(!o.status.success() && stderr(&o).contains("is more than"), "{}", stderr(&o));
    d.ok(&["rm", "-f", &id]);
    // A daemon without a budget gives none.
    let none = Daemon::start("rtnone");
    none.load_busybox();
    let o = none.docker(&["create", "--cpu-rt-runtime", "1000", "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("berthd --cpu-rt-runtime"), "{}", stderr(&o));
    assert_clean(&d);
    assert_clean(&none);
}
