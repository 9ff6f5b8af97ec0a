//! Remote commands (exec and attach) over a streaming connection: the
//! process's stdio as channels, terminal resizes, and the status at the
//! end as kubelet writes it (a `metav1.Status`: Success, or Failure with
//! reason NonZeroExitCode and the code as its cause).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Frame};
use super::Pending;
use crate::Cri;

/// How long a client may take to open the streams it asked for.
const STREAM_WAIT: Duration = Duration::from_secs(30);
/// The most output carried in one message.
const CHUNK: usize = 32 << 10;

/// The client's side of a command: what it sends and what it is sent.
pub(crate) struct Io {
    /// Closed by the client at the end of its input.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    pub stdout: Option<mpsc::Sender<Vec<u8>>>,
    pub stderr: Option<mpsc::Sender<Vec<u8>>>,
    /// Terminal sizes, width then height.
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Sizes from the resize channel: JSON objects one after another, split
/// across messages anyhow. What is not yet a whole object stays in `buf`.
pub(crate) fn sizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut out = vec![];
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    while let Some(Ok(s)) = it.next() {
        out.push((s.width, s.height));
        used = it.byte_offset();
    }
    buf.drain(..used);
    // Garbage that can never parse is dropped rather than kept growing.
    if buf.len() > 4096 {
        buf.clear();
    }
    out
}

pub(crate) fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

fn failure(msg: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError", "code": 500})
}

fn exit_failure(cmd: &[String], code: i32) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// What the request asks to be streamed: stdin, stdout, stderr, tty.
pub(crate) fn wants(p: &Pending) -> (bool, bool, bool, bool) {
    match p {
        Pending::Exec(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
        Pending::Attach(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
        Pending::PortForward(_) => (false, false, false, false),
    }
}

/// Carry a process's stdio between its engine stream and `io` until its
/// output ends; `resize` applies a terminal size.
async fn pump<F, Fut>(stream: Option<tokio::net::UnixStream>, tty: bool, io: Io, resize: F)
where
    F: Fn(u16, u16) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let Io { stdin, stdout, stderr, resize: sizes_rx } = io;
    let resizer = sizes_rx.map(|mut rx| {
        tokio::spawn(async move {
            while let Some((w, h)) = rx.recv().await {
                resize(w, h).await;
            }
        })
    });
    let Some(stream) = stream else {
        if let Some(r) = resizer {
            r.abort();
        }
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let feeder = stdin.map(|mut rx| {
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // The end of the client's input is the end of the process's.
            let _ = wr.shutdown().await;
        })
    });
    // Raw with a terminal; else the engine's multiplexed frames.
    let mut frames = (!tty).then(berth_engine::logs::Deframer::default);
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut pieces: Vec<(u8, Vec<u8>)> = vec![];
        match &mut frames {
            Some(f) => f.push(&buf[..n], |s, data| pieces.push((s, data.to_vec()))),
            None => pieces.push((berth_engine::logs::STDOUT, buf[..n].to_vec())),
        }
        for (s, data) in pieces {
            let to = if s == berth_engine::logs::STDERR { &stderr } else { &stdout };
            if let Some(tx) = to {
                let _ = tx.send(data).await;
            }
        }
    }
    for t in [feeder, resizer].into_iter().flatten() {
        t.abort();
    }
}

/// Run what `p` asks for with `io`; the status to send back. `gone` ends
/// (its sender dropped) when the client's connection does.
pub(crate) async fn run(cri: &Arc<Cri>, p: Pending, io: Io, gone: tokio::sync::oneshot::Receiver<()>) -> Value {
    match p {
        Pending::Exec(r) => {
            let c = match cri.container_of(&r.container_id) {
                Ok(c) => c,
                Err(e) => return failure(e.message()),
            };
            let cfg = berth_engine::ExecConfig {
                cmd: r.cmd.clone(),
                tty: r.tty,
                attach_stdin: r.stdin,
                attach_stdout: r.stdout,
                attach_stderr: r.stderr && !r.tty,
                ..Default::default()
            };
            let engine = cri.engine.clone();
            let id = match engine.exec_create(&c.id, cfg) {
                Ok(id) => id,
                Err(e) => return failure(&e.to_string()),
            };
            let stream = match engine.exec_start(&id, false, None).await {
                Ok(s) => s,
                Err(e) => return failure(&e.to_string()),
            };
            let (e2, id2) = (engine.clone(), id.clone());
            let pumping = pump(stream, r.tty, io, move |w, h| {
                let (e, id) = (e2.clone(), id2.clone());
                async move {
                    let _ = e.exec_resize(&id, w, h).await;
                }
            });
            tokio::pin!(pumping);
            tokio::select! {
                _ = &mut pumping => {}
                _ = gone => {
                    // The client went: so does the command, as kubelet's
                    // runtimes end an exec whose stream is gone.
                    let _ = engine.exec_signal(&c.id, &id, libc::SIGKILL).await;
                    pumping.await;
                }
            }
            let status = match engine.exec_exit(&id, Duration::from_secs(10)).await {
                Some(0) => success(),
                Some(code) => exit_failure(&r.cmd, code),
                None => failure("the command's exit code was not known in time"),
            };
            engine.forget_exec(&id);
            status
        }
        Pending::Attach(r) => {
            let c = match cri.container_of(&r.container_id) {
                Ok(c) => c,
                Err(e) => return failure(e.message()),
            };
            let engine = cri.engine.clone();
            let a = match engine.attach(&c.id, r.stdin, r.stdout, r.stderr).await {
                Ok(a) => a,
                Err(e) => return failure(&e.to_string()),
            };
            let (e2, id2) = (engine.clone(), c.id.clone());
            pump(Some(a.stream), a.tty, io, move |w, h| {
                let (e, id) = (e2.clone(), id2.clone());
                async move {
                    let _ = e.resize(&id, w, h).await;
                }
            })
            .await;
            success()
        }
        Pending::PortForward(_) => failure("not a remote command"),
    }
}

/// A stream of a SPDY session by what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            "error" => Kind::Error,
            "stdin" => Kind::Stdin,
            "stdout" => Kind::Stdout,
            "stderr" => Kind::Stderr,
            "resize" => Kind::Resize,
            _ => return None,
        })
    }
}

/// Output sent on a SPDY stream as data frames.
fn forward(ftx: mpsc::Sender<Frame>, id: u32) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let t = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if ftx.send(Frame::Data { id, fin: false, data }).await.is_err() {
                return;
            }
        }
    });
    (tx, t)
}

/// A remote command over SPDY (`v4.channel.k8s.io`): the client opens
/// one stream per channel, marked by its `streamType` header.
pub(crate) async fn serve_spdy<C>(cri: Arc<Cri>, p: Pending, conn: C)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, ftx, writer) = spdy::session(conn);
    let (stdin, stdout, stderr, tty) = wants(&p);
    let mut expected = vec![Kind::Error];
    expected.extend(
        [(stdin, Kind::Stdin), (stdout, Kind::Stdout), (stderr, Kind::Stderr), (tty, Kind::Resize)]
            .into_iter()
            .filter_map(|(w, k)| w.then_some(k)),
    );
    let mut ids: HashMap<Kind, u32> = HashMap::new();
    let opened = tokio::time::timeout(STREAM_WAIT, async {
        while !expected.iter().all(|k| ids.contains_key(k)) {
            match reader.next().await {
                Ok(Some(Frame::SynStream { id, headers, .. })) => {
                    let kind = spdy::header(&headers, "streamtype").and_then(Kind::of);
                    match kind {
                        Some(k) => {
                            ids.insert(k, id);
                            let _ = ftx.send(Frame::SynReply { id, fin: false, headers: vec![] }).await;
                        }
                        None => {
                            let _ = ftx.send(Frame::RstStream { id, status: spdy::REFUSED_STREAM }).await;
                        }
                    }
                }
                Ok(Some(Frame::Ping { id })) => {
                    let _ = ftx.send(Frame::Ping { id }).await;
                }
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(e) => {
                    tracing::debug!("streaming: {e}");
                    return false;
                }
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !opened {
        drop(ftx);
        let _ = writer.await;
        return;
    }
    // Input from the client, routed by stream, until the connection ends.
    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(4);
    let routes = (ids.get(&Kind::Stdin).copied(), ids.get(&Kind::Resize).copied());
    let ftx_in = ftx.clone();
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let _gone = gone_tx;
        let (mut stdin_tx, mut resize_buf) = (Some(stdin_tx), Vec::new());
        while let Ok(Some(f)) = reader.next().await {
            match f {
                Frame::Data { id, fin, data } => {
                    if Some(id) == routes.0 {
                        if let Some(tx) = &stdin_tx {
                            if !data.is_empty() {
                                let _ = tx.send(data).await;
                            }
                        }
                        if fin {
                            stdin_tx = None;
                        }
                    } else if Some(id) == routes.1 {
                        resize_buf.extend_from_slice(&data);
                        for s in sizes(&mut resize_buf) {
                            let _ = resize_tx.send(s).await;
                        }
                    }
                }
                // A stream not asked for is answered, as kubelet answers
                // every stream, and left unused.
                Frame::SynStream { id, .. } => {
                    let _ = ftx_in.send(Frame::SynReply { id, fin: false, headers: vec![] }).await;
                }
                Frame::RstStream { id, .. } if Some(id) == routes.0 => stdin_tx = None,
                Frame::Ping { id } => {
                    let _ = ftx_in.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break,
                _ => {}
            }
        }
    });
    let (out_tx, out_task) = match ids.get(&Kind::Stdout) {
        Some(id) => {
            let (tx, t) = forward(ftx.clone(), *id);
            (Some(tx), Some(t))
        }
        None => (None, None),
    };
    let (err_tx, err_task) = match ids.get(&Kind::Stderr) {
        Some(id) => {
            let (tx, t) = forward(ftx.clone(), *id);
            (Some(tx), Some(t))
        }
        None => (None, None),
    };
    let io = Io { stdin: stdin.then_some(stdin_rx), stdout: out_tx, stderr: err_tx, resize: tty.then_some(resize_rx) };
    let status = run(&cri, p, io, gone).await;
    // Every byte of output goes before the status.
    for t in [out_task, err_task].into_iter().flatten() {
        let _ = t.await;
    }
    let error_id = ids.get(&Kind::Error).copied().unwrap_or(0);
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let _ = ftx.send(Frame::Data { id: error_id, fin: false, data: body }).await;
    for k in [Kind::Error, Kind::Stdout, Kind::Stderr] {
        if let Some(id) = ids.get(&k) {
            let _ = ftx.send(Frame::Data { id: *id, fin: true, data: vec![] }).await;
        }
    }
    let last = ids.values().copied().max().unwrap_or(0);
    let _ = ftx.send(Frame::GoAway { last, status: 0 }).await;
    input.abort();
    drop(ftx);
    let _ = writer.await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_across_message_boundaries() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":1"#.to_vec();
        assert_eq!(sizes(&mut buf), [(80, 24)]);
        buf.extend_from_slice(br#"00,"Height":40}"#);
        assert_eq!(sizes(&mut buf), [(100, 40)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_non_zero_exit_is_a_failure_with_the_code_as_its_cause() {
        let s = exit_failure(&["sh".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(success()["status"], "Success");
    }
}
