//! `docker cp`: a container's files read and written through the archive
//! API. A running container's root is its live mount; a stopped one's is
//! mounted for the call alone, in a thread with a private mount namespace.
//! Paths resolve inside the root from fds (berth-image's copy module), so
//! the container's symlinks cannot point a copy at the host. A path a bind
//! or volume holds is copied from or to that mount's host directory, as
//! the container sees it, rather than the root under it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_image::copy::PathStat;

use crate::containers::is_mountpoint;
use crate::error::{Error, Result};
use crate::model::{Container, MountKind};
use crate::Engine;

/// Where a copy at a container's path happens when a bind or volume of
/// its holds that path: the mount's host directory, the path inside it,
/// and the name the mount's own directory has inside the container.
struct InMount {
    root: PathBuf,
    path: String,
    name: Option<String>,
    rw: bool,
}

fn mount_holding(c: &Container, path: &str) -> Option<InMount> {
    let clean = crate::mounts::clean_path(&format!("/{path}"));
    // A file mounted over a path (a file bind, or the /etc files the engine
    // writes): the file itself, in its host directory, named as inside.
    let file_binds = c
        .mount_points
        .iter()
        .filter(|m| m.kind == MountKind::Bind)
        .map(|m| (m.destination.as_str(), m.source.as_str(), m.rw))
        .chain([
            ("/etc/hostname", c.hostname_path.as_str(), true),
            ("/etc/hosts", c.hosts_path.as_str(), true),
            ("/etc/resolv.conf", c.resolv_conf_path.as_str(), true),
        ]);
    for (dest, source, rw) in file_binds {
        let src = Path::new(source);
        if crate::mounts::clean_path(dest) != clean || !src.is_file() {
            continue;
        }
        let (Some(dir), Some(file)) = (src.parent(), src.file_name()) else { continue };
        let name = dest.rsplit('/').next().map(str::to_owned);
        return Some(InMount { root: dir.to_owned(), path: format!("/{}", file.to_string_lossy()), name, rw });
    }
    let m = c
        .mount_points
        .iter()
        .filter(|m| m.kind != MountKind::Tmpfs && !m.source.is_empty())
        .filter(|m| clean == m.destination || clean.starts_with(&format!("{}/", m.destination)))
        .max_by_key(|m| m.destination.len())?;
    let rest = clean[m.destination.len()..].trim_start_matches('/');
    let suffix = if path.ends_with("/.") { "/." } else { "" };
    let name = rest.is_empty().then(|| m.destination.rsplit('/').next().unwrap_or_default().to_owned());
    Some(InMount { root: PathBuf::from(&m.source), path: format!("/{rest}{suffix}"), name, rw: m.rw })
}

/// Docker's "Could not find the file X in container Y": the image layer's
/// copy knows the path, the engine the container.
fn name_container(e: Error, key: &str) -> Error {
    match e {
        Error::Image(berth_image::Error::NotFound(m)) if m.ends_with(" in container") => {
            Error::NotFound(format!("{m} {key}"))
        }
        other => other,
    }
}

impl Engine {
    /// Runs `f` on the container's merged root, in a blocking thread.
    async fn with_root<T: Send + 'static>(
        &self,
        c: &Container,
        writable: bool,
        f: impl FnOnce(&Path) -> berth_image::Result<T> + Send + 'static,
    ) -> Result<T> {
        let rw = crate::containers::layer_of(c)?;
        let images = self.images.clone();
        let r = tokio::task::spawn_blocking(move || {
            let m = images.layers.mount_of(&rw)?;
            if is_mountpoint(&m.target) {
                f(&m.target)
            } else {
                berth_image::rootfs::with_view(&images, &rw, writable, f)
            }
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(r?)
    }

    /// Runs `f` on the host directory of a mount, in a blocking thread.
    async fn in_mount<T: Send + 'static>(
        m: InMount,
        f: impl FnOnce(&Path, &str, Option<&str>) -> berth_image::Result<T> + Send + 'static,
    ) -> Result<T> {
        let r = tokio::task::spawn_blocking(move || f(&m.root, &m.path, m.name.as_deref()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(r?)
    }

    /// `HEAD /containers/{id}/archive`.
    pub async fn archive_stat(&self, key: &str, path: &str) -> Result<PathStat> {
        self.archive_stat_in(key, path).await.map_err(|e| name_container(e, key))
    }

    async fn archive_stat_in(&self, key: &str, path: &str) -> Result<PathStat> {
        let c = self.inspect(key)?;
        if let Some(m) = mount_holding(&c, path) {
            return Self::in_mount(m, |root, p, name| {
                let mut st = berth_image::copy::stat(root, p)?;
                if let Some(n) = name {
                    n.clone_into(&mut st.name);
                }
                Ok(st)
            })
            .await;
        }
        let path = path.to_owned();
        self.with_root(&c, false, move |root| berth_image::copy::stat(root, &path)).await
    }

    /// `GET /containers/{id}/archive`: `path` as a tar into `w`.
    pub async fn archive_get(&self, key: &str, path: &str, w: impl Write + Send + 'static) -> Result<PathStat> {
        self.archive_get_in(key, path, w).await.map_err(|e| name_container(e, key))
    }

    async fn archive_get_in(&self, key: &str, path: &str, w: impl Write + Send + 'static) -> Result<PathStat> {
        let c = self.inspect(key)?;
        if let Some(m) = mount_holding(&c, path) {
            return Self::in_mount(m, |root, p, name| berth_image::copy::archive_as(root, p, name, w)).await;
        }
        let path = path.to_owned();
        self.with_root(&c, false, move |root| berth_image::copy::archive(root, &path, w)).await
    }

    /// `PUT /containers/{id}/archive`: the tar in `r` extracted into the
    /// directory `path`.
    pub async fn archive_put(
        &self,
        key: &str,
        path: &str,
        r: impl Read + Send + 'static,
        keep_kinds: bool,
    ) -> Result<()> {
        self.archive_put_in(key, path, r, keep_kinds).await.map_err(|e| name_container(e, key))
    }

    async fn archive_put_in(
        &self,
        key: &str,
        path: &str,
        r: impl Read + Send + 'static,
        keep_kinds: bool,
    ) -> Result<()> {
        let c = self.inspect(key)?;
        if let Some(m) = mount_holding(&c, path) {
            if !m.rw {
                return Err(Error::Invalid("mounted volume is marked read-only".into()));
            }
            return Self::in_mount(m, move |root, p, _| berth_image::copy::extract(root, p, r, keep_kinds).map(|_| ()))
                .await;
        }
        if c.host.readonly_rootfs {
            return Err(Error::Invalid("container rootfs is marked read-only".into()));
        }
        let path = path.to_owned();
        self.with_root(&c, true, move |root| berth_image::copy::extract(root, &path, r, keep_kinds).map(|_| ())).await
    }
}
