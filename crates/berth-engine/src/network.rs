//! Containers on networks: what create checks, what start sets up between
//! the runtime's create and the start of the container's process, what an
//! exit undoes, and the `/networks` operations that involve containers.
//!
//! A container's network namespace is made by the runtime with the
//! container (berthd never makes one); berthd connects it through
//! `/proc/<pid>/ns/net` before telling the shim to start the process, so
//! the process starts with its interfaces, as Docker's prestart hook does.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use berth_network::dns;
use berth_network::link;
use berth_network::netns;
use berth_network::ports::{parse_range, Port};
use berth_network::store::{Network, PublishRequest};

use crate::containers::poisoned;
use crate::model::{Attachment, Container, CreateRequest, EndpointConfig, NetState};
use crate::{Engine, Error, Result};

/// What `--network` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    None,
    Host,
    /// Another container's namespace.
    Container(&'a str),
    /// A bridge network by name or id (`bridge` is the default).
    Bridge(&'a str),
}

pub fn mode(s: &str) -> Mode<'_> {
    match s {
        "none" => Mode::None,
        "host" => Mode::Host,
        "" | "default" | "bridge" => Mode::Bridge("bridge"),
        s => match s.strip_prefix("container:") {
            Some(x) => Mode::Container(x),
            None => Mode::Bridge(s),
        },
    }
}

/// The publish requests of `-p` and `-P`.
pub(crate) fn publish_requests(c: &Container) -> Result<Vec<PublishRequest>> {
    let mut out = Vec::new();
    for (key, binds) in &c.host.port_bindings {
        let p: Port = key.parse()?;
        let default = [crate::model::PortBinding::default()];
        let binds = if binds.is_empty() { &default[..] } else { &binds[..] };
        for b in binds {
            let host_ip = match b.host_ip.trim_start_matches('[').trim_end_matches(']') {
                "" | "0.0.0.0" => None,
                ip => Some(ip.parse::<IpAddr>().map_err(|_| Error::Invalid(format!("invalid host IP: {ip}")))?),
            };
            out.push(PublishRequest { port: p.port, proto: p.proto, host_ip, host_ports: parse_range(&b.host_port)? });
        }
    }
    if c.host.publish_all_ports {
        for key in &c.config.exposed_ports {
            if c.host.port_bindings.contains_key(key) {
                continue;
            }
            let p: Port = key.parse()?;
            out.push(PublishRequest { port: p.port, proto: p.proto, host_ip: None, host_ports: None });
        }
    }
    Ok(out)
}

impl Engine {
    /// At create: the network mode checked against the other options as
    /// Docker checks them, and the networks to connect to resolved.
    pub(crate) fn plan_networks(&self, c: &mut Container, req: &CreateRequest) -> Result<()> {
        publish_requests(c)?;
        match mode(&c.host.network_mode) {
            Mode::None | Mode::Host => {
                if let Some(k) = req.endpoints.keys().find(|k| !matches!(k.as_str(), "none" | "host")) {
                    return Err(Error::Invalid(format!(
                        "container cannot be connected to network \"{k}\" in network mode {}",
                        c.host.network_mode
                    )));
                }
                if c.host.network_mode == "host" {
                    // Docker discards published ports in host mode.
                    c.host.port_bindings.clear();
                    c.host.publish_all_ports = false;
                }
                Ok(())
            }
            Mode::Container(x) => {
                let conflict =
                    |what: &str| Err(Error::Invalid(format!("conflicting options: {what} and the network mode")));
                if !req.config.hostname.is_empty() {
                    return conflict("hostname");
                }
                if !c.host.dns.is_empty() || !c.host.dns_search.is_empty() || !c.host.dns_options.is_empty() {
                    return conflict("dns");
                }
                if !c.host.extra_hosts.is_empty() {
                    return conflict("custom host-to-IP mapping");
                }
                if !c.host.port_bindings.is_empty() || c.host.publish_all_ports {
                    return Err(Error::Invalid(
                        "conflicting options: port publishing and the container type network mode".into(),
                    ));
                }
                if !req.endpoints.is_empty() {
                    return Err(Error::Invalid(
                        "conflicting options: networking config and the container type network mode".into(),
                    ));
                }
                let other = self.find(x).map_err(|e| match e {
                    Error::NotFound(m) => Error::Invalid(m),
                    other => other,
                })?;
                let o = other.rec.lock().map_err(poisoned)?.clone();
                if o.id == c.id {
                    return Err(Error::Invalid("cannot join own network".into()));
                }
                // As moby's initializeNetworking: the other's names, and
                // (at start) its hostname, hosts and resolv.conf files.
                c.config.hostname = o.config.hostname;
                c.config.domainname = o.config.domainname;
                Ok(())
            }
            Mode::Bridge(name) => {
                // At create an unknown network is bad input (400): a 404
                // would send the docker CLI to pull the image.
                let lookup = |k: &str| {
                    self.networks.for_mode(k).map_err(|e| match e {
                        berth_network::Error::NotFound(m) => Error::Invalid(m),
                        other => other.into(),
                    })
                };
                let primary = lookup(name)?;
                match primary.driver.as_str() {
                    "host" => {
                        c.host.network_mode = "host".into();
                        return self.plan_networks(c, req);
                    }
                    "null" => {
                        c.host.network_mode = "none".into();
                        return self.plan_networks(c, req);
                    }
                    _ => {}
                }
                let mut nets = BTreeMap::new();
                let mut resolved = Vec::new();
                for (k, ep) in &req.endpoints {
                    resolved.push((k, lookup(k)?, ep));
                }
                let given = resolved.iter().find(|(_, n, _)| n.id == primary.id).map(|(_, _, ep)| *ep);
                nets.insert(primary.name.clone(), endpoint_config(&primary, given)?);
                for (k, n, ep) in resolved {
                    if n.id != primary.id {
                        if !n.is_bridge() {
                            return Err(Error::Invalid(format!(
                                "container cannot be disconnected from host network or connected to host network ({k})"
                            )));
                        }
                        nets.insert(n.name.clone(), endpoint_config(&n, Some(ep))?);
                    }
                }
                c.networks = nets;
                Ok(())
            }
        }
    }

    /// The namespace file to give the runtime for a container that joins
    /// another's (`container:<x>`): the other must be running.
    pub(crate) fn joined_netns(&self, c: &Container) -> Result<Option<String>> {
        if let Some(p) = &c.netns_path {
            return Ok(Some(p.clone()));
        }
        let Mode::Container(x) = mode(&c.host.network_mode) else { return Ok(None) };
        let other = self.find(x)?.rec.lock().map_err(poisoned)?.clone();
        if !other.state.status.is_live() || other.state.pid <= 0 {
            return Err(Error::Conflict(format!("cannot join network of a non running container: {}", other.id)));
        }
        Ok(Some(format!("/proc/{}/ns/net", other.state.pid)))
    }

    /// The files bound over /etc/hostname, hosts and resolv.conf: the
    /// container's own, or those of the container whose network it joins.
    pub(crate) fn etc_files(&self, c: &Container) -> [std::path::PathBuf; 3] {
        let own = |c: &Container| [&c.hostname_path, &c.hosts_path, &c.resolv_conf_path].map(std::path::PathBuf::from);
        let Mode::Container(x) = mode(&c.host.network_mode) else { return own(c) };
        match self.find(x).ok().and_then(|e| e.rec.lock().ok().map(|o| own(&o))) {
            Some(files) => files,
            None => own(c),
        }
    }

    /// Between the runtime's create and the process's start: connect the
    /// namespace of `pid` to the container's networks and publish its
    /// ports; `c.net` says what was set up. All or nothing.
    pub(crate) async fn network_up(self: &Arc<Self>, c: &mut Container, pid: i32) -> Result<()> {
        match mode(&c.host.network_mode) {
            Mode::Host | Mode::Container(_) => return Ok(()),
            Mode::None => {
                let up = tokio::task::spawn_blocking(move || {
                    let ns = netns::of_pid(pid)?;
                    link::loopback_only(&ns, || Ok(()))
                });
                up.await.map_err(|e| Error::Internal(e.to_string()))?.map_err(Error::io("bring up loopback"))?;
                return Ok(());
            }
            Mode::Bridge(_) => {}
        }
        let engine = self.clone();
        let c2 = c.clone();
        let (net, resolver) = tokio::task::spawn_blocking(move || engine.connect_blocking(&c2, pid))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let link_hosts = std::mem::take(&mut c.net.link_hosts);
        c.net = net;
        c.net.link_hosts = link_hosts;
        let embedded = resolver.is_some();
        let served = match resolver {
            Some(s) => self.dns_serve(c, s),
            None => Ok(()),
        };
        let written = served
            .and_then(|()| self.proxy_up(c).map(|ports| c.net.ports = ports))
            .and_then(|()| std::fs::write(&c.hosts_path, hosts_file(c)).map_err(Error::io("write hosts")))
            .and_then(|()| {
                let conf = resolv_conf(c, embedded);
                std::fs::write(&c.resolv_conf_path, conf).map_err(Error::io("write resolv.conf"))
            });
        if let Err(e) = written {
            self.proxy_down(&c.id);
            self.dns.stop(&c.id);
            self.disconnect_blocking(&c.id, &c.net);
            c.net = NetState::default();
            return Err(e);
        }
        Ok(())
    }

    /// The networks in order: the one `--network` named first (its
    /// interface is eth0 and has the default route), then by name.
    pub(crate) fn ordered(&self, c: &Container) -> Vec<(String, EndpointConfig)> {
        let primary = match mode(&c.host.network_mode) {
            Mode::Bridge(name) => self.networks.for_mode(name).ok().map(|n| n.name),
            _ => None,
        };
        let mut v: Vec<(String, EndpointConfig)> = c.networks.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        v.sort_by_key(|(k, _)| Some(k) != primary.as_ref());
        v
    }

    /// Plug `c`'s namespace in: what was set up, and the resolver's
    /// sockets opened there if it is on a user network.
    fn connect_blocking(&self, c: &Container, pid: i32) -> Result<(NetState, Option<dns::Sockets>)> {
        let mut state = NetState { sandbox_key: format!("/proc/{pid}/ns/net"), ..Default::default() };
        match self.connect_steps(c, pid, &mut state) {
            Ok(resolver) => Ok((state, resolver)),
            Err(e) => {
                self.disconnect_blocking(&c.id, &state);
                Err(e)
            }
        }
    }

    fn connect_steps(&self, c: &Container, pid: i32, state: &mut NetState) -> Result<Option<dns::Sockets>> {
        let ns = netns::of_pid(pid).map_err(Error::io(format!("open the network namespace of {pid}")))?;
        let mut eps = Vec::new();
        let mut primary: Option<(Network, Ipv4Addr, Option<std::net::Ipv6Addr>)> = None;
        for (i, (name, cfg)) in self.ordered(c).into_iter().enumerate() {
            let net = self
                .networks
                .find(&cfg.network_id)
                .map_err(|_| Error::NotFound(format!("network {name} not found")))?;
            let bridge = self.networks.bridge_index(&net)?;
            let lease = match (cfg.ipv4_address, c.last_ips.get(&net.id)) {
                (None, Some(prev)) => self.networks.allocate_preferring(&net.id, *prev, &c.id)?,
                (ip, _) => self.networks.allocate(&net.id, ip)?,
            };
            let gateway = (primary.is_none() && !net.internal).then_some(lease.gateway);
            let lease6 = match self.networks.allocate6(&net.id, cfg.ipv6_address) {
                Ok(l) => l,
                Err(e) => {
                    self.networks.release(&net.id, lease.ip);
                    return Err(e.into());
                }
            };
            let leases = (&lease, lease6.as_ref());
            let (attachment, endpoint) =
                match crate::endpoint::interface(&cfg, &net, leases, bridge, format!("eth{i}"), gateway) {
                    Ok(x) => x,
                    Err(e) => {
                        self.networks.release(&net.id, lease.ip);
                        if let Some(l6) = lease6 {
                            self.networks.release6(&net.id, l6.ip);
                        }
                        return Err(e);
                    }
                };
            state.attachments.insert(name.clone(), attachment);
            eps.push(endpoint);
            if primary.is_none() {
                primary = Some((net, lease.ip, lease6.map(|l| l.ip)));
            }
        }
        let want_dns = self.wants_dns(c);
        let inside = || if want_dns { dns::bind().map(Some) } else { Ok(None) };
        let resolver = match self.networks.with_netlink(|nl| link::plug(nl, &ns, &eps, inside))? {
            Ok(r) => r,
            Err(e) => {
                // A bridge deleted behind the daemon's back is made again next time.
                for a in state.attachments.values() {
                    if let Ok(n) = self.networks.find(&a.network_id) {
                        self.networks.forget_bridge(&n);
                    }
                }
                return Err(Error::Io { what: "connect the container's network namespace".into(), source: e });
            }
        };
        let reqs = publish_requests(c)?;
        if let Some((_, ip, ip6)) = primary.filter(|(n, _, _)| !n.internal && !reqs.is_empty()) {
            state.ports = self.networks.publish(&c.id, ip, ip6, &reqs)?;
        }
        Ok(resolver)
    }

    /// Undo [`Engine::network_up`]: unpublish, delete the host ends of
    /// the veth pairs, give the addresses back.
    pub(crate) fn disconnect_blocking(&self, id: &str, net: &NetState) {
        if !net.ports.is_empty() {
            let _ = self.networks.unpublish(id);
        }
        // Deleting a veth pair waits for the kernel's RCU grace periods
        // (about 20 ms here): done off the exit's path, and each address
        // is given back only once its pair is gone.
        let atts: Vec<Attachment> = net.attachments.values().cloned().collect();
        // Held for this container until its pair is gone: no one else gets
        // the address meanwhile, and a restart of this one takes it back.
        for a in &atts {
            if let Some(ip) = a.ip {
                self.networks.hold(&a.network_id, ip, id);
            }
        }
        let store = self.networks.clone();
        let owner = id.to_owned();
        std::thread::spawn(move || {
            for a in atts {
                if !a.veth.is_empty() {
                    let _ = store.delete_link(&a.veth);
                }
                if let Some(ip) = a.ip {
                    store.release_held(&a.network_id, ip, &owner);
                }
                if let Some(ip6) = a.ip6 {
                    store.release6(&a.network_id, ip6);
                }
            }
        });
    }

    /// After a daemon restart: take back the addresses and ports of a
    /// running container as they were.
    pub(crate) fn network_restore(self: &Arc<Self>, c: &Container) {
        for a in c.net.attachments.values() {
            if let Some(ip) = a.ip {
                let _ = self.networks.allocate(&a.network_id, Some(ip));
            }
            if let Some(ip6) = a.ip6 {
                let _ = self.networks.allocate6(&a.network_id, Some(ip6));
            }
        }
        if self.wants_dns(c) && c.state.pid > 0 {
            let _ = self.dns_reopen(c);
        }
        if c.net.ports.is_empty() {
            return;
        }
        let main = self.ordered(c).first().and_then(|(k, _)| c.net.attachments.get(k)).cloned();
        let Some((ip, ip6)) = main.and_then(|a| Some((a.ip?, a.ip6))) else { return };
        let reqs: Vec<PublishRequest> = c
            .net
            .ports
            .iter()
            .map(|p| PublishRequest {
                port: p.port,
                proto: p.proto,
                host_ip: match p.host_ip {
                    IpAddr::V4(a) if a.is_unspecified() => None,
                    ip => Some(ip),
                },
                host_ports: Some((p.host_port, p.host_port)),
            })
            .collect();
        let _ = self.networks.publish(&c.id, ip, ip6, &reqs);
        let _ = self.proxy_up(c);
    }
}

/// A network's endpoint as create or connect asks for it, checked.
pub(crate) fn endpoint_config(n: &Network, given: Option<&EndpointConfig>) -> Result<EndpointConfig> {
    let mut ep = given.cloned().unwrap_or_default();
    ep.network_id = n.id.clone();
    if n.predefined {
        if ep.ipv4_address.is_some() || ep.ipv6_address.is_some() {
            return Err(Error::Invalid("user specified IP address is supported on user defined networks only".into()));
        }
        if !ep.aliases.is_empty() {
            return Err(Error::Invalid(
                "network-scoped alias is supported only for containers in user defined networks".into(),
            ));
        }
    }
    if let (Some(ip), Some(s)) = (ep.ipv4_address, n.subnet) {
        if !s.contains(ip) {
            return Err(Error::Invalid(format!(
                "invalid address {ip}: it does not belong to any of this network's subnets"
            )));
        }
    }
    if let Some(ip6) = ep.ipv6_address {
        match n.ipv6 {
            None => return Err(Error::Invalid(format!("invalid address {ip6}: network {} has no IPv6", n.name))),
            Some(v6) if !v6.subnet.contains(ip6) => {
                return Err(Error::Invalid(format!(
                    "invalid address {ip6}: it does not belong to any of this network's subnets"
                )))
            }
            Some(_) => {}
        }
    }
    crate::endpoint::verify(n, &ep)?;
    Ok(ep)
}

/// /etc/hosts: Docker's default lines, the container's own addresses
/// with its hostname, and `--add-host`. With the host's network, the
/// host's own file.
pub(crate) fn hosts_file(c: &Container) -> String {
    if c.host.network_mode == "host" {
        if let Ok(h) = std::fs::read_to_string("/etc/hosts") {
            return h;
        }
    }
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in &c.host.extra_hosts {
        if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
            let ip = if ip == "host-gateway" {
                c.net.attachments.values().find_map(|a| a.gateway).map(|g| g.to_string()).unwrap_or_default()
            } else {
                ip.to_owned()
            };
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    let names = if c.config.domainname.is_empty() {
        c.config.hostname.clone()
    } else {
        format!("{}.{} {}", c.config.hostname, c.config.domainname, c.config.hostname)
    };
    for (ip, names) in &c.net.link_hosts {
        s.push_str(&format!("{ip}\t{names}\n"));
    }
    for a in c.net.attachments.values() {
        if let Some(ip) = a.ip {
            s.push_str(&format!("{ip}\t{names}\n"));
        }
        if let Some(ip6) = a.ip6 {
            s.push_str(&format!("{ip6}\t{names}\n"));
        }
    }
    s
}

/// The lowest `ethN` no attachment of `net` has (a disconnect leaves a gap).
fn next_ifname(net: &NetState) -> String {
    (0..).map(|n| format!("eth{n}")).find(|n| !net.attachments.values().any(|a| &a.ifname == n)).unwrap_or_default()
}

impl Engine {
    /// `POST /networks/create`.
    pub async fn network_create(&self, req: berth_network::store::CreateNetwork) -> Result<Network> {
        let store = self.networks.clone();
        let n = tokio::task::spawn_blocking(move || store.create(req))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        self.network_event(&n, "create", []);
        Ok(n)
    }

    fn network_event<const N: usize>(&self, n: &Network, action: &str, extra: [(&str, String); N]) {
        let mut attrs: std::collections::BTreeMap<String, String> =
            extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        attrs.insert("name".into(), n.name.clone());
        attrs.insert("type".into(), n.driver.clone());
        self.events.publish("network", action, &n.id, attrs);
    }

    /// The containers connected to network `id` right now.
    pub fn network_members(&self, id: &str) -> Vec<Container> {
        self.list().into_iter().filter(|c| c.net.attachments.values().any(|a| a.network_id == id)).collect()
    }

    /// `DELETE /networks/{id}`: refused while a running container is on it.
    pub async fn network_remove(&self, key: &str) -> Result<()> {
        let n = self.networks.find(key)?;
        if n.predefined {
            return Err(Error::Forbidden(format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        if let Some(c) = self.network_members(&n.id).first() {
            return Err(Error::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints (name:{:?} id:{:?})",
                n.name,
                n.id,
                c.name.trim_start_matches('/'),
                &c.id[..12]
            )));
        }
        let store = self.networks.clone();
        let id = n.id.clone();
        tokio::task::spawn_blocking(move || store.remove(&id)).await.map_err(|e| Error::Internal(e.to_string()))??;
        self.network_event(&n, "destroy", []);
        Ok(())
    }

    /// `POST /networks/prune`: user networks no container refers to.
    pub async fn network_prune(&self) -> Result<Vec<String>> {
        let used: std::collections::BTreeSet<String> =
            self.list().iter().flat_map(|c| c.networks.values().map(|e| e.network_id.clone())).collect();
        let mut out = Vec::new();
        for n in self.networks.list()? {
            if n.predefined || used.contains(&n.id) {
                continue;
            }
            if self.network_remove(&n.id).await.is_ok() {
                out.push(n.name);
            }
        }
        Ok(out)
    }

    /// `POST /networks/{id}/connect`: recorded, and set up now if the
    /// container runs.
    pub async fn network_connect(self: &Arc<Self>, key: &str, container: &str, cfg: EndpointConfig) -> Result<()> {
        let n = self.networks.find(key)?;
        let e = self.find(container)?;
        let _op = e.op.lock().await;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        if !matches!(mode(&c.host.network_mode), Mode::Bridge(_)) || !n.is_bridge() {
            return Err(Error::Invalid(
                "container cannot be disconnected from host network or connected to host network".into(),
            ));
        }
        if c.networks.contains_key(&n.name) {
            return Err(Error::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name.trim_start_matches('/'),
                n.name
            )));
        }
        let ep = endpoint_config(&n, Some(&cfg))?;
        let (mut att, mut resolver) = (None, None);
        if c.state.status.is_live() {
            let engine = self.clone();
            let (c2, ep2, n2) = (c.clone(), ep.clone(), n.clone());
            let (a, r) = tokio::task::spawn_blocking(move || engine.connect_live(&c2, &n2, &ep2))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            (att, resolver) = (Some(a), r);
        }
        let updated = {
            let mut r = e.rec.lock().map_err(poisoned)?;
            r.networks.insert(n.name.clone(), ep);
            if let Some(a) = att {
                r.net.attachments.insert(n.name.clone(), a);
            }
            self.save(&r)?;
            r.clone()
        };
        if updated.state.status.is_live() {
            let _ = std::fs::write(&updated.hosts_path, hosts_file(&updated));
        }
        if let Some(s) = resolver {
            // A first user network: its names, from now on.
            if self.dns_serve(&updated, s).is_ok() {
                let _ = std::fs::write(&updated.resolv_conf_path, resolv_conf(&updated, true));
            }
        }
        self.network_event(&n, "connect", [("container", updated.id.clone())]);
        Ok(())
    }

    fn connect_live(
        &self,
        c: &Container,
        n: &Network,
        ep: &EndpointConfig,
    ) -> Result<(Attachment, Option<dns::Sockets>)> {
        let ns = netns::of_pid(c.state.pid).map_err(Error::io("open the container's network namespace"))?;
        let bridge = self.networks.bridge_index(n)?;
        let lease = self.networks.allocate(&n.id, ep.ipv4_address)?;
        let lease6 = match self.networks.allocate6(&n.id, ep.ipv6_address) {
            Ok(l) => l,
            Err(e) => {
                self.networks.release(&n.id, lease.ip);
                return Err(e.into());
            }
        };
        let release = |s: &berth_network::store::Store| {
            s.release(&n.id, lease.ip);
            if let Some(l6) = lease6 {
                s.release6(&n.id, l6.ip);
            }
        };
        let made = crate::endpoint::interface(ep, n, (&lease, lease6.as_ref()), bridge, next_ifname(&c.net), None);
        let (a, endpoint) = match made {
            Ok(x) => x,
            Err(e) => {
                release(&self.networks);
                return Err(e);
            }
        };
        let want_dns = !n.predefined && !self.dns.is_serving(&c.id);
        let inside = || if want_dns { dns::bind().map(Some) } else { Ok(None) };
        let plugged = self.networks.with_netlink(|nl| link::plug(nl, &ns, std::slice::from_ref(&endpoint), inside));
        match plugged {
            Ok(Ok(r)) => Ok((a, r)),
            Ok(Err(e)) => {
                release(&self.networks);
                Err(Error::Io { what: format!("connect to network {}", n.name), source: e })
            }
            Err(e) => {
                release(&self.networks);
                Err(e.into())
            }
        }
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn network_disconnect(&self, key: &str, container: &str, _force: bool) -> Result<()> {
        let n = self.networks.find(key)?;
        let e = self.find(container)?;
        let _op = e.op.lock().await;
        let (c, att) = {
            let mut r = e.rec.lock().map_err(poisoned)?;
            if r.networks.remove(&n.name).is_none() {
                return Err(Error::Invalid(format!(
                    "container {} is not connected to network {}",
                    r.name.trim_start_matches('/'),
                    n.name
                )));
            }
            let att = r.net.attachments.remove(&n.name);
            self.save(&r)?;
            (r.clone(), att)
        };
        if let Some(a) = att {
            let one = NetState { attachments: BTreeMap::from([(n.name.clone(), a)]), ..Default::default() };
            // No ports in `one`: they stay published on the first network.
            self.disconnect_blocking(&c.id, &one);
            let _ = std::fs::write(&c.hosts_path, hosts_file(&c));
        }
        self.network_event(&n, "disconnect", [("container", c.id.clone())]);
        Ok(())
    }
}

/// /etc/resolv.conf: `--dns`, `--dns-search` and `--dns-option`, each
/// taken from the host's file when not given. With the embedded resolver
/// (`embedded`), it is the only nameserver and the others are where it
/// forwards to; `ndots:0` unless the options set it, as Docker writes.
pub(crate) fn resolv_conf(c: &Container, embedded: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host_words = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|rest| rest.starts_with(char::is_whitespace))
            .flat_map(|s| s.split_whitespace().map(str::to_owned))
            .collect()
    };
    let mut out = String::new();
    if embedded {
        out.push_str(&format!("nameserver {}\n", dns::ADDR));
    } else {
        let mut servers = c.host.dns.clone();
        if servers.is_empty() {
            // Loopback resolvers of the host mean nothing in the container.
            servers = host_words("nameserver");
            servers.retain(|s| !s.starts_with("127.") && s != "::1");
        }
        if servers.is_empty() {
            // Docker's fallback when the host only has a local resolver.
            servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
        for s in servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    let search = if c.host.dns_search.is_empty() { host_words("search") } else { c.host.dns_search.clone() };
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut opts = if c.host.dns_options.is_empty() { host_words("options") } else { c.host.dns_options.clone() };
    if embedded && !opts.iter().any(|o| o.starts_with("ndots:")) {
        opts.push("ndots:0".into());
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    if embedded {
        let ext: Vec<String> = crate::dns::upstreams(c).iter().map(|a| a.ip().to_string()).collect();
        out.push_str(&format!("\n# ExtServers: [{}]\n", ext.join(" ")));
    }
    out
}
