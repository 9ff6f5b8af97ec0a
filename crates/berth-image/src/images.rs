//! Image records and names.
//!
//! The config blob lives in the content store; `images/<hex>.json` records
//! an image whose layers are all unpacked, and `repositories.json` maps
//! `name:tag` and `name@digest` to image ids. Both are written atomically;
//! an image is recorded only after its layers, a name only after its image.
//! Deleting follows `docker rmi`.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::content::{ContentStore, Tee};
use crate::digest::{Algorithm, ChainId, DiffId, Digest, ImageId};
use crate::error::{Error, Result};
use crate::layers::{Layer, LayerStore, Staged};
use crate::record;
use crate::reference::Reference;

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: ImageId,
    /// The chain id of its top layer; none for an image without layers.
    pub top_layer: Option<ChainId>,
    /// When it was added (RFC 3339).
    pub added: String,
    /// The image it was made from (`docker commit`, a build step), as
    /// Docker records `Parent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ImageId>,
}

/// A container that uses an image, as `delete` needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUse {
    pub id: String,
    pub running: bool,
}

/// The first 12 characters of an id, as Docker shows it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What `delete` did, in Docker's order and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Untagged(String),
    Deleted(ImageId),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Repositories {
    /// Full reference (`docker.io/library/busybox:latest`) → image id.
    refs: BTreeMap<String, ImageId>,
}

/// The whole store: blobs, layers, images and names.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    pub content: ContentStore,
    pub layers: LayerStore,
    names: Mutex<()>,
}

impl ImageStore {
    /// Open (creating) the store under the data root.
    pub fn open(root: &Path) -> Result<ImageStore> {
        use berth_core::perm::{ensure_dir, PRIVATE_DIR, SHARED_DIR};
        for (d, mode) in
            [(root.to_owned(), SHARED_DIR), (root.join("blobs"), PRIVATE_DIR), (root.join("images"), PRIVATE_DIR)]
        {
            ensure_dir(&d, mode).map_err(Error::io(format!("create {}", d.display())))?;
        }
        let content = ContentStore::open(&root.join("blobs"))?;
        let layers = LayerStore::open(root)?;
        Ok(ImageStore { root: root.to_owned(), content, layers, names: Mutex::new(()) })
    }

    fn record_path(&self, id: &ImageId) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.digest().hex()))
    }

    fn repos_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }

    fn read_repos(&self) -> Result<Repositories> {
        Ok(record::read(&self.repos_path(), "repositories.json")?.unwrap_or_default())
    }

    fn write_repos(&self, r: &Repositories) -> Result<()> {
        record::write(&self.repos_path(), r, "repositories.json")
    }

    /// Record an image whose config is `config` (bytes as they will be
    /// hashed) and whose layers are already unpacked.
    pub fn add(&self, config: &[u8]) -> Result<ImageRecord> {
        self.add_child(config, None)
    }

    /// `add`, recording `parent` as the image this one was made from. An
    /// image that is there already keeps its record.
    pub fn add_child(&self, config: &[u8], parent: Option<&ImageId>) -> Result<ImageRecord> {
        let parsed = ImageConfig::parse(config)?;
        let chain = ChainId::chain(&parsed.rootfs.diff_ids);
        let top_layer = chain.last().cloned();
        if let Some(top) = &top_layer {
            if self.layers.get(top)?.is_none() {
                return Err(Error::NotFound(format!("layer {top} of the image is not in the store")));
            }
        }
        let (digest, _) = self.content.ingest(config, None)?;
        let id = ImageId::from(digest);
        if let Some(existing) = self.get(&id)? {
            return Ok(existing);
        }
        let rec = ImageRecord { id, top_layer, added: berth_core::time::now_rfc3339(), parent: parent.cloned() };
        record::write(&self.record_path(&rec.id), &rec, format_args!("image record {}", rec.id))?;
        Ok(rec)
    }

    /// The images made from `id`.
    pub fn children(&self, id: &ImageId) -> Result<Vec<ImageId>> {
        Ok(self.list()?.into_iter().filter(|r| r.parent.as_ref() == Some(id)).map(|r| r.id).collect())
    }

    pub fn get(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        record::read(&self.record_path(id), format_args!("image record {id}"))
    }

    /// The config of an image.
    pub fn config(&self, id: &ImageId) -> Result<ImageConfig> {
        ImageConfig::parse(&self.content.read(id.digest())?)
    }

    /// Its config bytes, as hashed.
    pub fn config_bytes(&self, id: &ImageId) -> Result<Vec<u8>> {
        self.content.read(id.digest())
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let mut out: Vec<ImageRecord> = record::list(&self.root.join("images"), |p| p)?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Every name in the store with its image, sorted by name.
    pub fn names(&self) -> Result<Vec<(Reference, ImageId)>> {
        let repos = self.read_repos()?;
        Ok(repos.refs.into_iter().filter_map(|(k, v)| Some((Reference::parse(&k).ok()?, v))).collect())
    }

    /// Every name of an image, full form, sorted.
    pub fn names_of(&self, id: &ImageId) -> Result<Vec<Reference>> {
        Ok(self.names()?.into_iter().filter(|(_, v)| v == id).map(|(r, _)| r).collect())
    }

    /// Point `r` (tag or digest reference) at `id`, moving it from any image
    /// it named before.
    pub fn tag(&self, r: &Reference, id: &ImageId) -> Result<()> {
        if self.get(id)?.is_none() {
            return Err(Error::NotFound(format!("No such image: {id}")));
        }
        let _g = self.names.lock().map_err(|_| Error::Conflict("image names lock poisoned".into()))?;
        let mut repos = self.read_repos()?;
        repos.refs.insert(r.clone().with_default_tag().to_string(), id.clone());
        self.write_repos(&repos)
    }

    /// Find an image by name, full id, `sha256:` id or unique id prefix, as
    /// `docker image inspect` does.
    pub fn resolve(&self, s: &str) -> Result<ImageId> {
        let missing = || Error::NotFound(format!("No such image: {s}"));
        if let Ok(d) = s.parse::<Digest>() {
            let id = ImageId::from(d);
            return self.get(&id)?.map(|r| r.id).ok_or_else(missing);
        }
        if let Ok(r) = Reference::parse(s) {
            let repos = self.read_repos()?;
            if let Some(id) = repos.refs.get(&r.with_default_tag().to_string()) {
                return Ok(id.clone());
            }
        }
        let prefix = s.strip_prefix("sha256:").unwrap_or(s);
        if !prefix.is_empty() && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<ImageId> =
                self.list()?.into_iter().map(|r| r.id).filter(|id| id.digest().hex().starts_with(prefix)).collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                _ => return Err(Error::Invalid(format!("multiple IDs found with provided prefix: {prefix}"))),
            }
        }
        Err(missing())
    }

    /// `docker rmi`, with Docker's rules and messages. A name is untagged
    /// (refused without `force` when it is the image's only repository and
    /// a container uses the image), and the image deleted once no name is
    /// left, unless a container uses it: then it stays, dangling, for the
    /// container. An id deletes the image with all its names; several
    /// repositories or a stopped container need `force`, and a running
    /// container refuses even then. `in_use` names a container using an
    /// image.
    pub fn delete(
        &self,
        s: &str,
        force: bool,
        in_use: impl Fn(&ImageId) -> Option<ContainerUse>,
    ) -> Result<Vec<Deleted>> {
        let id = self.resolve(s)?;
        let _g = self.names.lock().map_err(|_| Error::Conflict("image names lock poisoned".into()))?;
        let mut repos = self.read_repos()?;
        let names_of = |repos: &Repositories| -> Vec<Reference> {
            repos.refs.iter().filter(|(_, v)| **v == id).filter_map(|(k, _)| Reference::parse(k).ok()).collect()
        };
        let names = names_of(&repos);
        // Docker's isSingleReference: one repository, at most one tag.
        let single = names.iter().all(|n| names.first().is_some_and(|f| f.name() == n.name()))
            && names.iter().filter(|n| n.tag().is_some()).count() <= 1;
        let used = in_use(&id);
        let conflict = |hard: bool, why: String| {
            let how = if hard { "cannot be forced" } else { "must be forced" };
            Error::Conflict(format!("conflict: unable to delete {} ({how}) - {why}", id.short()))
        };
        let by_name = Reference::parse(s).ok().map(Reference::with_default_tag).filter(|n| names.contains(n));
        let mut untag = Vec::new();
        let by_name = match by_name {
            Some(name) => {
                if let (false, true, Some(u)) = (force, single, &used) {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{s}\" (must force) - container {} is using its referenced image {}",
                        short(&u.id),
                        id.short()
                    )));
                }
                let rest: Vec<&Reference> = names.iter().filter(|n| **n != name).collect();
                // Digest references left alone in the tag's repository go too.
                if name.tag().is_some() && rest.iter().filter(|n| n.name() == name.name()).all(|n| n.tag().is_none()) {
                    untag.extend(rest.iter().filter(|n| n.name() == name.name()).map(|n| (*n).clone()));
                }
                untag.insert(0, name);
                true
            }
            None => {
                if single {
                    match &used {
                        Some(u) if u.running => {
                            return Err(conflict(
                                true,
                                format!("image is being used by running container {}", short(&u.id)),
                            ))
                        }
                        Some(u) if !force => {
                            return Err(conflict(
                                false,
                                format!("image is being used by stopped container {}", short(&u.id)),
                            ))
                        }
                        _ => untag.extend(names.iter().cloned()),
                    }
                }
                false
            }
        };
        let mut out = Vec::new();
        for n in &untag {
            repos.refs.remove(&n.to_string());
            out.push(Deleted::Untagged(n.familiar()));
        }
        let left = names.len() - untag.len();
        if by_name && left > 0 {
            self.write_repos(&repos)?;
            return Ok(out);
        }
        // The image itself (Docker's imageDeleteHelper). One that others
        // were made from stays; by id that is a conflict no force lifts.
        let has_children = !self.children(&id)?.is_empty();
        if has_children {
            if by_name {
                self.write_repos(&repos)?;
                return Ok(out);
            }
            return Err(conflict(true, "image has dependent child images".into()));
        }
        let blocked = match &used {
            Some(u) if u.running => {
                Some(conflict(true, format!("image is being used by running container {}", short(&u.id))))
            }
            _ if !force && left > 0 => Some(conflict(false, "image is referenced in multiple repositories".into())),
            Some(u) if !force => {
                Some(conflict(false, format!("image is being used by stopped container {}", short(&u.id))))
            }
            _ => None,
        };
        if let Some(e) = blocked {
            if by_name {
                // The name went; the image stays for the container using it.
                self.write_repos(&repos)?;
                return Ok(out);
            }
            return Err(e);
        }
        for n in names_of(&repos) {
            repos.refs.remove(&n.to_string());
            out.push(Deleted::Untagged(n.familiar()));
        }
        self.write_repos(&repos)?;
        std::fs::remove_file(self.record_path(&id)).map_err(Error::io(format!("remove image {id}")))?;
        out.push(Deleted::Deleted(id));
        self.collect_layers()?;
        Ok(out)
    }

    /// Unpack a layer blob (a tar, plain or compressed) into a staged layer
    /// while keeping the blob in the content store for save and push. The
    /// blob is checked against `blob` and its tar against `diff` when
    /// given; on any failure neither the files nor the blob are left.
    pub fn stage_blob(&self, r: impl Read, blob: Option<&Digest>, diff: Option<&DiffId>) -> Result<Staged> {
        let alg = blob.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut tee = Tee::new(r, self.content.writer(alg)?);
        let staged = match self.layers.stage(&mut tee, None) {
            Ok(s) => s,
            Err(e) => {
                // A blob that is not the one asked for says so, rather
                // than the broken tar its wrong bytes make.
                if let Some(want) = blob {
                    if io::copy(&mut tee, &mut io::sink()).is_ok() {
                        match tee.ingest.discard() {
                            Some(actual) if actual != *want => {
                                return Err(Error::DigestMismatch { expected: want.clone(), actual })
                            }
                            _ => {}
                        }
                    }
                }
                return Err(e);
            }
        };
        // The stage read the tar to its end; the blob's own tail (a
        // compressed trailer, padding) still counts for its digest.
        let mut stored = io::copy(&mut tee, &mut io::sink()).map(|_| ()).map_err(Error::io("read layer"));
        if let (Ok(()), Some(d)) = (&stored, diff) {
            if staged.diff_id() != d {
                let actual = staged.diff_id().digest().clone();
                stored = Err(Error::DigestMismatch { expected: d.digest().clone(), actual });
            }
        }
        match stored.and_then(|()| tee.ingest.commit(blob)) {
            Ok((d, _)) => Ok(staged.with_blob(d)),
            Err(e) => {
                self.layers.discard(staged);
                Err(e)
            }
        }
    }

    /// Unpack a layer blob on top of `parent`, keeping the blob.
    pub fn create_layer(&self, blob: impl Read, parent: Option<&ChainId>) -> Result<Layer> {
        let staged = self.stage_blob(blob, None, None)?;
        self.layers.register(staged, parent)
    }

    /// Remove layers no image or container layer uses.
    pub fn collect_layers(&self) -> Result<Vec<ChainId>> {
        let mut used: HashSet<ChainId> = HashSet::new();
        let tops = self.list()?.into_iter().filter_map(|r| r.top_layer).chain(self.layers.rw_parents()?);
        for top in tops {
            for l in self.layers.chain(&top)? {
                used.insert(l.chain_id);
            }
        }
        let mut removed = Vec::new();
        for l in self.layers.list()? {
            if !used.contains(&l.chain_id) {
                self.layers.remove(&l.chain_id)?;
                removed.push(l.chain_id);
            }
        }
        Ok(removed)
    }

    /// Remove blobs nothing refers to: not a config of an image, not the
    /// blob of a layer.
    pub fn prune_blobs(&self) -> Result<Vec<Digest>> {
        let mut keep: HashSet<Digest> = self.list()?.into_iter().map(|r| r.id.digest().clone()).collect();
        keep.extend(self.layers.list()?.into_iter().filter_map(|l| l.blob));
        self.content.prune(&keep)
    }
}
