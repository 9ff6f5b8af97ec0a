//! A container's endpoint on a bridge network: what its EndpointConfig asks
//! for, checked at create and connect (a MAC address, link-local addresses,
//! links, and the driver options Docker's bridge driver has), and the
//! interface that is made of it.

use std::net::Ipv4Addr;

use berth_network::link::{self, Endpoint};
use berth_network::store::{Lease, Lease6, Network};

use crate::model::{Attachment, EndpointConfig};
use crate::{names, Error, Result};

/// The interface's name inside the container (Docker 28).
const IFNAME_OPT: &str = "com.docker.network.endpoint.ifname";
/// Sysctls of the interface, `IFNAME` standing for its name (Docker 28).
const SYSCTLS_OPT: &str = "com.docker.network.endpoint.sysctls";

fn bad(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// `name[:alias]`: the container linked to and the name it has here.
pub(crate) fn link_parts(l: &str) -> Result<(&str, &str)> {
    let (name, alias) = l.split_once(':').unwrap_or((l, l));
    let (name, alias) = (name.trim_start_matches('/'), alias.trim_start_matches('/'));
    if name.is_empty() || alias.is_empty() || alias.contains(':') {
        return Err(bad(format!("invalid link {l:?}: want name or name:alias")));
    }
    Ok((name, alias))
}

/// Check what `ep` asks of network `n`.
pub(crate) fn verify(n: &Network, ep: &EndpointConfig) -> Result<()> {
    if let Some(m) = &ep.mac_address {
        link::parse_mac(m).ok_or_else(|| bad(format!("invalid MAC address {m}")))?;
    }
    for (k, v) in &ep.driver_opts {
        match k.as_str() {
            IFNAME_OPT if !link::valid_link_name(v) => {
                return Err(bad(format!("invalid interface name {v:?} in {IFNAME_OPT}")));
            }
            IFNAME_OPT => {}
            SYSCTLS_OPT => {
                sysctls(v, "eth0")?;
            }
            other => return Err(bad(format!("DriverOpts: the bridge driver has no endpoint option {other:?}"))),
        }
    }
    if !ep.links.is_empty() && n.predefined {
        return Err(bad(
            "links are only supported for user-defined networks; use HostConfig.Links on the default bridge",
        ));
    }
    for l in &ep.links {
        link_parts(l)?;
    }
    Ok(())
}

/// The sysctls of [`SYSCTLS_OPT`] (comma-separated `key=value`), as paths
/// under /proc/sys for interface `ifname`. Only an interface's own
/// settings, as Docker allows: `net.{ipv4,ipv6,mpls}.conf.IFNAME.<key>`.
fn sysctls(spec: &str, ifname: &str) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let refuse = || {
            bad(format!(
                "endpoint sysctl {item:?} is not allowed: only net.ipv4.conf.IFNAME.*, net.ipv6.conf.IFNAME.* and net.mpls.conf.IFNAME.* are"
            ))
        };
        let (k, v) = item.split_once('=').ok_or_else(refuse)?;
        let parts: Vec<&str> = k.trim().split('.').collect();
        let ["net", family @ ("ipv4" | "ipv6" | "mpls"), "conf", "IFNAME", key] = parts.as_slice() else {
            return Err(refuse());
        };
        let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok || v.contains(['\n', '\0']) {
            return Err(refuse());
        }
        out.push((format!("net/{family}/conf/{ifname}/{key}"), v.trim().to_owned()));
    }
    Ok(out)
}

/// The interface for `ep` on `n` with address `lease`: the record kept of
/// it and what berth-network makes.
pub(crate) fn interface(
    ep: &EndpointConfig,
    n: &Network,
    (lease, lease6): (&Lease, Option<&Lease6>),
    bridge: u32,
    default_ifname: String,
    gateway: Option<Ipv4Addr>,
) -> Result<(Attachment, Endpoint)> {
    let mac = match &ep.mac_address {
        Some(m) => link::parse_mac(m).ok_or_else(|| bad(format!("invalid MAC address {m}")))?,
        None => link::mac_of(lease.ip),
    };
    let ifname = ep.driver_opts.get(IFNAME_OPT).cloned().unwrap_or(default_ifname);
    let sysctls = match ep.driver_opts.get(SYSCTLS_OPT) {
        Some(spec) => sysctls(spec, &ifname)?,
        None => vec![],
    };
    // A link-local address is on its /16; another, as given, alone.
    let extra = ep.link_local_ips.iter().map(|ip| (*ip, if ip.is_link_local() { 16 } else { 32 })).collect();
    let veth = link::veth_name();
    let a = Attachment {
        network_id: n.id.clone(),
        endpoint_id: names::new_id(),
        ip: Some(lease.ip),
        prefix: lease.prefix,
        gateway: Some(lease.gateway),
        mac: link::mac_string(&mac),
        veth: veth.clone(),
        ifname: ifname.clone(),
        ip6: lease6.map(|l| l.ip),
        prefix6: lease6.map_or(0, |l| l.prefix),
        gateway6: lease6.map(|l| l.gateway),
    };
    let e = Endpoint {
        veth,
        ifname,
        bridge,
        ip: lease.ip,
        prefix: lease.prefix,
        gateway,
        mtu: n.mtu,
        mac,
        extra,
        sysctls,
        ip6: lease6.map(|l| (l.ip, l.prefix)),
        // The default route's interface has the IPv6 one too.
        gateway6: lease6.filter(|_| gateway.is_some()).map(|l| l.gateway),
    };
    Ok((a, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_sysctls_are_the_interface_s_own() {
        let s = sysctls("net.ipv4.conf.IFNAME.forwarding=1, net.ipv6.conf.IFNAME.disable_ipv6=0", "web0").unwrap();
        assert_eq!(
            s,
            [
                ("net/ipv4/conf/web0/forwarding".to_owned(), "1".to_owned()),
                ("net/ipv6/conf/web0/disable_ipv6".to_owned(), "0".to_owned())
            ]
        );
        for bad in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv4.conf.IFNAME.../x=1",
            "kernel.core_pattern=|x",
            "net.ipv4.conf.IFNAME.forwarding",
        ] {
            assert!(sysctls(bad, "eth0").is_err(), "{bad}");
        }
    }

    #[test]
    fn links_and_macs_parse() {
        assert_eq!(link_parts("db:database").unwrap(), ("db", "database"));
        assert_eq!(link_parts("/db").unwrap(), ("db", "db"));
        assert!(link_parts(":x").is_err() && link_parts("a:").is_err() && link_parts("a:b:c").is_err());
        assert_eq!(link::parse_mac("02:42:AC:11:00:99"), Some([2, 0x42, 0xac, 0x11, 0, 0x99]));
        assert_eq!(link::parse_mac("02-42-ac-11-00-99"), Some([2, 0x42, 0xac, 0x11, 0, 0x99]));
        for bad in ["02:42:ac:11:00", "02:42:ac:11:00:9", "zz:42:ac:11:00:99", "0242.ac11.0099"] {
            assert_eq!(link::parse_mac(bad), None, "{bad}");
        }
    }
}
