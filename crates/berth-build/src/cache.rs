//! The build cache on disk, as `docker system df` and `docker builder
//! prune` see it: each step's record (`<data-root>/build-cache/<key>`,
//! the id of the image the step made; the image itself is counted among
//! the images), and each cache mount (`<data-root>/build-cache-mounts/
//! <id>`, a directory RUN steps mount), with its size and whether a step
//! has it mounted now.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Cache mounts mounted by a running step, by directory name.
static IN_USE: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Mark cache mount `name` used until the guard is dropped.
pub fn use_mount(name: &str) -> InUse {
    if let Ok(mut m) = IN_USE.lock() {
        *m.get_or_insert_with(HashMap::new).entry(name.to_owned()).or_default() += 1;
    }
    InUse(name.to_owned())
}

/// A cache mount in use, released when dropped.
#[derive(Debug)]
pub struct InUse(String);

impl Drop for InUse {
    fn drop(&mut self) {
        if let Ok(mut m) = IN_USE.lock() {
            if let Some(map) = m.as_mut() {
                if let Some(n) = map.get_mut(&self.0) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&self.0);
                    }
                }
            }
        }
    }
}

fn in_use(name: &str) -> bool {
    IN_USE.lock().ok().and_then(|m| m.as_ref().map(|m| m.contains_key(name))).unwrap_or(false)
}

/// One entry of the cache.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    /// `regular` (a step's record) or `exec.cachemount`.
    pub kind: &'static str,
    pub size: u64,
    pub in_use: bool,
    pub created: SystemTime,
    pub last_used: SystemTime,
    /// The image a step's record names, or what a mount is.
    pub description: String,
}

pub fn records_dir(data_root: &Path) -> PathBuf {
    data_root.join("build-cache")
}

pub fn mounts_dir(data_root: &Path) -> PathBuf {
    data_root.join("build-cache-mounts")
}

/// Bytes under `p`, its links not followed.
fn size_of(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum()).unwrap_or(0)
}

/// Every entry of the cache.
pub fn list(data_root: &Path) -> Vec<Entry> {
    let mut out = vec![];
    for (dir, kind) in [(records_dir(data_root), "regular"), (mounts_dir(data_root), "exec.cachemount")] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            let created = md.created().or_else(|_| md.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            let last_used = md.accessed().unwrap_or(created).max(md.modified().unwrap_or(created));
            let (size, description) = if kind == "regular" {
                (md.len(), std::fs::read_to_string(e.path()).unwrap_or_default().trim().to_owned())
            } else {
                (size_of(&e.path()), "a RUN --mount=type=cache directory".to_owned())
            };
            out.push(Entry {
                in_use: kind != "regular" && in_use(&name),
                id: name,
                kind,
                size,
                created,
                last_used,
                description,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// What a prune leaves alone.
#[derive(Debug, Clone, Default)]
pub struct Prune {
    /// Records of images still here go too (`--all`); otherwise only those
    /// whose image is gone.
    pub all: bool,
    /// Only entries last used before this.
    pub until: Option<SystemTime>,
    /// Only entries of these kinds, when given.
    pub kinds: Vec<String>,
}

/// Remove what `p` selects, never a mount in use; the ids removed and
/// the bytes freed. `image_exists` says whether a record's image is here.
pub fn prune(data_root: &Path, p: &Prune, image_exists: impl Fn(&str) -> bool) -> std::io::Result<(Vec<String>, u64)> {
    let mut ids = vec![];
    let mut freed = 0;
    for e in list(data_root) {
        if e.in_use
            || p.until.is_some_and(|u| e.last_used >= u)
            || (!p.kinds.is_empty() && !p.kinds.iter().any(|k| k == e.kind))
        {
            continue;
        }
        if e.kind == "regular" && !p.all && image_exists(&e.description) {
            continue;
        }
        let path = if e.kind == "regular" { records_dir(data_root) } else { mounts_dir(data_root) }.join(&e.id);
        let removed = if e.kind == "regular" {
            std::fs::remove_file(&path)
        } else {
            // Out of its place first, so that no step mounts it half removed.
            let aside = mounts_dir(data_root).join(format!(".pruned-{}", e.id));
            std::fs::rename(&path, &aside).and_then(|()| std::fs::remove_dir_all(&aside))
        };
        match removed {
            Ok(()) => {
                freed += e.size;
                ids.push(e.id);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok((ids, freed))
}
