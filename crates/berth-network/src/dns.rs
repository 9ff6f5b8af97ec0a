//! DNS messages for the embedded resolver at 127.0.0.11: the one
//! question of a query read, and answers, errors and truncated replies
//! written (RFC 1035, section 4). Only what a resolver that answers
//! container names and passes everything else on needs; a message that
//! does not parse is an error to the asker, never a panic.
//!
//! The sockets are opened inside a container's network namespace
//! ([`bind`], called through [`crate::link::plug`]); the daemon serves
//! them from its own threads.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// Where containers on user networks find the resolver, as with Docker.
pub const ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

pub const FORMERR: u8 = 1;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const NOTIMP: u8 = 4;
pub const REFUSED: u8 = 5;

/// How long answers about containers may be cached (Docker's 600 s).
pub const TTL: u32 = 600;

const HEADER: usize = 12;
const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;

/// The resolver's sockets in one namespace, UDP and TCP on port 53 of
/// [`ADDR`], non-blocking.
#[derive(Debug)]
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Open the resolver's sockets in the namespace this thread is in.
pub fn bind() -> io::Result<Sockets> {
    let at = SocketAddr::from((ADDR, 53));
    let udp = UdpSocket::bind(at)?;
    udp.set_nonblocking(true)?;
    let tcp = TcpListener::bind(at)?;
    tcp.set_nonblocking(true)?;
    Ok(Sockets { udp, tcp })
}

/// A standard query's one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    flags: u16,
    /// Lower case, without the final dot; empty for the root.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question as asked, echoed in the answer.
    question: Vec<u8>,
}

/// What to say to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Addresses of the name.
    A(Vec<Ipv4Addr>),
    /// IPv6 addresses of the name.
    Aaaa(Vec<std::net::Ipv6Addr>),
    /// The name of an address (`in-addr.arpa`).
    Ptr(String),
    /// The name exists but has no record of the asked type.
    NoData,
    /// An error code (`NXDOMAIN`, `SERVFAIL`, …).
    Error(u8),
}

/// Why a message is not a query to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not even a header, or a reply: dropped without a word.
    Drop,
    /// Answer with this code and no question.
    Reply(u8),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Read the question of a query.
pub fn parse(msg: &[u8]) -> Result<Query, Refusal> {
    let (Some(id), Some(flags), Some(qdcount)) = (u16_at(msg, 0), u16_at(msg, 2), u16_at(msg, 4)) else {
        return Err(Refusal::Drop);
    };
    if flags & QR != 0 {
        return Err(Refusal::Drop);
    }
    if flags & OPCODE != 0 {
        return Err(Refusal::Reply(NOTIMP));
    }
    if qdcount != 1 {
        return Err(Refusal::Reply(FORMERR));
    }
    let (labels, at) = read_question_name(msg).ok_or(Refusal::Reply(FORMERR))?;
    let (Some(qtype), Some(qclass)) = (u16_at(msg, at), u16_at(msg, at + 2)) else {
        return Err(Refusal::Reply(FORMERR));
    };
    let end = at + 4;
    Ok(Query { id, flags, name: labels.join("."), qtype, qclass, question: msg[HEADER..end].to_vec() })
}

/// The labels of the first question's name (lower case) and the offset
/// after it; `None` for a compression pointer there, a label longer than
/// 63, a name longer than 255 or a message cut short.
fn read_question_name(msg: &[u8]) -> Option<(Vec<String>, usize)> {
    let mut at = HEADER;
    let mut labels: Vec<String> = Vec::new();
    let mut len = 0usize;
    loop {
        let n = usize::from(*msg.get(at)?);
        at += 1;
        if n == 0 {
            return Some((labels, at));
        }
        len += n + 1;
        if n > 63 || len > 255 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(at..at + n)?).to_ascii_lowercase());
        at += n;
    }
}

fn header(out: &mut Vec<u8>, id: u16, flags: u16, qdcount: u16, ancount: u16) {
    for v in [id, flags, qdcount, ancount, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Flags of a reply to a query with `asked` flags.
fn reply_flags(asked: u16, rcode: u8, authoritative: bool) -> u16 {
    QR | (asked & (OPCODE | RD)) | RA | if authoritative { AA } else { 0 } | u16::from(rcode & 0x0f)
}

/// A name in wire form; `None` if a label is empty or too long.
fn encode_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// The reply to `q`.
pub fn reply(q: &Query, a: &Answer) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut records: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut rcode = 0;
    match a {
        Answer::A(ips) => records.extend(ips.iter().map(|ip| (TYPE_A, ip.octets().to_vec()))),
        Answer::Aaaa(ips) => records.extend(ips.iter().map(|ip| (TYPE_AAAA, ip.octets().to_vec()))),
        Answer::Ptr(name) => match encode_name(name) {
            Some(n) => records.push((TYPE_PTR, n)),
            None => rcode = SERVFAIL,
        },
        Answer::NoData => {}
        Answer::Error(code) => rcode = *code,
    }
    header(&mut out, q.id, reply_flags(q.flags, rcode, rcode == 0), 1, records.len() as u16);
    out.extend_from_slice(&q.question);
    for (rtype, data) in records {
        // The name is the question's, by a pointer to offset 12.
        out.extend_from_slice(&0xc00cu16.to_be_bytes());
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// An error reply to a message that has a header but no question to
/// echo; `None` if it has no header.
pub fn error_reply(msg: &[u8], rcode: u8) -> Option<Vec<u8>> {
    let (id, flags) = (u16_at(msg, 0)?, u16_at(msg, 2)?);
    let mut out = Vec::with_capacity(HEADER);
    header(&mut out, id, reply_flags(flags, rcode, false), 0, 0);
    Some(out)
}

/// `reply` cut to fit `limit` bytes for UDP: the question only, with the
/// TC flag, so the asker comes back over TCP.
pub fn truncate(reply: Vec<u8>, limit: usize) -> Vec<u8> {
    if reply.len() <= limit {
        return reply;
    }
    let end = read_question_name(&reply).map(|(_, at)| at + 4).filter(|end| *end <= reply.len());
    let Some(end) = end else { return reply[..HEADER.min(reply.len())].to_vec() };
    let mut out = Vec::with_capacity(end);
    let flags = u16_at(&reply, 2).unwrap_or(QR) | TC;
    header(&mut out, u16_at(&reply, 0).unwrap_or(0), flags, 1, 0);
    out.extend_from_slice(&reply[HEADER..end]);
    out
}

/// The address a reverse name asks about (`4.3.2.1.in-addr.arpa`).
pub fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest.split('.').map(str::parse).collect::<Result<_, _>>().ok()?;
    let [d, c, b, a] = parts[..] else { return None };
    Some(Ipv4Addr::new(a, b, c, d))
}

/// The id of a reply (to check it against the query forwarded).
pub fn id_of(msg: &[u8]) -> Option<u16> {
    u16_at(msg, 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = Vec::new();
        header(&mut m, 0x1234, RD, 1, 0);
        m.extend_from_slice(&encode_name(name).unwrap());
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn reads_a_question() {
        let q = parse(&query("Web.Example.", TYPE_A)).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype, q.qclass), (0x1234, "web.example", TYPE_A, CLASS_IN));
    }

    #[test]
    fn answers_addresses() {
        let m = query("web", TYPE_A);
        let q = parse(&m).unwrap();
        let r = reply(&q, &Answer::A(vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]));
        assert_eq!(&r[..2], &[0x12, 0x34]);
        let flags = u16_at(&r, 2).unwrap();
        assert_eq!(flags & (QR | RD | RA | AA), QR | RD | RA | AA);
        assert_eq!(flags & 0xf, 0);
        assert_eq!(u16_at(&r, 6), Some(2));
        // Question echoed, then two records of 16 bytes.
        assert_eq!(&r[12..m.len()], &m[12..]);
        assert_eq!(r.len(), m.len() + 32);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 3]);
    }

    #[test]
    fn answers_a_reverse_name() {
        let q = parse(&query("2.0.0.10.in-addr.arpa", TYPE_PTR)).unwrap();
        assert_eq!(reverse_v4(&q.name), Some(Ipv4Addr::new(10, 0, 0, 2)));
        let r = reply(&q, &Answer::Ptr("web.net1".into()));
        assert!(r.ends_with(b"\x03web\x04net1\x00"));
        assert_eq!(reverse_v4("1.2.3.in-addr.arpa"), None);
        assert_eq!(reverse_v4("x.2.3.4.in-addr.arpa"), None);
    }

    #[test]
    fn errors_keep_the_question() {
        let q = parse(&query("nowhere", TYPE_A)).unwrap();
        let r = reply(&q, &Answer::Error(NXDOMAIN));
        assert_eq!(u16_at(&r, 2).unwrap() & 0xf, u16::from(NXDOMAIN));
        assert_eq!(u16_at(&r, 4), Some(1));
        assert_eq!(u16_at(&r, 6), Some(0));
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        assert_eq!(parse(&[1, 2, 3]), Err(Refusal::Drop));
        let mut m = query("web", TYPE_A);
        m.truncate(m.len() - 3);
        assert_eq!(parse(&m), Err(Refusal::Reply(FORMERR)));
        let mut m = query("web", TYPE_A);
        m[12] = 0xc0;
        assert_eq!(parse(&m), Err(Refusal::Reply(FORMERR)));
        let mut m = query("web", TYPE_A);
        m[5] = 2;
        assert_eq!(parse(&m), Err(Refusal::Reply(FORMERR)));
        let mut m = query("web", TYPE_A);
        m[2] |= 0x80;
        assert_eq!(parse(&m), Err(Refusal::Drop));
        let mut m = query("web", TYPE_A);
        m[2] |= 0x10;
        assert_eq!(parse(&m), Err(Refusal::Reply(NOTIMP)));
        let long = vec!["a".repeat(60); 5].join(".");
        let mut m = Vec::new();
        header(&mut m, 1, 0, 1, 0);
        for l in long.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&m), Err(Refusal::Reply(FORMERR)));
        let e = error_reply(&[0xab, 0xcd, 0, 0, 0, 1], FORMERR).unwrap();
        assert_eq!((&e[..2], u16_at(&e, 2).unwrap() & 0xf), (&[0xab, 0xcd][..], 1));
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = parse(&junk);
            let _ = error_reply(&junk, SERVFAIL);
            let _ = truncate(junk, 8);
        }
    }

    #[test]
    fn truncation_keeps_the_question_and_sets_tc() {
        let q = parse(&query("many", TYPE_A)).unwrap();
        let ips: Vec<Ipv4Addr> = (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let r = truncate(reply(&q, &Answer::A(ips)), 512);
        assert!(r.len() < 512);
        assert_ne!(u16_at(&r, 2).unwrap() & TC, 0);
        assert_eq!(read_question_name(&r).map(|(_, at)| at + 4), Some(r.len()));
    }
}
