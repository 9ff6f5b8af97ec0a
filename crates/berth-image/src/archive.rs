//! Loading image archives: what `docker save` writes (the legacy
//! docker-archive with `<id>/layer.tar`, and the OCI layout with a
//! `manifest.json` that Docker 25 and later write) and plain OCI image
//! layouts.
//!
//! The archive is indexed once (entry names to offsets, data skipped), so
//! its files are read in place, in any order and from several threads: the
//! layers an image still needs are unpacked in parallel, each streamed into
//! the content store at the same time and checked against its digest. They
//! are then recorded bottom up, the images recorded and the names set.
//! Nothing is recorded before everything it depends on is in place, so a
//! failure or a kill leaves at most unrecorded files, which the next open
//! removes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use crate::config::ImageConfig;
use crate::digest::{ChainId, DiffId, Digest};
use crate::error::{Error, Result};
use crate::images::ImageStore;
use crate::layers::Staged;
use crate::reference::Reference;

/// One image found in an archive and now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: crate::digest::ImageId,
    pub names: Vec<Reference>,
}

/// Where each file of the archive is.
struct Index {
    path: PathBuf,
    files: HashMap<String, (u64, u64)>,
}

impl Index {
    fn build(path: &Path) -> Result<Index> {
        let f = File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
        let mut a = tar::Archive::new(crate::targuard::Guard::new(f));
        let mut files = HashMap::new();
        let bad = |e: io::Error| Error::Invalid(format!("invalid archive: {e}"));
        for e in a.entries_with_seek().map_err(bad)? {
            let e = e.map_err(bad)?;
            if e.header().entry_type().is_file() {
                let name = String::from_utf8_lossy(&e.path_bytes()).trim_start_matches("./").to_owned();
                files.insert(name, (e.raw_file_position(), e.size()));
            }
        }
        Ok(Index { path: path.to_owned(), files })
    }

    fn open(&self, name: &str) -> Result<io::Take<File>> {
        let name = name.trim_start_matches("./");
        let &(off, size) =
            self.files.get(name).ok_or_else(|| Error::Invalid(format!("invalid archive: {name} is missing")))?;
        let mut f = File::open(&self.path).map_err(Error::io(format!("open {}", self.path.display())))?;
        f.seek(SeekFrom::Start(off)).map_err(Error::io("seek in archive"))?;
        Ok(f.take(size))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open(name)?.read_to_end(&mut v).map_err(Error::io(format!("read {name}")))?;
        Ok(v)
    }

    fn has(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }
}

/// An image as the archive describes it.
struct Plan {
    config: Vec<u8>,
    /// Expected config digest, when the format names one.
    config_digest: Option<Digest>,
    /// Archive paths of the layer blobs, bottom first, with the blob digest
    /// when the format names one.
    layers: Vec<(String, Option<Digest>)>,
    names: Vec<Reference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default, rename = "mediaType")]
    media_type: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

impl Descriptor {
    fn is_index(&self) -> bool {
        self.media_type.contains("image.index") || self.media_type.contains("manifest.list")
    }
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("invalid archive: {what}: {e}")))
}

fn mismatch((expected, actual): (Digest, Digest)) -> Error {
    Error::DigestMismatch { expected, actual }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn plans(ix: &Index) -> Result<Vec<Plan>> {
    if ix.has("manifest.json") {
        let ms: Vec<DockerManifest> = json(&ix.read("manifest.json")?, "manifest.json")?;
        return ms
            .into_iter()
            .map(|m| {
                let config = ix.read(&m.config)?;
                // `<hex>.json` (legacy) or `blobs/sha256/<hex>`: the name is the digest.
                let stem = m.config.trim_end_matches(".json").rsplit('/').next().unwrap_or_default().to_owned();
                let config_digest = format!("sha256:{stem}").parse().ok();
                let names = m
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| Reference::parse(t))
                    .collect::<std::result::Result<_, _>>()?;
                let layers = m.layers.into_iter().map(|l| (l, None)).collect();
                Ok(Plan { config, config_digest, layers, names })
            })
            .collect();
    }
    if ix.has("index.json") && ix.has("oci-layout") {
        let index: OciIndex = json(&ix.read("index.json")?, "index.json")?;
        let mut out = Vec::new();
        for d in index.manifests {
            let manifest_bytes = manifest_for_host(ix, &d, 0)?;
            let m: OciManifest = json(&manifest_bytes, "manifest")?;
            let config_digest: Digest = m.config.digest.parse()?;
            let config = ix.read(&blob_path(&config_digest))?;
            let layers = m
                .layers
                .iter()
                .map(|l| l.digest.parse::<Digest>().map(|dg| (blob_path(&dg), Some(dg))))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let name = d
                .annotations
                .get("io.containerd.image.name")
                // The OCI name is often a bare tag (`latest`, as Docker
                // writes it); only a name with a repository is taken.
                .or_else(|| d.annotations.get("org.opencontainers.image.ref.name").filter(|n| n.contains([':', '/'])))
                .and_then(|n| Reference::parse(n).ok());
            out.push(Plan { config, config_digest: Some(config_digest), layers, names: name.into_iter().collect() });
        }
        return Ok(out);
    }
    Err(Error::Invalid("invalid archive: no manifest.json and no OCI index.json".into()))
}

/// The manifest a descriptor names; through an image index (a
/// multi-platform image) the one for this machine's platform.
fn manifest_for_host(ix: &Index, d: &Descriptor, depth: usize) -> Result<Vec<u8>> {
    let digest: Digest = d.digest.parse()?;
    let bytes = ix.read(&blob_path(&digest))?;
    digest.verify(&bytes).map_err(mismatch)?;
    if !d.is_index() {
        return Ok(bytes);
    }
    if depth >= 4 {
        return Err(Error::Invalid("invalid archive: image indexes nested too deep".into()));
    }
    let nested: OciIndex = json(&bytes, "image index")?;
    let arch = crate::config::host_architecture();
    let host = nested
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch))
        .ok_or_else(|| Error::NotFound(format!("the image index {digest} has no image for linux/{arch}")))?;
    manifest_for_host(ix, host, depth + 1)
}

/// A compressed archive (gzip, xz or zstd, as `docker load` takes them) in
/// plain form beside it, since the index reads the tar in place; `None`
/// for a plain one.
fn plain_copy(path: &Path) -> Result<Option<PathBuf>> {
    let mut f = File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
    let mut head = [0u8; 6];
    let n = read_head(&mut f, &mut head).map_err(Error::io(format!("read {}", path.display())))?;
    let xz = head[..n].starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]);
    if !xz && crate::unpack::Compression::detect(&head[..n]) == crate::unpack::Compression::None {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(0)).map_err(Error::io("seek in archive"))?;
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".plain");
    let out_path = path.with_file_name(name);
    let done = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out_path)
            .map_err(Error::io(format!("create {}", out_path.display())))?;
        let bad = |e: String| Error::Invalid(format!("invalid archive: {e}"));
        if xz {
            let mut r = io::BufReader::new(f);
            lzma_rs::xz_decompress(&mut r, &mut out).map_err(|e| bad(format!("xz: {e:?}")))?;
        } else {
            let mut r = crate::unpack::decompress(f).map_err(|e| bad(e.to_string()))?;
            io::copy(&mut r, &mut out).map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
                    bad(e.to_string())
                }
                _ => Error::Io { what: format!("write {}", out_path.display()), source: e },
            })?;
        }
        Ok(())
    })();
    match done {
        Ok(()) => Ok(Some(out_path)),
        Err(e) => {
            let _ = std::fs::remove_file(&out_path);
            Err(e)
        }
    }
}

fn read_head(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Load every image of the archive at `path` (plain or compressed) into
/// `store`.
pub fn load(store: &ImageStore, path: &Path) -> Result<Vec<LoadedImage>> {
    match plain_copy(path)? {
        Some(plain) => {
            let r = load_plain(store, &plain);
            let _ = std::fs::remove_file(&plain);
            r
        }
        None => load_plain(store, path),
    }
}

fn load_plain(store: &ImageStore, path: &Path) -> Result<Vec<LoadedImage>> {
    let ix = Index::build(path)?;
    let plans = plans(&ix)?;
    // What each image needs: its config parsed, its chain, and the layers
    // the store does not have yet.
    let mut parsed = Vec::new();
    // One entry per missing chain id: a layer used twice ([A, B, A], the
    // empty layer repeated, or a layer two images have at other depths)
    // is a layer of its own at each place in a chain, as in Docker.
    let mut wanted: Vec<(ChainId, String, Option<Digest>, DiffId)> = Vec::new();
    for p in &plans {
        if let Some(d) = &p.config_digest {
            d.verify(&p.config).map_err(mismatch)?;
        }
        let cfg = ImageConfig::parse(&p.config)?;
        if cfg.rootfs.diff_ids.len() != p.layers.len() {
            return Err(Error::Invalid(format!(
                "invalid archive: {} layers for {} diff ids",
                p.layers.len(),
                cfg.rootfs.diff_ids.len()
            )));
        }
        let chain = ChainId::chain(&cfg.rootfs.diff_ids);
        for (i, c) in chain.iter().enumerate() {
            let (file, blob) = &p.layers[i];
            if store.layers.get(c)?.is_none() && !wanted.iter().any(|w| &w.0 == c) {
                wanted.push((c.clone(), file.clone(), blob.clone(), cfg.rootfs.diff_ids[i].clone()));
            }
        }
        parsed.push((cfg, chain));
    }
    let mut by_chain: HashMap<ChainId, Staged> = stage_all(store, &ix, &wanted)?.into_iter().collect();
    let mut out = Vec::new();
    let recorded = (|| {
        for (p, (cfg, chain)) in plans.iter().zip(&parsed) {
            for (i, c) in chain.iter().enumerate() {
                if store.layers.get(c)?.is_some() {
                    continue;
                }
                let diff = &cfg.rootfs.diff_ids[i];
                let s = by_chain
                    .remove(c)
                    .ok_or_else(|| Error::Invalid(format!("invalid archive: layer {diff} of an image is missing")))?;
                store.layers.register(s, if i == 0 { None } else { Some(&chain[i - 1]) })?;
            }
            let rec = store.add(&p.config)?;
            for n in &p.names {
                store.tag(n, &rec.id)?;
            }
            out.push(LoadedImage { id: rec.id, names: p.names.clone() });
        }
        Ok::<_, Error>(())
    })();
    // Staged layers no image took (after a failure).
    for (_, s) in by_chain {
        store.layers.discard(s);
    }
    recorded.map(|()| out)
}

/// Unpack the wanted layers on as many threads as there are cores, each
/// checked against its diff id (and blob digest when known) and kept as a
/// blob. On any failure every staged layer is dropped.
fn stage_all(
    store: &ImageStore,
    ix: &Index,
    wanted: &[(ChainId, String, Option<Digest>, DiffId)],
) -> Result<Vec<(ChainId, Staged)>> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(ChainId, Staged)>> = Mutex::new(Vec::new());
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(wanted.len()).max(1);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((chain, file, blob, diff)) = wanted.get(i) else { return };
                if first_err.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                match ix.open(file).and_then(|r| store.stage_blob(r, blob.as_ref(), Some(diff))) {
                    Ok(s) => {
                        if let Ok(mut d) = done.lock() {
                            d.push((chain.clone(), s));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = first_err.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let staged = done.into_inner().unwrap_or_default();
    if let Some(e) = first_err.into_inner().ok().flatten() {
        for (_, s) in staged {
            store.layers.discard(s);
        }
        return Err(e);
    }
    Ok(staged)
}
