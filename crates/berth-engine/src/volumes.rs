//! Volumes of the `local` driver, as Docker keeps them: each under
//! `<data-root>/volumes/<name>/`, its data in `_data` and its record in
//! `volume.json` beside it (written whole, atomically). Which containers
//! use a volume is not stored here: it is read from the container records,
//! which say what each mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
}

impl VolumeStore {
    /// Read every volume under `dir`. A directory whose record is missing
    /// or does not parse is still a volume (Docker's local driver finds
    /// volumes by their directories); it gets a record with what is known.
    pub fn open(dir: &Path) -> Result<VolumeStore> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
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
        Ok(VolumeStore { dir: dir.to_owned(), vols: Mutex::new(vols) })
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
        let aside = self.dir.join(format!(".removing-{name}"));
        std::fs::rename(&root, &aside).map_err(Error::io(format!("remove volume {name}")))?;
        vols.remove(name);
        drop(vols);
        std::fs::remove_dir_all(&aside).map_err(Error::io(format!("remove {}", aside.display())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A store in a temp dir that goes when the test ends, failed or not.
    struct Tmp(PathBuf);

    impl Drop for Tmp {
        fn drop(&mut self) {
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
}
