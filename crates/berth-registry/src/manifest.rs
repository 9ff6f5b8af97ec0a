//! Manifests and indexes, Docker's and OCI's, and the choice of one
//! platform's manifest from an index.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::{Error, Result};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a pull asks a registry for, best first.
pub const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A manifest document as fetched.
#[derive(Debug)]
pub enum Document {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Read a manifest or index by its media type (the `Content-Type` of the
/// answer, else its `mediaType`); schema 1 is refused.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Document> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("malformed manifest: {e}")))?;
    let declared = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    let kind = match content_type.split(';').next().unwrap_or("").trim() {
        t @ (DOCKER_MANIFEST | DOCKER_LIST | OCI_MANIFEST | OCI_INDEX | DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => t,
        _ if !declared.is_empty() => declared,
        // An OCI document may leave its media type out: an index has
        // `manifests`, a manifest `layers`.
        _ if v.get("manifests").is_some() => OCI_INDEX,
        _ => OCI_MANIFEST,
    };
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) || kind.starts_with(DOCKER_SCHEMA1) {
        return Err(Error::Invalid(
            "schema 1 manifests are not supported: the image must be pushed again by a newer client".into(),
        ));
    }
    match kind {
        DOCKER_LIST | OCI_INDEX => serde_json::from_value(v)
            .map(|i| Document::Index(Box::new(i)))
            .map_err(|e| Error::Invalid(format!("malformed index: {e}"))),
        DOCKER_MANIFEST | OCI_MANIFEST => serde_json::from_value(v)
            .map(|m| Document::Manifest(Box::new(m)))
            .map_err(|e| Error::Invalid(format!("malformed manifest: {e}"))),
        other => Err(Error::Invalid(format!("unsupported manifest media type {other:?}"))),
    }
}

/// An OS, architecture and variant: the host's, or `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform berthd runs on, in Go's names.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), arch: arch.into(), variant: variant.map(str::to_owned) }
    }

    /// `os/arch[/variant]`, as `platform=` gives it; an empty string is the
    /// host's.
    pub fn parse(s: &str) -> Result<Platform> {
        if s.is_empty() {
            return Ok(Platform::host());
        }
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::Invalid(format!("\"{s}\": unknown operating system or architecture: invalid argument"));
        let (os, arch, variant) = match parts.as_slice() {
            [os] => (*os, Platform::host().arch, None),
            [os, arch] => (*os, (*arch).to_owned(), None),
            [os, arch, v] => (*os, (*arch).to_owned(), Some((*v).to_owned())),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() || variant.as_deref() == Some("") {
            return Err(bad());
        }
        let arch = match arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            a => a.to_owned(),
        };
        Ok(Platform { os: os.to_owned(), arch, variant })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The manifest of `want` among an index's, as containerd's matcher picks
/// it: same OS and architecture, and the variant asked for (arm64 `v8`
/// matches none given); the first match wins.
pub fn choose<'a>(index: &'a ImageIndex, want: &Platform) -> Result<&'a Descriptor> {
    // arm64's only variant is v8, which an index may leave out.
    let norm = |arch: &str, v: Option<&str>| match v {
        Some("v8") if arch == "arm64" => None,
        v => v.map(str::to_owned),
    };
    index
        .manifests()
        .iter()
        .find(|d| {
            let Some(p) = d.platform() else { return false };
            p.os().to_string() == want.os
                && p.architecture().to_string() == want.arch
                && (want.variant.is_none()
                    || norm(&want.arch, p.variant().as_deref()) == norm(&want.arch, want.variant.as_deref()))
        })
        .ok_or_else(|| Error::NotFound(format!("no matching manifest for {want} in the manifest list entries")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, v))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = v {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST, "size": 10,
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)), "platform": p
                })
            })
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        match parse("", body.to_string().as_bytes()).unwrap() {
            Document::Index(i) => *i,
            Document::Manifest(_) => panic!("not an index"),
        }
    }

    #[test]
    fn a_platform_is_chosen_as_containerd_chooses_it() {
        let i = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
        ]);
        let pick = |s: &str| choose(&i, &Platform::parse(s).unwrap()).map(|d| d.digest().to_string());
        assert!(pick("linux/amd64").unwrap().contains("2222"));
        assert!(pick("linux/arm/v7").unwrap().contains("1111"));
        assert!(pick("linux/arm64").unwrap().contains("3333"));
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert_eq!(e, "no matching manifest for linux/s390x in the manifest list entries");
        assert!(Platform::parse("linux/").is_err());
        assert_eq!(Platform::parse("").unwrap(), Platform::host());
    }

    #[test]
    fn schema_1_is_refused_and_types_are_read_from_the_answer() {
        let e = parse(DOCKER_SCHEMA1_SIGNED, br#"{"schemaVersion":1,"name":"x"}"#).err().unwrap();
        assert!(e.to_string().contains("schema 1"), "{e}");
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,
                "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
            "layers":[]}"#;
        assert!(matches!(parse(DOCKER_MANIFEST, m).unwrap(), Document::Manifest(_)));
        assert!(parse("", b"not json").is_err());
    }
}
