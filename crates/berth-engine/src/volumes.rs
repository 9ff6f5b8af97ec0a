//! Volumes of the `local` driver, as Docker keeps them: each under
//! `<data-root>/volumes/<name>/`, its data in `_data` and its record in
//! `volume.json` beside it (written whole, atomically). Which containers
//! use a volume is not stored here: it is read from the container records,
//! which say what each mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::MsFlags;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The label Docker puts on volumes made without a name.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The options the local driver takes (`-o type=tmpfs device=tmpfs o=size=64m`).
const LOCAL_OPTS: &[&str] = &["type", "device", "o", "size"];

/// What is kept of a volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Where its data is on the host (`…/_data`); not stored.
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// A volume the local driver mounts (`-o type=… device=…`) while a
    /// container uses it, rather than a plain directory.
    fn is_mounted_kind(&self) -> bool {
        self.options.contains_key("type")
    }
}

/// `POST /volumes/create`.
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    /// Empty for a new anonymous volume (a random 64-hex name).
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    n.len() >= 2
        && c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
}

#[derive(Debug)]
pub struct VolumeStore {
    dir: PathBuf,
    vols: Mutex<BTreeMap<String, Volume>>,
    /// The running containers that have each volume mounted: a volume of
    /// a mounted kind is mounted for the first and unmounted after the last.
    users: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl VolumeStore {
    /// Read every volume under `dir`. A directory whose record is missing
    /// or does not parse is still a volume (Docker's local driver finds
    /// volumes by their directories); it gets a record with what is known.
    pub fn open(dir: &Path) -> Result<VolumeStore> {
        berth_core::perm::ensure_dir(dir, berth_core::perm::PRIVATE_DIR)
            .map_err(Error::io(format!("create {}", dir.display())))?;
        let mut vols = BTreeMap::new();
        let rd = std::fs::read_dir(dir).map_err(Error::io(format!("read {}", dir.display())))?;
        for e in rd.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with(".removing-") {
                // A removal a crash cut short.
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            if !valid_name(&name) || !e.path().join("_data").is_dir() {
                continue;
            }
            let rec = std::fs::read(e.path().join("volume.json")).ok();
            let mut v: Volume = rec.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(|| Volume {
                name: name.clone(),
                driver: "local".into(),
                ..Default::default()
            });
            v.name = name.clone();
            v.mountpoint = e.path().join("_data");
            vols.insert(name, v);
        }
        Ok(VolumeStore { dir: dir.to_owned(), vols: Mutex::new(vols), users: Mutex::new(BTreeMap::new()) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Volume>>> {
        self.vols.lock().map_err(|_| Error::Internal("volume table poisoned".into()))
    }

    /// Make a volume, or return the one of that name if it is the same
    /// (Docker's create is idempotent); a different driver or options for
    /// an existing name is a conflict.
    pub fn create(&self, req: CreateVolume) -> Result<Volume> {
        let driver = if req.driver.is_empty() { "local" } else { req.driver.as_str() };
        if driver != "local" {
            return Err(Error::NotFound(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let mut labels = req.labels.clone();
        let name = if req.name.is_empty() {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
            crate::names::new_id()
        } else {
            req.name.clone()
        };
        // The directory's name, and `.removing-<name>` at its removal.
        if name.len() > 245 {
            return Err(Error::Invalid(format!(
                "create {}…: a volume name of {} characters is too long (at most 245)",
                &name[..name.char_indices().nth(32).map_or(name.len(), |(i, _)| i)],
                name.len()
            )));
        }
        if !valid_name(&name) {
            return Err(Error::Invalid(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        if let Some(k) = req.options.keys().find(|k| !LOCAL_OPTS.contains(&k.as_str())) {
            return Err(Error::Invalid(format!("invalid option: \"{k}\"")));
        }
        if req.options.contains_key("type") != req.options.contains_key("device") {
            return Err(Error::Invalid("missing required option: \"type\" and \"device\" go together".into()));
        }
        if req.options.contains_key("size") {
            // Docker's local driver sizes a volume by a project quota of
            // xfs, which berth does not set up.
            return Err(Error::Invalid("quota size requested but no quota support".into()));
        }
        if req.options.contains_key("o") && !req.options.contains_key("type") {
            return Err(Error::Invalid("missing required option: \"type\"".into()));
        }
        let mut vols = self.lock()?;
        if let Some(v) = vols.get(&name) {
            if v.driver != driver || (!req.options.is_empty() && v.options != req.options) {
                return Err(Error::Conflict(format!(
                    "volume name {name} already exists with a different driver or options"
                )));
            }
            return Ok(v.clone());
        }
        let root = self.dir.join(&name);
        let data = root.join("_data");
        let v = Volume {
            name: name.clone(),
            driver: driver.into(),
            created_at: berth_core::time::now_rfc3339(),
            labels,
            options: req.options.clone(),
            mountpoint: data.clone(),
        };
        let made = std::fs::create_dir_all(&data)
            .map_err(Error::io(format!("create {}", data.display())))
            .and_then(|()| self.save(&v));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e);
        }
        vols.insert(name, v.clone());
        Ok(v)
    }

    fn save(&self, v: &Volume) -> Result<()> {
        let body = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
        let p = self.dir.join(&v.name).join("volume.json");
        berth_core::atomic::write_atomic(&p, &body, 0o600).map_err(Error::io(format!("write {}", p.display())))
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        self.lock()?.get(name).cloned().ok_or_else(|| Error::NotFound(format!("get {name}: no such volume")))
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        Ok(self.lock()?.values().cloned().collect())
    }

    fn users(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>>> {
        self.users.lock().map_err(|_| Error::Internal("volume users poisoned".into()))
    }

    /// Where the volume's data is for a container about to run: a volume
    /// of a mounted kind is mounted there first unless it already is.
    pub fn acquire(&self, name: &str, user: &str) -> Result<PathBuf> {
        let v = self.get(name)?;
        let mut users = self.users()?;
        if v.is_mounted_kind() && !crate::containers::is_mountpoint(&v.mountpoint) {
            mount_local(&v)?;
        }
        users.entry(name.to_owned()).or_default().insert(user.to_owned());
        Ok(v.mountpoint)
    }

    /// A container that stopped no longer uses the volume; the last one
    /// out unmounts a volume of a mounted kind.
    /// True when `user` had it.
    pub fn release(&self, name: &str, user: &str) -> bool {
        let Ok(mut users) = self.users() else { return false };
        let Some(set) = users.get_mut(name) else { return false };
        if !set.remove(user) {
            return false;
        }
        if set.is_empty() {
            users.remove(name);
            if let Ok(v) = self.get(name) {
                if v.is_mounted_kind() && crate::containers::is_mountpoint(&v.mountpoint) {
                    let _ = nix::mount::umount2(&v.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
        true
    }

    /// After a restart of the daemon, once every running container has
    /// acquired its volumes again: unmount those nothing uses any more.
    pub fn sweep(&self) {
        let Ok(vols) = self.list() else { return };
        for v in vols.iter().filter(|v| v.is_mounted_kind()) {
            let used = self.users().map(|u| u.contains_key(&v.name)).unwrap_or(true);
            if !used && crate::containers::is_mountpoint(&v.mountpoint) {
                let _ = nix::mount::umount2(&v.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }

    /// The bytes of the files in the volume, each inode counted once (as
    /// `docker system df` counts them).
    pub fn size(&self, name: &str) -> Result<u64> {
        let v = self.get(name)?;
        let mut seen = BTreeSet::new();
        Ok(dir_size(&v.mountpoint, &mut seen))
    }

    /// Remove a volume and its data. The caller has checked that no
    /// container uses it. The directory is renamed aside before its data
    /// is deleted, so a failure or a crash halfway leaves no volume with
    /// half its data under that name.
    pub fn remove(&self, name: &str) -> Result<()> {
        let mut vols = self.lock()?;
        if !vols.contains_key(name) {
            return Err(Error::NotFound(format!("get {name}: no such volume")));
        }
        let root = self.dir.join(name);
        let data = root.join("_data");
        if crate::containers::is_mountpoint(&data) {
            let _ = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH);
        }
        let aside = self.dir.join(format!(".removing-{name}"));
        std::fs::rename(&root, &aside).map_err(Error::io(format!("remove volume {name}")))?;
        vols.remove(name);
        drop(vols);
        std::fs::remove_dir_all(&aside).map_err(Error::io(format!("remove {}", aside.display())))
    }
}

fn dir_size(dir: &Path, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += dir_size(&e.path(), seen);
        } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
            total += m.size();
        }
    }
    total
}

/// The flags `mount(8)` knows by name; other options go to the file
/// system as data (as Docker's local driver passes `o=`).
const MOUNT_FLAGS: &[(&str, MsFlags, bool)] = &[
    ("ro", MsFlags::MS_RDONLY, true),
    ("rw", MsFlags::MS_RDONLY, false),
    ("bind", MsFlags::MS_BIND, true),
    ("rbind", MsFlags::MS_BIND.union(MsFlags::MS_REC), true),
    ("nosuid", MsFlags::MS_NOSUID, true),
    ("suid", MsFlags::MS_NOSUID, false),
    ("nodev", MsFlags::MS_NODEV, true),
    ("dev", MsFlags::MS_NODEV, false),
    ("noexec", MsFlags::MS_NOEXEC, true),
    ("exec", MsFlags::MS_NOEXEC, false),
    ("sync", MsFlags::MS_SYNCHRONOUS, true),
    ("async", MsFlags::MS_SYNCHRONOUS, false),
    ("dirsync", MsFlags::MS_DIRSYNC, true),
    ("noatime", MsFlags::MS_NOATIME, true),
    ("atime", MsFlags::MS_NOATIME, false),
    ("nodiratime", MsFlags::MS_NODIRATIME, true),
    ("diratime", MsFlags::MS_NODIRATIME, false),
    ("relatime", MsFlags::MS_RELATIME, true),
    ("norelatime", MsFlags::MS_RELATIME, false),
    ("strictatime", MsFlags::MS_STRICTATIME, true),
];

/// `o=` as mount flags and the file system's own options.
fn mount_options(o: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = vec![];
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match MOUNT_FLAGS.iter().find(|(n, _, _)| *n == opt) {
            Some((_, f, true)) => flags |= *f,
            Some((_, f, false)) => flags &= !*f,
            None => data.push(opt),
        }
    }
    (flags, data.join(","))
}

/// Mount a volume of the local driver's `type`/`device`/`o` on its data
/// directory.
fn mount_local(v: &Volume) -> Result<()> {
    let kind = v.options.get("type").map(String::as_str).unwrap_or("none");
    let device = v.options.get("device").map(String::as_str).unwrap_or("");
    let (flags, data) = mount_options(v.options.get("o").map(String::as_str).unwrap_or(""));
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(device), &v.mountpoint, Some(kind), flags, data).map_err(|e| {
        Error::Internal(format!(
            "error while mounting volume '{}': failed to mount local volume: mount {device}:{} , flags: {:#x}, data: {}: {e}",
            v.name,
            v.mountpoint.display(),
            flags.bits(),
            data.unwrap_or(""),
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A store in a temp dir that goes when the test ends, failed or not.
    struct Tmp(PathBuf);

    impl Drop for Tmp {
        fn drop(&mut self) {
            // A test that failed may leave a volume mounted.
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let under = format!("{}/", self.0.display());
            for mp in info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&under)) {
                let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store() -> (Tmp, PathBuf, VolumeStore) {
        let dir = std::env::temp_dir().join(format!("berth-vols-{}-{}", std::process::id(), crate::names::new_id()));
        let s = VolumeStore::open(&dir).unwrap();
        (Tmp(dir.clone()), dir, s)
    }

    fn named(name: &str) -> CreateVolume {
        CreateVolume { name: name.into(), ..Default::default() }
    }

    #[test]
    fn creates_finds_and_removes() {
        let (_tmp, dir, s) = store();
        let mut req = named("data");
        req.labels.insert("team".into(), "a".into());
        let v = s.create(req.clone()).unwrap();
        assert_eq!(v.mountpoint, dir.join("data/_data"));
        assert!(v.mountpoint.is_dir() && !v.is_anonymous());
        std::fs::write(v.mountpoint.join("f"), "kept").unwrap();
        // The same again is the same volume, data kept.
        assert_eq!(s.create(req).unwrap().created_at, v.created_at);
        assert_eq!(std::fs::read_to_string(v.mountpoint.join("f")).unwrap(), "kept");
        // Found again by a new store.
        let again = VolumeStore::open(&dir).unwrap().get("data").unwrap();
        assert_eq!(again.labels.get("team").map(String::as_str), Some("a"));
        s.remove("data").unwrap();
        assert!(!dir.join("data").exists());
        assert!(s.get("data").is_err() && s.list().unwrap().is_empty());
        // A removal cut short by a crash is finished at the next open.
        std::fs::create_dir_all(dir.join(".removing-old/_data")).unwrap();
        assert!(VolumeStore::open(&dir).unwrap().list().unwrap().is_empty());
        assert!(!dir.join(".removing-old").exists());
    }

    #[test]
    fn anonymous_volumes_get_a_random_name_and_the_label() {
        let (_tmp, dir, s) = store();
        let v = s.create(CreateVolume::default()).unwrap();
        assert_eq!(v.name.len(), 64);
        assert!(v.is_anonymous());
        assert_eq!(v.mountpoint, dir.join(&v.name).join("_data"));
    }

    #[test]
    fn bad_input_is_refused_and_nothing_is_made() {
        let (_tmp, dir, s) = store();
        for bad in ["a/b", "x", "-lead", "../up", "sp ace"] {
            let e = s.create(named(bad)).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad}: {e}");
        }
        let mut req = named("drv");
        req.driver = "nfsx".into();
        assert!(matches!(s.create(req).unwrap_err(), Error::NotFound(_)));
        let mut req = named("opt");
        req.options.insert("bogus".into(), "1".into());
        assert!(matches!(s.create(req).unwrap_err(), Error::Invalid(_)));
        let mut req = named("half");
        req.options.insert("type".into(), "tmpfs".into());
        assert!(matches!(s.create(req).unwrap_err(), Error::Invalid(_)));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // An existing name with other options is a conflict; its data stays.
        let v = s.create(named("keep")).unwrap();
        std::fs::write(v.mountpoint.join("f"), "x").unwrap();
        let mut other = named("keep");
        other.options = BTreeMap::from([("type".into(), "tmpfs".into()), ("device".into(), "tmpfs".into())]);
        assert!(matches!(s.create(other).unwrap_err(), Error::Conflict(_)));
        assert!(v.mountpoint.join("f").exists());
        assert!(matches!(s.remove("nosuch").unwrap_err(), Error::NotFound(_)));
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let (f, d) = mount_options("size=64m,ro,uid=1000,noexec,exec,bind");
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_BIND);
        assert_eq!(d, "size=64m,uid=1000");
    }

    #[test]
    fn a_tmpfs_volume_is_mounted_while_used_and_sized() {
        let (_tmp, _dir, s) = store();
        let mut req = named("tmp");
        req.options = BTreeMap::from([
            ("type".into(), "tmpfs".into()),
            ("device".into(), "tmpfs".into()),
            ("o".into(), "size=1m".into()),
        ]);
        let v = s.create(req).unwrap();
        assert!(!crate::containers::is_mountpoint(&v.mountpoint));
        let p = s.acquire("tmp", "a").unwrap();
        s.acquire("tmp", "b").unwrap();
        assert!(crate::containers::is_mountpoint(&p));
        let st = nix::sys::statvfs::statvfs(&p).unwrap();
        assert_eq!(st.blocks() * st.fragment_size(), 1 << 20);
        std::fs::write(p.join("f"), vec![0u8; 1000]).unwrap();
        assert_eq!(s.size("tmp").unwrap(), 1000);
        s.release("tmp", "a");
        assert!(crate::containers::is_mountpoint(&p));
        s.release("tmp", "b");
        assert!(!crate::containers::is_mountpoint(&p));
        // Its content was the tmpfs's: gone with it.
        assert!(!p.join("f").exists());
        s.remove("tmp").unwrap();
    }
}
