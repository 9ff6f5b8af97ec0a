//! Taking the kernel's cgroup migration lock ahead of a migration.
//!
//! Every write to a `cgroup.procs` file write-locks one host-wide lock,
//! `cgroup_threadgroup_rwsem`. When no migration ran lately, that lock is in
//! its fast per-CPU mode, and write-locking it first waits a full RCU grace
//! period to switch it over; measured on a 2-CPU host that is 6 to 14 ms,
//! most of a container's start. For one further grace period after the last
//! writer releases it, the lock stays switched and later migrations take it at
//! once. (Kernels mounted with `favordynmods` keep it switched for good; cgroup
//! v1 can't be remounted with it, and `CLONE_INTO_CGROUP` exists only on v2.)
//!
//! [`Hierarchies::own_procs`] names the file berthd writes itself into
//! (a migration that moves nothing) to switch the lock ahead of a
//! container's migration; berth-engine's primer does the writing.

use std::path::{Path, PathBuf};

use crate::Hierarchies;

impl Hierarchies {
    /// The `cgroup.procs` file of the calling process's own cgroup in one of
    /// the hierarchies, preferring a v1 one: v2 refuses a write into a cgroup
    /// that has controllers enabled for its children (after taking the lock,
    /// so the write still primes it, but answers an error).
    pub fn own_procs(&self) -> Option<PathBuf> {
        let in_mount = |mount: &Path, own: &str| mount.join(own.trim_start_matches('/')).join("cgroup.procs");
        self.v1
            .first()
            .map(|m| in_mount(&m.mountpoint, &m.own_path))
            .or_else(|| self.v2.as_ref().map(|(mount, own)| in_mount(mount, own)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::V1Mount;

    #[test]
    fn own_procs_prefers_v1() {
        let h = Hierarchies {
            v1: vec![V1Mount {
                controllers: vec!["cpu".into()],
                mountpoint: "/sys/fs/cgroup/cpu".into(),
                own_path: "/a/b".into(),
            }],
            v2: Some(("/sys/fs/cgroup/unified".into(), "/c".into())),
        };
        assert_eq!(h.own_procs(), Some(PathBuf::from("/sys/fs/cgroup/cpu/a/b/cgroup.procs")));
        let v2 = Hierarchies { v1: vec![], v2: Some(("/sys/fs/cgroup".into(), "/".into())) };
        assert_eq!(v2.own_procs(), Some(PathBuf::from("/sys/fs/cgroup/cgroup.procs")));
        assert_eq!(Hierarchies::default().own_procs(), None);
    }
}
