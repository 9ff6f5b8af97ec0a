//! The embedded resolver of containers on user networks, as Docker's at
//! 127.0.0.11. Each such container has a UDP and a TCP socket of its own,
//! opened inside its network namespace when it is plugged in; berthd
//! serves them from its runtime, so the socket a query came in by says who
//! asks. Names, short ids and aliases of the running containers that share
//! a user network with the asker are answered here; everything else is
//! forwarded, from the host's namespace, to `--dns` or the host's
//! resolvers. Containers only on internal networks get nothing from
//! outside.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use berth_network::dns::{self, Answer, Query, Refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::model::Container;
use crate::network::{mode, Mode};
use crate::{Engine, Error, Result};

/// How long an upstream resolver has to answer (Docker's 4 s).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries forwarded (or TCP connections open) at once per container;
/// more are answered SERVFAIL (or refused) rather than queued.
const IN_FLIGHT: usize = 100;
/// A UDP reply without EDNS fits 512 bytes.
const UDP_LIMIT: usize = 512;

/// The resolvers being served, by container id.
#[derive(Debug, Default)]
pub(crate) struct Resolvers {
    tasks: Mutex<HashMap<String, [AbortHandle; 2]>>,
}

impl Resolvers {
    pub(crate) fn is_serving(&self, id: &str) -> bool {
        self.tasks.lock().is_ok_and(|m| m.contains_key(id))
    }

    /// Stop serving `id`; its sockets close as its tasks end.
    pub(crate) fn stop(&self, id: &str) {
        if let Some(tasks) = self.tasks.lock().ok().and_then(|mut m| m.remove(id)) {
            for t in tasks {
                t.abort();
            }
        }
    }
}

/// Who one resolver serves and where it forwards.
struct Served {
    engine: Weak<Engine>,
    id: String,
    upstreams: Vec<SocketAddr>,
    in_flight: Semaphore,
}

/// The resolvers a container's queries go on to: `--dns`, else the
/// host's (loopback ones included: forwarding is done from the host's
/// namespace), else Docker's public fallback.
pub(crate) fn upstreams(c: &Container) -> Vec<SocketAddr> {
    let parse = |s: &str| s.trim().parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53));
    let mut out: Vec<SocketAddr> = c.host.dns.iter().filter_map(|s| parse(s)).collect();
    if out.is_empty() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        out = host.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).filter_map(parse).collect();
    }
    if out.is_empty() {
        out = vec![SocketAddr::from(([8, 8, 8, 8], 53)), SocketAddr::from(([8, 8, 4, 4], 53))];
    }
    out
}

impl Engine {
    /// Whether `c` has the embedded resolver: it is on a user network.
    pub(crate) fn wants_dns(&self, c: &Container) -> bool {
        matches!(mode(&c.host.network_mode), Mode::Bridge(_))
            && c.networks.values().any(|e| self.networks.find(&e.network_id).is_ok_and(|n| !n.predefined))
    }

    /// Serve the resolver sockets opened in `c`'s namespace.
    pub(crate) fn dns_serve(self: &Arc<Self>, c: &Container, s: dns::Sockets) -> Result<()> {
        let udp = UdpSocket::from_std(s.udp).map_err(Error::io("serve the resolver"))?;
        let tcp = TcpListener::from_std(s.tcp).map_err(Error::io("serve the resolver"))?;
        let served = Arc::new(Served {
            engine: Arc::downgrade(self),
            id: c.id.clone(),
            upstreams: upstreams(c),
            in_flight: Semaphore::new(IN_FLIGHT),
        });
        let tasks = [
            tokio::spawn(serve_udp(served.clone(), Arc::new(udp))).abort_handle(),
            tokio::spawn(serve_tcp(served, tcp)).abort_handle(),
        ];
        let old = self.dns.tasks.lock().map_err(crate::containers::poisoned)?.insert(c.id.clone(), tasks);
        for t in old.into_iter().flatten() {
            t.abort();
        }
        Ok(())
    }

    /// Open the resolver's sockets in the namespace of running `c` and
    /// serve them (after a daemon restart, or a first user network
    /// connected live).
    pub(crate) fn dns_reopen(self: &Arc<Self>, c: &Container) -> Result<()> {
        let ns = berth_network::netns::of_pid(c.state.pid).map_err(Error::io("open the container's namespace"))?;
        let s = berth_network::netns::run_in(&ns, dns::bind).map_err(Error::io("open the resolver's sockets"))?;
        self.dns_serve(c, s)
    }

    /// What the resolver says itself to `q` from container `asker`;
    /// `None` to forward it.
    fn dns_lookup(&self, asker: &str, q: &Query) -> Option<Answer> {
        let me = self.find(asker).ok()?.rec.lock().ok()?.clone();
        // The asker's user networks, in its order: (name, id).
        let nets: Vec<(String, String)> = me
            .net
            .attachments
            .iter()
            .filter(|(_, a)| self.networks.find(&a.network_id).is_ok_and(|n| !n.predefined))
            .map(|(name, a)| (name.clone(), a.network_id.clone()))
            .collect();
        if nets.is_empty() || q.qclass != dns::CLASS_IN {
            return None;
        }
        let entries = self.entries();
        let others = || entries.iter().filter_map(|e| e.rec.lock().ok());
        if let Some(ip) = dns::reverse_v4(&q.name) {
            for (net, id) in &nets {
                for c in others() {
                    if c.net.attachments.values().any(|a| &a.network_id == id && a.ip == Some(ip)) {
                        return Some(Answer::Ptr(format!("{}.{net}", c.name.trim_start_matches('/'))));
                    }
                }
            }
            return None;
        }
        for (net, id) in &nets {
            // `name` or `name.<network>`.
            let short = q.name.strip_suffix(&format!(".{}", net.to_ascii_lowercase()));
            let wanted = |s: &str| s.eq_ignore_ascii_case(&q.name) || short.is_some_and(|n| s.eq_ignore_ascii_case(n));
            // The attachments of the containers the name stands for here.
            let mut hits: Vec<crate::model::Attachment> = Vec::new();
            let mut add = |a: Option<&crate::model::Attachment>| {
                if let Some(a) = a.filter(|a| a.ip.is_some() && !hits.iter().any(|h| h.ip == a.ip)) {
                    hits.push(a.clone());
                }
            };
            // The asker's links on this network: an alias of its own for
            // another container (moby's endpoint Links).
            for l in me.networks.values().filter(|e| &e.network_id == id).flat_map(|e| e.links.iter()) {
                let Ok((target, alias)) = crate::endpoint::link_parts(l) else { continue };
                if !wanted(alias) {
                    continue;
                }
                let Ok(t) = self.find(target) else { continue };
                let t =
                    t.rec.lock().ok().and_then(|t| t.net.attachments.values().find(|a| &a.network_id == id).cloned());
                add(t.as_ref());
            }
            for c in others() {
                let Some(a) = c.net.attachments.values().find(|a| &a.network_id == id) else { continue };
                let aliases = c.networks.values().filter(|e| &e.network_id == id).flat_map(|e| e.aliases.iter());
                let hit = wanted(c.name.trim_start_matches('/'))
                    || c.id.get(..12).is_some_and(wanted)
                    || aliases.into_iter().any(|a| wanted(a));
                if hit {
                    add(Some(a));
                }
            }
            if !hits.is_empty() {
                let v4: Vec<Ipv4Addr> = hits.iter().filter_map(|a| a.ip).collect();
                let v6: Vec<std::net::Ipv6Addr> = hits.iter().filter_map(|a| a.ip6).collect();
                return Some(match q.qtype {
                    dns::TYPE_A => Answer::A(v4),
                    dns::TYPE_AAAA if !v6.is_empty() => Answer::Aaaa(v6),
                    _ => Answer::NoData,
                });
            }
        }
        // Nothing from outside for a container only on internal networks.
        let outside = nets.iter().any(|(_, id)| self.networks.find(id).is_ok_and(|n| !n.internal));
        (!outside).then_some(Answer::Error(dns::SERVFAIL))
    }
}

impl Served {
    /// The reply to `msg`, `None` to say nothing.
    async fn answer(&self, msg: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let q = match dns::parse(msg) {
            Ok(q) => q,
            Err(Refusal::Drop) => return None,
            Err(Refusal::Reply(code)) => return dns::error_reply(msg, code),
        };
        let local = match self.engine.upgrade() {
            Some(engine) => engine.dns_lookup(&self.id, &q),
            None => Some(Answer::Error(dns::SERVFAIL)),
        };
        if let Some(a) = local {
            let r = dns::reply(&q, &a);
            return Some(if tcp { r } else { dns::truncate(r, UDP_LIMIT) });
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Some(dns::reply(&q, &Answer::Error(dns::SERVFAIL)));
        };
        for up in &self.upstreams {
            let r = if tcp { forward_tcp(*up, msg).await } else { forward_udp(*up, msg).await };
            if let Ok(r) = r {
                return Some(r);
            }
        }
        Some(dns::reply(&q, &Answer::Error(dns::SERVFAIL)))
    }
}

async fn serve_udp(served: Arc<Served>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let msg = buf[..n].to_vec();
        let (served, sock) = (served.clone(), sock.clone());
        tokio::spawn(async move {
            if let Some(r) = served.answer(&msg, false).await {
                let _ = sock.send_to(&r, peer).await;
            }
        });
    }
}

async fn serve_tcp(served: Arc<Served>, listener: TcpListener) {
    let conns = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else { continue };
        let served = served.clone();
        tokio::spawn(async move {
            let _ = serve_conn(&served, stream).await;
            drop(permit);
        });
    }
}

/// Queries on one TCP connection, each with its two-byte length, until
/// the client closes it or stays idle.
async fn serve_conn(served: &Served, mut s: TcpStream) -> std::io::Result<()> {
    loop {
        let msg = match tokio::time::timeout(TCP_IDLE, read_framed(&mut s)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if let Some(r) = served.answer(&msg, true).await {
            write_framed(&mut s, &r).await?;
        }
    }
}

async fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).await?;
    Ok(msg)
}

async fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::Error::other("reply too long"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out).await
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream resolver did not answer")
}

async fn forward_udp(up: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (IpAddr::from([0u16; 8]), 0).into() };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(msg).await?;
    let id = dns::id_of(msg);
    let mut buf = vec![0u8; 65535];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = sock.recv(&mut buf).await?;
            if dns::id_of(&buf[..n]) == id {
                return Ok(buf[..n].to_vec());
            }
        }
    })
    .await
    .map_err(|_| timed_out())?
}

async fn forward_tcp(up: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut s = TcpStream::connect(up).await?;
        write_framed(&mut s, msg).await?;
        read_framed(&mut s).await
    })
    .await
    .map_err(|_| timed_out())?
}
