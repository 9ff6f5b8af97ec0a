//! Image configs: the Docker form (`application/vnd.docker.container.image.v1+json`)
//! and the OCI form share one layout; fields Docker adds (Healthcheck,
//! OnBuild, Shell, ...) are read when present, and anything else is kept,
//! so a config re-serialised for display loses nothing. The image id is the
//! digest of the config's bytes as stored, never of a re-serialisation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::DiffId;
use crate::error::{Error, Result};

/// The `config` object: how to run a container of this image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<DiffId>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// This machine's architecture in the image spec's (Go's) words.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl ImageConfig {
    /// Parse and check a config blob.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        let c: ImageConfig =
            serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("invalid image config: {e}")))?;
        if c.rootfs.typ != "layers" {
            return Err(Error::Invalid(format!(
                "invalid image config: rootfs type {:?} is not \"layers\"",
                c.rootfs.typ
            )));
        }
        let non_empty = c.history.iter().filter(|h| !h.empty_layer).count();
        if !c.history.is_empty() && non_empty != c.rootfs.diff_ids.len() {
            return Err(Error::Invalid(format!(
                "invalid image config: {} history entries with layers for {} layers",
                non_empty,
                c.rootfs.diff_ids.len()
            )));
        }
        Ok(c)
    }

    /// The run config, empty when the image has none.
    pub fn run(&self) -> RunConfig {
        self.config.clone().unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOCKER: &str = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
      "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1:2","ExposedPorts":{"80/tcp":{}},
        "Volumes":{"/data":{}},"Labels":{"a":"b"},"StopSignal":"SIGINT",
        "Healthcheck":{"Test":["CMD","true"]},"OnBuild":["RUN x"],"ArgsEscaped":true},
      "rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
      "history":[{"created_by":"ADD x"},{"created_by":"CMD","empty_layer":true}],
      "container_config":{"Hostname":"h"}}"#;

    #[test]
    fn docker_fields_and_extras() {
        let c = ImageConfig::parse(DOCKER.as_bytes()).unwrap();
        let r = c.run();
        assert_eq!(r.cmd.as_deref(), Some(&["sh".to_owned()][..]));
        assert_eq!(r.working_dir.as_deref(), Some("/w"));
        assert_eq!(r.stop_signal.as_deref(), Some("SIGINT"));
        assert!(r.healthcheck.is_some() && r.on_build.is_some());
        assert!(r.other.contains_key("ArgsEscaped"));
        assert!(c.other.contains_key("container_config"));
        assert_eq!(c.rootfs.diff_ids.len(), 1);
    }

    #[test]
    fn bad_configs() {
        assert!(ImageConfig::parse(b"not json").is_err());
        assert!(ImageConfig::parse(br#"{"rootfs":{"type":"other","diff_ids":[]}}"#).is_err());
        assert!(ImageConfig::parse(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}"#).is_err());
        let mismatch = br#"{"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"ADD"}]}"#;
        assert!(ImageConfig::parse(mismatch).is_err());
    }
}
