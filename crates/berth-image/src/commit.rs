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
    let mut config = base_config(store, base)?;
    let upper = store.layers.mount_of(rw)?.upper;
    let skip: Vec<&std::path::Path> = opts.skip.iter().map(|p| p.as_path()).collect();
    let layer = layer_of(store, rw.parent.as_ref(), |w| changes::export_skipping(&upper, w, &skip).map(|_| ()))?;
    let author = Some(opts.author.as_str()).filter(|a| !a.is_empty());
    add_step(&mut config, &run, &opts.created_by, author, &opts.comment, Some(&layer.diff_id))?;
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    let rec = store.add_child(&bytes, base)?;
    if let Some(t) = &opts.tag {
        store.tag(t, &rec.id)?;
    }
    Ok(rec)
}

/// `base`'s config, to make a child of; a fresh one from scratch.
fn base_config(store: &ImageStore, base: Option<&ImageId>) -> Result<Value> {
    match base {
        Some(id) => serde_json::from_slice(&store.config_bytes(id)?)
            .map_err(|e| Error::Invalid(format!("image config of {id}: {e}"))),
        None => Ok(
            json!({"architecture": host_architecture(), "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
        ),
    }
}

/// One step more on `config`: `run` its settings, `author` the image's
/// (none: none), and a history entry `created_by` with its author and
/// comment; with `layer`, that layer on top, else an empty layer.
fn add_step(
    config: &mut Value,
    run: &RunConfig,
    created_by: &str,
    author: Option<&str>,
    comment: &str,
    layer: Option<&crate::digest::DiffId>,
) -> Result<()> {
    let created = berth_core::time::now_rfc3339();
    config["config"] = serde_json::to_value(run).map_err(|e| Error::Invalid(format!("run config: {e}")))?;
    config["created"] = json!(created);
    let mut h = json!({"created": created, "created_by": created_by});
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
    if !comment.is_empty() {
        h["comment"] = json!(comment);
    }
    match layer {
        Some(d) => {
            let diff_ids = config.pointer_mut("/rootfs/diff_ids").and_then(Value::as_array_mut);
            let diff_ids = diff_ids.ok_or_else(|| Error::Invalid("image config has no rootfs.diff_ids".into()))?;
            diff_ids.push(json!(d));
        }
        None => h["empty_layer"] = json!(true),
    }
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(hist) => hist.push(h),
        None => config["history"] = json!([h]),
    }
    Ok(())
}

/// A layer over `parent` of the tar `write` makes, streamed through a
/// pipe from a writer thread. A tar cut short by the writer's failure
/// leaves no layer.
pub fn layer_of(
    store: &ImageStore,
    parent: Option<&crate::digest::ChainId>,
    write: impl FnOnce(File) -> Result<()> + Send,
) -> Result<crate::layers::Layer> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::Io { what: "pipe".into(), source: e.into() })?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || write(File::from(w)));
        let made = store.create_layer(File::from(r), parent);
        let wrote = writer.join().unwrap_or_else(|_| Err(Error::Invalid("the layer writer panicked".into())));
        match (made, wrote) {
            (Ok(l), Ok(())) => Ok(l),
            (Ok(_), Err(e)) => {
                // The store took a cut-short tar for a whole one: drop that
                // layer, which no image uses.
                let _ = store.collect_layers();
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    })
}

/// The tar `write` makes, unpacked as a layer of no parent yet
/// ([`with_staged`] gives it one) and no blob (see
/// `LayerStore::stage_exported`). A tar cut short by the writer's
/// failure is dropped.
pub fn staged_of(store: &ImageStore, write: impl FnOnce(File) -> Result<()> + Send) -> Result<crate::layers::Staged> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::Io { what: "pipe".into(), source: e.into() })?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || write(File::from(w)));
        let made = store.layers.stage_exported(File::from(r));
        let wrote = writer.join().unwrap_or_else(|_| Err(Error::Invalid("the layer writer panicked".into())));
        match (made, wrote) {
            (Ok(st), Ok(())) => Ok(st),
            (Ok(st), Err(e)) => {
                store.layers.discard(st);
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    })
}

/// A new image over `base` (none: from scratch) with one more layer, the
/// tar `write` makes: `run` its settings, one history entry `created_by`,
/// `author` the image's. What a build's COPY makes, with no container.
pub fn with_layer(
    store: &ImageStore,
    base: Option<&ImageId>,
    run: &RunConfig,
    created_by: &str,
    author: Option<&str>,
    write: impl FnOnce(File) -> Result<()> + Send,
) -> Result<ImageRecord> {
    let staged = staged_of(store, write)?;
    with_staged(store, base, staged, run, created_by, author)
}

/// [`with_layer`] of a layer staged before: registered over `base`'s top
/// layer, then the image made.
pub fn with_staged(
    store: &ImageStore,
    base: Option<&ImageId>,
    staged: crate::layers::Staged,
    run: &RunConfig,
    created_by: &str,
    author: Option<&str>,
) -> Result<ImageRecord> {
    let mut config = match base_config(store, base) {
        Ok(c) => c,
        Err(e) => {
            store.layers.discard(staged);
            return Err(e);
        }
    };
    let top = match base.map(|id| store.get(id)) {
        Some(Ok(r)) => r.and_then(|r| r.top_layer),
        Some(Err(e)) => {
            store.layers.discard(staged);
            return Err(e);
        }
        None => None,
    };
    let layer = store.layers.register(staged, top.as_ref())?;
    add_step(&mut config, run, created_by, author, "", Some(&layer.diff_id))?;
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    store.add_child(&bytes, base)
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
    let mut config = base_config(store, base)?;
    add_step(&mut config, run, created_by, author, "", None)?;
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

/// `--cache-from`: the image of a build step taken from `source`'s
/// history, as Docker's classic builder takes it. The step is one whose
/// history goes on from `parent`'s (equal entries and layers so far) with
/// an entry made by `created_by`. When that entry is `source`'s last, the
/// step's image is `source` itself; otherwise it is `parent` with that
/// entry's layer and history entry, and `run` as its settings. `None`
/// when `source` does not go on from `parent` that way.
pub fn from_history(
    store: &ImageStore,
    parent: Option<&ImageId>,
    source: &ImageId,
    created_by: &str,
    run: &RunConfig,
) -> Result<Option<ImageId>> {
    let read = |id: &ImageId| -> Result<Value> {
        serde_json::from_slice(&store.config_bytes(id)?)
            .map_err(|e| Error::Invalid(format!("image config of {id}: {e}")))
    };
    let list = |v: &Value, k: &str| -> Vec<Value> { v.get(k).and_then(Value::as_array).cloned().unwrap_or_default() };
    let src = read(source)?;
    let (src_hist, src_layers) = (list(&src, "history"), list(&src["rootfs"], "diff_ids"));
    let base = match parent {
        Some(p) => Some(read(p)?),
        None => None,
    };
    let (hist, layers) = match &base {
        Some(b) => (list(b, "history"), list(&b["rootfs"], "diff_ids")),
        None => (vec![], vec![]),
    };
    // A parent with no history and no layer (scratch, or an image of
    // nothing) goes on into anything, as in moby's isValidParent.
    let fresh = hist.is_empty() && layers.is_empty();
    if !fresh
        && (hist.len() >= src_hist.len()
            || layers.len() > src_layers.len()
            || hist.iter().zip(&src_hist).any(|(a, b)| a != b)
            || layers.iter().zip(&src_layers).any(|(a, b)| a != b))
    {
        return Ok(None);
    }
    let n = if fresh { 0 } else { hist.len() };
    let Some(entry) = src_hist.get(n) else { return Ok(None) };
    if entry.get("created_by").and_then(Value::as_str) != Some(created_by) {
        return Ok(None);
    }
    if n + 1 == src_hist.len() {
        return Ok(Some(source.clone()));
    }
    let empty = |h: &Value| h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
    let mut diff_ids = if fresh { vec![] } else { layers };
    if !empty(entry) {
        // The entry's layer: as many layers precede it as entries with one.
        let at = src_hist[..n].iter().filter(|h| !empty(h)).count();
        let Some(layer) = src_layers.get(at) else { return Ok(None) };
        if diff_ids.len() != at {
            return Ok(None);
        }
        diff_ids.push(layer.clone());
    }
    let mut config = base.unwrap_or_else(|| json!({}));
    config["architecture"] = src.get("architecture").cloned().unwrap_or_else(|| json!(host_architecture()));
    config["os"] = src.get("os").cloned().unwrap_or_else(|| json!("linux"));
    config["config"] = serde_json::to_value(run).map_err(|e| Error::Invalid(format!("run config: {e}")))?;
    config["created"] = entry.get("created").cloned().unwrap_or(Value::Null);
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let mut history = if fresh { vec![] } else { hist };
    history.push(entry.clone());
    config["history"] = Value::Array(history);
    match (config.as_object_mut(), src.get("author")) {
        (Some(o), Some(a)) => {
            o.insert("author".into(), a.clone());
        }
        (Some(o), None) => {
            o.remove("author");
        }
        (None, _) => {}
    }
    let bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
    Ok(Some(store.add_child(&bytes, parent)?.id))
}
