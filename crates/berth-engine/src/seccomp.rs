//! Seccomp for containers: Docker's default policy (an allow list, with
//! more calls for the capabilities a container holds), or a profile given
//! with `--security-opt seccomp=…` in Docker's format, turned into the OCI
//! `linux.seccomp` for the container's capabilities, architecture and
//! kernel. `--privileged` and `seccomp=unconfined` run without a filter.

use serde_json::{json, Value};

use crate::{Error, Result};

/// Calls every container may make.
const ALLOWED: &[&str] = &[
    // files and descriptors
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "_llseek",
    "lseek",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "cachestat",
    // extended attributes
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "setxattr",
    // polling, events, notification
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "_newselect",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // asynchronous I/O
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    // memory
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // processes and threads
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "restart_syscall",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "times",
    "ugetrlimit",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    // identity
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    // signals
    "alarm",
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
    // time
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    // sockets
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // system information
    "getrandom",
    "sysinfo",
    "uname",
];

/// Calls a capability opens, as Docker's default gives them.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The clone flags that make namespaces; without CAP_SYS_ADMIN clone may
/// not use them.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;

/// Docker's default policy in Docker's profile format.
pub fn default_profile() -> Value {
    let mut syscalls = vec![json!({"names": ALLOWED, "action": "SCMP_ACT_ALLOW"})];
    // personality only for the usual execution domains.
    for persona in [0x0u64, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}));
    }
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]}));
    syscalls.push(json!({"names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW",
        "includes": {"arches": ["amd64", "x32", "x86"]}}));
    // Tracing one's own children is harmless on kernels from 4.8.
    syscalls.push(json!({"names": ["ptrace", "process_vm_readv", "process_vm_writev"], "action": "SCMP_ACT_ALLOW",
        "includes": {"minKernel": "4.8"}}));
    for (cap, names) in BY_CAPABILITY {
        syscalls.push(json!({"names": names, "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}}));
    }
    syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}}));
    // clone3 cannot be inspected: answer ENOSYS so libcs fall back to clone.
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS,
        "excludes": {"caps": ["CAP_SYS_ADMIN"]}}));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": syscalls,
    })
}

/// This machine's architecture: Docker's name (for `arches`) and
/// libseccomp's (for `archMap`).
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        other => (other, "SCMP_ARCH_NATIVE"),
    }
}

fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok());
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Whether a rule's `includes`/`excludes` hold for this container.
fn applies(rule: &Value, caps: &[String], arch: &str, kernel: (u32, u32)) -> Result<bool> {
    let has = |c: &str| caps.iter().any(|x| x.eq_ignore_ascii_case(c));
    if let Some(inc) = rule.get("includes") {
        if !strings(inc.get("caps")).iter().all(|c| has(c)) {
            return Ok(false);
        }
        let arches = strings(inc.get("arches"));
        if !arches.is_empty() && !arches.contains(&arch) {
            return Ok(false);
        }
        if let Some(min) = inc.get("minKernel").and_then(Value::as_str) {
            let mut it = min.split('.').map(str::parse::<u32>);
            let (Some(Ok(a)), b) = (it.next(), it.next()) else {
                return Err(Error::Invalid(format!("seccomp profile: invalid minKernel {min:?}")));
            };
            if kernel < (a, b.and_then(|x| x.ok()).unwrap_or(0)) {
                return Ok(false);
            }
        }
    }
    if let Some(exc) = rule.get("excludes") {
        if strings(exc.get("caps")).iter().any(|c| has(c)) || strings(exc.get("arches")).contains(&arch) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A profile in Docker's format (or already OCI) as the OCI
/// `linux.seccomp` for a container holding `caps`.
pub fn to_oci(profile: &Value, caps: &[String]) -> Result<Value> {
    let bad = |m: &str| Error::Invalid(format!("invalid seccomp profile: {m}"));
    let obj = profile.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let default = obj.get("defaultAction").and_then(Value::as_str).ok_or_else(|| bad("defaultAction is missing"))?;
    let (arch, scmp_arch) = native_arch();
    let mut arches: Vec<String> = strings(obj.get("architectures")).into_iter().map(str::to_owned).collect();
    for m in obj.get("archMap").and_then(Value::as_array).into_iter().flatten() {
        if m.get("architecture").and_then(Value::as_str) == Some(scmp_arch) {
            arches.push(scmp_arch.to_owned());
            arches.extend(strings(m.get("subArchitectures")).into_iter().map(str::to_owned));
        }
    }
    let kernel = kernel_version();
    let mut rules = vec![];
    for rule in obj.get("syscalls").and_then(Value::as_array).into_iter().flatten() {
        if !applies(rule, caps, arch, kernel)? {
            continue;
        }
        let mut names = strings(rule.get("names"));
        if let Some(n) = rule.get("name").and_then(Value::as_str) {
            names.push(n);
        }
        if names.is_empty() {
            return Err(bad("a syscall rule has no names"));
        }
        let action = rule.get("action").and_then(Value::as_str).ok_or_else(|| bad("a syscall rule has no action"))?;
        let mut r = json!({"names": names, "action": action});
        if let Some(e) = rule.get("errnoRet") {
            r["errnoRet"] = e.clone();
        }
        if let Some(a) = rule.get("args").filter(|a| !a.is_null()) {
            r["args"] = a.clone();
        }
        rules.push(r);
    }
    let mut out = json!({"defaultAction": default, "architectures": arches, "syscalls": rules});
    for k in ["defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out[k] = v.clone();
        }
    }
    Ok(out)
}

/// What `--security-opt seccomp=…` and `--privileged` ask for.
pub fn for_container(security_opt: &[String], privileged: bool, caps: &[String]) -> Result<Option<Value>> {
    let given =
        security_opt.iter().rev().find_map(|o| o.strip_prefix("seccomp=").or_else(|| o.strip_prefix("seccomp:")));
    match given {
        Some("unconfined") => Ok(None),
        _ if privileged => Ok(None),
        None | Some("builtin" | "") => to_oci(&default_profile(), caps).map(Some),
        Some(text) => {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| Error::Invalid(format!("Decoding seccomp profile failed: {e}")))?;
            to_oci(&v, caps).map(Some)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(oci: &Value) -> Vec<String> {
        let mut out = vec![];
        for r in oci["syscalls"].as_array().unwrap() {
            if r["action"] == "SCMP_ACT_ALLOW" {
                out.extend(r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()));
            }
        }
        out
    }

    #[test]
    fn the_default_grows_with_capabilities() {
        let base = to_oci(&default_profile(), &["CAP_CHOWN".into()]).unwrap();
        let n = names(&base);
        assert!(n.contains(&"read".to_owned()) && !n.contains(&"mount".to_owned()));
        assert!(!n.contains(&"chroot".to_owned()));
        let admin = to_oci(&default_profile(), &["CAP_SYS_ADMIN".into(), "CAP_SYS_CHROOT".into()]).unwrap();
        let n = names(&admin);
        assert!(n.contains(&"mount".to_owned()) && n.contains(&"chroot".to_owned()));
        // clone is free with CAP_SYS_ADMIN, filtered without.
        let clones = |o: &Value| {
            o["syscalls"].as_array().unwrap().iter().filter(|r| r["names"].to_string().contains("\"clone\"")).count()
        };
        assert_eq!(clones(&base), 1);
        assert_eq!(base["defaultErrnoRet"], 1);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(base["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        }
    }

    #[test]
    fn options_pick_the_profile() {
        assert!(for_container(&["seccomp=unconfined".into()], false, &[]).unwrap().is_none());
        assert!(for_container(&[], true, &[]).unwrap().is_none());
        assert!(for_container(&[], false, &[]).unwrap().is_some());
        let custom = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let oci = for_container(&[format!("seccomp={custom}")], false, &[]).unwrap().unwrap();
        assert_eq!(oci["syscalls"][0]["names"], json!(["mkdir"]));
        assert!(for_container(&["seccomp={not json".into()], false, &[]).is_err());
        assert!(for_container(&["seccomp={}".into()], false, &[]).is_err());
    }
}
