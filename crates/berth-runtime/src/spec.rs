//! Loading and checking a bundle's config.json.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

use crate::{Error, Result};

/// Read `<bundle>/config.json` and check what the runtime relies on.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(format!("read {}", path.display())))?;
    let spec: Spec =
        serde_json::from_str(&text).map_err(|e| Error::Spec { path: path.clone(), reason: e.to_string() })?;
    let bad = |reason: &str| Error::Spec { path: path.clone(), reason: reason.to_owned() };
    let process = spec.process().as_ref().ok_or_else(|| bad("process is missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(bad("process.args must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(bad("process.cwd must be an absolute path"));
    }
    spec.root().as_ref().ok_or_else(|| bad("root is missing"))?;
    let linux = spec.linux().as_ref().ok_or_else(|| bad("linux is missing"))?;
    let mut seen = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        if seen.contains(&ns.typ()) {
            return Err(bad(&format!("namespace {} given twice", ns.typ())));
        }
        seen.push(ns.typ());
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(bad("unable to set hostname without a private UTS namespace"));
    }
    let iso = isolation(linux.namespaces().as_deref().unwrap_or(&[]));
    for name in linux.sysctl().iter().flat_map(|m| m.keys()) {
        berth_core::sysctl::check(name, iso).map_err(|e| bad(&e))?;
    }
    // Labels for security modules are applied where the kernel has them and
    // refused where it does not, never dropped (runc refuses them alike).
    if let Some(p) = process.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        if !crate::process::apparmor_enabled() {
            return Err(bad(&format!("apparmorProfile {p:?} is set, but the kernel has no AppArmor enabled")));
        }
    }
    if let Some(l) = process.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        return Err(bad(&format!("selinuxLabel {l:?} is set: berth-runtime does not apply SELinux labels")));
    }
    if let Some(l) = linux.mount_label().as_deref().filter(|s| !s.is_empty()) {
        return Err(bad(&format!("mountLabel {l:?} is set: berth-runtime does not apply SELinux labels")));
    }
    if !has(LinuxNamespaceType::Mount) {
        // The caller's mount namespace is the container's: whatever would be
        // mounted would be mounted on the host (runc refuses the same).
        let without = |what: &str| bad(&format!("unable to {what} without a private mount namespace"));
        if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(without("make mounts"));
        }
        let any = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
        if any(linux.masked_paths()) || any(linux.readonly_paths()) {
            return Err(without("restrict paths (maskedPaths, readonlyPaths)"));
        }
        if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            return Err(without("make the root read-only"));
        }
        if linux.rootfs_propagation().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(without("set rootfsPropagation"));
        }
        if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(without("make device nodes"));
        }
    }
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps && !has(LinuxNamespaceType::User) {
        return Err(bad("uidMappings given without a user namespace"));
    }
    Ok(spec)
}

/// Which sysctl-holding namespaces are the container's own: a new one, or
/// one joined by a path that is not the caller's own namespace (runc's
/// `isHostNetNS` test, applied to all three).
fn isolation(list: &[LinuxNamespace]) -> berth_core::sysctl::Isolation {
    let own = |t: LinuxNamespaceType| {
        list.iter().find(|ns| ns.typ() == t).is_some_and(|ns| match ns.path() {
            None => true,
            Some(p) => {
                let here = format!("/proc/self/ns/{}", crate::namespaces::proc_name(t));
                match (std::fs::metadata(p), std::fs::metadata(here)) {
                    (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
                    // A path that cannot be read fails the join later.
                    _ => false,
                }
            }
        })
    };
    berth_core::sysctl::Isolation {
        ipc: own(LinuxNamespaceType::Ipc),
        net: own(LinuxNamespaceType::Network),
        uts: own(LinuxNamespaceType::Uts),
    }
}

/// The rootfs directory: root.path, relative to the bundle when not absolute.
pub(crate) fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| PathBuf::from("rootfs"));
    let full = if root.is_absolute() { root } else { bundle.join(root) };
    match std::fs::metadata(&full) {
        Ok(m) if m.is_dir() => std::fs::canonicalize(&full).map_err(Error::io(format!("resolve {}", full.display()))),
        _ => Err(Error::NoRootfs(full)),
    }
}
