//! Host devices a container asks for: `--device` nodes (a directory brings
//! every node under it, as moby's `getDevicesFromPath`), the device cgroup
//! rules of `--device-cgroup-rule`, and the block devices the blkio limits
//! name, each resolved from its node on the host to its type and numbers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::model::{Container, DeviceMapping, Resources};
use crate::{Error, Result};

fn bad(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// One device node as the spec's `linux.devices` and the device cgroup
/// take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its path in the container.
    pub path: String,
    pub typ: &'static str,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Node {
    pub fn spec(&self) -> Value {
        json!({
            "path": self.path, "type": self.typ, "major": self.major, "minor": self.minor,
            "fileMode": self.mode, "uid": self.uid, "gid": self.gid,
        })
    }
}

/// `r`, `w` and `m`, each at most once; empty is all three (Docker's default).
fn permissions(p: &str) -> Result<String> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    let mut seen = String::new();
    for ch in p.chars() {
        if !"rwm".contains(ch) || seen.contains(ch) {
            return Err(bad(format!("invalid device mode: {p}")));
        }
        seen.push(ch);
    }
    Ok(seen)
}

/// The node at `host` (followed if a link), or `None` if it is not one.
fn node(host: &Path, path: String) -> std::io::Result<Option<Node>> {
    let m = std::fs::metadata(host)?;
    let ft = m.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Ok(None);
    };
    let rdev = m.rdev();
    Ok(Some(Node {
        path,
        typ,
        major: u64::from(libc::major(rdev)),
        minor: u64::from(libc::minor(rdev)),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    }))
}

/// The nodes of one `--device`, with the cgroup access they are given.
fn mapping(d: &DeviceMapping) -> Result<Vec<(Node, String)>> {
    let gather = |e: &dyn std::fmt::Display| {
        bad(format!("error gathering device information while adding custom device {:?}: {e}", d.path_on_host))
    };
    if !d.path_on_host.starts_with('/') {
        return Err(gather(&"not an absolute path"));
    }
    let inside = if d.path_in_container.is_empty() { d.path_on_host.as_str() } else { d.path_in_container.as_str() };
    if !inside.starts_with('/') || inside.split('/').any(|c| c == "..") {
        return Err(bad(format!("{inside} is not an absolute path in the container")));
    }
    let perms = permissions(&d.cgroup_permissions)?;
    let host = PathBuf::from(&d.path_on_host);
    if let Some(n) = node(&host, inside.to_owned()).map_err(|e| gather(&e))? {
        return Ok(vec![(n, perms)]);
    }
    if !std::fs::metadata(&host).map_err(|e| gather(&e))?.is_dir() {
        return Err(gather(&"not a device node"));
    }
    // A directory: every node under it, at the same place below `inside`.
    let mut out = vec![];
    let mut dirs = vec![host.clone()];
    while let Some(dir) = dirs.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| gather(&e))?;
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                dirs.push(p);
                continue;
            }
            let Ok(rel) = p.strip_prefix(&host) else { continue };
            let to = Path::new(inside).join(rel).display().to_string();
            if let Ok(Some(n)) = node(&p, to) {
                out.push((n, perms.clone()));
            }
        }
    }
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(out)
}

/// Every `--device` node of `c`, with its cgroup access.
pub(crate) fn nodes(c: &Container) -> Result<Vec<(Node, String)>> {
    let mut out = vec![];
    for d in &c.host.devices {
        out.extend(mapping(d)?);
    }
    Ok(out)
}

/// One `--device-cgroup-rule` (`c 1:3 rwm`, `a *:* m`) as a cgroup entry,
/// checked as moby's `deviceCgroupRuleRegex`.
pub(crate) fn cgroup_rule(rule: &str) -> Result<Value> {
    let invalid = || bad(format!("invalid device cgroup rule format: '{rule}'"));
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, numbers, access] = parts.as_slice() else { return Err(invalid()) };
    if !matches!(*typ, "a" | "b" | "c") {
        return Err(invalid());
    }
    let (major, minor) = numbers.split_once(':').ok_or_else(invalid)?;
    let number = |n: &str| -> Result<Option<u64>> {
        match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.parse().map(Some).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    };
    let (major, minor) = (number(major)?, number(minor)?);
    if access.is_empty() || access.len() > 3 || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(invalid());
    }
    let mut v = json!({"allow": true, "type": typ, "access": access});
    if let Some(m) = major {
        v["major"] = json!(m);
    }
    if let Some(m) = minor {
        v["minor"] = json!(m);
    }
    Ok(v)
}

/// The numbers of the block device at `path`, for a blkio limit.
fn block_device(what: &str, path: &str) -> Result<(u64, u64)> {
    match node(Path::new(path), path.to_owned()) {
        Ok(Some(n)) if n.typ == "b" => Ok((n.major, n.minor)),
        Ok(_) => Err(bad(format!("{what}: {path} is not a block device"))),
        Err(e) => Err(bad(format!("{what}: stat {path}: {e}"))),
    }
}

/// The spec's `blockIO` device entries of `r`.
pub(crate) fn block_io(r: &Resources) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    let mut weights = vec![];
    for d in &r.blkio_weight_device {
        let (major, minor) = block_device("BlkioWeightDevice", &d.path)?;
        weights.push(json!({"major": major, "minor": minor, "weight": d.weight}));
    }
    if !weights.is_empty() {
        out.insert("weightDevice".into(), Value::Array(weights));
    }
    for (what, key, list) in [
        ("BlkioDeviceReadBps", "throttleReadBpsDevice", &r.blkio_device_read_bps),
        ("BlkioDeviceWriteBps", "throttleWriteBpsDevice", &r.blkio_device_write_bps),
        ("BlkioDeviceReadIOps", "throttleReadIOPSDevice", &r.blkio_device_read_iops),
        ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice", &r.blkio_device_write_iops),
    ] {
        let mut v = vec![];
        for d in list {
            let (major, minor) = block_device(what, &d.path)?;
            v.push(json!({"major": major, "minor": minor, "rate": d.rate}));
        }
        if !v.is_empty() {
            out.insert(key.into(), Value::Array(v));
        }
    }
    Ok(out)
}

/// Everything of `c` this module reads from the host, checked at create:
/// a node that is missing, or a rule that cannot parse, is a 400 then
/// rather than a failed start.
pub(crate) fn verify(c: &Container) -> Result<()> {
    nodes(c)?;
    for r in &c.host.device_cgroup_rules {
        cgroup_rule(r)?;
    }
    for d in &c.host.resources.blkio_weight_device {
        if !(10..=1000).contains(&d.weight) {
            return Err(bad(format!("invalid weight for device {}: {} (10 to 1000)", d.path, d.weight)));
        }
    }
    block_io(&c.host.resources).map(drop)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_rules_parse_as_moby_s_pattern() {
        assert_eq!(
            cgroup_rule("c 1:3 rwm").unwrap(),
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
        );
        assert_eq!(cgroup_rule("a *:* m").unwrap(), json!({"allow": true, "type": "a", "access": "m"}));
        assert_eq!(cgroup_rule("b 8:* r").unwrap()["major"], 8);
        for bad in ["", "c 1:3", "x 1:3 rwm", "c 1-3 rwm", "c :3 rwm", "c 1:3 rwmx", "c 1:3 q", "c  1:3 rwm"] {
            let e = cgroup_rule(bad).unwrap_err().to_string();
            assert!(e.contains("invalid device cgroup rule format"), "{bad}: {e}");
        }
    }

    #[test]
    fn devices_resolve_from_their_nodes() {
        let d = |host: &str, inside: &str, perms: &str| DeviceMapping {
            path_on_host: host.into(),
            path_in_container: inside.into(),
            cgroup_permissions: perms.into(),
        };
        let got = mapping(&d("/dev/null", "/dev/mynull", "rw")).unwrap();
        assert_eq!(got.len(), 1);
        let (n, p) = &got[0];
        assert_eq!((n.path.as_str(), n.typ, n.major, n.minor, p.as_str()), ("/dev/mynull", "c", 1, 3, "rw"));
        assert_eq!(mapping(&d("/dev/zero", "", "")).unwrap()[0].1, "rwm");
        for (m, msg) in [
            (d("/dev/nonexistent-berth", "", ""), "No such file"),
            (d("/etc/hostname", "", ""), "not a device node"),
            (d("/dev/null", "", "rwx"), "invalid device mode: rwx"),
            (d("/dev/null", "", "rr"), "invalid device mode"),
            (d("/dev/null", "dev/x", ""), "not an absolute path"),
            (d("/dev/null", "/dev/../etc/x", ""), "not an absolute path"),
        ] {
            let e = mapping(&m).unwrap_err().to_string();
            assert!(e.contains(msg), "{m:?}: {e}");
        }
    }
}
