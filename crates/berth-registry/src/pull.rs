//! A pull: resolve the reference to one platform's manifest, fetch the
//! config, then stream each missing layer (a few at a time) through its
//! digest check and decompression into a staged layer, register the
//! layers in order, and record the image last.

use std::io::Read;
use std::sync::Arc;

use berth_image::digest::{ChainId, DiffId, Digest, ImageId};
use berth_image::images::ImageStore;
use berth_image::reference::Reference;
use bytes::Bytes;
use oci_spec::image::Descriptor;

use crate::auth::Credentials;
use crate::client::{Registries, Repo};
use crate::manifest::{self, Document, Platform};
use crate::progress::Reporter;
use crate::{Error, Result};

/// Largest manifest or config berth reads whole.
const MAX_DOCUMENT: usize = 8 << 20;

/// Bytes between two `Downloading` reports of a layer.
const REPORT_EVERY: u64 = 512 << 10;

/// What a pull made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub id: ImageId,
    /// The digest of the manifest (or index) the reference resolved to.
    pub digest: Digest,
    /// Whether the name now points at an image it did not point at before.
    pub updated: bool,
}

fn digest_of(d: &Descriptor) -> Result<Digest> {
    d.digest().to_string().parse().map_err(|e| Error::Invalid(format!("descriptor digest: {e}")))
}

/// The 12 hex digits Docker names a layer by in its progress.
fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// A body read whole, refused past `MAX_DOCUMENT`.
async fn read_limited(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|e| Error::Transport(format!("{what}: {e}")))? {
        if out.len() + c.len() > MAX_DOCUMENT {
            return Err(Error::Invalid(format!("{what} is over {MAX_DOCUMENT} bytes")));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

fn check(d: &Digest, body: &[u8], what: &str) -> Result<()> {
    d.verify(body).map_err(|(want, got)| Error::Digest(format!("{what}: digest mismatch: expected {want}, got {got}")))
}

/// A manifest or index as its registry gives it: its media type and
/// bytes, checked against the digest asked for.
async fn get_manifest(repo: &Repo<'_>, reference: &str, by_digest: Option<&Digest>) -> Result<(String, Vec<u8>)> {
    let resp = repo.get(&format!("manifests/{reference}"), manifest::ACCEPT).await?;
    let ctype =
        resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = read_limited(resp, "manifest").await?;
    if let Some(d) = by_digest {
        check(d, &body, "manifest")?;
    }
    Ok((ctype, body))
}

/// The tag or digest a reference asks its registry for.
fn reference_of(r: &Reference) -> String {
    match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => berth_image::reference::DEFAULT_TAG.to_owned(),
    }
}

/// The first of `r`'s hosts (docker.io's mirrors, then its registry) that
/// has its manifest: the repository there, and the manifest's media type
/// and bytes. A host that fails leaves it to the next; the last failure
/// is told in Docker's words, which the CLI shows as they are.
async fn first_with_manifest<'a>(
    reg: &'a Registries,
    r: &Reference,
    creds: Option<Credentials>,
) -> Result<(Repo<'a>, String, Vec<u8>)> {
    let reference = reference_of(r);
    let mut last = None;
    for host in reg.hosts_for(r.domain()) {
        let repo = match reg.repo(&host, r.path(), creds.clone(), "pull").await {
            Ok(repo) => repo,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match get_manifest(&repo, &reference, r.digest()).await {
            Ok((ctype, body)) => return Ok((repo, ctype, body)),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(Error::NotFound(why)) => Error::NotFound(format!("manifest for {} not found: {why}", r.familiar())),
        // A 404, as moby answers it: a 401 would have the docker CLI ask
        // for a password on its terminal.
        Some(Error::Unauthorized(why)) => Error::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {why}",
            r.familiar_name()
        )),
        Some(e) => e,
        None => Error::NotFound(format!("manifest for {} not found", r.familiar())),
    })
}

/// The manifest of `platform` a fetched manifest or index stands for (an
/// index picks it; a lone manifest is checked in `fetch`).
async fn resolve(
    repo: &Repo<'_>,
    ctype: &str,
    body: &[u8],
    platform: &Platform,
) -> Result<oci_spec::image::ImageManifest> {
    match manifest::parse(ctype, body)? {
        Document::Manifest(m) => Ok(*m),
        Document::Index(i) => {
            let want = digest_of(manifest::choose(&i, platform)?)?;
            let (ctype, body) = get_manifest(repo, &want.to_string(), Some(&want)).await?;
            match manifest::parse(&ctype, &body)? {
                Document::Manifest(m) => Ok(*m),
                Document::Index(_) => Err(Error::Invalid(format!("{want}: an index inside an index"))),
            }
        }
    }
}

/// Bytes of a blob as a blocking reader sees them: the chunks the
/// download sends, then the end.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Fetch a blob into `tx`, resuming with a Range request where the
/// connection breaks; refuses more bytes than the descriptor gives.
/// A blob from byte `from` on: from the first of `urls` that answers
/// (a foreign layer's), else from the registry.
async fn open_blob(repo: &Repo<'_>, blob: &Digest, urls: &[String], from: u64) -> Result<reqwest::Response> {
    for u in urls {
        match repo.get_url(u, from).await {
            Ok(resp) => return Ok(resp),
            Err(e) => tracing::debug!(%blob, url = %u, "foreign layer URL failed ({e}); trying the next"),
        }
    }
    repo.get_blob(&blob.to_string(), from).await
}

async fn download(
    repo: &Repo<'_>,
    blob: &Digest,
    urls: &[String],
    size: u64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    report: &Reporter,
) -> Result<()> {
    let id = short(blob);
    let mut got: u64 = 0;
    let mut reported = 0;
    let mut failures = 0;
    'fetch: loop {
        let resp = open_blob(repo, blob, urls, got).await?;
        let mut skip = 0;
        if got > 0 && resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            // The registry sent the whole blob again: pass over what came.
            skip = got;
        }
        let mut resp = resp;
        loop {
            match resp.chunk().await {
                Ok(Some(mut c)) => {
                    if skip > 0 {
                        let n = skip.min(c.len() as u64);
                        let _ = c.split_to(n as usize);
                        skip -= n;
                    }
                    if c.is_empty() {
                        continue;
                    }
                    got += c.len() as u64;
                    if got > size {
                        return Err(Error::Digest(format!("blob {blob}: more than its {size} bytes")));
                    }
                    if tx.send(c).await.is_err() {
                        // The unpack ended early; its error says why.
                        return Ok(());
                    }
                    if got - reported >= REPORT_EVERY || got == size {
                        reported = got;
                        report.layer(&id, "Downloading", Some((got, size)));
                    }
                }
                Ok(None) => break 'fetch,
                Err(e) => {
                    failures += 1;
                    if failures > 5 {
                        return Err(Error::Transport(format!("blob {blob}: {e}")));
                    }
                    tracing::debug!(%blob, got, "download broke ({e}); resuming");
                    tokio::time::sleep(std::time::Duration::from_millis(100 << failures.min(5))).await;
                    continue 'fetch;
                }
            }
        }
    }
    if got != size {
        return Err(Error::Digest(format!("blob {blob}: {got} bytes of {size}")));
    }
    Ok(())
}

/// One layer fetched (or read from a blob already kept) and unpacked into
/// a staged layer, checked against its blob digest and diff id.
async fn stage(
    repo: &Repo<'_>,
    store: &Arc<ImageStore>,
    blob: Digest,
    urls: Vec<String>,
    size: u64,
    diff: DiffId,
    report: &Reporter,
) -> Result<berth_image::layers::Staged> {
    let id = short(&blob);
    let join = |r: std::result::Result<berth_image::Result<berth_image::layers::Staged>, tokio::task::JoinError>| {
        r.map_err(|e| Error::Registry(format!("unpack: {e}")))?.map_err(Error::from)
    };
    if store.content.contains(&blob) {
        // Verified by an earlier pull that did not finish.
        let (s, b, d) = (store.clone(), blob.clone(), diff.clone());
        let staged = join(
            tokio::task::spawn_blocking(move || {
                let f = s.content.open_blob(&b)?;
                s.stage_blob(f, Some(&b), Some(&d))
            })
            .await,
        )?;
        report.layer(&id, "Download complete", None);
        return Ok(staged);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let (s, b, d) = (store.clone(), blob.clone(), diff.clone());
    let unpack = tokio::task::spawn_blocking(move || {
        let mut r = Chunks { rx, cur: Bytes::new() };
        s.stage_blob(&mut r, Some(&b), Some(&d))
    });
    let fetched = download(repo, &blob, &urls, size, tx, report).await;
    let staged = join(unpack.await);
    match (fetched, staged) {
        (Ok(()), Ok(s)) => {
            report.layer(&id, "Verifying Checksum", None);
            report.layer(&id, "Download complete", None);
            Ok(s)
        }
        (Err(e), Ok(s)) => {
            store.layers.discard(s);
            Err(e)
        }
        (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
    }
}

/// Pull `r` for `platform` (the host's when `None`) from its registry
/// (docker.io's mirrors first),
/// reporting to `report`. Layers already present are not fetched, and
/// blobs kept by an earlier pull are not fetched again.
pub async fn pull(
    reg: &Registries,
    store: Arc<ImageStore>,
    r: &Reference,
    platform: Option<&Platform>,
    creds: Option<Credentials>,
    report: Reporter,
) -> Result<Pulled> {
    let r = r.clone().with_default_tag();
    let (repo, ctype, body) = first_with_manifest(reg, &r, creds).await?;
    let top = Digest::sha256(&body);
    let m = resolve(&repo, &ctype, &body, platform.unwrap_or(&Platform::host())).await?;
    report.status(Some(&reference_of(&r)), format!("Pulling from {}", r.path()));
    fetch(&repo, store, &r, m, top, platform, report).await
}

async fn fetch(
    repo: &Repo<'_>,
    store: Arc<ImageStore>,
    r: &Reference,
    m: oci_spec::image::ImageManifest,
    top: Digest,
    want: Option<&Platform>,
    report: Reporter,
) -> Result<Pulled> {
    let config_digest = digest_of(m.config())?;
    let config = read_limited(repo.get_blob(&config_digest.to_string(), 0).await?, "image config").await?;
    check(&config_digest, &config, "image config")?;
    if let Some(want) = want {
        // A platform asked for, and an image of one platform (no index).
        let v: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
        let (os, arch) = (v["os"].as_str().unwrap_or(""), v["architecture"].as_str().unwrap_or(""));
        if os != want.os || arch != want.arch {
            return Err(Error::Invalid(format!(
                "image with reference {} was found but does not match the specified platform: wanted {want}, actual: {os}/{arch}",
                r.familiar()
            )));
        }
    }
    let parsed = berth_image::config::ImageConfig::parse(&config)?;
    let diffs = &parsed.rootfs.diff_ids;
    if diffs.len() != m.layers().len() {
        return Err(Error::Invalid(format!(
            "the manifest has {} layers and its config {} diff ids",
            m.layers().len(),
            diffs.len()
        )));
    }
    let chains = ChainId::chain(diffs);
    let mut todo = vec![];
    for ((desc, diff), chain) in m.layers().iter().zip(diffs).zip(&chains) {
        let blob = digest_of(desc)?;
        let kind = desc.media_type().to_string();
        // A foreign layer's URLs are followed where the daemon allows it;
        // one without URLs is asked of the registry like any other.
        let urls = desc.urls().clone().unwrap_or_default();
        if !urls.is_empty() {
            if !repo.allows_nondistributable() {
                return Err(Error::Invalid(format!(
                    "layer {blob} is non-distributable ({kind}), to be fetched from {}: berth follows such URLs only for registries named in the daemon's allow-nondistributable-artifacts",
                    urls[0]
                )));
            }
            if let Some(bad) = urls.iter().find(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
                return Err(Error::Invalid(format!("layer {blob}: URL {bad:?} is not http:// or https://")));
            }
        }
        if store.layers.get(chain)?.is_some() {
            report.layer(&short(&blob), "Already exists", None);
        } else {
            report.layer(&short(&blob), "Pulling fs layer", None);
            todo.push((blob, urls, desc.size(), diff.clone(), chain.clone()));
        }
    }
    let downloaded = !todo.is_empty();
    let permits = Arc::new(tokio::sync::Semaphore::new(repo.concurrency()));
    let mut tasks = vec![];
    for (blob, urls, size, diff, chain) in todo {
        let permits = permits.clone();
        let report = report.clone();
        let store = store.clone();
        tasks.push(async move {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    report.layer(&short(&blob), "Waiting", None);
                    permits.acquire_owned().await.map_err(|e| Error::Registry(e.to_string()))?
                }
            };
            let staged = stage(repo, &store, blob.clone(), urls, size, diff, &report).await;
            drop(permit);
            staged.map(|s| (chain, blob, s))
        });
    }
    let results = futures_util::future::join_all(tasks).await;
    let mut staged = std::collections::HashMap::new();
    let mut failed = None;
    for r in results {
        match r {
            Ok((chain, blob, s)) => {
                staged.insert(chain, (blob, s));
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        for (_, (_, s)) in staged {
            store.layers.discard(s);
        }
        return Err(e);
    }
    // In order: each layer's chain id needs its parent's.
    let mut parent: Option<ChainId> = None;
    let mut result = Ok(());
    for chain in &chains {
        if let Some((blob, s)) = staged.remove(chain) {
            if result.is_err() {
                store.layers.discard(s);
                continue;
            }
            let total = s.size();
            report.layer(&short(&blob), "Extracting", Some((total, total)));
            let (st, p) = (store.clone(), parent.clone());
            match tokio::task::spawn_blocking(move || st.layers.register(s, p.as_ref())).await {
                Ok(Ok(_)) => report.layer(&short(&blob), "Pull complete", None),
                Ok(Err(e)) => result = Err(Error::from(e)),
                Err(e) => result = Err(Error::Registry(format!("register: {e}"))),
            }
        }
        parent = Some(chain.clone());
    }
    result?;
    let (st, cfg) = (store.clone(), config.clone());
    let rec = tokio::task::spawn_blocking(move || st.add(&cfg))
        .await
        .map_err(|e| Error::Registry(format!("record: {e}")))??;
    let before = if r.digest().is_none() { store.resolve(&r.to_string()).ok() } else { None };
    if r.digest().is_none() {
        store.tag(r, &rec.id)?;
    }
    store.tag(&r.with_digest(top.clone()), &rec.id)?;
    // As moby: newer when a layer came down, or the tag moved.
    let updated = downloaded || (r.digest().is_none() && before.as_ref() != Some(&rec.id));
    Ok(Pulled { id: rec.id, digest: top, updated })
}

/// What a reference resolves to on its registry, without pulling it
/// (`GET /distribution/{name}/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The platforms of an index's manifests, or the one of an image.
    pub platforms: Vec<Platform>,
}

/// The manifest or index `r` names on its registry, and its platforms.
pub async fn describe(reg: &Registries, r: &Reference, creds: Option<Credentials>) -> Result<Described> {
    let r = r.clone().with_default_tag();
    let (repo, ctype, body) = first_with_manifest(reg, &r, creds).await?;
    let digest = Digest::sha256(&body);
    let declared = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned));
    let media_type = match ctype.split(';').next().map(str::trim) {
        Some(t) if t.starts_with("application/vnd.") => t.to_owned(),
        _ => declared.unwrap_or_default(),
    };
    let platforms = match manifest::parse(&ctype, &body)? {
        Document::Index(i) => i
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref())
            .map(|p| Platform {
                os: p.os().to_string(),
                arch: p.architecture().to_string(),
                variant: p.variant().clone(),
            })
            .collect(),
        Document::Manifest(m) => {
            let cfg_digest = digest_of(m.config())?;
            let cfg = read_limited(repo.get_blob(&cfg_digest.to_string(), 0).await?, "image config").await?;
            check(&cfg_digest, &cfg, "image config")?;
            let v: serde_json::Value =
                serde_json::from_slice(&cfg).map_err(|e| Error::Invalid(format!("image config: {e}")))?;
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
            let variant = v.get("variant").and_then(|x| x.as_str()).map(str::to_owned);
            vec![Platform { os: text("os"), arch: text("architecture"), variant }]
        }
    };
    Ok(Described { media_type, digest, size: body.len() as u64, platforms })
}

/// Every tag of `r`'s repository (`pull -a`), following the registry's
/// pages (`Link: <…?last=…&n=…>; rel="next"`).
pub async fn tags(reg: &Registries, r: &Reference, creds: Option<Credentials>) -> Result<Vec<String>> {
    let host = reg.hosts_for(r.domain()).pop().unwrap_or_default();
    let repo = reg.repo(&host, r.path(), creds, "pull").await?;
    let mut out = vec![];
    let mut path = "tags/list?n=1000".to_owned();
    for _ in 0..1000 {
        let resp = repo.get(&path, &["application/json"]).await?;
        let next = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(u, _)| u.to_owned()));
        let body = read_limited(resp, "tag list").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Error::Invalid(format!("tag list: {e}")))?;
        out.extend(v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)));
        match next.and_then(|u| u.split_once("/tags/").map(|(_, p)| format!("tags/{p}"))) {
            Some(p) => path = p,
            None => break,
        }
    }
    Ok(out)
}
