//! NAT, published ports and isolation, as one nftables table of berth's
//! own. The table is written whole from what the daemon holds, in one
//! `nft -f` transaction that deletes and recreates it: the kernel swaps
//! it atomically, a failure leaves the previous table in place, and the
//! same call cleans up whatever a crashed daemon left.
//!
//! What the table does, for every bridge network:
//! - masquerade of traffic from the subnet leaving by another link
//!   (outbound NAT), unless the network is internal or masquerade is off;
//! - DNAT of published ports, for packets to any local address, both
//!   arriving (prerouting) and made on the host (output), 127.0.0.1
//!   included, so no userland proxy is on the data path;
//! - masquerade of traffic to a container that came from 127.0.0.0/8
//!   (the bridge also has `route_localnet` set) or from its own bridge
//!   through a published port (hairpin), so replies come back the same way;
//! - isolation: nothing is forwarded from one berth bridge to another,
//!   and nothing into or out of an internal network's bridge.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use crate::ipam::Subnet;
use crate::ipam6::Subnet6;
use crate::ports::Proto;

/// A bridge network, as the table sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
    pub masquerade: bool,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    /// Only this host address; `None` is every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// The IPv6 side of a bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net6 {
    pub bridge: String,
    pub subnet: Subnet6,
    pub internal: bool,
    pub masquerade: bool,
}

/// A published port forwarded to a container's IPv6 address, for every
/// local IPv6 address of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward6 {
    pub proto: Proto,
    pub host_port: u16,
    pub ip: Ipv6Addr,
    pub port: u16,
}

/// The whole table, and its IPv6 twin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub nets: Vec<Net>,
    pub forwards: Vec<Forward>,
    pub nets6: Vec<Net6>,
    pub forwards6: Vec<Forward6>,
    /// The host has IPv6 (a kernel without it has no `ip6` family either).
    pub ipv6: bool,
}

/// Whether this host has IPv6 at all.
pub fn host_has_ipv6() -> bool {
    std::path::Path::new("/proc/net/if_inet6").exists()
}

/// A name nft accepts as a quoted string.
fn quoted(s: &str) -> String {
    let clean: String = s.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    format!("\"{clean}\"")
}

/// A table name as nft's scanner takes it unquoted: a letter, then
/// letters, digits, `-`, `_` and `.`.
fn ident(s: &str) -> String {
    let clean: String = s.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    if clean.starts_with(|c: char| c.is_ascii_alphabetic()) {
        clean
    } else {
        format!("t{clean}")
    }
}

/// The nft script that replaces tables `ip <table>` and `ip6 <table>`
/// with `r`.
pub fn render(table: &str, r: &Ruleset) -> String {
    let t = ident(table);
    let mut s = String::new();
    let publish: Vec<String> = r
        .forwards
        .iter()
        .map(|f| {
            let only = f.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
            format!("{only}{} dport {} dnat to {}:{}", f.proto.as_str(), f.host_port, f.ip, f.port)
        })
        .collect();
    let mut post = vec![];
    for n in &r.nets {
        let b = quoted(&n.bridge);
        if n.masquerade && !n.internal {
            post.push(format!("ip saddr {} oifname != {b} masquerade", n.subnet));
        }
        post.push(format!("oifname {b} ip saddr 127.0.0.0/8 masquerade"));
        // Hairpin: matched on the source subnet, since a packet bridged
        // back by br_netfilter reaches postrouting with no input link.
        post.push(format!("oifname {b} ip saddr {} ct status dnat masquerade", n.subnet));
    }
    table_of(&mut s, "ip", &t, r, &publish, &post);
    // IPv6: the same, but for loopback (a packet from ::1 cannot leave the
    // host: berthd's proxy takes ::1).
    let publish6: Vec<String> = r
        .forwards6
        .iter()
        .map(|f| format!("ip6 daddr != ::1 {} dport {} dnat to [{}]:{}", f.proto.as_str(), f.host_port, f.ip, f.port))
        .collect();
    let mut post6 = vec![];
    for n in &r.nets6 {
        let b = quoted(&n.bridge);
        if n.masquerade && !n.internal {
            post6.push(format!("ip6 saddr {} oifname != {b} masquerade", n.subnet));
        }
        post6.push(format!("oifname {b} ip6 saddr {} ct status dnat masquerade", n.subnet));
    }
    if r.ipv6 {
        table_of(&mut s, "ip6", &t, r, &publish6, &post6);
    }
    s
}

/// One table of family `family`: DNAT of `publish` for local addresses,
/// the `postrouting` rules, and the isolation of bridges, which is the same
/// in both families.
fn table_of(s: &mut String, family: &str, t: &str, r: &Ruleset, publish: &[String], postrouting: &[String]) {
    // Declaring the table first makes the delete valid when it is absent.
    let _ = writeln!(s, "table {family} {t}\ndelete table {family} {t}\ntable {family} {t} {{");
    if !r.nets.is_empty() {
        let names: Vec<String> = r.nets.iter().map(|n| quoted(&n.bridge)).collect();
        let _ = writeln!(s, "  set bridges {{ type ifname; elements = {{ {} }} }}", names.join(", "));
    }
    s.push_str("  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n");
    s.push_str("    fib daddr type local jump publish\n  }\n");
    s.push_str("  chain output { type nat hook output priority -100; policy accept;\n");
    s.push_str("    fib daddr type local jump publish\n  }\n");
    s.push_str("  chain publish {\n");
    for rule in publish {
        let _ = writeln!(s, "    {rule}");
    }
    s.push_str("  }\n");
    s.push_str("  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n");
    for rule in postrouting {
        let _ = writeln!(s, "    {rule}");
    }
    s.push_str("  }\n");
    s.push_str("  chain forward { type filter hook forward priority filter; policy accept;\n");
    for n in r.nets.iter().filter(|n| n.internal) {
        let b = quoted(&n.bridge);
        let _ = writeln!(s, "    iifname {b} oifname != {b} drop\n    oifname {b} iifname != {b} drop");
    }
    if !r.nets.is_empty() {
        // Published ports answer whoever reaches the host's address.
        s.push_str("    ct status dnat accept\n");
    }
    for n in &r.nets {
        let b = quoted(&n.bridge);
        let _ = writeln!(s, "    iifname {b} oifname != {b} oifname @bridges drop");
    }
    s.push_str("  }\n}\n");
}

fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!("nft: {}", err.trim())))
}

/// Replace tables `ip <table>` and `ip6 <table>` with `r`.
pub fn apply(table: &str, r: &Ruleset) -> io::Result<()> {
    nft(&render(table, r))
}

/// Remove tables `ip <table>` and `ip6 <table>`, if they are there.
pub fn delete(table: &str) -> io::Result<()> {
    let t = ident(table);
    let mut script = format!("table ip {t}\ndelete table ip {t}\n");
    if host_has_ipv6() {
        script.push_str(&format!("table ip6 {t}\ndelete table ip6 {t}\n"));
    }
    nft(&script)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_a_published_port_and_an_internal_network() {
        let r = Ruleset {
            nets: vec![
                Net { bridge: "b0".into(), subnet: "10.9.0.0/24".parse().unwrap(), internal: false, masquerade: true },
                Net { bridge: "b1".into(), subnet: "10.9.1.0/24".parse().unwrap(), internal: true, masquerade: true },
            ],
            forwards: vec![Forward {
                proto: Proto::Tcp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                ip: "10.9.0.2".parse().unwrap(),
                port: 80,
            }],
            nets6: vec![Net6 {
                bridge: "b0".into(),
                subnet: "fd00:9::/64".parse().unwrap(),
                internal: false,
                masquerade: true,
            }],
            forwards6: vec![Forward6 {
                proto: Proto::Udp,
                host_port: 53,
                ip: "fd00:9::2".parse().unwrap(),
                port: 5353,
            }],
            ipv6: true,
        };
        let s = render("t\"; flush ruleset", &r);
        assert!(s.starts_with("table ip tflushruleset\ndelete table ip tflushruleset\n"), "{s}");
        assert!(s.contains("ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.9.0.2:80"), "{s}");
        assert!(s.contains("ip saddr 10.9.0.0/24 oifname != \"b0\" masquerade"), "{s}");
        assert!(!s.contains("ip saddr 10.9.1.0/24 oifname"), "internal networks have no way out: {s}");
        assert!(s.contains("iifname \"b1\" oifname != \"b1\" drop"), "{s}");
        let internal = s.find("oifname \"b1\" iifname != \"b1\" drop").unwrap();
        assert!(internal < s.find("ct status dnat accept").unwrap(), "{s}");
        let v6 = &s[s.find("table ip6 tflushruleset {").unwrap()..];
        assert!(v6.contains("ip6 daddr != ::1 udp dport 53 dnat to [fd00:9::2]:5353"), "{v6}");
        assert!(v6.contains("ip6 saddr fd00:9::/64 oifname != \"b0\" masquerade"), "{v6}");
        assert!(v6.contains("iifname \"b0\" oifname != \"b0\" oifname @bridges drop"), "{v6}");
        let without = render("t", &Ruleset { ipv6: false, ..r });
        assert!(!without.contains("ip6"), "a host without IPv6 has no ip6 family: {without}");
    }
}
