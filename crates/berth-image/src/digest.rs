//! Content digests and the ids built from them.
//!
//! `Digest` is `algorithm:hex` as the OCI image spec defines it (sha256, or
//! sha512 where a registry uses it). `DiffId` (digest of an uncompressed
//! layer tar), `ChainId` (a layer and all below it) and `ImageId` (digest of
//! the image config) are distinct types over it, so one cannot be passed for
//! another.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sha2::Digest as _;

/// A digest that is not `sha256:<64 hex>` or `sha512:<128 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid checksum digest format")]
    Format,
    #[error("unsupported digest algorithm")]
    Algorithm,
    #[error("invalid checksum digest length")]
    Length,
}

/// Hash algorithms of the content store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// `algorithm:hex`, hex in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// sha256 of `data`.
    pub fn sha256(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, data)
    }

    /// `data` hashed with `alg`.
    pub fn of(alg: Algorithm, data: &[u8]) -> Digest {
        let mut h = alg.hasher();
        h.update(data);
        h.finish()
    }

    /// Whether `data` has this digest.
    pub fn verify(&self, data: &[u8]) -> std::result::Result<(), (Digest, Digest)> {
        let actual = Digest::of(self.alg, data);
        if actual == *self {
            Ok(())
        } else {
            Err((self.clone(), actual))
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::Format)?;
        let valid_alg = alg.starts_with(|c: char| c.is_ascii_alphabetic())
            && alg.chars().all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c));
        if !valid_alg || hex.is_empty() {
            return Err(DigestError::Format);
        }
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::Algorithm),
        };
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Format);
        }
        if hex.len() != alg.hex_len() {
            return Err(DigestError::Length);
        }
        Ok(Digest { alg, hex: hex.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.as_str(), self.hex)
    }
}

/// A running hash.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (alg, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest { alg, hex: berth_core::id::hex(&bytes) }
    }
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Digest);

        impl $name {
            pub fn digest(&self) -> &Digest {
                &self.0
            }
        }

        impl From<Digest> for $name {
            fn from(d: Digest) -> Self {
                $name(d)
            }
        }

        impl FromStr for $name {
            type Err = DigestError;
            fn from_str(s: &str) -> Result<Self, DigestError> {
                s.parse().map($name)
            }
        }

        impl TryFrom<String> for $name {
            type Error = DigestError;
            fn try_from(s: String) -> Result<Self, DigestError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(d: $name) -> String {
                d.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

digest_newtype!(
    /// sha256 of a layer's uncompressed tar.
    DiffId
);
digest_newtype!(
    /// A layer together with every layer below it (OCI image spec,
    /// "ChainID"): the store's key for an unpacked layer.
    ChainId
);
digest_newtype!(
    /// The digest of an image's config blob.
    ImageId
);

impl ChainId {
    /// The chain id of `diff` on top of `parent` (none for a base layer):
    /// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
    pub fn on(parent: Option<&ChainId>, diff: &DiffId) -> ChainId {
        match parent {
            None => ChainId(diff.0.clone()),
            Some(p) => ChainId(Digest::sha256(format!("{p} {diff}").as_bytes())),
        }
    }

    /// The chain ids of every prefix of `diffs`, bottom first.
    pub fn chain(diffs: &[DiffId]) -> Vec<ChainId> {
        let mut out: Vec<ChainId> = Vec::with_capacity(diffs.len());
        for d in diffs {
            let next = ChainId::on(out.last(), d);
            out.push(next);
        }
        out
    }
}

impl ImageId {
    /// The 12 hex digits Docker shows.
    pub fn short(&self) -> &str {
        &self.0.hex[..12]
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256(b""), d);
        assert_eq!("md5:abc".parse::<Digest>(), Err(DigestError::Algorithm));
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::Length));
        assert_eq!("sha256:".parse::<Digest>(), Err(DigestError::Format));
        assert_eq!(EMPTY.to_uppercase().replace("SHA", "sha").parse::<Digest>(), Err(DigestError::Format));
        assert_eq!("nocolon".parse::<Digest>(), Err(DigestError::Format));
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(long.parse::<Digest>().map(|d| d.algorithm()), Ok(Algorithm::Sha512));
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = DiffId::from(Digest::sha256(b"a"));
        let b = DiffId::from(Digest::sha256(b"b"));
        let chain = ChainId::chain(&[a.clone(), b.clone()]);
        assert_eq!(chain[0].digest(), a.digest());
        assert_eq!(chain[1].digest(), &Digest::sha256(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn serde_round_trip() {
        let id = ImageId::from(Digest::sha256(b"config"));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ImageId>(&json).ok(), Some(id));
        assert!(serde_json::from_str::<ImageId>("\"sha256:zz\"").is_err());
    }
}
