//! Port forwarding over SPDY (`portforward.k8s.io`): for each connection
//! the client opens two streams with the same `requestID` and `port`
//! headers, one of `streamType` data and one of error. The data stream is
//! joined to a TCP connection to that port on localhost inside the pod's
//! network namespace; a failure is written to the error stream.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::PortForwardRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Frame};
use crate::Cri;

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    data: Option<u32>,
    error: Option<u32>,
    port: u16,
}

/// A TCP connection to `port` on localhost in the network namespace of
/// process `pid` (the pod's sandbox).
async fn dial(pid: i32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::task::spawn_blocking(move || {
        let ns = berth_network::netns::of_pid(pid)?;
        berth_network::netns::run_in(&ns, || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    s.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(s)
}

/// Join one pair's data stream to its connection.
async fn join(pid: i32, pair: Pair, mut from_client: mpsc::Receiver<Option<Vec<u8>>>, ftx: mpsc::Sender<Frame>) {
    let (Some(data), Some(error)) = (pair.data, pair.error) else { return };
    let tcp = match dial(pid, pair.port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("failed to connect to localhost:{} inside the pod's network namespace: {e}", pair.port);
            let _ = ftx.send(Frame::Data { id: error, fin: true, data: msg.into_bytes() }).await;
            let _ = ftx.send(Frame::Data { id: data, fin: true, data: vec![] }).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let to_pod = tokio::spawn(async move {
        while let Some(Some(chunk)) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if ftx.send(Frame::Data { id: data, fin: false, data: buf[..n].to_vec() }).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = ftx.send(Frame::Data { id: data, fin: true, data: vec![] }).await;
    let _ = ftx.send(Frame::Data { id: error, fin: true, data: vec![] }).await;
    let _ = to_pod.await;
}

pub(crate) async fn serve_spdy<C>(cri: Arc<Cri>, req: PortForwardRequest, conn: C)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, ftx, writer) = spdy::session(conn);
    let pid = cri
        .sandbox_of(&req.pod_sandbox_id)
        .ok()
        .and_then(|s| cri.engine.inspect(&s.id).ok())
        .filter(|c| c.state.status.is_live())
        .map(|c| c.state.pid);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Client data for each data stream; `None` is its end.
    let mut inbound: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    let mut waiting: HashMap<String, mpsc::Receiver<Option<Vec<u8>>>> = HashMap::new();
    let mut tasks = vec![];
    while let Ok(Some(f)) = reader.next().await {
        match f {
            Frame::SynStream { id, headers, .. } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default().to_owned();
                let request = spdy::header(&headers, "requestid").unwrap_or_default().to_owned();
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                let (Some(port), Some(pid), "data" | "error") = (port.filter(|p| *p > 0), pid, kind.as_str()) else {
                    let _ = ftx.send(Frame::RstStream { id, status: spdy::REFUSED_STREAM }).await;
                    continue;
                };
                let _ = ftx.send(Frame::SynReply { id, fin: false, headers: vec![] }).await;
                let pair = pairs.entry(request.clone()).or_default();
                pair.port = port;
                if kind == "data" {
                    pair.data = Some(id);
                    let (tx, rx) = mpsc::channel(16);
                    inbound.insert(id, tx);
                    waiting.insert(request.clone(), rx);
                } else {
                    pair.error = Some(id);
                }
                if pair.data.is_some() && pair.error.is_some() {
                    if let (Some(pair), Some(rx)) = (pairs.remove(&request), waiting.remove(&request)) {
                        tasks.push(tokio::spawn(join(pid, pair, rx, ftx.clone())));
                    }
                }
            }
            Frame::Data { id, fin, data } => {
                if let Some(tx) = inbound.get(&id) {
                    if !data.is_empty() {
                        let _ = tx.send(Some(data)).await;
                    }
                    if fin {
                        let _ = tx.send(None).await;
                        inbound.remove(&id);
                    }
                }
            }
            Frame::RstStream { id, .. } => {
                if let Some(tx) = inbound.remove(&id) {
                    let _ = tx.send(None).await;
                }
            }
            Frame::Ping { id } => {
                let _ = ftx.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    drop(inbound);
    for t in tasks {
        t.abort();
    }
    drop(ftx);
    let _ = writer.await;
}
