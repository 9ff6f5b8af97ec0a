//! A small rtnetlink client: the link, address and route requests berth
//! makes, each sent with an acknowledgement asked for and its answer read
//! before the next. Messages follow `rtnetlink(7)`; a socket talks to the
//! network namespace it was opened in, which is how the container side of
//! a veth pair is configured (see [`crate::netns`]).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
/// No duplicate address detection: the address is usable at once.
const IFA_F_NODAD: u32 = 0x02;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

const IFF_UP: u32 = 0x1;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// The header of every message.
const HDR: usize = 16;
/// `struct ifinfomsg`.
const IFINFO: usize = 16;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: u32,
    /// The index of the bridge it is a port of.
    pub master: Option<u32>,
    pub kind: Option<String>,
}

/// Where the peer of a new veth pair goes.
#[derive(Debug, Clone, Copy)]
pub enum Netns {
    /// The namespace of this socket.
    Same,
    /// The network namespace of a process.
    Pid(i32),
    /// A namespace file (`/proc/<pid>/ns/net` or a bind mount of one).
    Fd(i32),
}

/// The other end of a new veth pair.
#[derive(Debug, Clone)]
pub struct Peer<'a> {
    pub name: &'a str,
    pub netns: Netns,
    pub mac: Option<[u8; 6]>,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// A route of the main table (IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub oif: Option<u32>,
}

/// One request being built: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        Msg { buf }
    }

    fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Msg {
        ifinfo(&mut self.buf, index, flags, change);
        self
    }

    fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        attr(&mut self.buf, ty, data);
    }

    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    fn str(&mut self, ty: u16, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(ty, &b);
    }

    /// Start a nested attribute; [`Msg::end`] sets its length.
    fn begin(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.attr(ty, &[]);
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn ifinfo(buf: &mut Vec<u8>, index: u32, flags: u32, change: u32) {
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(&index.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&change.to_ne_bytes());
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while buf.len() & 3 != 0 {
        buf.push(0);
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `b`, as (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    out
}

fn ne_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 0 })
    }

    /// Send one message and read every answer to it: the payloads of the
    /// data messages, after the acknowledgement or the end of a dump.
    fn exchange(&mut self, msg: Msg) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let out = msg.finish(seq);
        let dump = u16::from_ne_bytes([out[6], out[7]]) & NLM_F_DUMP == NLM_F_DUMP;
        // SAFETY: out is a valid buffer of out.len() bytes for the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is a valid, writable buffer of buf.len() bytes.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut b = &buf[..n as usize];
            while b.len() >= HDR {
                let len = ne_u32(b).unwrap_or(0) as usize;
                if len < HDR || len > b.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
                }
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let flags = u16::from_ne_bytes([b[6], b[7]]);
                let mseq = ne_u32(&b[8..]).unwrap_or(0);
                let body = &b[HDR..len];
                b = &b[align(len).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let code = body.get(..4).map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                        if code < 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(replies);
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => {
                        replies.push((ty, body.to_vec()));
                        if !dump && flags & NLM_F_MULTI == 0 {
                            return Ok(replies);
                        }
                    }
                }
            }
        }
    }

    fn ack(&mut self, msg: Msg) -> io::Result<()> {
        self.exchange(msg).map(|_| ())
    }

    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, 0).ifinfo(0, 0, 0);
        m.str(IFLA_IFNAME, name);
        match self.exchange(m) {
            Ok(r) => Ok(r.iter().find_map(|(ty, body)| (*ty == RTM_NEWLINK).then(|| parse_link(body)).flatten())),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let m = Msg::new(RTM_GETLINK, NLM_F_DUMP).ifinfo(0, 0, 0);
        Ok(self.exchange(m)?.iter().filter(|(ty, _)| *ty == RTM_NEWLINK).filter_map(|(_, b)| parse_link(b)).collect())
    }

    /// Create a bridge, down.
    pub fn add_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        m.str(IFLA_IFNAME, name);
        if mtu > 0 {
            m.u32(IFLA_MTU, mtu);
        }
        m.attr(IFLA_ADDRESS, &mac);
        let info = m.begin(IFLA_LINKINFO);
        m.str(IFLA_INFO_KIND, "bridge");
        m.end(info);
        self.ack(m)
    }

    /// Create a veth pair: `name` here, up and a port of `master`; the
    /// peer in its namespace, down (its addresses are set there).
    pub fn add_veth(&mut self, name: &str, mtu: u32, master: Option<u32>, peer: &Peer) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, IFF_UP, IFF_UP);
        m.str(IFLA_IFNAME, name);
        if mtu > 0 {
            m.u32(IFLA_MTU, mtu);
        }
        if let Some(idx) = master {
            m.u32(IFLA_MASTER, idx);
        }
        let info = m.begin(IFLA_LINKINFO);
        m.str(IFLA_INFO_KIND, "veth");
        let data = m.begin(IFLA_INFO_DATA);
        let p = m.begin(VETH_INFO_PEER);
        let mut fixed = Vec::with_capacity(IFINFO);
        ifinfo(&mut fixed, 0, 0, 0);
        m.raw(&fixed);
        m.str(IFLA_IFNAME, peer.name);
        if mtu > 0 {
            m.u32(IFLA_MTU, mtu);
        }
        if let Some(mac) = peer.mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        match peer.netns {
            Netns::Same => {}
            Netns::Pid(pid) => m.u32(IFLA_NET_NS_PID, pid as u32),
            Netns::Fd(fd) => m.u32(IFLA_NET_NS_FD, fd as u32),
        }
        m.end(p);
        m.end(data);
        m.end(info);
        self.ack(m)
    }

    /// Bring a link up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.ack(Msg::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, IFF_UP, IFF_UP))
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        m.u32(IFLA_MTU, mtu);
        self.ack(m)
    }

    /// Delete a link (both ends of a veth pair go together).
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        self.ack(Msg::new(RTM_DELLINK, NLM_F_ACK).ifinfo(index, 0, 0))
    }

    /// Delete the link called `name`; a link already gone is no error.
    pub fn delete_link_named(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_DELLINK, NLM_F_ACK).ifinfo(0, 0, 0);
        m.str(IFLA_IFNAME, name);
        match self.ack(m) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Add an IPv4 address with its broadcast address.
    pub fn add_addr(&mut self, a: Addr) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        m.raw(&[AF_INET, a.prefix, 0, 0]);
        m.raw(&a.index.to_ne_bytes());
        m.attr(IFA_LOCAL, &a.ip.octets());
        m.attr(IFA_ADDRESS, &a.ip.octets());
        if a.prefix < 31 {
            let host = u32::MAX.checked_shr(u32::from(a.prefix)).unwrap_or(0);
            m.attr(IFA_BROADCAST, &Ipv4Addr::from(u32::from(a.ip) | host).octets());
        }
        self.ack(m)
    }

    /// Add an IPv6 address, usable at once (no duplicate address
    /// detection, as Docker adds its own).
    pub fn add_addr6(&mut self, index: u32, ip: std::net::Ipv6Addr, prefix: u8) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        m.raw(&[AF_INET6, prefix, 0, 0]);
        m.raw(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &ip.octets());
        m.attr(IFA_ADDRESS, &ip.octets());
        m.u32(IFA_FLAGS, IFA_F_NODAD);
        self.ack(m)
    }

    /// An IPv6 default route through `gateway`, out of link `oif`.
    pub fn add_default_route6(&mut self, gateway: std::net::Ipv6Addr, oif: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        m.raw(&[AF_INET6, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]);
        m.raw(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        m.u32(RTA_OIF, oif);
        self.ack(m)
    }

    /// The IPv4 addresses of every link.
    pub fn addrs(&mut self) -> io::Result<Vec<Addr>> {
        let mut m = Msg::new(RTM_GETADDR, NLM_F_DUMP);
        m.raw(&[AF_INET, 0, 0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        for (ty, b) in self.exchange(m)? {
            if ty != RTM_NEWADDR || b.len() < 8 {
                continue;
            }
            let prefix = b[1];
            let index = ne_u32(&b[4..]).unwrap_or(0);
            let a = attrs(&b[8..]);
            let ip = a.iter().find(|(t, _)| *t == IFA_LOCAL).or_else(|| a.iter().find(|(t, _)| *t == IFA_ADDRESS));
            if let Some(ip) = ip.and_then(|(_, v)| ipv4(v)) {
                out.push(Addr { index, ip, prefix });
            }
        }
        Ok(out)
    }

    /// A default route through `gateway`, out of link `oif`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        m.raw(&[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]);
        m.raw(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        m.u32(RTA_OIF, oif);
        self.ack(m)
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&mut self) -> io::Result<Vec<Route>> {
        let mut m = Msg::new(RTM_GETROUTE, NLM_F_DUMP);
        m.raw(&[AF_INET, 0, 0, 0, 0, 0, 0, 0]);
        m.raw(&0u32.to_ne_bytes());
        let mut out = Vec::new();
        for (ty, b) in self.exchange(m)? {
            if ty != RTM_NEWROUTE || b.len() < 12 {
                continue;
            }
            let a = attrs(&b[12..]);
            let table = a.iter().find(|(t, _)| *t == RTA_TABLE).and_then(|(_, v)| ne_u32(v)).unwrap_or(u32::from(b[4]));
            if table != u32::from(RT_TABLE_MAIN) || b[7] != RTN_UNICAST {
                continue;
            }
            let dst = a.iter().find(|(t, _)| *t == RTA_DST).and_then(|(_, v)| ipv4(v)).unwrap_or(Ipv4Addr::UNSPECIFIED);
            let oif = a.iter().find(|(t, _)| *t == RTA_OIF).and_then(|(_, v)| ne_u32(v));
            out.push(Route { dst, prefix: b[1], oif });
        }
        Ok(out)
    }
}

fn parse_link(b: &[u8]) -> Option<Link> {
    if b.len() < IFINFO {
        return None;
    }
    let index = ne_u32(&b[4..])?;
    let flags = ne_u32(&b[8..])?;
    let mut l = Link { index, name: String::new(), up: flags & IFF_UP != 0, mtu: 0, master: None, kind: None };
    for (ty, v) in attrs(&b[IFINFO..]) {
        match ty {
            IFLA_IFNAME => l.name = cstr(v),
            IFLA_MTU => l.mtu = ne_u32(v).unwrap_or(0),
            IFLA_MASTER => l.master = ne_u32(v),
            IFLA_LINKINFO => {
                l.kind = attrs(v).iter().find(|(t, _)| *t == IFLA_INFO_KIND).map(|(_, k)| cstr(k));
            }
            _ => {}
        }
    }
    Some(l)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested_lengths_set() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(0, 0, 0);
        m.str(IFLA_IFNAME, "br0");
        let at = m.begin(IFLA_LINKINFO);
        m.str(IFLA_INFO_KIND, "bridge");
        m.end(at);
        let b = m.finish(7);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(ne_u32(&b).unwrap() as usize, b.len());
        let a = attrs(&b[HDR + IFINFO..]);
        assert_eq!(a[0], (IFLA_IFNAME, &b"br0\0"[..]));
        assert_eq!(a[1].0, IFLA_LINKINFO);
        assert_eq!(attrs(a[1].1), vec![(IFLA_INFO_KIND, &b"bridge\0"[..])]);
    }

    #[test]
    fn short_or_lying_attributes_end_the_walk() {
        assert!(attrs(&[8, 0, 1, 0, 1]).is_empty());
        assert!(attrs(&[2, 0, 1, 0]).is_empty());
        assert!(parse_link(&[0; 8]).is_none());
    }
}
