//! From a container's upper directory back to Docker's terms: the changes
//! `docker diff` lists (A added, C changed, D deleted), and a layer tar with
//! `.wh.` entries for `docker commit`, the reverse of `unpack`.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, DiffId, Hasher};
use crate::error::{Error, Result};

/// One line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// Absolute path in the container.
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Docker's 0.
    Modified,
    /// Docker's 1.
    Added,
    /// Docker's 2.
    Deleted,
}

impl ChangeKind {
    /// The number the API uses.
    pub fn code(self) -> u8 {
        match self {
            ChangeKind::Modified => 0,
            ChangeKind::Added => 1,
            ChangeKind::Deleted => 2,
        }
    }
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: NUL-terminated path, buffer of the length passed.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) { Ok(vec![]) } else { Err(e) };
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else { continue };
        let mut val = vec![0u8; 65536];
        // SAFETY: NUL-terminated strings, buffer of the length passed.
        let r = unsafe { libc::lgetxattr(p.as_ptr(), cname.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if r >= 0 {
            val.truncate(r as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), val));
        }
    }
    Ok(out)
}

fn is_opaque(path: &Path) -> bool {
    xattrs(path).map(|x| x.iter().any(|(k, v)| k == "trusted.overlay.opaque" && v == b"y")).unwrap_or(false)
}

/// Entries of `dir`, sorted by name.
fn sorted(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let mut v: Vec<_> = fs::read_dir(dir).map_err(Error::io(format!("read {}", dir.display())))?.flatten().collect();
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// The changes in `upper` over the image layers `lowers` (diff dirs, top
/// first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_changes(upper, Path::new(""), lowers, &mut out)?;
    out.sort();
    Ok(out)
}

fn in_lowers(rel: &Path, lowers: &[PathBuf]) -> bool {
    for l in lowers {
        match fs::symlink_metadata(l.join(rel)) {
            Ok(m) if is_whiteout(&m) => return false,
            Ok(_) => return true,
            Err(_) => {
                // An opaque parent in this layer hides everything below it.
                let hidden = rel.ancestors().skip(1).any(|a| !a.as_os_str().is_empty() && is_opaque(&l.join(a)));
                if hidden {
                    return false;
                }
            }
        }
    }
    false
}

fn walk_changes(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    for e in sorted(&upper.join(rel))? {
        let r = rel.join(e.file_name());
        let m = e.metadata().map_err(Error::io(format!("stat {}", r.display())))?;
        let path = format!("/{}", r.display());
        if is_whiteout(&m) {
            out.push(Change { path, kind: ChangeKind::Deleted });
            continue;
        }
        let kind = if in_lowers(&r, lowers) { ChangeKind::Modified } else { ChangeKind::Added };
        out.push(Change { path, kind });
        if m.is_dir() {
            walk_changes(upper, &r, lowers, out)?;
        }
    }
    Ok(())
}

/// Writes through a hash, for the diff id of what is exported.
struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write `upper` as a layer tar to `w`: whiteout devices become `.wh.NAME`,
/// opaque directories get a `.wh..wh..opq` entry, files that share an inode
/// become hardlinks. Entries are sorted, so the same tree gives the same
/// bytes. Returns the diff id.
pub fn export(upper: &Path, w: impl Write) -> Result<DiffId> {
    write_tree(upper, w, true, &[])
}

/// As `export`, leaving out the paths in `skip` (relative, such as
/// `etc/hosts`) where they are empty files or empty directories: the
/// mount points a runtime made in the layer, which are not the
/// container's own changes.
pub fn export_skipping(upper: &Path, w: impl Write, skip: &[&Path]) -> Result<DiffId> {
    write_tree(upper, w, true, skip)
}

/// Whether `full` (at `rel`) is one of `skip` and holds nothing.
pub fn is_skipped_mountpoint(full: &Path, rel: &Path, skip: &[&Path]) -> bool {
    if !skip.contains(&rel) {
        return false;
    }
    match fs::symlink_metadata(full) {
        Ok(m) if m.is_file() => m.len() == 0,
        Ok(m) if m.is_dir() => fs::read_dir(full).map(|mut d| d.next().is_none()).unwrap_or(false),
        _ => false,
    }
}

/// Write a whole tree (a merged root file system) as a tar, as `docker
/// export` does: entries as they are, sorted, hardlinks kept. Returns the
/// digest of the tar.
pub fn export_tree(root: &Path, w: impl Write) -> Result<DiffId> {
    write_tree(root, w, false, &[])
}

fn write_tree(dir: &Path, w: impl Write, layer: bool, skip: &[&Path]) -> Result<DiffId> {
    let mut b = tar::Builder::new(HashWriter { inner: w, hasher: Algorithm::Sha256.hasher() });
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    export_dir(&mut b, dir, Path::new(""), &mut links, layer, skip)?;
    let hw = b.into_inner().map_err(Error::io("finish tar"))?;
    Ok(DiffId::from(hw.hasher.finish()))
}

/// An empty root-owned file entry: a whiteout or opaque marker.
fn marker_header(mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    h
}

fn header_for(m: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(m, tar::HeaderMode::Complete);
    h
}

fn export_dir<W: Write>(
    b: &mut tar::Builder<W>,
    upper: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    layer: bool,
    skip: &[&Path],
) -> Result<()> {
    let fail = |p: &Path| Error::io(format!("export {}", p.display()));
    for e in sorted(&upper.join(rel))? {
        let r = rel.join(e.file_name());
        let full = upper.join(&r);
        let m = fs::symlink_metadata(&full).map_err(fail(&r))?;
        if is_skipped_mountpoint(&full, &r, skip) {
            continue;
        }
        if layer && is_whiteout(&m) {
            let name = rel.join(whiteout_name(&e.file_name()));
            let mut h = marker_header(m.mtime());
            b.append_data(&mut h, &name, io::empty()).map_err(fail(&r))?;
            continue;
        }
        let ext: Vec<(String, Vec<u8>)> = xattrs(&full)
            .map_err(fail(&r))?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay."))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !ext.is_empty() {
            b.append_pax_extensions(ext.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(fail(&r))?;
        }
        let ft = m.file_type();
        let mut h = header_for(&m);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, &r, io::empty()).map_err(fail(&r))?;
            if layer && is_opaque(&full) {
                let mut oh = marker_header(m.mtime());
                b.append_data(&mut oh, r.join(".wh..wh..opq"), io::empty()).map_err(fail(&r))?;
            }
            export_dir(b, upper, &r, links, layer, skip)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(fail(&r))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &r, &target).map_err(fail(&r))?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &r, first).map_err(fail(&r))?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), r.clone());
            }
            let f = fs::File::open(&full).map_err(fail(&r))?;
            b.append_data(&mut h, &r, f).map_err(fail(&r))?;
        } else {
            // Devices and fifos: the header carries everything.
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            h.set_entry_type(kind);
            h.set_size(0);
            let _ = h.set_device_major(libc::major(m.rdev()));
            let _ = h.set_device_minor(libc::minor(m.rdev()));
            b.append_data(&mut h, &r, io::empty()).map_err(fail(&r))?;
        }
    }
    Ok(())
}

/// `.wh.` + a name.
fn whiteout_name(name: &std::ffi::OsStr) -> PathBuf {
    let mut v = b".wh.".to_vec();
    v.extend_from_slice(name.as_bytes());
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(v))
}
