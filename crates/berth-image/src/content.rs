//! The content store: blobs named by their digest under
//! `blobs/<algorithm>/<hex>`.
//!
//! A blob is streamed into `blobs/ingest/` while it is hashed, checked
//! against the digest it was announced with, fsynced and renamed into
//! place; a reader never sees a partial blob. Two ingests of one blob may
//! run at once: both write their own temp file and the second rename
//! replaces identical content. Temp files of a process that died are
//! removed when the store is opened.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// Whether process `pid` exists (temp files and half-made directories
/// carry their maker's pid).
pub(crate) fn process_alive(pid: u32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

impl ContentStore {
    /// Open (creating) the store at `root`, dropping temp files left by
    /// processes that are gone.
    pub fn open(root: &Path) -> Result<ContentStore> {
        for d in ["sha256", "sha512", "ingest"] {
            fs::create_dir_all(root.join(d)).map_err(Error::io(format!("create {}", root.join(d).display())))?;
        }
        let store = ContentStore { root: root.to_owned() };
        store.clean_ingest();
        Ok(store)
    }

    fn clean_ingest(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("ingest")) else { return };
        for e in rd.flatten() {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok());
            if !pid.is_some_and(process_alive) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Where the blob lives (whether or not it is there).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join(d.algorithm().as_str()).join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Start writing a blob hashed with `alg`.
    pub fn writer(&self, alg: Algorithm) -> Result<Ingest> {
        let n = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("ingest").join(format!("{}-{n}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(Error::io(format!("create {}", tmp.display())))?;
        Ok(Ingest {
            store: self.clone(),
            tmp,
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            hasher: Some(alg.hasher()),
            size: 0,
            stored: false,
        })
    }

    /// Stream `r` into the store; with `expected`, the content must have
    /// that digest. Returns the digest and the size.
    pub fn ingest(&self, mut r: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let mut w = self.writer(expected.map_or(Algorithm::Sha256, Digest::algorithm))?;
        io::copy(&mut r, &mut w).map_err(Error::io("read blob"))?;
        w.commit(expected)
    }

    /// A small blob whole (configs, manifests).
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        fs::read(self.path(d)).map_err(|e| self.missing(d, e))
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.path(d)).map_err(|e| self.missing(d, e))
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        fs::metadata(self.path(d)).map(|m| m.len()).map_err(|e| self.missing(d, e))
    }

    fn missing(&self, d: &Digest, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound(format!("blob {d} not found"))
        } else {
            Error::Io { what: format!("read blob {d}"), source: e }
        }
    }

    /// Move the file at `tmp`, on the store's file system, into place as
    /// blob `d`: the caller has checked that its content has that digest.
    /// The content and the rename are on disk when this returns.
    pub fn install(&self, tmp: &Path, d: &Digest) -> Result<()> {
        File::open(tmp).and_then(|f| f.sync_all()).map_err(Error::io(format!("fsync {}", tmp.display())))?;
        let dest = self.path(d);
        fs::rename(tmp, &dest).map_err(Error::io(format!("store blob {d}")))?;
        if let Some(dir) = dest.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("fsync blob directory"))?;
        }
        Ok(())
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join(alg.as_str());
            let rd = fs::read_dir(&dir).map_err(Error::io(format!("list {}", dir.display())))?;
            for e in rd.flatten() {
                if let Some(d) = e.file_name().to_str().and_then(|h| format!("{}:{h}", alg.as_str()).parse().ok()) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove every blob not in `keep`; returns what was removed.
    pub fn prune(&self, keep: &HashSet<Digest>) -> Result<Vec<Digest>> {
        let mut removed = Vec::new();
        for d in self.list()? {
            if !keep.contains(&d) {
                match fs::remove_file(self.path(&d)) {
                    Ok(()) => removed.push(d),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Io { what: format!("remove blob {d}"), source: e }),
                }
            }
        }
        Ok(removed)
    }
}

/// A blob being written; nothing is visible until `commit`. Dropped
/// without a commit, it removes its temp file.
#[derive(Debug)]
pub struct Ingest {
    store: ContentStore,
    tmp: PathBuf,
    file: Option<io::BufWriter<File>>,
    hasher: Option<Hasher>,
    size: u64,
    /// Set once the temp file has been renamed into place.
    stored: bool,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("ingest already committed"))?;
        let n = f.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Ingest {
    /// The digest of what was written, the blob itself dropped.
    pub fn discard(mut self) -> Option<Digest> {
        self.hasher.take().map(Hasher::finish)
    }

    /// Check the digest, fsync, and move the blob into place.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (Some(file), Some(hasher)) = (self.file.take(), self.hasher.take()) else {
            return Err(Error::Invalid("ingest committed twice".into()));
        };
        let actual = hasher.finish();
        if let Some(e) = expected {
            if *e != actual {
                return Err(Error::DigestMismatch { expected: e.clone(), actual });
            }
        }
        let file = file.into_inner().map_err(|e| Error::Io { what: "write blob".into(), source: e.into_error() })?;
        file.sync_all().map_err(Error::io("fsync blob"))?;
        let dest = self.store.path(&actual);
        fs::rename(&self.tmp, &dest).map_err(Error::io(format!("store blob {actual}")))?;
        self.stored = true;
        if let Some(dir) = dest.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("fsync blob directory"))?;
        }
        Ok((actual, self.size))
    }
}

/// Passes bytes on and copies them into an ingest: a blob stored while it
/// is read for something else (unpacked, hashed).
#[derive(Debug)]
pub struct Tee<R> {
    inner: R,
    pub ingest: Ingest,
}

impl<R> Tee<R> {
    pub fn new(inner: R, ingest: Ingest) -> Tee<R> {
        Tee { inner, ingest }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ingest.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.stored {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::testdir::TestDir as Dir;

    fn store(tag: &str) -> (Dir, ContentStore) {
        let dir = Dir::new(&format!("content-{tag}"));
        let s = ContentStore::open(&dir).unwrap();
        (dir, s)
    }

    #[test]
    fn ingest_verify_and_prune() {
        let (dir, s) = store("basic");
        let (d, n) = s.ingest(&b"hello"[..], None).unwrap();
        assert_eq!(d, Digest::sha256(b"hello"));
        assert_eq!(n, 5);
        assert_eq!(s.read(&d).unwrap(), b"hello");
        // A wrong announced digest stores nothing.
        let wrong = Digest::sha256(b"other");
        assert!(matches!(s.ingest(&b"hello!"[..], Some(&wrong)), Err(Error::DigestMismatch { .. })));
        assert!(!s.contains(&Digest::sha256(b"hello!")));
        assert_eq!(fs::read_dir(dir.join("ingest")).unwrap().count(), 0, "no temp file left");
        // sha512 is accepted.
        let mut h = Algorithm::Sha512.hasher();
        h.update(b"x");
        let d512 = h.finish();
        assert_eq!(s.ingest(&b"x"[..], Some(&d512)).unwrap().0, d512);
        let keep: HashSet<Digest> = [d.clone()].into();
        assert_eq!(s.prune(&keep).unwrap(), vec![d512]);
        assert_eq!(s.list().unwrap(), vec![d]);
    }

    #[test]
    fn concurrent_ingests_of_one_blob() {
        let (_dir, s) = store("race");
        let data = vec![7u8; 1 << 20];
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (s, data) = (s.clone(), data.clone());
                std::thread::spawn(move || s.ingest(&data[..], None).map(|r| r.0))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), Digest::sha256(&data));
        }
        assert_eq!(s.read(&Digest::sha256(&data)).unwrap(), data);
    }

    #[test]
    fn stale_temp_files_are_collected() {
        let (dir, _) = store("stale");
        // A temp file of a pid that cannot exist.
        fs::write(dir.join("ingest").join("999999999-0"), b"partial").unwrap();
        let _s = ContentStore::open(&dir).unwrap();
        assert_eq!(fs::read_dir(dir.join("ingest")).unwrap().count(), 0);
    }
}
