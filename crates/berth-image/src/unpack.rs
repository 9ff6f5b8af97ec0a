//! Apply a layer tar to a directory, as overlayfs wants it.
//!
//! The tar may be plain, gzip or zstd (told apart by their magic bytes). Its
//! diff id is the sha256 of the uncompressed stream, computed while it is
//! read. Whiteouts become what overlayfs reads: `.wh.NAME` a 0:0 character
//! device named NAME, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on
//! its directory. Owners, modes (setuid included), xattrs, times, hard and
//! symbolic links, devices and fifos are kept.
//!
//! Nothing is written outside the directory: names are cleaned lexically
//! (a `..` that climbs out is refused, an absolute name is taken from the
//! layer's root), parents are resolved inside the root from a directory fd
//! (`openat2(RESOLVE_IN_ROOT)`, so a symlink in a parent path resolves as if
//! the layer were `/`), the last component is never followed (O_NOFOLLOW,
//! `*at` calls without AT_SYMLINK_FOLLOW), and a hardlink target is resolved
//! the same way.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, BufRead, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use berth_core::rootfs::{open_or_create, openat_in_root, Create};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;

use crate::digest::{Algorithm, DiffId, Hasher};
use crate::error::{Error, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What applying a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub diff_id: DiffId,
    /// Bytes of regular file content.
    pub size: u64,
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The uncompressed stream of a blob, whatever its compression.
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = io::BufReader::with_capacity(1 << 20, r);
    let head = r.fill_buf()?;
    // Short reads at the very start are rare; a blob that gives fewer than
    // four bytes at first is treated by what it shows.
    Ok(match Compression::detect(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::None => Box::new(r),
    })
}

/// Hashes what passes through.
struct HashReader<R> {
    inner: R,
    hasher: Hasher,
    on: bool,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.on {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Apply the layer in `input` (any compression) to the existing, normally
/// empty, directory `dir`.
pub fn apply(dir: &Path, input: impl Read) -> Result<Unpacked> {
    apply_with(dir, input, true)
}

/// [`apply`], the stream hashed for the diff id only when `hash` (a
/// caller that takes the diff id from elsewhere gets that of nothing).
pub fn apply_with(dir: &Path, input: impl Read, hash: bool) -> Result<Unpacked> {
    let root: OwnedFd = std::fs::File::open(dir).map_err(Error::io(format!("open {}", dir.display())))?.into();
    let stream = decompress(input).map_err(Error::io("read layer"))?;
    let hashed = HashReader { inner: stream, hasher: Algorithm::Sha256.hasher(), on: hash };
    let mut archive = tar::Archive::new(crate::targuard::Guard::new(hashed));
    let mut w = Writer::new(root.as_fd(), PathBuf::new(), true, false);
    let entries = archive.entries().map_err(bad_tar)?;
    for entry in entries {
        let entry = entry.map_err(bad_tar)?;
        w.entry(entry)?;
    }
    w.finish_dirs();
    let mut rest = archive.into_inner().into_inner();
    // The end-of-archive blocks and any padding belong to the diff id too,
    // and reading to the end makes a compressed stream check its trailer.
    io::copy(&mut rest, &mut io::sink()).map_err(bad_tar)?;
    Ok(Unpacked { diff_id: DiffId::from(rest.hasher.finish()), size: w.size })
}

/// Extract a plain tar (any compression) into the directory `base` of the
/// tree at `root`, as `docker cp` into a container does: no whiteouts, no
/// entry named outside `base`, and the directories on the way resolved
/// from `root`, so that an absolute symlink in the container leads where
/// it leads in the container (Docker's behaviour). Returns the bytes of
/// file content written.
pub fn extract_at(root: BorrowedFd<'_>, base: &Path, input: impl Read, keep_kinds: bool) -> Result<u64> {
    let stream = decompress(input).map_err(Error::io("read archive"))?;
    let mut archive = tar::Archive::new(crate::targuard::Guard::new(stream));
    let mut w = Writer::new(root, berth_core::rootfs::relative(base), false, keep_kinds);
    for entry in archive.entries().map_err(bad_tar)? {
        w.entry(entry.map_err(bad_tar)?)?;
    }
    w.finish_dirs();
    Ok(w.size)
}

fn bad_tar(e: io::Error) -> Error {
    Error::Invalid(format!("invalid layer tar: {e}"))
}

/// A cleaned entry name: its components, none of them `.` or `..`.
fn clean(raw: &[u8]) -> std::result::Result<Vec<OsString>, &'static str> {
    let mut out: Vec<OsString> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("it climbs out of the layer");
                }
            }
            _ => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| Error::Invalid(format!("layer entry name {} has a NUL byte", shorten(s.as_bytes()))))
}

/// An entry name as an error message shows it: at most 256 bytes of it, so
/// that a name of megabytes never makes a message of megabytes.
pub(crate) fn shorten(raw: &[u8]) -> String {
    const MAX: usize = 256;
    if raw.len() <= MAX {
        return String::from_utf8_lossy(raw).into_owned();
    }
    format!("{}… ({} bytes)", String::from_utf8_lossy(&raw[..MAX]), raw.len())
}

/// Metadata of an entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    atime: TimeSpec,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

fn pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos: i64 = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(TimeSpec::new(secs, if secs < 0 { 0 } else { nanos }))
}

struct Writer<'a> {
    /// Where paths resolve: symlinks, absolute ones too, stay inside it.
    root: BorrowedFd<'a>,
    /// The directory under `root` that the entries' names start from.
    base: PathBuf,
    /// The parent directory of the last entry, reused while entries stay in
    /// one directory; dropped whenever anything is removed or replaced.
    parent: Option<(Vec<OsString>, OwnedFd)>,
    /// Directories whose times are set at the end, once nothing is added
    /// to them any more.
    dirs: Vec<(PathBuf, TimeSpec, TimeSpec)>,
    size: u64,
    buf: Vec<u8>,
    /// A layer (whiteouts mean deletions) or plain files (`docker cp`).
    layer: bool,
    /// Refuse to replace a directory with a non-directory or the reverse
    /// (the archive API's `noOverwriteDirNonDir`).
    keep_kinds: bool,
}

impl<'a> Writer<'a> {
    fn new(root: BorrowedFd<'a>, base: PathBuf, layer: bool, keep_kinds: bool) -> Writer<'a> {
        Writer { root, base, parent: None, dirs: Vec::new(), size: 0, buf: vec![0; 256 << 10], layer, keep_kinds }
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let shown = || shorten(&raw);
        let comps = clean(&raw).map_err(|why| Error::Breakout { name: shown(), why })?;
        let meta = self.meta(&mut e).map_err(bad_tar)?;
        let kind = e.header().entry_type();
        let Some((name, parent_path)) = comps.split_last() else {
            // The layer's root itself, or the directory extracted into.
            if kind.is_dir() {
                let flags = libc::O_RDONLY | libc::O_DIRECTORY;
                let base = openat_in_root(self.root, &self.base, flags)
                    .map_err(Error::io(format!("open {}", self.base.display())))?;
                self.set_dir_meta(base.as_fd(), &meta, PathBuf::new())?;
            }
            return Ok(());
        };
        let name_b = name.as_bytes();
        if !self.layer {
            // Plain files: names that look like whiteouts are just names.
        } else if name_b == OPAQUE {
            let dir = self.parent(parent_path)?;
            return set_xattr_fd(dir.as_fd(), OPAQUE_XATTR, b"y")
                .map_err(Error::io(format!("mark {} opaque", shown())));
        } else if name_b.starts_with(b".wh..wh.") {
            // Other aufs metadata (hardlink dirs): nothing for overlayfs.
            return Ok(());
        } else if let Some(hidden) = name_b.strip_prefix(WHITEOUT_PREFIX) {
            // `.wh.`, `.wh..` and `.wh...` would hide nothing, the directory
            // itself, or its parent.
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(Error::Invalid(format!("invalid layer tar: whiteout {} hides no entry", shown())));
            }
            let hidden = OsStr::from_bytes(hidden).to_owned();
            let parent = self.parent(parent_path)?;
            let c = cstr(&hidden)?;
            self.replace(parent.as_fd(), &c, false)?;
            mknodat(parent.as_fd(), c.as_c_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(errno(format!("whiteout {}", shown())))?;
            return chown_at(parent.as_fd(), &c, meta.uid, meta.gid).map_err(errno(format!("chown {}", shown())));
        }
        let parent = self.parent(parent_path)?;
        let c = cstr(name)?;
        let what = |op: &str| format!("{op} {}", shown());
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.replace(parent.as_fd(), &c, false)?;
                let fd = openat(
                    parent.as_fd(),
                    c.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(errno(what("create")))?;
                let mut f = std::fs::File::from(fd);
                self.size += copy(&mut e, &mut f, &mut self.buf).map_err(bad_tar)?;
                let fd = f.as_fd();
                nix::unistd::fchown(fd.as_raw_fd(), Some(meta.uid.into()), Some(meta.gid.into()))
                    .map_err(errno(what("chown")))?;
                nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))
                    .map_err(errno(what("chmod")))?;
                for (k, v) in &meta.xattrs {
                    set_xattr_fd(fd, &k.to_string_lossy(), v).map_err(Error::io(what("set xattr on")))?;
                }
                nix::sys::stat::futimens(fd.as_raw_fd(), &meta.atime, &meta.mtime)
                    .map_err(errno(what("set times of")))?;
            }
            T::Directory => {
                self.replace(parent.as_fd(), &c, true)?;
                match mkdirat(parent.as_fd(), c.as_c_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(err) => return Err(errno(what("mkdir"))(err)),
                }
                let fd = openat(
                    parent.as_fd(),
                    c.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno(what("open")))?;
                let rel: PathBuf = comps.iter().collect();
                self.set_dir_meta(fd.as_fd(), &meta, rel)?;
            }
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| Error::Invalid(format!("symlink {} has no target", shown())))?
                    .into_owned();
                self.replace(parent.as_fd(), &c, false)?;
                nix::unistd::symlinkat(OsStr::from_bytes(&target), Some(parent.as_raw_fd()), c.as_c_str())
                    .map_err(errno(what("symlink")))?;
                self.finish_at(parent.as_fd(), &c, &meta, false).map_err(errno(what("set metadata of")))?;
            }
            T::Link => {
                let target_raw = e
                    .link_name_bytes()
                    .ok_or_else(|| Error::Invalid(format!("hardlink {} has no target", shown())))?
                    .into_owned();
                let target = clean(&target_raw).map_err(|why| Error::Breakout { name: shown(), why })?;
                let Some((tname, tparent)) = target.split_last() else {
                    return Err(Error::Breakout { name: shown(), why: "it links to the layer's root" });
                };
                let tdir: PathBuf = tparent.iter().collect();
                let tdir_fd = openat_in_root(self.root, &self.base.join(&tdir), libc::O_PATH | libc::O_DIRECTORY)
                    .map_err(|_| {
                        Error::Invalid(format!(
                            "hardlink {} to {}: target not in the layer",
                            shown(),
                            String::from_utf8_lossy(&target_raw)
                        ))
                    })?;
                let tc = cstr(tname)?;
                self.replace(parent.as_fd(), &c, false)?;
                nix::unistd::linkat(
                    Some(tdir_fd.as_raw_fd()),
                    tc.as_c_str(),
                    Some(parent.as_raw_fd()),
                    c.as_c_str(),
                    AtFlags::empty(),
                )
                .map_err(|err| {
                    Error::Invalid(format!(
                        "hardlink {} to {}: {}",
                        shown(),
                        String::from_utf8_lossy(&target_raw),
                        err.desc()
                    ))
                })?;
            }
            T::Char | T::Block | T::Fifo => {
                let (sflag, dev) = match kind {
                    T::Char => (SFlag::S_IFCHR, dev_of(e.header())),
                    T::Block => (SFlag::S_IFBLK, dev_of(e.header())),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.replace(parent.as_fd(), &c, false)?;
                mknodat(parent.as_fd(), c.as_c_str(), sflag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(errno(what("mknod")))?;
                self.finish_at(parent.as_fd(), &c, &meta, true).map_err(errno(what("set metadata of")))?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                return Err(Error::Invalid(format!("layer entry {} has unsupported type {:?}", shown(), other)));
            }
        }
        Ok(())
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = e.header();
        let uid = u32::try_from(h.uid()?).map_err(|_| io::Error::other("uid out of range"))?;
        let gid = u32::try_from(h.gid()?).map_err(|_| io::Error::other("gid out of range"))?;
        let mode = h.mode()? & 0o7777;
        let secs = i64::try_from(h.mtime()?).unwrap_or(i64::MAX);
        let mut mtime = TimeSpec::new(secs, 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if let Ok(c) = CString::new(name) {
                        xattrs.push((c, ext.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    mtime = pax_time(ext.value_bytes()).unwrap_or(mtime);
                } else if key == b"atime" {
                    atime = pax_time(ext.value_bytes());
                }
            }
        }
        Ok(Meta { uid, gid, mode, atime: atime.unwrap_or(mtime), mtime, xattrs })
    }

    /// The directory `path` of the layer (created when missing), resolved
    /// inside the root.
    fn parent(&mut self, path: &[OsString]) -> Result<OwnedFd> {
        if let Some((p, fd)) = &self.parent {
            if p.as_slice() == path {
                return fd.try_clone().map_err(Error::io("dup directory fd"));
            }
        }
        let rel: PathBuf = path.iter().collect();
        let fd = open_or_create(self.root, &self.base.join(&rel), Create::Dir)
            .and_then(|fd| {
                // A parent that is a file (an earlier entry) is an error, not
                // a place to create things in.
                let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                Ok(fd)
            })
            .map_err(Error::io(format!("directory {} in layer", rel.display())))?;
        self.parent = Some((path.to_vec(), fd.try_clone().map_err(Error::io("dup directory fd"))?));
        Ok(fd)
    }

    /// Make room for a new entry `name` in `dir`: an existing entry goes,
    /// unless both are directories (Docker's rule).
    fn replace(&mut self, dir: BorrowedFd<'_>, name: &CString, new_is_dir: bool) -> Result<()> {
        let st = match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(errno(format!("stat {name:?}"))(e)),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(());
        }
        if self.keep_kinds && is_dir != new_is_dir {
            let what = if is_dir { "directory" } else { "non-directory" };
            let new = if new_is_dir { "directory" } else { "non-directory" };
            return Err(Error::Invalid(format!("cannot overwrite {what} {name:?} with {new}")));
        }
        self.parent = None;
        if is_dir {
            remove_all_at(dir, name).map_err(Error::io(format!("remove {name:?}")))
        } else {
            nix::unistd::unlinkat(Some(dir.as_raw_fd()), name.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(errno(format!("remove {name:?}")))
        }
    }

    fn set_dir_meta(&mut self, fd: BorrowedFd<'_>, meta: &Meta, rel: PathBuf) -> Result<()> {
        let shown = rel.display().to_string();
        nix::unistd::fchown(fd.as_raw_fd(), Some(meta.uid.into()), Some(meta.gid.into()))
            .map_err(errno(format!("chown {shown}")))?;
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))
            .map_err(errno(format!("chmod {shown}")))?;
        for (k, v) in &meta.xattrs {
            set_xattr_fd(fd, &k.to_string_lossy(), v).map_err(Error::io(format!("set xattr on {shown}")))?;
        }
        self.dirs.push((rel, meta.atime, meta.mtime));
        Ok(())
    }

    /// Owner, mode (not for symlinks), xattrs and times of `name` in `dir`.
    fn finish_at(&self, dir: BorrowedFd<'_>, name: &CString, meta: &Meta, chmod: bool) -> nix::Result<()> {
        chown_at(dir, name, meta.uid, meta.gid)?;
        if chmod {
            nix::sys::stat::fchmodat(
                Some(dir.as_raw_fd()),
                name.as_c_str(),
                Mode::from_bits_truncate(meta.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
        }
        for (k, v) in &meta.xattrs {
            lset_xattr_at(dir, name, k, v)?;
        }
        nix::sys::stat::utimensat(
            Some(dir.as_raw_fd()),
            name.as_c_str(),
            &meta.atime,
            &meta.mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
    }

    /// Directory times, deepest first, once every entry is in.
    fn finish_dirs(&mut self) {
        self.parent = None;
        for (rel, atime, mtime) in self.dirs.iter().rev() {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            if let Ok(fd) = openat_in_root(self.root, &self.base.join(rel), flags) {
                let _ = nix::sys::stat::futimens(fd.as_raw_fd(), atime, mtime);
            }
        }
    }
}

fn openat(dir: BorrowedFd<'_>, name: &std::ffi::CStr, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags, mode)?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn mknodat(dir: BorrowedFd<'_>, name: &std::ffi::CStr, kind: SFlag, perm: Mode, dev: libc::dev_t) -> nix::Result<()> {
    nix::sys::stat::mknodat(Some(dir.as_raw_fd()), name, kind, perm, dev)
}

fn mkdirat(dir: BorrowedFd<'_>, name: &std::ffi::CStr, mode: Mode) -> nix::Result<()> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, mode)
}

fn dev_of(h: &tar::Header) -> libc::dev_t {
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

fn errno(what: String) -> impl FnOnce(nix::errno::Errno) -> Error {
    move |e| Error::Io { what, source: io::Error::from(e) }
}

fn chown_at(dir: BorrowedFd<'_>, name: &CString, uid: u32, gid: u32) -> nix::Result<()> {
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        name.as_c_str(),
        Some(uid.into()),
        Some(gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

fn copy(r: &mut impl Read, w: &mut std::fs::File, buf: &mut [u8]) -> io::Result<u64> {
    use std::io::Write;
    let mut n = 0u64;
    loop {
        let got = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..got])?;
        n += got as u64;
    }
}

/// setxattr on an open file or directory; through /proc/self/fd so that an
/// O_PATH fd works too.
fn set_xattr_fd(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated path and name, and a value buffer of the
    // length passed.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// lsetxattr of `name` inside `dir`, without following `name` itself.
fn lset_xattr_at(dir: BorrowedFd<'_>, name: &CString, key: &CString, value: &[u8]) -> nix::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: NUL-terminated path and key, and a value buffer of the length
    // passed.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    nix::errno::Errno::result(rc).map(drop)
}

/// Remove the directory `name` in `dir` and all it holds, never following
/// a symlink.
fn remove_all_at(dir: BorrowedFd<'_>, name: &CString) -> io::Result<()> {
    let fd = openat(
        dir,
        name.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let children: Vec<(CString, bool)> = {
        let dup = fd.try_clone()?;
        // Dir takes ownership of the raw fd and closes it.
        let mut d = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup))?;
        d.iter()
            .flatten()
            .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
            .map(|e| (e.file_name().to_owned(), e.file_type() == Some(nix::dir::Type::Directory)))
            .collect()
    };
    for (child, is_dir) in children {
        if is_dir {
            remove_all_at(fd.as_fd(), &child)?;
        } else {
            nix::unistd::unlinkat(Some(fd.as_raw_fd()), child.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)?;
        }
    }
    nix::unistd::unlinkat(Some(dir.as_raw_fd()), name.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        let c = |s: &str| {
            clean(s.as_bytes())
                .map(|v| v.iter().map(|x| x.to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"))
        };
        assert_eq!(c("./a/b/"), Ok("a/b".into()));
        assert_eq!(c("/etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(c("a/../b"), Ok("b".into()));
        assert_eq!(c("a/../../b"), Err("it climbs out of the layer"));
        assert_eq!(c("../x"), Err("it climbs out of the layer"));
        assert_eq!(c("."), Ok(String::new()));
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(pax_time(b"12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(pax_time(b"x"), None);
    }
}
