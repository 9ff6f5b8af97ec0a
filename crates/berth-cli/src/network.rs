//! Network verbs: create, ls, rm, prune, connect, disconnect (inspect
//! is the shared one with `--type network`).

use std::collections::BTreeMap;

use berth_api_types::network::{
    EndpointIpamConfig, EndpointSettings, IpamConfig, Network, NetworkConnectRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkPruneResponse,
};
use berth_api_types::spec::{Ipam, NetworkCreateRequest};
use berth_client::{Body, Client, Query};
use serde_json::{json, Value};

use crate::cli::{
    NetworkConnectArgs, NetworkCreateArgs, NetworkDisconnectArgs, NetworkLsArgs, NetworkRmArgs, PruneArgs,
};
use crate::container::{confirm, filters};
use crate::format::{print_out, short_id, Format};
use crate::{each, CliError, Result};

/// `key=value` flags (`--label`, `-o`) as a map; a bare key has "".
pub(crate) fn key_values(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// The create request of `network create`'s flags.
fn create_request(a: NetworkCreateArgs) -> Result<NetworkCreateRequest> {
    if a.gateway.len() > a.subnet.len() || a.ip_range.len() > a.subnet.len() {
        return Err(CliError::Usage("every ip-range or gateway must have a corresponding subnet".into()));
    }
    let pools: Vec<IpamConfig> = a
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| IpamConfig {
            subnet: Some(s.clone()),
            gateway: a.gateway.get(i).cloned(),
            ip_range: a.ip_range.get(i).cloned(),
            // berth's networks have one subnet: the first pool has them.
            auxiliary_addresses: (i == 0 && !a.aux_address.is_empty())
                .then(|| key_values(&a.aux_address).into_iter().collect()),
        })
        .collect();
    if pools.is_empty() && !a.aux_address.is_empty() {
        return Err(CliError::Usage("no matching subnet for aux-address".into()));
    }
    Ok(NetworkCreateRequest {
        name: a.name,
        driver: Some(a.driver),
        internal: Some(a.internal),
        attachable: Some(a.attachable),
        enable_ipv6: a.ipv6.then_some(true),
        ipam: Some(Ipam { driver: Some("default".into()), config: Some(pools), options: None }),
        options: Some(key_values(&a.opt).into_iter().collect()),
        labels: Some(key_values(&a.label).into_iter().collect()),
        ..Default::default()
    })
}

pub fn create(c: &Client, a: NetworkCreateArgs) -> Result<()> {
    let r: NetworkCreateResponse = c.post("/networks/create", &Query::new(), Some(&create_request(a)?))?;
    if !r.warning.is_empty() {
        say!("WARNING: {}", r.warning);
    }
    print_out(&format!("{}\n", r.id))
}

/// One row of `network ls`, with the field names Docker's templates use.
fn ls_row(n: &Network, trunc: bool) -> Value {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "ID": if trunc { short_id(&n.id) } else { n.id.clone() },
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope,
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": n.created,
    })
}

pub fn ls(c: &Client, a: NetworkLsArgs) -> Result<()> {
    let f = filters(&a.filter)?;
    let mut list: Vec<Network> = c.get("/networks", &Query::new().filters(&f))?;
    list.sort_by(|x, y| x.name.cmp(&y.name));
    let rows: Vec<Value> = list.iter().map(|n| ls_row(n, !a.no_trunc)).collect();
    if a.quiet {
        let out: String = rows.iter().map(|r| format!("{}\n", r["ID"].as_str().unwrap_or(""))).collect();
        return print_out(&out);
    }
    let header = json!({
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
        "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
    });
    Format::parse(a.format.as_deref())?.print(&["ID", "Name", "Driver", "Scope"], &header, &rows)
}

pub fn rm(c: &Client, a: NetworkRmArgs) -> Result<()> {
    each(&a.networks, |n| {
        c.delete(&format!("/networks/{n}"), &Query::new())?;
        print_out(&format!("{n}\n"))
    })
}

pub fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force && !confirm("all custom networks not used by at least one container")? {
        return Ok(());
    }
    let f = filters(&a.filter)?;
    let r: NetworkPruneResponse = c.post("/networks/prune", &Query::new().filters(&f), None::<&()>)?;
    let deleted = r.networks_deleted.unwrap_or_default();
    if deleted.is_empty() {
        return Ok(());
    }
    let names: String = deleted.iter().map(|n| format!("{n}\n")).collect();
    print_out(&format!("Deleted Networks:\n{names}"))
}

pub fn connect(c: &Client, a: NetworkConnectArgs) -> Result<()> {
    let ipam = a.ip.map(|ip| EndpointIpamConfig { ipv4_address: Some(ip), ..Default::default() });
    let ep =
        EndpointSettings { ipam_config: ipam, aliases: (!a.alias.is_empty()).then_some(a.alias), ..Default::default() };
    let body = NetworkConnectRequest { container: a.container, endpoint_config: Some(ep) };
    post_quiet(c, &format!("/networks/{}/connect", a.network), &body)
}

pub fn disconnect(c: &Client, a: NetworkDisconnectArgs) -> Result<()> {
    let body = NetworkDisconnectRequest { container: a.container, force: Some(a.force) };
    post_quiet(c, &format!("/networks/{}/disconnect", a.network), &body)
}

/// POST a JSON body whose answer carries nothing to show.
fn post_quiet(c: &Client, path: &str, body: &impl serde::Serialize) -> Result<()> {
    let mut r = c.call("POST", path, &Query::new(), Body::Json(serde_json::to_vec(body)?))?;
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn create_flags_become_the_request() {
        let a = NetworkCreateArgs {
            driver: "bridge".into(),
            subnet: vec!["10.5.0.0/24".into()],
            gateway: vec!["10.5.0.254".into()],
            internal: true,
            label: vec!["team=a".into(), "bare".into()],
            opt: vec!["com.docker.network.bridge.name=br-x".into()],
            name: "n".into(),
            ..Default::default()
        };
        let r = create_request(a).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.5.0.0/24");
        assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.5.0.254");
        assert_eq!(v["Labels"]["team"], "a");
        assert_eq!(v["Labels"]["bare"], "");
        assert_eq!(v["Options"]["com.docker.network.bridge.name"], "br-x");
        assert_eq!(v["Internal"], true);
        let lonely = NetworkCreateArgs { gateway: vec!["10.0.0.1".into()], name: "n".into(), ..Default::default() };
        assert!(create_request(lonely).is_err());
    }
}
