//! `/networks/…`.

use std::collections::BTreeMap;

use berth_api_types as w;
use berth_network::store::{CreateNetwork, Network};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::{json_response, read_json, status_only, ApiError, Ctx, Reply};

/// A network on the wire, with the containers on it now.
fn wire(ctx: &Ctx, n: &Network) -> w::Network {
    let mut containers = BTreeMap::new();
    for c in ctx.engine.network_members(&n.id) {
        if let Some(a) = c.net.attachments.values().find(|a| a.network_id == n.id) {
            containers.insert(
                c.id.clone(),
                w::EndpointResource {
                    name: Some(c.name.trim_start_matches('/').to_owned()),
                    endpoint_id: Some(a.endpoint_id.clone()),
                    mac_address: Some(a.mac.clone()),
                    ipv4_address: Some(a.ip.map(|ip| format!("{ip}/{}", a.prefix)).unwrap_or_default()),
                    ipv6_address: Some(a.ip6.map(|ip| format!("{ip}/{}", a.prefix6)).unwrap_or_default()),
                },
            );
        }
    }
    let mut config: Vec<w::IpamConfig> = n
        .subnet
        .map(|s| w::IpamConfig {
            subnet: Some(s.to_string()),
            ip_range: n.ip_range.map(|r| r.to_string()),
            gateway: n.gateway.map(|g| g.to_string()),
            auxiliary_addresses: (!n.aux_addresses.is_empty())
                .then(|| n.aux_addresses.iter().map(|(k, ip)| (k.clone(), ip.to_string())).collect()),
        })
        .into_iter()
        .collect();
    if let Some(v6) = n.ipv6 {
        config.push(w::IpamConfig {
            subnet: Some(v6.subnet.to_string()),
            gateway: Some(v6.gateway.to_string()),
            ..Default::default()
        });
    }
    w::Network {
        name: n.name.clone(),
        id: n.id.clone(),
        created: n.created.clone(),
        scope: "local".into(),
        driver: n.driver.clone(),
        enable_ipv4: true,
        enable_ipv6: n.ipv6.is_some(),
        ipam: w::Ipam { driver: "default".into(), config: Some(config), options: None },
        internal: n.internal,
        attachable: n.attachable,
        ingress: false,
        config_from: w::ConfigReference { network: Some(String::new()) },
        config_only: false,
        containers,
        options: n.options.clone(),
        labels: n.labels.clone(),
    }
}

const FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

fn label_ok(n: &Network, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
        None => n.labels.contains_key(want),
    }
}

pub async fn list(ctx: &Ctx) -> Reply {
    let f = crate::system::filters(ctx)?;
    if let Some(k) = f.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError::bad(format!("invalid filter '{k}'")));
    }
    let any = |k: &str, ok: &dyn Fn(&str) -> bool| f.get(k).is_none_or(|vs| vs.iter().any(|v| ok(v)));
    let used: std::collections::BTreeSet<String> =
        ctx.engine.list().iter().flat_map(|c| c.networks.values().map(|e| e.network_id.clone())).collect();
    let mut out = vec![];
    for n in ctx.engine.networks.list().map_err(berth_engine::Error::from)? {
        let keep = any("name", &|v| n.name.contains(v))
            && any("id", &|v| n.id.starts_with(v))
            && any("driver", &|v| n.driver == v)
            && any("scope", &|v| v == "local")
            && any("type", &|v| if v == "builtin" { n.predefined } else { v == "custom" && !n.predefined })
            && any("dangling", &|v| (v == "true" || v == "1") == (!n.predefined && !used.contains(&n.id)))
            && f.get("label").is_none_or(|vs| vs.iter().all(|v| label_ok(&n, v)));
        if keep {
            out.push(wire(ctx, &n));
        }
    }
    json_response(StatusCode::OK, &out)
}

pub fn inspect(ctx: &Ctx, id: &str) -> Reply {
    let n = ctx.engine.networks.find(id).map_err(berth_engine::Error::from)?;
    json_response(StatusCode::OK, &wire(ctx, &n))
}

pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let body: Option<w::NetworkCreateRequest> = read_json(req).await?;
    let w::NetworkCreateRequest { spec: b, check_duplicate: _ } =
        body.ok_or_else(|| ApiError::bad("network create needs a body"))?;
    // Every field of the spec's request, so that one it grows is a build
    // error here until it is honoured or refused. `CheckDuplicate` asks
    // for what berth always does: a name is never taken twice.
    let w::spec::NetworkCreateRequest {
        name,
        driver,
        scope,
        internal,
        attachable,
        ingress,
        config_only,
        config_from,
        ipam,
        enable_ipv4,
        enable_ipv6,
        options,
        labels,
    } = b;
    if name.is_empty() {
        return Err(ApiError::bad("network name cannot be empty"));
    }
    // Swarm's kinds of network, and IPv6-only ones, are refused by name.
    if enable_ipv4 == Some(false) {
        return Err(ApiError::bad("EnableIPv4 false: berth's networks are IPv4 networks"));
    }
    if ingress == Some(true) {
        return Err(ApiError::bad(
            "Ingress: an ingress network needs swarm mode, and this node is not part of a swarm",
        ));
    }
    if config_only == Some(true) || config_from.is_some_and(|c| c.network.is_some_and(|n| !n.is_empty())) {
        return Err(ApiError::bad("ConfigOnly/ConfigFrom: berth has no configuration-only networks"));
    }
    let scope = scope.unwrap_or_default();
    if !matches!(scope.as_str(), "" | "local") {
        return Err(ApiError::bad(format!("Scope {scope:?}: berth's networks are local")));
    }
    let ipam = ipam.unwrap_or_default();
    let ipam_driver = ipam.driver.unwrap_or_default();
    if !matches!(ipam_driver.as_str(), "" | "default") {
        return Err(ApiError::bad(format!("IPAM driver {ipam_driver:?}: berth has only the default")));
    }
    if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad("IPAM Options: the default IPAM driver takes none"));
    }
    let (pools6, pools): (Vec<w::IpamConfig>, Vec<w::IpamConfig>) =
        ipam.config.unwrap_or_default().into_iter().partition(|p| p.subnet.as_deref().is_some_and(|s| s.contains(':')));
    if pools.len() > 1 || pools6.len() > 1 {
        return Err(ApiError::bad("only one IPv4 and one IPv6 subnet per network are supported"));
    }
    let enable_ipv6 = enable_ipv6 == Some(true);
    let pool6 = pools6.into_iter().next();
    if let Some(p) = &pool6 {
        if !enable_ipv6 {
            return Err(ApiError::bad(format!(
                "IPv6 subnet {} given, but EnableIPv6 is not",
                p.subnet.as_deref().unwrap_or_default()
            )));
        }
        if p.ip_range.as_ref().is_some_and(|r| !r.is_empty())
            || p.auxiliary_addresses.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(ApiError::bad("IPRange and AuxiliaryAddresses of an IPv6 pool are not supported"));
        }
    }
    let pool = pools.into_iter().next().unwrap_or_default();
    let given = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let (subnet, gateway, ip_range) = (given(&pool.subnet), given(&pool.gateway), given(&pool.ip_range));
    let aux: BTreeMap<String, String> = pool.auxiliary_addresses.unwrap_or_default().into_iter().collect();
    if subnet.is_none() && (gateway.is_some() || ip_range.is_some() || !aux.is_empty()) {
        return Err(ApiError::bad("a gateway, ip range or auxiliary address needs a subnet"));
    }
    let r = CreateNetwork {
        name,
        driver: driver.unwrap_or_default(),
        internal: internal.unwrap_or(false),
        attachable: attachable.unwrap_or(false),
        labels: labels.unwrap_or_default().into_iter().collect(),
        options: options.unwrap_or_default().into_iter().collect(),
        subnet,
        gateway,
        ip_range,
        aux_addresses: aux,
        enable_ipv6,
        subnet6: pool6.as_ref().and_then(|p| given(&p.subnet)),
        gateway6: pool6.as_ref().and_then(|p| given(&p.gateway)),
    };
    let n = ctx.engine.network_create(r).await?;
    json_response(StatusCode::CREATED, &w::NetworkCreateResponse { id: n.id, warning: String::new() })
}

pub async fn remove(ctx: &Ctx, id: &str) -> Reply {
    ctx.engine.network_remove(id).await?;
    status_only(StatusCode::NO_CONTENT)
}

pub async fn connect(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let body: Option<w::NetworkConnectRequest> = read_json(req).await?;
    let b = body.ok_or_else(|| ApiError::bad("connect needs a body"))?;
    let cfg = crate::create::endpoint_config(b.endpoint_config.unwrap_or_default(), "EndpointConfig.")?;
    ctx.engine.network_connect(id, &b.container, cfg).await?;
    status_only(StatusCode::OK)
}

pub async fn disconnect(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let body: Option<w::NetworkDisconnectRequest> = read_json(req).await?;
    let b = body.ok_or_else(|| ApiError::bad("disconnect needs a body"))?;
    ctx.engine.network_disconnect(id, &b.container, b.force.unwrap_or(false)).await?;
    status_only(StatusCode::OK)
}

pub async fn prune(ctx: &Ctx) -> Reply {
    let removed = ctx.engine.network_prune().await?;
    json_response(StatusCode::OK, &w::NetworkPruneResponse { networks_deleted: Some(removed) })
}
