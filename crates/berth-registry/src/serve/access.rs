//! Who may do what on `berth-registry serve`: users from an htpasswd file
//! (bcrypt, as `htpasswd -B` writes it), an access list, and the Bearer
//! tokens of the server's own token endpoint.
//!
//! A token is a JWT signed with HMAC-SHA256 under a key kept in the
//! storage root (`token.key`, 0600), so tokens outlive a restart. Its
//! claims are those of the distribution token spec: `iss`, `sub`, `aud`
//! (the service), `exp`, `nbf`, `iat`, `jti` and `access`, the granted
//! scopes. A refresh token (`typ: refresh`) stands for its user alone and
//! is good for getting access tokens, not for requests.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The `iss` of the server's tokens.
pub const ISSUER: &str = "berth-registry";
/// How long an access token is good for, in seconds.
pub const TOKEN_SECS: u64 = 300;
/// How long a refresh token is good for (90 days).
pub const REFRESH_SECS: u64 = 90 * 24 * 3600;

/// An action on a repository.
pub const PULL: &str = "pull";
pub const PUSH: &str = "push";
pub const DELETE: &str = "delete";

/// `type:name:actions`, as a token scope names what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// `repository:<name>:<a,b>` or `registry:catalog:*`; a name may
    /// hold `:` (a host and port), the actions are after the last one.
    pub fn parse_scope(s: &str) -> Option<Access> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let actions: Vec<String> = actions.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect();
        (!kind.is_empty() && !name.is_empty()).then(|| Access { kind: kind.into(), name: name.into(), actions })
    }

    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// One line of the access list: `<who> <repository pattern> <actions>`.
/// `who` is a user, `*` (any user that signed in) or `anonymous`; the
/// pattern is a name, or ends in `*` to take every name it begins; the
/// actions are `pull`, `push`, `delete`, comma-separated, or `*`. The
/// pattern `catalog` with action `*` grants the catalog.
#[derive(Debug, Clone)]
struct Rule {
    who: String,
    pattern: String,
    actions: Vec<String>,
}

/// Who is asking: a user of the htpasswd file, or no one.
pub type Subject = Option<String>;

/// The server's users and its rules.
#[derive(Debug)]
pub struct Policy {
    users: HashMap<String, String>,
    rules: Option<Vec<Rule>>,
    /// Passwords already checked: bcrypt is slow on purpose, and a pull
    /// makes many requests.
    checked: Mutex<HashMap<String, [u8; 32]>>,
}

impl Policy {
    /// No users and no rules: everyone may do everything.
    pub fn open() -> Policy {
        Policy { users: HashMap::new(), rules: None, checked: Mutex::new(HashMap::new()) }
    }

    /// Users from `htpasswd` and, when given, rules from `acl`.
    pub fn load(htpasswd: Option<&Path>, acl: Option<&Path>) -> Result<Policy, String> {
        let mut p = Policy::open();
        if let Some(path) = htpasswd {
            let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (user, hash) =
                    line.split_once(':').ok_or_else(|| format!("{}:{}: not user:hash", path.display(), i + 1))?;
                if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                    return Err(format!(
                        "{}:{}: the password of {user} is not a bcrypt hash (make the file with htpasswd -B)",
                        path.display(),
                        i + 1
                    ));
                }
                p.users.insert(user.to_owned(), hash.to_owned());
            }
        }
        if let Some(path) = acl {
            let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut rules = vec![];
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let f: Vec<&str> = line.split_whitespace().collect();
                let [who, pattern, actions] = f[..] else {
                    return Err(format!("{}:{}: not `<who> <repository> <actions>`", path.display(), i + 1));
                };
                let actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
                if let Some(bad) = actions.iter().find(|a| ![PULL, PUSH, DELETE, "*"].contains(&a.as_str())) {
                    return Err(format!("{}:{}: unknown action {bad:?}", path.display(), i + 1));
                }
                rules.push(Rule { who: who.into(), pattern: pattern.into(), actions });
            }
            p.rules = Some(rules);
        }
        Ok(p)
    }

    /// Whether requests must name a user.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether `user` and `password` are one of the users.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else { return false };
        let fp: [u8; 32] = <Sha256 as sha2::Digest>::digest(format!("{user}\0{password}").as_bytes()).into();
        if self.checked.lock().is_ok_and(|m| m.get(user) == Some(&fp)) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            if let Ok(mut m) = self.checked.lock() {
                m.insert(user.to_owned(), fp);
            }
        }
        ok
    }

    /// The actions of `want` that `who` may take.
    pub fn grant(&self, who: &Subject, want: &Access) -> Vec<String> {
        let allowed: Vec<String> = match &self.rules {
            // No rules: a user that signed in may do anything; no one
            // else may, unless the server has no users at all.
            None => {
                if who.is_some() || self.users.is_empty() {
                    vec!["*".into()]
                } else {
                    vec![]
                }
            }
            Some(rules) => rules
                .iter()
                .filter(|r| match (r.who.as_str(), who) {
                    ("anonymous", None) => true,
                    ("*", Some(_)) => true,
                    (u, Some(w)) => u == w,
                    _ => false,
                })
                .filter(|r| match want.kind.as_str() {
                    "registry" => r.pattern == "catalog" || r.pattern == "*",
                    "repository" => match r.pattern.strip_suffix('*') {
                        Some(prefix) => want.name.starts_with(prefix),
                        None => r.pattern == want.name,
                    },
                    _ => false,
                })
                .flat_map(|r| r.actions.clone())
                .collect(),
        };
        if allowed.iter().any(|a| a == "*") {
            return want.actions.clone();
        }
        want.actions.iter().filter(|a| allowed.contains(a)).cloned().collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub aud: String,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
    /// `refresh` for a refresh token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub typ: String,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs and checks the server's tokens.
#[derive(Debug)]
pub struct Tokens {
    /// As long as SHA-256's block, HMAC's key size.
    key: [u8; 64],
    /// The `aud` of the tokens: the service the challenge names.
    pub service: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl Tokens {
    /// The key at `root/token.key`, made when missing.
    pub fn open(root: &Path, service: &str) -> std::io::Result<Tokens> {
        let path = root.join("token.key");
        let key = match fs::read(&path).ok().and_then(|k| <[u8; 64]>::try_from(k).ok()) {
            Some(k) => k,
            None => {
                let mut k = [0u8; 64];
                super::store::fill_random(&mut k)?;
                berth_core::atomic::write_atomic(&path, &k, berth_core::perm::RECORD)?;
                k
            }
        };
        Ok(Tokens { key, service: service.to_owned() })
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as hmac::digest::KeyInit>::new(&self.key.into())
    }

    /// A token for `sub` granting `access`, good for `secs`.
    pub fn issue(&self, sub: &str, access: Vec<Access>, secs: u64, typ: &str) -> std::io::Result<String> {
        let t = now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            aud: self.service.clone(),
            exp: t + secs,
            nbf: t.saturating_sub(1),
            iat: t,
            jti: super::store::random_id()?,
            access,
            typ: typ.into(),
        };
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(&claims).map_err(std::io::Error::other)?);
        let signed = format!("{header}.{body}");
        let mut m = self.mac();
        m.update(signed.as_bytes());
        Ok(format!("{signed}.{}", B64.encode(m.finalize().into_bytes())))
    }

    /// The claims of a token this server signed and that has not expired.
    pub fn check(&self, token: &str) -> Option<Claims> {
        let (signed, sig) = token.rsplit_once('.')?;
        let sig = B64.decode(sig).ok()?;
        let mut m = self.mac();
        m.update(signed.as_bytes());
        m.verify_slice(&sig).ok()?;
        let (header, body) = signed.split_once('.')?;
        let h: serde_json::Value = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
        if h["alg"] != "HS256" {
            return None;
        }
        let c: Claims = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        let t = now();
        (c.iss == ISSUER && c.aud == self.service && c.exp > t && c.nbf <= t).then_some(c)
    }
}

/// Whether `claims` grant `action` on repository `name`.
pub fn allows(claims: &Claims, kind: &str, name: &str, action: &str) -> bool {
    claims.typ.is_empty()
        && claims
            .access
            .iter()
            .any(|a| a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_service() {
        let tmp = crate::serve::TestDir::new("tokens");
        let d = tmp.0.clone();
        let t = Tokens::open(&d, "svc").unwrap();
        let a = Access::parse_scope("repository:team/app:pull,push").unwrap();
        assert_eq!(a.actions, ["pull", "push"]);
        let tok = t.issue("alice", vec![a.clone()], 60, "").unwrap();
        let c = t.check(&tok).unwrap();
        assert!(allows(&c, "repository", "team/app", "push"));
        assert!(!allows(&c, "repository", "team/other", "pull"));
        // Another byte in the claims breaks the signature.
        let mut parts: Vec<String> = tok.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        claims["access"][0]["name"] = "other".into();
        parts[1] = B64.encode(claims.to_string());
        assert!(t.check(&parts.join(".")).is_none());
        // The key survives a restart; another service's tokens do not pass.
        assert!(Tokens::open(&d, "svc").unwrap().check(&tok).is_some());
        assert!(Tokens::open(&d, "other").unwrap().check(&tok).is_none());
        assert!(t.check(&t.issue("alice", vec![], 0, "").unwrap()).is_none(), "expired");
        // A refresh token grants nothing by itself.
        let r = t.issue("alice", vec![a], 60, "refresh").unwrap();
        assert!(!allows(&t.check(&r).unwrap(), "repository", "team/app", "pull"));
        // A scope's name may carry a port.
        let a = Access::parse_scope("repository:127.0.0.1:5000/x:pull").unwrap();
        assert_eq!((a.name.as_str(), a.actions.len()), ("127.0.0.1:5000/x", 1));
    }

    #[test]
    fn the_access_list_grants_what_it_names() {
        let tmp = crate::serve::TestDir::new("acl");
        let d = tmp.0.clone();
        fs::write(
            d.join("htpasswd"),
            format!("alice:{}\nbob:{}\n", bcrypt::hash("a", 4).unwrap(), bcrypt::hash("b", 4).unwrap()),
        )
        .unwrap();
        fs::write(d.join("acl"), "alice * *\nbob team/* pull\nanonymous public pull # open\n").unwrap();
        let p = Policy::load(Some(&d.join("htpasswd")), Some(&d.join("acl"))).unwrap();
        assert!(p.check_password("alice", "a") && p.check_password("alice", "a"));
        assert!(!p.check_password("alice", "b") && !p.check_password("carol", "a"));
        let want = Access::parse_scope("repository:team/app:pull,push").unwrap();
        assert_eq!(p.grant(&Some("alice".into()), &want), ["pull", "push"]);
        assert_eq!(p.grant(&Some("bob".into()), &want), ["pull"]);
        assert!(p.grant(&None, &want).is_empty());
        let public = Access::parse_scope("repository:public:pull,push").unwrap();
        assert_eq!(p.grant(&None, &public), ["pull"]);
        // Without a list: users may do anything, the anonymous nothing.
        let p = Policy::load(Some(&d.join("htpasswd")), None).unwrap();
        assert_eq!(p.grant(&Some("bob".into()), &want), ["pull", "push"]);
        assert!(p.grant(&None, &want).is_empty());
        fs::write(d.join("bad"), "carol:{SHA}abc\n").unwrap();
        assert!(Policy::load(Some(&d.join("bad")), None).unwrap_err().contains("not a bcrypt hash"));
    }
}
