//! Credentials as Docker's clients send them (`X-Registry-Auth`), and the
//! registry's `WWW-Authenticate` challenge.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a client gives to reach a registry: a user and password, or an
/// identity token (an OAuth refresh token) from an earlier login, or a
/// registry token to send as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
    /// Sent by old clients; not used.
    #[serde(default)]
    pub email: String,
    /// The docker CLI's name for `username:password`, base64.
    #[serde(default)]
    pub auth: String,
}

impl Credentials {
    /// `X-Registry-Auth`: base64url (padded or not) of the JSON; an
    /// empty header or `{}` is no credentials.
    pub fn from_header(h: &str) -> Result<Option<Credentials>> {
        let h = h.trim();
        if h.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
            .map_err(|_| Error::Invalid("X-Registry-Auth is not base64".into()))?;
        let mut c: Credentials =
            serde_json::from_slice(&raw).map_err(|e| Error::Invalid(format!("X-Registry-Auth: {e}")))?;
        if c.username.is_empty() && !c.auth.is_empty() {
            let pair = base64::engine::general_purpose::STANDARD
                .decode(&c.auth)
                .map_err(|_| Error::Invalid("X-Registry-Auth: auth is not base64".into()))?;
            let pair = String::from_utf8_lossy(&pair).into_owned();
            let (u, p) = pair.split_once(':').unwrap_or((&pair, ""));
            c.username = u.to_owned();
            c.password = p.to_owned();
        }
        Ok((!c.is_empty()).then_some(c))
    }

    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.identity_token.is_empty() && self.registry_token.is_empty()
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// The token endpoint and its service; the scope the registry named.
    Bearer {
        realm: String,
        service: String,
        scope: String,
    },
}

/// The first challenge berth can answer among a response's headers.
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let (scheme, params) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut realm = String::new();
            let mut service = String::new();
            let mut scope = String::new();
            for (k, val) in params_of(params) {
                match k.as_str() {
                    "realm" => realm = val,
                    "service" => service = val,
                    "scope" => scope = val,
                    _ => {}
                }
            }
            (!realm.is_empty()).then_some(Challenge::Bearer { realm, service, scope })
        }
        _ => None,
    }
}

/// `k="v",k2=v2` pairs; quoted values may hold commas.
fn params_of(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else { break };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"').unwrap_or(q.len());
                (q[..end].to_owned(), q.get(end + 1..).unwrap_or(""))
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        out.push((k, v));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// A token endpoint's answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    /// Seconds; 60 when not given, as the token spec says.
    #[serde(default)]
    pub expires_in: u64,
    #[serde(default)]
    pub refresh_token: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: "registry.docker.io".into(),
                scope: "repository:library/busybox:pull,push".into()
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn the_registry_auth_header_reads_as_the_docker_cli_writes_it() {
        use base64::Engine as _;
        let json = br#"{"username":"u","password":"p:w","serveraddress":"127.0.0.1:5000"}"#;
        let h = base64::engine::general_purpose::URL_SAFE.encode(json);
        let c = Credentials::from_header(&h).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"auth":"dTpwOnc="}"#);
        let c = Credentials::from_header(&h).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        assert_eq!(Credentials::from_header("").unwrap(), None);
        let empty = base64::engine::general_purpose::URL_SAFE.encode(b"{}");
        assert_eq!(Credentials::from_header(&empty).unwrap(), None);
        assert!(Credentials::from_header("%%%").is_err());
    }
}
