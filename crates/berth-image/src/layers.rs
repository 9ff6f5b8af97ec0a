//! Unpacked layers, shared by chain id, and the writable layers of
//! containers, laid out for overlayfs:
//!
//! ```text
//! layers/<chain hex>/layer.json   chain id, diff id, parent, size, cache id, blob
//! overlay/<cache id>/diff         the unpacked layer
//! overlay/<cache id>/link         its short name; overlay/l/<short> -> ../<cache id>/diff
//! overlay/<ctr cache id>/{diff,work,merged}, rw.json   a container's layer
//! ```
//!
//! A layer is unpacked into a fresh cache directory and recorded last, with
//! an atomic write. Until then the directory names its maker's pid in an
//! `owner` file; one no record names whose maker is gone is a half-applied
//! layer (the process died) and is removed when the store is opened. A
//! container's layer is made as `.making-<pid>-<cache id>`, its record
//! inside, and renamed into place whole.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_core::atomic::Durability;
use serde::{Deserialize, Serialize};

use crate::content::process_alive;
use crate::digest::{ChainId, DiffId, Digest};
use crate::error::{Error, Result};
use crate::overlay::OverlayMount;
use crate::record;
use crate::unpack::{self, Unpacked};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// In a cache directory being made: the pid of the process making it.
const OWNER: &str = "owner";

/// A container's layer being made is named `.making-<pid>-<cache id>`.
const MAKING: &str = ".making-";

/// One unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub chain_id: ChainId,
    pub diff_id: DiffId,
    pub parent: Option<ChainId>,
    /// Bytes of file content in this layer alone.
    pub size: u64,
    pub cache_id: String,
    /// The blob it was unpacked from, kept in the content store for save
    /// and push.
    pub blob: Option<Digest>,
}

/// A container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RwLayer {
    pub id: String,
    pub parent: Option<ChainId>,
    pub cache_id: String,
}

/// A layer unpacked but not yet recorded (see `LayerStore::register`).
#[derive(Debug)]
pub struct Staged {
    cache_id: String,
    unpacked: Unpacked,
    blob: Option<Digest>,
}

impl Staged {
    /// Bytes of its files.
    pub fn size(&self) -> u64 {
        self.unpacked.size
    }

    pub fn diff_id(&self) -> &DiffId {
        &self.unpacked.diff_id
    }

    /// The blob it came from, stored once the unpack checked out.
    pub fn with_blob(mut self, blob: Digest) -> Staged {
        self.blob = Some(blob);
        self
    }
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    layers: PathBuf,
    overlay: PathBuf,
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // SAFETY: the buffer is writable for its length.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got != buf.len() as isize {
        // getrandom does not fail for small requests once the pool is up; a
        // counter and the time keep names unique if it ever does.
        let seed =
            format!("{:?}{}{}", std::time::SystemTime::now(), std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut out = Vec::new();
        while out.len() < n {
            out.extend_from_slice(Digest::sha256(format!("{seed}{}", out.len()).as_bytes()).hex().as_bytes());
        }
        out.truncate(n);
        return out;
    }
    buf
}

fn random_hex(bytes: usize) -> String {
    berth_core::id::hex(&random_bytes(bytes))
}

/// A short link name: 26 characters of [A-Z0-9], as Docker's overlay2.
fn short_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    random_bytes(26).into_iter().map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()])).collect()
}

impl LayerStore {
    /// Open (creating) the store under `root`, removing what a dead process
    /// left half-done.
    pub fn open(root: &Path) -> Result<LayerStore> {
        let s = LayerStore { layers: root.join("layers"), overlay: root.join("overlay") };
        use berth_core::perm::{ensure_dir, PRIVATE_DIR, SHARED_DIR};
        for (d, mode) in [(&s.layers, PRIVATE_DIR), (&s.overlay, SHARED_DIR), (&s.overlay.join("l"), PRIVATE_DIR)] {
            ensure_dir(d, mode).map_err(Error::io(format!("create {}", d.display())))?;
        }
        // A cache directory per layer and per container: apart on the disk,
        // a container's writes find free inodes at once.
        let _ = berth_core::perm::spread_subdirs(&s.overlay);
        s.clean()?;
        Ok(s)
    }

    /// A new cache directory with `subdirs`, marked as being made by this
    /// process until its record is written (`settled`).
    fn new_cache_dir(&self, subdirs: &[&str]) -> Result<String> {
        let cache_id = random_hex(32);
        let dir = self.overlay.join(&cache_id);
        let made = fs::create_dir(&dir).and_then(|()| {
            fs::write(dir.join(OWNER), std::process::id().to_string())?;
            subdirs.iter().try_for_each(|d| fs::create_dir(dir.join(d)))
        });
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(Error::Io { what: format!("create {}", dir.display()), source: e });
        }
        Ok(cache_id)
    }

    /// The record of a cache directory is written: it no longer needs its
    /// maker to be alive to be kept.
    fn settled(&self, cache_id: &str) {
        let _ = fs::remove_file(self.overlay.join(cache_id).join(OWNER));
    }

    /// Remove cache directories no record names, unless a live process is
    /// still making them (another process's load or container create).
    fn clean(&self) -> Result<()> {
        let mut live: HashSet<String> = self.list()?.into_iter().map(|l| l.cache_id).collect();
        live.extend(self.list_rw()?.into_iter().map(|r| r.cache_id));
        live.insert("l".into());
        let rd = fs::read_dir(&self.overlay).map_err(Error::io("list overlay"))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let maker = match name.strip_prefix(MAKING) {
                Some(rest) => rest.split('-').next().and_then(|p| p.parse().ok()),
                None => fs::read_to_string(e.path().join(OWNER)).ok().and_then(|p| p.trim().parse().ok()),
            };
            if !live.contains(&name) && !maker.is_some_and(process_alive) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        // Dangling short links, and record directories without a record.
        if let Ok(rd) = fs::read_dir(self.overlay.join("l")) {
            for e in rd.flatten() {
                if !e.path().exists() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if let Ok(rd) = fs::read_dir(&self.layers) {
            for e in rd.flatten() {
                if !e.path().join("layer.json").is_file() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// The overlay directory (the base of relative lower paths).
    pub fn overlay_dir(&self) -> &Path {
        &self.overlay
    }

    fn record_path(&self, c: &ChainId) -> PathBuf {
        self.layers.join(c.digest().hex()).join("layer.json")
    }

    pub fn get(&self, c: &ChainId) -> Result<Option<Layer>> {
        record::read(&self.record_path(c), format_args!("layer record {c}"))
    }

    pub fn list(&self) -> Result<Vec<Layer>> {
        record::list(&self.layers, |d| d.join("layer.json"))
    }

    /// The diff directory of a layer.
    pub fn diff_dir(&self, l: &Layer) -> PathBuf {
        self.overlay.join(&l.cache_id).join("diff")
    }

    /// Unpack a blob into a new cache directory, not yet a layer. Staging
    /// needs no parent, so the layers of an image unpack in parallel.
    pub fn stage(&self, blob: impl Read, from: Option<Digest>) -> Result<Staged> {
        self.stage_with(blob, from, true)
    }

    fn stage_with(&self, blob: impl Read, from: Option<Digest>, hash: bool) -> Result<Staged> {
        let cache_id = self.new_cache_dir(&["diff"])?;
        let diff = self.overlay.join(&cache_id).join("diff");
        match unpack::apply_with(&diff, blob, hash) {
            Ok(unpacked) => Ok(Staged { cache_id, unpacked, blob: from }),
            Err(e) => {
                let _ = fs::remove_dir_all(self.overlay.join(&cache_id));
                Err(e)
            }
        }
    }

    /// Unpack a tar into a new layer that keeps no blob: its diff id is
    /// that of the tar its files export to (`changes::export`), which is
    /// what `save::layer_blob` makes of it when one is asked for, byte for
    /// byte. What a build's COPY makes: no blob written and synced for a
    /// layer that may never leave this machine.
    pub fn stage_exported(&self, tar: impl Read) -> Result<Staged> {
        let mut s = self.stage_with(tar, None, false)?;
        match crate::changes::export(&self.overlay.join(&s.cache_id).join("diff"), std::io::sink()) {
            Ok(d) => {
                s.unpacked.diff_id = d;
                Ok(s)
            }
            Err(e) => {
                self.discard(s);
                Err(e)
            }
        }
    }

    /// Drop a staged layer.
    pub fn discard(&self, s: Staged) {
        let _ = fs::remove_dir_all(self.overlay.join(&s.cache_id));
    }

    /// Record a staged layer on top of `parent`. When the chain exists
    /// already the staged copy is dropped and the existing layer returned.
    pub fn register(&self, s: Staged, parent: Option<&ChainId>) -> Result<Layer> {
        // One registration at a time in this process: two that make the
        // same layer at once (two build stages, two pulls) would otherwise
        // both write its record; the second now finds the first's.
        static REGISTER: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = REGISTER.lock().unwrap_or_else(|p| p.into_inner());
        let chain_id = ChainId::on(parent, &s.unpacked.diff_id);
        if let Some(existing) = self.get(&chain_id)? {
            self.discard(s);
            return Ok(existing);
        }
        if let Some(p) = parent {
            if self.get(p)?.is_none() {
                self.discard(s);
                return Err(Error::NotFound(format!("parent layer {p} not found")));
            }
        }
        let dir = self.overlay.join(&s.cache_id);
        let short = short_id();
        let link = self.overlay.join("l").join(&short);
        let made = (|| {
            std::os::unix::fs::symlink(format!("../{}/diff", s.cache_id), &link)?;
            fs::write(dir.join("link"), &short)?;
            if let Some(p) = parent {
                fs::write(dir.join("lower"), self.lower_string(p)?)?;
            }
            Ok::<_, std::io::Error>(())
        })();
        let layer = Layer {
            chain_id,
            diff_id: s.unpacked.diff_id.clone(),
            parent: parent.cloned(),
            size: s.unpacked.size,
            cache_id: s.cache_id.clone(),
            blob: s.blob.clone(),
        };
        let rec = self.record_path(&layer.chain_id);
        let recorded = made
            .and_then(|()| rec.parent().map_or(Ok(()), fs::create_dir_all))
            .map_err(Error::io(format!("record layer {}", layer.chain_id)))
            .and_then(|()| record::write(&rec, &layer, format_args!("layer record {}", layer.chain_id)));
        if let Err(e) = recorded {
            let _ = fs::remove_file(&link);
            self.discard(s);
            return Err(e);
        }
        self.settled(&layer.cache_id);
        Ok(layer)
    }

    /// Note the blob a layer's tar is kept as (made after the layer was).
    pub fn set_blob(&self, c: &ChainId, blob: Digest) -> Result<Layer> {
        let mut l = self.get(c)?.ok_or_else(|| Error::NotFound(format!("layer {c} not found")))?;
        l.blob = Some(blob);
        record::write(&self.record_path(c), &l, format_args!("layer record {c}"))?;
        Ok(l)
    }

    /// Unpack and record in one step.
    pub fn create(&self, blob: impl Read, from: Option<Digest>, parent: Option<&ChainId>) -> Result<Layer> {
        let s = self.stage(blob, from)?;
        self.register(s, parent)
    }

    /// `l/<short>` of every layer of the chain, top first.
    pub fn lowers(&self, top: &ChainId) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cur = Some(top.clone());
        while let Some(c) = cur {
            let l = self.get(&c)?.ok_or_else(|| Error::NotFound(format!("layer {c} not found")))?;
            let short = fs::read_to_string(self.overlay.join(&l.cache_id).join("link"))
                .map_err(Error::io(format!("read link of layer {c}")))?;
            out.push(format!("l/{}", short.trim()));
            cur = l.parent;
        }
        Ok(out)
    }

    fn lower_string(&self, top: &ChainId) -> std::io::Result<String> {
        self.lowers(top).map(|v| v.join(":")).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The layers of `top`'s chain, top first.
    pub fn chain(&self, top: &ChainId) -> Result<Vec<Layer>> {
        let mut out = Vec::new();
        let mut cur = Some(top.clone());
        while let Some(c) = cur {
            let l = self.get(&c)?.ok_or_else(|| Error::NotFound(format!("layer {c} not found")))?;
            cur = l.parent.clone();
            out.push(l);
        }
        Ok(out)
    }

    /// Remove a layer that nothing uses any more (the caller knows).
    pub fn remove(&self, c: &ChainId) -> Result<()> {
        let Some(l) = self.get(c)? else { return Ok(()) };
        let rec_dir = self.layers.join(c.digest().hex());
        // The record goes first: a crash after it leaves only an unnamed
        // cache directory, which the next open removes.
        fs::remove_dir_all(&rec_dir).map_err(Error::io(format!("remove layer {c}")))?;
        let dir = self.overlay.join(&l.cache_id);
        if let Ok(short) = fs::read_to_string(dir.join("link")) {
            let _ = fs::remove_file(self.overlay.join("l").join(short.trim()));
        }
        fs::remove_dir_all(&dir).map_err(Error::io(format!("remove layer {c} files")))
    }

    fn rw_path(&self, cache_id: &str) -> PathBuf {
        self.overlay.join(cache_id).join("rw.json")
    }

    /// Every container layer.
    pub fn list_rw(&self) -> Result<Vec<RwLayer>> {
        record::list(&self.overlay, |d| d.join("rw.json"))
    }

    /// Make the writable layer of container `id` on top of `parent`. Each
    /// call makes a new layer under a new cache id: keeping one layer per
    /// container is the caller's (container ids are fresh random ids), so
    /// that a create does not read every other container's record.
    pub fn create_rw(&self, id: &str, parent: Option<&ChainId>) -> Result<RwLayer> {
        if let Some(p) = parent {
            self.get(p)?.ok_or_else(|| Error::NotFound(format!("layer {p} not found")))?;
        }
        let rw = RwLayer { id: id.to_owned(), parent: parent.cloned(), cache_id: random_hex(32) };
        // Made whole under a name of its own that carries this process's
        // id, then renamed into place: no `owner` file to write and remove
        // (a container start makes few enough files that each counts),
        // and `clean` knows a dead maker's leftovers by the name.
        let making = self.overlay.join(format!("{MAKING}{}-{}", std::process::id(), rw.cache_id));
        let made = fs::create_dir(&making)
            .and_then(|()| ["diff", "work", "merged"].iter().try_for_each(|d| fs::create_dir(making.join(d))))
            .map_err(Error::io(format!("create {}", making.display())))
            // Only the container's record points at it, and that record
            // is written after this one with the same durability.
            .and_then(|()| {
                let what = format_args!("layer record of {id}");
                record::write_as(&making.join("rw.json"), &rw, what, Durability::Contents)
            })
            .and_then(|()| {
                let dir = self.overlay.join(&rw.cache_id);
                fs::rename(&making, &dir).map_err(Error::io(format!("create {}", dir.display())))
            });
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&making);
            return Err(e);
        }
        Ok(rw)
    }

    /// How to mount a container's root file system.
    pub fn mount_of(&self, rw: &RwLayer) -> Result<OverlayMount> {
        let lowers = match &rw.parent {
            Some(p) => self.lowers(p)?,
            None => Vec::new(),
        };
        let dir = self.overlay.join(&rw.cache_id);
        Ok(OverlayMount {
            base: self.overlay.clone(),
            lowers,
            upper: dir.join("diff"),
            work: dir.join("work"),
            target: dir.join("merged"),
        })
    }

    /// Remove a container's layer (unmounted).
    pub fn remove_rw(&self, rw: &RwLayer) -> Result<()> {
        self.forget_rw(rw)?;
        let dir = self.overlay.join(&rw.cache_id);
        fs::remove_dir_all(&dir).map_err(Error::io(format!("remove {}", dir.display())))
    }

    /// Remove the record of a container's writable layer and move its
    /// directory to `aside/<cache id>` for the caller to delete when it
    /// likes (`berth_core::atomic::move_aside`). Returns what the caller is
    /// left to delete.
    pub fn remove_rw_aside(&self, rw: &RwLayer, aside: &Path) -> Result<Option<PathBuf>> {
        self.forget_rw(rw)?;
        let dir = self.overlay.join(&rw.cache_id);
        berth_core::atomic::move_aside(&dir, &aside.join(&rw.cache_id))
            .map_err(Error::io(format!("remove {}", dir.display())))
    }

    /// The record first, so a crash leaves an unnamed directory to clean.
    fn forget_rw(&self, rw: &RwLayer) -> Result<()> {
        match fs::remove_file(self.rw_path(&rw.cache_id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { what: format!("remove layer of {}", rw.id), source: e }),
        }
    }

    /// Chain ids in use as parents of container layers.
    pub fn rw_parents(&self) -> Result<HashSet<ChainId>> {
        Ok(self.list_rw()?.into_iter().filter_map(|r| r.parent).collect())
    }
}
