//! Record writes that a crash can't tear: temp file, rename over the old one.
//! A crash at any point leaves the old record or the new one, never a torn
//! one. How much of the change survives the machine going down is chosen per
//! record by [`Durability`]. [`move_aside`] takes a directory out of its
//! place by rename, to be deleted later.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a replacement has on disk when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing is synced. For state that describes processes and dies with
    /// the machine anyway: everything under the exec root.
    Volatile,
    /// The new contents are on disk before the rename, so a crash leaves a
    /// whole record; the rename may be lost with the last moments before a
    /// power loss, and the previous record comes back. For records that are
    /// reconciled with what runs when the daemon starts (containers).
    Contents,
    /// Contents and rename are both on disk: the directory is synced too.
    /// For the image store, whose records point at each other.
    Full,
}

/// Replace `path` with `data` atomically, with file mode `mode`, as durable
/// as `d` says.
pub fn replace(path: &Path, data: &[u8], mode: u32, d: Durability) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // A temp file of its own per call: threads of one process may replace
    // the same record at once.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp{}-{n}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        if d != Durability::Volatile {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)?;
        if d == Durability::Full {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Replace `path` with `data` atomically and durably ([`Durability::Full`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace(path, data, mode, Durability::Full)
}

/// Take directory `dir` out of its place in one step by renaming it to `to`
/// (on the same file system), so that the caller can delete it later: one
/// metadata change instead of an unlink per file. Where the rename fails
/// (another file system), `dir` is deleted here. Returns the path left to
/// delete, if any; a missing `dir` is not an error.
pub fn move_aside(dir: &Path, to: &Path) -> io::Result<Option<std::path::PathBuf>> {
    match fs::rename(dir, to) {
        Ok(()) => Ok(Some(to.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => match fs::remove_dir_all(dir) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("berth-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let p = dir.join("state.json");
        write_atomic(&p, b"first, and longer", 0o600)?;
        write_atomic(&p, b"second", 0o600)?;
        assert_eq!(fs::read(&p)?, b"second");
        for d in [Durability::Volatile, Durability::Contents] {
            replace(&p, b"third, longer again", 0o600, d)?;
            assert_eq!(fs::read(&p)?, b"third, longer again");
            replace(&p, b"4th", 0o600, d)?;
            assert_eq!(fs::read(&p)?, b"4th");
        }
        assert_eq!(fs::read_dir(&dir)?.count(), 1, "no temp file left");
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn moves_a_directory_aside() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("berth-aside-{}", std::process::id()));
        fs::create_dir_all(dir.join("a/sub"))?;
        fs::write(dir.join("a/sub/f"), b"x")?;
        let to = dir.join("b");
        assert_eq!(move_aside(&dir.join("a"), &to)?, Some(to.clone()));
        assert!(!dir.join("a").exists() && to.join("sub/f").is_file());
        assert_eq!(move_aside(&dir.join("a"), &to)?, None, "a missing directory is fine");
        fs::remove_dir_all(&dir)
    }
}
