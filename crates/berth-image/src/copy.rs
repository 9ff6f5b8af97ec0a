//! `docker cp`: a path inside a container's root file system, stat'ed,
//! read out as a tar, or written to from one.
//!
//! Every path is resolved from a directory fd, as if the container's root
//! were `/` (`openat2(RESOLVE_IN_ROOT)`), and the tree is walked with
//! `*at` calls that never follow the entry they open (O_NOFOLLOW). A
//! symlink the container swaps in while a copy runs therefore cannot lead
//! it to the host's files: CVE-2018-15664, where Docker resolved the path
//! first and used it later by name.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_core::rootfs::openat_in_root;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// What a path inside the root is (Docker's container path stat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode`: permission bits with its own type bits.
    pub mode: u32,
    pub mtime: String,
    /// Where a symlink leads, resolved inside the root.
    pub link_target: String,
}

/// Go's `os.FileMode` type bits.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHAR: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

fn go_mode(m: &std::fs::Metadata) -> u32 {
    let raw = m.mode();
    let ft = m.file_type();
    let mut mode = raw & 0o777;
    for (bit, go) in [(0o4000, GO_SETUID), (0o2000, GO_SETGID), (0o1000, GO_STICKY)] {
        if raw & bit != 0 {
            mode |= go;
        }
    }
    if ft.is_dir() {
        mode |= GO_DIR;
    } else if ft.is_symlink() {
        mode |= GO_SYMLINK;
    } else if ft.is_fifo() {
        mode |= GO_PIPE;
    } else if ft.is_socket() {
        mode |= GO_SOCKET;
    } else if ft.is_char_device() {
        mode |= GO_DEVICE | GO_CHAR;
    } else if ft.is_block_device() {
        mode |= GO_DEVICE;
    }
    mode
}

fn nix_err(what: String) -> impl FnOnce(nix::errno::Errno) -> Error {
    move |e| Error::Io { what, source: io::Error::from(e) }
}

fn not_found(path: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound(format!("Could not find the file {path} in container"))
        } else {
            Error::Io { what: format!("resolve {path}"), source: e }
        }
    }
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::Invalid(format!("a name holds a NUL byte: {s:?}")))
}

/// A path the way the archive API gives it: absolute, and whether its last
/// symlink is followed (a trailing `/` or `/.`, as Docker decides).
struct Target {
    parent: PathBuf,
    base: Option<PathBuf>,
    follow: bool,
}

fn split(path: &str) -> Target {
    let follow = path.ends_with('/') || path.ends_with("/.");
    let p = Path::new(path);
    let clean = berth_core::rootfs::relative(p);
    match (clean.parent(), clean.file_name()) {
        (Some(parent), Some(base)) if !follow => {
            Target { parent: parent.to_owned(), base: Some(PathBuf::from(base)), follow }
        }
        _ => Target { parent: clean, base: None, follow },
    }
}

/// Opens `path` inside `root` as an O_PATH fd: intermediate symlinks are
/// followed inside the root, the last one only when `follow`.
fn open_path(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd> {
    let t = split(path);
    let flags = libc::O_PATH | if t.follow { 0 } else { libc::O_NOFOLLOW };
    match t.base {
        None => openat_in_root(root, &t.parent, flags).map_err(not_found(path)),
        Some(base) => {
            let parent = openat_in_root(root, &t.parent, libc::O_PATH | libc::O_DIRECTORY).map_err(not_found(path))?;
            let c = cstr(base.as_os_str())?;
            openat(
                Some(parent.as_raw_fd()),
                c.as_c_str(),
                OFlag::from_bits_truncate(flags) | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| not_found(path)(io::Error::from(e)))
            // SAFETY: openat returned a new descriptor that nothing else owns.
            .map(|fd| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        }
    }
}

fn metadata(fd: BorrowedFd<'_>) -> io::Result<std::fs::Metadata> {
    // fstat works on O_PATH descriptors; a File borrowed for the call.
    let f = std::mem::ManuallyDrop::new(
        // SAFETY: the File does not outlive `fd` and is never dropped, so
        // the descriptor is not closed twice.
        unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd.as_raw_fd()) },
    );
    f.metadata()
}

/// `HEAD /containers/{id}/archive`: what `path` is.
pub fn stat(root: &Path, path: &str) -> Result<PathStat> {
    let rootfd = open_root(root)?;
    let fd = open_path(rootfd.as_fd(), path)?;
    stat_fd(rootfd.as_fd(), fd.as_fd(), path)
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    Ok(std::fs::File::open(root).map_err(Error::io(format!("open {}", root.display())))?.into())
}

fn stat_fd(root: BorrowedFd<'_>, fd: BorrowedFd<'_>, path: &str) -> Result<PathStat> {
    let m = metadata(fd).map_err(Error::io(format!("stat {path}")))?;
    let name = split(path).base.map_or_else(
        || Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into()),
        |b| b.to_string_lossy().into_owned(),
    );
    let link_target = if m.file_type().is_symlink() {
        // Where the link leads, resolved inside the root.
        match openat_in_root(root, Path::new(path), libc::O_PATH) {
            Ok(t) => {
                let real = std::fs::read_link(berth_core::rootfs::fd_path(t.as_fd())).unwrap_or_default();
                let base = std::fs::read_link(berth_core::rootfs::fd_path(root)).unwrap_or_default();
                real.strip_prefix(&base).map(|r| format!("/{}", r.display())).unwrap_or_default()
            }
            Err(_) => nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    } else {
        String::new()
    };
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(m.mtime().max(0) as u64, m.mtime_nsec() as u32);
    Ok(PathStat {
        name,
        size: m.size() as i64,
        mode: go_mode(&m),
        mtime: berth_core::time::rfc3339(mtime),
        link_target,
    })
}

/// `GET /containers/{id}/archive`: `path` as a tar whose entries are named
/// from its base name (`.` for a path that ends in `/.`), and its stat.
pub fn archive(root: &Path, path: &str, w: impl Write) -> Result<PathStat> {
    archive_as(root, path, None, w)
}

/// `archive`, with the entries of a path not ending in `/.` named from
/// `name` instead of its base name (a mount's directory, named as it is
/// inside the container).
pub fn archive_as(root: &Path, path: &str, name: Option<&str>, w: impl Write) -> Result<PathStat> {
    let rootfd = open_root(root)?;
    let fd = open_path(rootfd.as_fd(), path)?;
    let mut st = stat_fd(rootfd.as_fd(), fd.as_fd(), path)?;
    if let Some(n) = name {
        n.clone_into(&mut st.name);
    }
    let name = if path.ends_with("/.") { PathBuf::from(".") } else { PathBuf::from(&st.name) };
    let mut b = tar::Builder::new(w);
    let mut links = HashMap::new();
    add(&mut b, fd, &name, &mut links)?;
    b.into_inner().map_err(Error::io("finish archive"))?.flush().map_err(Error::io("finish archive"))?;
    Ok(st)
}

fn add<W: Write>(
    b: &mut tar::Builder<W>,
    fd: OwnedFd,
    name: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let fail = |p: &Path| Error::io(format!("archive {}", p.display()));
    let m = metadata(fd.as_fd()).map_err(fail(name))?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
    let ft = m.file_type();
    if ft.is_dir() {
        h.set_size(0);
        append(b, &mut h, name, io::empty()).map_err(fail(name))?;
        let dirfd =
            openat(Some(fd.as_raw_fd()), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(nix_err(format!("open {}", name.display())))?;
        let mut dir = nix::dir::Dir::from_fd(dirfd).map_err(nix_err(format!("read {}", name.display())))?;
        let mut children: Vec<CString> = dir
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        children.sort();
        for c in children {
            let child_name = name.join(OsStr::from_bytes(c.as_bytes()));
            let child = openat(
                Some(dir.as_raw_fd()),
                c.as_c_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            );
            let child = match child {
                Ok(f) => f,
                // Gone while walking: as if it had never been there.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(nix_err(format!("open {}", child_name.display()))(e)),
            };
            // SAFETY: openat returned a new descriptor that nothing else owns.
            let child = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(child) };
            add(b, child, &child_name, links)?;
        }
    } else if ft.is_symlink() {
        let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
            .map_err(nix_err(format!("readlink {}", name.display())))?;
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name(Path::new(&target)).map_err(fail(name))?;
        append(b, &mut h, name, io::empty()).map_err(fail(name))?;
    } else if ft.is_file() {
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                return b.append_link(&mut h, name, first).map_err(fail(name));
            }
            links.insert((m.dev(), m.ino()), name.to_owned());
        }
        // Reopen the very inode for reading, through its O_PATH descriptor.
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let f = std::fs::File::open(&proc).map_err(fail(name))?;
        let fm = f.metadata().map_err(fail(name))?;
        if fm.ino() != m.ino() || !fm.file_type().is_file() {
            return Err(Error::Invalid(format!("{} changed while it was copied", name.display())));
        }
        h.set_size(fm.size());
        append(b, &mut h, name, f).map_err(fail(name))?;
    } else {
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // Sockets have no place in a tar.
            return Ok(());
        };
        h.set_entry_type(kind);
        h.set_size(0);
        let _ = h.set_device_major(libc::major(m.rdev()));
        let _ = h.set_device_minor(libc::minor(m.rdev()));
        b.append_data(&mut h, name, io::empty()).map_err(fail(name))?;
    }
    Ok(())
}

/// Appends an entry under `name`. The tar crate drops a leading `./`, but
/// the docker CLI rebases the entries of a `/.` copy by replacing that
/// `.`; such names (when short enough for the header) are written as they
/// are.
fn append<W: Write>(b: &mut tar::Builder<W>, h: &mut tar::Header, name: &Path, data: impl io::Read) -> io::Result<()> {
    let raw = name.as_os_str().as_bytes();
    let dotted = raw == b"." || raw.starts_with(b"./");
    let mut with_slash = raw.to_vec();
    if h.entry_type().is_dir() && !with_slash.ends_with(b"/") {
        with_slash.push(b'/');
    }
    if dotted && with_slash.len() <= 100 {
        let n = &mut h.as_old_mut().name;
        n.fill(0);
        n[..with_slash.len()].copy_from_slice(&with_slash);
        h.set_cksum();
        return b.append(h, data);
    }
    b.append_data(h, name, data)
}

/// `PUT /containers/{id}/archive`: extracts the tar in `input` into the
/// directory `path` (which must exist), resolved inside `root`.
pub fn extract(root: &Path, path: &str, input: impl io::Read, keep_kinds: bool) -> Result<u64> {
    let rootfd = open_root(root)?;
    let rel = berth_core::rootfs::relative(Path::new(path));
    match openat_in_root(rootfd.as_fd(), &rel, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(Error::Invalid("extraction point is not a directory".into()));
        }
        Err(e) => return Err(not_found(path)(e)),
    };
    crate::unpack::extract_at(rootfd.as_fd(), &rel, input, keep_kinds)
}

/// Fill the directory `dest` on the host with the content of the
/// directory `path` inside `root`, owners, modes and times kept, the
/// directory's own included (how Docker fills a new volume from the image:
/// a tar of the one streamed into the other). False when `path` is not a
/// directory inside the root, and nothing is copied.
pub fn copy_dir_into(root: &Path, path: &str, dest: &Path) -> Result<bool> {
    let rootfd = open_root(root)?;
    // A symlink at `path` is followed inside the root: the volume is
    // mounted where it leads.
    let from = format!("{}/.", path.trim_end_matches('/'));
    match open_path(rootfd.as_fd(), &from) {
        Ok(fd) => {
            let m = metadata(fd.as_fd()).map_err(Error::io(format!("stat {path}")))?;
            if !m.is_dir() {
                return Ok(false);
            }
        }
        Err(Error::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    let destfd = std::fs::File::open(dest).map_err(Error::io(format!("open {}", dest.display())))?;
    let (r, w) = nix::unistd::pipe().map_err(nix_err("pipe".into()))?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || archive(root, &from, std::fs::File::from(w)));
        let extracted = crate::unpack::extract_at(destfd.as_fd(), Path::new(""), std::fs::File::from(r), false);
        let archived = writer.join().map_err(|_| Error::Io {
            what: format!("copy {path}"),
            source: io::Error::other("the archive thread failed"),
        })?;
        // The reader's error explains a writer's broken pipe, so it comes first.
        extracted?;
        archived.map(|_| true)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    fn tree() -> TestDir {
        let d = TestDir::new("copy");
        let r: &Path = &d;
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/sub/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/etc/sub", r.join("link")).unwrap();
        std::os::unix::fs::symlink("/", r.join("up")).unwrap();
        d
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
    }

    #[test]
    fn stats_and_archives_inside_the_root() {
        let d = tree();
        let st = stat(&d, "/etc/sub/f").unwrap();
        assert_eq!((st.name.as_str(), st.size, st.mode), ("f", 5, 0o644 & !umask()));
        let st = stat(&d, "/link").unwrap();
        assert_eq!(st.mode & GO_SYMLINK, GO_SYMLINK);
        assert_eq!(st.link_target, "/etc/sub");
        assert_eq!(stat(&d, "/etc").unwrap().mode & GO_DIR, GO_DIR);
        assert!(matches!(stat(&d, "/nope"), Err(Error::NotFound(_))));
        let mut out = Vec::new();
        archive(&d, "/etc", &mut out).unwrap();
        assert_eq!(names(&out), ["etc", "etc/sub", "etc/sub/f"]);
        // The link itself, or what it leads to with a trailing "/.".
        let mut out = Vec::new();
        archive(&d, "/link", &mut out).unwrap();
        assert_eq!(names(&out), ["link"]);
        let mut out = Vec::new();
        archive(&d, "/link/.", &mut out).unwrap();
        assert_eq!(names(&out), ["./", "./f"]);
        // A symlink to / leads to the container's root, not the host's.
        let mut out = Vec::new();
        archive(&d, "/up/etc/sub/f", &mut out).unwrap();
        assert_eq!(names(&out), ["f"]);
        assert!(matches!(stat(&d, "/up/etc/passwd"), Err(Error::NotFound(_))));
    }

    fn umask() -> u32 {
        // SAFETY: umask is read by setting it and putting it back.
        let m = unsafe { libc::umask(0o022) };
        // SAFETY: as above.
        unsafe { libc::umask(m) };
        m
    }

    #[test]
    fn extracts_inside_the_root() {
        let d = tree();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "new.txt", &b"abc"[..]).unwrap();
        let data = b.into_inner().unwrap();
        // Through the link to / : still inside the root.
        extract(&d, "/up/etc", &data[..], false).unwrap();
        assert_eq!(std::fs::read(d.join("etc/new.txt")).unwrap(), b"abc");
        assert!(matches!(extract(&d, "/etc/sub/f", &data[..], false), Err(Error::Invalid(_))));
        assert!(matches!(extract(&d, "/missing", &data[..], false), Err(Error::NotFound(_))));
        // A file may not replace a directory when kinds are kept.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "sub", &b""[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(extract(&d, "/etc", &data[..], true).is_err());
        assert!(&d.join("etc/sub/f").exists());
    }

    #[test]
    fn copies_a_directory_into_another_with_its_metadata() {
        use std::os::unix::fs::PermissionsExt;
        let d = tree();
        std::fs::set_permissions(d.join("etc/sub"), std::fs::Permissions::from_mode(0o1733)).unwrap();
        let out = TestDir::new("copy-out");
        assert!(copy_dir_into(&d, "/up/etc/sub", &out).unwrap());
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(&*out).unwrap().permissions().mode() & 0o7777, 0o1733);
        // Not a directory, or not there: nothing to copy.
        assert!(!copy_dir_into(&d, "/etc/sub/f", &out).unwrap());
        assert!(!copy_dir_into(&d, "/missing", &out).unwrap());
    }
}
