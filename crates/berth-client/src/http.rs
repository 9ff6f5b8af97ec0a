//! HTTP/1.1 on one connection: the request line and headers, a body sent
//! whole or chunked, and the answer's head parsed by `httparse` with its
//! body framed by Content-Length, chunks, or the end of the connection.

use std::io::{BufRead, BufReader, Read, Write};

use serde::de::DeserializeOwned;

use crate::{Conn, Error, Result};

/// The most a response head may take.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 64;

/// What a request carries.
pub enum Body {
    None,
    Json(Vec<u8>),
    /// A stream of unknown length, sent chunked (load, import, cp to).
    Stream {
        content_type: &'static str,
        reader: Box<dyn Read + Send>,
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::None => f.write_str("None"),
            Body::Json(b) => write!(f, "Json({} bytes)", b.len()),
            Body::Stream { content_type, .. } => write!(f, "Stream({content_type})"),
        }
    }
}

fn head(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-cli/{}\r\n{extra}\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// One request; `headers` are more header lines (`Name: value\r\n`).
pub(crate) fn request(mut conn: Conn, method: &str, target: &str, headers: &str, body: Body) -> Result<Response> {
    match body {
        Body::None => conn.write_all(head(method, target, &format!("Connection: close\r\n{headers}")).as_bytes())?,
        Body::Json(b) => {
            let extra = format!(
                "Connection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            );
            let mut msg = head(method, target, &extra).into_bytes();
            msg.extend_from_slice(&b);
            conn.write_all(&msg)?;
        }
        Body::Stream { content_type, mut reader } => {
            let extra =
                format!("Connection: close\r\n{headers}Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n");
            conn.write_all(head(method, target, &extra).as_bytes())?;
            if let Err(e) = send_chunked(&mut conn, &mut reader) {
                // The daemon may have refused the upload early; its answer
                // says why better than a broken pipe does.
                if let Ok(r) = Response::read(conn.try_clone()?) {
                    if r.status >= 400 {
                        return Err(r.error());
                    }
                }
                return Err(e.into());
            }
        }
    }
    Response::read(conn)
}

fn send_chunked(conn: &mut Conn, reader: &mut dyn Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend_from_slice(&buf[..n]);
        chunk.extend_from_slice(b"\r\n");
        conn.write_all(&chunk)?;
    }
    conn.write_all(b"0\r\n\r\n")
}

pub(crate) fn hijack(mut conn: Conn, target: &str, body: &[u8]) -> Result<Hijacked> {
    let extra = format!(
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    let mut msg = head("POST", target, &extra).into_bytes();
    msg.extend_from_slice(body);
    conn.write_all(&msg)?;
    let writer = conn.try_clone()?;
    let r = Response::read(conn)?;
    if r.status != 101 && r.status != 200 {
        return Err(r.error());
    }
    let raw = r.header("content-type").is_some_and(|t| t.contains("raw-stream"));
    Ok(Hijacked { reader: r.reader, writer, multiplexed: !raw })
}

/// A connection handed over to a stream after the HTTP answer.
#[derive(Debug)]
pub struct Hijacked {
    /// What the daemon sends, from the first byte after its answer.
    pub reader: BufReader<Conn>,
    /// Where stdin goes.
    pub writer: Conn,
    /// Whether the output comes in stdcopy frames (no TTY).
    pub multiplexed: bool,
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    /// Bytes left in the current chunk; `None` before a chunk's size line.
    Chunked(Option<u64>),
    Eof,
    Done,
}

/// An answer: its status and headers, and the body as a reader.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<Conn>,
    framing: Framing,
}

impl Response {
    fn read(conn: Conn) -> Result<Response> {
        let mut reader = BufReader::with_capacity(64 << 10, conn);
        let mut raw = Vec::new();
        loop {
            let before = raw.len();
            let n = reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                return Err(Error::Protocol("the connection closed before an answer".into()));
            }
            if raw.len() > MAX_HEAD {
                return Err(Error::Protocol("the answer's head is too large".into()));
            }
            if raw[before..] == *b"\r\n" || raw[before..] == *b"\n" {
                break;
            }
        }
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut hs);
        match parsed.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Error::Protocol("the answer's head is cut short".into())),
            Err(e) => return Err(Error::Protocol(e.to_string())),
        }
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned()))
            .collect();
        let find = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let framing = if status == 101 {
            Framing::Eof
        } else if status == 204 || status == 304 {
            Framing::Done
        } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            Framing::Chunked(None)
        } else if let Some(l) = find("content-length") {
            Framing::Length(l.parse().map_err(|_| Error::Protocol(format!("bad Content-Length {l:?}")))?)
        } else {
            Framing::Eof
        };
        Ok(Response { status, headers, reader, framing })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Itself if its status is a success, else the daemon's message.
    pub fn ok(self) -> Result<Response> {
        if (200..300).contains(&self.status) || self.status == 101 {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    /// The error this answer carries: `{"message": …}`, or its text.
    pub fn error(mut self) -> Error {
        let status = self.status;
        let mut body = Vec::new();
        let _ = (&mut self).take(1 << 20).read_to_end(&mut body);
        let message = serde_json::from_slice::<berth_api_types::ErrorResponse>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
        let message = if message.is_empty() { format!("the daemon answered {status}") } else { message };
        Error::Api { status, message }
    }

    pub fn json<T: DeserializeOwned>(mut self) -> Result<T> {
        let mut body = Vec::new();
        self.read_to_end(&mut body)?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// The body as whole lines (newline-delimited JSON streams), one at a
    /// time as they arrive.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Result<bool> {
        line.clear();
        let mut b = [0u8; 1];
        loop {
            match self.read(&mut b)? {
                0 => return Ok(!line.is_empty()),
                _ if b[0] == b'\n' => return Ok(true),
                _ => line.push(b[0]),
            }
        }
    }

    fn chunk_size(&mut self) -> std::io::Result<u64> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        u64::from_str_radix(size, 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Eof => return self.reader.read(buf),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                }
                Framing::Length(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.framing = Framing::Length(left - n as u64);
                    return Ok(n);
                }
                Framing::Chunked(None) => {
                    let size = self.chunk_size()?;
                    if size == 0 {
                        // Trailers, then the blank line.
                        let mut l = String::new();
                        while self.reader.read_line(&mut l)? > 0 && l.trim_end() != "" {
                            l.clear();
                        }
                        self.framing = Framing::Done;
                    } else {
                        self.framing = Framing::Chunked(Some(size));
                    }
                }
                Framing::Chunked(Some(0)) => {
                    let mut crlf = String::new();
                    self.reader.read_line(&mut crlf)?;
                    self.framing = Framing::Chunked(None);
                }
                Framing::Chunked(Some(left)) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.framing = Framing::Chunked(Some(left - n as u64));
                    return Ok(n);
                }
            }
        }
    }
}
