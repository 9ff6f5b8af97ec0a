//! Path resolution inside a root directory.
//!
//! Paths inside a container root are resolved from a directory fd with
//! `openat2(RESOLVE_IN_ROOT)`, never by joining strings: a symlink in an image
//! (`/etc -> /host/etc`, `../../..`) is then resolved as if the root were `/`
//! and cannot redirect a mount, an unpack or a copy to the host
//! (CVE-2018-15664, runc's CVE-2021-30465).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// What to make at the end of the path when it does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing path is an error.
    Nothing,
    /// A directory (mode 0755), with missing parents.
    Dir,
    /// An empty regular file (mode 0644), with missing parent directories.
    File,
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(root, path, flags, RESOLVE_IN_ROOT)`: `path` is resolved as if
/// `root` were `/`, symlinks included.
pub fn openat_in_root(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let c = cstring(if rel.as_os_str().is_empty() { Path::new(".") } else { &rel })?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `c` is a valid NUL-terminated string and `how` a valid
        // open_how whose size is passed; the kernel only reads both.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let err = io::Error::last_os_error();
        // openat2 returns EAGAIN when a rename raced with the resolution.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
}

/// `path` made relative, with `.` dropped; `..` is kept (the kernel clamps it at the root).
pub fn relative(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::RootDir | Component::CurDir | Component::Prefix(_))).collect()
}

/// Open `path` inside `root` as an `O_PATH` fd, creating what `create` says
/// when it is missing. Missing parents are created one component at a time,
/// each resolved again inside the root, so a symlink planted anywhere on the
/// way still cannot lead outside.
pub fn open_or_create(root: BorrowedFd<'_>, path: &Path, create: Create) -> io::Result<OwnedFd> {
    open_or_create_depth(root, &relative(path), create, 0)
}

/// Symlinks followed while creating, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

fn open_or_create_depth(root: BorrowedFd<'_>, rel: &Path, create: Create, depth: usize) -> io::Result<OwnedFd> {
    match openat_in_root(root, rel, libc::O_PATH) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create != Create::Nothing => {}
        other => return other,
    }
    if depth > MAX_SYMLINKS {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let comps: Vec<_> = rel.components().collect();
    let mut parent = openat_in_root(root, Path::new("."), libc::O_PATH | libc::O_DIRECTORY)?;
    let mut so_far = PathBuf::new();
    for (i, comp) in comps.iter().enumerate() {
        let at_parent = so_far.clone();
        so_far.push(comp);
        match openat_in_root(root, &so_far, libc::O_PATH) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(_) => {}
        }
        let last = i + 1 == comps.len();
        let name = cstring(Path::new(comp.as_os_str()))?;
        if let Some(target) = readlinkat(parent.as_fd_ref(), &name)? {
            // A dangling symlink: create its target, resolved inside the root,
            // and go on from there.
            let mut next = if target.is_absolute() { PathBuf::new() } else { at_parent };
            next.push(relative(&target));
            for rest in &comps[i + 1..] {
                next.push(rest);
            }
            return open_or_create_depth(root, &next, create, depth + 1);
        }
        // SAFETY: `parent` is a live fd and `name` a single NUL-terminated
        // component; O_EXCL keeps a symlink created meanwhile from being followed.
        let rc = unsafe {
            if last && create == Create::File {
                let fd = libc::openat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            } else {
                libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755)
            }
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
        }
        parent = openat_in_root(root, &so_far, libc::O_PATH)?;
    }
    Ok(parent)
}

trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl AsFdRef for OwnedFd {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// The target of `name` in `dir` when it is a symlink, `None` otherwise.
fn readlinkat(dir: BorrowedFd<'_>, name: &CString) -> io::Result<Option<PathBuf>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(None),
            _ => Err(err),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(buf))))
}

/// The `/proc/self/fd/N` path of an fd, for syscalls that take a path
/// (mount): the kernel follows the magic link to exactly the resolved inode.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    fn tempdir(tag: &str) -> io::Result<PathBuf> {
        let d = std::env::temp_dir().join(format!("berth-rootfs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d)?;
        Ok(d)
    }

    #[test]
    fn symlinks_stay_inside_root() -> io::Result<()> {
        let base = tempdir("escape")?;
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(&root)?;
        fs::create_dir_all(&outside)?;
        symlink(&outside, root.join("abs"))?;
        symlink("../../outside", root.join("rel"))?;
        let rootfd = fs::File::open(&root)?;
        for p in ["/abs/new/dir", "/rel/new/file"] {
            let kind = if p.ends_with("file") { Create::File } else { Create::Dir };
            open_or_create(rootfd.as_fd(), Path::new(p), kind)?;
        }
        assert_eq!(fs::read_dir(&outside)?.count(), 0, "nothing created outside the root");
        assert!(root.join(relative(&outside)).join("new/dir").is_dir());
        assert!(root.join("outside/new/file").is_file());
        fs::remove_dir_all(&base)
    }

    #[test]
    fn missing_without_create_is_not_found() -> io::Result<()> {
        let base = tempdir("missing")?;
        let rootfd = fs::File::open(&base)?;
        let err = open_or_create(rootfd.as_fd(), Path::new("/nope"), Create::Nothing).err();
        assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::ENOENT));
        fs::remove_dir_all(&base)
    }
}
