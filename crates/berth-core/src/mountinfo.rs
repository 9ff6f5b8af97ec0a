//! /proc/self/mountinfo, as the kernel writes it.

use std::path::{Path, PathBuf};

/// A field of mountinfo with its octal escapes (space, tab, newline and
/// backslash) undone.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points at or under `dir` in `mountinfo`, deepest first (the
/// order to unmount them in).
pub fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// The mount that holds `path` (an absolute path with no symlinks): its
/// mount point and optional fields (`shared:N`, `master:N`, …), the last
/// of the longest mount points at or above it (the one on top).
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<(PathBuf, Vec<String>)> {
    let mut best: Option<(PathBuf, Vec<String>)> = None;
    for l in mountinfo.lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        let Some(point) = fields.get(4).map(|p| PathBuf::from(unescape(p))) else { continue };
        if !path.starts_with(&point) {
            continue;
        }
        let optional = fields.iter().skip(6).take_while(|f| **f != "-").map(|f| (*f).to_owned()).collect();
        if best.as_ref().is_none_or(|(b, _)| point.components().count() >= b.components().count()) {
            best = Some((point, optional));
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_holding_a_path_and_its_propagation() {
        let mi = "1 0 0:1 / / rw shared:1 - ext4 /dev/sda rw\n\
                  2 1 0:2 / /tmp rw - tmpfs tmpfs rw\n\
                  3 1 0:3 / /mnt rw master:4 shared:5 - tmpfs tmpfs rw\n";
        assert_eq!(mount_of(mi, Path::new("/tmp/a")).unwrap(), (PathBuf::from("/tmp"), vec![]));
        assert_eq!(mount_of(mi, Path::new("/etc")).unwrap().1, ["shared:1"]);
        assert_eq!(mount_of(mi, Path::new("/mnt")).unwrap().1, ["master:4", "shared:5"]);
    }

    #[test]
    fn escaped_mountpoint() {
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn points_under_a_directory_deepest_first() {
        let mi = "1 0 0:1 / / rw - ext4 /dev/sda rw\n\
                  2 1 0:2 / /x/b\\040c rw - overlay overlay rw\n\
                  3 2 0:3 / /x/b\\040c/d rw - tmpfs tmpfs rw\n\
                  4 1 0:4 / /xy rw - tmpfs tmpfs rw\n";
        let got = mount_points_under(mi, Path::new("/x"));
        assert_eq!(got, vec![PathBuf::from("/x/b c/d"), PathBuf::from("/x/b c")]);
    }
}
