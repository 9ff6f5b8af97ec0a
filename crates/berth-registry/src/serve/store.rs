//! What `berth-registry serve` keeps on disk, under its root (mode 0700):
//!
//! ```text
//! blobs/<alg>/<hex>                                  every blob, manifests too (content store)
//! uploads/<id>/{repo,data}                           a blob upload in progress
//! repositories/<name>/_layers/<alg>/<hex>            a blob of the repository (empty file)
//! repositories/<name>/_manifests/revisions/<alg>/<hex>   a manifest of it (its media type)
//! repositories/<name>/_manifests/tags/<tag>          a tag (the manifest's digest)
//! repositories/<name>/_referrers/<alg>-<hex>/<alg>-<hex> a manifest whose subject is the first
//!                                                    (its descriptor, JSON)
//! ```
//!
//! A blob is checked against its digest before it is renamed into
//! `blobs/`, fsynced with its directory; a link is written by rename and
//! fsynced the same way, and always after what it names. A kill at any
//! moment leaves every committed blob, manifest and tag whole; what it
//! can leave is an upload to resume or a blob no link names yet, which the
//! garbage collection removes. A repository path component never starts
//! with `_`, so `_layers` and the rest cannot be taken for one.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_core::atomic::{replace, Durability};
use berth_core::perm;
use berth_image::{ContentStore, Digest};

/// The registry's storage.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    blobs: ContentStore,
}

/// A manifest named by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// A digest, else a tag; `None` when it is neither.
    pub fn parse(s: &str) -> Option<Reference> {
        if s.contains(':') {
            s.parse().ok().map(Reference::Digest)
        } else if berth_image::reference::valid_tag(s) {
            Some(Reference::Tag(s.to_owned()))
        } else {
            None
        }
    }
}

/// Whether `name` is a repository name of the distribution spec:
/// components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(berth_image::reference::valid_component)
}

fn io_at(what: &str, p: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let msg = format!("{what} {}", p.display());
    move |e| io::Error::new(e.kind(), format!("{msg}: {e}"))
}

fn image_err(e: berth_image::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// A link file's path for `d` under `dir`.
fn digest_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join(d.algorithm().as_str()).join(d.hex())
}

/// Write a link: its directory made, the file replaced (a temp file of its
/// own per call, synced) and the directory synced.
fn write_link(path: &Path, data: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_at("create", dir))?;
    }
    replace(path, data, perm::RECORD, Durability::Full).map_err(io_at("write", path))
}

fn remove_if_there(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at("remove", path)(e)),
    }
}

/// The digests named by the files of `<dir>/<alg>/<hex>`.
fn digests_under(dir: &Path) -> Vec<Digest> {
    let mut out = vec![];
    for alg in ["sha256", "sha512"] {
        let Ok(rd) = fs::read_dir(dir.join(alg)) else { continue };
        for e in rd.flatten() {
            if let Some(d) = e.file_name().to_str().and_then(|h| format!("{alg}:{h}").parse().ok()) {
                out.push(d);
            }
        }
    }
    out
}

impl Store {
    /// Open (creating) the storage at `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        perm::ensure_dir(root, perm::PRIVATE_DIR).map_err(io_at("create", root))?;
        for d in ["uploads", "repositories"] {
            perm::ensure_dir(&root.join(d), perm::PRIVATE_DIR).map_err(io_at("create", &root.join(d)))?;
        }
        let blobs = ContentStore::open(&root.join("blobs")).map_err(image_err)?;
        Ok(Store { root: root.to_owned(), blobs })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> &ContentStore {
        &self.blobs
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    /// Whether blob `d` is in repository `name` (and on disk): its size.
    pub fn blob_in(&self, name: &str, d: &Digest) -> Option<u64> {
        if !digest_path(&self.repo(name).join("_layers"), d).is_file() {
            return None;
        }
        self.blobs.size(d).ok()
    }

    /// Open blob `d` of repository `name`.
    pub fn open_blob(&self, name: &str, d: &Digest) -> Option<File> {
        self.blob_in(name, d)?;
        self.blobs.open_blob(d).ok()
    }

    /// Make the stored blob `d` part of repository `name`.
    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        write_link(&digest_path(&self.repo(name).join("_layers"), d), b"")
    }

    /// Take blob `d` out of repository `name`; whether it was there.
    pub fn unlink_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        remove_if_there(&digest_path(&self.repo(name).join("_layers"), d))
    }

    /// Store `body` as a blob, checked against `expected` when given.
    pub fn put_blob(&self, body: impl Read, expected: Option<&Digest>) -> berth_image::Result<(Digest, u64)> {
        self.blobs.ingest(body, expected)
    }

    fn manifests(&self, name: &str) -> PathBuf {
        self.repo(name).join("_manifests")
    }

    /// The digest a tag or digest names in repository `name`, with the
    /// manifest's media type.
    pub fn resolve(&self, name: &str, r: &Reference) -> Option<(Digest, String)> {
        let d = match r {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let s = fs::read_to_string(self.manifests(name).join("tags").join(t)).ok()?;
                s.trim().parse().ok()?
            }
        };
        let media = fs::read_to_string(digest_path(&self.manifests(name).join("revisions"), &d)).ok()?;
        self.blobs.contains(&d).then_some((d, media))
    }

    /// A manifest's bytes.
    pub fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        self.blobs.read(d).map_err(image_err)
    }

    /// Store manifest `body` (of digest `d`, type `media`) in repository
    /// `name`: the blob, then the revision, then the referrer entry when
    /// it has a subject, then the tag.
    pub fn put_manifest(
        &self,
        name: &str,
        d: &Digest,
        media: &str,
        body: &[u8],
        tag: Option<&str>,
        subject: Option<(&Digest, &serde_json::Value)>,
    ) -> io::Result<()> {
        if !self.blobs.contains(d) {
            self.blobs.ingest(body, Some(d)).map_err(image_err)?;
        }
        let revisions = self.manifests(name).join("revisions");
        write_link(&digest_path(&revisions, d), media.as_bytes())?;
        if let Some((s, desc)) = subject {
            let path = self.referrers_dir(name, s).join(format!("{}-{}", d.algorithm().as_str(), d.hex()));
            write_link(&path, desc.to_string().as_bytes())?;
        }
        if let Some(t) = tag {
            write_link(&self.manifests(name).join("tags").join(t), d.to_string().as_bytes())?;
        }
        Ok(())
    }

    fn referrers_dir(&self, name: &str, subject: &Digest) -> PathBuf {
        self.repo(name).join("_referrers").join(format!("{}-{}", subject.algorithm().as_str(), subject.hex()))
    }

    /// The descriptors of the manifests whose subject is `subject`.
    pub fn referrers(&self, name: &str, subject: &Digest) -> Vec<serde_json::Value> {
        let dir = self.referrers_dir(name, subject);
        let Ok(rd) = fs::read_dir(&dir) else { return vec![] };
        let mut out: Vec<(String, serde_json::Value)> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str().filter(|n| !n.starts_with('.'))?.to_owned();
                let v = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                Some((n, v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// The repository's tags, in lexical order.
    pub fn tags(&self, name: &str) -> Option<Vec<String>> {
        let dir = self.manifests(name);
        if !dir.is_dir() {
            return None;
        }
        let mut tags: Vec<String> = fs::read_dir(dir.join("tags"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|t| !t.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Some(tags)
    }

    /// Whether repository `name` exists (has a blob or a manifest).
    pub fn has_repo(&self, name: &str) -> bool {
        let r = self.repo(name);
        r.join("_manifests").is_dir() || r.join("_layers").is_dir()
    }

    /// Delete a tag; whether it was there.
    pub fn delete_tag(&self, name: &str, tag: &str) -> io::Result<bool> {
        remove_if_there(&self.manifests(name).join("tags").join(tag))
    }

    /// Delete manifest `d` from repository `name`, with the tags that name
    /// it and its place among its subject's referrers; whether it was there.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let rev = digest_path(&self.manifests(name).join("revisions"), d);
        if !rev.is_file() {
            return Ok(false);
        }
        let text = d.to_string();
        if let Ok(rd) = fs::read_dir(self.manifests(name).join("tags")) {
            for e in rd.flatten() {
                if fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == text) {
                    remove_if_there(&e.path())?;
                }
            }
        }
        let entry = format!("{}-{}", d.algorithm().as_str(), d.hex());
        if let Ok(rd) = fs::read_dir(self.repo(name).join("_referrers")) {
            for e in rd.flatten() {
                remove_if_there(&e.path().join(&entry))?;
            }
        }
        remove_if_there(&rev)
    }

    /// Every repository, in lexical order.
    pub fn repositories(&self) -> Vec<String> {
        let mut out = vec![];
        let mut stack = vec![(self.root.join("repositories"), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let Some(n) = e.file_name().to_str().map(str::to_owned) else { continue };
                if n.starts_with('_') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let full = if prefix.is_empty() { n } else { format!("{prefix}/{n}") };
                if self.has_repo(&full) {
                    out.push(full.clone());
                }
                stack.push((e.path(), full));
            }
        }
        out.sort();
        out
    }

    /// The manifests of repository `name`, with their media types.
    pub fn revisions(&self, name: &str) -> Vec<(Digest, String)> {
        let dir = self.manifests(name).join("revisions");
        digests_under(&dir)
            .into_iter()
            .filter_map(|d| fs::read_to_string(digest_path(&dir, &d)).ok().map(|m| (d, m)))
            .collect()
    }

    /// The tags of repository `name` and the digests they name.
    pub fn tagged(&self, name: &str) -> Vec<Digest> {
        let dir = self.manifests(name).join("tags");
        let Ok(rd) = fs::read_dir(dir) else { return vec![] };
        rd.flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }

    /// The blobs linked into repository `name`.
    pub fn layers(&self, name: &str) -> Vec<Digest> {
        digests_under(&self.repo(name).join("_layers"))
    }

    // Uploads.

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Begin an upload to repository `name`; its id.
    pub fn new_upload(&self, name: &str) -> io::Result<String> {
        let id = random_id()?;
        let dir = self.upload_dir(&id);
        fs::create_dir(&dir).map_err(io_at("create", &dir))?;
        perm::write_file(&dir.join("repo"), name.as_bytes(), perm::RECORD).map_err(io_at("write", &dir))?;
        perm::create_file(&dir.join("data"), perm::RECORD, true).map_err(io_at("create", &dir))?;
        Ok(id)
    }

    /// The data file of upload `id` of repository `name`, when there is
    /// one; its length is what was received.
    pub fn upload(&self, name: &str, id: &str) -> Option<PathBuf> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let dir = self.upload_dir(id);
        (fs::read_to_string(dir.join("repo")).ok()? == name).then(|| dir.join("data"))
    }

    /// Drop upload `id`.
    pub fn cancel_upload(&self, id: &str) -> io::Result<()> {
        let dir = self.upload_dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at("remove", &dir)(e)),
            _ => Ok(()),
        }
    }

    /// Make the data of upload `id`, whose digest the caller checked, blob
    /// `d` of repository `name`.
    pub fn finish_upload(&self, name: &str, id: &str, d: &Digest) -> io::Result<()> {
        let data = self.upload_dir(id).join("data");
        if self.blobs.contains(d) {
            remove_if_there(&data)?;
        } else {
            self.blobs.install(&data, d).map_err(image_err)?;
        }
        self.link_blob(name, d)?;
        self.cancel_upload(id)
    }

    /// The uploads, with the time each last changed.
    pub fn uploads(&self) -> Vec<(String, std::time::SystemTime)> {
        let Ok(rd) = fs::read_dir(self.root.join("uploads")) else { return vec![] };
        rd.flatten()
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_owned();
                let m = fs::metadata(e.path().join("data")).or_else(|_| e.metadata()).ok()?;
                Some((id, m.modified().ok()?))
            })
            .collect()
    }
}

/// 128 random bits in hex: an upload id no one can guess.
pub fn random_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    fill_random(&mut b)?;
    Ok(berth_core::id::hex(&b))
}

/// `buf` filled from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf))
}

/// The digest of a file's content.
pub fn hash_file(path: &Path, alg: berth_image::Algorithm) -> io::Result<Digest> {
    let mut f = File::open(path).map_err(io_at("open", path))?;
    let mut h = alg.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_at("read", path))?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn links_written_at_once_by_many_requests_all_land() {
        let tmp = crate::serve::TestDir::new("store-race");
        let store = Store::open(&tmp.0.join("root")).unwrap();
        let (d, _) = store.put_blob(&b"layer"[..], None).unwrap();
        let manifest = br#"{"schemaVersion":2}"#;
        let md = Digest::sha256(manifest);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, d, md) = (store.clone(), d.clone(), md.clone());
                std::thread::spawn(move || {
                    s.link_blob("a/b", &d)?;
                    s.put_manifest("a/b", &md, "application/json", manifest, Some("t"), None)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(store.blob_in("a/b", &d), Some(5));
        assert_eq!(store.resolve("a/b", &Reference::Tag("t".into())).map(|r| r.0), Some(md));
        assert_eq!(store.tags("a/b").unwrap(), ["t"]);
        assert_eq!(store.repositories(), ["a/b"]);
        assert!(!valid_name("A/b") && !valid_name("a//b") && !valid_name("../a") && valid_name("a-b/c.d"));
        assert_eq!(Reference::parse("../x"), None);
    }
}
