//! Namespaces from linux.namespaces: new ones are unshared, ones with a path
//! are joined. The user namespace is joined first and created first, so the
//! other namespaces are owned by it, as runc's nsexec orders them.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::{Error, Result};

pub(crate) fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name under /proc/<pid>/ns.
pub(crate) fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The plan for one container: what to join and what to create.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Opened before any setns, user namespace first.
    pub join: Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>,
    pub new_user: bool,
    /// New namespaces other than user.
    pub new: CloneFlags,
    /// Whether init must be forked again to land in a new or joined pid namespace.
    pub pid_changes: bool,
}

impl Plan {
    /// Open the namespace files now, in the runtime's own mount namespace.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Plan> {
        let mut plan = Plan { join: vec![], new_user: false, new: CloneFlags::empty(), pid_changes: false };
        let mut sorted: Vec<&LinuxNamespace> = list.iter().collect();
        sorted.sort_by_key(|ns| ns.typ() != LinuxNamespaceType::User);
        for ns in sorted {
            match ns.path() {
                Some(p) => {
                    let fd = std::fs::File::open(p).map_err(Error::io(format!(
                        "open {} namespace {}",
                        proc_name(ns.typ()),
                        p.display()
                    )))?;
                    plan.join.push((ns.typ(), p.clone(), fd.into()));
                }
                None if ns.typ() == LinuxNamespaceType::User => plan.new_user = true,
                None => plan.new |= flag(ns.typ()),
            }
            if ns.typ() == LinuxNamespaceType::Pid {
                plan.pid_changes = true;
            }
        }
        Ok(plan)
    }

    /// Join every namespace given by path.
    pub fn join_all(&self) -> std::result::Result<(), String> {
        for (t, path, fd) in &self.join {
            setns(fd.as_fd(), flag(*t))
                .map_err(|e| format!("join {} namespace {}: {e}", proc_name(*t), path.display()))?;
        }
        Ok(())
    }

    /// Create the new namespaces other than user and cgroup (made once
    /// init is in its cgroup, `init::CgroupGate`).
    pub fn unshare_rest(&self) -> std::result::Result<(), String> {
        let rest = self.new - CloneFlags::CLONE_NEWCGROUP;
        if rest.is_empty() {
            return Ok(());
        }
        unshare(rest).map_err(|e| format!("unshare namespaces {rest:?}: {e}"))
    }

    pub fn has_new(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::User {
            return self.new_user;
        }
        self.new.contains(flag(t))
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.has_new(t) || self.join.iter().any(|(j, _, _)| *j == t)
    }
}

/// Write uid_map and gid_map of `pid` (from the parent, in the host's user namespace).
pub(crate) fn write_id_maps(
    pid: i32,
    uid: &[oci_spec::runtime::LinuxIdMapping],
    gid: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<()> {
    let fmt = |m: &[oci_spec::runtime::LinuxIdMapping]| {
        m.iter().map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size())).collect::<String>()
    };
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        if maps.is_empty() {
            continue;
        }
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, fmt(maps)).map_err(Error::io(format!("write {path}")))?;
    }
    Ok(())
}
