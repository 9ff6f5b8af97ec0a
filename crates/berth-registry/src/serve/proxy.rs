//! The pull-through cache: what is not stored yet is fetched from the
//! upstream registry through berth's own client, sent on to the client
//! as it arrives and kept, once its digest checks, for the next pull. A
//! tag is asked of the upstream each time (its digest may move), and
//! served from the cache when the upstream cannot be reached.

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::StatusCode;

use berth_image::Digest;

use super::http::{self, Resp};
use super::store::{Reference, Store};
use super::Upstream;
use crate::auth::Credentials;
use crate::client::Registries;
use crate::config::{Insecure, RegistryConfig};
use crate::Error;

#[derive(Debug)]
pub struct Proxy {
    reg: Registries,
    host: String,
    creds: Option<Credentials>,
}

impl Proxy {
    pub fn new(u: &Upstream) -> Result<Proxy, String> {
        let (scheme, rest) = u.url.split_once("://").unwrap_or(("https", u.url.as_str()));
        let host = rest.split('/').next().unwrap_or("").to_owned();
        if host.is_empty() || !["http", "https"].contains(&scheme) {
            return Err(format!("--proxy {}: not an http:// or https:// URL of a registry", u.url));
        }
        let mut config = RegistryConfig::default();
        if scheme == "http" {
            config.insecure.push(Insecure::Host(host.clone()));
        }
        let creds = (!u.username.is_empty()).then(|| Credentials {
            username: u.username.clone(),
            password: u.password.clone(),
            server_address: host.clone(),
            ..Credentials::default()
        });
        Ok(Proxy { reg: Registries::new(config), host, creds })
    }

    async fn repo(&self, name: &str) -> crate::Result<crate::client::Repo<'_>> {
        self.reg.repo(&self.host, name, self.creds.clone(), "pull").await
    }

    /// The manifest `r` of `name` from the upstream, stored here; `None`
    /// when the upstream has none or cannot be reached.
    pub async fn manifest(&self, store: &Store, name: &str, r: &Reference) -> Option<(Digest, String)> {
        let path = match r {
            Reference::Tag(t) => format!("manifests/{t}"),
            Reference::Digest(d) => format!("manifests/{d}"),
        };
        let repo = self.repo(name).await.map_err(|e| tracing::debug!(name, "upstream: {e}")).ok()?;
        let resp =
            repo.get(&path, crate::manifest::ACCEPT).await.map_err(|e| tracing::debug!(name, "upstream: {e}")).ok()?;
        let media = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let body = resp.bytes().await.ok()?;
        let d = match r {
            Reference::Digest(want) => {
                let d = Digest::of(want.algorithm(), &body);
                if d != *want {
                    tracing::warn!(name, %want, "upstream sent a manifest of another digest");
                    return None;
                }
                d
            }
            Reference::Tag(_) => Digest::sha256(&body),
        };
        let media = if media.is_empty() || media == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            v["mediaType"].as_str().unwrap_or(crate::manifest::OCI_MANIFEST).to_owned()
        } else {
            media
        };
        // Checked as a push would be (schema 1 refused).
        crate::manifest::parse(&media, &body).map_err(|e| tracing::warn!(name, "upstream manifest: {e}")).ok()?;
        let tag = match r {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        };
        let (st, n, dd, m) = (store.clone(), name.to_owned(), d.clone(), media.clone());
        let stored =
            tokio::task::spawn_blocking(move || st.put_manifest(&n, &dd, &m, &body, tag.as_deref(), None)).await;
        match stored {
            Ok(Ok(())) => Some((d, media)),
            Ok(Err(e)) => {
                tracing::warn!(name, "cache manifest: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// The tags of `name` on the upstream.
    pub async fn tags(&self, name: &str) -> Option<Vec<String>> {
        let repo = self.repo(name).await.ok()?;
        let resp = repo.get("tags/list?n=10000", &["application/json"]).await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
        let mut tags: Vec<String> =
            v["tags"].as_array()?.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect();
        tags.sort();
        Some(tags)
    }

    /// Blob `d` of `name` from the upstream, kept as it passes (whole
    /// blobs only; a range is passed on and not kept).
    pub async fn blob(&self, store: &Store, name: &str, d: &Digest, head: bool, range: Option<&str>) -> Resp {
        let repo = match self.repo(name).await {
            Ok(r) => r,
            Err(e) => return upstream_error(e, d),
        };
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(v) = range.and_then(|r| reqwest::header::HeaderValue::from_str(r).ok()) {
            h.insert(reqwest::header::RANGE, v);
        }
        let method = if head { reqwest::Method::HEAD } else { reqwest::Method::GET };
        let resp = match repo.send(method, &format!("blobs/{d}"), h).await {
            Ok(r) => r,
            Err(e) => return upstream_error(e, d),
        };
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::OK);
        let mut headers = vec![
            ("Content-Type", "application/octet-stream".to_owned()),
            ("Docker-Content-Digest", d.to_string()),
            ("Accept-Ranges", "bytes".to_owned()),
        ];
        for k in ["content-length", "content-range"] {
            if let Some(v) = resp.headers().get(k).and_then(|v| v.to_str().ok()) {
                headers.push((if k == "content-length" { "Content-Length" } else { "Content-Range" }, v.to_owned()));
            }
        }
        if head {
            return http::respond(status, &headers, http::full(Bytes::new()));
        }
        let keep = (range.is_none() && status == StatusCode::OK).then(|| Keeper::start(store, name, d));
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let mut stream = resp.bytes_stream();
        tokio::spawn(async move {
            let mut keep = keep;
            let mut client = Some(tx);
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(b) => {
                        if let Some(k) = keep.as_mut() {
                            k.add(b.clone()).await;
                        }
                        // A client gone does not stop the blob being kept.
                        if let Some(c) = &client {
                            if c.send(Ok(b)).await.is_err() {
                                client = None;
                            }
                        }
                    }
                    Err(e) => {
                        if let Some(c) = &client {
                            let _ = c.send(Err(std::io::Error::other(e.to_string()))).await;
                        }
                        return;
                    }
                }
            }
            if let Some(k) = keep {
                k.finish().await;
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item.map(hyper::body::Frame::data), rx))
        });
        http::respond(status, &headers, http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stream)))
    }
}

fn upstream_error(e: Error, d: &Digest) -> Resp {
    match e {
        Error::NotFound(_) => http::error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            serde_json::json!({"digest": d.to_string()}),
        ),
        Error::Unauthorized(m) => http::error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m, serde_json::Value::Null),
        e => http::error(StatusCode::BAD_GATEWAY, "UNKNOWN", format!("upstream: {e}"), serde_json::Value::Null),
    }
}

/// Writes a blob into the store on a thread of its own as its bytes
/// pass; committed, digest checked, when the last one has.
struct Keeper {
    tx: tokio::sync::mpsc::Sender<Option<Bytes>>,
}

impl Keeper {
    fn start(store: &Store, name: &str, d: &Digest) -> Keeper {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(16);
        let (store, name, d) = (store.clone(), name.to_owned(), d.clone());
        std::thread::spawn(move || {
            use std::io::Write as _;
            let Ok(mut w) = store.blobs().writer(d.algorithm()) else { return };
            while let Some(item) = rx.blocking_recv() {
                match item {
                    Some(b) => {
                        if w.write_all(&b).is_err() {
                            return;
                        }
                    }
                    None => {
                        match w.commit(Some(&d)) {
                            Ok(_) => {
                                if let Err(e) = store.link_blob(&name, &d) {
                                    tracing::warn!(%d, "cache blob: {e}");
                                }
                            }
                            Err(e) => tracing::warn!(%d, "upstream blob not kept: {e}"),
                        }
                        return;
                    }
                }
            }
            // The sender went away before the end: nothing kept.
        });
        Keeper { tx }
    }

    async fn add(&mut self, b: Bytes) {
        let _ = self.tx.send(Some(b)).await;
    }

    async fn finish(self) {
        let _ = self.tx.send(None).await;
    }
}
