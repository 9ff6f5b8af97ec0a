//! Docker's legacy links (`--link name:alias` on the default bridge): the
//! linked container's address under the alias in /etc/hosts, and its ports
//! and environment as `<ALIAS>_…` variables, as moby's `links.Link` makes
//! them. On a user network a link is the endpoint's, answered by the
//! embedded resolver instead (see `dns.rs`).

use std::net::Ipv4Addr;

use crate::endpoint::link_parts;
use crate::model::Container;
use crate::network::{mode, Mode};
use crate::{Engine, Error, Result};

/// What the links of a starting container bring: variables and hosts lines.
#[derive(Debug, Default)]
pub(crate) struct Linked {
    pub env: Vec<String>,
    /// An address and the names it has (`alias hostname name`).
    pub hosts: Vec<(Ipv4Addr, String)>,
}

/// moby's ordering of a link's ports: by number, tcp first.
fn sorted_ports(exposed: &[String]) -> Vec<(u16, String)> {
    let mut ports: Vec<(u16, String)> = exposed
        .iter()
        .filter_map(|p| {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            Some((n.parse().ok()?, proto.to_owned()))
        })
        .collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (b.1 == "tcp").cmp(&(a.1 == "tcp"))));
    ports
}

/// moby's `nextContiguous`: the index of the last port of the run that
/// starts at `i`.
fn run_end(ports: &[(u16, String)], i: usize) -> usize {
    let mut value = ports[i].0;
    for (j, p) in ports.iter().enumerate().skip(i + 1) {
        if u32::from(p.0) > u32::from(value) + 1 {
            return j - 1;
        }
        value = value.saturating_add(1);
    }
    ports.len() - 1
}

/// The variables of one link (moby's `Link.ToEnv`): `name` is the link's
/// full name, `/<container>/<alias>`.
pub(crate) fn env(name: &str, alias: &str, ip: Ipv4Addr, exposed: &[String], child_env: &[String]) -> Vec<String> {
    let a = alias.to_ascii_uppercase().replace('-', "_");
    let ports = sorted_ports(exposed);
    let mut out = vec![];
    if let Some((p, proto)) = ports.first() {
        out.push(format!("{a}_PORT={proto}://{ip}:{p}"));
    }
    let mut i = 0;
    while i < ports.len() {
        let j = run_end(&ports, i);
        if j > i + 1 {
            let (p, proto) = &ports[i];
            let (q, qproto) = &ports[j];
            let (up, qup) = (proto.to_ascii_uppercase(), qproto.to_ascii_uppercase());
            out.push(format!("{a}_PORT_{p}_{up}_START={proto}://{ip}:{p}"));
            out.push(format!("{a}_PORT_{p}_{up}_ADDR={ip}"));
            out.push(format!("{a}_PORT_{p}_{up}_PROTO={proto}"));
            out.push(format!("{a}_PORT_{p}_{up}_PORT_START={p}"));
            out.push(format!("{a}_PORT_{p}_{qup}_END={qproto}://{ip}:{q}"));
            out.push(format!("{a}_PORT_{p}_{qup}_PORT_END={q}"));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    for (p, proto) in &ports {
        let up = proto.to_ascii_uppercase();
        out.push(format!("{a}_PORT_{p}_{up}={proto}://{ip}:{p}"));
        out.push(format!("{a}_PORT_{p}_{up}_ADDR={ip}"));
        out.push(format!("{a}_PORT_{p}_{up}_PORT={p}"));
        out.push(format!("{a}_PORT_{p}_{up}_PROTO={proto}"));
    }
    out.push(format!("{a}_NAME={name}"));
    for kv in child_env {
        let Some((k, v)) = kv.split_once('=') else { continue };
        // As moby: what a build adds to every image says nothing of the link.
        if k != "HOME" && k != "PATH" {
            out.push(format!("{a}_ENV_{k}={v}"));
        }
    }
    out
}

impl Engine {
    /// Check `c`'s legacy links at create: each names a container, which
    /// is not on the host's network. On a user network they are the main
    /// endpoint's links too, as Docker's CLI makes them.
    pub(crate) fn plan_links(&self, c: &mut Container) -> Result<()> {
        if c.host.links.is_empty() {
            return Ok(());
        }
        match mode(&c.host.network_mode) {
            Mode::Host => {
                return Err(Error::Invalid(
                    "conflicting options: host type networking can't be used with links. This would result in undefined behavior"
                        .into(),
                ))
            }
            Mode::Container(_) => {
                return Err(Error::Invalid(
                    "conflicting options: container type network can't be used with links. This would result in undefined behavior"
                        .into(),
                ))
            }
            Mode::None => return Err(Error::Invalid("conflicting options: links need a network, not none".into())),
            Mode::Bridge(_) => {}
        }
        for l in &c.host.links {
            let (name, _) = link_parts(l)?;
            let child =
                self.find(name).map_err(|e| Error::Invalid(format!("could not get container for {name}: {e}")))?;
            let host_net = child.rec.lock().is_ok_and(|r| r.host.network_mode == "host");
            if host_net {
                return Err(Error::Invalid(
                    "conflicting options: host type networking can't be used with links. This would result in undefined behavior"
                        .into(),
                ));
            }
        }
        let main = self.ordered(c).into_iter().next();
        if let Some((name, _)) = main.filter(|(n, _)| n != "bridge") {
            let links = c.host.links.clone();
            if let Some(ep) = c.networks.get_mut(&name) {
                for l in links {
                    if !ep.links.contains(&l) {
                        ep.links.push(l);
                    }
                }
            }
        }
        Ok(())
    }

    /// What `c`'s legacy links bring at its start: each linked container
    /// must run, on the default bridge.
    pub(crate) fn resolve_links(&self, c: &Container) -> Result<Linked> {
        let mut out = Linked::default();
        // On a user network they are the endpoint's (see `plan_links`).
        if c.host.links.is_empty() || self.ordered(c).first().is_none_or(|(n, _)| n != "bridge") {
            return Ok(out);
        }
        for l in &c.host.links {
            let (name, alias) = link_parts(l)?;
            let link_name = format!("/{}/{alias}", c.name.trim_start_matches('/'));
            let child =
                self.find(name).map_err(|e| Error::Invalid(format!("could not get container for {name}: {e}")))?;
            let child = child.rec.lock().map_err(crate::containers::poisoned)?.clone();
            if !child.state.status.is_live() {
                return Err(Error::Invalid(format!(
                    "Cannot link to a non running container: {} AS {link_name}",
                    child.name
                )));
            }
            let Some(ip) = child.net.attachments.get("bridge").and_then(|a| a.ip) else {
                return Err(Error::Invalid(format!(
                    "Cannot link to {}, as it does not belong to the default network",
                    child.name
                )));
            };
            out.env.extend(env(&link_name, alias, ip, &child.config.exposed_ports, &child.config.env));
            // As moby: the alias, the hostname, and the name if it differs.
            let child_name = child.name.trim_start_matches('/');
            let mut names = format!("{alias} {}", child.config.hostname);
            if alias != child_name {
                names.push(' ');
                names.push_str(child_name);
            }
            out.hosts.push((ip, names));
        }
        Ok(out)
    }

    /// `DELETE /containers/{parent}/{alias}?link=1`: the parent's link of
    /// that alias goes.
    pub fn remove_link(&self, name: &str) -> Result<()> {
        let name = name.trim_start_matches('/');
        let Some((parent, alias)) = name.rsplit_once('/') else {
            return Err(Error::Conflict("Conflict, cannot remove the default link name.".into()));
        };
        let e = self
            .find(parent)
            .map_err(|_| Error::NotFound(format!("Cannot get parent /{parent} for link name /{name}")))?;
        let mut r = e.rec.lock().map_err(crate::containers::poisoned)?;
        let before = r.host.links.len();
        r.host.links.retain(|l| link_parts(l).map_or(true, |(_, a)| a != alias));
        if r.host.links.len() == before {
            return Err(Error::NotFound(format!("No such container: /{name}")));
        }
        self.save(&r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn link_variables_are_moby_s() {
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        let exposed: Vec<String> = ["6379/tcp", "80/tcp", "81/tcp", "82/tcp", "53/udp"].map(String::from).to_vec();
        let vars = env("/web/db-1", "db-1", ip, &exposed, &["PATH=/bin".into(), "PASSWORD=x=y".into()]);
        for want in [
            "DB_1_PORT=udp://172.17.0.2:53",
            "DB_1_PORT_80_TCP_START=tcp://172.17.0.2:80",
            "DB_1_PORT_80_TCP_PORT_START=80",
            "DB_1_PORT_80_TCP_END=tcp://172.17.0.2:82",
            "DB_1_PORT_80_TCP_PORT_END=82",
            "DB_1_PORT_6379_TCP=tcp://172.17.0.2:6379",
            "DB_1_PORT_6379_TCP_ADDR=172.17.0.2",
            "DB_1_PORT_6379_TCP_PORT=6379",
            "DB_1_PORT_6379_TCP_PROTO=tcp",
            "DB_1_PORT_53_UDP=udp://172.17.0.2:53",
            "DB_1_NAME=/web/db-1",
            "DB_1_ENV_PASSWORD=x=y",
        ] {
            assert!(vars.iter().any(|e| e == want), "no {want} in {vars:#?}");
        }
        assert!(!vars.iter().any(|e| e.starts_with("DB_1_ENV_PATH")), "{vars:?}");
        assert_eq!(env("/a/b", "b", ip, &[], &[]), ["B_NAME=/a/b"]);
    }
}
