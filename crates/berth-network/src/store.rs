//! The networks of one daemon: their records under `<data-root>/network`,
//! their bridges, the addresses handed out on each, the host ports held
//! for published ports, and the nftables table made from all of it.
//!
//! Every daemon has three predefined networks, as Docker: `bridge` (its
//! default bridge, `berth0` unless configured), `host` and `none`. User
//! networks use the bridge driver.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::ipam::{Pool, Subnet};
use crate::ipam6::{Pool6, Subnet6};
use crate::link::{self, Bridge};
use crate::netlink::Netlink;
use crate::nft::{self, Forward, Forward6, Net, Net6, Ruleset};
use crate::ports::{self, Proto, Reservation};
use crate::{Error, Result};

pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// What is kept of a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Subnet>,
    /// The bridge's link name (bridge driver).
    pub bridge: String,
    pub mtu: u32,
    pub masquerade: bool,
    /// `bridge`, `host` or `none`, which every daemon has.
    pub predefined: bool,
    /// The bridge was there before the network (named with
    /// `com.docker.network.bridge.name`): used, never deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign_bridge: bool,
    /// Addresses of the subnet kept from containers (IPAM
    /// AuxiliaryAddresses), by the name given to each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// The IPv6 side of an IPv6 network (`EnableIPv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<V6>,
}

/// An IPv6 subnet of a network and its gateway (the bridge's address).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct V6 {
    pub subnet: Subnet6,
    pub gateway: Ipv6Addr,
}

impl Network {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
    /// `EnableIPv6`, with the IPv6 subnet and gateway asked for (a random
    /// unique local /64 and its first address when not).
    pub enable_ipv6: bool,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
}

/// An address of a container on an IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease6 {
    pub ip: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Ipv6Addr,
}

/// The default bridge as the daemon is configured (`--bridge`, `--bip`,
/// `--fixed-cidr`, `--mtu`).
#[derive(Debug, Clone)]
pub struct DefaultBridge {
    pub name: String,
    /// The bridge's address and prefix (`--bip 172.17.0.1/16`).
    pub bip: (Ipv4Addr, u8),
    pub fixed_cidr: Option<Subnet>,
    pub mtu: u32,
    /// `--ipv6`, with `--fixed-cidr-v6` or, without it, the subnet it had
    /// before (else a new unique local /64).
    pub ipv6: bool,
    pub fixed_cidr_v6: Option<Subnet6>,
}

impl Default for DefaultBridge {
    fn default() -> Self {
        DefaultBridge {
            name: "berth0".into(),
            bip: (Ipv4Addr::new(172, 17, 0, 1), 16),
            fixed_cidr: None,
            mtu: 1500,
            ipv6: false,
            fixed_cidr_v6: None,
        }
    }
}

/// Where user networks without a subnet get one: each base split into
/// subnets of a size (Docker's `default-address-pools`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Subnet,
    pub size: u8,
}

/// Docker's defaults: 172.17–31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_address_pools() -> Vec<AddressPool> {
    let mut v: Vec<AddressPool> = (17..=31)
        .filter_map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16).ok())
        .map(|base| AddressPool { base, size: 16 })
        .collect();
    if let Ok(base) = Subnet::new(Ipv4Addr::new(192, 168, 0, 0), 16) {
        v.push(AddressPool { base, size: 20 });
    }
    v
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `<data-root>/network`.
    pub dir: PathBuf,
    /// The nftables table (`ip <table>`) this daemon owns.
    pub table: String,
    pub default_bridge: DefaultBridge,
    pub address_pools: Vec<AddressPool>,
}

/// A published port to set up: `-p [host_ip:][host_ports:]port/proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub port: u16,
    pub proto: Proto,
    /// Empty: every address. An IPv6 one is relayed by berthd alone.
    pub host_ip: Option<IpAddr>,
    /// A range to take the first free port of; `None`: any free port.
    pub host_ports: Option<(u16, u16)>,
}

/// A port published, as inspect and `docker port` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub port: u16,
    pub proto: Proto,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// An address given to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

#[derive(Debug)]
struct Held {
    fwd: Forward,
    /// The same port to the container's IPv6 address, on every local IPv6
    /// address (a port published on all addresses, on an IPv6 network).
    fwd6: Option<Forward6>,
    _res: Reservation,
}

#[derive(Debug)]
struct Inner {
    nets: BTreeMap<String, Network>,
    pools: HashMap<String, Pool>,
    pools6: HashMap<String, Pool6>,
    /// Published ports by the container that published them.
    published: BTreeMap<String, Vec<Held>>,
    /// Bridges known to exist, by name: their link index.
    bridges: HashMap<String, u32>,
    nl: Option<Netlink>,
}

#[derive(Debug)]
pub struct Store {
    cfg: Config,
    inner: Mutex<Inner>,
}

fn new_id() -> String {
    berth_core::id::hex(&crate::random_bytes::<32>())
}

/// libnetwork's rule for network names since it allowed spaces
/// (moby/libnetwork#1560): a letter or digit first, then letters, digits,
/// `_`, `.`, `-` and spaces, not ending in a space.
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "_.- ".contains(ch))
        && !n.ends_with(' ')
        && n.len() <= 255
}

impl Store {
    /// Read the records and make sure the predefined networks are there,
    /// the default bridge as configured. Bridges are made as they are
    /// first used; the table is written by [`Store::apply`], after the
    /// caller has restored the published ports of running containers.
    pub fn open(cfg: Config) -> Result<Store> {
        berth_core::perm::ensure_dir(&cfg.dir, berth_core::perm::PRIVATE_DIR)
            .map_err(Error::io(format!("create {}", cfg.dir.display())))?;
        let mut nets = BTreeMap::new();
        let rd = std::fs::read_dir(&cfg.dir).map_err(Error::io(format!("read {}", cfg.dir.display())))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            // A record that does not parse is left for the user to see;
            // a half-written one cannot exist (records are replaced whole).
            let Ok(n) =
                std::fs::read(&p).map_err(|_| ()).and_then(|b| serde_json::from_slice::<Network>(&b).map_err(|_| ()))
            else {
                continue;
            };
            nets.insert(n.id.clone(), n);
        }
        let store = Store {
            cfg,
            inner: Mutex::new(Inner {
                nets,
                pools: HashMap::new(),
                pools6: HashMap::new(),
                published: BTreeMap::new(),
                bridges: HashMap::new(),
                nl: None,
            }),
        };
        store.predefined()?;
        let mut g = store.lock()?;
        let ids: Vec<String> = g.nets.keys().cloned().collect();
        for id in ids {
            if let Some(n) = g.nets.get(&id).filter(|n| n.is_bridge()).cloned() {
                let pool = pool_of(&n)?;
                if let Some(v6) = n.ipv6 {
                    g.pools6.insert(id.clone(), Pool6::new(v6.subnet, v6.gateway)?);
                }
                g.pools.insert(id, pool);
            }
        }
        drop(g);
        Ok(store)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| Error::Invalid("network store poisoned".into()))
    }

    fn save(&self, n: &Network) -> Result<()> {
        let body = serde_json::to_vec_pretty(n).map_err(|e| Error::Invalid(e.to_string()))?;
        let p = self.cfg.dir.join(format!("{}.json", n.id));
        berth_core::atomic::write_atomic(&p, &body, 0o600).map_err(Error::io(format!("write {}", p.display())))
    }

    /// `bridge`, `host` and `none`, with the default bridge as configured now.
    fn predefined(&self) -> Result<()> {
        let d = &self.cfg.default_bridge;
        let subnet = Subnet::containing(d.bip.0, d.bip.1);
        let mut g = self.lock()?;
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            let old = g.nets.values().find(|n| n.predefined && n.name == name).cloned();
            let mut n = old.clone().unwrap_or_else(|| Network {
                id: new_id(),
                name: name.into(),
                driver: driver.into(),
                created: berth_core::time::now_rfc3339(),
                internal: false,
                attachable: false,
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
                subnet: None,
                gateway: None,
                ip_range: None,
                bridge: String::new(),
                mtu: 0,
                masquerade: false,
                predefined: true,
                foreign_bridge: false,
                aux_addresses: BTreeMap::new(),
                ipv6: None,
            });
            if driver == "bridge" {
                n.ipv6 = match (d.ipv6, d.fixed_cidr_v6, n.ipv6) {
                    (false, _, _) => None,
                    (true, Some(s), _) => Some(V6 { subnet: s, gateway: s.first_host() }),
                    (true, None, Some(kept)) => Some(kept),
                    (true, None, None) => {
                        let s = Subnet6::random_ula();
                        Some(V6 { subnet: s, gateway: s.first_host() })
                    }
                };
                n.subnet = Some(subnet);
                n.gateway = Some(d.bip.0);
                n.ip_range = d.fixed_cidr;
                n.bridge = d.name.clone();
                n.mtu = d.mtu;
                n.masquerade = true;
                n.options = BTreeMap::from([
                    ("com.docker.network.bridge.default_bridge".into(), "true".into()),
                    (OPT_MASQUERADE.into(), "true".into()),
                    ("com.docker.network.bridge.enable_icc".into(), "true".into()),
                    (OPT_BRIDGE_NAME.into(), d.name.clone()),
                    (OPT_MTU.into(), d.mtu.to_string()),
                ]);
                pool_of(&n)?;
            }
            if old.as_ref() != Some(&n) {
                self.save(&n)?;
                g.nets.insert(n.id.clone(), n);
            }
        }
        Ok(())
    }

    /// A network by id, name or unique id prefix (Docker's order).
    pub fn find(&self, key: &str) -> Result<Network> {
        let g = self.lock()?;
        find_in(&g.nets, key).cloned()
    }

    pub fn list(&self) -> Result<Vec<Network>> {
        Ok(self.lock()?.nets.values().cloned().collect())
    }

    /// The network named as a container's `--network` names it: the
    /// predefined `default` is `bridge`.
    pub fn for_mode(&self, mode: &str) -> Result<Network> {
        self.find(if mode == "default" { "bridge" } else { mode })
    }

    /// `POST /networks/create`: the record, the bridge and the table.
    pub fn create(&self, req: CreateNetwork) -> Result<Network> {
        if !valid_name(&req.name) {
            return Err(Error::Invalid(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_. -] are allowed",
                req.name
            )));
        }
        let driver = if req.driver.is_empty() { "bridge" } else { req.driver.as_str() };
        match driver {
            "bridge" => {}
            "host" | "null" => {
                return Err(Error::Forbidden(format!("only one instance of \"{driver}\" network is allowed")))
            }
            other => return Err(Error::NotFound(format!("plugin \"{other}\" not found"))),
        }
        let mut g = self.lock()?;
        if g.nets.values().any(|n| n.name == req.name) {
            return Err(Error::Conflict(format!("network with name {} already exists", req.name)));
        }
        let mtu = match req.options.get(OPT_MTU) {
            Some(m) => m
                .parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| Error::Invalid(format!("invalid value for {OPT_MTU}: {m:?}")))?,
            None => self.cfg.default_bridge.mtu,
        };
        let masquerade = match req.options.get(OPT_MASQUERADE).map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(Error::Invalid(format!("invalid value for {OPT_MASQUERADE}: {v:?}"))),
        };
        let id = new_id();
        let bridge = match req.options.get(OPT_BRIDGE_NAME) {
            Some(b) => {
                if !link::valid_link_name(b) {
                    return Err(Error::Invalid(format!("invalid bridge name {b:?}")));
                }
                if g.nets.values().any(|n| &n.bridge == b) {
                    return Err(Error::Conflict(format!("bridge name {b} is already used by another network")));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let foreign_bridge =
            netlink(&mut g)?.link(&bridge).map_err(Error::io(format!("look up link {bridge}")))?.is_some();
        let subnet = match &req.subnet {
            Some(s) => {
                let s: Subnet = s.parse()?;
                if let Some(o) = g.nets.values().find(|n| n.subnet.is_some_and(|o| o.overlaps(&s))) {
                    return Err(Error::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({s} and network {}'s {})",
                        o.name,
                        o.subnet.map(|x| x.to_string()).unwrap_or_default()
                    )));
                }
                s
            }
            None => self.pick_subnet(&mut g)?,
        };
        let gateway = match &req.gateway {
            Some(gw) => {
                let ip: Ipv4Addr = gw.parse().map_err(|_| Error::Invalid(format!("invalid gateway address: {gw}")))?;
                if !subnet.contains(ip) {
                    return Err(Error::Invalid(format!("no matching subnet for gateway {gw}")));
                }
                ip
            }
            None => subnet.first_host(),
        };
        let ip_range = match &req.ip_range {
            Some(r) => Some(r.parse::<Subnet>()?),
            None => None,
        };
        let ipv6 = match (&req.subnet6, &req.gateway6) {
            (None, Some(_)) => return Err(Error::Invalid("an IPv6 gateway needs an IPv6 subnet".into())),
            _ if !req.enable_ipv6 && req.subnet6.is_some() => {
                return Err(Error::Invalid("an IPv6 subnet needs EnableIPv6".into()))
            }
            _ if !req.enable_ipv6 => None,
            (s, gw) => {
                let subnet: Subnet6 = match s {
                    Some(s) => s.parse()?,
                    None => Subnet6::random_ula(),
                };
                if let Some(o) = g.nets.values().find(|n| n.ipv6.is_some_and(|o| o.subnet.overlaps(&subnet))) {
                    return Err(Error::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({subnet} and network {}'s)",
                        o.name
                    )));
                }
                let gateway = match gw {
                    Some(gw) => {
                        let ip: Ipv6Addr =
                            gw.parse().map_err(|_| Error::Invalid(format!("invalid gateway address: {gw}")))?;
                        if !subnet.contains(ip) {
                            return Err(Error::Invalid(format!("no matching subnet for gateway {gw}")));
                        }
                        ip
                    }
                    None => subnet.first_host(),
                };
                Some(V6 { subnet, gateway })
            }
        };
        let mut aux_addresses = BTreeMap::new();
        for (name, a) in &req.aux_addresses {
            let ip: Ipv4Addr =
                a.parse().map_err(|_| Error::Invalid(format!("invalid auxiliary address {name}={a}")))?;
            if !subnet.contains(ip) {
                return Err(Error::Invalid(format!("no matching subnet for aux-address {a}")));
            }
            aux_addresses.insert(name.clone(), ip);
        }
        let n = Network {
            id: id.clone(),
            name: req.name.clone(),
            driver: "bridge".into(),
            created: berth_core::time::now_rfc3339(),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels.clone(),
            options: req.options.clone(),
            subnet: Some(subnet),
            gateway: Some(gateway),
            ip_range,
            bridge: bridge.clone(),
            mtu,
            masquerade,
            predefined: false,
            foreign_bridge,
            aux_addresses,
            ipv6,
        };
        let pool = pool_of(&n)?;
        let pool6 = match n.ipv6 {
            Some(v6) => Some(Pool6::new(v6.subnet, v6.gateway)?),
            None => None,
        };
        let made = self.bridge_locked(&mut g, &n).and_then(|_| {
            g.nets.insert(id.clone(), n.clone());
            self.apply_locked(&g)
        });
        if let Err(e) = made.and_then(|_| self.save(&n)) {
            g.nets.remove(&id);
            g.bridges.remove(&bridge);
            if let Some(nl) = g.nl.as_mut().filter(|_| !foreign_bridge) {
                let _ = nl.delete_link_named(&bridge);
            }
            let _ = self.apply_locked(&g);
            let _ = std::fs::remove_file(self.cfg.dir.join(format!("{id}.json")));
            return Err(e);
        }
        if let Some(p6) = pool6 {
            g.pools6.insert(id.clone(), p6);
        }
        g.pools.insert(id, pool);
        Ok(n)
    }

    /// The first subnet of the address pools that overlaps no network
    /// and no route of the host.
    fn pick_subnet(&self, g: &mut Inner) -> Result<Subnet> {
        let routes = netlink(g)?.routes().map_err(Error::io("list routes"))?;
        let taken = |s: &Subnet| {
            g.nets.values().any(|n| n.subnet.is_some_and(|o| o.overlaps(s)))
                || routes.iter().filter(|r| r.prefix > 0).any(|r| Subnet::containing(r.dst, r.prefix).overlaps(s))
        };
        for p in &self.cfg.address_pools {
            let step = 1u64 << (32 - u32::from(p.size.min(32)));
            let count = 1u64 << (u32::from(p.size.saturating_sub(p.base.prefix())).min(24));
            for i in 0..count {
                let addr = u64::from(u32::from(p.base.addr())) + i * step;
                let Ok(s) = Subnet::new(Ipv4Addr::from(addr as u32), p.size) else { continue };
                if p.base.covers(&s) && !taken(&s) {
                    return Ok(s);
                }
            }
        }
        Err(Error::Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into()))
    }

    /// `DELETE /networks/{id}`; the caller has checked that no running
    /// container is on it.
    pub fn remove(&self, key: &str) -> Result<Network> {
        let mut g = self.lock()?;
        let n = find_in(&g.nets, key)?.clone();
        if n.predefined {
            return Err(Error::Forbidden(format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        // The link first: if it cannot go, nothing has changed; if the
        // record then cannot go, the bridge is made again at its next use.
        g.bridges.remove(&n.bridge);
        if !n.foreign_bridge {
            netlink(&mut g)?.delete_link_named(&n.bridge).map_err(Error::io(format!("delete bridge {}", n.bridge)))?;
        }
        let p = self.cfg.dir.join(format!("{}.json", n.id));
        std::fs::remove_file(&p).map_err(Error::io(format!("remove {}", p.display())))?;
        g.nets.remove(&n.id);
        g.pools.remove(&n.id);
        g.pools6.remove(&n.id);
        let _ = self.apply_locked(&g);
        Ok(n)
    }

    /// Make sure a bridge network's bridge is there; its link index.
    pub fn bridge_index(&self, net: &Network) -> Result<u32> {
        let mut g = self.lock()?;
        self.bridge_locked(&mut g, net)
    }

    /// Forget what is known of a bridge (it was found missing), so that
    /// the next use makes it again.
    pub fn forget_bridge(&self, net: &Network) {
        if let Ok(mut g) = self.lock() {
            g.bridges.remove(&net.bridge);
        }
    }

    fn bridge_locked(&self, g: &mut Inner, n: &Network) -> Result<u32> {
        if let Some(i) = g.bridges.get(&n.bridge) {
            return Ok(*i);
        }
        let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) else {
            return Err(Error::Invalid(format!("network {} has no subnet", n.name)));
        };
        let gateway6 = n.ipv6.map(|v| (v.gateway, v.subnet.prefix()));
        let b = Bridge { name: &n.bridge, gateway, prefix: subnet.prefix(), mtu: n.mtu, gateway6 };
        let idx = link::ensure_bridge(netlink(g)?, &b).map_err(Error::io(format!("set up bridge {}", n.bridge)))?;
        if !n.internal {
            link::enable_forwarding().map_err(Error::io("enable IPv4 forwarding"))?;
            if n.ipv6.is_some() {
                link::enable_forwarding6().map_err(Error::io("enable IPv6 forwarding"))?;
            }
        }
        g.bridges.insert(n.bridge.clone(), idx);
        Ok(idx)
    }

    /// An address on a bridge network: `ip` if given and free, else the
    /// next free one.
    pub fn allocate(&self, net: &str, ip: Option<Ipv4Addr>) -> Result<Lease> {
        let mut g = self.lock()?;
        let pool = g.pools.get_mut(net).ok_or_else(|| Error::NotFound(format!("network {net} not found")))?;
        let ip = match ip {
            Some(ip) => {
                pool.reserve(ip)?;
                ip
            }
            None => pool.allocate()?,
        };
        Ok(Lease { ip, prefix: pool.subnet().prefix(), gateway: pool.gateway() })
    }

    /// An IPv6 address on an IPv6 network: `ip` if given and free, else
    /// the next free one; `None` for a network without IPv6.
    pub fn allocate6(&self, net: &str, ip: Option<Ipv6Addr>) -> Result<Option<Lease6>> {
        let mut g = self.lock()?;
        let Some(pool) = g.pools6.get_mut(net) else {
            return match ip {
                Some(ip) => Err(Error::Invalid(format!("invalid address {ip}: the network has no IPv6"))),
                None => Ok(None),
            };
        };
        let ip = match ip {
            Some(ip) => {
                pool.reserve(ip)?;
                ip
            }
            None => pool.allocate()?,
        };
        Ok(Some(Lease6 { ip, prefix: pool.subnet().prefix(), gateway: pool.gateway() }))
    }

    pub fn release6(&self, net: &str, ip: Ipv6Addr) {
        if let Ok(mut g) = self.lock() {
            if let Some(p) = g.pools6.get_mut(net) {
                p.release(ip);
            }
        }
    }

    /// An address, `prev` (the owner's address before) when it can be had.
    pub fn allocate_preferring(&self, net: &str, prev: Ipv4Addr, owner: &str) -> Result<Lease> {
        let mut g = self.lock()?;
        let pool = g.pools.get_mut(net).ok_or_else(|| Error::NotFound(format!("network {net} not found")))?;
        let ip = pool.allocate_preferring(prev, owner)?;
        Ok(Lease { ip, prefix: pool.subnet().prefix(), gateway: pool.gateway() })
    }

    /// Hold `ip` for `owner` while its veth goes (see `Pool::hold`).
    pub fn hold(&self, net: &str, ip: Ipv4Addr, owner: &str) {
        if let Ok(mut g) = self.lock() {
            if let Some(p) = g.pools.get_mut(net) {
                p.hold(ip, owner);
            }
        }
    }

    pub fn release_held(&self, net: &str, ip: Ipv4Addr, owner: &str) {
        if let Ok(mut g) = self.lock() {
            if let Some(p) = g.pools.get_mut(net) {
                p.release_held(ip, owner);
            }
        }
    }

    pub fn release(&self, net: &str, ip: Ipv4Addr) {
        if let Ok(mut g) = self.lock() {
            if let Some(p) = g.pools.get_mut(net) {
                p.release(ip);
            }
        }
    }

    /// Hold the host ports of `reqs` for container `owner` (address `ip`)
    /// and forward them to it. All or nothing: on any failure nothing is
    /// held or forwarded.
    pub fn publish(
        &self,
        owner: &str,
        ip: Ipv4Addr,
        ip6: Option<Ipv6Addr>,
        reqs: &[PublishRequest],
    ) -> Result<Vec<Published>> {
        let mut g = self.lock()?;
        let mut held = Vec::new();
        let mut out = Vec::new();
        for r in reqs {
            let v4 = match r.host_ip {
                Some(IpAddr::V6(a)) => {
                    // berthd's relay binds it (see the engine's proxy):
                    // nothing is held or forwarded here.
                    let host_port = match r.host_ports {
                        None | Some((0, 0)) => 0,
                        Some((lo, hi)) if lo == hi => lo,
                        Some(_) => {
                            return Err(Error::Invalid(format!(
                                "a range of host ports on the IPv6 address {a} is not supported"
                            )))
                        }
                    };
                    out.push(Published { port: r.port, proto: r.proto, host_ip: IpAddr::V6(a), host_port });
                    continue;
                }
                Some(IpAddr::V4(a)) => Some(a),
                None => None,
            };
            let host_ip = v4.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let (res, port) = take_port(r.proto, host_ip, r.host_ports, r.port)?;
            out.push(Published { port: r.port, proto: r.proto, host_ip: IpAddr::V4(host_ip), host_port: port });
            let fwd = Forward { proto: r.proto, host_ip: v4, host_port: port, ip, port: r.port };
            let fwd6 = ip6.filter(|_| r.host_ip.is_none()).map(|ip| Forward6 {
                proto: r.proto,
                host_port: port,
                ip,
                port: r.port,
            });
            held.push(Held { fwd, fwd6, _res: res });
        }
        if held.is_empty() {
            return Ok(out);
        }
        g.published.entry(owner.to_owned()).or_default().extend(held);
        if let Err(e) = self.apply_locked(&g) {
            g.published.remove(owner);
            return Err(e);
        }
        Ok(out)
    }

    /// Stop forwarding and holding `owner`'s published ports.
    pub fn unpublish(&self, owner: &str) -> Result<()> {
        let mut g = self.lock()?;
        if g.published.remove(owner).is_some() {
            self.apply_locked(&g)?;
        }
        Ok(())
    }

    /// Write the table from what is held now.
    pub fn apply(&self) -> Result<()> {
        let g = self.lock()?;
        self.apply_locked(&g)
    }

    fn apply_locked(&self, g: &Inner) -> Result<()> {
        let mut r = Ruleset { ipv6: nft::host_has_ipv6(), ..Default::default() };
        for n in g.nets.values().filter(|n| n.is_bridge()) {
            if let Some(subnet) = n.subnet {
                r.nets.push(Net { bridge: n.bridge.clone(), subnet, internal: n.internal, masquerade: n.masquerade });
            }
            if let Some(v6) = n.ipv6 {
                r.nets6.push(Net6 {
                    bridge: n.bridge.clone(),
                    subnet: v6.subnet,
                    internal: n.internal,
                    masquerade: n.masquerade,
                });
            }
        }
        r.forwards = g.published.values().flatten().map(|h| h.fwd.clone()).collect();
        r.forwards6 = g.published.values().flatten().filter_map(|h| h.fwd6.clone()).collect();
        nft::apply(&self.cfg.table, &r).map_err(Error::io("write the nftables table"))
    }

    /// Delete the host end of a veth pair (the other end goes with it).
    /// The deletion waits for the kernel's RCU grace periods (about 20 ms),
    /// so it has a socket of its own and holds no lock of the store.
    pub fn delete_link(&self, name: &str) -> Result<()> {
        let mut nl = Netlink::open().map_err(Error::io("open a netlink socket"))?;
        nl.delete_link_named(name).map_err(Error::io(format!("delete {name}")))
    }

    /// Run `f` with a netlink socket of the host's namespace, its own, so
    /// that work on one container's links holds up no other use of the
    /// store.
    pub fn with_netlink<T>(&self, f: impl FnOnce(&mut Netlink) -> std::io::Result<T>) -> Result<std::io::Result<T>> {
        let mut nl = Netlink::open().map_err(Error::io("open a netlink socket"))?;
        Ok(f(&mut nl))
    }

    /// Remove the table (the daemon's networks are all gone).
    pub fn drop_table(&self) -> Result<()> {
        nft::delete(&self.cfg.table).map_err(Error::io("delete the nftables table"))
    }
}

fn netlink(g: &mut Inner) -> Result<&mut Netlink> {
    if g.nl.is_none() {
        g.nl = Some(Netlink::open().map_err(Error::io("open a netlink socket"))?);
    }
    g.nl.as_mut().ok_or_else(|| Error::Invalid("no netlink socket".into()))
}

fn find_in<'a>(nets: &'a BTreeMap<String, Network>, key: &str) -> Result<&'a Network> {
    let missing = || Error::NotFound(format!("network {key} not found"));
    if key.is_empty() {
        return Err(missing());
    }
    if let Some(n) = nets.get(key) {
        return Ok(n);
    }
    if let Some(n) = nets.values().find(|n| n.name == key) {
        return Ok(n);
    }
    let hits: Vec<&Network> = nets.values().filter(|n| n.id.starts_with(key)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(missing()),
        _ => {
            Err(Error::Invalid(format!("network {key} is ambiguous ({} matches found based on ID prefix)", hits.len())))
        }
    }
}

fn pool_of(n: &Network) -> Result<Pool> {
    let (Some(s), Some(gw)) = (n.subnet, n.gateway) else {
        return Err(Error::Invalid(format!("network {} has no subnet", n.name)));
    };
    let mut pool = Pool::new(s, n.ip_range, gw)?;
    // Kept from containers, as moby's IPAM keeps them.
    for ip in n.aux_addresses.values() {
        if *ip != gw {
            pool.reserve(*ip)?;
        }
    }
    Ok(pool)
}

/// Bind a host port for a published port: the first free one of `range`,
/// or one the kernel picks.
fn take_port(proto: Proto, ip: Ipv4Addr, range: Option<(u16, u16)>, port: u16) -> Result<(Reservation, u16)> {
    let fail = |hp: u16, e: std::io::Error| {
        if e.raw_os_error() == Some(libc::EADDRINUSE) {
            Error::Conflict(format!(
                "failed to bind host port for {ip}:{hp}:{port}/{}: address already in use",
                proto.as_str()
            ))
        } else {
            Error::Io { what: format!("bind host port {ip}:{hp}/{}", proto.as_str()), source: e }
        }
    };
    match range {
        None | Some((0, 0)) => ports::reserve(proto, ip, 0).map_err(|e| fail(0, e)),
        Some((lo, hi)) => {
            let mut last = None;
            for hp in lo..=hi {
                match ports::reserve(proto, ip, hp) {
                    Ok(r) => return Ok(r),
                    Err(e) => last = Some((hp, e)),
                }
            }
            Err(last.map_or_else(|| Error::Invalid("empty port range".into()), |(hp, e)| fail(hp, e)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_as_docker_allows() {
        for good in ["my-net_1.x", "a b", "my network 2", "x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "   ", "a\nb", "-a", ".x", "a/b", " padded", "trailing "] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn default_pools_are_dockers() {
        let p = default_address_pools();
        assert_eq!(p[0].base.to_string(), "172.17.0.0/16");
        assert_eq!(p.last().unwrap().size, 20);
    }
}
