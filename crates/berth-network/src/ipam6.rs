//! IPv6 subnets and the addresses handed out in them: a network's /64 (or
//! any prefix up to /127), its gateway, and addresses given in turn after
//! the last one, as the IPv4 pool does.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An IPv6 network, `addr/n` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet6 {
    addr: Ipv6Addr,
    prefix: u8,
}

fn mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Subnet6 {
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Result<Subnet6> {
        if prefix > 127 {
            return Err(Error::Invalid(format!("invalid IPv6 subnet {addr}/{prefix}: a subnet needs two addresses")));
        }
        let net = Ipv6Addr::from(u128::from(addr) & mask(prefix));
        if net != addr {
            return Err(Error::Invalid(format!("invalid subnet {addr}/{prefix}: it should be {net}/{prefix}")));
        }
        Ok(Subnet6 { addr, prefix })
    }

    /// A unique local /64 (RFC 4193) of random global and subnet ids, as
    /// Docker gives an IPv6 network no subnet was asked for.
    pub fn random_ula() -> Subnet6 {
        let r: [u8; 7] = crate::random_bytes();
        let mut o = [0u8; 16];
        o[0] = 0xfd;
        o[1..8].copy_from_slice(&r);
        Subnet6 { addr: Ipv6Addr::from(o), prefix: 64 }
    }

    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask(self.prefix) == u128::from(self.addr)
    }

    pub fn overlaps(&self, o: &Subnet6) -> bool {
        self.contains(o.addr) || o.contains(self.addr)
    }

    fn first(&self) -> u128 {
        u128::from(self.addr)
    }

    fn last(&self) -> u128 {
        u128::from(self.addr) | !mask(self.prefix)
    }

    /// The first address after the subnet-router anycast address: the
    /// usual gateway.
    pub fn first_host(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.first() + 1)
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet6 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Subnet6> {
        let bad = || Error::Invalid(format!("invalid CIDR address: {s}"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let ip = Ipv6Addr::from_str(a).map_err(|_| bad())?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 128 {
            return Err(bad());
        }
        Subnet6::new(ip, prefix)
    }
}

impl TryFrom<String> for Subnet6 {
    type Error = Error;

    fn try_from(s: String) -> Result<Subnet6> {
        s.parse()
    }
}

impl From<Subnet6> for String {
    fn from(s: Subnet6) -> String {
        s.to_string()
    }
}

/// The IPv6 addresses of one network.
#[derive(Debug, Clone)]
pub struct Pool6 {
    subnet: Subnet6,
    gateway: Ipv6Addr,
    used: BTreeSet<u128>,
    last: u128,
}

impl Pool6 {
    pub fn new(subnet: Subnet6, gateway: Ipv6Addr) -> Result<Pool6> {
        if !subnet.contains(gateway) {
            return Err(Error::Invalid(format!("gateway {gateway} is not in subnet {subnet}")));
        }
        Ok(Pool6 { subnet, gateway, used: BTreeSet::new(), last: subnet.first() })
    }

    pub fn subnet(&self) -> Subnet6 {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv6Addr {
        self.gateway
    }

    fn usable(&self, n: u128) -> bool {
        // Not the subnet-router anycast address, nor the gateway.
        n != self.subnet.first() && n != u128::from(self.gateway) && !self.used.contains(&n)
    }

    /// The next free address after the last one given. A subnet holds far
    /// more than a host runs containers, so the search is bounded.
    pub fn allocate(&mut self) -> Result<Ipv6Addr> {
        let (lo, hi) = (self.subnet.first(), self.subnet.last());
        let tries = (hi - lo).saturating_add(1).min(1 << 20);
        if let Some(n) = crate::ipam::next_free(lo, hi, self.last, tries, |n| self.usable(n)) {
            self.used.insert(n);
            self.last = n;
            return Ok(Ipv6Addr::from(n));
        }
        Err(Error::Conflict(format!("no available IPv6 addresses on this network's address pools: {}", self.subnet)))
    }

    /// Take a given address (`--ip6`).
    pub fn reserve(&mut self, ip: Ipv6Addr) -> Result<()> {
        if !self.subnet.contains(ip) {
            return Err(Error::Invalid(format!("invalid address {ip}: it does not belong to subnet {}", self.subnet)));
        }
        if !self.usable(u128::from(ip)) {
            return Err(Error::Conflict(format!("Address already in use: {ip}")));
        }
        self.used.insert(u128::from(ip));
        Ok(())
    }

    pub fn release(&mut self, ip: Ipv6Addr) {
        self.used.remove(&u128::from(ip));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn v6_subnets_parse_and_hand_out_addresses_in_turn() {
        let s: Subnet6 = "fd00:1:2:3::/64".parse().unwrap();
        assert_eq!(s.first_host(), "fd00:1:2:3::1".parse::<Ipv6Addr>().unwrap());
        assert!(s.contains("fd00:1:2:3::ffff".parse().unwrap()));
        assert!(!s.contains("fd00:1:2:4::1".parse().unwrap()));
        assert!("fd00:1:2:3::1/64".parse::<Subnet6>().is_err(), "host bits");
        assert!("fd00::/129".parse::<Subnet6>().is_err() && "10.0.0.0/8".parse::<Subnet6>().is_err());
        let mut p = Pool6::new(s, s.first_host()).unwrap();
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_eq!((a.to_string().as_str(), b.to_string().as_str()), ("fd00:1:2:3::2", "fd00:1:2:3::3"));
        p.release(a);
        assert_eq!(p.allocate().unwrap().to_string(), "fd00:1:2:3::4", "a released address is not reused at once");
        assert!(p.reserve(b).is_err() && p.reserve("fd00::5".parse().unwrap()).is_err());
        p.reserve("fd00:1:2:3::99".parse().unwrap()).unwrap();
        let r = Subnet6::random_ula();
        assert_eq!((r.prefix(), r.addr().octets()[0]), (64, 0xfd));
        let tiny: Subnet6 = "fd00::/127".parse().unwrap();
        let mut t = Pool6::new(tiny, tiny.first_host()).unwrap();
        assert!(t.allocate().is_err(), "a /127 has room for its gateway alone");
    }
}
