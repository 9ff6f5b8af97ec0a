//! The OCI runtime spec of a container, built as Docker builds it: its
//! default mounts, namespaces, capabilities, masked and read-only paths and
//! device rules, then the container's own settings on top.

use std::path::Path;

use serde_json::{json, Value};

use crate::model::Container;
use crate::user::User;
use crate::{Error, Result};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability this kernel knows, for `--privileged` and `ALL`;
/// read once, as neither the kernel nor the daemon's bounding set change.
pub(crate) fn all_caps() -> &'static [String] {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALL.get_or_init(read_all_caps)
}

fn read_all_caps() -> Vec<String> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(NAMES.len() - 1);
    // As Docker: only what the daemon itself may hand on (its bounding
    // set), so a daemon in a restricted container still runs privileged
    // ones.
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|h| h.trim().to_owned())))
        .and_then(|h| u64::from_str_radix(&h, 16).ok())
        .unwrap_or(u64::MAX);
    NAMES
        .iter()
        .enumerate()
        .take(last + 1)
        .filter(|(i, _)| bounding & (1u64 << i) != 0)
        .map(|(_, n)| format!("CAP_{n}"))
        .collect()
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set after `--cap-add`, `--cap-drop` and `--privileged`.
pub fn capabilities(c: &Container) -> Result<Vec<String>> {
    let all = all_caps();
    if c.host.privileged {
        return Ok(all.to_vec());
    }
    let check = |n: &str| -> Result<String> {
        let name = cap_name(n);
        if name == "CAP_ALL" || all.contains(&name) {
            Ok(name)
        } else {
            Err(Error::Invalid(format!("unknown capability: {n:?}")))
        }
    };
    let adds: Vec<String> = c.host.cap_add.iter().map(|n| check(n)).collect::<Result<_>>()?;
    let drops: Vec<String> = c.host.cap_drop.iter().map(|n| check(n)).collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drops.iter().any(|d| d == "CAP_ALL") {
        vec![]
    } else {
        DEFAULT_CAPS.iter().map(|s| (*s).to_owned()).filter(|s| !drops.contains(s)).collect()
    };
    if adds.iter().any(|a| a == "CAP_ALL") {
        caps = all.iter().filter(|s| !drops.contains(s) || adds.contains(s)).cloned().collect();
    } else {
        for a in adds {
            if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    Ok(caps)
}

pub const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

/// Docker's size syntax for tmpfs and memory: bytes, or a number with
/// b, k, m, g (any case).
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'b' => 1i64,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return None,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

fn resources(c: &Container, nodes: &[(crate::devices::Node, String)]) -> Result<Value> {
    let r = &c.host.resources;
    let mut mem = serde_json::Map::new();
    if r.memory > 0 {
        mem.insert("limit".into(), json!(r.memory));
        // Docker's default swap is twice the memory limit.
        let swap = match r.memory_swap {
            0 => r.memory * 2,
            s => s,
        };
        mem.insert("swap".into(), json!(swap));
    }
    if r.memory_reservation > 0 {
        mem.insert("reservation".into(), json!(r.memory_reservation));
    }
    if r.oom_kill_disable {
        mem.insert("disableOOMKiller".into(), json!(true));
    }
    if let Some(v) = r.memory_swappiness {
        mem.insert("swappiness".into(), json!(v));
    }
    if r.kernel_memory_tcp != 0 {
        mem.insert("kernelTCP".into(), json!(r.kernel_memory_tcp));
    }
    let mut cpu = serde_json::Map::new();
    if r.nano_cpus > 0 {
        cpu.insert("period".into(), json!(100_000));
        cpu.insert("quota".into(), json!(r.nano_cpus / 10_000));
    }
    if r.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if r.cpu_realtime_period > 0 {
        cpu.insert("realtimePeriod".into(), json!(r.cpu_realtime_period));
    }
    if r.cpu_realtime_runtime != 0 {
        cpu.insert("realtimeRuntime".into(), json!(r.cpu_realtime_runtime));
    }
    let mut out = json!({
        "devices": if c.host.privileged {
            json!([{"allow": true, "access": "rwm"}])
        } else {
            json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
                {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
            ])
        },
    });
    // `--device` nodes, then `--device-cgroup-rule`s, after the defaults.
    if let Some(list) = out["devices"].as_array_mut() {
        for (n, access) in nodes {
            list.push(json!({"allow": true, "type": n.typ, "major": n.major, "minor": n.minor, "access": access}));
        }
        for rule in &c.host.device_cgroup_rules {
            list.push(crate::devices::cgroup_rule(rule)?);
        }
    }
    if !mem.is_empty() {
        out["memory"] = Value::Object(mem);
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = r.pids_limit.filter(|p| *p != 0) {
        out["pids"] = json!({"limit": if p < 0 { -1 } else { p }});
    }
    let mut blkio = crate::devices::block_io(r)?;
    if r.blkio_weight > 0 {
        blkio.insert("weight".into(), json!(r.blkio_weight));
    }
    if !blkio.is_empty() {
        out["blockIO"] = Value::Object(blkio);
    }
    Ok(out)
}

/// The rlimit name of a Docker ulimit name (`nofile` → `RLIMIT_NOFILE`).
fn rlimit(u: &crate::model::Ulimit) -> Value {
    json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard})
}

/// Paths in the container dir bound over /etc/hostname, hosts and resolv.conf.
#[derive(Debug)]
pub struct Etc<'a> {
    pub hostname: &'a Path,
    pub hosts: &'a Path,
    pub resolv: &'a Path,
    /// A /dev/shm on the host to bind (a shareable one, or a donor's).
    pub shm: Option<&'a Path>,
    /// Volume subpaths bound for this start, by destination.
    pub subpaths: &'a std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The variables of legacy links (`<ALIAS>_PORT…`), under the
    /// container's own.
    pub link_env: &'a [String],
}

/// What the daemon adds to every container.
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    pub cgroup_parent: &'a str,
    pub ulimits: &'a [crate::model::Ulimit],
    /// The static init mounted for `--init`.
    pub init: &'a Path,
    /// The lowest OOM score the daemon may give (see `Engine::oom_floor`).
    pub oom_floor: Option<i32>,
}

/// Where `--init` puts the init, as Docker does.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Every device node of the host, for `--privileged` (as Docker: not
/// those of /dev/pts, /dev/shm, /dev/mqueue or the console).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = vec![];
    let mut dirs = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
            let ft = m.file_type();
            if ft.is_dir() {
                let skip = ["pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev"];
                if !(dir == std::path::Path::new("/dev") && skip.iter().any(|s| e.file_name() == *s)) {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == std::path::Path::new("/dev/console") {
                continue;
            }
            let rdev = m.rdev();
            out.push(json!({
                "path": path.display().to_string(),
                "type": typ,
                "major": libc::major(rdev),
                "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777,
                "uid": m.uid(),
                "gid": m.gid(),
            }));
        }
    }
    out
}

/// The spec for `c`, whose root is mounted at `rootfs`.
pub fn build(c: &Container, rootfs: &Path, user: &User, etc: &Etc<'_>, d: &Defaults<'_>) -> Result<Value> {
    let caps = capabilities(c)?;
    let mut args: Vec<String> = c.config.entrypoint.iter().chain(&c.config.cmd).cloned().collect();
    if args.is_empty() {
        return Err(Error::Invalid("no command specified".into()));
    }
    if c.host.init && !c.pod_sandbox {
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", if c.host.privileged { "rw" } else { "ro" }]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["ro", "nosuid", "noexec", "nodev"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ];
    let shm = if c.host.shm_size > 0 { c.host.shm_size } else { 64 << 20 };
    let shm_size = format!("size={shm}");
    // `--ipc none`: a private IPC namespace and no /dev/shm, as Docker; the
    // host's IPC shares the host's /dev/shm.
    match (c.host.ipc_mode.as_str(), etc.shm) {
        ("none", _) => {}
        ("host", _) => mounts.push(mount("/dev/shm", "bind", "/dev/shm", &["rbind", "rprivate"])),
        (_, Some(shared)) => {
            mounts.push(mount("/dev/shm", "bind", &shared.display().to_string(), &["rbind", "rprivate"]))
        }
        _ => mounts.push(mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm_size])),
    }
    for (dest, path) in [("/etc/resolv.conf", etc.resolv), ("/etc/hostname", etc.hostname), ("/etc/hosts", etc.hosts)] {
        let mut m = mount(dest, "bind", &path.display().to_string(), &["rbind", "rprivate"]);
        if c.host.readonly_rootfs {
            m["options"] = json!(["rbind", "rprivate", "ro"]);
        }
        mounts.push(m);
    }
    // A mount of the user's in place of a default one replaces it (a
    // bind on /dev/shm, a volume on /etc/hosts).
    let (user_mounts, root_prop) = crate::mounts::spec_mounts(c, etc.subpaths)?;
    let taken: Vec<String> =
        user_mounts.iter().filter_map(|m| m["destination"].as_str()).map(crate::mounts::clean_path).collect();
    mounts.retain(|m| m["destination"].as_str().is_none_or(|d| !taken.iter().any(|t| t == d)));
    mounts.extend(user_mounts);
    if c.pod_sandbox {
        // A pod sandbox runs berth-init alone in its mount namespace, which
        // nothing else joins: /proc (for its sysctls) and /dev (for the
        // default nodes) are all it gets, and the masks that guard a
        // workload's view of /proc and /sys have nothing to guard.
        mounts.retain(|m| matches!(m["destination"].as_str(), Some("/proc" | "/dev")));
    }
    if c.host.init || c.pod_sandbox {
        mounts.push(mount(INIT_PATH, "bind", &d.init.display().to_string(), &["bind", "ro", "nosuid", "nodev"]));
    }
    // The links' variables first; the container's own win (moby's
    // CreateDaemonEnvironment).
    let mut env = etc.link_env.to_vec();
    if env.is_empty() {
        env.clone_from(&c.config.env);
    } else {
        crate::model::merge_env(&mut env, &c.config.env);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(1.min(env.len()), format!("HOSTNAME={}", c.config.hostname));
    }
    if c.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", if user.home.is_empty() { "/" } else { &user.home }));
    }
    let no_new_privs = c
        .host
        .security_opt
        .iter()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges=true" || o == "no-new-privileges:true");
    let mut ulimits: Vec<Value> = vec![];
    for u in d.ulimits.iter().filter(|d| !c.host.resources.ulimits.iter().any(|u| u.name == d.name)) {
        ulimits.push(rlimit(u));
    }
    ulimits.extend(c.host.resources.ulimits.iter().map(rlimit));
    let mut process = json!({
        "terminal": c.config.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": if c.config.working_dir.is_empty() { "/" } else { &c.config.working_dir },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs,
    });
    if let (Some((h, w)), true) = (c.host.console_size, c.config.tty) {
        process["consoleSize"] = json!({"height": h, "width": w});
    }
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if !ulimits.is_empty() {
        process["rlimits"] = json!(ulimits);
    }
    let oom = d.oom_floor.map_or(c.host.oom_score_adj, |f| c.host.oom_score_adj.max(f));
    if oom != 0 {
        process["oomScoreAdj"] = json!(oom);
    }
    // A namespace in host mode is left out: the container shares the
    // caller's. A container's to join gets its path at launch.
    let mut namespaces = vec![json!({"type": "mount"})];
    for (kind, mode) in [("uts", &c.host.uts_mode), ("pid", &c.host.pid_mode), ("ipc", &c.host.ipc_mode)] {
        if mode != "host" {
            namespaces.push(json!({"type": kind}));
        }
    }
    if c.host.network_mode != "host" {
        namespaces.push(json!({"type": "network"}));
    }
    if c.host.cgroupns_mode == "private" {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let nodes = crate::devices::nodes(c)?;
    let parent = if c.host.cgroup_parent.is_empty() { d.cgroup_parent } else { c.host.cgroup_parent.as_str() };
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources(c, &nodes)?,
        "cgroupsPath": cgroup_path(parent, &c.id),
    });
    // The paths asked for replace the defaults, privileged or not, as in
    // moby's WithMaskedPaths.
    match (&c.host.masked_paths, c.host.privileged || c.pod_sandbox) {
        (Some(p), _) => linux["maskedPaths"] = json!(p),
        (None, false) => linux["maskedPaths"] = json!(MASKED),
        (None, true) => {}
    }
    match (&c.host.readonly_paths, c.host.privileged || c.pod_sandbox) {
        (Some(p), _) => linux["readonlyPaths"] = json!(p),
        (None, false) => linux["readonlyPaths"] = json!(READONLY),
        (None, true) => {}
    }
    if !c.host.sysctls.is_empty() {
        linux["sysctl"] = json!(c.host.sysctls);
    }
    if let Some(p) = root_prop {
        linux["rootfsPropagation"] = json!(p);
    }
    // Privileged, every host node; the user's own go over them by path.
    let mut devices = if c.host.privileged { host_devices() } else { vec![] };
    devices.retain(|h| !nodes.iter().any(|(n, _)| h["path"] == n.path.as_str()));
    devices.extend(nodes.iter().map(|(n, _)| n.spec()));
    if !devices.is_empty() {
        linux["devices"] = json!(devices);
    }
    if let Some(filter) = crate::seccomp::for_container(&c.host.security_opt, c.host.privileged, &caps)? {
        linux["seccomp"] = filter;
    }
    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": process,
        // A pod sandbox's root is shared by all of them.
        "root": {"path": rootfs.display().to_string(), "readonly": c.host.readonly_rootfs || c.pod_sandbox},
        "mounts": mounts,
        "linux": linux,
    });
    if !c.host.annotations.is_empty() {
        spec["annotations"] = json!(c.host.annotations);
    }
    // The host's UTS namespace keeps the host's name.
    if c.host.uts_mode != "host" {
        spec["hostname"] = json!(c.config.hostname);
    }
    if !c.config.domainname.is_empty() {
        spec["domainname"] = json!(c.config.domainname);
    }
    Ok(spec)
}

/// A container's cgroup, `<parent>/<id>` (a parent without a leading
/// slash is under the daemon's own cgroup, as runc reads it).
pub(crate) fn cgroup_path(parent: &str, id: &str) -> String {
    format!("{}/{id}", parent.trim_end_matches('/'))
}

/// Make the runtime join an existing namespace of `kind` at `path`.
pub fn join_namespace(spec: &mut Value, kind: &str, path: &str) {
    if let Some(list) = spec.pointer_mut("/linux/namespaces").and_then(Value::as_array_mut) {
        match list.iter_mut().find(|n| n["type"] == kind) {
            Some(n) => n["path"] = json!(path),
            None => list.push(json!({"type": kind, "path": path})),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker_does() {
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("12x"), None);
        assert_eq!(parse_bytes("-1m"), None);
    }

    #[test]
    fn capabilities_follow_add_and_drop() {
        let mut c = Container::default();
        assert_eq!(capabilities(&c).unwrap().len(), DEFAULT_CAPS.len());
        c.host.cap_drop = vec!["ALL".into()];
        c.host.cap_add = vec!["net_admin".into()];
        assert_eq!(capabilities(&c).unwrap(), vec!["CAP_NET_ADMIN".to_owned()]);
        c.host.cap_add = vec!["BOGUS".into()];
        assert!(capabilities(&c).is_err());
    }
}
