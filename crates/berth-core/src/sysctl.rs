//! Which sysctls a container may set: only those its own namespaces isolate.
//!
//! A sysctl outside that set is a knob of the whole host (`kernel.core_pattern`
//! names a program the host's kernel runs as root), so the runtime, the engine
//! and the CLI all refuse it by this one rule. The rule and its messages
//! follow runc's `libcontainer/configs/validate`; `kernel.hostname` is
//! allowed with a private UTS namespace, as crun allows it.

/// Which of the namespaces that hold sysctls are the container's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Isolation {
    pub ipc: bool,
    pub net: bool,
    pub uts: bool,
}

/// The IPC namespace's sysctls besides `fs.mqueue.*`.
const IPC: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The dotted form of a name given with dots or with slashes
/// (`net/ipv4/ip_forward`), the form the rule is written in.
pub fn dotted(name: &str) -> String {
    if name.contains('/') {
        name.trim_start_matches('/').replace('/', ".")
    } else {
        name.to_owned()
    }
}

/// The path of a sysctl under `/proc/sys`, or `None` for a name that is not
/// one: empty, or with an empty, `.` or `..` component.
///
/// A name with a slash is taken as a path (a component may then hold dots,
/// as `net/ipv4/conf/eth0.100/forwarding` does); otherwise dots separate.
pub fn proc_path(name: &str) -> Option<String> {
    let parts: Vec<&str> = if name.contains('/') { name.split('/').collect() } else { name.split('.').collect() };
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0')) {
        return None;
    }
    Some(format!("/proc/sys/{}", parts.join("/")))
}

/// Whether `name` may be set by a container isolated as `iso`; the error is
/// the message to show.
pub fn check(name: &str, iso: Isolation) -> Result<(), String> {
    if proc_path(name).is_none() {
        return Err(format!("sysctl {name:?} is not a valid sysctl name"));
    }
    let k = dotted(name);
    if IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
        return if iso.ipc {
            Ok(())
        } else {
            Err(format!("sysctl {name:?} is not allowed in the hosts ipc namespace"))
        };
    }
    if k.starts_with("net.") {
        return if iso.net { Ok(()) } else { Err(format!("sysctl {name:?} not allowed in host network namespace")) };
    }
    if k == "kernel.hostname" || k == "kernel.domainname" {
        return if iso.uts {
            Ok(())
        } else {
            Err(format!("sysctl {name:?} is not allowed in the host's uts namespace"))
        };
    }
    Err(format!("sysctl {name:?} is not in a separate kernel namespace"))
}

/// The names Docker's CLI lets `--sysctl` pass before it reaches a daemon:
/// the IPC set and the `net.` and `fs.mqueue.` prefixes. The hostname and
/// domainname ones have fields of their own (`--hostname`, `--domainname`).
pub fn namespaced(name: &str) -> bool {
    let k = dotted(name);
    IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.") || k.starts_with("net.")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALL: Isolation = Isolation { ipc: true, net: true, uts: true };

    #[test]
    fn host_wide_sysctls_are_refused_whatever_the_namespaces() {
        for k in
            ["kernel.core_pattern", "kernel.core_uses_pid", "vm.max_map_count", "fs.file-max", "kernel/core_pattern"]
        {
            let e = check(k, ALL).unwrap_err();
            assert!(e.contains("is not in a separate kernel namespace"), "{k}: {e}");
        }
        // A prefix must be a whole component.
        assert!(check("kernel.shmmax_extra", ALL).is_err());
        assert!(check("fs.mqueue", ALL).is_err());
        assert!(check("network.x", ALL).is_err());
    }

    #[test]
    fn namespaced_sysctls_need_their_namespace() {
        let none = Isolation::default();
        for k in ["kernel.shmmax", "kernel.sem", "fs.mqueue.queues_max", "kernel/msgmax"] {
            assert!(check(k, Isolation { ipc: true, ..none }).is_ok(), "{k}");
            assert!(check(k, Isolation { net: true, uts: true, ..none }).unwrap_err().contains("ipc namespace"));
        }
        for k in ["net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/forwarding"] {
            assert!(check(k, Isolation { net: true, ..none }).is_ok(), "{k}");
            assert!(check(k, Isolation { ipc: true, uts: true, ..none }).unwrap_err().contains("host network"));
        }
        for k in ["kernel.hostname", "kernel.domainname"] {
            assert!(check(k, Isolation { uts: true, ..none }).is_ok(), "{k}");
            assert!(check(k, Isolation { ipc: true, net: true, ..none }).unwrap_err().contains("uts namespace"));
        }
    }

    #[test]
    fn names_that_climb_or_are_empty_are_refused() {
        for k in ["", "net..ipv4", "net/../kernel/core_pattern", "net.ipv4.", "net/./x", "net/ipv4/\0"] {
            assert!(check(k, ALL).is_err(), "{k:?}");
            assert_eq!(proc_path(k), None, "{k:?}");
        }
        assert_eq!(proc_path("net.ipv4.ip_forward").as_deref(), Some("/proc/sys/net/ipv4/ip_forward"));
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.100/forwarding").as_deref(),
            Some("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }

    #[test]
    fn the_cli_list_is_docker_s() {
        assert!(namespaced("net.core.somaxconn"));
        assert!(namespaced("kernel.shm_rmid_forced"));
        assert!(!namespaced("kernel.core_pattern"));
        assert!(!namespaced("kernel.hostname"));
    }
}
