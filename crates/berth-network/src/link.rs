//! Bridges and the veth pairs that plug containers into them.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use crate::netlink::{Addr, Netlink, Netns, Peer};
use crate::netns;

/// A bridge as a network wants it.
#[derive(Debug, Clone)]
pub struct Bridge<'a> {
    pub name: &'a str,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    pub mtu: u32,
    /// The IPv6 gateway and prefix of an IPv6 network.
    pub gateway6: Option<(Ipv6Addr, u8)>,
}

/// A random locally administered unicast MAC address. A bridge is given
/// one of its own: without it, the bridge takes the lowest address of its
/// ports and changes it as containers come and go, and neighbours lose it.
pub fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    let r: [u8; 6] = crate::random_bytes();
    m.copy_from_slice(&r);
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

/// The MAC of a container's interface, from its address (Docker's
/// `02:42:` followed by the four octets), so that an address handed out
/// again comes with the same MAC and neighbours' caches stay right.
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A MAC address as Go's `net.ParseMAC` takes a 48-bit one: six pairs of
/// hex digits joined by `:` or `-`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A name the kernel takes for a link (at most 15 bytes) and that is safe
/// in a sysfs path and an nft script: letters, digits, `_`, `.`, `-`.
pub fn valid_link_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
}

/// Make sure the bridge exists, has its gateway address and is up, and
/// answer its index. An existing link of that name must be a bridge.
pub fn ensure_bridge(nl: &mut Netlink, b: &Bridge) -> io::Result<u32> {
    let link = match nl.link(b.name)? {
        Some(l) => l,
        None => {
            match nl.add_bridge(b.name, b.mtu, random_mac()) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                r => r?,
            }
            nl.link(b.name)?.ok_or_else(|| io::Error::other(format!("bridge {} vanished", b.name)))?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("link {} exists and is not a bridge", b.name),
        ));
    }
    let has = nl.addrs()?.iter().any(|a| a.index == link.index && a.ip == b.gateway);
    if !has {
        match nl.add_addr(Addr { index: link.index, ip: b.gateway, prefix: b.prefix }) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            r => r?,
        }
    }
    if let Some((gw6, prefix6)) = b.gateway6 {
        sysctl(&format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", b.name), "0")?;
        match nl.add_addr6(link.index, gw6, prefix6) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            r => r?,
        }
    }
    if b.mtu > 0 && link.mtu != b.mtu {
        nl.set_mtu(link.index, b.mtu)?;
    }
    // Published ports answer on 127.0.0.1: packets the host sends from a
    // loopback address may then leave by the bridge (they are masqueraded).
    sysctl(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", b.name), "1")?;
    if !link.up {
        nl.set_up(link.index)?;
    }
    Ok(link.index)
}

/// Let the host route between its links (containers reach out through it).
pub fn enable_forwarding() -> io::Result<()> {
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")
}

/// Let the host route IPv6 between its links, for IPv6 networks (as
/// Docker does; the host then stops taking router advertisements on links
/// whose accept_ra is 1).
pub fn enable_forwarding6() -> io::Result<()> {
    let path = "/proc/sys/net/ipv6/conf/all/forwarding";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    sysctl(path, "1")
}

/// One interface of a container on a bridge.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The host end's name.
    pub veth: String,
    /// The name inside (`eth0`, `eth1`, …).
    pub ifname: String,
    pub bridge: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway; `None` for no default route.
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// Addresses besides `ip` (link-local ones), with their prefixes.
    pub extra: Vec<(Ipv4Addr, u8)>,
    /// Sysctls of the interface, written inside: a path under /proc/sys
    /// (`net/ipv4/conf/eth0/forwarding`) and its value.
    pub sysctls: Vec<(String, String)>,
    /// Its IPv6 address and prefix on an IPv6 network.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 default route's gateway.
    pub gateway6: Option<Ipv6Addr>,
}

/// A random host-side interface name, `veth` and 7 hex digits as Docker's.
pub fn veth_name() -> String {
    let r: [u8; 4] = crate::random_bytes();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("veth{}", &hex[..7])
}

/// Plug a container's namespace `ns` into bridges: a veth pair for each
/// endpoint, the host end on the bridge, the other end given its address,
/// brought up and (for an endpoint with a gateway) the default route; and
/// loopback brought up. `inside` then runs in the namespace too (to open
/// the sockets the daemon serves there). If anything fails, the pairs
/// made are deleted.
pub fn plug<T: Send>(
    nl: &mut Netlink,
    ns: &File,
    eps: &[Endpoint],
    inside: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let mut made: Vec<&str> = Vec::new();
    let r = (|| {
        for ep in eps {
            let peer = Peer { name: &ep.ifname, netns: Netns::Fd(ns.as_raw_fd()), mac: Some(ep.mac) };
            nl.add_veth(&ep.veth, ep.mtu, Some(ep.bridge), &peer)
                .map_err(|e| io::Error::new(e.kind(), format!("create veth pair {}: {e}", ep.veth)))?;
            made.push(&ep.veth);
            // With br_netfilter loaded, a packet a container sends to a
            // published port of its own bridge is DNATed and bridged back
            // out of the port it came in by, which a bridge does only in
            // hairpin mode (Docker sets it too when it has no proxy).
            std::fs::write(format!("/sys/class/net/{}/brport/hairpin_mode", ep.veth), "1")?;
        }
        netns::run_in(ns, || {
            let mut inner = Netlink::open()?;
            configure(&mut inner, eps)?;
            inside()
        })
    })();
    if r.is_err() {
        for v in made {
            let _ = nl.delete_link_named(v);
        }
    }
    r
}

/// Inside the namespace: loopback up, then each endpoint's address, link
/// and route.
fn configure(nl: &mut Netlink, eps: &[Endpoint]) -> io::Result<()> {
    let lo = nl.link("lo")?.ok_or_else(|| io::Error::other("no loopback in the container's namespace"))?;
    if !lo.up {
        nl.set_up(lo.index)?;
    }
    for ep in eps {
        let l = nl.link(&ep.ifname)?.ok_or_else(|| io::Error::other(format!("{} did not arrive", ep.ifname)))?;
        nl.add_addr(Addr { index: l.index, ip: ep.ip, prefix: ep.prefix })?;
        for (ip, prefix) in &ep.extra {
            nl.add_addr(Addr { index: l.index, ip: *ip, prefix: *prefix })?;
        }
        if let Some((ip6, prefix6)) = ep.ip6 {
            sysctl(&format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", ep.ifname), "0")?;
            nl.add_addr6(l.index, ip6, prefix6)?;
        }
        // The namespace's own /proc/sys/net, as this thread is in it.
        for (path, value) in &ep.sysctls {
            sysctl(&format!("/proc/sys/{path}"), value)
                .map_err(|e| io::Error::new(e.kind(), format!("sysctl {path}={value}: {e}")))?;
        }
        nl.set_up(l.index)?;
        if let Some(gw) = ep.gateway {
            nl.add_default_route(gw, l.index)?;
        }
        if let Some(gw6) = ep.gateway6 {
            nl.add_default_route6(gw6, l.index)?;
        }
    }
    Ok(())
}

/// Bring up only loopback in `ns` (`--network none`), then run `inside`.
pub fn loopback_only<T: Send>(ns: &File, inside: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    netns::run_in(ns, || {
        configure(&mut Netlink::open()?, &[])?;
        inside()
    })
}
