//! IPv4 subnets and the addresses handed out in them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An IPv4 network, `a.b.c.d/n` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

/// The address after `last` in `lo..=hi`, going round, that `usable`
/// takes, looking at `tries` of them at the most: the round-robin both
/// address families allocate by.
pub(crate) fn next_free(lo: u128, hi: u128, last: u128, tries: u128, usable: impl Fn(u128) -> bool) -> Option<u128> {
    let mut n = last;
    for _ in 0..tries {
        n = if n >= hi || n < lo { lo } else { n + 1 };
        if usable(n) {
            return Some(n);
        }
    }
    None
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        if prefix > 32 {
            return Err(Error::Invalid(format!("invalid CIDR address: {addr}/{prefix}")));
        }
        let net = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if net != addr {
            return Err(Error::Invalid(format!("invalid subnet {addr}/{prefix}: it should be {net}/{prefix}")));
        }
        Ok(Subnet { addr, prefix })
    }

    /// The subnet `ip` is in, with its prefix (`172.17.0.1/16` → `172.17.0.0/16`).
    pub fn containing(ip: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet { addr: Ipv4Addr::from(u32::from(ip) & mask(prefix)), prefix }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        self.contains(o.addr) || o.contains(self.addr)
    }

    /// Whether all of `o` lies in this subnet.
    pub fn covers(&self, o: &Subnet) -> bool {
        self.prefix <= o.prefix && self.contains(o.addr)
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        u32::from(self.addr) | !mask(self.prefix)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }

    /// The first address after the network address: the usual gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(if self.prefix >= 31 { self.first() } else { self.first() + 1 })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `a.b.c.d/n` as an address and a prefix length.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || Error::Invalid(format!("invalid CIDR address: {s}"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let ip = Ipv4Addr::from_str(a).map_err(|_| bad())?;
    if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    Ok((ip, prefix))
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Subnet> {
        let (ip, prefix) = parse_cidr(s)?;
        Subnet::new(ip, prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;

    fn try_from(s: String) -> Result<Subnet> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// The addresses of one network: its subnet, the range containers are
/// given addresses from, the gateway, and what is taken. Addresses are
/// handed out in turn after the last one given, so a released address
/// is not reused at once (Docker's bitseq allocator does the same).
#[derive(Debug, Clone)]
pub struct Pool {
    subnet: Subnet,
    range: Subnet,
    gateway: Ipv4Addr,
    used: BTreeSet<u32>,
    last: u32,
    /// Addresses of stopped containers whose veth is still being deleted:
    /// taken, for no one but their owner.
    held: std::collections::BTreeMap<u32, String>,
}

impl Pool {
    pub fn new(subnet: Subnet, range: Option<Subnet>, gateway: Ipv4Addr) -> Result<Pool> {
        let range = range.unwrap_or(subnet);
        if !subnet.covers(&range) {
            return Err(Error::Invalid(format!("ip range {range} is not in subnet {subnet}")));
        }
        if !subnet.contains(gateway) {
            return Err(Error::Invalid(format!("gateway {gateway} is not in subnet {subnet}")));
        }
        Ok(Pool {
            subnet,
            range,
            gateway,
            used: BTreeSet::new(),
            last: range.first().saturating_sub(1),
            held: Default::default(),
        })
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    fn usable(&self, n: u32) -> bool {
        let s = &self.subnet;
        let edge = s.prefix < 31 && (n == s.first() || n == s.last());
        !edge && n != u32::from(self.gateway) && !self.used.contains(&n)
    }

    /// The next free address of the range.
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let (lo, hi) = (self.range.first(), self.range.last());
        let tries = u128::from(hi - lo) + 1;
        let free = next_free(lo.into(), hi.into(), self.last.into(), tries, |n| self.usable(n as u32));
        if let Some(n) = free.map(|n| n as u32) {
            self.used.insert(n);
            self.last = n;
            return Ok(Ipv4Addr::from(n));
        }
        Err(Error::Conflict(format!("no available IPv4 addresses on this network's address pools: {}", self.subnet)))
    }

    /// Take a given address (`--ip`, or one a running container holds).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<()> {
        if !self.subnet.contains(ip) {
            return Err(Error::Invalid(format!("invalid address {ip}: it does not belong to subnet {}", self.subnet)));
        }
        if !self.usable(u32::from(ip)) {
            return Err(Error::Conflict(format!("Address already in use: {ip}")));
        }
        self.used.insert(u32::from(ip));
        Ok(())
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
        self.held.remove(&u32::from(ip));
    }

    /// Keep `ip` taken for `owner` alone until [`Pool::release_held`].
    pub fn hold(&mut self, ip: Ipv4Addr, owner: &str) {
        let n = u32::from(ip);
        if self.used.contains(&n) {
            self.held.insert(n, owner.to_owned());
        }
    }

    /// The end of a hold: the address is free again, unless its owner took
    /// it back meanwhile.
    pub fn release_held(&mut self, ip: Ipv4Addr, owner: &str) {
        let n = u32::from(ip);
        if self.held.get(&n).is_some_and(|o| o == owner) {
            self.held.remove(&n);
            self.used.remove(&n);
        }
    }

    /// `owner`'s previous address when it is free or held for `owner`, as
    /// Docker gives a restarted container its address back in practice;
    /// else the next free one.
    pub fn allocate_preferring(&mut self, prev: Ipv4Addr, owner: &str) -> Result<Ipv4Addr> {
        let n = u32::from(prev);
        if self.held.get(&n).is_some_and(|o| o == owner) {
            self.held.remove(&n);
            return Ok(prev);
        }
        if self.range.contains(prev) && self.usable(n) {
            self.used.insert(n);
            return Ok(prev);
        }
        self.allocate()
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_previous_address_comes_back_to_its_owner_only() {
        let mut p = Pool::new("10.9.0.0/24".parse().unwrap(), None, ip("10.9.0.1")).unwrap();
        let a = p.allocate().unwrap();
        p.hold(a, "one");
        // Held: not for others, nor for the round robin.
        assert_ne!(p.allocate_preferring(a, "two").unwrap(), a);
        assert_eq!(p.allocate_preferring(a, "one").unwrap(), a);
        // Taken back: the late end of the hold leaves it taken.
        p.release_held(a, "one");
        assert!(p.reserve(a).is_err());
        p.release(a);
        // Free: the owner gets it back, even past the round robin.
        let b = p.allocate().unwrap();
        assert_ne!(a, b);
        assert_eq!(p.allocate_preferring(a, "one").unwrap(), a);
        // Taken by another: the next free one.
        p.release(a);
        p.reserve(a).unwrap();
        assert_ne!(p.allocate_preferring(a, "one").unwrap(), a);
    }

    #[test]
    fn subnets_parse_and_refuse_host_bits() {
        let s: Subnet = "10.1.0.0/16".parse().unwrap();
        assert!(s.contains(ip("10.1.255.255")) && !s.contains(ip("10.2.0.0")));
        assert_eq!(s.broadcast(), ip("10.1.255.255"));
        assert_eq!(s.first_host(), ip("10.1.0.1"));
        let e = "10.1.2.3/16".parse::<Subnet>().unwrap_err().to_string();
        assert!(e.contains("it should be 10.1.0.0/16"), "{e}");
        for bad in ["10.1.0.0", "10.1.0.0/33", "10.1.0/8", "x/8", "10.0.0.0/", "10.0.0.0/+8"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        assert!(s.overlaps(&"10.1.5.0/24".parse().unwrap()));
        assert!(!s.overlaps(&"10.2.0.0/16".parse().unwrap()));
        assert_eq!(Subnet::containing(ip("172.17.0.1"), 16).to_string(), "172.17.0.0/16");
    }

    #[test]
    fn pool_hands_out_in_turn_and_skips_gateway_network_broadcast() {
        let s: Subnet = "10.0.0.0/29".parse().unwrap();
        let mut p = Pool::new(s, None, ip("10.0.0.1")).unwrap();
        let got: Vec<Ipv4Addr> = (0..5).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(got, [ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5"), ip("10.0.0.6")]);
        assert!(p.allocate().is_err());
        p.release(ip("10.0.0.3"));
        assert_eq!(p.allocate().unwrap(), ip("10.0.0.3"));
        assert!(p.reserve(ip("10.0.0.4")).is_err());
        assert!(p.reserve(ip("10.0.1.4")).is_err());
        assert!(p.reserve(ip("10.0.0.7")).is_err(), "broadcast");
    }

    #[test]
    fn released_addresses_wait_their_turn_and_ranges_limit() {
        let s: Subnet = "10.0.0.0/24".parse().unwrap();
        let r: Subnet = "10.0.0.128/30".parse().unwrap();
        let mut p = Pool::new(s, Some(r), ip("10.0.0.1")).unwrap();
        let a = p.allocate().unwrap();
        assert_eq!(a, ip("10.0.0.128"));
        p.release(a);
        assert_eq!(p.allocate().unwrap(), ip("10.0.0.129"));
        p.reserve(ip("10.0.0.50")).unwrap();
        assert!(Pool::new(s, Some("10.1.0.0/30".parse().unwrap()), ip("10.0.0.1")).is_err());
        assert!(Pool::new(s, None, ip("10.9.0.1")).is_err());
    }
}
