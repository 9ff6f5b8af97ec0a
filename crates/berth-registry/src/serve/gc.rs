//! `berth-registry gc`: remove the blobs no manifest of any repository
//! names, and uploads left unfinished.
//!
//! It runs with the server stopped: `serve` holds `<root>/lock` while it
//! runs and `gc` takes the same lock, so a blob pushed before its manifest
//! cannot be taken for garbage. With `delete_untagged`, manifests no tag
//! reaches (through an index, or as a referrer of one that is reached)
//! are deleted first.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_image::Digest;

use super::store::Store;
use crate::manifest::{self, Document};

/// Take `<root>/lock`, or say who has it.
pub fn lock(root: &Path, doing: &str) -> Result<File, String> {
    let path = root.join("lock");
    let f = berth_core::perm::create_file(&path, berth_core::perm::RECORD, false)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(format!(
            "{} is in use by another berth-registry (being served, or collected); it cannot be {doing} now",
            root.display()
        ));
    }
    Ok(f)
}

/// What a collection is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Report, change nothing.
    pub dry_run: bool,
    /// Delete manifests no tag reaches.
    pub delete_untagged: bool,
    /// Uploads untouched this long are dropped.
    pub upload_age: Duration,
}

/// What a collection removed (or would remove, on a dry run).
#[derive(Debug, Default)]
pub struct Report {
    pub manifests: Vec<(String, Digest)>,
    pub blobs: Vec<Digest>,
    pub bytes: u64,
    pub uploads: Vec<String>,
}

/// The digests a manifest or index refers to: its config and layers
/// (foreign layers are not here), or its manifests.
fn references(store: &Store, d: &Digest, media: &str) -> (Vec<Digest>, Option<Digest>) {
    let Ok(body) = store.read_blob(d) else { return (vec![], None) };
    let subject = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["subject"]["digest"].as_str().and_then(|s| s.parse().ok()));
    let refs = match manifest::parse(media, &body) {
        Ok(Document::Manifest(m)) => std::iter::once(m.config())
            .chain(m.layers().iter().filter(|l| l.urls().as_ref().is_none_or(|u| u.is_empty())))
            .filter_map(|x| x.digest().to_string().parse().ok())
            .collect(),
        Ok(Document::Index(i)) => i.manifests().iter().filter_map(|x| x.digest().to_string().parse().ok()).collect(),
        Err(_) => vec![],
    };
    (refs, subject)
}

/// Collect the garbage of the registry at `root`.
pub fn collect(root: &Path, opts: &Options) -> Result<Report, String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let _lock = lock(root, "collected")?;
    let mut report = Report::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    for repo in store.repositories() {
        let revisions: HashMap<Digest, String> = store.revisions(&repo).into_iter().collect();
        let parsed: HashMap<&Digest, (Vec<Digest>, Option<Digest>)> =
            revisions.iter().map(|(d, m)| (d, references(&store, d, m))).collect();
        let mut keep: HashSet<Digest> = if opts.delete_untagged {
            store.tagged(&repo).into_iter().collect()
        } else {
            revisions.keys().cloned().collect()
        };
        // What a kept index names, and the referrers of what is kept.
        loop {
            let before = keep.len();
            for (d, (refs, subject)) in &parsed {
                if keep.contains(*d) {
                    keep.extend(refs.iter().filter(|r| revisions.contains_key(*r)).cloned());
                } else if subject.as_ref().is_some_and(|s| keep.contains(s)) {
                    keep.insert((*d).clone());
                }
            }
            if keep.len() == before {
                break;
            }
        }
        for d in revisions.keys() {
            if keep.contains(d) {
                marked.insert(d.clone());
                if let Some((refs, _)) = parsed.get(d) {
                    marked.extend(refs.iter().cloned());
                }
            } else {
                if !opts.dry_run {
                    store.delete_manifest(&repo, d).map_err(|e| e.to_string())?;
                }
                report.manifests.push((repo.clone(), d.clone()));
            }
        }
    }
    let all = store.blobs().list().map_err(|e| e.to_string())?;
    for d in all.into_iter().filter(|d| !marked.contains(d)) {
        report.bytes += store.blobs().size(&d).unwrap_or(0);
        report.blobs.push(d);
    }
    if !opts.dry_run {
        let keep: HashSet<Digest> = marked;
        store.blobs().prune(&keep).map_err(|e| e.to_string())?;
        // Links to what is gone go too.
        for repo in store.repositories() {
            for d in store.layers(&repo) {
                if !keep.contains(&d) {
                    store.unlink_blob(&repo, &d).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let now = SystemTime::now();
    for (id, changed) in store.uploads() {
        if now.duration_since(changed).unwrap_or_default() >= opts.upload_age {
            if !opts.dry_run {
                store.cancel_upload(&id).map_err(|e| e.to_string())?;
            }
            report.uploads.push(id);
        }
    }
    Ok(report)
}
