//! Whole root file systems in and out: `docker import` (a tar of a root
//! file system becomes a one-layer image, with config changes) and `docker
//! export` (a container's merged root as one tar).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::changes;
use crate::config::{host_architecture, RunConfig};
use crate::error::{Error, Result};
use crate::images::{ImageRecord, ImageStore};
use crate::instruction;
use crate::layers::RwLayer;
use crate::reference::Reference;

/// What `docker import` takes beside the tar.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dockerfile instructions applied to an empty run config.
    pub changes: Vec<String>,
    /// The history comment; `Imported from <source>` when none.
    pub message: Option<String>,
    /// Where the tar came from (`-` for a stream, or a URL or path).
    pub source: String,
    pub tag: Option<Reference>,
}

/// Make a one-layer image of the root file system tar `src` (plain, gzip
/// or zstd). The changes are checked before anything is stored.
pub fn import(store: &ImageStore, src: impl Read, opts: &ImportOptions) -> Result<ImageRecord> {
    let mut run = RunConfig::default();
    instruction::apply(&mut run, &opts.changes)?;
    let layer = store.create_layer(src, None)?;
    let created = berth_core::time::now_rfc3339();
    let source = if opts.source.is_empty() { "-" } else { opts.source.as_str() };
    let comment = opts.message.clone().unwrap_or_else(|| format!("Imported from {source}"));
    let config = json!({
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": run,
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        "history": [{ "created": created, "comment": comment }],
    });
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    let rec = store.add(&bytes)?;
    if let Some(t) = &opts.tag {
        store.tag(t, &rec.id)?;
    }
    Ok(rec)
}

static VIEW: AtomicU64 = AtomicU64::new(0);

/// Write the merged root of a container layer to `w` as a tar.
///
/// The tree is read through a read-only overlay mounted in a mount
/// namespace of a thread of its own: it does not disturb a running
/// container's mount, and when the process dies mid-export the namespace
/// and its mount go with it.
pub fn export(store: &ImageStore, rw: &RwLayer, w: impl Write + Send) -> Result<()> {
    with_view(store, rw, false, |root| changes::export_tree(root, w).map(|_| ()))
}

/// Runs `f` on the merged root of `rw` (read-only unless `writable`),
/// mounted where no one else sees it and so that it cannot outlive `f`.
/// For a container that is not running; a running one's root is mounted.
///
/// The mount is a detached one (the new mount API), reached through its
/// descriptor. Where the kernel has no such overlay (before 6.8), it is
/// mounted in a thread's private mount namespace instead; that namespace
/// holds a copy of every mount there is while it lives, other containers'
/// roots included, which keeps them busy for as long.
pub fn with_view<T: Send>(
    store: &ImageStore,
    rw: &RwLayer,
    writable: bool,
    f: impl FnOnce(&std::path::Path) -> Result<T> + Send,
) -> Result<T> {
    let m = store.layers.mount_of(rw)?;
    let detached = if writable { m.detached() } else { m.read_only_view(&m.target).detached() };
    match detached {
        Ok(fd) => {
            let root = std::path::PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
            return f(&root);
        }
        Err(Error::Io { source, .. }) if matches!(source.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    let dir = m.target.with_file_name(format!(".view-{}-{}", std::process::id(), VIEW.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir(&dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let view = if writable { crate::OverlayMount { target: dir.clone(), ..m } } else { m.read_only_view(&dir) };
    let done = std::thread::scope(|s| {
        s.spawn(|| {
            private_mount_namespace()?;
            view.mount()?;
            let out = f(&view.target);
            let _ = view.unmount();
            out
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("the mount thread panicked".into())))
    });
    let _ = std::fs::remove_dir(&dir);
    done
}

/// Give the calling thread a mount namespace of its own in which nothing
/// propagates back to the host.
fn private_mount_namespace() -> Result<()> {
    // SAFETY: unshare affects only the calling thread (CLONE_NEWNS implies
    // CLONE_FS, which a thread may unshare).
    if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) } < 0 {
        return Err(Error::Io { what: "unshare the mount namespace".into(), source: std::io::Error::last_os_error() });
    }
    let root = c"/";
    // SAFETY: NUL-terminated path; a propagation change takes no source or data.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(Error::Io { what: "make mounts private".into(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Run `f` on a read-only view of image `id`'s root file system (see
/// [`with_view`]), through a container layer made for it and removed after.
pub fn with_image_view<T: Send>(
    store: &ImageStore,
    id: &crate::ImageId,
    f: impl FnOnce(&std::path::Path) -> Result<T> + Send,
) -> Result<T> {
    let rec = store.get(id)?.ok_or_else(|| Error::NotFound(format!("No such image: {id}")))?;
    let rw_id = format!("view-{}-{}", std::process::id(), VIEW.fetch_add(1, Ordering::Relaxed));
    let rw = store.layers.create_rw(&rw_id, rec.top_layer.as_ref())?;
    let out = with_view(store, &rw, false, f);
    let removed = store.layers.remove_rw(&rw);
    out.and_then(|v| removed.map(|()| v))
}

/// Export the root file system of image `name`: a container layer made
/// for it, exported and removed.
pub fn export_image(store: &ImageStore, name: &str, w: impl Write + Send) -> Result<()> {
    let id = store.resolve(name)?;
    let rec = store.get(&id)?.ok_or_else(|| Error::NotFound(format!("No such image: {name}")))?;
    let rw_id = format!("export-{}-{}", std::process::id(), VIEW.fetch_add(1, Ordering::Relaxed));
    let rw = store.layers.create_rw(&rw_id, rec.top_layer.as_ref())?;
    let out = export(store, &rw, w);
    let removed = store.layers.remove_rw(&rw);
    out.and(removed)
}
