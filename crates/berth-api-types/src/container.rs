//! Containers on the wire: the create and commit bodies, HostConfig and
//! inspect. Each is the spec's model, with the few fields it lacks that
//! berth reads or sends.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use bollard_stubs::models as spec;

/// A container's Config: the spec's, and two fields it lacks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(flatten)]
    pub spec: spec::ContainerConfig,
    /// The main network's MAC address. API 1.44 moved it to the endpoint
    /// and 1.52 dropped it from the model; Docker's CLI before 25 sends it.
    #[serde(rename = "MacAddress", default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// berth's, as podman's inspect names it: `none`, `kill`, `restart`
    /// or `stop` when the health check turns unhealthy.
    #[serde(rename = "HealthcheckOnFailureAction", default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_on_failure_action: Option<String>,
}

/// A container's HostConfig: the spec's, and `KernelMemoryTCP`, which
/// API 1.52 dropped from the model and berth still applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    #[serde(flatten)]
    pub spec: spec::HostConfig,
    #[serde(rename = "KernelMemoryTCP", default, skip_serializing_if = "Option::is_none")]
    pub kernel_memory_tcp: Option<i64>,
}

/// `POST /containers/create`: the spec's `ContainerCreateBody`, which is
/// the Config with HostConfig and NetworkingConfig, in berth's shape of
/// the first two.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerCreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default, skip_serializing_if = "Option::is_none")]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "NetworkingConfig", default, skip_serializing_if = "Option::is_none")]
    pub networking_config: Option<spec::NetworkingConfig>,
}

/// `GET /containers/{id}/json`: the spec's `ContainerInspectResponse`
/// with berth's Config and HostConfig, and the NetworkSettings of the
/// API versions berth serves, whose address fields at the top (the
/// default bridge's, which API 1.52 dropped) scripts still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerInspect {
    #[serde(flatten)]
    pub spec: spec::ContainerInspectResponse,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
    #[serde(rename = "Config")]
    pub config: ContainerConfig,
    #[serde(rename = "NetworkSettings")]
    pub network_settings: Value,
}

/// The fields that Docker always sends as `null` when unset and that the
/// spec's models leave out; `(object, keys)`, the object as a JSON
/// pointer into the answer. Read off dockerd 20.10's inspect.
pub const INSPECT_NULLS: &[(&str, &[&str])] = &[
    ("", &["ExecIDs"]),
    (
        "/HostConfig",
        &[
            "Binds",
            "VolumesFrom",
            "CapAdd",
            "CapDrop",
            "ExtraHosts",
            "GroupAdd",
            "Links",
            "SecurityOpt",
            "DeviceCgroupRules",
            "DeviceRequests",
            "MemorySwappiness",
            "PidsLimit",
        ],
    ),
    ("/Config", &["Cmd", "Volumes", "Entrypoint", "OnBuild"]),
];

/// The fields of an endpoint that Docker always sends as `null` when
/// unset (in inspect's `NetworkSettings.Networks`).
pub const ENDPOINT_NULLS: &[&str] = &["IPAMConfig", "Links", "Aliases", "DriverOpts"];

/// Insert `null` for each of `keys` that the object `v` lacks.
pub fn fill_nulls(v: &mut Value, keys: &[&str]) {
    if let Value::Object(m) = v {
        for k in keys {
            m.entry(*k).or_insert(Value::Null);
        }
    }
}

/// A JSON body whose Cmd, Entrypoint and Shell may each be a string,
/// which Docker reads as a list of one (moby's `StrSlice`); the spec's
/// models take lists only.
pub fn normalize_str_slices(v: &mut Value) {
    if let Value::Object(m) = v {
        for key in ["Cmd", "Entrypoint", "Shell"] {
            if let Some(s @ Value::String(_)) = m.get_mut(key) {
                *s = Value::Array(vec![s.take()]);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_create_body_reads_into_the_spec_s_models_and_back() {
        let mut v: Value = serde_json::from_str(
            r#"{"Image":"busybox","Cmd":"echo hi","MacAddress":"02:42:ac:11:00:09","ExposedPorts":{"80/tcp":{}},
                "HostConfig":{"Memory":1024,"KernelMemoryTCP":5,"RestartPolicy":{"Name":"always"}},
                "NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":["a"]}}}}"#,
        )
        .unwrap();
        normalize_str_slices(&mut v);
        let r: ContainerCreateRequest = serde_json::from_value(v).unwrap();
        assert_eq!(r.config.spec.cmd, Some(vec!["echo hi".to_owned()]));
        assert_eq!(r.config.spec.exposed_ports, Some(vec!["80/tcp".to_owned()]));
        assert_eq!(r.config.mac_address.as_deref(), Some("02:42:ac:11:00:09"));
        let h = r.host_config.clone().unwrap();
        assert_eq!((h.spec.memory, h.kernel_memory_tcp), (Some(1024), Some(5)));
        let eps = r.networking_config.clone().unwrap().endpoints_config.unwrap();
        assert_eq!(eps["n"].aliases, Some(vec!["a".to_owned()]));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["HostConfig"]["KernelMemoryTCP"], 5);
        assert_eq!(back["ExposedPorts"]["80/tcp"], serde_json::json!({}));
    }

    #[test]
    fn nulls_fill_only_what_is_missing() {
        let mut v = serde_json::json!({"Binds": ["/a:/b"]});
        fill_nulls(&mut v, &["Binds", "Links"]);
        assert_eq!(v, serde_json::json!({"Binds": ["/a:/b"], "Links": null}));
    }
}
