//! Networks and endpoints on the wire (`/networks`, NetworkingConfig,
//! NetworkSettings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Port bindings and endpoints, asked for at create and connect and
/// shown by inspect: the spec's models.
pub use bollard_stubs::models::{EndpointIpamConfig, EndpointSettings, NetworkingConfig, PortBinding, PortMap};

pub use bollard_stubs::models::{
    ConfigReference, EndpointResource, IpamConfig, NetworkConnectRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkPruneResponse,
};

/// IPAM as berth serves and reads it. The spec's model leaves `Options`
/// out when unset; dockerd sends it as `null`, and so does berth.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    #[serde(default)]
    pub driver: String,
    /// Each pool's fields may be `null` or missing, as Docker's SDKs send
    /// them.
    #[serde(default)]
    pub config: Option<Vec<IpamConfig>>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

/// `POST /networks/create`: the spec's request, and `CheckDuplicate`,
/// which API 1.44 dropped and older clients (docker 20.10, compose 1.29)
/// still send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkCreateRequest {
    #[serde(flatten)]
    pub spec: bollard_stubs::models::NetworkCreateRequest,
    #[serde(rename = "CheckDuplicate", default, skip_serializing_if = "Option::is_none")]
    pub check_duplicate: Option<bool>,
}

/// `GET /networks/{id}` and the entries of `GET /networks`: the spec's
/// `NetworkInspect` with every field dockerd always sends, `IPAM` in
/// berth's shape above.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigReference,
    pub config_only: bool,
    pub containers: BTreeMap<String, EndpointResource>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}
