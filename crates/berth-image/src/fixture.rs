//! Deterministic test images made from Debian's busybox-static: the same
//! busybox binary always gives the same layer bytes, diff ids, config and
//! image id, so tests and the README's job can rely on them without a
//! registry.
//!
//! - `busybox`: one layer, `/bin/busybox` with a symlink per applet, `/etc`
//!   with passwd and group, `/tmp`, `/root`; Cmd `sh`.
//! - `layered`: that layer, then a layer that adds files, one that deletes
//!   one of them (a whiteout) and one that replaces a directory (opaque).

use std::io::Read;
use std::path::Path;

use crate::digest::{DiffId, Digest};
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::save::{root_header, ArchiveWriter, LayerDesc, LAYER_TAR};

/// Fixed time of every entry and of the config (2024-01-01T00:00:00Z).
pub const EPOCH: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";

/// A built image: layer tars (uncompressed) and its config.
#[derive(Debug, Clone)]
pub struct FixtureImage {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
}

impl FixtureImage {
    pub fn diff_ids(&self) -> Vec<DiffId> {
        self.layers.iter().map(|l| DiffId::from(Digest::sha256(l))).collect()
    }
}

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        Tar(b)
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        root_header(kind, mode, size, EPOCH)
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, std::io::empty()).map_err(Error::io(format!("fixture {path}")))
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).map_err(Error::io(format!("fixture {path}")))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).map_err(Error::io(format!("fixture {path}")))
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.0.into_inner().map_err(Error::io("fixture tar"))
    }
}

/// The applets a busybox binary offers, from its own `--list`.
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(Error::io(format!("run {} --list", busybox.display())))?;
    if !out.status.success() {
        return Err(Error::Invalid(format!("{} --list failed", busybox.display())));
    }
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

fn base_layer(busybox: &Path) -> Result<Vec<u8>> {
    let mut bin = Vec::new();
    std::fs::File::open(busybox)
        .and_then(|mut f| f.read_to_end(&mut bin))
        .map_err(Error::io(format!("read {}", busybox.display())))?;
    let mut t = Tar::new();
    t.dir("bin", 0o755)?;
    t.file("bin/busybox", 0o755, &bin)?;
    for a in applets(busybox)? {
        t.symlink(&format!("bin/{a}"), "busybox")?;
    }
    t.dir("etc", 0o755)?;
    t.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    t.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    t.dir("root", 0o700)?;
    t.dir("tmp", 0o1777)?;
    t.finish()
}

fn config(diff_ids: &[DiffId], history: &[&str]) -> Result<Vec<u8>> {
    let v = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>() },
        "history": history.iter().map(|h| serde_json::json!({ "created": CREATED, "created_by": h })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&v).map_err(|e| Error::Invalid(e.to_string()))
}

/// One layer of busybox.
pub fn busybox(busybox: &Path) -> Result<FixtureImage> {
    let layers = vec![base_layer(busybox)?];
    let diff_ids: Vec<DiffId> = layers.iter().map(|l| DiffId::from(Digest::sha256(l))).collect();
    Ok(FixtureImage { config: config(&diff_ids, &["busybox-static"])?, layers })
}

/// busybox and three layers over it: files added, one whited out, one
/// directory made opaque. The merged tree has `/data/keep`, `/data/swap/new`
/// and no `/data/gone` or `/data/swap/old`.
pub fn layered(busybox: &Path) -> Result<FixtureImage> {
    let mut add = Tar::new();
    add.dir("data", 0o755)?;
    add.file("data/keep", 0o644, b"keep\n")?;
    add.file("data/gone", 0o644, b"gone\n")?;
    add.dir("data/swap", 0o755)?;
    add.file("data/swap/old", 0o644, b"old\n")?;
    let mut delete = Tar::new();
    delete.dir("data", 0o755)?;
    delete.file("data/.wh.gone", 0o644, b"")?;
    let mut opaque = Tar::new();
    opaque.dir("data", 0o755)?;
    opaque.dir("data/swap", 0o755)?;
    opaque.file("data/swap/.wh..wh..opq", 0o644, b"")?;
    opaque.file("data/swap/new", 0o644, b"new\n")?;
    let layers = vec![base_layer(busybox)?, add.finish()?, delete.finish()?, opaque.finish()?];
    let diff_ids: Vec<DiffId> = layers.iter().map(|l| DiffId::from(Digest::sha256(l))).collect();
    let config = config(&diff_ids, &["busybox-static", "add /data", "rm /data/gone", "replace /data/swap"])?;
    Ok(FixtureImage { layers, config })
}

/// Write images as `docker save` would, each under its name: what the
/// README's job and later tests load.
pub fn write_archive(images: &[(&FixtureImage, &Reference)], w: impl std::io::Write) -> Result<()> {
    let mut out = ArchiveWriter::new(w)?;
    for (img, name) in images {
        let config = Digest::sha256(&img.config);
        out.blob(&config, img.config.len() as u64, &img.config[..])?;
        let mut layers = Vec::new();
        for l in &img.layers {
            let digest = Digest::sha256(l);
            out.blob(&digest, l.len() as u64, &l[..])?;
            layers.push(LayerDesc { digest, size: l.len() as u64, media_type: LAYER_TAR });
        }
        out.image(&config, img.config.len() as u64, &layers, std::slice::from_ref(*name))?;
    }
    out.finish().map(|_| ())
}
