//! Hijacked connections joined to a shim's: the 101 answer, the framing the
//! client asked for, and the detach keys (moby's `term.ToBytes` and
//! `escapeProxy`), on which the daemon lets go of a terminal it attached
//! without ending the container's stdin.

use berth_engine::logs::{frame_header, Deframer};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{body, ApiError, Reply};

/// Docker's default detach keys, ctrl-p ctrl-q.
const DEFAULT_DETACH: &[u8] = &[0x10, 0x11];

pub(crate) fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// The answer that hands the connection over to a stream: 101 when the
/// client asked to upgrade, else 200 (older clients), with the stream's type.
pub(crate) fn hijacked(tty: bool, upgrade: bool) -> Reply {
    let mut b = Response::builder().header("Content-Type", stream_type(tty));
    b = if upgrade {
        b.status(StatusCode::SWITCHING_PROTOCOLS).header("Connection", "Upgrade").header("Upgrade", "tcp")
    } else {
        b.status(StatusCode::OK)
    };
    b.body(body::empty()).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Detach keys as Docker writes them (`ctrl-p,ctrl-q`, `ctrl-a,x`); empty
/// is the default.
pub(crate) fn detach_keys(spec: &str) -> Result<Vec<u8>, ApiError> {
    if spec.is_empty() {
        return Ok(DEFAULT_DETACH.to_vec());
    }
    berth_core::term::detach_keys(spec).ok_or_else(|| ApiError::bad(format!("Invalid detach keys ({spec}) provided")))
}

/// How the shim's output is passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reframe {
    /// As the shim sends it.
    Keep,
    /// Raw output (a terminal's) put in stdout frames.
    Frame,
    /// Frames taken apart into raw output.
    Unframe,
}

impl Reframe {
    /// From the framing of the process's output (`tty`: raw) to the one
    /// the client asked for (`raw`), as moby's exec start decides it by the
    /// start request's Tty.
    pub fn between(tty: bool, raw: bool) -> Reframe {
        match (tty, raw) {
            (true, false) => Reframe::Frame,
            (false, true) => Reframe::Unframe,
            _ => Reframe::Keep,
        }
    }
}

/// Finds the detach keys in a client's stdin, however its reads cut them.
#[derive(Debug)]
struct Escape {
    keys: Vec<u8>,
    /// Keys matched at the end of what came so far, held back.
    matched: usize,
}

impl Escape {
    /// What of `data` goes on to the container, and whether the keys came.
    fn scan(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len() + self.matched);
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
            } else {
                // Not the sequence after all: of the held keys and this
                // byte, what still starts the sequence stays held, the rest
                // was input.
                let mut held = self.keys[..self.matched].to_vec();
                held.push(b);
                let shift = (1..=held.len()).find(|&i| self.keys.starts_with(&held[i..])).unwrap_or(held.len());
                out.extend_from_slice(&held[..shift]);
                self.matched = held.len() - shift;
            }
            if self.matched == self.keys.len() {
                return (out, true);
            }
        }
        (out, false)
    }
}

/// How long a client that still sends after its output ended is read from
/// (and not heard) before its connection is dropped.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Client stdin to the shim until the client half-closes (the shim sees
/// the end of stdin) or sends the detach keys (`true`; nothing more is
/// sent, and the caller lets the connections go). Told to `stop`, it reads
/// what the client still sends, for a little while, so that the close the
/// client sees is an end and not a reset (unread input makes the kernel
/// answer with RST).
async fn pump_in<R, W>(
    mut from: R,
    mut to: W,
    detach: Option<Vec<u8>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut escape = detach.filter(|k| !k.is_empty()).map(|keys| Escape { keys, matched: 0 });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = tokio::select! {
            r = from.read(&mut buf) => r,
            _ = &mut stop => {
                let drain = async { while let Ok(1..) = from.read(&mut buf).await {} };
                let _ = tokio::time::timeout(DRAIN, drain).await;
                return false;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (data, detached) = match &mut escape {
            Some(e) => e.scan(&buf[..n]),
            None => (buf[..n].to_vec(), false),
        };
        if to.write_all(&data).await.is_err() {
            break;
        }
        if detached {
            return true;
        }
    }
    let _ = to.shutdown().await;
    false
}

/// The shim's output to the client, framed as the client asked.
async fn pump_out<R, W>(mut from: R, mut to: W, reframe: Reframe) -> W
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    let mut frames = Deframer::default();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        let sent = match reframe {
            Reframe::Keep => to.write_all(data).await,
            Reframe::Frame => {
                let mut framed = frame_header(1, n).to_vec();
                framed.extend_from_slice(data);
                to.write_all(&framed).await
            }
            Reframe::Unframe => {
                let mut raw = Vec::with_capacity(n);
                frames.push(data, |_, p| raw.extend_from_slice(p));
                to.write_all(&raw).await
            }
        };
        if sent.is_err() {
            break;
        }
    }
    to
}

/// What a hijacked connection does besides copying.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    /// Detach keys to act on (a terminal's stdin only, as moby).
    pub detach: Option<Vec<u8>>,
    pub reframe: Reframe,
}

/// Join a hijacked client connection to a shim connection: output to the
/// client until the shim ends it, stdin to the shim until the client
/// half-closes (which the shim sees as the end of stdin). `before_close`
/// runs between the end of the output and the close. On the detach keys
/// both connections are let go at once; the process runs on.
pub(crate) async fn proxy<C>(
    client: C,
    shim: tokio::net::UnixStream,
    s: Streams,
    before_close: impl std::future::Future<Output = ()>,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (cr, cw) = tokio::io::split(client);
    let (sr, sw) = shim.into_split();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let mut input = tokio::spawn(pump_in(cr, sw, s.detach, stopped));
    let output = pump_out(sr, cw, s.reframe);
    tokio::pin!(output);
    let detached = tokio::select! {
        mut cw = &mut output => {
            before_close.await;
            let _ = cw.shutdown().await;
            let _ = stop.send(());
            let _ = tokio::time::timeout(DRAIN * 2, &mut input).await;
            input.abort();
            return;
        }
        d = &mut input => d.unwrap_or(false),
    };
    if detached {
        // Both connections go with `output` as this returns; the
        // container's stdin stays open (a terminal's is not closed by a
        // leaving attacher), and the client sees its connection end.
        return;
    }
    let mut cw = output.await;
    before_close.await;
    let _ = cw.shutdown().await;
}

/// The 101 of a websocket handshake (RFC 6455), or why there is none.
pub(crate) fn websocket_accept(req: &hyper::Request<hyper::body::Incoming>) -> Reply {
    let h = req.headers();
    let has = |name: hyper::header::HeaderName, want: &str| {
        h.get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want))))
    };
    if !has(hyper::header::UPGRADE, "websocket") || !has(hyper::header::CONNECTION, "upgrade") {
        return Err(ApiError::bad("not a websocket handshake: Upgrade: websocket is missing"));
    }
    if h.get(hyper::header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(ApiError::bad("websocket: unsupported version (13 is)"));
    }
    let key =
        h.get(hyper::header::SEC_WEBSOCKET_KEY).ok_or_else(|| ApiError::bad("websocket: no Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Join a websocket client to a shim connection, as moby's attach/ws:
/// output as binary messages (raw, stdout and stderr alike), each message
/// from the client to stdin, detach keys as for a hijacked connection.
pub(crate) async fn ws_proxy<C>(
    ws: tokio_tungstenite::WebSocketStream<C>,
    shim: tokio::net::UnixStream,
    s: Streams,
    replayed: Vec<Vec<u8>>,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut tx, mut rx) = ws.split();
    for chunk in replayed {
        if tx.send(Message::binary(chunk)).await.is_err() {
            return;
        }
    }
    let (mut sr, mut sw) = shim.into_split();
    let mut escape = s.detach.filter(|k| !k.is_empty()).map(|keys| Escape { keys, matched: 0 });
    let input = async move {
        while let Some(Ok(m)) = rx.next().await {
            let data = match m {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let (data, detached) = match &mut escape {
                Some(e) => e.scan(&data),
                None => (data, false),
            };
            if sw.write_all(&data).await.is_err() || detached {
                return;
            }
        }
        let _ = sw.shutdown().await;
        // Ends the connection: a websocket client that closes is gone.
    };
    let output = async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut frames = Deframer::default();
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data = match s.reframe {
                Reframe::Unframe => {
                    let mut raw = Vec::with_capacity(n);
                    frames.push(&buf[..n], |_, p| raw.extend_from_slice(p));
                    raw
                }
                _ => buf[..n].to_vec(),
            };
            if !data.is_empty() && tx.send(Message::binary(data)).await.is_err() {
                break;
            }
        }
        let _ = tx.send(Message::Close(None)).await;
        let _ = tx.close().await;
    };
    tokio::select! {
        _ = input => {}
        _ = output => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_s() {
        assert_eq!(detach_keys("").unwrap(), [16, 17]);
        assert_eq!(detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(detach_keys("ctrl-a,x,ctrl-@,CTRL-]").unwrap(), [1, b'x', 0, 29]);
        for bad in ["ctrl-", "ctrl-1", "ab", "ctrl-p,", "shift-a"] {
            assert!(detach_keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes_are_found_across_reads_and_false_starts_pass_through() {
        let mut e = Escape { keys: vec![16, 17], matched: 0 };
        assert_eq!(e.scan(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(e.scan(b"\x10c"), (b"\x10\x10c".to_vec(), false), "a held key that was input");
        assert_eq!(e.scan(b"\x10"), (vec![], false));
        assert_eq!(e.scan(b"\x11rest"), (vec![], true));
        let mut e = Escape { keys: vec![1, 1, 2], matched: 0 };
        assert_eq!(e.scan(b"\x01\x01\x01\x02"), (b"\x01".to_vec(), true));
    }

    #[tokio::test]
    async fn output_is_framed_or_unframed_as_asked() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"hi").await.unwrap();
        drop(a);
        let out = pump_out(b, Vec::new(), Reframe::Frame).await;
        assert_eq!(out, [&frame_header(1, 2)[..], b"hi"].concat());
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&out).await.unwrap();
        drop(a);
        assert_eq!(pump_out(b, Vec::new(), Reframe::Unframe).await, b"hi");
    }
}
