//! The routes of `berth-registry serve`, as the OCI distribution spec
//! names them, with its error codes.

// A handler's error is the response it answers with, once per request.
#![allow(clippy::result_large_err)]

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RANGE};
use hyper::{Method, Request, Response, StatusCode};

use berth_core::url::query_pairs as pairs;
use berth_image::digest::Hasher;
use berth_image::{Algorithm, Digest};

use super::access::{self, Access, Claims};
use super::store::{self, Reference};
use super::{Server, Upload};
use crate::manifest::{self, Document, OCI_INDEX};

pub type Body = BoxBody<Bytes, io::Error>;
pub type Resp = Response<Body>;

/// The largest manifest taken, as distribution has it.
const MANIFEST_MAX: usize = 4 << 20;
/// Bytes gathered before one write of an upload.
const WRITE_CHUNK: usize = 1 << 20;
/// Bytes of a blob read at once to be sent.
const READ_CHUNK: usize = 1 << 20;
/// Page size of tag lists and the catalog when the client names none.
const PAGE_DEFAULT: usize = 1000;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn empty() -> Body {
    full(Bytes::new())
}

/// A response of `status` with `headers` and `body`.
pub fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

/// An error of the distribution spec: `{"errors":[{code,message,detail}]}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>, detail: serde_json::Value) -> Resp {
    let body = serde_json::json!({"errors": [{"code": code, "message": message.into(), "detail": detail}]});
    respond(status, &[("Content-Type", "application/json".into())], full(body.to_string()))
}

fn internal(e: impl std::fmt::Display) -> Resp {
    tracing::warn!("registry storage: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", format!("unknown error: {e}"), serde_json::Value::Null)
}

fn name_unknown(name: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        serde_json::json!({"name": name}),
    )
}

fn blob_unknown(d: &str) -> Resp {
    error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry", serde_json::json!({"digest": d}))
}

fn manifest_unknown(r: &str) -> Resp {
    error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown", serde_json::json!({"reference": r}))
}

fn upload_unknown() -> Resp {
    error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", serde_json::Value::Null)
}

fn digest_invalid(msg: impl Into<String>) -> Resp {
    error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", msg, serde_json::Value::Null)
}

fn unsupported(what: &str) -> Resp {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        format!("the operation is unsupported: {what}"),
        serde_json::Value::Null,
    )
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn header(req: &Request<Incoming>, h: impl hyper::header::AsHeaderName) -> Option<&str> {
    req.headers().get(h).and_then(|v| v.to_str().ok())
}

/// A route under `/v2/`, with its repository name.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Tags(&'a str),
    Referrers(&'a str, &'a str),
}

fn parse_route(rest: &str) -> Option<Route<'_>> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return Some(Route::Uploads(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "uploads" => name.strip_suffix("/blobs").map(|n| Route::Upload(n, last)),
        _ => None,
    }
}

/// Who made a request, as its `Authorization` shows.
#[derive(Debug, Default)]
struct Caller {
    user: Option<String>,
    claims: Option<Claims>,
}

fn basic_pair(v: &str) -> Option<(String, String)> {
    let b = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

impl Server {
    fn caller(&self, req: &Request<Incoming>) -> Caller {
        let Some(v) = header(req, AUTHORIZATION) else { return Caller::default() };
        match &self.tokens {
            Some(t) => {
                let tok = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "));
                Caller { user: None, claims: tok.and_then(|tok| t.check(tok.trim())) }
            }
            None => {
                let user = basic_pair(v).filter(|(u, p)| self.policy.check_password(u, p)).map(|(u, _)| u);
                Caller { user, claims: None }
            }
        }
    }

    fn may(&self, c: &Caller, kind: &str, name: &str, action: &str) -> bool {
        match &self.tokens {
            Some(_) => c.claims.as_ref().is_some_and(|cl| access::allows(cl, kind, name, action)),
            None => {
                let want = Access { kind: kind.into(), name: name.into(), actions: vec![action.into()] };
                !self.policy.grant(&c.user, &want).is_empty()
            }
        }
    }

    /// The challenge a request without the access it needs gets.
    fn challenge(&self, req: &Request<Incoming>, c: &Caller, scope: Option<&str>) -> Resp {
        match &self.tokens {
            Some(t) => {
                let realm = self.realm.clone().unwrap_or_else(|| {
                    let scheme = if self.tls { "https" } else { "http" };
                    format!("{scheme}://{}/token", header(req, HOST).unwrap_or("localhost"))
                });
                let mut v = format!(r#"Bearer realm="{realm}",service="{}""#, t.service);
                if let Some(s) = scope {
                    v.push_str(&format!(r#",scope="{s}""#));
                }
                if c.claims.is_some() {
                    v.push_str(r#",error="insufficient_scope""#);
                }
                let mut r =
                    error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required", scope_detail(scope));
                if let Ok(h) = HeaderValue::from_str(&v) {
                    r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, h);
                }
                r
            }
            None if c.user.is_none() && self.policy.has_users() => {
                let mut r =
                    error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required", scope_detail(scope));
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="berth-registry""#),
                );
                r
            }
            None => error(
                StatusCode::FORBIDDEN,
                "DENIED",
                "requested access to the resource is denied",
                scope_detail(scope),
            ),
        }
    }

    /// Pass when the caller may take every one of `actions` on `name`.
    fn authorize(&self, req: &Request<Incoming>, kind: &str, name: &str, actions: &[&str]) -> Result<Caller, Resp> {
        let c = self.caller(req);
        if actions.iter().all(|a| self.may(&c, kind, name, a)) {
            return Ok(c);
        }
        let scope = format!("{kind}:{name}:{}", actions.join(","));
        Err(self.challenge(req, &c, Some(&scope)))
    }
}

fn scope_detail(scope: Option<&str>) -> serde_json::Value {
    match scope.and_then(Access::parse_scope) {
        Some(a) => serde_json::json!([{"Type": a.kind, "Name": a.name, "Action": a.actions.join(",")}]),
        None => serde_json::Value::Null,
    }
}

/// Answer one request.
pub async fn handle(s: &Server, req: Request<Incoming>) -> Resp {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let mut r = route(s, req).await;
    tracing::debug!("{method} {path} {}", r.status().as_u16());
    r.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    r
}

async fn route(s: &Server, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let query = pairs(req.uri().query().unwrap_or(""));
    if path == "/token" && s.tokens.is_some() {
        return token(s, req, &query).await;
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found", serde_json::Value::Null);
    };
    if rest.is_empty() || rest == "/" {
        let c = s.caller(&req);
        let signed_in = match &s.tokens {
            Some(_) => c.claims.as_ref().is_some_and(|cl| cl.typ.is_empty()),
            None => c.user.is_some() || !s.policy.has_users(),
        };
        if !signed_in {
            return s.challenge(&req, &c, None);
        }
        return respond(StatusCode::OK, &[("Content-Type", "application/json".into())], full("{}"));
    }
    let rest = rest.trim_start_matches('/');
    if rest == "_catalog" {
        if let Err(r) = s.authorize(&req, "registry", "catalog", &["*"]) {
            return r;
        }
        return catalog(s, &query);
    }
    let Some(route) = parse_route(rest) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route", serde_json::Value::Null);
    };
    let name = match &route {
        Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _)
        | Route::Tags(n)
        | Route::Referrers(n, _) => *n,
    };
    if !store::valid_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            "invalid repository name",
            serde_json::json!({"name": name}),
        );
    }
    let method = req.method().clone();
    let pulling = matches!(method, Method::GET | Method::HEAD);
    let actions: &[&str] = match (&route, &method) {
        (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => &[access::DELETE],
        (Route::Upload(..) | Route::Uploads(..), _) | (Route::Manifest(..), &Method::PUT) => {
            &[access::PULL, access::PUSH]
        }
        _ if pulling => &[access::PULL],
        _ => return unsupported(&format!("{method} {path}")),
    };
    let caller = match s.authorize(&req, "repository", name, actions) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if s.proxy.is_some() && !pulling {
        return unsupported("a pull-through cache takes no pushes or deletions");
    }
    match route {
        Route::Manifest(name, r) => match method {
            Method::GET | Method::HEAD => get_manifest(s, name, r, method == Method::HEAD).await,
            Method::PUT => put_manifest(s, name, r, req).await,
            _ => delete_manifest(s, name, r),
        },
        Route::Blob(name, d) => match method {
            Method::GET | Method::HEAD => get_blob(s, name, d, &req).await,
            _ => delete_blob(s, name, d),
        },
        Route::Tags(name) => tags(s, name, &query).await,
        Route::Referrers(name, d) => referrers(s, name, d, &query),
        Route::Uploads(name) => match method {
            Method::POST => start_upload(s, &caller, name, &query, req_body(req)).await,
            _ => unsupported(&format!("{method} on uploads")),
        },
        Route::Upload(name, id) => {
            let id = id.to_owned();
            match method {
                Method::GET => upload_status(s, name, &id).await,
                Method::PATCH => patch_upload(s, name, &id, req).await,
                Method::PUT => put_upload(s, name, &id, &query, req_body(req)).await,
                Method::DELETE => cancel_upload(s, name, &id),
                _ => unsupported(&format!("{method} on an upload")),
            }
        }
    }
}

fn req_body(req: Request<Incoming>) -> Incoming {
    req.into_body()
}

/// The body whole, up to `limit` bytes.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Resp> {
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| {
            error(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", e.to_string(), serde_json::Value::Null)
        })?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > limit {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "SIZE_INVALID",
                    format!("the body is larger than {limit} bytes"),
                    serde_json::Value::Null,
                ));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out)
}

// The token endpoint.

async fn token(s: &Server, req: Request<Incoming>, query: &[(String, String)]) -> Resp {
    let Some(tokens) = &s.tokens else { return unsupported("tokens") };
    let auth = header(&req, AUTHORIZATION).map(str::to_owned);
    let params: Vec<(String, String)> = match *req.method() {
        Method::GET => query.to_vec(),
        Method::POST => match read_body(req.into_body(), 64 << 10).await {
            Ok(b) => pairs(&String::from_utf8_lossy(&b)),
            Err(r) => return r,
        },
        _ => return unsupported("a token is asked for with GET or POST"),
    };
    let denied = |why: &str| error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", why, serde_json::Value::Null);
    let grant = param(&params, "grant_type").unwrap_or("");
    let subject: Option<String> = match grant {
        "refresh_token" => {
            let Some(c) = param(&params, "refresh_token").and_then(|t| tokens.check(t)) else {
                return denied("invalid refresh token");
            };
            if c.typ != "refresh" || c.sub.is_empty() {
                return denied("invalid refresh token");
            }
            Some(c.sub)
        }
        "password" => {
            let (u, p) = (param(&params, "username").unwrap_or(""), param(&params, "password").unwrap_or(""));
            if !s.policy.check_password(u, p) {
                return denied("invalid username or password");
            }
            Some(u.to_owned())
        }
        "" => match auth.as_deref().map(basic_pair) {
            Some(Some((u, p))) if s.policy.check_password(&u, &p) => Some(u),
            Some(_) => return denied("invalid username or password"),
            None => None,
        },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                format!("unknown grant_type {other:?}"),
                serde_json::Value::Null,
            )
        }
    };
    let mut granted = vec![];
    for scope in params.iter().filter(|(k, _)| k == "scope").flat_map(|(_, v)| v.split(' ')) {
        let Some(want) = Access::parse_scope(scope) else { continue };
        let actions = s.policy.grant(&subject, &want);
        if !actions.is_empty() {
            granted.push(Access { actions, ..want });
        }
    }
    let sub = subject.clone().unwrap_or_default();
    let token = match tokens.issue(&sub, granted, access::TOKEN_SECS, "") {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": access::TOKEN_SECS,
        "issued_at": berth_core::time::now_rfc3339(),
    });
    let offline = param(&params, "offline_token") == Some("true")
        || param(&params, "access_type") == Some("offline")
        || grant == "refresh_token";
    if let (true, Some(user)) = (offline, &subject) {
        match tokens.issue(user, vec![], access::REFRESH_SECS, "refresh") {
            Ok(r) => body["refresh_token"] = r.into(),
            Err(e) => return internal(e),
        }
    }
    respond(StatusCode::OK, &[("Content-Type", "application/json".into())], full(body.to_string()))
}

// Listing.

/// Up to `n` of `all` after `last`, and the `last` of the next page.
fn page(all: Vec<String>, query: &[(String, String)]) -> Result<(Vec<String>, Option<String>), Resp> {
    let n = match param(query, "n") {
        Some(n) => n.parse::<usize>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "invalid number of results requested",
                serde_json::json!({"n": n}),
            )
        })?,
        None => PAGE_DEFAULT,
    };
    let after: Vec<String> = match param(query, "last") {
        Some(l) => all.into_iter().filter(|t| t.as_str() > l).collect(),
        None => all,
    };
    let more = after.len() > n;
    let out: Vec<String> = after.into_iter().take(n).collect();
    let next = if more { out.last().cloned() } else { None };
    Ok((out, next))
}

fn link_header(path: &str, n: usize, last: &str) -> (&'static str, String) {
    ("Link", format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

async fn tags(s: &Server, name: &str, query: &[(String, String)]) -> Resp {
    let all = match &s.proxy {
        Some(p) => match p.tags(name).await {
            Some(t) => Some(t),
            None => s.store.tags(name),
        },
        None => s.store.tags(name),
    };
    let Some(all) = all else { return name_unknown(name) };
    let (tags, next) = match page(all, query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    if let Some(last) = next {
        headers.push(link_header(&format!("/v2/{name}/tags/list"), tags.len(), &last));
    }
    respond(StatusCode::OK, &headers, full(serde_json::json!({"name": name, "tags": tags}).to_string()))
}

fn catalog(s: &Server, query: &[(String, String)]) -> Resp {
    let (repos, next) = match page(s.store.repositories(), query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    if let Some(last) = next {
        headers.push(link_header("/v2/_catalog", repos.len(), &last));
    }
    respond(StatusCode::OK, &headers, full(serde_json::json!({"repositories": repos}).to_string()))
}

fn referrers(s: &Server, name: &str, d: &str, query: &[(String, String)]) -> Resp {
    let Ok(d) = d.parse::<Digest>() else { return digest_invalid(format!("invalid digest {d:?}")) };
    let mut list = s.store.referrers(name, &d);
    let mut headers = vec![("Content-Type", OCI_INDEX.to_owned())];
    if let Some(t) = param(query, "artifactType") {
        list.retain(|v| v["artifactType"] == t);
        headers.push(("OCI-Filters-Applied", "artifactType".into()));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list});
    respond(StatusCode::OK, &headers, full(index.to_string()))
}

// Manifests.

async fn get_manifest(s: &Server, name: &str, r: &str, head: bool) -> Resp {
    let Some(reference) = Reference::parse(r) else { return manifest_unknown(r) };
    let mut found = None;
    if let Some(p) = &s.proxy {
        let local = match &reference {
            Reference::Digest(_) => s.store.resolve(name, &reference),
            Reference::Tag(_) => None,
        };
        found = match local {
            Some(l) => Some(l),
            None => p.manifest(&s.store, name, &reference).await,
        };
    }
    let Some((d, media)) = found.or_else(|| s.store.resolve(name, &reference)) else {
        if !s.store.has_repo(name) && s.proxy.is_none() {
            return name_unknown(name);
        }
        return manifest_unknown(r);
    };
    let body = match s.store.read_blob(&d) {
        Ok(b) => b,
        Err(e) => return internal(e),
    };
    let headers = [
        ("Content-Type", media),
        ("Content-Length", body.len().to_string()),
        ("Docker-Content-Digest", d.to_string()),
        ("ETag", format!("\"{d}\"")),
    ];
    let mut resp = respond(StatusCode::OK, &headers, if head { empty() } else { full(body) });
    if head {
        // The length of the body a GET would have.
        if let Ok(v) = HeaderValue::from_str(&headers[1].1) {
            resp.headers_mut().insert(CONTENT_LENGTH, v);
        }
    }
    resp
}

fn manifest_invalid(msg: impl Into<String>) -> Resp {
    error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", msg, serde_json::Value::Null)
}

/// A descriptor's digest as berth reads it.
fn desc_digest(d: &oci_spec::image::Descriptor) -> Result<Digest, Resp> {
    let text = d.digest().to_string();
    text.parse().map_err(|e| digest_invalid(format!("{text}: {e}")))
}

async fn put_manifest(s: &Server, name: &str, r: &str, req: Request<Incoming>) -> Resp {
    let Some(reference) = Reference::parse(r) else {
        return error(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            "manifest tag did not match URI",
            serde_json::json!({"reference": r}),
        );
    };
    let content_type = header(&req, CONTENT_TYPE).unwrap_or("").split(';').next().unwrap_or("").trim().to_owned();
    let body = match read_body(req.into_body(), MANIFEST_MAX).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let doc = match manifest::parse(&content_type, &body) {
        Ok(d) => d,
        Err(e) => return manifest_invalid(e.to_string()),
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let declared = v["mediaType"].as_str().unwrap_or("");
    let media = match (content_type.as_str(), &doc) {
        ("" | "application/json" | "application/octet-stream", _) if !declared.is_empty() => declared.to_owned(),
        ("" | "application/json" | "application/octet-stream", Document::Index(_)) => OCI_INDEX.to_owned(),
        ("" | "application/json" | "application/octet-stream", Document::Manifest(_)) => {
            manifest::OCI_MANIFEST.to_owned()
        }
        (t, _) => t.to_owned(),
    };
    if !declared.is_empty() && declared != media {
        return manifest_invalid(format!("mediaType {declared} is not the Content-Type {media}"));
    }
    // What it refers to must be here first.
    let missing = |d: &Digest| {
        error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            "blob unknown to registry",
            serde_json::json!({"digest": d.to_string()}),
        )
    };
    match &doc {
        Document::Manifest(m) => {
            let config = match desc_digest(m.config()) {
                Ok(d) => d,
                Err(r) => return r,
            };
            if s.store.blob_in(name, &config).is_none() {
                return missing(&config);
            }
            for l in m.layers() {
                let d = match desc_digest(l) {
                    Ok(d) => d,
                    Err(r) => return r,
                };
                // Foreign layers live at their URLs, not here.
                let foreign = l.urls().as_ref().is_some_and(|u| !u.is_empty());
                if !foreign && s.store.blob_in(name, &d).is_none() {
                    return missing(&d);
                }
            }
        }
        Document::Index(i) => {
            for m in i.manifests() {
                let d = match desc_digest(m) {
                    Ok(d) => d,
                    Err(r) => return r,
                };
                if s.store.resolve(name, &Reference::Digest(d.clone())).is_none() {
                    return missing(&d);
                }
            }
        }
    }
    let alg = match &reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let d = Digest::of(alg, &body);
    if let Reference::Digest(want) = &reference {
        if *want != d {
            return digest_invalid(format!("manifest digest {d} is not {want}"));
        }
    }
    let subject = match v.get("subject").filter(|x| !x.is_null()) {
        Some(subj) => match subj["digest"].as_str().and_then(|x| x.parse::<Digest>().ok()) {
            Some(sd) => Some(sd),
            None => return manifest_invalid("subject has no valid digest"),
        },
        None => None,
    };
    let mut desc = serde_json::json!({"mediaType": media, "digest": d.to_string(), "size": body.len()});
    let artifact = v["artifactType"].as_str().or_else(|| match &doc {
        Document::Manifest(_) => v["config"]["mediaType"].as_str(),
        Document::Index(_) => None,
    });
    if let Some(a) = artifact {
        desc["artifactType"] = a.into();
    }
    if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
        desc["annotations"] = a.clone();
    }
    let tag = match &reference {
        Reference::Tag(t) => Some(t.clone()),
        Reference::Digest(_) => None,
    };
    let (st, n, dd, sub, ds) = (s.store.clone(), name.to_owned(), d.clone(), subject.clone(), desc);
    let media2 = media.clone();
    let stored = tokio::task::spawn_blocking(move || {
        st.put_manifest(&n, &dd, &media2, &body, tag.as_deref(), sub.as_ref().map(|x| (x, &ds)))
    })
    .await;
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    }
    let mut headers = vec![("Location", format!("/v2/{name}/manifests/{d}")), ("Docker-Content-Digest", d.to_string())];
    if let Some(sd) = subject {
        headers.push(("OCI-Subject", sd.to_string()));
    }
    respond(StatusCode::CREATED, &headers, empty())
}

fn delete_manifest(s: &Server, name: &str, r: &str) -> Resp {
    let deleted = match Reference::parse(r) {
        Some(Reference::Digest(d)) => s.store.delete_manifest(name, &d),
        Some(Reference::Tag(t)) => s.store.delete_tag(name, &t),
        None => return manifest_unknown(r),
    };
    match deleted {
        Ok(true) => respond(StatusCode::ACCEPTED, &[], empty()),
        Ok(false) => manifest_unknown(r),
        Err(e) => internal(e),
    }
}

// Blobs.

/// `bytes=a-b` or `bytes=a-` of a blob of `size` bytes: the first byte
/// and the length; `Err` when it cannot be met.
fn byte_range(h: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => (a.parse().map_err(|_| ())?, b.parse::<u64>().map_err(|_| ())?.min(size.saturating_sub(1))),
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok((start, end - start + 1))
}

/// `len` bytes of `file` from `offset`, read on a blocking thread a
/// chunk at a time as the client takes them.
pub fn file_body(file: std::fs::File, offset: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let want = usize::try_from((end - at).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            let mut buf = vec![0u8; want];
            let r = match file.read_at(&mut buf, at) {
                Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than its size")),
                Ok(n) => {
                    buf.truncate(n);
                    at += n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed()
}

async fn get_blob(s: &Server, name: &str, d: &str, req: &Request<Incoming>) -> Resp {
    let Ok(d) = d.parse::<Digest>() else { return digest_invalid(format!("invalid digest {d:?}")) };
    let head = req.method() == Method::HEAD;
    let range = header(req, RANGE).map(str::to_owned);
    let Some(file) = s.store.open_blob(name, &d) else {
        if let Some(p) = &s.proxy {
            return p.blob(&s.store, name, &d, head, range.as_deref()).await;
        }
        return blob_unknown(&d.to_string());
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return internal(e),
    };
    blob_response(file, &d, size, head, range.as_deref())
}

/// A stored blob, whole or the range asked for.
pub fn blob_response(file: std::fs::File, d: &Digest, size: u64, head: bool, range: Option<&str>) -> Resp {
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_owned()),
        ("Docker-Content-Digest", d.to_string()),
        ("Accept-Ranges", "bytes".to_owned()),
        ("ETag", format!("\"{d}\"")),
    ];
    let (status, start, len) = match range {
        Some(r) => match byte_range(r, size) {
            Ok((start, len)) => {
                headers.push(("Content-Range", format!("bytes {start}-{}/{size}", start + len - 1)));
                (StatusCode::PARTIAL_CONTENT, start, len)
            }
            Err(()) => {
                return respond(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[("Content-Range", format!("bytes */{size}"))],
                    empty(),
                )
            }
        },
        None => (StatusCode::OK, 0, size),
    };
    headers.push(("Content-Length", len.to_string()));
    let body = if head { empty() } else { file_body(file, start, len) };
    let mut resp = respond(status, &headers, body);
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        resp.headers_mut().insert(CONTENT_LENGTH, v);
    }
    resp
}

fn delete_blob(s: &Server, name: &str, d: &str) -> Resp {
    let Ok(d) = d.parse::<Digest>() else { return digest_invalid(format!("invalid digest {d:?}")) };
    match s.store.unlink_blob(name, &d) {
        Ok(true) => respond(StatusCode::ACCEPTED, &[("Docker-Content-Digest", d.to_string())], empty()),
        Ok(false) => blob_unknown(&d.to_string()),
        Err(e) => internal(e),
    }
}

// Uploads.

fn upload_headers(name: &str, id: &str, size: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("Range", format!("0-{}", size.saturating_sub(1))),
        ("Docker-Upload-UUID", id.to_owned()),
        ("Content-Length", "0".to_owned()),
    ]
}

fn blob_created(name: &str, d: &Digest) -> Resp {
    respond(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{name}/blobs/{d}")),
            ("Docker-Content-Digest", d.to_string()),
            ("Content-Length", "0".into()),
        ],
        empty(),
    )
}

impl Server {
    /// The running state of upload `id`, its data file at `data`.
    fn upload_state(&self, id: &str, data: &std::path::Path) -> Arc<tokio::sync::Mutex<Upload>> {
        let Ok(mut m) = self.uploads.lock() else {
            return Arc::new(tokio::sync::Mutex::new(Upload { hasher: None, size: 0 }));
        };
        m.entry(id.to_owned())
            .or_insert_with(|| {
                // After a restart the hash so far is gone; the data is
                // hashed again when the upload ends.
                let size = std::fs::metadata(data).map_or(0, |m| m.len());
                let hasher = (size == 0).then(|| Algorithm::Sha256.hasher());
                Arc::new(tokio::sync::Mutex::new(Upload { hasher, size }))
            })
            .clone()
    }

    fn forget_upload(&self, id: &str) {
        if let Ok(mut m) = self.uploads.lock() {
            m.remove(id);
        }
    }
}

/// The data file and its hash, carried to a blocking thread for a write.
struct Sink {
    file: std::fs::File,
    hasher: Option<Hasher>,
}

/// Append `body` to an upload's data, hashing it on the way.
async fn append(data: &std::path::Path, up: &mut Upload, mut body: Incoming) -> Result<u64, Resp> {
    let file = match std::fs::OpenOptions::new().append(true).open(data) {
        Ok(f) => f,
        Err(e) => return Err(internal(e)),
    };
    let mut sink = Some(Sink { file, hasher: up.hasher.take() });
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
    let mut written = 0u64;
    let mut failure = None;
    loop {
        let frame = body.frame().await;
        let done = match frame {
            None => true,
            Some(Err(e)) => {
                failure =
                    Some(error(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", e.to_string(), serde_json::Value::Null));
                true
            }
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
                false
            }
        };
        if (done && !buf.is_empty()) || buf.len() >= WRITE_CHUNK {
            let Some(mut sk) = sink.take() else { break };
            let chunk = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_CHUNK));
            let r = tokio::task::spawn_blocking(move || {
                let r = sk.file.write_all(&chunk);
                if r.is_ok() {
                    if let Some(h) = sk.hasher.as_mut() {
                        h.update(&chunk);
                    }
                }
                (sk, r.map(|()| chunk.len() as u64))
            })
            .await;
            match r {
                Ok((sk, Ok(n))) => {
                    written += n;
                    sink = Some(sk);
                }
                Ok((sk, Err(e))) => {
                    // What reached the file is unknown: hashed again at the end.
                    up.size = sk.file.metadata().map_or(up.size + written, |m| m.len());
                    return Err(internal(e));
                }
                Err(e) => {
                    up.size = std::fs::metadata(data).map_or(up.size + written, |m| m.len());
                    return Err(internal(e));
                }
            }
        }
        if done {
            break;
        }
    }
    up.size += written;
    up.hasher = sink.and_then(|s| s.hasher);
    match failure {
        Some(r) => Err(r),
        None => Ok(written),
    }
}

async fn start_upload(s: &Server, caller: &Caller, name: &str, query: &[(String, String)], body: Incoming) -> Resp {
    if let (Some(m), Some(from)) = (param(query, "mount"), param(query, "from")) {
        // Mounted when the blob is in `from` and the caller may pull it there.
        if let Ok(d) = m.parse::<Digest>() {
            if store::valid_name(from)
                && s.may(caller, "repository", from, access::PULL)
                && s.store.blob_in(from, &d).is_some()
            {
                return match s.store.link_blob(name, &d) {
                    Ok(()) => blob_created(name, &d),
                    Err(e) => internal(e),
                };
            }
        }
    }
    let id = match s.store.new_upload(name) {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    if let Some(d) = param(query, "digest") {
        // The whole blob in this one request.
        let d = d.to_owned();
        return put_upload(s, name, &id, &[("digest".into(), d)], body).await;
    }
    let mut headers = upload_headers(name, &id, 0);
    if let Some(min) = s.chunk_min_length {
        headers.push(("OCI-Chunk-Min-Length", min.to_string()));
    }
    respond(StatusCode::ACCEPTED, &headers, empty())
}

async fn upload_status(s: &Server, name: &str, id: &str) -> Resp {
    let Some(data) = s.store.upload(name, id) else { return upload_unknown() };
    let state = s.upload_state(id, &data);
    let size = state.lock().await.size;
    let mut r = respond(StatusCode::NO_CONTENT, &upload_headers(name, id, size), empty());
    r.headers_mut().remove(CONTENT_LENGTH);
    r
}

/// `start-end` of a `Content-Range`.
fn content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim().trim_start_matches("bytes").trim_start_matches(['=', ' ']);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

async fn patch_upload(s: &Server, name: &str, id: &str, req: Request<Incoming>) -> Resp {
    let Some(data) = s.store.upload(name, id) else { return upload_unknown() };
    let state = s.upload_state(id, &data);
    let mut up = state.lock().await;
    let range = match header(&req, "content-range") {
        Some(v) => match content_range(v) {
            Some(r) => Some(r),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BLOB_UPLOAD_INVALID",
                    format!("bad Content-Range {v:?}"),
                    serde_json::Value::Null,
                )
            }
        },
        None => None,
    };
    if let Some((start, end)) = range {
        // A chunk must begin where the data ends.
        if start != up.size || end < start {
            let mut r = respond(StatusCode::RANGE_NOT_SATISFIABLE, &upload_headers(name, id, up.size), empty());
            r.headers_mut().remove(CONTENT_LENGTH);
            return r;
        }
    }
    let before = up.size;
    if let Err(r) = append(&data, &mut up, req.into_body()).await {
        return r;
    }
    if let Some((start, end)) = range {
        if up.size - before != end - start + 1 {
            // The chunk is not what its range said: taken back.
            let _ = std::fs::OpenOptions::new().write(true).open(&data).and_then(|f| f.set_len(before));
            up.size = before;
            up.hasher = None;
            return error(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the chunk has {} bytes, its Content-Range {}", up.size.abs_diff(before), end - start + 1),
                serde_json::Value::Null,
            );
        }
    }
    respond(StatusCode::ACCEPTED, &upload_headers(name, id, up.size), empty())
}

async fn put_upload(s: &Server, name: &str, id: &str, query: &[(String, String)], body: Incoming) -> Resp {
    let Some(data) = s.store.upload(name, id) else { return upload_unknown() };
    let Some(want) = param(query, "digest") else { return digest_invalid("the digest parameter is missing") };
    let Ok(want) = want.parse::<Digest>() else { return digest_invalid(format!("invalid digest {want:?}")) };
    let state = s.upload_state(id, &data);
    let mut up = state.lock().await;
    if let Err(r) = append(&data, &mut up, body).await {
        return r;
    }
    let hasher = up.hasher.take().filter(|h| {
        matches!((h, want.algorithm()), (Hasher::Sha256(_), Algorithm::Sha256) | (Hasher::Sha512(_), Algorithm::Sha512))
    });
    let (st, n, i, w, path) = (s.store.clone(), name.to_owned(), id.to_owned(), want.clone(), data.clone());
    let r = tokio::task::spawn_blocking(move || {
        let actual = match hasher {
            Some(h) => h.finish(),
            None => store::hash_file(&path, w.algorithm())?,
        };
        if actual != w {
            st.cancel_upload(&i)?;
            return Ok(Some(actual));
        }
        st.finish_upload(&n, &i, &w)?;
        Ok::<_, io::Error>(None)
    })
    .await;
    drop(up);
    s.forget_upload(id);
    match r {
        Ok(Ok(None)) => blob_created(name, &want),
        Ok(Ok(Some(actual))) => {
            digest_invalid(format!("provided digest {want} did not match uploaded content ({actual})"))
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

fn cancel_upload(s: &Server, name: &str, id: &str) -> Resp {
    if s.store.upload(name, id).is_none() {
        return upload_unknown();
    }
    s.forget_upload(id);
    match s.store.cancel_upload(id) {
        Ok(()) => respond(StatusCode::NO_CONTENT, &[], empty()),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_the_name_from_the_endpoint() {
        assert_eq!(parse_route("a/b/manifests/latest"), Some(Route::Manifest("a/b", "latest")));
        assert_eq!(parse_route("blobs/blobs/sha256:x"), Some(Route::Blob("blobs", "sha256:x")));
        assert_eq!(parse_route("a/blobs/uploads/"), Some(Route::Uploads("a")));
        assert_eq!(parse_route("a/blobs/uploads/abc"), Some(Route::Upload("a", "abc")));
        assert_eq!(parse_route("x/tags/list"), Some(Route::Tags("x")));
        assert_eq!(parse_route("x/referrers/sha256:y"), Some(Route::Referrers("x", "sha256:y")));
        assert_eq!(parse_route("x/uploads/y"), None);
        assert_eq!(parse_route("x"), None);
    }

    #[test]
    fn ranges_read_as_http_has_them() {
        assert_eq!(byte_range("bytes=0-", 10), Ok((0, 10)));
        assert_eq!(byte_range("bytes=4-", 10), Ok((4, 6)));
        assert_eq!(byte_range("bytes=2-4", 10), Ok((2, 3)));
        assert_eq!(byte_range("bytes=2-40", 10), Ok((2, 8)));
        assert_eq!(byte_range("bytes=-3", 10), Ok((7, 3)));
        assert_eq!(byte_range("bytes=10-", 10), Err(()));
        assert_eq!(byte_range("items=0-1", 10), Err(()));
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("bytes 100-199/*"), Some((100, 199)));
    }
}
