//! Saving images as `docker save` has written them since Docker 25: an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) with Docker's
//! `manifest.json` beside it, naming the same blobs. Every `docker load`
//! reads the manifest.json; OCI tools (`skopeo` with `oci-archive:` or
//! `docker-archive:`) read either.
//!
//! Layers are written as the blobs they were loaded from, byte for byte.
//! A layer made here (a commit, a build step) without a kept blob is
//! exported from its files once, checked against its diff id and kept.
//! The output is deterministic: the same images give the same bytes.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use serde_json::{json, Value};

use crate::changes;
use crate::digest::{Algorithm, Digest, ImageId};
use crate::error::{Error, Result};
use crate::images::ImageStore;
use crate::layers::Layer;
use crate::reference::Reference;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The images `names` ask for, each with the tags to save: a tag or digest
/// reference gives itself, a bare repository name every tag of it (as
/// `docker save busybox`), an id none.
fn select(store: &ImageStore, names: &[&str]) -> Result<Vec<(ImageId, Vec<Reference>)>> {
    let mut out: Vec<(ImageId, Vec<Reference>)> = Vec::new();
    let mut add = |id: ImageId, r: Option<Reference>| {
        let at = match out.iter().position(|(i, _)| *i == id) {
            Some(at) => at,
            None => {
                out.push((id, Vec::new()));
                out.len() - 1
            }
        };
        if let Some(r) = r {
            if !out[at].1.contains(&r) {
                out[at].1.push(r);
            }
        }
    };
    for &n in names {
        let parsed = Reference::parse(n).ok();
        if let Some(r) = parsed.as_ref().filter(|r| r.tag().is_none() && r.digest().is_none()) {
            let mut found = false;
            for (t, id) in store.names()? {
                if t.name() == r.name() && t.tag().is_some() {
                    add(id, Some(t));
                    found = true;
                }
            }
            if found {
                continue;
            }
        }
        let id = store.resolve(n)?;
        let by_name =
            parsed.map(Reference::with_default_tag).filter(|r| store.names_of(&id).is_ok_and(|v| v.contains(r)));
        add(id, by_name.filter(|r| r.tag().is_some()));
    }
    Ok(out)
}

/// The blob of a layer, exported from its files and kept when there is
/// none.
pub fn layer_blob(store: &ImageStore, l: &Layer) -> Result<Digest> {
    if let Some(b) = l.blob.as_ref().filter(|b| store.content.contains(b)) {
        return Ok(b.clone());
    }
    let mut ingest = store.content.writer(Algorithm::Sha256)?;
    let diff = changes::export(&store.layers.diff_dir(l), &mut ingest)?;
    if diff != l.diff_id {
        return Err(Error::Invalid(format!(
            "layer {} has no stored blob, and its files export to other bytes ({diff})",
            l.diff_id
        )));
    }
    let (d, _) = ingest.commit(Some(diff.digest()))?;
    store.layers.set_blob(&l.chain_id, d.clone())?;
    Ok(d)
}

/// The OCI media type of a layer blob, from its first bytes.
pub fn layer_media_type(store: &ImageStore, d: &Digest) -> Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut f = store.content.open_blob(d)?;
    let n = f.read(&mut magic).map_err(Error::io(format!("read blob {d}")))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => LAYER_TAR,
    })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn descriptor(media: &str, d: &Digest, size: u64) -> Value {
    json!({ "mediaType": media, "digest": d.to_string(), "size": size })
}

/// A layer as a manifest names it: blob digest, size and media type.
#[derive(Debug, Clone)]
pub struct LayerDesc {
    pub digest: Digest,
    pub size: u64,
    pub media_type: &'static str,
}

/// Writes an archive in the form above: blobs first, then a manifest per
/// image, then the indexes on `finish`.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    written: HashSet<String>,
    docker: Vec<Value>,
    index: Vec<Value>,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("entries", &self.written.len())
            .field("images", &self.docker.len())
            .finish()
    }
}

/// A ustar header of a root-owned entry.
pub(crate) fn root_header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(w: W) -> Result<ArchiveWriter<W>> {
        let mut a =
            ArchiveWriter { tar: tar::Builder::new(w), written: HashSet::new(), docker: Vec::new(), index: Vec::new() };
        a.dir("blobs")?;
        Ok(a)
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        if self.written.insert(name.to_owned()) {
            let mut h = root_header(tar::EntryType::Directory, 0o755, 0, 0);
            self.tar.append_data(&mut h, name, io::empty()).map_err(Error::io(format!("write {name}")))?;
        }
        Ok(())
    }

    fn file(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        if self.written.insert(name.to_owned()) {
            let mut h = root_header(tar::EntryType::Regular, 0o644, size, 0);
            self.tar.append_data(&mut h, name, data).map_err(Error::io(format!("write {name}")))?;
        }
        Ok(())
    }

    /// Add a blob of `size` bytes read from `data` (once per digest).
    pub fn blob(&mut self, d: &Digest, size: u64, data: impl Read) -> Result<()> {
        self.dir(&format!("blobs/{}", d.algorithm().as_str()))?;
        // `take` bounds what goes in to the size the header announced.
        self.file(&blob_name(d), size, data.take(size))
    }

    /// Add an image whose config and layer blobs were added, named by `tags`.
    pub fn image(&mut self, config: &Digest, config_size: u64, layers: &[LayerDesc], tags: &[Reference]) -> Result<()> {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(CONFIG, config, config_size),
            "layers": layers.iter().map(|l| descriptor(l.media_type, &l.digest, l.size)).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        let md = Digest::sha256(&manifest);
        self.blob(&md, manifest.len() as u64, &manifest[..])?;
        let desc = descriptor(MANIFEST, &md, manifest.len() as u64);
        if tags.is_empty() {
            self.index.push(desc.clone());
        }
        for t in tags {
            let mut d = desc.clone();
            let mut ann = json!({ "io.containerd.image.name": t.to_string() });
            if let Some(tag) = t.tag() {
                ann["org.opencontainers.image.ref.name"] = json!(tag);
            }
            d["annotations"] = ann;
            self.index.push(d);
        }
        let repo_tags: Vec<String> = tags.iter().filter(|t| t.tag().is_some()).map(Reference::familiar).collect();
        self.docker.push(json!({
            "Config": blob_name(config),
            "RepoTags": if repo_tags.is_empty() { Value::Null } else { json!(repo_tags) },
            "Layers": layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
        }));
        Ok(())
    }

    /// Write the indexes and end the tar.
    pub fn finish(mut self) -> Result<W> {
        let enc = |v: &Value| serde_json::to_vec(v).map_err(|e| Error::Invalid(e.to_string()));
        let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.index });
        let docker = Value::Array(std::mem::take(&mut self.docker));
        for (name, data) in [("index.json", enc(&index)?), ("manifest.json", enc(&docker)?)] {
            self.file(name, data.len() as u64, &data[..])?;
        }
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        self.file("oci-layout", layout.len() as u64, &layout[..])?;
        let mut w = self.tar.into_inner().map_err(Error::io("finish archive"))?;
        w.flush().map_err(Error::io("write archive"))?;
        Ok(w)
    }
}

/// Write the images `names` name (names, ids or id prefixes) to `w`.
pub fn save(store: &ImageStore, names: &[&str], w: impl Write) -> Result<()> {
    let images = select(store, names)?;
    let mut out = ArchiveWriter::new(w)?;
    let stored = |out: &mut ArchiveWriter<_>, d: &Digest| -> Result<u64> {
        let size = store.content.size(d)?;
        out.blob(d, size, store.content.open_blob(d)?)?;
        Ok(size)
    };
    for (id, tags) in &images {
        let rec = store.get(id)?.ok_or_else(|| Error::NotFound(format!("No such image: {id}")))?;
        let config_size = stored(&mut out, id.digest())?;
        let mut chain = match &rec.top_layer {
            Some(top) => store.layers.chain(top)?,
            None => Vec::new(),
        };
        chain.reverse();
        let mut layers = Vec::new();
        for l in &chain {
            let digest = layer_blob(store, l)?;
            let size = stored(&mut out, &digest)?;
            layers.push(LayerDesc { media_type: layer_media_type(store, &digest)?, digest, size });
        }
        out.image(id.digest(), config_size, &layers, tags)?;
    }
    out.finish().map(|_| ())
}
