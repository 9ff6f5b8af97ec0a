//! Modes of the daemon's own directories and files, set through a
//! descriptor opened with `O_NOFOLLOW`, so that no chmod or chown ever
//! follows a symlink planted where a directory or file should be.
//!
//! The modes are Docker's: the data root, `containers/` and `overlay/` 0710,
//! the exec root 0700, records and bundle files 0600, logs 0640. No other
//! user reads a container's env or logs, browses a running root, or runs a
//! setuid binary from an image layer (the CVE-2021-41091 class).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Data root, `containers/`, `overlay/`: the owner's group may pass.
pub const SHARED_DIR: u32 = 0o710;
/// Everything else the daemon keeps to itself.
pub const PRIVATE_DIR: u32 = 0o700;
/// Records, bundle files, configs.
pub const RECORD: u32 = 0o600;
/// Container logs.
pub const LOG: u32 = 0o640;

fn open_nofollow(path: &Path, flags: i32) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(flags | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
}

fn fchmod(f: &File, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod on a descriptor this function's caller owns.
    if unsafe { libc::fchmod(f.as_raw_fd(), mode) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make `path` a directory of `mode` (its parents are made as needed, with
/// the default mode). A symlink at `path` is an error, never followed.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    // Made with the final mode, or tighter under the umask; never wider.
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let dir = open_nofollow(path, libc::O_DIRECTORY).map_err(|e| not_a_dir(path, e))?;
    fchmod(&dir, mode)
}

/// The same as [`ensure_dir`], and group `gid` given to the directory.
pub fn ensure_dir_group(path: &Path, mode: u32, gid: u32) -> io::Result<()> {
    ensure_dir(path, mode)?;
    let dir = open_nofollow(path, libc::O_DIRECTORY).map_err(|e| not_a_dir(path, e))?;
    // SAFETY: fchown on a descriptor owned here; -1 keeps the owner.
    if unsafe { libc::fchown(dir.as_raw_fd(), u32::MAX, gid) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn not_a_dir(path: &Path, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            io::Error::new(e.kind(), format!("{} is not a directory (a symlink is not followed)", path.display()))
        }
        _ => e,
    }
}

/// ext2/3/4's "top of a directory hierarchy" flag (`chattr +T`).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Ask the file system to spread the subdirectories of `dir` apart (ext4's
/// Orlov hint, `chattr +T`), for a directory whose subdirectories are
/// unrelated to each other: one per container or layer. ext4 otherwise
/// puts each new directory in its parent's block group, and every file a
/// container makes lands there beside every other container's; on a file
/// system without a journal it then skips each inode freed in the last
/// minutes, one by one, before it takes a free one, so that a busy group
/// makes each new file cost hundreds of microseconds instead of tens.
/// Spread, each container's files share a group with few others.
///
/// Returns whether the flag is set; `Ok(false)` where the file system has
/// no such hint (anything but ext2/3/4).
pub fn spread_subdirs(dir: &Path) -> io::Result<bool> {
    let d = open_nofollow(dir, libc::O_DIRECTORY).map_err(|e| not_a_dir(dir, e))?;
    // A file system without the flags answers one of these.
    let unsupported = || {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => Ok(false),
            _ => Err(e),
        }
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer given.
    if unsafe { libc::ioctl(d.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
        return unsupported();
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(true);
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer given.
    if unsafe { libc::ioctl(d.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } < 0 {
        return unsupported();
    }
    Ok(true)
}

/// Write `data` to `path` with `mode` whatever the umask, truncating a file
/// that is there (and giving it `mode`); a symlink at `path` is an error.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = create_file(path, mode, true)?;
    f.write_all(data)
}

/// Open `path` for writing (appending unless `truncate`), made with `mode`
/// when missing and given `mode` when not; a symlink is never followed.
pub fn create_file(path: &Path, mode: u32, truncate: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .append(!truncate)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    fchmod(&f, mode)?;
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("berth-perm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn subdirs_are_spread_where_the_file_system_can() {
        let d = tmp("spread");
        // SAFETY: statfs is plain data, all zeroes a valid value.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs fills the struct given.
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
        const EXT4_SUPER_MAGIC: libc::c_long = 0xEF53;
        let ext = st.f_type as libc::c_long == EXT4_SUPER_MAGIC;
        assert_eq!(spread_subdirs(&d).unwrap(), ext, "the hint is set exactly on ext2/3/4");
        assert_eq!(spread_subdirs(&d).unwrap(), ext, "and setting it again is fine");
        if ext {
            // e2fsprogs' own reading of the flags (Debian always has it).
            let out = std::process::Command::new("lsattr").arg("-d").arg(&d).output().unwrap();
            let attrs = String::from_utf8_lossy(&out.stdout);
            assert!(attrs.split_whitespace().next().unwrap_or("").contains('T'), "{attrs}");
        }
        let link = d.join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(spread_subdirs(&link).is_err(), "a symlink is not followed");
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_set_whatever_was_there() {
        let d = tmp("modes");
        let sub = d.join("a/b");
        ensure_dir(&sub, SHARED_DIR).unwrap();
        assert_eq!(mode(&sub), 0o710);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_dir(&sub, PRIVATE_DIR).unwrap();
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("rec");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_file(&f, b"new", RECORD).unwrap();
        assert_eq!((mode(&f), std::fs::read(&f).unwrap()), (0o600, b"new".to_vec()));
        let mut l = create_file(&sub.join("log"), LOG, false).unwrap();
        l.write_all(b"x").unwrap();
        assert_eq!(mode(&sub.join("log")), 0o640);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_are_never_followed() {
        let d = tmp("links");
        let target = d.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, d.join("dir")).unwrap();
        assert!(ensure_dir(&d.join("dir"), PRIVATE_DIR).is_err());
        assert_eq!(mode(&target), 0o755);
        let file = d.join("file");
        std::fs::write(&file, b"keep").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&file, d.join("rec")).unwrap();
        assert!(write_file(&d.join("rec"), b"evil", RECORD).is_err());
        assert_eq!((mode(&file), std::fs::read(&file).unwrap()), (0o644, b"keep".to_vec()));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
