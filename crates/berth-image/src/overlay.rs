//! Mounting a container's root file system with overlayfs.
//!
//! The classic mount(2) takes all lower directories in one option string,
//! limited to a page; an image of many layers does not fit with absolute
//! paths. The new mount API takes them one at a time (`lowerdir+`, Linux
//! 6.8), which is tried first. The fallback mounts with the short links
//! of `overlay/l/` relative to the overlay directory, as Docker's overlay2
//! does, from a child process that changes its working directory (the
//! caller's stays where it is, other threads included).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Everything needed to mount one container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// The overlay directory; `lowers` are relative to it.
    pub base: PathBuf,
    /// `l/<short>` of each image layer, top first.
    pub lowers: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the merged tree appears.
    pub target: PathBuf,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Invalid(format!("path {} has a NUL byte", p.display())))
}

fn last_err(what: &str) -> Error {
    Error::Io { what: what.to_owned(), source: std::io::Error::last_os_error() }
}

impl OverlayMount {
    /// A read-only view of the same tree at `target`: the upper dir becomes
    /// the top lower, with no upper or work dir, so it mounts beside the
    /// container's own mount without sharing its work dir.
    pub fn read_only_view(&self, target: &Path) -> OverlayMount {
        let upper = self.upper.strip_prefix(&self.base).unwrap_or(&self.upper).display().to_string();
        OverlayMount {
            base: self.base.clone(),
            lowers: std::iter::once(upper).chain(self.lowers.iter().cloned()).collect(),
            upper: PathBuf::new(),
            work: PathBuf::new(),
            target: target.to_owned(),
        }
    }

    fn read_only(&self) -> bool {
        self.upper.as_os_str().is_empty()
    }

    /// The option string of the classic mount(2), lowers relative to `base`.
    pub fn data_relative(&self) -> String {
        let rel = |p: &Path| p.strip_prefix(&self.base).unwrap_or(p).display().to_string();
        if self.read_only() {
            return format!("lowerdir={}", self.lowers.join(":"));
        }
        format!("lowerdir={},upperdir={},workdir={}", self.lowers.join(":"), rel(&self.upper), rel(&self.work))
    }

    /// Mount at `target`.
    pub fn mount(&self) -> Result<()> {
        if self.lowers.is_empty() {
            // No image layers (an empty image): the upper dir alone is the root.
            return bind(&self.upper, &self.target);
        }
        if self.read_only() && self.lowers.len() == 1 {
            return bind(&self.base.join(&self.lowers[0]), &self.target);
        }
        match self.mount_fsconfig() {
            Ok(()) => Ok(()),
            // ENOSYS: no new mount API; EINVAL: no `lowerdir+` (before 6.8).
            Err(Error::Io { source, .. }) if matches!(source.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) => {
                self.mount_classic()
            }
            Err(e) => Err(e),
        }
    }

    /// fsopen + one `lowerdir+` per layer + fsmount + move_mount.
    pub fn mount_fsconfig(&self) -> Result<()> {
        let mnt = self.fsmount()?;
        let target = cstr(&self.target)?;
        // SAFETY: MOVE_MOUNT_F_EMPTY_PATH (4) moves the mount fd itself to a
        // NUL-terminated target path.
        let r = unsafe { libc::syscall(libc::SYS_move_mount, mnt.0, c"".as_ptr(), libc::AT_FDCWD, target.as_ptr(), 4) };
        if r < 0 {
            return Err(last_err(&format!("move overlay to {}", self.target.display())));
        }
        Ok(())
    }

    /// The merged tree as a mount that is attached nowhere: it belongs to no
    /// mount namespace, so no one else sees it, and it goes when the fd is
    /// closed. Its root is reached through `/proc/self/fd/<fd>`. Unlike a
    /// mount in an unshared namespace, it copies no other mount, so it keeps
    /// no other container's root busy while it lives.
    pub fn detached(&self) -> Result<std::os::fd::OwnedFd> {
        let fd = if self.lowers.is_empty() {
            open_tree(&self.upper)?
        } else if self.read_only() && self.lowers.len() == 1 {
            open_tree(&self.base.join(&self.lowers[0]))?
        } else {
            self.fsmount()?
        };
        let raw = fd.0;
        std::mem::forget(fd);
        // SAFETY: `raw` came from a descriptor owned here, released above.
        Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
    }

    /// fsopen, the options, and fsmount: a detached overlay (read-only for
    /// a view).
    fn fsmount(&self) -> Result<Fd> {
        let fstype = c"overlay";
        // SAFETY: a NUL-terminated name and a flag.
        let fs = unsafe {
            libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), 1 /* FSOPEN_CLOEXEC */)
        };
        if fs < 0 {
            return Err(last_err("fsopen overlay"));
        }
        let fs = Fd(fs as i32);
        let set = |key: &std::ffi::CStr, value: &Path| -> Result<()> {
            let v = cstr(value)?;
            // SAFETY: FSCONFIG_SET_STRING (1) with NUL-terminated key and value.
            let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs.0, 1, key.as_ptr(), v.as_ptr(), 0) };
            if r < 0 {
                return Err(last_err(&format!("overlay option {} {}", key.to_string_lossy(), value.display())));
            }
            Ok(())
        };
        for l in &self.lowers {
            set(c"lowerdir+", &self.base.join(l))?;
        }
        if !self.read_only() {
            set(c"upperdir", &self.upper)?;
            set(c"workdir", &self.work)?;
        }
        // SAFETY: FSCONFIG_CMD_CREATE (6) takes no key or value.
        let r =
            unsafe { libc::syscall(libc::SYS_fsconfig, fs.0, 6, std::ptr::null::<u8>(), std::ptr::null::<u8>(), 0) };
        if r < 0 {
            return Err(last_err("create overlay"));
        }
        // MOUNT_ATTR_RDONLY (1) for a view.
        let attrs = u64::from(self.read_only());
        // SAFETY: FSMOUNT_CLOEXEC (1) and mount attributes.
        let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.0, 1, attrs) };
        if mnt < 0 {
            return Err(last_err("fsmount overlay"));
        }
        Ok(Fd(mnt as i32))
    }

    /// mount(2) with relative lowers, in a child that chdirs to `base`.
    pub fn mount_classic(&self) -> Result<()> {
        let data = CString::new(self.data_relative()).map_err(|_| Error::Invalid("overlay options".into()))?;
        if data.as_bytes().len() >= 4096 {
            return Err(Error::Invalid(format!("{} layers do not fit in one overlay mount", self.lowers.len())));
        }
        let base = cstr(&self.base)?;
        let target = cstr(&self.target)?;
        // SAFETY: the child only calls chdir, mount and _exit, which are
        // async-signal-safe, on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                let ok = libc::chdir(base.as_ptr()) == 0
                    && libc::mount(c"overlay".as_ptr(), target.as_ptr(), c"overlay".as_ptr(), 0, data.as_ptr().cast())
                        == 0;
                let code = if ok { 0 } else { *libc::__errno_location() };
                libc::_exit(code);
            }
        }
        if pid < 0 {
            return Err(last_err("fork to mount overlay"));
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            return Err(last_err("wait for the overlay mount"));
        }
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => Ok(()),
            Some(errno) => Err(Error::Io {
                what: format!("mount overlay on {}", self.target.display()),
                source: std::io::Error::from_raw_os_error(errno),
            }),
            None => Err(Error::Invalid("the overlay mount helper was killed".into())),
        }
    }

    /// Unmount the merged tree.
    pub fn unmount(&self) -> Result<()> {
        let t = cstr(&self.target)?;
        // SAFETY: NUL-terminated path.
        if unsafe { libc::umount2(t.as_ptr(), 0) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::Io { what: format!("unmount {}", self.target.display()), source: e });
            }
        }
        Ok(())
    }
}

fn bind(src: &Path, target: &Path) -> Result<()> {
    let (s, t) = (cstr(src)?, cstr(target)?);
    // SAFETY: NUL-terminated paths; no data.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    if r < 0 {
        return Err(last_err(&format!("bind {} on {}", src.display(), target.display())));
    }
    Ok(())
}

/// A detached bind mount of `src` (open_tree with OPEN_TREE_CLONE).
fn open_tree(src: &Path) -> Result<Fd> {
    let s = cstr(src)?;
    // SAFETY: a NUL-terminated path; OPEN_TREE_CLONE (1) | OPEN_TREE_CLOEXEC.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, s.as_ptr(), 1 | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_err(&format!("clone the tree of {}", src.display())));
    }
    Ok(Fd(fd as i32))
}

/// Closes on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd is owned here.
        unsafe { libc::close(self.0) };
    }
}
