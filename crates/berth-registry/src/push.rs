//! A push: each layer's compressed blob (compressed once, then kept and
//! remembered on the layer, so the next push compresses nothing), sent
//! only where the registry lacks it (a HEAD first, then a mount from a
//! repository of the same registry the image is known in; else an upload,
//! whole or in the chunks the registry asks for), then the config and a
//! Docker schema 2 manifest under the tag.

use std::io::Read;
use std::sync::Arc;

use berth_image::digest::{Algorithm, Digest, ImageId};
use berth_image::images::ImageStore;
use berth_image::layers::Layer;
use berth_image::reference::Reference;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use crate::auth::Credentials;
use crate::client::{Registries, Repo};
use crate::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::progress::Reporter;
use crate::{Error, Result};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What a push made on the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub digest: Digest,
    /// Bytes of the manifest.
    pub size: u64,
}

/// The 12 hex digits Docker names a layer by when it pushes (its diff id's).
fn short(l: &Layer) -> String {
    l.diff_id.digest().hex().chars().take(12).collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> berth_image::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Registry(format!("push: {e}")))?.map_err(Error::from)
}

/// A layer's blob as pushed: kept compressed once, and its media type. A
/// layer kept uncompressed is compressed now (gzip, or zstd with `zstd`)
/// and the compressed blob remembered in its place.
fn compressed_blob(store: &ImageStore, l: &Layer, zstd: bool) -> berth_image::Result<(Digest, u64, &'static str)> {
    let kept = berth_image::save::layer_blob(store, l)?;
    let media = berth_image::save::layer_media_type(store, &kept)?;
    if media.ends_with("+gzip") {
        return Ok((kept.clone(), store.content.size(&kept)?, DOCKER_LAYER_GZIP));
    }
    if media.ends_with("+zstd") {
        return Ok((kept.clone(), store.content.size(&kept)?, OCI_LAYER_ZSTD));
    }
    let mut src = store.content.open_blob(&kept)?;
    let mut ingest = store.content.writer(Algorithm::Sha256)?;
    let done = if zstd { zstd_parallel(&mut src, &mut ingest) } else { gzip_parallel(&mut src, &mut ingest) };
    // The compressing threads' heaps go back to the system, so that a push
    // leaves the daemon as small as it was.
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
    done.map_err(berth_image::Error::io(format!("compress layer {}", l.diff_id)))?;
    let (d, size) = ingest.commit(None)?;
    store.layers.set_blob(&l.chain_id, d.clone())?;
    Ok((d, size, if zstd { OCI_LAYER_ZSTD } else { DOCKER_LAYER_GZIP }))
}

/// Bytes of input each gzip member holds.
const BLOCK: usize = 4 << 20;

/// Up to `BLOCK` bytes of `r`: fewer only at its end.
fn read_block(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::with_capacity(BLOCK);
    r.take(BLOCK as u64).read_to_end(&mut b)?;
    Ok(b)
}

/// Gzip on every core: blocks of the input compressed at once, each a
/// gzip member of its own, written in order (a stream of members is one
/// gzip file to every reader: Go's, flate2's `MultiGzDecoder`, zlib's).
pub fn gzip_parallel(r: &mut impl Read, w: &mut impl std::io::Write) -> std::io::Result<()> {
    use std::io::Write as _;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The members' buffers are made here, once, big enough that the
    // compressing threads never grow them: what they allocate is theirs
    // alone, and small.
    let mut outs: Vec<Vec<u8>> = (0..cores).map(|_| Vec::with_capacity(BLOCK + BLOCK / 64 + 1024)).collect();
    let mut first = true;
    loop {
        let mut blocks = vec![];
        while blocks.len() < cores {
            let b = read_block(r)?;
            let end = b.len() < BLOCK;
            if !b.is_empty() || (first && blocks.is_empty()) {
                blocks.push(b);
            }
            first = false;
            if end {
                break;
            }
        }
        if blocks.is_empty() {
            return Ok(());
        }
        let done = blocks.last().is_some_and(|b| b.len() < BLOCK);
        let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
            let hs: Vec<_> = blocks
                .iter()
                .zip(outs.iter_mut())
                .map(|(b, out)| {
                    out.clear();
                    s.spawn(move || {
                        let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                        e.write_all(b)?;
                        e.finish().map(|_| ())
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("gzip thread failed"))))
                .collect()
        });
        for (res, out) in results.into_iter().zip(&outs) {
            res?;
            w.write_all(out)?;
        }
        if done {
            return Ok(());
        }
    }
}

/// zstd on every core (libzstd's own workers), level 3.
fn zstd_parallel(r: &mut impl Read, w: &mut impl std::io::Write) -> std::io::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut e = zstd::stream::write::Encoder::new(w, 3)?;
    e.multithread(u32::try_from(cores).unwrap_or(1))?;
    std::io::copy(r, &mut e)?;
    e.finish().map(|_| ())
}

/// `len` bytes of a blob of the content store from `offset`, as an upload
/// body, reporting as it goes.
fn file_body(
    store: &ImageStore,
    d: &Digest,
    size: u64,
    (offset, len): (u64, u64),
    id: String,
    report: Reporter,
) -> Result<reqwest::Body> {
    let mut f = store.content.open_blob(d)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))
        .map_err(|e| Error::Registry(format!("read blob {d}: {e}")))?;
    let state = (f.take(len), offset, report, id);
    let stream = futures_util::stream::unfold(state, move |(mut f, sent, report, id)| async move {
        let mut buf = vec![0u8; 256 << 10];
        let (res, f) = tokio::task::spawn_blocking(move || (f.read(&mut buf).map(|n| (n, buf)), f)).await.ok()?;
        match res {
            Ok((0, _)) => None,
            Ok((n, mut buf)) => {
                buf.truncate(n);
                let sent = sent + n as u64;
                if let Some(r) = &report.0 {
                    let p =
                        crate::Progress::Layer { id: id.clone(), status: "Pushing".into(), detail: Some((sent, size)) };
                    let _ = r.send(p);
                }
                Some((Ok::<_, std::io::Error>(buf), (f, sent, report, id)))
            }
            Err(e) => Some((Err(e), (f, sent, report, id))),
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Whether the registry has the blob in this repository.
async fn has_blob(repo: &Repo<'_>, d: &Digest) -> Result<bool> {
    match repo.send(Method::HEAD, &format!("blobs/{d}"), HeaderMap::new()).await {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The location an upload goes on at, absolute.
fn location(repo: &Repo<'_>, resp: &reqwest::Response) -> Result<String> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Registry("an upload without a Location".into()))?;
    Ok(repo.absolute(loc))
}

/// Bytes a chunk of a chunked upload has at least.
const CHUNK: u64 = 16 << 20;

/// The last byte of an upload's `Range: 0-<last>`, that is how much the
/// registry holds.
fn received(resp: &reqwest::Response) -> Option<u64> {
    let r = resp.headers().get(reqwest::header::RANGE)?.to_str().ok()?;
    let last: u64 = r.trim().trim_start_matches("bytes=").split_once('-')?.1.parse().ok()?;
    Some(last + 1)
}

/// Send a blob the registry lacks: a mount from `from` (a repository of
/// the same registry) when it has it, else an upload: monolithic, or in
/// chunks where the registry asks for them (`OCI-Chunk-Min-Length`). A
/// chunk that fails is sent again from where the registry says the
/// upload stands. `body(offset, len)` gives those bytes of the blob.
async fn upload(
    repo: &Repo<'_>,
    d: &Digest,
    from: &[String],
    body: impl Fn(u64, u64) -> Result<reqwest::Body>,
    size: u64,
) -> Result<Option<String>> {
    for other in from.iter().filter(|o| **o != repo.name) {
        let path = format!("blobs/uploads/?mount={d}&from={other}");
        let resp = repo.send(Method::POST, &path, HeaderMap::new()).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(Some(other.clone()));
        }
    }
    let resp = repo.send(Method::POST, "blobs/uploads/", HeaderMap::new()).await?;
    let mut loc = location(repo, &resp)?;
    let chunk_min = resp
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let octets = HeaderValue::from_static("application/octet-stream");
    let mut last_body = (0, size);
    if let Some(min) = chunk_min {
        let chunk = min.max(CHUNK);
        let mut at = 0;
        let mut retries = 0;
        while at < size {
            let len = chunk.min(size - at);
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, octets.clone());
            for (k, v) in [(CONTENT_LENGTH, len.to_string()), (CONTENT_RANGE, format!("{at}-{}", at + len - 1))] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            match repo.send_url(Method::PATCH, &loc, h, Some(body(at, len)?)).await {
                Ok(resp) => {
                    at = received(&resp).unwrap_or(at + len);
                    if resp.headers().contains_key(LOCATION) {
                        loc = location(repo, &resp)?;
                    }
                }
                Err(e) if retries < 3 => {
                    retries += 1;
                    tracing::debug!(%d, at, "chunk failed ({e}); asking where the upload stands");
                    let resp = repo.send_url(Method::GET, &loc, HeaderMap::new(), None).await?;
                    at = received(&resp).unwrap_or(0);
                    if resp.headers().contains_key(LOCATION) {
                        loc = location(repo, &resp)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        last_body = (size, 0);
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, octets);
    if let Ok(v) = HeaderValue::from_str(&last_body.1.to_string()) {
        h.insert(CONTENT_LENGTH, v);
    }
    let put_body = if last_body.1 > 0 { Some(body(last_body.0, last_body.1)?) } else { None };
    repo.send_url(Method::PUT, &format!("{loc}{sep}digest={d}"), h, put_body).await?;
    Ok(None)
}

/// Push the image `r` names (a tag) to its registry.
pub async fn push(
    reg: &Registries,
    store: Arc<ImageStore>,
    r: &Reference,
    creds: Option<Credentials>,
    report: Reporter,
) -> Result<Pushed> {
    let tag = r.tag().unwrap_or(berth_image::reference::DEFAULT_TAG).to_owned();
    let (st, name) = (store.clone(), r.to_string());
    let (id, config, layers): (ImageId, Vec<u8>, Vec<Layer>) = blocking(move || {
        let id = st.resolve(&name)?;
        let config = st.config_bytes(&id)?;
        let rec = st.get(&id)?.ok_or_else(|| berth_image::Error::NotFound(format!("No such image: {name}")))?;
        let mut layers = match &rec.top_layer {
            Some(top) => st.layers.chain(top)?,
            None => vec![],
        };
        layers.reverse();
        Ok((id, config, layers))
    })
    .await?;
    // Repositories of the same registry the image is known in, to mount from.
    let (st, id2, domain) = (store.clone(), id.clone(), r.domain().to_owned());
    let from: Vec<String> = blocking(move || {
        Ok(st.names_of(&id2)?.into_iter().filter(|n| n.domain() == domain).map(|n| n.path().to_owned()).collect())
    })
    .await?;
    let host = reg.hosts_for(r.domain()).pop().unwrap_or_default();
    let repo = reg.repo(&host, r.path(), creds, "pull,push").await?;
    report.status(None, format!("The push refers to repository [{}]", r.name()));
    for l in &layers {
        report.layer(&short(l), "Preparing", None);
    }
    let mut descs = vec![];
    for l in &layers {
        let id = short(l);
        let (st, layer) = (store.clone(), l.clone());
        let zstd = reg.config.push_zstd;
        let (blob, size, media) = blocking(move || compressed_blob(&st, &layer, zstd)).await?;
        if has_blob(&repo, &blob).await? {
            report.layer(&id, "Layer already exists", None);
        } else {
            let (st, b, rep, lid) = (store.clone(), blob.clone(), report.clone(), id.clone());
            let body = move |at, len| file_body(&st, &b, size, (at, len), lid.clone(), rep.clone());
            match upload(&repo, &blob, &from, body, size).await? {
                Some(other) => report.layer(&id, format!("Mounted from {other}"), None),
                None => report.layer(&id, "Pushed", None),
            }
        }
        descs.push(serde_json::json!({"mediaType": media, "size": size, "digest": blob.to_string()}));
    }
    let config_digest = Digest::sha256(&config);
    if !has_blob(&repo, &config_digest).await? {
        let body = bytes::Bytes::from(config.clone());
        let slice = move |at: u64, len: u64| {
            let (a, b) = (usize::try_from(at).unwrap_or(0), usize::try_from(at + len).unwrap_or(0));
            Ok(reqwest::Body::from(body.slice(a.min(body.len())..b.min(body.len()))))
        };
        upload(&repo, &config_digest, &[], slice, config.len() as u64).await?;
    }
    // Docker's schema 2 names gzip layers only; a zstd layer takes the
    // image to an OCI manifest, whose types name both.
    let oci = descs.iter().any(|d| d["mediaType"] == OCI_LAYER_ZSTD);
    if oci {
        for d in &mut descs {
            if d["mediaType"] == DOCKER_LAYER_GZIP {
                d["mediaType"] = OCI_LAYER_GZIP.into();
            }
        }
    }
    let (kind, config_kind) = if oci { (OCI_MANIFEST, OCI_CONFIG) } else { (DOCKER_MANIFEST, DOCKER_CONFIG) };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kind,
        "config": {"mediaType": config_kind, "size": config.len(), "digest": config_digest.to_string()},
        "layers": descs,
    }))
    .map_err(|e| Error::Invalid(e.to_string()))?;
    let digest = Digest::sha256(&manifest);
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    let url = repo.url(&format!("manifests/{tag}"));
    repo.send_url(Method::PUT, &url, h, Some(reqwest::Body::from(manifest.clone()))).await?;
    let (st, rd) = (store.clone(), r.with_digest(digest.clone()));
    blocking(move || st.tag(&rd, &id)).await?;
    Ok(Pushed { digest, size: manifest.len() as u64 })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parallel_gzip_is_one_gzip_stream_to_a_reader() {
        for len in [0usize, 10, BLOCK, BLOCK * 3 + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut gz = vec![];
            gzip_parallel(&mut &data[..], &mut gz).unwrap();
            let mut back = vec![];
            flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{len} bytes");
        }
    }
}
