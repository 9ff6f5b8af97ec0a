//! Networks and endpoints on the wire (`/networks`, NetworkingConfig,
//! NetworkSettings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One host binding of a container port.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", default, skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", default, skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    #[serde(rename = "LinkLocalIPs", default, skip_serializing_if = "Option::is_none")]
    pub link_local_ips: Option<Vec<String>>,
}

/// A container's endpoint on a network: asked for at create and connect,
/// reported by inspect.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig", default)]
    pub ipam_config: Option<EndpointIpamConfig>,
    #[serde(default)]
    pub links: Option<Vec<String>>,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    #[serde(default)]
    pub mac_address: String,
    #[serde(rename = "NetworkID", default)]
    pub network_id: String,
    #[serde(rename = "EndpointID", default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen", default)]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway", default)]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", default)]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "DNSNames", default)]
    pub dns_names: Option<Vec<String>>,
    #[serde(default)]
    pub driver_opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkingConfig {
    #[serde(default)]
    pub endpoints_config: Option<BTreeMap<String, EndpointSettings>>,
}

pub use bollard_stubs::models::{
    ConfigReference, EndpointResource, IpamConfig, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkPruneResponse,
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

/// `POST /networks/{id}/connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConnectRequest {
    pub container: String,
    #[serde(default)]
    pub endpoint_config: Option<EndpointSettings>,
}
