//! `cp`: files between a container and this machine through the archive
//! API, with Docker's rules for where they land: into an existing
//! directory under their own name, else under the destination's name;
//! a source ending in `/.` copies what the directory holds.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use berth_api_types::ContainerPathStat as PathStat;
use berth_client::{Body, Client, Query};

use crate::cli::CpArgs;
use crate::{CliError, Result};

/// `container:path`, or a local path (which may hold a colon after a `/`).
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty() && !c.contains('/'))
}

fn stat(c: &Client, container: &str, path: &str) -> Result<Option<PathStat>> {
    let r = c.send("HEAD", &format!("/containers/{container}/archive"), &Query::new().add("path", path), Body::None)?;
    if r.status == 404 {
        if c.get::<serde_json::Value>(&format!("/containers/{container}/json"), &Query::new()).is_err() {
            return Err(CliError::Usage(format!("Error response from daemon: No such container: {container}")));
        }
        return Ok(None);
    }
    let header = r.header("x-docker-container-path-stat").map(str::to_owned);
    r.ok()?;
    let Some(h) = header else { return Ok(None) };
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h.as_bytes())
        .map_err(|e| CliError::Usage(format!("bad path stat from the daemon: {e}")))?;
    Ok(Some(serde_json::from_slice(&raw)?))
}

pub fn cp(c: &Client, a: CpArgs) -> Result<()> {
    match (split(&a.src), split(&a.dst)) {
        (Some(_), Some(_)) => Err(CliError::Usage("copying between containers is not supported".into())),
        (None, None) => Err(CliError::Usage("must specify at least one container source".into())),
        (Some((ctr, path)), None) => from_container(c, ctr, path, &a.dst),
        (None, Some((ctr, path))) => to_container(c, &a.src, ctr, path),
    }
}

fn from_container(c: &Client, ctr: &str, path: &str, dst: &str) -> Result<()> {
    let r = c.call("GET", &format!("/containers/{ctr}/archive"), &Query::new().add("path", path), Body::None)?;
    if dst == "-" {
        let mut o = std::io::stdout().lock();
        std::io::copy(&mut { r }, &mut o)?;
        return Ok(());
    }
    let contents = path.ends_with("/.");
    let dst = Path::new(dst);
    let src_base = Path::new(path.trim_end_matches("/.").trim_end_matches('/'))
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    // Where entries go, and the name the source's top entry takes there.
    let (into, rename): (PathBuf, Option<PathBuf>) = if contents {
        std::fs::create_dir_all(dst)?;
        (dst.to_owned(), None)
    } else if dst.is_dir() {
        (dst.to_owned(), None)
    } else {
        let parent = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(CliError::Usage(format!("destination directory {} must exist", parent.display())));
        }
        (parent.to_owned(), dst.file_name().map(PathBuf::from))
    };
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    for entry in archive.entries()? {
        let mut e = entry?;
        let name = e.path()?.into_owned();
        let rel = match &rename {
            Some(new) => match name.strip_prefix(&src_base) {
                Ok(rest) => new.join(rest),
                Err(_) => name.clone(),
            },
            None => name.clone(),
        };
        let rel: PathBuf = rel.components().filter(|c| !matches!(c, Component::CurDir)).collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(CliError::Usage(format!("the archive names {} outside the destination", name.display())));
        }
        let target = into.join(&rel);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        if e.header().entry_type().is_dir() {
            if target.is_dir() {
                continue;
            }
        } else if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&target)?;
        }
        e.unpack(&target)?;
    }
    Ok(())
}

fn to_container(c: &Client, src: &str, ctr: &str, path: &str) -> Result<()> {
    let target = stat(c, ctr, path)?;
    let (dir, name): (String, Option<String>) = match &target {
        Some(st) if st.mode & PathStat::MODE_DIR != 0 => (path.to_owned(), None),
        _ => {
            if path.ends_with('/') {
                return Err(CliError::Usage(format!("Error: destination directory {path} does not exist")));
            }
            let p = Path::new(path);
            let parent = p.parent().map(|x| x.display().to_string()).filter(|x| !x.is_empty()).unwrap_or("/".into());
            let base = target
                .as_ref()
                .map(|t| t.name.clone())
                .or_else(|| p.file_name().map(|b| b.to_string_lossy().into_owned()));
            (parent, base)
        }
    };
    let body: Box<dyn Read + Send> = if src == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::io::Cursor::new(local_tar(src, name.as_deref())?))
    };
    let q = Query::new().add("path", &dir).add("noOverwriteDirNonDir", "true");
    let mut r = c.call(
        "PUT",
        &format!("/containers/{ctr}/archive"),
        &q,
        Body::Stream { content_type: "application/x-tar", reader: body },
    )?;
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(())
}

/// A tar of the local `src`, named `name` (or its own name); a source
/// ending in `/.` gives what the directory holds.
fn local_tar(src: &str, name: Option<&str>) -> Result<Vec<u8>> {
    let p = Path::new(src);
    let meta = std::fs::symlink_metadata(p).map_err(|e| CliError::Usage(format!("stat {src}: {e}")))?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if src.ends_with("/.") && meta.is_dir() {
        b.append_dir_all(".", p)?;
    } else {
        let own = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| ".".into());
        let n = name.map(str::to_owned).unwrap_or(own);
        if meta.is_dir() {
            b.append_dir_all(&n, p)?;
        } else {
            b.append_path_with_name(p, &n)?;
        }
    }
    Ok(b.into_inner()?)
}
