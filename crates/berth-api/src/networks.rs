//! `/networks/…`.

use std::collections::BTreeMap;

use berth_api_types as w;
use berth_network::store::{CreateNetwork, Network};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::{convert, json_response, read_json, status_only, ApiError, Ctx, Reply};

/// A network on the wire, with the containers on it now.
fn wire(ctx: &Ctx, n: &Network) -> w::Network {
    let mut containers = BTreeMap::new();
    for c in ctx.engine.network_members(&n.id) {
        if let Some(a) = c.net.attachments.values().find(|a| a.network_id == n.id) {
            containers.insert(
                c.id.clone(),
                w::NetworkContainer {
                    name: c.name.trim_start_matches('/').to_owned(),
                    endpoint_id: a.endpoint_id.clone(),
                    mac_address: a.mac.clone(),
                    ipv4_address: a.ip.map(|ip| format!("{ip}/{}", a.prefix)).unwrap_or_default(),
                    ipv6_address: String::new(),
                },
            );
        }
    }
    let config = n.subnet.map(|s| {
        vec![w::IpamPool {
            subnet: s.to_string(),
            ip_range: n.ip_range.map(|r| r.to_string()).unwrap_or_default(),
            gateway: n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            aux_addresses: None,
        }]
    });
    w::Network {
        name: n.name.clone(),
        id: n.id.clone(),
        created: n.created.clone(),
        scope: "local".into(),
        driver: n.driver.clone(),
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: w::Ipam {
            driver: "default".into(),
            config: Some(config.unwrap_or_default()),
            options: Some(BTreeMap::new()),
        },
        internal: n.internal,
        attachable: n.attachable,
        ingress: false,
        config_from: BTreeMap::from([("Network".to_owned(), String::new())]),
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
    let b = body.ok_or_else(|| ApiError::bad("network create needs a body"))?;
    if b.name.is_empty() {
        return Err(ApiError::bad("network name cannot be empty"));
    }
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "IPv6 networks are not supported"));
    }
    let pools = b.ipam.as_ref().and_then(|i| i.config.clone()).unwrap_or_default();
    let pools: Vec<w::IpamPool> = pools.into_iter().filter(|p| !p.subnet.contains(':')).collect();
    if pools.len() > 1 {
        return Err(ApiError::bad("only one IPv4 subnet per network is supported"));
    }
    let pool = pools.into_iter().next();
    let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
    if let Some(p) = &pool {
        if p.subnet.is_empty() && (!p.gateway.is_empty() || !p.ip_range.is_empty()) {
            return Err(ApiError::bad("a gateway or ip range needs a subnet"));
        }
    }
    let r = CreateNetwork {
        name: b.name,
        driver: b.driver,
        internal: b.internal,
        attachable: b.attachable,
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
        subnet: pool.as_ref().and_then(|p| nonempty(&p.subnet)),
        gateway: pool.as_ref().and_then(|p| nonempty(&p.gateway)),
        ip_range: pool.as_ref().and_then(|p| nonempty(&p.ip_range)),
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
    let cfg = convert::endpoint_config(&b.endpoint_config.unwrap_or_default())?;
    ctx.engine.network_connect(id, &b.container, cfg).await?;
    status_only(StatusCode::OK)
}

pub async fn disconnect(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let body: Option<w::NetworkDisconnectRequest> = read_json(req).await?;
    let b = body.ok_or_else(|| ApiError::bad("disconnect needs a body"))?;
    ctx.engine.network_disconnect(id, &b.container, b.force).await?;
    status_only(StatusCode::OK)
}

pub async fn prune(ctx: &Ctx) -> Reply {
    let removed = ctx.engine.network_prune().await?;
    json_response(StatusCode::OK, &w::NetworkPruneResponse { networks_deleted: removed })
}
