//! A container's files as a whole: `docker diff`, `docker export` and
//! `docker commit`.

use std::path::Path;
use std::sync::Arc;

use berth_image::changes::Change;
use berth_image::commit::CommitOptions;
use berth_image::{ImageId, Reference};
use berth_shim_proto::Request;

use crate::model::{Container, Status};
use crate::shim::{self, ShimDir};
use crate::{Engine, Error, Result};

/// What `POST /commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub reference: Option<Reference>,
    pub comment: String,
    pub author: String,
    pub changes: Vec<String>,
    /// Freeze a running container while its layer is read (Docker's default).
    pub pause: bool,
    /// The config given with the commit, merged over the container's as
    /// moby's commit merges them: Env by name, Labels by key, ExposedPorts
    /// and Volumes as sets, Healthcheck field by field; the rest replace
    /// the container's when given.
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub healthcheck: Option<crate::model::HealthConfig>,
    pub stop_signal: Option<String>,
    pub shell: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    /// A build's step: the image's run settings exactly these, whatever
    /// the container ran with (its command was the step's).
    pub exact_run: Option<berth_image::RunConfig>,
    /// The history entry's `created_by`, in place of the container's command.
    pub created_by: Option<String>,
    /// More mount points (relative to the root) left out when empty: a
    /// build step's mounts.
    pub mount_points: Vec<std::path::PathBuf>,
}

/// What the engine and runtime create in a container's layer to mount
/// over: not the container's changes unless something was put there.
const MOUNTPOINTS: &[&str] = &["dev", "proc", "sys", "etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"];

fn join<T: Send + 'static>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| Error::Internal(e.to_string()))?
}

/// The image config's run settings from a container's and the commit's.
fn image_run_config(c: &Container, r: &CommitRequest) -> Result<berth_image::RunConfig> {
    let some_vec = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let some_str = |s: &String| (!s.is_empty()).then(|| s.clone());
    let set = |given: &[String], own: &[String]| -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
        let all: std::collections::BTreeMap<String, serde_json::Value> =
            given.iter().chain(own).map(|k| (k.clone(), serde_json::json!({}))).collect();
        (!all.is_empty()).then_some(all)
    };
    let k = &c.config;
    let env = match &r.env {
        Some(given) => crate::model::env_over(given, &k.env),
        None => k.env.clone(),
    };
    let mut labels = k.labels.clone();
    labels.extend(r.labels.clone().unwrap_or_default());
    // moby: an entrypoint given takes the command given with it, or none.
    let (entrypoint, cmd) = match &r.entrypoint {
        Some(e) if !e.is_empty() => (Some(e.clone()), r.cmd.clone()),
        _ => (
            r.entrypoint.clone().or_else(|| some_vec(k.entrypoint.clone())),
            r.cmd.clone().or_else(|| some_vec(k.cmd.clone())),
        ),
    };
    let own_check = k.healthcheck.as_ref().map(crate::health::to_image);
    let healthcheck = crate::health::merge(r.healthcheck.clone(), own_check.as_ref())?;
    Ok(berth_image::RunConfig {
        user: r.user.clone().or_else(|| some_str(&k.user)),
        env: some_vec(env),
        cmd,
        entrypoint: entrypoint.filter(|e| !e.is_empty()),
        working_dir: r.working_dir.clone().or_else(|| some_str(&k.working_dir)),
        exposed_ports: set(&r.exposed_ports, &k.exposed_ports),
        volumes: set(&r.volumes, &k.volumes),
        labels: (!labels.is_empty()).then_some(labels),
        stop_signal: r.stop_signal.clone().or_else(|| k.stop_signal.clone()),
        healthcheck: healthcheck.as_ref().map(crate::health::to_image),
        shell: r.shell.clone().or_else(|| some_vec(k.shell.clone())),
        on_build: r.on_build.clone().or_else(|| some_vec(k.on_build.clone())),
        ..Default::default()
    })
}

/// The changes less the mount points made for the container, and less
/// the directories that changed only by holding them (as Docker's init
/// layer keeps both out of sight).
fn without_mountpoints(all: Vec<Change>, upper: &Path, skip: &[&Path]) -> Vec<Change> {
    use berth_image::changes::{is_skipped_mountpoint, ChangeKind};
    let mut hidden_parents = std::collections::BTreeSet::new();
    let kept: Vec<Change> = all
        .into_iter()
        .filter(|c| {
            let rel = Path::new(c.path.trim_start_matches('/'));
            let hide = c.kind == ChangeKind::Added && is_skipped_mountpoint(&upper.join(rel), rel, skip);
            if hide {
                hidden_parents.extend(Path::new(&c.path).ancestors().skip(1).map(|a| a.display().to_string()));
            }
            !hide
        })
        .collect();
    let below = |dir: &str| {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        kept.iter().any(|o| o.path.starts_with(&prefix))
    };
    kept.iter()
        .filter(|c| !(c.kind == ChangeKind::Modified && hidden_parents.contains(&c.path) && !below(&c.path)))
        .cloned()
        .collect()
}

/// Bytes of regular files and symlinks under `dir`, on its own file
/// system, each inode counted once.
fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else { return 0 };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                if m.dev() == top.dev() {
                    stack.push(e.path());
                }
            } else if (m.is_file() || m.file_type().is_symlink()) && seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}

impl Engine {
    /// A container's size as `docker ps -s` shows it: its own layer, and
    /// that plus its image's layers.
    pub async fn sizes(&self, c: &Container) -> Result<(u64, u64)> {
        if c.pod_sandbox && c.rw_layer.is_none() {
            return Ok((0, 0));
        }
        let rw = crate::containers::layer_of(c)?;
        let images = self.images.clone();
        join(
            tokio::task::spawn_blocking(move || {
                let upper = images.layers.mount_of(&rw)?.upper;
                let own = tree_size(&upper);
                let image: u64 = match &rw.parent {
                    Some(top) => images.layers.chain(top)?.iter().map(|l| l.size).sum(),
                    None => 0,
                };
                Ok((own, own + image))
            })
            .await,
        )
    }

    /// `GET /containers/{id}/changes`.
    pub async fn changes(&self, key: &str) -> Result<Vec<Change>> {
        let c = self.inspect(key)?;
        let m = self.images.layers.mount_of(&crate::containers::layer_of(&c)?)?;
        let lowers: Vec<std::path::PathBuf> = m.lowers.iter().map(|l| m.base.join(l)).collect();
        join(
            tokio::task::spawn_blocking(move || {
                let skip: Vec<&Path> = MOUNTPOINTS.iter().map(Path::new).collect();
                let all = berth_image::changes::changes(&m.upper, &lowers)?;
                Ok(without_mountpoints(all, &m.upper, &skip))
            })
            .await,
        )
    }

    /// `GET /containers/{id}/export`: the merged root as one tar, written
    /// to `w` on a blocking thread.
    pub async fn export(&self, key: &str, w: impl std::io::Write + Send + 'static) -> Result<()> {
        let c = self.inspect(key)?;
        let rw = crate::containers::layer_of(&c)?;
        let images = self.images.clone();
        join(tokio::task::spawn_blocking(move || Ok(berth_image::rootfs::export(&images, &rw, w)?)).await)
    }

    /// `POST /commit`: the new image's id.
    pub async fn commit(self: &Arc<Self>, key: &str, r: CommitRequest) -> Result<ImageId> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        let c = e.rec.lock().map_err(|_| Error::Internal("record poisoned".into()))?.clone();
        let rw = crate::containers::layer_of(&c)?;
        let base = if c.image_id.is_empty() { None } else { Some(self.images.resolve(&c.image_id)?) };
        let opts = CommitOptions {
            run: match &r.exact_run {
                Some(run) => run.clone(),
                None => image_run_config(&c, &r)?,
            },
            changes: r.changes.clone(),
            comment: r.comment.clone(),
            author: r.author.clone(),
            created_by: r
                .created_by
                .clone()
                .unwrap_or_else(|| c.path.clone() + &c.args.iter().map(|a| format!(" {a}")).collect::<String>()),
            tag: r.reference.clone(),
            skip: MOUNTPOINTS.iter().map(std::path::PathBuf::from).chain(r.mount_points.iter().cloned()).collect(),
        };
        let sock = ShimDir::new(&self.cfg.exec_root, &c.id).socket();
        let mut freeze = false;
        if r.pause && c.state.status == Status::Running {
            match shim::call(&sock, &Request::Pause).await {
                Ok(_) => freeze = true,
                // It exited meanwhile: nothing runs to pause, and its layer
                // is committed as it was left.
                Err(_) if !e.rec.lock().map(|r| r.state.status == Status::Running).unwrap_or(false) => {}
                Err(_) if sock_gone(&sock) => {}
                Err(err) => return Err(err),
            }
        }
        let images = self.images.clone();
        let made = join(
            tokio::task::spawn_blocking(move || Ok(berth_image::commit::commit(&images, &rw, base.as_ref(), &opts)?))
                .await,
        );
        if freeze {
            let _ = shim::call(&sock, &Request::Resume).await;
        }
        let rec = made?;
        self.event_with(&c, "commit", [("comment", r.comment.clone())]);
        Ok(rec.id)
    }
}

/// A shim that is gone (its socket removed or refusing): its container has
/// exited, whatever the record says yet.
fn sock_gone(sock: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(sock).is_err()
}
