//! A container's mounts besides its root. At create, `--volumes-from`,
//! `-v`, `--mount` and the VOLUMEs of the image and the request are
//! planned into mount points, making the volumes they name (Docker's
//! registerMountPoints). At each start the volumes are taken into use,
//! new ones filled from the image, and the mount points become the
//! spec's mounts; at each stop they are let go.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use crate::model::{Container, MountKind, MountPoint, MountRequest};
use crate::volumes::CreateVolume;
use crate::{Engine, Error, Result};

const PROPAGATIONS: &[&str] = &["private", "rprivate", "shared", "rshared", "slave", "rslave"];

/// A path as Go's `filepath.Clean` leaves it: no doubled or trailing
/// slashes, `.` and `..` taken out lexically.
pub fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A mount point to be, with what a volume it makes is made with.
#[derive(Debug, Clone, Default)]
struct Wanted {
    point: MountPoint,
    labels: BTreeMap<String, String>,
    driver_options: BTreeMap<String, String>,
}

/// The parts of a `-v` mode (`ro,z,nocopy,rshared`), each at most once.
#[derive(Debug, Default)]
struct Mode<'a> {
    rw: Option<bool>,
    propagation: Option<&'a str>,
    nocopy: bool,
}

fn parse_mode(mode: &str) -> Option<Mode<'_>> {
    let mut m = Mode::default();
    let (mut label, mut copy, mut consistency) = (false, false, false);
    for part in mode.split(',').filter(|p| !p.is_empty()) {
        let seen = match part {
            "ro" | "rw" => m.rw.replace(part == "rw").is_some(),
            "z" | "Z" => std::mem::replace(&mut label, true),
            "nocopy" => {
                m.nocopy = true;
                std::mem::replace(&mut copy, true)
            }
            "consistent" | "cached" | "delegated" => std::mem::replace(&mut consistency, true),
            p if PROPAGATIONS.contains(&p) => m.propagation.replace(p).is_some(),
            _ => return None,
        };
        if seen {
            return None;
        }
    }
    Some(m)
}

/// Docker's message for a mount whose parts do not fit.
fn mount_config(kind: MountKind, why: impl std::fmt::Display) -> String {
    format!("invalid mount config for type \"{}\": {why}", kind.as_str())
}

fn check_target(kind: MountKind, target: &str) -> std::result::Result<String, String> {
    if target.is_empty() {
        return Err(mount_config(kind, "field Target must not be empty"));
    }
    if !target.starts_with('/') {
        return Err(mount_config(kind, format!("invalid mount path: '{target}' mount path must be absolute")));
    }
    let t = clean_path(target);
    if t == "/" {
        return Err(mount_config(kind, "invalid specification: destination can't be '/'"));
    }
    Ok(t)
}

/// One `-v` entry: `[source:]destination[:mode]`. A source that is an
/// absolute path is a bind; any other is a volume's name, made when
/// missing; none at all is a new anonymous volume.
fn parse_volume_spec(raw: &str, volume_driver: &str) -> Result<Wanted> {
    let invalid = || Error::Invalid(format!("invalid volume specification: '{raw}'"));
    let parts: Vec<&str> = raw.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        // `/foo:rw` would be a volume with a mode and no name.
        [_, m] if parse_mode(m).is_some() => return Err(invalid()),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(invalid()),
    };
    let m = parse_mode(mode).ok_or_else(|| Error::Invalid(format!("invalid mode: {mode}")))?;
    let kind = if source.starts_with('/') { MountKind::Bind } else { MountKind::Volume };
    let wrap = |why: String| Error::Invalid(format!("invalid volume specification: '{raw}': {why}"));
    let destination = check_target(kind, target).map_err(wrap)?;
    let mut point =
        MountPoint { kind, destination, mode: mode.to_owned(), rw: m.rw.unwrap_or(true), ..Default::default() };
    match kind {
        MountKind::Bind => {
            if m.nocopy {
                return Err(wrap(mount_config(kind, "field VolumeOptions must not be specified")));
            }
            point.source = clean_path(source);
            point.propagation = m.propagation.unwrap_or("rprivate").to_owned();
            point.create_source = true;
        }
        _ => {
            if m.propagation.is_some() {
                return Err(wrap(mount_config(kind, "field BindOptions must not be specified")));
            }
            point.name = source.to_owned();
            point.driver = if volume_driver.is_empty() { "local".into() } else { volume_driver.to_owned() };
            point.copy_data = !m.nocopy;
            if point.mode.is_empty() && point.driver == "local" {
                // Docker's setBindModeIfNull: what inspect shows for `-v`.
                point.mode = "z".into();
            }
        }
    }
    Ok(Wanted { point, ..Default::default() })
}

/// One `--mount`.
fn from_request(r: &MountRequest) -> Result<Wanted> {
    let kind = r.kind;
    let destination = check_target(kind, &r.target).map_err(Error::Invalid)?;
    let bad = |why: String| Error::Invalid(mount_config(kind, why));
    let mut point = MountPoint { kind, destination, rw: !r.read_only, ..Default::default() };
    match kind {
        MountKind::Bind => {
            if r.source.is_empty() {
                return Err(bad("field Source must not be empty".into()));
            }
            if !r.source.starts_with('/') {
                return Err(bad(format!("invalid mount path: '{}' mount path must be absolute", r.source)));
            }
            point.source = clean_path(&r.source);
            if !r.create_mountpoint && std::fs::symlink_metadata(&point.source).is_err() {
                return Err(bad(format!("bind source path does not exist: {}", point.source)));
            }
            point.create_source = r.create_mountpoint;
            let prop = if r.propagation.is_empty() { "rprivate" } else { r.propagation.as_str() };
            if !PROPAGATIONS.contains(&prop) {
                return Err(bad(format!("invalid propagation mode: {prop}")));
            }
            point.propagation = prop.to_owned();
        }
        MountKind::Volume => {
            point.name = r.source.clone();
            point.driver = if r.driver.is_empty() { "local".into() } else { r.driver.clone() };
            point.copy_data = !r.no_copy;
            if !r.subpath.is_empty() {
                // As moby: a path that stays inside the volume (Go's
                // filepath.IsLocal); symlinks are resolved inside it at start.
                let sub = clean_path(&r.subpath);
                if r.subpath.starts_with('/') || sub == ".." || sub.starts_with("../") {
                    return Err(bad("subpath must be a relative path within the volume".into()));
                }
                point.subpath = sub;
                // Filling it from the image would fill the volume's root.
                point.copy_data = false;
            }
        }
        MountKind::Tmpfs => {
            if !r.source.is_empty() {
                return Err(bad("field Source must not be specified".into()));
            }
            if r.tmpfs_size < 0 {
                return Err(bad(format!("invalid tmpfs size: {}", r.tmpfs_size)));
            }
            if r.tmpfs_size > 0 {
                point.options.push(format!("size={}", r.tmpfs_size));
            }
            if let Some(mode) = r.tmpfs_mode {
                point.options.push(format!("mode={:o}", mode & 0o7777));
            }
        }
    }
    Ok(Wanted { point, labels: r.labels.clone(), driver_options: r.driver_options.clone() })
}

/// `ctr[:ro|rw]` of `--volumes-from`.
fn split_volumes_from(spec: &str) -> Result<(&str, Option<bool>)> {
    match spec.split_once(':') {
        None => Ok((spec, None)),
        Some((id, "ro")) => Ok((id, Some(false))),
        Some((id, "rw")) => Ok((id, Some(true))),
        Some((_, mode)) => Err(Error::Invalid(format!("invalid mode: {mode}"))),
    }
}

impl Engine {
    /// Fix `c`'s mount points from its host config and the VOLUMEs in
    /// `c.config.volumes`, making the volumes they need. A failure leaves
    /// no anonymous volume behind (named ones it made stay, as in Docker).
    pub(crate) fn plan_mounts(&self, c: &mut Container) -> Result<()> {
        let mut made = vec![];
        let planned = self.plan_mounts_inner(c, &mut made);
        if planned.is_err() {
            for name in made {
                let _ = self.remove_volume(&name, true);
            }
            c.mount_points.clear();
        }
        // A container or volume driver the mounts name that is not there
        // makes the create request a bad one; a 404 would have the docker
        // CLI go and pull the image.
        planned.map_err(|e| match e {
            Error::NotFound(m) => Error::Invalid(m),
            other => other,
        })
    }

    fn plan_mounts_inner(&self, c: &mut Container, made: &mut Vec<String>) -> Result<()> {
        let mut by_dest: BTreeMap<String, MountPoint> = BTreeMap::new();
        for spec in &c.host.volumes_from {
            let (key, rw) = split_volumes_from(spec)?;
            let other = self.find(key)?;
            let points = other.rec.lock().map_err(crate::containers::poisoned)?.mount_points.clone();
            for mut p in points {
                p.rw = p.rw && rw != Some(false);
                p.copy_data = false;
                by_dest.insert(p.destination.clone(), p);
            }
        }
        let mut explicit = BTreeSet::new();
        let mut wanted = vec![];
        for raw in &c.host.binds {
            wanted.push(parse_volume_spec(raw, &c.host.volume_driver)?);
        }
        for r in &c.host.mounts {
            wanted.push(from_request(r)?);
        }
        let tmpfs: BTreeSet<String> = c.host.tmpfs.keys().map(|t| clean_path(t)).collect();
        for w in &wanted {
            let d = &w.point.destination;
            if !explicit.insert(d.clone()) || tmpfs.contains(d) {
                return Err(Error::Invalid(format!("Duplicate mount point: {d}")));
            }
        }
        for w in wanted {
            let mut p = w.point;
            if p.kind == MountKind::Volume {
                self.make_volume(&mut p, w.labels, w.driver_options, made)?;
            }
            by_dest.insert(p.destination.clone(), p);
        }
        for dest in &c.config.volumes {
            let d = check_target(MountKind::Volume, dest).map_err(Error::Invalid)?;
            if tmpfs.contains(&d) || by_dest.contains_key(&d) {
                continue;
            }
            let mut p = MountPoint {
                kind: MountKind::Volume,
                destination: d,
                rw: true,
                driver: "local".into(),
                copy_data: true,
                ..Default::default()
            };
            self.make_volume(&mut p, BTreeMap::new(), BTreeMap::new(), made)?;
            by_dest.insert(p.destination.clone(), p);
        }
        c.mount_points = by_dest.into_values().collect();
        Ok(())
    }

    /// Make (or find) the volume a mount point names; with no name, a new
    /// anonymous one, whose name goes in `made`.
    fn make_volume(
        &self,
        p: &mut MountPoint,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        made: &mut Vec<String>,
    ) -> Result<()> {
        let anonymous = p.name.is_empty();
        let v = self.create_volume(CreateVolume { name: p.name.clone(), driver: p.driver.clone(), labels, options })?;
        p.name = v.name;
        p.source = v.mountpoint.display().to_string();
        p.anonymous = anonymous;
        if anonymous {
            made.push(p.name.clone());
        }
        Ok(())
    }

    /// Remove the anonymous volumes of `c`, which is no longer in the
    /// container table, that no other container uses (`rm -v`, `--rm`, a
    /// create that failed). Named volumes stay.
    pub(crate) fn drop_anonymous(&self, c: &Container) {
        for p in c.mount_points.iter().filter(|p| p.anonymous && p.kind == MountKind::Volume) {
            // Refused while another container mounts it.
            let _ = self.remove_volume(&p.name, true);
        }
    }

    /// `POST /volumes/create`, and a volume a mount names: made unless
    /// there is one of that name already.
    pub fn create_volume(&self, req: CreateVolume) -> Result<crate::volumes::Volume> {
        let existed = !req.name.is_empty() && self.volumes.get(&req.name).is_ok();
        let v = self.volumes.create(req)?;
        if !existed {
            self.volume_event(&v.name, &v.driver, "create", BTreeMap::new());
        }
        Ok(v)
    }

    fn volume_event(&self, name: &str, driver: &str, action: &str, mut attrs: BTreeMap<String, String>) {
        attrs.insert("driver".into(), driver.to_owned());
        self.events.publish("volume", action, name, attrs);
    }

    /// `POST /volumes/prune`: every volume no container mounts that has
    /// the labels asked for; only anonymous ones unless `all` (API 1.42 on;
    /// older clients mean all). The names removed and the bytes freed.
    pub fn prune_volumes(
        &self,
        all: bool,
        keep: impl Fn(&crate::volumes::Volume) -> bool,
    ) -> Result<(Vec<String>, u64)> {
        let users = self.volume_users();
        let mut removed = vec![];
        let mut freed = 0;
        for v in self.volumes.list()? {
            if users.contains_key(&v.name) || (!all && !v.is_anonymous()) || !keep(&v) {
                continue;
            }
            let size = self.volumes.size(&v.name).unwrap_or(0);
            if self.remove_volume(&v.name, false).is_ok() {
                removed.push(v.name);
                freed += size;
            }
        }
        Ok((removed, freed))
    }

    /// Which containers (any state) mount each volume.
    pub fn volume_users(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.list() {
            for p in c.mount_points.iter().filter(|p| p.kind == MountKind::Volume) {
                out.entry(p.name.clone()).or_default().push(c.id.clone());
            }
        }
        out
    }

    /// `DELETE /volumes/{name}`: refused while any container, running or
    /// not, mounts it. `force` answers a missing volume with success.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        if let Some(ids) = self.volume_users().get(name) {
            return Err(Error::Conflict(format!("remove {name}: volume is in use - [{}]", ids.join(", "))));
        }
        let driver = self.volumes.get(name).map(|v| v.driver).unwrap_or_default();
        match self.volumes.remove(name) {
            Err(Error::NotFound(_)) if force => Ok(()),
            Ok(()) => {
                self.volume_event(name, &driver, "destroy", BTreeMap::new());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Take `c`'s volumes into use before it starts: mount those of a
    /// mounted kind, and fill new ones from the image at `rootfs`. Mount
    /// points marked to be filled are no longer marked, filled or not (a
    /// volume with content is left as it is); true when any mark went. On
    /// failure nothing stays taken.
    pub(crate) fn volumes_up(&self, c: &mut Container, rootfs: &Path) -> Result<bool> {
        let mut unmarked = false;
        for i in 0..c.mount_points.len() {
            let p = &c.mount_points[i];
            if p.kind != MountKind::Volume {
                continue;
            }
            let taken = self.volumes.acquire(&p.name, &c.id).and_then(|data| {
                let attrs = BTreeMap::from([
                    ("container".to_owned(), c.id.clone()),
                    ("destination".to_owned(), p.destination.clone()),
                    ("propagation".to_owned(), p.propagation.clone()),
                    ("read/write".to_owned(), p.rw.to_string()),
                ]);
                self.volume_event(&p.name, &p.driver, "mount", attrs);
                if !p.copy_data || !is_empty_dir(&data) {
                    return Ok(());
                }
                berth_image::copy::copy_dir_into(rootfs, &p.destination, &data).map(drop).map_err(|e| {
                    Error::Internal(format!("copy the image's {} into volume {}: {e}", p.destination, p.name))
                })
            });
            if let Err(e) = taken {
                self.volumes_down(c);
                return Err(e);
            }
            if c.mount_points[i].copy_data {
                c.mount_points[i].copy_data = false;
                unmarked = true;
            }
        }
        Ok(unmarked)
    }

    /// Let go of `c`'s volumes when it stopped.
    pub(crate) fn volumes_down(&self, c: &Container) {
        for p in c.mount_points.iter().filter(|p| p.kind == MountKind::Volume) {
            if self.volumes.release(&p.name, &c.id) {
                let attrs = BTreeMap::from([("container".to_owned(), c.id.clone())]);
                self.volume_event(&p.name, &p.driver, "unmount", attrs);
            }
        }
    }
}

impl Engine {
    fn subpaths_dir(&self, id: &str) -> std::path::PathBuf {
        self.cfg.exec_root.join("subpaths").join(id)
    }

    /// Bind each volume subpath of starting `c` onto a place of its own
    /// under the exec root, resolved inside its volume through a file
    /// descriptor, so that a symlink another container swaps in cannot send
    /// the mount outside the volume (moby's safepath). The runtime mounts
    /// from there; the places by destination.
    pub(crate) fn stage_subpaths(&self, c: &Container) -> Result<BTreeMap<String, std::path::PathBuf>> {
        use std::os::fd::AsFd;
        let mut staged = BTreeMap::new();
        let subs: Vec<&MountPoint> =
            c.mount_points.iter().filter(|p| p.kind == MountKind::Volume && !p.subpath.is_empty()).collect();
        if subs.is_empty() {
            return Ok(staged);
        }
        // What a start cut short may have left.
        self.unstage_subpaths(&c.id);
        let dir = self.subpaths_dir(&c.id);
        if let Some(parent) = dir.parent() {
            berth_core::perm::ensure_dir(parent, berth_core::perm::PRIVATE_DIR)
                .map_err(Error::io(format!("create {}", parent.display())))?;
        }
        berth_core::perm::ensure_dir(&dir, berth_core::perm::PRIVATE_DIR)
            .map_err(Error::io(format!("create {}", dir.display())))?;
        for (n, p) in subs.into_iter().enumerate() {
            let what = || format!("volume {}: subpath {}", p.name, p.subpath);
            let root = std::fs::File::open(&p.source).map_err(Error::io(what()))?;
            let fd = berth_core::rootfs::openat_in_root(root.as_fd(), Path::new(&p.subpath), libc::O_PATH)
                .map_err(|e| Error::Invalid(format!("{}: {e}", what())))?;
            let is_dir = std::fs::metadata(berth_core::rootfs::fd_path(fd.as_fd())).is_ok_and(|m| m.is_dir());
            let target = dir.join(n.to_string());
            let made = if is_dir {
                std::fs::create_dir(&target)
            } else {
                std::fs::OpenOptions::new().write(true).create_new(true).open(&target).map(drop)
            };
            made.map_err(Error::io(format!("create {}", target.display())))?;
            let src = berth_core::rootfs::fd_path(fd.as_fd());
            nix::mount::mount(
                Some(&src),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::Io { what: format!("bind {}", what()), source: e.into() })?;
            staged.insert(p.destination.clone(), target);
        }
        Ok(staged)
    }

    /// Undo [`Engine::stage_subpaths`]: unmount and remove each place (never
    /// a recursive removal: a place still mounted holds the volume's files).
    pub(crate) fn unstage_subpaths(&self, id: &str) {
        let dir = self.subpaths_dir(id);
        let Ok(rd) = std::fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&p).or_else(|_| std::fs::remove_file(&p));
        }
        let _ = std::fs::remove_dir(&dir);
        // The parent too, once no container has subpaths staged.
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Each shared bind of `c` needs a shared mount under its source, and
/// each slave bind a shared or slave one: else nothing would propagate,
/// and the mode would be dropped in silence. Checks and messages are
/// moby's (`ensureShared`, `ensureSharedOrSlave`), at start, as the host's
/// mounts are then.
pub(crate) fn check_propagation(c: &Container) -> Result<()> {
    for p in c.mount_points.iter().filter(|p| p.kind != MountKind::Tmpfs) {
        if p.propagation.ends_with("shared") || p.propagation.ends_with("slave") {
            propagates_from(&p.source, p.propagation.ends_with("shared"))?;
        }
    }
    Ok(())
}

fn propagates_from(source: &str, shared: bool) -> Result<()> {
    // A source still to be made will sit on the mount of its nearest
    // existing parent.
    let path = Path::new(source)
        .ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok())
        .ok_or_else(|| Error::Invalid(format!("bind source path {source} cannot be resolved")))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::io("read mountinfo"))?;
    let Some((point, optional)) = berth_core::mountinfo::mount_of(&info, &path) else { return Ok(()) };
    let is = |tag: &str| optional.iter().any(|o| o.starts_with(tag));
    if shared && !is("shared:") {
        return Err(Error::Invalid(format!(
            "path {source} is mounted on {} but it is not a shared mount",
            point.display()
        )));
    }
    if !shared && !is("shared:") && !is("master:") {
        return Err(Error::Invalid(format!(
            "path {source} is mounted on {} but it is not a shared or slave mount",
            point.display()
        )));
    }
    Ok(())
}

/// The spec's mounts for `c`'s mount points and `--tmpfs`, parents before
/// what is mounted inside them (Docker sorts by the depth of the
/// destination), and the root propagation a shared or slave bind needs.
pub(crate) fn spec_mounts(
    c: &Container,
    staged: &BTreeMap<String, std::path::PathBuf>,
) -> Result<(Vec<Value>, Option<&'static str>)> {
    let mut out: Vec<(String, Value)> = vec![];
    let mut root_prop = None;
    for (dest, opts) in &c.host.tmpfs {
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(opts.split(',').filter(|s| !s.is_empty()));
        out.push((clean_path(dest), json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o})));
    }
    for p in &c.mount_points {
        let m = match p.kind {
            MountKind::Tmpfs => {
                let mut o: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
                o.extend(p.options.iter().cloned());
                if !p.rw {
                    o.push("ro".into());
                }
                json!({"destination": p.destination, "type": "tmpfs", "source": "tmpfs", "options": o})
            }
            MountKind::Bind | MountKind::Volume => {
                if p.kind == MountKind::Bind && std::fs::symlink_metadata(&p.source).is_err() {
                    if !p.create_source {
                        return Err(Error::Invalid(format!(
                            "error while creating mount source path '{}': bind source path does not exist",
                            p.source
                        )));
                    }
                    std::fs::create_dir_all(&p.source)
                        .map_err(Error::io(format!("error while creating mount source path '{}'", p.source)))?;
                }
                let prop = if p.propagation.is_empty() { "rprivate" } else { p.propagation.as_str() };
                if prop.ends_with("shared") {
                    root_prop = Some("rshared");
                } else if prop.ends_with("slave") && root_prop.is_none() {
                    root_prop = Some("rslave");
                }
                let mut o = vec!["rbind", prop];
                if !p.rw {
                    o.push("ro");
                }
                // A volume's subpath, from where it was bound at start.
                let source = staged.get(&p.destination).map_or(p.source.clone(), |s| s.display().to_string());
                json!({"destination": p.destination, "type": "bind", "source": source, "options": o})
            }
        };
        out.push((p.destination.clone(), m));
    }
    out.sort_by_key(|(d, _)| d.split('/').filter(|s| !s.is_empty()).count());
    Ok((out.into_iter().map(|(_, m)| m).collect(), root_prop))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_as_go_does() {
        assert_eq!(clean_path("/data/"), "/data");
        assert_eq!(clean_path("//a/./b/../c"), "/a/c");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("a/../.."), "..");
    }

    #[test]
    fn volume_specs_parse_as_docker_does() {
        let w = parse_volume_spec("/host/dir/:/data:ro,rshared", "").unwrap().point;
        assert_eq!((w.kind, w.source.as_str(), w.destination.as_str()), (MountKind::Bind, "/host/dir", "/data"));
        assert!(!w.rw && w.create_source);
        assert_eq!((w.propagation.as_str(), w.mode.as_str()), ("rshared", "ro,rshared"));
        let w = parse_volume_spec("db:/var/lib/db:nocopy", "").unwrap().point;
        assert_eq!((w.kind, w.name.as_str(), w.driver.as_str()), (MountKind::Volume, "db", "local"));
        assert!(w.rw && !w.copy_data);
        let w = parse_volume_spec("/anon", "").unwrap().point;
        assert!(w.kind == MountKind::Volume && w.name.is_empty() && w.copy_data);
        for (bad, why) in [
            ("/a:/b:rw,ro", "invalid mode: rw,ro"),
            ("/a:/b:bogus", "invalid mode: bogus"),
            ("/foo:rw", "invalid volume specification: '/foo:rw'"),
            (":/b", "invalid volume specification: ':/b'"),
            ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
            ("/a:rel", "mount path must be absolute"),
            ("/a:/", "destination can't be '/'"),
            ("/a:/b:nocopy", "field VolumeOptions must not be specified"),
            ("v1:/b:shared", "field BindOptions must not be specified"),
        ] {
            let e = parse_volume_spec(bad, "").unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_requests_are_checked() {
        let r = |kind, source: &str, target: &str| MountRequest {
            kind,
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        let e = from_request(&r(MountKind::Bind, "/nonexistent-berth-src", "/x")).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-src"
        );
        let e = from_request(&r(MountKind::Bind, "rel", "/x")).unwrap_err().to_string();
        assert!(e.contains("'rel' mount path must be absolute"), "{e}");
        let e = from_request(&r(MountKind::Tmpfs, "src", "/x")).unwrap_err().to_string();
        assert!(e.contains("field Source must not be specified"), "{e}");
        let e = from_request(&r(MountKind::Volume, "", "")).unwrap_err().to_string();
        assert!(e.contains("field Target must not be empty"), "{e}");
        let mut t = r(MountKind::Tmpfs, "", "/t");
        t.tmpfs_size = 1 << 20;
        t.tmpfs_mode = Some(0o1770);
        t.read_only = true;
        let p = from_request(&t).unwrap().point;
        assert_eq!(p.options, ["size=1048576", "mode=1770"]);
        assert!(!p.rw);
        let mut b = r(MountKind::Bind, "/", "/host");
        b.propagation = "rslave".into();
        assert_eq!(from_request(&b).unwrap().point.propagation, "rslave");
        b.propagation = "sideways".into();
        assert!(from_request(&b).is_err());
    }

    #[test]
    fn spec_mounts_put_parents_first() {
        let mut c = Container {
            mount_points: vec![
                MountPoint {
                    kind: MountKind::Bind,
                    source: "/".into(),
                    destination: "/a/b/c".into(),
                    ..Default::default()
                },
                MountPoint {
                    kind: MountKind::Volume,
                    source: "/".into(),
                    destination: "/a".into(),
                    ..Default::default()
                },
                MountPoint {
                    kind: MountKind::Bind,
                    source: "/".into(),
                    destination: "/s".into(),
                    propagation: "rshared".into(),
                    rw: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        c.host.tmpfs.insert("/a/b".into(), "size=1m".into());
        let (m, prop) = spec_mounts(&c, &BTreeMap::new()).unwrap();
        let dests: Vec<&str> = m.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/a", "/s", "/a/b", "/a/b/c"]);
        assert_eq!(m[0]["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(m[1]["options"], json!(["rbind", "rshared"]));
        assert_eq!(prop, Some("rshared"));
    }
}
