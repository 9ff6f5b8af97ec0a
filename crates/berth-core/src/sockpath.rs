//! Unix socket paths longer than `sun_path` (108 bytes): they are reached
//! through `/proc/self/fd/<dir>/<name>`, with the directory held open, so
//! any exec root works however deep it is.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The longest path `sun_path` holds, with its terminating NUL.
const SUN_PATH_MAX: usize = 107;

/// A path to use for `bind` or `connect`, valid while this lives.
#[derive(Debug)]
pub struct SockPath {
    path: PathBuf,
    _dir: Option<File>,
}

impl SockPath {
    /// `path` itself when it fits, else a short alias through an open
    /// descriptor of its directory.
    pub fn new(path: &Path) -> std::io::Result<SockPath> {
        SockPath::with_proc(path, "/proc/self/fd".into())
    }

    /// As `new`, with an alias that the caller's children can use too
    /// (through `/proc/<pid>`, not `/proc/self`).
    pub fn for_children(path: &Path) -> std::io::Result<SockPath> {
        SockPath::with_proc(path, format!("/proc/{}/fd", std::process::id()).into())
    }

    fn with_proc(path: &Path, fds: PathBuf) -> std::io::Result<SockPath> {
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(SockPath { path: path.to_owned(), _dir: None });
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "socket path has no directory"));
        };
        let mut o = std::fs::OpenOptions::new();
        o.read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
        let d = o.open(dir)?;
        let short = fds.join(std::os::fd::AsRawFd::as_raw_fd(&d).to_string()).join(name);
        if short.as_os_str().len() > SUN_PATH_MAX {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "socket name too long"));
        }
        Ok(SockPath { path: short, _dir: Some(d) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `.<name>`: how the directories a bind makes beside `name` begin.
fn hidden_prefix(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut p = std::ffi::OsString::from(".");
    p.push(name);
    p
}

/// Bind a listening socket at `path` that no one but root, and group `gid`
/// when given, can ever reach, under any umask: it is bound inside a new
/// directory of mode 0700, given mode 0660 and its group there, and only
/// then renamed into place (replacing a stale socket). Nothing is chmodded
/// or chowned through a symlink: the directory is new and root's alone.
pub fn bind_private(path: &Path, gid: Option<u32>) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "socket path has no directory"));
    };
    let mut hidden = hidden_prefix(name);
    hidden.push(format!(".bind{}", std::process::id()));
    let private = dir.join(hidden);
    // Leftovers of earlier starts go (a daemon killed mid-bind leaves its
    // directory); remove_dir_all removes a symlink there, never what it
    // points to. mkdir then refuses anything that came back in between.
    let mut prefix = hidden_prefix(name);
    prefix.push(".bind");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().as_encoded_bytes().starts_with(prefix.as_encoded_bytes()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let inside = private.join(name);
        let at = SockPath::new(&inside)?;
        let listener = std::os::unix::net::UnixListener::bind(at.path())?;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o660))?;
        if let Some(g) = gid {
            std::os::unix::fs::lchown(&inside, None, Some(g))?;
        }
        std::fs::rename(&inside, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_private_socket_appears_with_its_final_mode_only() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("berth-sockpriv-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let sock = base.join("api.sock");
        std::fs::write(&sock, b"stale").unwrap();
        // SAFETY: umask has no preconditions; the old mask is put back.
        let old = unsafe { libc::umask(0) };
        let l = bind_private(&sock, Some(0));
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let l = l.unwrap();
        let m = std::fs::symlink_metadata(&sock).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
        let _c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let _ = l.accept().unwrap();
        let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("api.sock")]);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_deep_socket_is_bound_and_reached_through_its_directory() {
        let base = std::env::temp_dir().join(format!("berth-sockpath-{}", std::process::id()));
        let deep = base.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("shim.sock");
        assert!(sock.as_os_str().len() > SUN_PATH_MAX);
        let b = SockPath::new(&sock).unwrap();
        let l = std::os::unix::net::UnixListener::bind(b.path()).unwrap();
        assert!(sock.exists(), "bound at the real path");
        let c = SockPath::new(&sock).unwrap();
        let _s = std::os::unix::net::UnixStream::connect(c.path()).unwrap();
        let _ = l.accept().unwrap();
        let short = SockPath::new(Path::new("/tmp/x.sock")).unwrap();
        assert_eq!(short.path(), Path::new("/tmp/x.sock"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
