//! Helpers for the image store's tests: root checks, scratch directories,
//! and tars built byte by byte (so hostile names can be written).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Root is needed (owners, devices, trusted xattrs); under CI its absence
/// is a failure, elsewhere the test is skipped.
pub fn can_run(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{what}: needs root under CI");
        eprintln!("skipping {what}: needs root");
    }
    root
}

static N: AtomicU32 = AtomicU32::new(0);

/// `base/layer` to unpack into, `base/outside` that must stay untouched.
pub struct Scratch {
    pub base: PathBuf,
    pub layer: PathBuf,
    pub outside: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let base = std::env::temp_dir().join(format!(
            "berth-img-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let layer = base.join("layer");
        let outside = base.join("outside");
        std::fs::create_dir_all(&layer).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        Scratch { base, layer, outside }
    }
}

impl Drop for Scratch {
    /// Detaches whatever a failed test left mounted below the directory
    /// (deepest first), then removes it.
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&self.base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

pub fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: NUL-terminated strings and a buffer of the length passed.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar written entry by entry with raw names.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder { b: tar::Builder::new(Vec::new()) }
    }

    fn header(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let raw = name.as_bytes();
        assert!(raw.len() < 100, "test names fit the header");
        h.as_gnu_mut().unwrap().name[..raw.len()].copy_from_slice(raw);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000);
        h
    }

    fn append(&mut self, mut h: tar::Header, data: &[u8]) {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) {
        let h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64);
        self.append(h, data);
    }

    /// A file with owner, mtime and xattrs: `(uid, gid, mtime)`.
    pub fn file_x(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        (uid, gid, mtime): (u64, u64, u64),
        xattrs: &[(&str, &[u8])],
    ) {
        let exts: Vec<(String, &[u8])> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
        self.b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
        let mut h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.append(h, data);
    }

    pub fn dir(&mut self, name: &str, mode: u32, uid: u64, gid: u64, mtime: u64) {
        let mut h = Self::header(name, tar::EntryType::Directory, mode, 0);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.append(h, &[]);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        let mut h = Self::header(name, tar::EntryType::Symlink, 0o777, 0);
        let raw = target.as_bytes();
        h.as_gnu_mut().unwrap().linkname[..raw.len()].copy_from_slice(raw);
        self.append(h, &[]);
    }

    pub fn hardlink(&mut self, name: &str, target: &str) {
        let mut h = Self::header(name, tar::EntryType::Link, 0o644, 0);
        let raw = target.as_bytes();
        h.as_gnu_mut().unwrap().linkname[..raw.len()].copy_from_slice(raw);
        self.append(h, &[]);
    }

    /// `kind` b'3' character, b'4' block, b'6' fifo.
    pub fn device(&mut self, name: &str, kind: u8, major: u32, minor: u32) {
        let mut h = Self::header(name, tar::EntryType::new(kind), 0o620, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.append(h, &[]);
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn xattr_list(path: &Path) -> Vec<(String, Vec<u8>)> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: NUL-terminated path, buffer of the length passed.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out: Vec<(String, Vec<u8>)> = names
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| !n.starts_with("trusted.overlay."))
        .map(|n| {
            let v = getxattr(path, &n).unwrap_or_default();
            (n, v)
        })
        .collect();
    out.sort();
    out
}

/// A line per path under `root`: type, mode, owner, size, content hash,
/// link target, device number, mtime and xattrs. Two trees with equal
/// manifests hold the same files.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(root: &Path, rel: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(rel)).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let full = root.join(&r);
            let m = std::fs::symlink_metadata(&full).unwrap();
            let ft = m.file_type();
            let (kind, extra) = if ft.is_dir() {
                ("dir", String::new())
            } else if ft.is_symlink() {
                ("symlink", std::fs::read_link(&full).unwrap().display().to_string())
            } else if ft.is_file() {
                ("file", berth_image::Digest::sha256(&std::fs::read(&full).unwrap()).to_string())
            } else if ft.is_char_device() || ft.is_block_device() {
                (
                    if ft.is_char_device() { "char" } else { "block" },
                    format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev())),
                )
            } else {
                ("fifo", String::new())
            };
            let size = if ft.is_file() { m.size() } else { 0 };
            let line = format!(
                "{kind} {:o} {}:{} size={size} {extra} mtime={} xattrs={:?}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime(),
                xattr_list(&full)
            );
            out.insert(format!("/{}", r.display()), line);
            if ft.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Run `f` on the mounted root file system of image `name` in `store`
/// (a container layer made for it and removed after).
pub fn with_rootfs<T>(store: &berth_image::ImageStore, name: &str, f: impl FnOnce(&Path) -> T) -> T {
    let id = store.resolve(name).unwrap();
    let rec = store.get(&id).unwrap().unwrap();
    static M: AtomicU32 = AtomicU32::new(0);
    let rw_id = format!("view-{}-{}", std::process::id(), M.fetch_add(1, Ordering::Relaxed));
    let rw = store.layers.create_rw(&rw_id, rec.top_layer.as_ref()).unwrap();
    let m = store.layers.mount_of(&rw).unwrap();
    m.mount().unwrap();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&m.target)));
    let _ = m.unmount();
    store.layers.remove_rw(&rw).unwrap();
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}
