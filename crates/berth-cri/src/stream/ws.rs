//! Remote commands over a WebSocket, as `k8s.io/apimachinery`'s wsstream
//! carries them: binary messages whose first byte is the channel (0 stdin,
//! 1 stdout, 2 stderr, 3 the status, 4 resizes). `v5.channel.k8s.io` adds
//! channel 255, whose message `[n]` closes channel n (the end of stdin).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::remote::{run, sizes, wants, Io};
use super::{plain, values, Pending, Reply, COMMAND_PROTOCOLS};
use crate::Cri;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The handshake's answer, and the session started once it is upgraded.
pub(super) fn accept(cri: Arc<Cri>, req: Request<hyper::body::Incoming>, pending: Pending) -> Reply {
    if matches!(pending, Pending::PortForward(_)) {
        return plain(StatusCode::BAD_REQUEST, "port forwarding is served over SPDY/3.1 only");
    }
    let offered = values(&req, "sec-websocket-protocol");
    let Some(protocol) = COMMAND_PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)).copied() else {
        return plain(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: client offers {offered:?}, server supports {COMMAND_PROTOCOLS:?}"),
        );
    };
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return plain(StatusCode::BAD_REQUEST, "websocket: no Sec-WebSocket-Key");
    };
    if req.headers().get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return plain(StatusCode::BAD_REQUEST, "websocket: unsupported version (13 is)");
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let v5 = protocol == COMMAND_PROTOCOLS[0];
    let upgraded = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(conn) = upgraded.await else { return };
        let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
        let ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(conn), role, None).await;
        session(cri, pending, ws, v5).await;
    });
    let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("Upgrade"));
    h.insert(hyper::header::UPGRADE, hyper::header::HeaderValue::from_static("websocket"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        h.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(hyper::header::SEC_WEBSOCKET_PROTOCOL, hyper::header::HeaderValue::from_static(protocol));
    r
}

async fn session<S>(cri: Arc<Cri>, p: Pending, ws: tokio_tungstenite::WebSocketStream<S>, v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (mtx, mut mrx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = mrx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let (stdin, stdout, stderr, tty) = wants(&p);
    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(4);
    let mtx_in = mtx.clone();
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let _gone = gone_tx;
        let (mut stdin_tx, mut resize_buf) = (Some(stdin_tx), Vec::new());
        while let Some(Ok(m)) = source.next().await {
            let data = match m {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Ping(p) => {
                    let _ = mtx_in.send(Message::Pong(p)).await;
                    continue;
                }
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, rest)) = data.split_first() else { continue };
            match channel {
                STDIN => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(rest.to_vec()).await;
                    }
                }
                RESIZE => {
                    resize_buf.extend_from_slice(rest);
                    for s in sizes(&mut resize_buf) {
                        let _ = resize_tx.send(s).await;
                    }
                }
                CLOSE if v5 && rest.first() == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    let forward = |channel: u8| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let mtx = mtx.clone();
        let t = tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                let mut m = Vec::with_capacity(data.len() + 1);
                m.push(channel);
                m.extend_from_slice(&data);
                if mtx.send(Message::binary(m)).await.is_err() {
                    return;
                }
            }
        });
        (tx, t)
    };
    let (out_tx, out_task) = if stdout { Some(forward(STDOUT)) } else { None }.unzip();
    let (err_tx, err_task) = if stderr { Some(forward(STDERR)) } else { None }.unzip();
    let io = Io { stdin: stdin.then_some(stdin_rx), stdout: out_tx, stderr: err_tx, resize: tty.then_some(resize_rx) };
    let status = run(&cri, p, io, gone).await;
    for t in [out_task, err_task].into_iter().flatten() {
        let _ = t.await;
    }
    let mut m = vec![ERROR];
    m.extend(serde_json::to_vec(&status).unwrap_or_default());
    let _ = mtx.send(Message::binary(m)).await;
    input.abort();
    drop(mtx);
    let _ = writer.await;
}
