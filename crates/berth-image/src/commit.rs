//! `docker commit`: a container's writable layer becomes a new layer on
//! top of its image, with a new config and one more history entry.

use std::fs::File;

use serde_json::{json, Value};

use crate::changes;
use crate::config::{host_architecture, RunConfig};
use crate::digest::ImageId;
use crate::error::{Error, Result};
use crate::images::{ImageRecord, ImageStore};
use crate::instruction;
use crate::layers::RwLayer;
use crate::reference::Reference;

/// What the new image gets besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The container's run config, already merged with the caller's.
    pub run: RunConfig,
    /// Dockerfile instructions applied on top (`--change`).
    pub changes: Vec<String>,
    pub comment: String,
    pub author: String,
    /// The history's `created_by`: the container's command.
    pub created_by: String,
    pub tag: Option<Reference>,
    /// Mount points the runtime made in the layer, left out when empty
    /// (see `changes::export_skipping`).
    pub skip: Vec<std::path::PathBuf>,
}

/// Make an image of `base` plus the changes in `rw`. The caller keeps the
/// container still (paused or stopped) while this runs. The changes are
/// checked before anything is stored.
pub fn commit(store: &ImageStore, rw: &RwLayer, base: Option<&ImageId>, opts: &CommitOptions) -> Result<ImageRecord> {
    let mut run = opts.run.clone();
    instruction::apply(&mut run, &opts.changes)?;
    let mut config: Value = match base {
        Some(id) => serde_json::from_slice(&store.config_bytes(id)?)
            .map_err(|e| Error::Invalid(format!("image config of {id}: {e}")))?,
        None => {
            json!({"architecture": host_architecture(), "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        }
    };
    let upper = store.layers.mount_of(rw)?.upper;
    // The layer tar streams through a pipe from a writer thread.
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::Io { what: "pipe".into(), source: e.into() })?;
    let layer = std::thread::scope(|s| {
        let skip: Vec<&std::path::Path> = opts.skip.iter().map(|p| p.as_path()).collect();
        let writer = s.spawn(move || changes::export_skipping(&upper, File::from(w), &skip));
        let made = store.create_layer(File::from(r), rw.parent.as_ref());
        let wrote = writer.join().unwrap_or_else(|_| Err(Error::Invalid("the layer writer panicked".into())));
        match (made, wrote) {
            (Ok(l), Ok(_)) => Ok(l),
            (Ok(_), Err(e)) => {
                // The store took a cut-short tar for a whole one: drop that
                // layer, which no image uses.
                let _ = store.collect_layers();
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    })?;
    let created = berth_core::time::now_rfc3339();
    config["config"] = serde_json::to_value(&run).map_err(|e| Error::Invalid(format!("run config: {e}")))?;
    config["created"] = json!(created);
    if opts.author.is_empty() {
        if let Some(o) = config.as_object_mut() {
            o.remove("author");
        }
    } else {
        config["author"] = json!(opts.author);
    }
    let diff_ids = config.pointer_mut("/rootfs/diff_ids").and_then(Value::as_array_mut);
    let diff_ids = diff_ids.ok_or_else(|| Error::Invalid("image config has no rootfs.diff_ids".into()))?;
    diff_ids.push(json!(layer.diff_id));
    let mut h = json!({"created": created, "created_by": opts.created_by});
    if !opts.author.is_empty() {
        h["author"] = json!(opts.author);
    }
    if !opts.comment.is_empty() {
        h["comment"] = json!(opts.comment);
    }
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(hist) => hist.push(h),
        None => config["history"] = json!([h]),
    }
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    let rec = store.add_child(&bytes, base)?;
    if let Some(t) = &opts.tag {
        store.tag(t, &rec.id)?;
    }
    Ok(rec)
}

/// A new image over `base` (none: from scratch) with no layer of its own:
/// its run settings replaced by `run`, one history entry `created_by`
/// marked as an empty layer, `author` the image's (none: none). What a
/// build's metadata instructions make (ENV, CMD, LABEL and the rest).
pub fn config_only(
    store: &ImageStore,
    base: Option<&ImageId>,
    run: &RunConfig,
    created_by: &str,
    author: Option<&str>,
) -> Result<ImageRecord> {
    let mut config: Value = match base {
        Some(id) => serde_json::from_slice(&store.config_bytes(id)?)
            .map_err(|e| Error::Invalid(format!("image config of {id}: {e}")))?,
        None => {
            json!({"architecture": host_architecture(), "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        }
    };
    let created = berth_core::time::now_rfc3339();
    config["config"] = serde_json::to_value(run).map_err(|e| Error::Invalid(format!("run config: {e}")))?;
    config["created"] = json!(created);
    let mut h = json!({"created": created, "created_by": created_by, "empty_layer": true});
    match author {
        Some(a) => {
            config["author"] = json!(a);
            h["author"] = json!(a);
        }
        None => {
            if let Some(o) = config.as_object_mut() {
                o.remove("author");
            }
        }
    }
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(hist) => hist.push(h),
        None => config["history"] = json!([h]),
    }
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    store.add_child(&bytes, base)
}

/// An image of nothing: no layer, no history, `run` as its run settings.
/// What a build's FROM scratch gives a step that needs a container.
pub fn empty(store: &ImageStore, run: &RunConfig) -> Result<ImageRecord> {
    let config = json!({
        "architecture": host_architecture(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": serde_json::to_value(run).map_err(|e| Error::Invalid(format!("run config: {e}")))?,
    });
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    store.add_child(&bytes, None)
}
