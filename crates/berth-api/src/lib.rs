//! The Docker Engine API over berth's engine: HTTP/1.1 on a unix socket,
//! version-prefixed paths, Docker's status codes and `{"message": …}`
//! errors, streamed bodies and hijacked connections for attach.

#![recursion_limit = "256"]

mod body;
mod build;
mod containers;
pub mod convert;
pub mod create;
mod exec;
mod images;
pub mod inspect;
mod networks;
mod registry;
mod stream;
mod system;
mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use berth_core::{ErrorKind, Kinded};
use berth_engine::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

pub use body::Body;

/// The largest JSON body a request may carry.
const MAX_JSON: usize = 16 << 20;

/// An error with the status it answers with.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

/// Every error kind to its status, once (moby's `httpstatus.FromError`).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<berth_engine::Error> for ApiError {
    fn from(e: berth_engine::Error) -> Self {
        ApiError::new(status_of(e.kind()), e.to_string())
    }
}

impl From<berth_image::Error> for ApiError {
    fn from(e: berth_image::Error) -> Self {
        ApiError::new(status_of(e.kind()), e.to_string())
    }
}

pub type Reply = Result<Response<Body>, ApiError>;

/// What a handler gets: the engine, the request, its path parts and query.
#[derive(Debug)]
pub struct Ctx {
    pub engine: Arc<Engine>,
    pub query: HashMap<String, String>,
    /// Every query pair in order, for keys given more than once.
    pub pairs: Vec<(String, String)>,
    /// The API version the client asked for.
    pub version: String,
}

impl Ctx {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }
    /// Every value of a key that may repeat (`changes`).
    pub fn all(&self, k: &str) -> Vec<String> {
        self.pairs.iter().filter(|(key, _)| key == k).map(|(_, v)| v.clone()).collect()
    }
    /// `repo` and `tag` as one reference, tagged `latest` when no tag is given.
    pub fn repo_tag(&self) -> Result<Option<berth_image::Reference>, ApiError> {
        let t = match (self.q("repo").filter(|s| !s.is_empty()), self.q("tag").filter(|s| !s.is_empty())) {
            (Some(r), Some(t)) => format!("{r}:{t}"),
            (Some(r), None) => r.to_owned(),
            (None, Some(_)) => return Err(ApiError::bad("a tag needs a repository")),
            (None, None) => return Ok(None),
        };
        berth_image::Reference::parse(&t).map(|r| Some(r.with_default_tag())).map_err(|e| ApiError::bad(e.to_string()))
    }
    /// Docker's boolean query values: 1, true, True (anything else is false).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("1" | "true" | "True" | "TRUE"))
    }
}

pub fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(v).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(body::full(body))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub fn no_content() -> Reply {
    status_only(StatusCode::NO_CONTENT)
}

pub fn status_only(s: StatusCode) -> Reply {
    Response::builder()
        .status(s)
        .body(body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A JSON body's Content-Type as moby's `CheckForJSON` checks it: none is
/// fine only without a body; otherwise it must be `application/json`
/// (parameters such as a charset allowed).
fn check_json(req: &Request<Incoming>) -> Result<(), ApiError> {
    let h = req.headers();
    let ct = match h.get(hyper::header::CONTENT_TYPE) {
        None => "",
        Some(v) => v.to_str().map_err(|_| ApiError::bad("malformed Content-Type header: not text"))?,
    };
    let no_body = h.get(hyper::header::CONTENT_LENGTH).is_some_and(|l| l.as_bytes() == b"0")
        || (!h.contains_key(hyper::header::CONTENT_LENGTH) && !h.contains_key(hyper::header::TRANSFER_ENCODING));
    if ct.is_empty() {
        return if no_body {
            Ok(())
        } else {
            Err(ApiError::bad("malformed Content-Type header (): mime: no media type"))
        };
    }
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b));
    match media.split_once('/') {
        Some((t, s)) if token(t) && token(s) => {}
        _ => {
            return Err(ApiError::bad(format!(
                "malformed Content-Type header ({ct}): mime: expected slash after first token"
            )))
        }
    }
    if media != "application/json" {
        return Err(ApiError::bad(format!("unsupported Content-Type header ({ct}): must be 'application/json'")));
    }
    Ok(())
}

/// Read a JSON body (empty is `null`) into a request type.
pub async fn read_json<T: for<'de> serde::Deserialize<'de> + serde::Serialize>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    decode(read_json_value(req).await?)
}

/// Read a JSON body (empty is `null`) as it was sent.
pub async fn read_json_value(req: Request<Incoming>) -> Result<serde_json::Value, ApiError> {
    check_json(&req)?;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_JSON);
    let bytes: Bytes = limited
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_JSON} bytes"))
            } else {
                // A malformed chunk, or a body cut short.
                ApiError::bad(format!("malformed request body: {e}"))
            }
        })?
        .to_bytes();
    let src: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"null" } else { &bytes };
    serde_json::from_slice(src).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))
}

/// A request as its type reads it. A field of the wrong type is named
/// in the error; a field the type does not have, and that asks for
/// something, is refused by name rather than dropped.
pub fn decode<T: for<'de> serde::Deserialize<'de> + serde::Serialize>(given: serde_json::Value) -> Result<T, ApiError> {
    decode_at(given, "")
}

/// [`decode`] of a part of a request, `at` its path there (`HostConfig.`).
pub fn decode_at<T: for<'de> serde::Deserialize<'de> + serde::Serialize>(
    given: serde_json::Value,
    at: &str,
) -> Result<T, ApiError> {
    let typed: T = serde_path_to_error::deserialize(&given).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match (at, path.as_str()) {
            ("", ".") => ApiError::bad(format!("invalid JSON: {inner}")),
            (at, ".") => ApiError::bad(format!("invalid JSON: {}: {inner}", at.trim_end_matches('.'))),
            (at, path) => ApiError::bad(format!("invalid JSON: {at}{path}: {inner}")),
        }
    })?;
    let kept = serde_json::to_value(&typed).unwrap_or(serde_json::Value::Null);
    let mut unknown = vec![];
    unknown_fields(&given, &kept, at.trim_end_matches('.'), &mut unknown);
    if let Some(f) = unknown.first() {
        return Err(ApiError::bad(format!(
            "{f}: berth does not support this field, so it refuses the request rather than ignore it"
        )));
    }
    Ok(typed)
}

/// Whether a value asks for nothing: null, false, zero, or empty.
fn is_empty_value(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_empty_value),
        Value::Object(o) => o.values().all(is_empty_value),
    }
}

/// The fields of `given` (a request as sent) that `kept` (the request as
/// berth's type read it, written back) lacks and that ask for something,
/// as dotted paths.
fn unknown_fields(given: &serde_json::Value, kept: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match (given, kept) {
        (Value::Object(g), Value::Object(k)) => {
            for (name, v) in g {
                let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                match k.get(name) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if is_empty_value(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) if g.len() == k.len() => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                unknown_fields(gv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    berth_core::url::query_pairs(q.unwrap_or(""))
}

pub use berth_core::url::percent_decode;

pub(crate) fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let p = |s: &str| -> Vec<u32> { s.split('.').map(|x| x.parse().unwrap_or(0)).collect() };
    p(a).cmp(&p(b))
}

fn error_response(e: ApiError) -> Response<Body> {
    // As dockerd: a failure of the daemon's is an error, the client's own
    // mistakes are for debugging.
    if e.status.is_server_error() {
        tracing::error!(status = e.status.as_u16(), "handler returned error: {}", e.message);
    } else {
        tracing::debug!(status = e.status.as_u16(), "handler returned error: {}", e.message);
    }
    let body = serde_json::to_vec(&berth_api_types::ErrorResponse { message: e.message }).unwrap_or_default();
    let mut r = Response::new(body::full(body));
    *r.status_mut() = e.status;
    r.headers_mut().insert("Content-Type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// The endpoints of swarm mode, which answer 503 here.
const SWARM: &[&str] = &["swarm", "services", "nodes", "secrets", "configs", "tasks"];

async fn route(engine: Arc<Engine>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut parts: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let mut version = berth_api_types::API_VERSION.to_owned();
    if let Some(v) = parts.first().and_then(|p| p.strip_prefix('v')).filter(|v| v.contains('.')) {
        if version_cmp(v, berth_api_types::MIN_API_VERSION).is_lt() {
            return error_response(ApiError::bad(format!(
                "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                berth_api_types::MIN_API_VERSION
            )));
        }
        if version_cmp(v, berth_api_types::API_VERSION).is_gt() {
            return error_response(ApiError::bad(format!(
                "client version {v} is too new. Maximum supported API version is {}",
                berth_api_types::API_VERSION
            )));
        }
        version = v.to_owned();
        parts.remove(0);
    }
    let pairs = parse_query(req.uri().query());
    let ctx = Ctx { engine, query: pairs.iter().cloned().collect(), pairs, version };
    let method = req.method().clone();
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    let r = match (method.as_str(), p.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => system::ping(method.as_str()),
        ("GET", ["version"]) => system::version(&ctx),
        ("GET", ["info"]) => system::info(&ctx),
        ("GET", ["events"]) => system::events(&ctx),
        ("GET", ["system", "df"]) => system::df(&ctx).await,
        ("POST", ["containers", "create"]) => containers::create(&ctx, req).await,
        ("GET", ["containers", "json"]) => containers::list(&ctx).await,
        ("POST", ["containers", "prune"]) => containers::prune(&ctx).await,
        ("GET", ["containers", id, "json"]) => containers::inspect(&ctx, id).await,
        ("POST", ["containers", id, "start"]) => containers::start(&ctx, id).await,
        ("POST", ["containers", id, "stop"]) => containers::stop(&ctx, id).await,
        ("POST", ["containers", id, "restart"]) => containers::restart(&ctx, id).await,
        ("POST", ["containers", id, "kill"]) => containers::kill(&ctx, id).await,
        ("POST", ["containers", id, "pause"]) => containers::pause(&ctx, id, true).await,
        ("POST", ["containers", id, "unpause"]) => containers::pause(&ctx, id, false).await,
        ("POST", ["containers", id, "wait"]) => containers::wait(&ctx, id).await,
        ("GET", ["containers", id, "attach", "ws"]) => containers::attach_ws(&ctx, id, req).await,
        ("POST", ["containers", id, "attach"]) => containers::attach(&ctx, id, req).await,
        ("POST", ["containers", id, "resize"]) => containers::resize(&ctx, id).await,
        ("POST", ["containers", id, "rename"]) => containers::rename(&ctx, id),
        ("GET", ["containers", id, "logs"]) => containers::logs(&ctx, id),
        ("POST", ["containers", id, "exec"]) => exec::create(&ctx, id, req).await,
        ("POST", ["exec", id, "start"]) => exec::start(&ctx, id, req).await,
        ("POST", ["exec", id, "resize"]) => exec::resize(&ctx, id).await,
        ("GET", ["exec", id, "json"]) => exec::inspect(&ctx, id),
        ("GET", ["containers", id, "top"]) => containers::top(&ctx, id).await,
        ("GET", ["containers", id, "stats"]) => containers::stats(&ctx, id).await,
        ("POST", ["containers", id, "update"]) => containers::update(&ctx, id, req).await,
        ("GET", ["containers", id, "changes"]) => containers::changes(&ctx, id).await,
        ("GET", ["containers", id, "export"]) => containers::export(&ctx, id).await,
        ("HEAD", ["containers", id, "archive"]) => containers::archive_head(&ctx, id).await,
        ("GET", ["containers", id, "archive"]) => containers::archive_get(&ctx, id).await,
        ("PUT", ["containers", id, "archive"]) => containers::archive_put(&ctx, id, req).await,
        ("POST", ["commit"]) => containers::commit(&ctx, req).await,
        ("DELETE", ["containers", id]) => containers::remove(&ctx, id).await,
        // `docker rm --link /parent/alias`.
        ("DELETE", ["containers", parent, alias]) if ctx.flag("link") => {
            containers::remove(&ctx, &format!("{parent}/{alias}")).await
        }
        ("GET", ["networks"]) => networks::list(&ctx).await,
        ("POST", ["networks", "create"]) => networks::create(&ctx, req).await,
        ("POST", ["networks", "prune"]) => networks::prune(&ctx).await,
        ("GET", ["networks", id]) => networks::inspect(&ctx, id),
        ("DELETE", ["networks", id]) => networks::remove(&ctx, id).await,
        ("POST", ["networks", id, "connect"]) => networks::connect(&ctx, id, req).await,
        ("POST", ["networks", id, "disconnect"]) => networks::disconnect(&ctx, id, req).await,
        ("GET", ["volumes"]) => volumes::list(&ctx).await,
        ("POST", ["volumes", "create"]) => volumes::create(&ctx, req).await,
        ("POST", ["volumes", "prune"]) => volumes::prune(&ctx).await,
        ("GET", ["volumes", name]) => volumes::inspect(&ctx, name).await,
        ("DELETE", ["volumes", name]) => volumes::remove(&ctx, name).await,
        ("GET", ["images", "json"]) => images::list(&ctx).await,
        ("POST", ["images", "load"]) => images::load(&ctx, req).await,
        ("POST", ["images", "create"]) => images::create(&ctx, req).await,
        ("POST", ["auth"]) => registry::auth(&ctx, req).await,
        ("POST", ["build"]) => build::build(&ctx, req).await,
        ("POST", ["build", "prune"]) => build::prune(&ctx).await,
        ("GET", ["images", "search"]) => registry::search(&ctx, req).await,
        ("GET", ["distribution", name @ .., "json"]) if !name.is_empty() => {
            registry::distribution(&ctx, &name.join("/"), req).await
        }
        ("POST", ["images", name @ .., "push"]) if !name.is_empty() => registry::push(&ctx, &name.join("/"), req).await,
        ("GET", ["images", name @ .., "json"]) if !name.is_empty() => images::inspect(&ctx, &name.join("/")).await,
        ("GET", ["images", "get"]) => images::get(&ctx, ctx.all("names")).await,
        ("POST", ["images", "prune"]) => images::prune(&ctx).await,
        ("GET", ["images", name @ .., "get"]) if !name.is_empty() => images::get(&ctx, vec![name.join("/")]).await,
        ("GET", ["images", name @ .., "history"]) if !name.is_empty() => images::history(&ctx, &name.join("/")).await,
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => images::tag(&ctx, &name.join("/")).await,
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => images::delete(&ctx, &name.join("/")).await,
        // Swarm mode is not there, as on a dockerd that never joined one.
        (_, [first, ..]) if SWARM.contains(first) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "This node is not part of a swarm".to_string()))
        }
        // No plugin system: the list is empty, as on a dockerd with none.
        ("GET", ["plugins"]) => json_response(StatusCode::OK, &serde_json::json!([])),
        _ => Err(ApiError::not_found("page not found".to_string())),
    };
    let mut resp = match r {
        Ok(resp) => resp,
        Err(e) => error_response(e),
    };
    // As dockerd, every answer names the API version and the OS.
    let h = resp.headers_mut();
    if !h.contains_key("Api-Version") {
        h.insert("Api-Version", hyper::header::HeaderValue::from_static(berth_api_types::API_VERSION));
        h.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    }
    resp
}

/// How long a client has to send a request's headers, on a new connection
/// or an idle kept-alive one; then the connection is closed. A local
/// client sends them at once: the limit is for connections that send
/// nothing (or half a request) and would hold a descriptor for ever.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest pause after a failed accept (EMFILE: every descriptor in
/// use). The pause doubles from 5 ms at each failure in a row, so the loop
/// waits for descriptors to come free instead of spinning on the error.
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Serve the API on `listener` until the process ends.
pub async fn serve(engine: Arc<Engine>, listener: UnixListener) {
    let mut backoff = std::time::Duration::ZERO;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                backoff = std::time::Duration::ZERO;
                s
            }
            Err(e) => {
                if backoff.is_zero() {
                    tracing::warn!("accept: {e}; waiting before the next accept");
                }
                backoff = (backoff * 2).clamp(std::time::Duration::from_millis(5), ACCEPT_BACKOFF_MAX);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let engine = engine.clone();
                async move {
                    // dockerd's "Calling GET /v1.41/containers/json".
                    tracing::debug!("Calling {} {}", req.method(), req.uri());
                    Ok::<_, std::convert::Infallible>(route(engine, req).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod unknown_field_tests {
    use super::*;

    #[test]
    fn fields_the_type_drops_are_found_unless_they_ask_for_nothing() {
        #[derive(serde::Deserialize, serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(default)]
            name: String,
            #[serde(default)]
            labels: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            inner: Option<Inner>,
        }
        #[derive(serde::Deserialize, serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inner {
            #[serde(default)]
            on: bool,
        }
        let given = serde_json::json!({
            "Name": "x", "Labels": {"any.key": "v"}, "Novel": null, "Zero": 0, "Empty": [],
            "Inner": {"On": true, "Gateway": "", "Priority": 5}, "New": {"A": 1}
        });
        let typed: Req = serde_json::from_value(given.clone()).unwrap_or_else(|e| panic!("{e}"));
        let kept = serde_json::to_value(&typed).unwrap_or_default();
        let mut out = vec![];
        unknown_fields(&given, &kept, "", &mut out);
        out.sort();
        assert_eq!(out, ["Inner.Priority", "New"]);
    }
}
