//! `berth-registry serve`: a registry of the OCI distribution spec (the
//! Docker Registry HTTP API V2) over HTTP/1.1, plain or TLS.
//!
//! Pulls, monolithic and chunked pushes (`PATCH` with `Content-Range`,
//! resumable after a restart), cross-repository mounts, tag lists and the
//! catalog with pagination, manifest, tag and blob deletion, and the
//! referrers API. Access is open, or Basic against an htpasswd file, or
//! Bearer tokens from the server's own token endpoint (`/token`), scoped
//! by an access list. With an upstream, it is a pull-through cache
//! instead, which refuses pushes.

pub mod access;
pub mod gc;
mod http;
mod proxy;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub use store::Store;

/// What `serve` is told.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    pub acl: Option<PathBuf>,
    /// Bearer tokens from `/token` rather than Basic on every request.
    pub token_auth: bool,
    /// The token endpoint's URL in challenges; by default `/token` on
    /// the host the request named.
    pub realm: Option<String>,
    /// The `service` of challenges and tokens.
    pub service: String,
    /// A PEM certificate chain and its key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A registry to serve pulls from, as a cache.
    pub proxy: Option<Upstream>,
    /// Ask clients to upload in chunks of at least this many bytes
    /// (`OCI-Chunk-Min-Length`).
    pub chunk_min_length: Option<u64>,
}

/// The registry a pull-through cache fronts, and its credentials.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub url: String,
    pub username: String,
    pub password: String,
}

/// An upload's running hash: valid for the first `size` bytes of its data.
#[derive(Debug)]
struct Upload {
    hasher: Option<berth_image::digest::Hasher>,
    size: u64,
}

/// The server's state, shared by its connections.
#[derive(Debug)]
pub struct Server {
    store: Store,
    policy: access::Policy,
    tokens: Option<access::Tokens>,
    tls: bool,
    realm: Option<String>,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
    proxy: Option<proxy::Proxy>,
    chunk_min_length: Option<u64>,
    /// Held while serving, so that a garbage collection cannot run under it.
    _lock: std::fs::File,
}

impl Server {
    /// The server of `opts`, its storage opened and locked.
    pub fn new(opts: &Options) -> Result<Server, String> {
        let store = Store::open(&opts.root).map_err(|e| e.to_string())?;
        let lock = gc::lock(&opts.root, "served")?;
        let policy = access::Policy::load(opts.htpasswd.as_deref(), opts.acl.as_deref())?;
        let tokens = if opts.token_auth {
            let service = if opts.service.is_empty() { access::ISSUER } else { &opts.service };
            Some(access::Tokens::open(&opts.root, service).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let proxy = opts.proxy.as_ref().map(proxy::Proxy::new).transpose()?;
        Ok(Server {
            store,
            policy,
            tokens,
            tls: opts.tls.is_some(),
            realm: opts.realm.clone(),
            uploads: Mutex::new(HashMap::new()),
            proxy,
            chunk_min_length: opts.chunk_min_length,
            _lock: lock,
        })
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    // ring, the provider the client's TLS is built with too; it lacks the
    // post-quantum key exchange that rustls marks it deprecated for.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A server ready to take connections: storage opened and locked,
/// users, rules and certificate loaded.
pub struct Prepared {
    server: Arc<Server>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("server", &self.server).field("tls", &self.tls.is_some()).finish()
    }
}

impl Prepared {
    pub fn new(opts: &Options) -> Result<Prepared, String> {
        let tls = opts.tls.as_ref().map(|(c, k)| tls_acceptor(c, k)).transpose()?;
        Ok(Prepared { server: Arc::new(Server::new(opts)?), tls })
    }

    /// Serve on `listener` until the process is stopped.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let Prepared { server, tls } = self;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = server.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(http::handle(&server, req).await) }
                });
                let conn = http1::Builder::new();
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => conn.serve_connection(TokioIo::new(s), svc).await,
                        Err(e) => {
                            tracing::debug!(%peer, "TLS handshake: {e}");
                            return;
                        }
                    },
                    None => conn.serve_connection(TokioIo::new(stream), svc).await,
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection: {e}");
                }
            });
        }
    }
}

/// A directory for a unit test, removed when dropped, pass or fail.
#[cfg(test)]
pub(crate) struct TestDir(pub std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(tag: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!("berth-registry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        TestDir(d)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
