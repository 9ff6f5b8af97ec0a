//! Image references, parsed and normalised as Docker does
//! (distribution/reference `ParseNormalizedNamed`): `busybox` is
//! `docker.io/library/busybox`, a first component with a `.` or `:` or
//! equal to `localhost` is a registry, and the error texts are Docker's.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry of names without one.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
/// The tag of a reference that names none.
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;

/// Why a reference is invalid, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    Format,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("repository name must have at least one component")]
    Empty,
    #[error("repository name must not be more than 255 characters")]
    TooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    #[error("{0}")]
    Digest(#[from] DigestError),
}

/// A normalised image reference: registry, repository path, and a tag, a
/// digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise, as `docker pull` and `docker tag` read a name.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ReferenceError::HexName(s.to_owned()));
        }
        let (domain, remainder) = split_domain(s);
        let remote = remainder.split_once(':').map_or(remainder.as_str(), |(n, _)| n);
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_owned()));
        }
        let (rest, digest) = match remainder.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d)?)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (rest, None),
        };
        if !valid_domain(&domain) || !path.split('/').all(valid_component) {
            return Err(ReferenceError::Format);
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Format);
            }
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ReferenceError::TooLong);
        }
        Ok(Reference { domain, path: path.to_owned(), tag: tag.map(str::to_owned), digest })
    }

    /// With `latest` when it names neither a tag nor a digest (Docker's
    /// `TagNameOnly`).
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    /// A copy with this tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Format);
        }
        Ok(Reference { tag: Some(tag.to_owned()), digest: None, ..self.clone() })
    }

    /// A copy with this digest and no tag (a repo digest).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { tag: None, digest: Some(digest), ..self.clone() }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path on its registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as Docker shows it: `busybox`, `user/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(short) if !short.contains('/') => short.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker shows it: `busybox:latest`.
    pub fn familiar(&self) -> String {
        self.format(self.familiar_name())
    }

    fn format(&self, mut name: String) -> String {
        if let Some(t) = &self.tag {
            name.push(':');
            name.push_str(t);
        }
        if let Some(d) = &self.digest {
            name.push('@');
            name.push_str(&d.to_string());
        }
        name
    }
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(self.name()))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// Docker's `splitDockerDomain`.
fn split_domain(s: &str) -> (String, String) {
    let (mut domain, mut remainder) = match s.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first => {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), s.to_owned()),
    };
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_PREFIX}{remainder}");
    }
    (domain, remainder)
}

fn parse_digest(s: &str) -> Result<Digest, ReferenceError> {
    // The reference grammar wants an algorithm and at least 32 hex digits;
    // anything else is a format error before the digest's own checks.
    let Some((alg, hex)) = s.split_once(':') else { return Err(ReferenceError::Format) };
    if alg.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReferenceError::Format);
    }
    Ok(s.parse()?)
}

/// `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by dots, with an optional
/// `:port`; or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `c` is one component of a repository path:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Whether `t` is a tag: `[\w][\w.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).map(|r| r.with_default_tag().to_string()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        let hex = "a".repeat(64);
        let cases = [
            ("busybox", "docker.io/library/busybox:latest".to_owned()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_owned()),
            ("user/app", "docker.io/user/app:latest".to_owned()),
            ("docker.io/busybox", "docker.io/library/busybox:latest".to_owned()),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest".to_owned()),
            ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag".to_owned()),
            ("localhost/app", "localhost/app:latest".to_owned()),
            ("example.com/x/y/z", "example.com/x/y/z:latest".to_owned()),
            ("[::1]:5000/app:v1", "[::1]:5000/app:v1".to_owned()),
            (&*format!("busybox@sha256:{hex}"), format!("docker.io/library/busybox@sha256:{hex}")),
            (&*format!("busybox:1@sha256:{hex}"), format!("docker.io/library/busybox:1@sha256:{hex}")),
            ("my_app.v2__x-y---z", "docker.io/library/my_app.v2__x-y---z:latest".to_owned()),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "{input}");
        }
        let r = Reference::parse("localhost:5000/a/b:tag").unwrap();
        assert_eq!((r.domain(), r.path(), r.tag()), ("localhost:5000", "a/b", Some("tag")));
    }

    #[test]
    fn familiar_forms() {
        let f = |s: &str| Reference::parse(s).unwrap().with_default_tag().familiar();
        assert_eq!(f("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(f("user/app:1"), "user/app:1");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b:latest");
        assert_eq!(f("localhost:5000/a"), "localhost:5000/a:latest");
    }

    #[test]
    fn docker_error_texts() {
        let hex = "0".repeat(64);
        let cases = [
            ("Busybox", "error: invalid reference format: repository name (library/Busybox) must be lowercase"),
            ("", "error: repository name must have at least one component"),
            ("busybox:", "error: invalid reference format"),
            ("busybox:-x", "error: invalid reference format"),
            ("a//b", "error: invalid reference format"),
            ("-a", "error: invalid reference format"),
            ("a-", "error: invalid reference format"),
            ("a..b", "error: invalid reference format"),
            ("busybox@sha256:abc", "error: invalid reference format"),
            ("busybox@md5:0123456789abcdef0123456789abcdef", "error: unsupported digest algorithm"),
            ("local host/a", "error: invalid reference format"),
            ("localhost:po/a", "error: invalid reference format"),
            (&*hex, "error: invalid repository name (0000000000000000000000000000000000000000000000000000000000000000), cannot specify 64-byte hexadecimal strings"),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "{input:?}");
        }
        let long = format!("a/{}", "b".repeat(260));
        assert_eq!(full(&long), "error: repository name must not be more than 255 characters");
        let long_tag = format!("a:{}", "t".repeat(129));
        assert_eq!(full(&long_tag), "error: invalid reference format");
    }
}
