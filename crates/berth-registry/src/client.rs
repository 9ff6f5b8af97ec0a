//! HTTP to registries: one client per registry host (its CAs and client
//! certificate from `certs.d`, plain HTTP or unverified TLS where the host
//! is insecure), the auth challenge answered once per host and scope, and
//! requests retried with back-off on 5xx and broken connections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{parse_challenge, Challenge, Credentials, TokenResponse};
use crate::config::RegistryConfig;
use crate::{Error, Result};

/// Where docker.io's API is served.
const DOCKER_IO_API: &str = "registry-1.docker.io";

/// Attempts of one request when the registry fails (5xx) or the
/// connection breaks.
const ATTEMPTS: u32 = 5;

/// A registry host as berth reaches it.
#[derive(Debug, Clone)]
struct Endpoint {
    http: reqwest::Client,
    /// `https://host:port` or `http://host:port`.
    base: String,
    /// What its `/v2/` answered without credentials.
    challenge: Option<Challenge>,
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    until: Instant,
}

/// The registries berth talks to, with what it learnt of each.
#[derive(Debug)]
pub struct Registries {
    pub config: RegistryConfig,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

/// One repository on one registry, with the credentials and the actions
/// (`pull`, `pull,push`) a request needs.
#[derive(Debug)]
pub struct Repo<'a> {
    reg: &'a Registries,
    host: String,
    pub name: String,
    creds: Option<Credentials>,
    actions: &'static str,
    ep: Endpoint,
    /// The challenge in force: the host's, or a newer one a request met.
    challenge: Mutex<Option<Challenge>>,
}

fn transport(e: reqwest::Error) -> Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    Error::Transport(msg)
}

impl Registries {
    pub fn new(config: RegistryConfig) -> Registries {
        Registries { config, endpoints: Mutex::new(HashMap::new()), tokens: Mutex::new(HashMap::new()) }
    }

    /// The hosts to try for a reference's registry, in order: docker.io's
    /// mirrors, then the registry itself.
    pub fn hosts_for(&self, domain: &str) -> Vec<String> {
        if domain == berth_image::reference::DEFAULT_DOMAIN {
            let mut out: Vec<String> = self.config.mirrors.clone();
            out.push(DOCKER_IO_API.to_owned());
            return out;
        }
        vec![domain.to_owned()]
    }

    /// The HTTP client of `host`, with its certificates from `certs.d`.
    fn http_for(&self, host: &str, insecure: bool) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(insecure);
        let dir = self.config.certs_dir.join(host);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut names: Vec<std::path::PathBuf> = rd.flatten().map(|e| e.path()).collect();
            names.sort();
            for p in &names {
                let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", p.display()));
                match p.extension().and_then(|e| e.to_str()) {
                    Some("crt") => {
                        let pem = std::fs::read(p).map_err(|e| bad(&e))?;
                        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| bad(&e))?);
                    }
                    Some("cert") => {
                        let key = p.with_extension("key");
                        let mut pem = std::fs::read(p).map_err(|e| bad(&e))?;
                        pem.extend(std::fs::read(&key).map_err(|e| {
                            Error::Invalid(format!("{}: missing key {}: {e}", p.display(), key.display()))
                        })?);
                        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad(&e))?);
                    }
                    _ => {}
                }
            }
        }
        b.build().map_err(transport)
    }

    /// How `host` is reached, found out once: HTTPS, or for an insecure
    /// host HTTPS without verification and then plain HTTP.
    async fn endpoint(&self, host: &str) -> Result<Endpoint> {
        if let Some(ep) = self.endpoints.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(ep);
        }
        let insecure = self.config.is_insecure(host);
        let http = self.http_for(host, insecure)?;
        let schemes: &[&str] = if insecure { &["https", "http"] } else { &["https"] };
        let mut last = None;
        for scheme in schemes {
            let base = format!("{scheme}://{host}");
            match http.get(format!("{base}/v2/")).send().await {
                Ok(resp) => {
                    let challenge = (resp.status() == StatusCode::UNAUTHORIZED)
                        .then(|| {
                            resp.headers()
                                .get_all(WWW_AUTHENTICATE)
                                .iter()
                                .find_map(|v| parse_challenge(v.to_str().ok()?))
                        })
                        .flatten();
                    let ep = Endpoint { http: http.clone(), base, challenge };
                    if let Ok(mut m) = self.endpoints.lock() {
                        m.insert(host.to_owned(), ep.clone());
                    }
                    return Ok(ep);
                }
                Err(e) => last = Some(transport(e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Transport(format!("{host}: unreachable"))))
    }

    /// A repository on `host`; the host is asked for its challenge once.
    pub async fn repo(
        &self,
        host: &str,
        name: &str,
        creds: Option<Credentials>,
        actions: &'static str,
    ) -> Result<Repo<'_>> {
        let ep = self.endpoint(host).await?;
        let challenge = Mutex::new(ep.challenge.clone());
        Ok(Repo { reg: self, host: host.to_owned(), name: name.to_owned(), creds, actions, ep, challenge })
    }

    /// `docker login`: check `creds` against the registry they name (its
    /// `serveraddress`; docker.io's when empty). Where the registry's
    /// token server speaks OAuth2, a user and password are traded for a
    /// refresh token, returned as the identity token the client keeps in
    /// place of the password (as Docker does); elsewhere `None`.
    pub async fn login(&self, creds: &Credentials) -> Result<Option<String>> {
        let host = login_host(&creds.server_address);
        // Asked afresh: what the host asked for before may have changed.
        if let Ok(mut m) = self.endpoints.lock() {
            m.remove(&host);
        }
        let ep = self.endpoint(&host).await?;
        if let (Some(Challenge::Bearer { realm, service, .. }), false) =
            (&ep.challenge, creds.username.is_empty() || creds.password.is_empty())
        {
            let form = [
                ("grant_type", "password"),
                ("username", creds.username.as_str()),
                ("password", creds.password.as_str()),
                ("service", service.as_str()),
                ("client_id", "berth"),
                ("access_type", "offline"),
            ];
            let resp = ep.http.post(realm).form(&form).send().await.map_err(transport)?;
            match resp.status() {
                s if s.is_success() => {
                    let body = resp.bytes().await.map_err(transport)?;
                    let t: TokenResponse = serde_json::from_slice(&body)
                        .map_err(|e| Error::Registry(format!("token from {realm}: {e}")))?;
                    if !t.refresh_token.is_empty() {
                        return Ok(Some(t.refresh_token));
                    }
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let body = resp.text().await.unwrap_or_default();
                    let why = registry_message(&body).unwrap_or_else(|| "incorrect username or password".into());
                    return Err(Error::Unauthorized(format!("login to {host}: {why}")));
                }
                // No OAuth2 there: the token is asked for with Basic below.
                _ => {}
            }
        }
        let repo = Repo {
            reg: self,
            host: host.clone(),
            name: String::new(),
            creds: Some(creds.clone()),
            actions: "",
            challenge: Mutex::new(ep.challenge.clone()),
            ep,
        };
        let Some(auth) = repo.authorization().await? else { return Ok(None) };
        let resp = repo.ep.http.get(format!("{}/v2/", repo.ep.base)).header(AUTHORIZATION, auth).send().await;
        let resp = resp.map_err(transport)?;
        match resp.status() {
            s if s.is_success() => Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let body = resp.text().await.unwrap_or_default();
                let why = registry_message(&body).unwrap_or_else(|| "incorrect username or password".into());
                Err(Error::Unauthorized(format!("login to {host}: {why}")))
            }
            s => Err(Error::Registry(format!("login to {host}: {s}"))),
        }
    }

    /// `docker search`: Docker Hub's index, or the search API (v1) of the
    /// registry the term names (`host/term`), which a distribution
    /// registry does not have. The index's results, as it gives them.
    pub async fn search(
        &self,
        term: &str,
        limit: usize,
        creds: Option<&Credentials>,
    ) -> Result<Vec<serde_json::Value>> {
        let (host, query) = match term.split_once('/') {
            Some((h, rest)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                (h.to_owned(), rest.to_owned())
            }
            _ => ("index.docker.io".to_owned(), term.to_owned()),
        };
        let insecure = self.config.is_insecure(&host);
        let http = self.http_for(&host, insecure)?;
        let n = limit.to_string();
        let mut last = None;
        for scheme in if insecure { ["https", "http"].as_slice() } else { ["https"].as_slice() } {
            let mut req =
                http.get(format!("{scheme}://{host}/v1/search")).query(&[("q", query.as_str()), ("n", n.as_str())]);
            if let Some(c) = creds.filter(|c| !c.username.is_empty()) {
                req = req.basic_auth(&c.username, Some(&c.password));
            }
            match req.send().await {
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                    return Err(Error::Unsupported(format!(
                        "{host} has no search API: a registry of the distribution API cannot be searched, only an index (Docker Hub's) can"
                    )))
                }
                Ok(resp) => {
                    let resp = self.checked_plain(resp).await?;
                    let body = resp.bytes().await.map_err(transport)?;
                    let v: serde_json::Value = serde_json::from_slice(&body)
                        .map_err(|e| Error::Registry(format!("search on {host}: {e}")))?;
                    return Ok(v["results"].as_array().cloned().unwrap_or_default());
                }
                Err(e) => last = Some(transport(e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Transport(format!("{host}: unreachable"))))
    }

    async fn checked_plain(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let why = registry_message(&body).unwrap_or_else(|| status.to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(why),
            _ => Error::Registry(why),
        })
    }

    /// The token kept for `host` under `key` (its scope and holder).
    fn cached_token(&self, host: &str, key: &str) -> Option<String> {
        let m = self.tokens.lock().ok()?;
        m.get(&(host.to_owned(), key.to_owned())).filter(|t| t.until > Instant::now()).map(|t| t.value.clone())
    }

    fn keep_token(&self, host: &str, key: &str, value: String, secs: u64) {
        // Renewed a little before it runs out.
        let until = Instant::now() + Duration::from_secs(secs.max(60).saturating_sub(10));
        if let Ok(mut m) = self.tokens.lock() {
            let now = Instant::now();
            m.retain(|_, t| t.until > now);
            m.insert((host.to_owned(), key.to_owned()), Token { value, until });
        }
    }
}

impl Repo<'_> {
    /// The `Authorization` this repository's requests carry.
    async fn authorization(&self) -> Result<Option<String>> {
        use base64::Engine as _;
        let c = self.creds.clone().unwrap_or_default();
        let basic = || {
            let pair = format!("{}:{}", c.username, c.password);
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        };
        let challenge = self.challenge.lock().ok().and_then(|c| c.clone());
        match &challenge {
            None => Ok(None),
            Some(Challenge::Basic) if c.username.is_empty() => {
                Err(Error::Unauthorized(format!("{}: the registry asks for credentials", self.host)))
            }
            Some(Challenge::Basic) => Ok(Some(basic())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if !c.registry_token.is_empty() {
                    return Ok(Some(format!("Bearer {}", c.registry_token)));
                }
                // A login asks for a token of no scope.
                let scope = if self.name.is_empty() {
                    String::new()
                } else {
                    format!("repository:{}:{}", self.name, self.actions)
                };
                // A token is its holder's: kept under the credentials that
                // got it, so that no other client's request is granted by it.
                let secret = format!("{}\0{}\0{}", c.username, c.password, c.identity_token);
                let key = format!("{scope} {}", berth_image::digest::Digest::sha256(secret.as_bytes()).hex());
                if let Some(t) = self.reg.cached_token(&self.host, &key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let req = if !c.identity_token.is_empty() {
                    let form = [
                        ("grant_type", "refresh_token"),
                        ("refresh_token", c.identity_token.as_str()),
                        ("service", service.as_str()),
                        ("scope", scope.as_str()),
                        ("client_id", "berth"),
                    ];
                    self.ep.http.post(realm).form(&form)
                } else {
                    let mut q = vec![];
                    if !scope.is_empty() {
                        q.push(("scope", scope.as_str()));
                    }
                    if !service.is_empty() {
                        q.push(("service", service.as_str()));
                    }
                    let r = self.ep.http.get(realm).query(&q);
                    if c.username.is_empty() {
                        r
                    } else {
                        r.header(AUTHORIZATION, basic())
                    }
                };
                let resp = req.send().await.map_err(transport)?;
                let status = resp.status();
                if !status.is_success() {
                    let body = resp.text().await.unwrap_or_default();
                    let why = registry_message(&body).unwrap_or_else(|| status.to_string());
                    return Err(match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            Error::Unauthorized(format!("{realm}: {why}"))
                        }
                        _ => Error::Registry(format!("token from {realm}: {why}")),
                    });
                }
                let body = resp.bytes().await.map_err(transport)?;
                let t: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| Error::Registry(format!("token from {realm}: {e}")))?;
                let value = if t.token.is_empty() { t.access_token } else { t.token };
                if value.is_empty() {
                    return Err(Error::Registry(format!("{realm} gave no token")));
                }
                self.reg.keep_token(&self.host, &key, value.clone(), t.expires_in);
                Ok(Some(format!("Bearer {value}")))
            }
        }
    }

    /// Whether `resp` is a 401 with a challenge other than the one in
    /// force, which is then taken (for this repository and the host).
    fn learn_challenge(&self, resp: &reqwest::Response) -> bool {
        if resp.status() != StatusCode::UNAUTHORIZED {
            return false;
        }
        let Some(new) = resp.headers().get_all(WWW_AUTHENTICATE).iter().find_map(|v| parse_challenge(v.to_str().ok()?))
        else {
            return false;
        };
        let Ok(mut cur) = self.challenge.lock() else { return false };
        if cur.as_ref() == Some(&new) {
            return false;
        }
        *cur = Some(new.clone());
        if let Ok(mut m) = self.reg.endpoints.lock() {
            if let Some(ep) = m.get_mut(&self.host) {
                ep.challenge = Some(new);
            }
        }
        true
    }

    /// The URL of `/v2/<name>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{}", self.ep.base, self.name, path)
    }

    /// An upload location as a registry gives it (a path or a URL), as a URL.
    pub fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_owned()
        } else {
            format!("{}{}", self.ep.base, loc)
        }
    }

    /// `method` on `/v2/<name>/<path>`, retried on 5xx and broken
    /// connections with back-off; a 401 or 403 is an error naming the
    /// registry's reason, a 404 is `NotFound`.
    pub async fn send(&self, method: Method, path: &str, headers: HeaderMap) -> Result<reqwest::Response> {
        let url = self.url(path);
        let mut auth = self.authorization().await?;
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let mut req = self.ep.http.request(method.clone(), &url).headers(headers.clone());
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_server_error() && attempt < ATTEMPTS => {
                    tracing::debug!(%url, status = %resp.status(), attempt, "registry failed; retrying");
                }
                Ok(resp) if self.learn_challenge(&resp) && attempt < ATTEMPTS => {
                    // Asked for another kind of credentials than the host's
                    // `/v2/` asked for: answered with those, once more.
                    auth = self.authorization().await?;
                    continue;
                }
                Ok(resp) => return self.checked(resp).await,
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tracing::debug!(%url, attempt, "registry unreachable ({e}); retrying");
                }
                Err(e) => return Err(transport(e)),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(Error::Transport(format!("{url}: no answer after {ATTEMPTS} attempts")))
    }

    /// `method` on a URL of this registry with a body, once (a streamed
    /// body cannot be sent again).
    pub async fn send_url(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let mut req = self.ep.http.request(method, url).headers(headers);
        if let Some(a) = self.authorization().await? {
            req = req.header(AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.checked(req.send().await.map_err(transport)?).await
    }

    async fn checked(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() || status == StatusCode::PARTIAL_CONTENT {
            return Ok(resp);
        }
        let url = resp.url().to_string();
        let body = resp.text().await.unwrap_or_default();
        let why = registry_message(&body).unwrap_or_else(|| status.to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(why),
            StatusCode::NOT_FOUND => Error::NotFound(why),
            _ => Error::Registry(format!("{url}: {why}")),
        })
    }

    /// Layers a pull of this repository downloads at once.
    pub fn concurrency(&self) -> usize {
        self.reg.config.max_concurrent_downloads.max(1)
    }

    /// `GET /v2/<name>/<path>` with an `Accept` list.
    pub async fn get(&self, path: &str, accept: &[&str]) -> Result<reqwest::Response> {
        let mut h = HeaderMap::new();
        if !accept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&accept.join(", ")) {
                h.insert(ACCEPT, v);
            }
        }
        self.send(Method::GET, path, h).await
    }

    /// Whether this registry's foreign layers may be fetched from their URLs.
    pub fn allows_nondistributable(&self) -> bool {
        self.reg.config.allows_nondistributable(&self.host)
    }

    /// `GET` of a foreign layer from a URL its descriptor names, from
    /// byte `from` on; without the registry's credentials, which are not
    /// the URL's to see.
    pub async fn get_url(&self, url: &str, from: u64) -> Result<reqwest::Response> {
        let mut req = self.ep.http.get(url);
        if from > 0 {
            req = req.header(RANGE, format!("bytes={from}-"));
        }
        self.checked(req.send().await.map_err(transport)?).await
    }

    /// `GET` of a blob from byte `from` on (a Range request past 0).
    pub async fn get_blob(&self, digest: &str, from: u64) -> Result<reqwest::Response> {
        let mut h = HeaderMap::new();
        if from > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
                h.insert(RANGE, v);
            }
        }
        self.send(Method::GET, &format!("blobs/{digest}"), h).await
    }
}

/// The registry host a login's server address names: `host[:port]`
/// without scheme or path; docker.io's for its old index address.
pub fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_IO_API.to_owned(),
        h => h.to_owned(),
    }
}

/// The first `message` of a registry's error body
/// (`{"errors":[{"code":…,"message":…}]}`), with its code.
pub fn registry_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
    Some(match (code, msg) {
        ("", m) => m.to_owned(),
        (c, "") => c.to_lowercase(),
        (c, m) => format!("{}: {m}", c.to_lowercase().replace('_', " ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_as_docker_shows_them() {
        let b = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_message(b).as_deref(), Some("manifest unknown: manifest unknown"));
        assert_eq!(registry_message("<html>").as_deref(), None);
    }
}
