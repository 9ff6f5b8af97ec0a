//! SPDY/3.1 framing, as kubelet's streaming clients speak it (client-go's
//! `spdy` round tripper over moby/spdystream): control frames for streams
//! and the session, data frames, and name/value header blocks compressed
//! with zlib over SPDY's dictionary (draft-mbelshe-httpbis-spdy-00,
//! sections 2.2 to 2.6).
//!
//! No flow control is kept: moby/spdystream, on both ends of every kubelet
//! stream, neither sends WINDOW_UPDATE nor handles one, so berth sends none
//! and ignores what it gets.

use std::io;
use std::sync::OnceLock;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame taken from a peer; SPDY allows 16 MiB, and the
/// clients send data in 32 KiB frames.
const MAX_FRAME: usize = 1 << 20;
/// The largest header block once inflated.
const MAX_HEADERS: usize = 256 << 10;

const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

/// The words of SPDY/3's zlib dictionary (section 2.6.10.1), each put in
/// with its length in four bytes, then the tail taken as it is.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
);

pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1500);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream { id: u32, fin: bool, headers: Headers },
    SynReply { id: u32, fin: bool, headers: Headers },
    RstStream { id: u32, status: u32 },
    Settings,
    Ping { id: u32 },
    GoAway { last: u32, status: u32 },
    Headers { id: u32, headers: Headers },
    WindowUpdate { id: u32, delta: u32 },
    Data { id: u32, fin: bool, data: Vec<u8> },
}

/// RST_STREAM's status for a stream that is not taken.
pub const REFUSED_STREAM: u32 = 3;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn be32(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| bad("spdy: short frame"))
}

/// The header of a value in a name/value block: its name, in lower case.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Frames from the peer; one inflate context for the whole session.
pub struct Reader<R> {
    r: R,
    inflate: flate2::Decompress,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader { r, inflate: flate2::Decompress::new(true) }
    }

    /// The next frame; `None` at the end of the connection.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(bad(format!("spdy: a frame of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await?;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data { id, fin: flags & FLAG_FIN != 0, data: body }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(bad(format!("spdy: version {version}, not 3")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        let id = |at| be32(&body, at).map(|v| v & 0x7fff_ffff);
        let frame = match kind {
            1 => {
                let sid = id(0)?;
                let headers = self.headers(body.get(10..).ok_or_else(|| bad("spdy: short SYN_STREAM"))?)?;
                Frame::SynStream { id: sid, fin, headers }
            }
            2 => {
                let sid = id(0)?;
                Frame::SynReply { id: sid, fin, headers: self.headers(body.get(4..).unwrap_or_default())? }
            }
            3 => Frame::RstStream { id: id(0)?, status: be32(&body, 4)? },
            4 => Frame::Settings,
            6 => Frame::Ping { id: be32(&body, 0)? },
            7 => Frame::GoAway { last: id(0)?, status: be32(&body, 4).unwrap_or(0) },
            8 => {
                let sid = id(0)?;
                Frame::Headers { id: sid, headers: self.headers(body.get(4..).unwrap_or_default())? }
            }
            9 => Frame::WindowUpdate { id: id(0)?, delta: be32(&body, 4)? & 0x7fff_ffff },
            // Unknown control frames are ignored (section 2.2.1).
            _ => Frame::Settings,
        };
        Ok(Some(frame))
    }

    /// Inflate and parse a name/value block.
    fn headers(&mut self, block: &[u8]) -> io::Result<Headers> {
        let mut out = Vec::with_capacity(block.len() * 4);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADERS {
                    return Err(bad("spdy: header block too large"));
                }
                out.reserve(out.len().max(1024));
            }
            let before_in = self.inflate.total_in();
            let r = self.inflate.decompress_vec(input, &mut out, flate2::FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            match r {
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| bad(format!("spdy: header dictionary: {e}")))?;
                }
                Err(e) => return Err(bad(format!("spdy: header block: {e}"))),
            }
        }
        parse_block(&out)
    }
}

fn parse_block(b: &[u8]) -> io::Result<Headers> {
    let n = be32(b, 0)? as usize;
    let mut at = 4;
    let mut out = Vec::with_capacity(n.min(64));
    let text = |at: &mut usize| -> io::Result<String> {
        let len = be32(b, *at)? as usize;
        let s = b.get(*at + 4..*at + 4 + len).ok_or_else(|| bad("spdy: short header block"))?;
        *at += 4 + len;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    for _ in 0..n {
        let k = text(&mut at)?;
        let v = text(&mut at)?;
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// Frames to the peer; one deflate context for the whole session.
pub struct Writer<W> {
    w: W,
    deflate: flate2::Compress,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut deflate = flate2::Compress::new(flate2::Compression::default(), true);
        deflate.set_dictionary(dictionary()).map_err(|e| bad(format!("spdy: header dictionary: {e}")))?;
        Ok(Writer { w, deflate })
    }

    fn block(&mut self, h: &Headers) -> io::Result<Vec<u8>> {
        let mut raw = (h.len() as u32).to_be_bytes().to_vec();
        for (k, v) in h {
            for s in [k.to_ascii_lowercase().as_bytes(), v.as_bytes()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s);
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = raw.as_slice();
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
                .map_err(|e| bad(format!("spdy: compress headers: {e}")))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    async fn control(&mut self, kind: u16, flags: u8, body: &[u8]) -> io::Result<()> {
        let mut f = Vec::with_capacity(8 + body.len());
        f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        f.extend_from_slice(&kind.to_be_bytes());
        f.push(flags);
        f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(body);
        self.w.write_all(&f).await
    }

    pub async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { id, fin: f, data } => {
                // One frame per 16 MiB at most; callers send less.
                let mut head = Vec::with_capacity(8 + data.len());
                head.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                head.push(fin(*f));
                head.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                head.extend_from_slice(data);
                self.w.write_all(&head).await?;
            }
            Frame::SynStream { id, fin: f, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                body.extend(self.block(headers)?);
                self.control(1, fin(*f), &body).await?;
            }
            Frame::SynReply { id, fin: f, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend(self.block(headers)?);
                self.control(2, fin(*f), &body).await?;
            }
            Frame::RstStream { id, status } => {
                let body = [id.to_be_bytes(), status.to_be_bytes()].concat();
                self.control(3, 0, &body).await?;
            }
            Frame::Settings => self.control(4, 0, &0u32.to_be_bytes()).await?,
            Frame::Ping { id } => self.control(6, 0, &id.to_be_bytes()).await?,
            Frame::GoAway { last, status } => {
                let body = [last.to_be_bytes(), status.to_be_bytes()].concat();
                self.control(7, 0, &body).await?;
            }
            Frame::Headers { id, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend(self.block(headers)?);
                self.control(8, 0, &body).await?;
            }
            Frame::WindowUpdate { id, delta } => {
                let body = [id.to_be_bytes(), delta.to_be_bytes()].concat();
                self.control(9, 0, &body).await?;
            }
        }
        self.w.flush().await
    }

    pub async fn shutdown(&mut self) {
        let _ = self.w.shutdown().await;
    }
}

/// A session over `conn`: its read half, and a sender of frames to a
/// task that writes them in order until every sender is dropped (then it
/// shuts the connection's write side).
pub fn session<C>(
    conn: C,
) -> (Reader<tokio::io::ReadHalf<C>>, tokio::sync::mpsc::Sender<Frame>, tokio::task::JoinHandle<()>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(conn);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let Ok(mut w) = Writer::new(wr) else { return };
        while let Some(f) = rx.recv().await {
            if w.send(&f).await.is_err() {
                break;
            }
        }
        w.shutdown().await;
    });
    (Reader::new(rd), tx, writer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_has_spdy_3_s_length() {
        // 65 words with their lengths, and the tail: 1423 bytes in all.
        assert_eq!(dictionary().len(), 1423);
        assert!(dictionary().ends_with(b"enq=0."));
    }

    #[tokio::test]
    async fn frames_and_compressed_headers_go_through_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = Writer::new(a).unwrap();
        let mut r = Reader::new(b);
        let h: Headers = vec![("streamtype".into(), "stdout".into()), ("port".into(), "80".into())];
        let frames = vec![
            Frame::SynStream { id: 1, fin: false, headers: h.clone() },
            // The second block is compressed against the first's context.
            Frame::SynReply { id: 3, fin: true, headers: h.clone() },
            Frame::Data { id: 1, fin: true, data: b"hello".to_vec() },
            Frame::Ping { id: 7 },
            Frame::WindowUpdate { id: 0, delta: 65536 },
            Frame::RstStream { id: 5, status: REFUSED_STREAM },
            Frame::GoAway { last: 5, status: 0 },
        ];
        for f in &frames {
            w.send(f).await.unwrap();
        }
        for f in &frames {
            assert_eq!(r.next().await.unwrap().as_ref(), Some(f));
        }
        drop(w);
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn header_blocks_name_spdy_3_s_dictionary_by_its_adler32() {
        // zlib's header with FDICT, then the dictionary's id as SPDY/3
        // peers know it (moby/spdystream's framer reads these replies).
        let mut out = Vec::new();
        Writer::new(&mut out).unwrap().send(&Frame::SynReply { id: 1, fin: false, headers: vec![] }).await.unwrap();
        assert_eq!(out[12..18], [0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        for bytes in [
            // A control frame of version 2.
            vec![0x80, 2, 0, 1, 0, 0, 0, 0],
            // A SYN_STREAM whose header block is not zlib.
            vec![0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2],
            // A frame longer than allowed.
            vec![0, 0, 0, 1, 0, 0xff, 0xff, 0xff],
        ] {
            let mut r = Reader::new(bytes.as_slice());
            assert!(r.next().await.is_err(), "{bytes:?}");
        }
    }
}
