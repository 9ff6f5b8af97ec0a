//! The streaming server that Exec, Attach and PortForward hand out URLs
//! to, as kubelet's `cri/streaming` package serves it: a single-use token
//! per request (`/exec/<token>`, `/attach/<token>`, `/portforward/<token>`,
//! valid for a minute), then an upgrade to SPDY/3.1 (`v4.channel.k8s.io`
//! for commands, `portforward.k8s.io` for ports) or to a WebSocket
//! (`v5.channel.k8s.io` or `v4.channel.k8s.io`, commands only).

mod portforward;
mod remote;
pub(crate) mod spdy;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use k8s_cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};

use crate::Cri;

/// How long a URL handed out may wait for its client.
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// The most URLs waiting at once (kubelet's cache holds 1000).
const MAX_TOKENS: usize = 1000;

/// What a URL was handed out for.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// The tokens waiting for their client, and where they are served.
#[derive(Debug)]
pub(crate) struct Streams {
    pub addr: SocketAddr,
    tokens: Mutex<HashMap<String, (Instant, Pending)>>,
}

/// The subprotocols of remote commands, best first.
const COMMAND_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

impl Streams {
    pub(crate) fn new(addr: SocketAddr) -> Streams {
        Streams { addr, tokens: Mutex::new(HashMap::new()) }
    }

    /// A URL for `p`.
    pub(crate) fn url(&self, p: Pending) -> Result<String, tonic::Status> {
        let kind = match &p {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        };
        let mut m = self.tokens.lock().map_err(|_| tonic::Status::internal("stream tokens lock poisoned"))?;
        m.retain(|_, (t, _)| t.elapsed() < TOKEN_TTL);
        if m.len() >= MAX_TOKENS {
            return Err(tonic::Status::resource_exhausted("too many streaming requests waiting"));
        }
        // 32 random bytes, as a container's id: not to be guessed.
        let t = berth_engine::names::new_id();
        m.insert(t.clone(), (Instant::now(), p));
        Ok(format!("http://{}/{kind}/{t}", self.addr))
    }

    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let (at, p) = self.tokens.lock().ok()?.remove(token)?;
        let same = matches!(
            (kind, &p),
            ("exec", Pending::Exec(_)) | ("attach", Pending::Attach(_)) | ("portforward", Pending::PortForward(_))
        );
        (same && at.elapsed() < TOKEN_TTL).then_some(p)
    }
}

type Reply = Response<Full<Bytes>>;

fn plain(status: StatusCode, msg: impl Into<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())));
    *r.status_mut() = status;
    r
}

/// The values of a header, comma-separated lists split.
fn values(req: &Request<hyper::body::Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Serve the streaming URLs on `listener` for as long as the future runs.
pub(crate) async fn serve(cri: Arc<Cri>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((conn, _)) = listener.accept().await else { continue };
        let cri = cri.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let cri = cri.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(cri, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(cri: Arc<Cri>, req: Request<hyper::body::Incoming>) -> Reply {
    let path = req.uri().path().trim_matches('/').to_owned();
    let Some((kind, token)) = path.split_once('/') else {
        return plain(StatusCode::NOT_FOUND, "no such streaming URL");
    };
    let Some(streams) = cri.streams.get() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "streaming is not served");
    };
    let Some(pending) = streams.take(kind, token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
    };
    let upgrade = values(&req, "upgrade");
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        return ws::accept(cri, req, pending);
    }
    if !upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        return plain(StatusCode::BAD_REQUEST, "expected an upgrade to SPDY/3.1 or a websocket");
    }
    let offered = values(&req, "x-stream-protocol-version");
    let supported: &[&str] =
        if matches!(pending, Pending::PortForward(_)) { &[PORT_FORWARD_PROTOCOL] } else { &COMMAND_PROTOCOLS[1..] };
    let Some(protocol) = offered.iter().find(|p| supported.contains(&p.as_str())).cloned() else {
        return plain(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"),
        );
    };
    let upgraded = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(conn) = upgraded.await else { return };
        let conn = hyper_util::rt::TokioIo::new(conn);
        match pending {
            Pending::PortForward(p) => portforward::serve_spdy(cri, p, conn).await,
            other => remote::serve_spdy(cri, other, conn).await,
        }
    });
    let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("Upgrade"));
    h.insert(hyper::header::UPGRADE, hyper::header::HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&protocol) {
        h.insert("X-Stream-Protocol-Version", v);
    }
    r
}
