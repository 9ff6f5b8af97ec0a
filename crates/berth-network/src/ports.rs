//! Published ports: their names (`80/tcp`) and the host ports they hold.
//!
//! Traffic to a published port is forwarded by the kernel (see
//! [`crate::nft`]); no process listens on it. The daemon still binds a
//! socket to every published host port, without listening, so that no
//! other program can take the port while a container publishes it, a
//! program that already has it makes the publish fail, and an ephemeral
//! port (`-P`, `-p 80`) comes from the kernel's own choice of free ports.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// A container port, `80/tcp` (the protocol defaults to tcp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Port {
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// A port number, 1 to 65535 (0 only where `zero` allows it).
pub fn parse_port_number(s: &str, zero: bool) -> Result<u16> {
    let bad = || Error::Invalid(format!("invalid port number: {s:?}"));
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u16 = s.parse().map_err(|_| bad())?;
    if n == 0 && !zero {
        return Err(bad());
    }
    Ok(n)
}

/// `lo-hi` or one port, as an inclusive range; empty is `None`.
pub fn parse_range(s: &str) -> Result<Option<(u16, u16)>> {
    if s.is_empty() {
        return Ok(None);
    }
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi) = (parse_port_number(a, true)?, parse_port_number(b, true)?);
    if hi < lo {
        return Err(Error::Invalid(format!("invalid port range: {s}")));
    }
    Ok(Some((lo, hi)))
}

impl FromStr for Port {
    type Err = Error;

    fn from_str(s: &str) -> Result<Port> {
        let (p, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" | "" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            other => return Err(Error::Invalid(format!("invalid proto: {other}"))),
        };
        Ok(Port { port: parse_port_number(p, false)?, proto })
    }
}

impl TryFrom<String> for Port {
    type Error = Error;

    fn try_from(s: String) -> Result<Port> {
        s.parse()
    }
}

impl From<Port> for String {
    fn from(p: Port) -> String {
        p.to_string()
    }
}

/// A host port held for a published port; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    _fd: Option<OwnedFd>,
}

/// The socket address types [`bind`] takes.
trait SockAddr: Copy {
    const FAMILY: libc::c_int;
    fn port(&self) -> u16;
}

impl SockAddr for libc::sockaddr_in {
    const FAMILY: libc::c_int = libc::AF_INET;
    fn port(&self) -> u16 {
        u16::from_be(self.sin_port)
    }
}

impl SockAddr for libc::sockaddr_in6 {
    const FAMILY: libc::c_int = libc::AF_INET6;
    fn port(&self) -> u16 {
        u16::from_be(self.sin6_port)
    }
}

/// A close-on-exec socket of `A`'s family and `ty`, given `opts` (int
/// options set to 1), bound to `addr`, listening when `listen`; with the
/// port bound (the kernel's pick for port 0).
fn bind<A: SockAddr>(
    ty: libc::c_int,
    addr: A,
    opts: &[(libc::c_int, libc::c_int)],
    listen: bool,
) -> io::Result<(OwnedFd, u16)> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(A::FAMILY, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for &(level, opt) in opts {
        // SAFETY: an int option of its size on a socket we own.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let len = std::mem::size_of::<A>() as libc::socklen_t;
    // SAFETY: addr is a sockaddr of A's family (the trait's two types), of
    // len bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen(2) on a bound socket we own.
    if listen && unsafe { libc::listen(fd.as_raw_fd(), 1024) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut got = addr;
    let mut glen = len;
    // SAFETY: got is a writable sockaddr of A's family, of glen bytes.
    if unsafe { libc::getsockname(fd.as_raw_fd(), std::ptr::addr_of_mut!(got).cast(), &mut glen) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, got.port()))
}

/// Bind `proto` on `ip:port` (port 0: a free port the kernel picks) and
/// answer the port bound. SCTP ports are not held.
pub fn reserve(proto: Proto, ip: Ipv4Addr, port: u16) -> io::Result<(Reservation, u16)> {
    let ty = match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
        Proto::Sctp => return Ok((Reservation { _fd: None }, port)),
    };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let (fd, port) = bind(ty, addr, &[], false)?;
    Ok((Reservation { _fd: Some(fd) }, port))
}

/// A socket on `[addr]:port` for IPv6 alone (IPV6_V6ONLY, so the IPv4
/// reservation of the same port stands), non-blocking, listening when it
/// is TCP: where a published port's proxy takes what comes over IPv6.
/// Port 0 takes a free one; the port bound is answered.
pub fn bind_v6_only(proto: Proto, ip: std::net::Ipv6Addr, port: u16) -> io::Result<(OwnedFd, u16)> {
    let ty = match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
        Proto::Sctp => return Err(io::Error::new(io::ErrorKind::Unsupported, "SCTP is not proxied")),
    };
    // SAFETY: zeroed is a valid sockaddr_in6 (the unspecified address).
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    addr.sin6_port = port.to_be();
    addr.sin6_addr.s6_addr = ip.octets();
    let opts = [(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), (libc::SOL_SOCKET, libc::SO_REUSEADDR)];
    bind(ty | libc::SOCK_NONBLOCK, addr, &opts, proto == Proto::Tcp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_tcp_by_default() {
        assert_eq!("80".parse::<Port>().unwrap(), Port { port: 80, proto: Proto::Tcp });
        assert_eq!("53/UDP".parse::<Port>().unwrap().to_string(), "53/udp");
        for bad in ["0", "65536", "x/tcp", "80/icmp", "", "-1", "+80"] {
            assert!(bad.parse::<Port>().is_err(), "{bad}");
        }
        assert_eq!(parse_range("8000-8010").unwrap(), Some((8000, 8010)));
        assert_eq!(parse_range("").unwrap(), None);
        assert!(parse_range("9-8").is_err());
    }

    #[test]
    fn a_held_port_cannot_be_taken_twice() {
        let lo = Ipv4Addr::LOCALHOST;
        let (held, port) = reserve(Proto::Tcp, lo, 0).unwrap();
        assert!(port > 0);
        let e = reserve(Proto::Tcp, lo, port).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        assert!(std::net::TcpListener::bind((lo, port)).is_err());
        drop(held);
        drop(reserve(Proto::Tcp, lo, port).unwrap());
        let (_u, uport) = reserve(Proto::Udp, lo, 0).unwrap();
        assert!(std::net::UdpSocket::bind((lo, uport)).is_err());
    }
}
