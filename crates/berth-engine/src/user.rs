//! `User` resolved as Docker does: through the image's /etc/passwd and
//! /etc/group, read inside the container's root so links cannot lead out.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use crate::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let dir = std::fs::File::open(root).ok()?;
    let fd = berth_core::rootfs::openat_in_root(dir.as_fd(), Path::new(path), libc::O_RDONLY).ok()?;
    let mut s = String::new();
    std::fs::File::from(fd).take(1 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// `user` is `name`, `uid`, `name:group`, `uid:gid` and so on; empty is root.
pub fn resolve(root: &Path, user: &str, group_add: &[String]) -> Result<User> {
    let passwd = read_in_root(root, "etc/passwd").unwrap_or_default();
    let groups = read_in_root(root, "etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entries: Vec<Vec<&str>> =
        passwd.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(':').collect()).collect();
    let mut out = User { home: "/".into(), ..Default::default() };
    let mut name = String::new();
    if !u.is_empty() {
        let found = entries.iter().find(|e| e.len() >= 6 && (e[0] == u || e[2] == u));
        match (found, u.parse::<u32>()) {
            (Some(e), _) => {
                name = e[0].to_owned();
                out.uid = e[2].parse().unwrap_or(0);
                out.gid = e[3].parse().unwrap_or(0);
                out.home = e[5].to_owned();
            }
            (None, Ok(uid)) => out.uid = uid,
            (None, Err(_)) => {
                return Err(Error::Invalid(format!("unable to find user {u}: no matching entries in passwd file")))
            }
        }
    } else {
        if let Some(e) = entries.iter().find(|e| e.len() >= 6 && e[2] == "0") {
            name = e[0].to_owned();
            out.home = e[5].to_owned();
        }
    }
    let group_entries: Vec<Vec<&str>> =
        groups.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(':').collect()).collect();
    let lookup_group = |g: &str| -> Result<u32> {
        if let Some(e) = group_entries.iter().find(|e| e.len() >= 3 && e[0] == g) {
            return Ok(e[2].parse().unwrap_or(0));
        }
        g.parse::<u32>()
            .map_err(|_| Error::Invalid(format!("unable to find group {g}: no matching entries in group file")))
    };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        out.gid = lookup_group(g)?;
    } else if !name.is_empty() {
        // Supplementary groups from /etc/group, only when no group was given.
        for e in &group_entries {
            if e.len() >= 4 && e[3].split(',').any(|m| m == name) {
                if let Ok(gid) = e[2].parse::<u32>() {
                    if gid != out.gid && !out.additional_gids.contains(&gid) {
                        out.additional_gids.push(gid);
                    }
                }
            }
        }
    }
    for g in group_add {
        let gid = lookup_group(g)?;
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    Ok(out)
}
