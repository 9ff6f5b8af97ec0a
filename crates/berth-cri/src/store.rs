//! What the CRI keeps beside the engine's records: each sandbox's and
//! container's config as kubelet gave it (protobuf, for the status calls),
//! and a sandbox's CNI attachment and result (for its CHECK and DEL).
//! One JSON file each under `<data-root>/cri/`, written atomically; the
//! engine's container record stays the truth of whether it exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_core::atomic::Durability;
use berth_engine::record::{self, Generations};
use serde::{Deserialize, Serialize};

/// A protobuf message as base64 of its encoding, in a JSON record.
mod pb {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<M: prost::Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec()))
    }

    pub(super) fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(d: D) -> Result<M, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)?;
        M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
    }
}

/// A sandbox's network, set up through CNI.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PodNetwork {
    /// The configuration list's name.
    pub network: String,
    pub attachment: berth_network::cni::Attachment,
    /// The ADD's result; `None` before the ADD and after the DEL.
    pub result: Option<serde_json::Value>,
    /// The DEL was done. Without it, a record with no result may be of an
    /// ADD that a crash cut off from its record, which a DEL (allowed
    /// without a result) still frees.
    #[serde(default)]
    pub torn_down: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sandbox {
    pub id: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    #[serde(with = "pb")]
    pub config: k8s_cri::v1::PodSandboxConfig,
    pub runtime_handler: String,
    /// `None` with the node's network.
    pub network: Option<PodNetwork>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub created_at: i64,
    #[serde(with = "pb")]
    pub config: k8s_cri::v1::ContainerConfig,
    /// The image's id, as resolved at create.
    pub image_ref: String,
    /// The log file: the sandbox's log directory joined with the
    /// container's log path; empty when kubelet gave none.
    pub log_path: String,
}

trait Record: Serialize + for<'de> Deserialize<'de> + Clone {
    fn id(&self) -> &str;
}

impl Record for Sandbox {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Record for Container {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Records of one kind: a directory, and its files read once.
/// Records of one kind, each `<id>.json` (replaced whole) and `<id>.state`
/// (written in place), read back as `berth_engine::record` reads a
/// container's.
#[derive(Debug)]
struct Table<R> {
    dir: PathBuf,
    map: Mutex<HashMap<String, Arc<R>>>,
    generations: Generations,
}

impl<R: Record> Table<R> {
    fn open(dir: PathBuf) -> std::io::Result<Table<R>> {
        berth_core::perm::ensure_dir(&dir, berth_core::perm::PRIVATE_DIR)?;
        let mut map = HashMap::new();
        let generations = Generations::default();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let path = e.path();
            match path.extension().and_then(|x| x.to_str()) {
                Some("json") => {}
                // Read with its record; alone, what a removal cut short left.
                Some("state") if path.with_extension("json").exists() => continue,
                // A temp file of a write a crash cut short.
                _ => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            }
            match record::load::<R>(&path, &path.with_extension("state")) {
                Some((g, r)) => {
                    generations.seen(g);
                    map.insert(r.id().to_owned(), Arc::new(r));
                }
                None => tracing::warn!(path = %path.display(), "unreadable CRI record skipped"),
            }
        }
        Ok(Table { dir, map: Mutex::new(map), generations })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.state"))
    }

    fn get(&self, id: &str) -> Option<Arc<R>> {
        self.map.lock().ok()?.get(id).cloned()
    }

    fn all(&self) -> Vec<Arc<R>> {
        self.map.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Write `r`; a volatile write goes in place into its state file's
    /// slots, with no rename over the old record to wait for.
    fn put(&self, r: R, d: Durability) -> std::io::Result<Arc<R>> {
        let generation = self.generations.next();
        let bytes = record::body(&r, generation).map_err(std::io::Error::other)?;
        // The first write of a record is always whole: a state file alone
        // is what a removal cut short leaves, and goes at the next start.
        let slots = match d {
            Durability::Volatile if self.path(r.id()).exists() => {
                berth_core::twoslot::write(&self.state_path(r.id()), generation, &bytes, berth_core::perm::RECORD)
            }
            _ => Err(std::io::ErrorKind::Unsupported.into()),
        };
        if slots.is_err() {
            berth_core::atomic::replace(&self.path(r.id()), &bytes, berth_core::perm::RECORD, d)?;
        }
        let r = Arc::new(r);
        if let Ok(mut m) = self.map.lock() {
            m.insert(r.id().to_owned(), r.clone());
        }
        Ok(r)
    }

    /// The record of `key`, an id or a unique prefix of one (as
    /// containerd takes them); `what` names the kind in errors.
    fn lookup(&self, what: &str, key: &str) -> Result<Arc<R>, tonic::Status> {
        if key.is_empty() {
            return Err(tonic::Status::invalid_argument(format!("{what} id is required")));
        }
        if let Some(r) = self.get(key) {
            return Ok(r);
        }
        let found: Vec<_> = self.all().into_iter().filter(|r| r.id().starts_with(key)).collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(tonic::Status::not_found(format!("{what} {key} not found"))),
            _ => Err(tonic::Status::invalid_argument(format!("{what} id {key} is ambiguous"))),
        }
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
        for p in [self.path(id), self.state_path(id)] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct Store {
    sandboxes: Table<Sandbox>,
    containers: Table<Container>,
}

impl Store {
    pub(crate) fn open(root: &Path) -> std::io::Result<Store> {
        berth_core::perm::ensure_dir(root, berth_core::perm::PRIVATE_DIR)?;
        Ok(Store { sandboxes: Table::open(root.join("sandboxes"))?, containers: Table::open(root.join("containers"))? })
    }

    pub(crate) fn sandbox(&self, id: &str) -> Option<Arc<Sandbox>> {
        self.sandboxes.get(id)
    }

    pub(crate) fn sandbox_by(&self, key: &str) -> Result<Arc<Sandbox>, tonic::Status> {
        self.sandboxes.lookup("pod sandbox", key)
    }

    pub(crate) fn container_by(&self, key: &str) -> Result<Arc<Container>, tonic::Status> {
        self.containers.lookup("container", key)
    }

    pub(crate) fn sandboxes(&self) -> Vec<Arc<Sandbox>> {
        self.sandboxes.all()
    }

    /// Write a sandbox's record, synced to disk before it returns; with
    /// `after_add` (the ADD's result put into the record written before
    /// the ADD) not synced but left to the system's writeback. That
    /// record is the pod start's last step: a crash of the daemon cannot
    /// lose it, and a crash of the machine, which could, ends the pod too.
    pub(crate) fn put_sandbox(&self, s: Sandbox, after_add: bool) -> std::io::Result<Arc<Sandbox>> {
        self.sandboxes.put(s, if after_add { Durability::Volatile } else { Durability::Full })
    }

    pub(crate) fn remove_sandbox(&self, id: &str) -> std::io::Result<()> {
        self.sandboxes.remove(id)
    }

    pub(crate) fn container(&self, id: &str) -> Option<Arc<Container>> {
        self.containers.get(id)
    }

    pub(crate) fn containers(&self) -> Vec<Arc<Container>> {
        self.containers.all()
    }

    /// Write a container's record, as durable as the engine's own record
    /// of it: restore reconciles the two, and removes a container whose
    /// CRI record a crash of the machine lost.
    pub(crate) fn put_container(&self, c: Container) -> std::io::Result<Arc<Container>> {
        self.containers.put(c, Durability::Contents)
    }

    pub(crate) fn remove_container(&self, id: &str) -> std::io::Result<()> {
        self.containers.remove(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sandbox(id: &str, name: &str) -> Sandbox {
        let config = k8s_cri::v1::PodSandboxConfig {
            metadata: Some(k8s_cri::v1::PodSandboxMetadata { name: name.into(), ..Default::default() }),
            ..Default::default()
        };
        Sandbox { id: id.into(), created_at: 1, config, runtime_handler: String::new(), network: None }
    }

    fn name(s: &Store, id: &str) -> String {
        s.sandbox(id).unwrap().config.metadata.clone().unwrap().name
    }

    #[test]
    fn the_newest_write_is_read_back_and_removal_leaves_nothing() {
        let root = std::env::temp_dir().join(format!("berth-cri-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = Store::open(&root).unwrap();
        s.put_sandbox(sandbox("a", "first"), false).unwrap();
        s.put_sandbox(sandbox("a", "after the add"), true).unwrap();
        assert!(root.join("sandboxes/a.state").exists());
        assert_eq!(name(&Store::open(&root).unwrap(), "a"), "after the add");
        // A durable write after it wins again.
        s.put_sandbox(sandbox("a", "torn down"), false).unwrap();
        assert_eq!(name(&Store::open(&root).unwrap(), "a"), "torn down");
        // A state file whose record is gone (a removal cut short) goes.
        s.put_sandbox(sandbox("b", "b"), false).unwrap();
        s.put_sandbox(sandbox("b", "b"), true).unwrap();
        std::fs::remove_file(root.join("sandboxes/b.json")).unwrap();
        let again = Store::open(&root).unwrap();
        assert!(again.sandbox("b").is_none());
        assert!(!root.join("sandboxes/b.state").exists());
        s.remove_sandbox("a").unwrap();
        let left: Vec<_> =
            std::fs::read_dir(root.join("sandboxes")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
