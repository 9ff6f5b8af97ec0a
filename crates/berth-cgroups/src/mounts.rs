//! Discovery of the host's cgroup hierarchies from /proc/self/mountinfo and
//! /proc/self/cgroup.

use std::path::PathBuf;

use crate::{io_err, Error, Result};

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    /// Controllers bound to it (`cpu`, `memory`, `name=systemd`, …).
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The calling process's cgroup in it, from /proc/self/cgroup.
    pub own_path: String,
}

/// The cgroup hierarchies visible to this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub v1: Vec<V1Mount>,
    /// The v2 mount point and the caller's cgroup in it.
    pub v2: Option<(PathBuf, String)>,
}

impl Hierarchies {
    /// Read the hierarchies of the calling process.
    pub fn detect() -> Result<Self> {
        let mi = std::path::Path::new("/proc/self/mountinfo");
        let cg = std::path::Path::new("/proc/self/cgroup");
        let mountinfo = std::fs::read_to_string(mi).map_err(io_err(mi))?;
        let own = std::fs::read_to_string(cg).map_err(io_err(cg))?;
        let h = Self::parse(&mountinfo, &own);
        if h.v1.is_empty() && h.v2.is_none() {
            return Err(Error::NoCgroupFs);
        }
        Ok(h)
    }

    /// Parse mountinfo and /proc/self/cgroup text.
    pub fn parse(mountinfo: &str, own: &str) -> Self {
        let own_of = |ctrls: &[String]| -> String {
            own.lines()
                .find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let names: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
                    let matches = if ctrls.is_empty() {
                        names.is_empty()
                    } else {
                        ctrls.iter().any(|c| names.contains(&c.as_str()))
                    };
                    matches.then(|| path.to_owned())
                })
                .unwrap_or_else(|| "/".to_owned())
        };
        let mut h = Hierarchies::default();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else { continue };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let mountpoint = PathBuf::from(berth_core::mountinfo::unescape(pre[4]));
            match post[0] {
                "cgroup2" if h.v2.is_none() => h.v2 = Some((mountpoint, own_of(&[]))),
                "cgroup" => {
                    let controllers: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro")
                                && !o.starts_with("release_agent")
                                && *o != "clone_children"
                                && *o != "noprefix"
                                && *o != "xattr"
                        })
                        .map(str::to_owned)
                        .collect();
                    if h.v1.iter().any(|m| m.controllers == controllers) {
                        continue; // the same hierarchy mounted twice
                    }
                    let own_path = own_of(&controllers);
                    h.v1.push(V1Mount { controllers, mountpoint, own_path });
                }
                _ => {}
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host() {
        let own = "5:memory:/a\n3:cpu:/b\n1:name=systemd:/\n0::/c\n";
        let h = Hierarchies::parse(HYBRID, own);
        assert_eq!(h.v1.len(), 3);
        assert_eq!(h.v1[0].controllers, vec!["cpu"]);
        assert_eq!(h.v1[0].own_path, "/b");
        assert_eq!(h.v1[1].own_path, "/a");
        assert_eq!(h.v1[2].controllers, vec!["name=systemd"]);
        assert_eq!(h.v2, Some((PathBuf::from("/sys/fs/cgroup/unified"), "/c".to_owned())));
    }

    #[test]
    fn pure_v2() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchies::parse(mi, "0::/user.slice\n");
        assert!(h.v1.is_empty());
        assert_eq!(h.v2, Some((PathBuf::from("/sys/fs/cgroup"), "/user.slice".to_owned())));
    }
}
