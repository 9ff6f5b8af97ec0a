//! The Docker Engine API's JSON, field for field (moby `api/swagger.yaml`).
//! Only serde lives here; the conversion to berth's own types is in
//! berth-api.

pub mod container;
pub mod network;
pub mod volume;
pub use container::*;
pub use network::*;
pub use volume::*;

/// Every model of moby's `api/swagger.yaml`, as `bollard-stubs` generates
/// them. berth takes its wire types from here; the hand-kept ones below
/// are those still to move, and those the server needs in another shape.
pub use bollard_stubs::models as spec;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API version berth speaks, and the oldest it accepts.
pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.40";

pub use bollard_stubs::models::{
    ContainerCreateResponse as CreateResponse, ContainerWaitExitError as WaitError,
    ContainerWaitResponse as WaitResponse, ErrorResponse, ExecStartConfig as ExecStartRequest,
};

/// The answer to a create that makes an object with an id, `{"Id": …}`.
/// The spec's `IdResponse` writes the key as `id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdResponse {
    pub id: String,
}

/// An entry of `GET /containers/json` and of `/system/df`: the spec's
/// models.
pub use bollard_stubs::models::{
    ContainerSummary, ContainerSummaryHostConfig, ContainerSummaryNetworkSettings, ContainerSummaryStateEnum,
    PortSummary, PortSummaryTypeEnum,
};

/// An entry of `GET /images/json` and of `/system/df`: the spec's model.
pub use bollard_stubs::models::ImageSummary;

/// One of `GET /events`: the spec's `EventMessage`, and the fields of the
/// old API (`status`, `id`, `from`) that dockerd still sends for
/// containers and images and that the docker CLI 20.10 reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub spec: bollard_stubs::models::EventMessage,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
}

/// `POST /containers/{id}/exec`: the spec's request, and `Detach`, which
/// Docker's CLI still sends for `exec -d`; the start request decides, as
/// in moby (which reads it only there).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecCreateRequest {
    #[serde(flatten)]
    pub spec: bollard_stubs::models::ExecConfig,
    #[serde(rename = "Detach", default, skip_serializing_if = "Option::is_none")]
    pub detach: Option<bool>,
}

/// `GET /exec/{id}/json`: the spec's model. dockerd sends `ExitCode` as
/// `null` while the exec runs, which the model leaves out.
pub use bollard_stubs::models::{ExecInspectResponse as ExecInspect, ProcessConfig as ExecProcessConfig};

/// `X-Docker-Container-Path-Stat` of the archive endpoints (base64 JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerPathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode`: permission bits with its own type bits.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl ContainerPathStat {
    /// Go's `os.ModeDir`.
    pub const MODE_DIR: u32 = 1 << 31;
}

/// `GET /containers/{id}/stats`: the spec's model.
pub use bollard_stubs::models::ContainerStatsResponse as StatsResponse;

/// `POST /containers/{id}/update`: the spec's model.
pub use bollard_stubs::models::ContainerUpdateBody as UpdateConfig;

/// `GET /system/df` of the API versions berth serves (up to 1.50): the
/// spec's 1.53 model is the later shape, a summary per kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    #[serde(default)]
    pub layers_size: i64,
    #[serde(default)]
    pub images: Option<Vec<ImageSummary>>,
    #[serde(default)]
    pub containers: Option<Vec<ContainerSummary>>,
    #[serde(default)]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default)]
    pub build_cache: Option<Vec<Value>>,
}
