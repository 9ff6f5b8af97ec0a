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
            for img in store.list()? {
                for t in store.names_of(&img.id)? {
                    if t.name() == r.name() && t.tag().is_some() {
                        add(img.id.clone(), Some(t));
                        found = true;
                    }
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
fn layer_blob(store: &ImageStore, l: &Layer) -> Result<Digest> {
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
fn layer_media_type(store: &ImageStore, d: &Digest) -> Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut f = store.content.open_blob(d)?;
    let n = f.read(&mut magic).map_err(Error::io(format!("read blob {d}")))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn descriptor(media: &str, d: &Digest, size: u64) -> Value {
    json!({ "mediaType": media, "digest": d.to_string(), "size": size })
}

struct Out<W: Write> {
    tar: tar::Builder<W>,
    written: HashSet<String>,
}

impl<W: Write> Out<W> {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        if self.written.insert(name.to_owned()) {
            let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
            self.tar.append_data(&mut h, name, io::empty()).map_err(Error::io(format!("write {name}")))?;
        }
        Ok(())
    }

    fn file(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        if self.written.insert(name.to_owned()) {
            let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
            self.tar.append_data(&mut h, name, data).map_err(Error::io(format!("write {name}")))?;
        }
        Ok(())
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.file(name, data.len() as u64, data)
    }

    fn blob(&mut self, store: &ImageStore, d: &Digest) -> Result<u64> {
        let size = store.content.size(d)?;
        let f = store.content.open_blob(d)?;
        self.dir(&format!("blobs/{}", d.algorithm().as_str()))?;
        // A blob that changed size under the write would corrupt the tar;
        // the store never rewrites a blob, and `take` bounds it anyway.
        self.file(&blob_name(d), size, f.take(size))?;
        Ok(size)
    }
}

/// Write the images `names` name (names, ids or id prefixes) to `w`.
pub fn save(store: &ImageStore, names: &[&str], w: impl Write) -> Result<()> {
    let images = select(store, names)?;
    let mut out = Out { tar: tar::Builder::new(w), written: HashSet::new() };
    out.dir("blobs")?;
    let mut docker = Vec::new();
    let mut index = Vec::new();
    for (id, tags) in &images {
        let rec = store.get(id)?.ok_or_else(|| Error::NotFound(format!("No such image: {id}")))?;
        let config_size = out.blob(store, id.digest())?;
        let mut chain = match &rec.top_layer {
            Some(top) => store.layers.chain(top)?,
            None => Vec::new(),
        };
        chain.reverse();
        let mut layers = Vec::new();
        let mut paths = Vec::new();
        for l in &chain {
            let blob = layer_blob(store, l)?;
            let size = out.blob(store, &blob)?;
            layers.push(descriptor(layer_media_type(store, &blob)?, &blob, size));
            paths.push(blob_name(&blob));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(CONFIG, id.digest(), config_size),
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        let md = Digest::sha256(&manifest);
        out.bytes(&blob_name(&md), &manifest)?;
        let desc = descriptor(MANIFEST, &md, manifest.len() as u64);
        if tags.is_empty() {
            index.push(desc.clone());
        }
        for t in tags {
            let mut d = desc.clone();
            let mut ann = json!({ "io.containerd.image.name": t.to_string() });
            if let Some(tag) = t.tag() {
                ann["org.opencontainers.image.ref.name"] = json!(tag);
            }
            d["annotations"] = ann;
            index.push(d);
        }
        let repo_tags: Vec<String> = tags.iter().filter(|t| t.tag().is_some()).map(Reference::familiar).collect();
        docker.push(json!({
            "Config": blob_name(id.digest()),
            "RepoTags": if repo_tags.is_empty() { Value::Null } else { json!(repo_tags) },
            "Layers": paths,
        }));
    }
    let enc = |v: &Value| serde_json::to_vec(v).map_err(|e| Error::Invalid(e.to_string()));
    let index =
        json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index });
    out.bytes("index.json", &enc(&index)?)?;
    out.bytes("manifest.json", &enc(&Value::Array(docker))?)?;
    out.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    out.tar.into_inner().map_err(Error::io("finish archive"))?.flush().map_err(Error::io("write archive"))
}
