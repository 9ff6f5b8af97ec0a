//! The daemon's registry settings (daemon.json `registry-mirrors`,
//! `insecure-registries`, `max-concurrent-downloads`, and the `certs.d`
//! directory), and Docker's rule for which registries are insecure.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::{Error, Result};

/// Docker's default number of layers a pull downloads at once.
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;

/// How berth reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Mirrors of docker.io, tried in order before it (`https://host[:port]`).
    pub mirrors: Vec<String>,
    /// Registries reached over plain HTTP or unverified HTTPS: hosts
    /// (`host:port`) and CIDRs.
    pub insecure: Vec<Insecure>,
    /// `<config-dir>/certs.d`: `<host:port>/*.crt` are CAs for that
    /// registry, `*.cert` with `*.key` its client certificate.
    pub certs_dir: PathBuf,
    /// Layers a pull downloads at once.
    pub max_concurrent_downloads: usize,
    /// Compress layers pushed for the first time with zstd (an OCI
    /// manifest then names them) rather than gzip.
    pub push_zstd: bool,
    /// Registries (hosts or CIDRs) whose non-distributable ("foreign")
    /// layers a pull fetches from the URLs their descriptors name:
    /// daemon.json's `allow-nondistributable-artifacts`. Elsewhere such a
    /// layer is refused rather than fetched from a place the image's
    /// registry did not vouch for.
    pub nondistributable: Vec<Insecure>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            mirrors: vec![],
            insecure: vec![],
            certs_dir: PathBuf::from("/etc/berth/certs.d"),
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
            push_zstd: false,
            nondistributable: vec![],
        }
    }
}

/// One entry of `insecure-registries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insecure {
    Host(String),
    Cidr(IpAddr, u8),
}

impl std::str::FromStr for Insecure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Insecure> {
        let s = s.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| Error::Invalid(format!("insecure registry {s}: bad CIDR")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = bits.parse::<u8>().ok().filter(|b| *b <= max);
            let bits = bits.ok_or_else(|| Error::Invalid(format!("insecure registry {s}: bad CIDR")))?;
            return Ok(Insecure::Cidr(ip, bits));
        }
        if s.is_empty() || s.contains('/') {
            return Err(Error::Invalid(format!("insecure registry {s:?} is not a host or a CIDR")));
        }
        Ok(Insecure::Host(s.to_owned()))
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The name or address of `host[:port]` (`[v6]:port` too).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    }
}

impl RegistryConfig {
    /// Whether `host` (`name[:port]`) is reached without a verified TLS
    /// connection, as Docker decides it: listed by name, or one of its
    /// addresses in a listed CIDR or on loopback (127.0.0.0/8 and `::1`
    /// are insecure by default, and so is `localhost`).
    pub fn is_insecure(&self, host: &str) -> bool {
        host_name(host) == "localhost" || listed(&self.insecure, host, true)
    }

    /// Whether a pull from `host` may fetch foreign layers from their URLs.
    pub fn allows_nondistributable(&self, host: &str) -> bool {
        listed(&self.nondistributable, host, false)
    }
}

/// Whether `host` is in `list`, by name or by an address in a CIDR of it
/// (or on loopback, when `loopback`).
fn listed(list: &[Insecure], host: &str, loopback: bool) -> bool {
    if list.iter().any(|i| matches!(i, Insecure::Host(h) if h == host)) {
        return true;
    }
    let name = host_name(host);
    let addrs: Vec<IpAddr> = match name.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(name, 0))
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    addrs.iter().any(|ip| {
        (loopback && ip.is_loopback())
            || list.iter().any(|i| matches!(i, Insecure::Cidr(net, bits) if in_cidr(*ip, *net, *bits)))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_insecure() {
        let c = RegistryConfig {
            insecure: vec!["10.1.0.0/16".parse().unwrap(), "reg.example:5000".parse().unwrap()],
            ..Default::default()
        };
        for host in ["127.0.0.1:5000", "127.9.9.9", "localhost:5000", "[::1]:5000", "10.1.2.3:443", "reg.example:5000"]
        {
            assert!(c.is_insecure(host), "{host}");
        }
        for host in ["10.2.0.1:5000", "192.0.2.1", "reg.example:5001"] {
            assert!(!c.is_insecure(host), "{host}");
        }
        assert!("10.0.0.0/33".parse::<Insecure>().is_err());
        assert!("a/b/c".parse::<Insecure>().is_err());
    }
}
