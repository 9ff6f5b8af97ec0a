//! Attach and exec streams as raw API clients (SDKs) see them: the framing
//! an exec start's Tty asks for, detach keys acted on by the daemon, the
//! log replayed by attach's `logs=1`, and the websocket attach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;

/// A request whose connection the daemon takes over: the response head
/// and the connection, read from just after it.
fn hijack(d: &Daemon, method: &str, path: &str, body: &str) -> (String, UnixStream) {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "connection ended in the head: {}", String::from_utf8_lossy(&got));
        got.push(b[0]);
    }
    (String::from_utf8_lossy(&got).into_owned(), s)
}

fn read_all(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// (stream, payload) of each frame, with neighbouring frames of one stream joined.
fn frames(mut b: &[u8]) -> Vec<(u8, String)> {
    let mut out: Vec<(u8, String)> = vec![];
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let text = String::from_utf8_lossy(&b[8..8 + n]).into_owned();
        match out.last_mut() {
            Some((s, t)) if *s == b[0] => t.push_str(&text),
            _ => out.push((b[0], text)),
        }
        b = &b[8 + n..];
    }
    assert!(b.is_empty(), "a frame cut short: {b:?}");
    out
}

fn json(d: &Daemon, method: &str, path: &str, body: &str) -> serde_json::Value {
    let (s, b) = d.http(method, path, body.as_bytes());
    assert!((200..300).contains(&s), "{method} {path}: {s} {b}");
    serde_json::from_str(&b).unwrap_or(serde_json::Value::Null)
}

fn exec(d: &Daemon, id: &str, cfg: &str) -> String {
    json(d, "POST", &format!("/containers/{id}/exec"), cfg)["Id"].as_str().unwrap().to_owned()
}

#[test]
fn the_exec_start_s_tty_decides_the_framing() {
    if !can_run("exec framing") {
        return;
    }
    let d = Daemon::start("framing");
    d.load_busybox();
    let id = d.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"]).trim().to_owned();
    let cmd = r#""Cmd":["sh","-c","echo out; sleep 0.1; echo err >&2"],"AttachStdout":true,"AttachStderr":true"#;
    // A terminal at create, Tty:false at start: multiplexed, as Docker.
    let x = exec(&d, &id, &format!("{{{cmd},\"Tty\":true}}"));
    let (head, mut s) = hijack(&d, "POST", &format!("/exec/{x}/start"), r#"{"Detach":false,"Tty":false}"#);
    assert!(head.contains("application/vnd.docker.multiplexed-stream"), "{head}");
    let f = frames(&read_all(&mut s));
    assert_eq!(f, vec![(1, "out\r\nerr\r\n".to_owned())], "a terminal's output is one stream");
    // No terminal at create, Tty:true at start: raw.
    let x = exec(&d, &id, &format!("{{{cmd},\"Tty\":false}}"));
    let (head, mut s) = hijack(&d, "POST", &format!("/exec/{x}/start"), r#"{"Detach":false,"Tty":true}"#);
    assert!(head.contains("application/vnd.docker.raw-stream"), "{head}");
    assert_eq!(String::from_utf8_lossy(&read_all(&mut s)), "out\nerr\n");
    // Both as made: frames per stream.
    let x = exec(&d, &id, &format!("{{{cmd},\"Tty\":false}}"));
    let (_, mut s) = hijack(&d, "POST", &format!("/exec/{x}/start"), r#"{"Detach":false,"Tty":false}"#);
    assert_eq!(frames(&read_all(&mut s)), vec![(1, "out\n".to_owned()), (2, "err\n".to_owned())]);
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

/// Wait for the daemon to end the connection: true if it did in time.
fn ends(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let t = Instant::now();
    let mut b = [0u8; 4096];
    while t.elapsed() < Duration::from_secs(10) {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn the_daemon_detaches_on_the_detach_keys() {
    if !can_run("detach keys") {
        return;
    }
    let d = Daemon::start("detach");
    d.load_busybox();
    let body = r#"{"Image":"busybox","Cmd":["sh"],"Tty":true,"OpenStdin":true,"AttachStdin":true,"AttachStdout":true,"HostConfig":{"NetworkMode":"none"}}"#;
    let id = json(&d, "POST", "/containers/create", body)["Id"].as_str().unwrap().to_owned();
    d.ok(&["start", &id]);
    let attach = |keys: &str| {
        let q = if keys.is_empty() { String::new() } else { format!("&detachKeys={keys}") };
        hijack(&d, "POST", &format!("/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1{q}"), "").1
    };
    // The default keys, ctrl-p ctrl-q, typed one at a time.
    let mut s = attach("");
    s.write_all(b"echo one > /tmp/a\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&[0x10]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&[0x11]).unwrap();
    assert!(ends(&mut s), "the daemon kept the connection after ctrl-p ctrl-q");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", &id]).trim(), "running");
    // Keys of the client's, in one write with the input before them. The
    // stdin is still open: the shell reads this.
    let mut s = attach("ctrl-x,y");
    s.write_all(b"echo two > /tmp/b\n\x18y").unwrap();
    assert!(ends(&mut s), "the daemon kept the connection after ctrl-x y");
    let t = Instant::now();
    loop {
        let o = d.docker(&["exec", &id, "cat", "/tmp/a", "/tmp/b"]);
        if stdout(&o) == "one\ntwo\n" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{o:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", &id]).trim(), "running");
    let (s, b) = d.http("POST", &format!("/containers/{id}/attach?stream=1&stdin=1&detachKeys=ctrl-"), b"");
    assert!(s == 400 && b.contains("Invalid detach keys (ctrl-) provided"), "{s} {b}");
    // An exec with a terminal detaches on its own keys and runs on.
    let x = exec(&d, &id, r#"{"Cmd":["sh"],"Tty":true,"AttachStdin":true,"AttachStdout":true,"DetachKeys":"ctrl-e"}"#);
    let (_, mut s) = hijack(&d, "POST", &format!("/exec/{x}/start"), r#"{"Detach":false,"Tty":true}"#);
    s.write_all(b"echo ex > /tmp/e\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&[0x05]).unwrap();
    assert!(ends(&mut s), "the daemon kept the exec's connection after ctrl-e");
    assert_eq!(json(&d, "GET", &format!("/exec/{x}/json"), "")["Running"], true);
    assert_eq!(d.ok(&["exec", &id, "cat", "/tmp/e"]), "ex\n");
    let (s, b) = d.http("POST", &format!("/containers/{id}/exec"), br#"{"Cmd":["true"],"DetachKeys":"ctrl-1"}"#);
    assert!(s == 400 && b.contains("Invalid detach keys"), "{s} {b}");
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

#[test]
fn attach_replays_the_log_and_websockets_attach() {
    if !can_run("attach logs") {
        return;
    }
    let d = Daemon::start("attachlogs");
    d.load_busybox();
    let id = d
        .ok(&["run", "-d", "--network", "none", "busybox", "sh", "-c", "echo first; echo second >&2; exec sleep 1000"])
        .trim()
        .to_owned();
    let t = Instant::now();
    while d.ok(&["logs", &id]).is_empty() || stderr(&d.docker(&["logs", &id])).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, mut s) = hijack(&d, "POST", &format!("/containers/{id}/attach?logs=1&stream=0&stdout=1&stderr=1"), "");
    assert_eq!(frames(&read_all(&mut s)), vec![(1, "first\n".to_owned()), (2, "second\n".to_owned())]);
    let (_, mut s) = hijack(&d, "POST", &format!("/containers/{id}/attach?logs=1&stream=0&stdout=1"), "");
    assert_eq!(frames(&read_all(&mut s)), vec![(1, "first\n".to_owned())]);
    // A stopped container's log is replayed as well.
    d.ok(&["stop", "-t", "0", &id]);
    let (_, mut s) = hijack(&d, "POST", &format!("/containers/{id}/attach?logs=1&stream=0&stderr=1"), "");
    assert_eq!(frames(&read_all(&mut s)), vec![(2, "second\n".to_owned())]);

    // The websocket attach: the log, then stdin to stdout as binary messages.
    let body = r#"{"Image":"busybox","Cmd":["sh","-c","echo ready; exec cat"],"OpenStdin":true,"AttachStdin":true,"HostConfig":{"NetworkMode":"none"}}"#;
    let cat = json(&d, "POST", "/containers/create", body)["Id"].as_str().unwrap().to_owned();
    d.ok(&["start", &cat]);
    let t = Instant::now();
    while d.ok(&["logs", &cat]).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = UnixStream::connect(d.socket()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://berth/v1.45/containers/{cat}/attach/ws?logs=1&stream=1&stdin=1&stdout=1&stderr=1");
    let (mut ws, resp) = tungstenite::client::client(url.as_str(), sock).unwrap();
    assert_eq!(resp.status(), 101);
    let mut got = Vec::new();
    let mut read_until = |ws: &mut tungstenite::WebSocket<UnixStream>, want: &[u8]| {
        while !got.windows(want.len()).any(|w| w == want) {
            match ws.read().unwrap() {
                tungstenite::Message::Binary(b) => got.extend_from_slice(&b),
                other => panic!("not a binary message: {other:?}"),
            }
        }
    };
    read_until(&mut ws, b"ready\n");
    ws.send(tungstenite::Message::binary(b"over the socket\n".to_vec())).unwrap();
    read_until(&mut ws, b"over the socket\n");
    ws.close(None).unwrap();
    let (s, b) = d.http("GET", &format!("/containers/{cat}/attach/ws?stream=1"), b"");
    assert!(s == 400 && b.contains("websocket"), "{s} {b}");
    d.ok(&["rm", "-f", &id, &cat]);
    assert_clean(&d);
}
