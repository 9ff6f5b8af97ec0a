//! Ports published on all addresses answer over IPv6 too, `[::1]`
//! included, as docker-proxy makes them: berthd listens on `[::]:<port>`
//! (IPv6 alone) and relays each TCP connection, or each UDP peer's
//! datagrams, to the container's IPv4 address. A port published on an
//! IPv6 address (`-p [::1]:8080:80`) is relayed from that address alone. On an IPv6 network the
//! nftables table forwards the host's other IPv6 addresses straight to the
//! container's; loopback cannot be forwarded (a packet from ::1 may not
//! leave the host), so it always comes here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_network::ports::{self, Proto};
use berth_network::store::Published;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::AbortHandle;

use crate::model::Container;
use crate::{Engine, Error, Result};

/// How long a UDP peer's relay lives without traffic (docker-proxy's).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// The relays running, by container.
#[derive(Debug, Default)]
pub(crate) struct Proxies {
    tasks: Mutex<HashMap<String, Vec<AbortHandle>>>,
}

impl Engine {
    /// Relay `c`'s ports over IPv6: those published on all addresses from
    /// `[::]`, those published on an IPv6 address from it. All or nothing:
    /// a port that cannot be had fails the start, as a docker-proxy that
    /// cannot bind does. The ports, with those the relay chose filled in.
    pub(crate) fn proxy_up(&self, c: &Container) -> Result<Vec<Published>> {
        let mut out = c.net.ports.clone();
        let Some(ip) = self.ordered(c).first().and_then(|(k, _)| c.net.attachments.get(k)).and_then(|a| a.ip) else {
            return Ok(out);
        };
        let mut tasks = vec![];
        for p in out.iter_mut().filter(|p| p.proto != Proto::Sctp) {
            let (on, all) = match p.host_ip {
                IpAddr::V4(a) if a.is_unspecified() => (Ipv6Addr::UNSPECIFIED, true),
                IpAddr::V4(_) => continue,
                IpAddr::V6(a) => (a, false),
            };
            let target = SocketAddr::from((ip, p.port));
            let bound = ports::bind_v6_only(p.proto, on, p.host_port);
            // A host without IPv6 has nothing to answer over it.
            if all && bound.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EAFNOSUPPORT)) {
                continue;
            }
            let bound = bound.map_err(|e| Error::Io {
                what: format!("listen on [{on}]:{}/{} for the published port", p.host_port, p.proto.as_str()),
                source: e,
            });
            let task = bound.and_then(|(fd, port)| {
                p.host_port = port;
                match p.proto {
                    Proto::Tcp => {
                        let l = TcpListener::from_std(fd.into()).map_err(Error::io("serve a published port"))?;
                        Ok(tokio::spawn(relay_tcp(l, target)).abort_handle())
                    }
                    _ => {
                        let s = UdpSocket::from_std(fd.into()).map_err(Error::io("serve a published port"))?;
                        Ok(tokio::spawn(relay_udp(Arc::new(s), target)).abort_handle())
                    }
                }
            });
            match task {
                Ok(t) => tasks.push(t),
                Err(e) => {
                    for t in tasks {
                        t.abort();
                    }
                    return Err(e);
                }
            }
        }
        if !tasks.is_empty() {
            if let Ok(mut m) = self.proxies.tasks.lock() {
                for t in m.insert(c.id.clone(), tasks).into_iter().flatten() {
                    t.abort();
                }
            }
        }
        Ok(out)
    }

    /// Stop relaying `id`'s ports; their sockets close with their tasks.
    pub(crate) fn proxy_down(&self, id: &str) {
        if let Some(tasks) = self.proxies.tasks.lock().ok().and_then(|mut m| m.remove(id)) {
            for t in tasks {
                t.abort();
            }
        }
    }
}

async fn relay_tcp(l: TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut client, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// Each peer gets a socket of its own towards the container, whose
/// replies go back to that peer; it goes after [`UDP_IDLE`] of quiet.
async fn relay_udp(s: Arc<UdpSocket>, target: SocketAddr) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = s.recv_from(&mut buf).await else { continue };
        let existing = flows.lock().ok().and_then(|m| m.get(&peer).cloned());
        let up = match existing {
            Some(up) => up,
            None => {
                let Ok(up) = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await else { continue };
                if up.connect(target).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                if let Ok(mut m) = flows.lock() {
                    m.insert(peer, up.clone());
                }
                tokio::spawn(replies(up.clone(), s.clone(), peer, flows.clone()));
                up
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

async fn replies(
    up: Arc<UdpSocket>,
    down: Arc<UdpSocket>,
    peer: SocketAddr,
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up.recv(&mut buf)).await {
        if down.send_to(&buf[..n], peer).await.is_err() {
            break;
        }
    }
    if let Ok(mut m) = flows.lock() {
        m.remove(&peer);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_peers_get_the_replies_to_their_own_datagrams() {
        let Ok(listener) = UdpSocket::bind("[::1]:0").await else { return };
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut b).await {
                let _ = echo.send_to(&b[..n], from).await;
            }
        });
        let front = listener.local_addr().unwrap();
        let relay = tokio::spawn(relay_udp(Arc::new(listener), target));
        for word in [&b"one"[..], b"two"] {
            let peer = UdpSocket::bind("[::1]:0").await.unwrap();
            peer.send_to(word, front).await.unwrap();
            let mut b = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), peer.recv(&mut b)).await.unwrap().unwrap();
            assert_eq!(&b[..n], word);
        }
        relay.abort();
    }

    #[tokio::test]
    async fn tcp_connections_are_relayed_both_ways() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(front) = TcpListener::bind("[::1]:0").await else { return };
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = back.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = back.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b.map(|c| c.to_ascii_uppercase())).await.unwrap();
        });
        let addr = front.local_addr().unwrap();
        let relay = tokio::spawn(relay_tcp(front, target));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut b)).await.unwrap().unwrap();
        assert_eq!(&b, b"HELLO");
        relay.abort();
    }
}
