//! A blocking client for the Docker Engine API on a unix socket (or TCP):
//! one connection per request, JSON in and out, streamed bodies (chunked
//! uploads, followed logs and events) and hijacked connections for attach
//! and exec. The berth CLI and the integration tests use it; it is
//! synchronous so that a short command pays for no runtime.

mod conn;
mod http;
pub mod stdcopy;

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use conn::Conn;
pub use http::{Body, Hijacked, Response};

/// The socket berthd listens on unless told otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid daemon address {0:?}: use unix:///path/to.sock or tcp://host:port")]
    Host(String),
    #[error("Cannot connect to the berth daemon at {host}. Is the berth daemon running?")]
    Connect { host: String, source: std::io::Error },
    /// The daemon answered with an error status and its message.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("error talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon's answer is not valid HTTP: {0}")]
    Protocol(String),
    #[error("the daemon's answer is not the JSON expected: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The status of an error the daemon answered with.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where the daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    /// `unix:///path`, a bare absolute path, or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<Host> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(Error::Host(s.to_owned()));
            }
            return Ok(Host::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s)));
        }
        if let Some(a) = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("http://")) {
            let a = a.trim_end_matches('/');
            if a.is_empty() || a.contains('/') {
                return Err(Error::Host(s.to_owned()));
            }
            let a = if a.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                a.to_owned()
            } else {
                format!("{a}:2375")
            };
            return Ok(Host::Tcp(a));
        }
        Err(Error::Host(s.to_owned()))
    }

    /// `-H` if given, else `BERTH_HOST`, else `DOCKER_HOST`, else the default.
    pub fn choose(flag: Option<&str>) -> Result<Host> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let s = flag.map(str::to_owned).or_else(|| env("BERTH_HOST")).or_else(|| env("DOCKER_HOST"));
        Host::parse(s.as_deref().unwrap_or(DEFAULT_HOST))
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A query string built pair by pair, percent-encoded.
#[derive(Debug, Default, Clone)]
pub struct Query(String);

impl Query {
    pub fn new() -> Query {
        Query::default()
    }
    pub fn add(mut self, k: &str, v: impl AsRef<str>) -> Query {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(&encode(k));
        self.0.push('=');
        self.0.push_str(&encode(v.as_ref()));
        self
    }
    /// Adds the pair only when `v` is some and not empty.
    pub fn opt(self, k: &str, v: Option<impl AsRef<str>>) -> Query {
        match v {
            Some(v) if !v.as_ref().is_empty() => self.add(k, v),
            _ => self,
        }
    }
    /// Adds `k=1` when `on`.
    pub fn flag(self, k: &str, on: bool) -> Query {
        if on {
            self.add(k, "1")
        } else {
            self
        }
    }
    /// Docker's `filters`: a JSON map of key to the list of values.
    pub fn filters(self, f: &[(String, String)]) -> Query {
        if f.is_empty() {
            return self;
        }
        let mut m: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
        for (k, v) in f {
            m.entry(k.as_str()).or_default().push(v.as_str());
        }
        let json = serde_json::to_string(&m).unwrap_or_default();
        self.add("filters", json)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    version: String,
}

impl Client {
    pub fn new(host: Host) -> Client {
        Client { host, version: berth_api_types::API_VERSION.to_owned() }
    }

    /// Whether the daemon is on this machine (reached by a unix socket).
    pub fn is_local(&self) -> bool {
        matches!(self.host, Host::Unix(_))
    }

    fn connect(&self) -> Result<Conn> {
        Conn::open(&self.host).map_err(|source| Error::Connect { host: self.host.to_string(), source })
    }

    fn target(&self, path: &str, q: &Query) -> String {
        format!("/v{}{}{}", self.version, path, q.as_str())
    }

    /// Sends one request; the answer, whatever its status.
    pub fn send(&self, method: &str, path: &str, q: &Query, body: Body) -> Result<Response> {
        self.send_with(method, path, q, &[], body)
    }

    /// [`Client::send`] with more headers (`X-Registry-Auth`).
    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        q: &Query,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response> {
        let conn = self.connect()?;
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        http::request(conn, method, &self.target(path, q), &extra, body)
    }

    /// Sends one request; the answer if its status is a success, else the
    /// daemon's message as an error.
    pub fn call(&self, method: &str, path: &str, q: &Query, body: Body) -> Result<Response> {
        self.send(method, path, q, body)?.ok()
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str, q: &Query) -> Result<T> {
        self.call("GET", path, q, Body::None)?.json()
    }

    /// POST with a JSON body (or none); the answer parsed as `T`.
    pub fn post<T: DeserializeOwned>(&self, path: &str, q: &Query, body: Option<&impl Serialize>) -> Result<T> {
        let b = match body {
            Some(v) => Body::Json(serde_json::to_vec(v)?),
            None => Body::None,
        };
        self.call("POST", path, q, b)?.json()
    }

    /// POST whose answer carries nothing of interest (204 and the like).
    pub fn post_empty(&self, path: &str, q: &Query) -> Result<()> {
        let mut r = self.call("POST", path, q, Body::None)?;
        std::io::copy(&mut r, &mut std::io::sink())?;
        Ok(())
    }

    pub fn delete(&self, path: &str, q: &Query) -> Result<Response> {
        self.call("DELETE", path, q, Body::None)
    }

    /// A POST upgraded to a raw stream (attach, exec start): 101, or 200
    /// from daemons that answer without upgrading.
    pub fn hijack(&self, path: &str, q: &Query, body: Option<&impl Serialize>) -> Result<Hijacked> {
        let conn = self.connect()?;
        let b = match body {
            Some(v) => serde_json::to_vec(v)?,
            None => Vec::new(),
        };
        http::hijack(conn, &self.target(path, q), &b)
    }
}
