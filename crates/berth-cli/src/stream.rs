//! A hijacked attach or exec connection joined to this terminal: stdin to
//! the container until its end, output (raw with a TTY, stdcopy frames
//! without) to stdout and stderr, the local terminal in raw mode for `-t`,
//! window size changes passed on, and signals forwarded (`--sig-proxy`).

use std::io::{Read, Write};
use std::os::fd::AsFd;

use berth_client::{Client, Hijacked, Query};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios;

/// The local terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    /// Puts stdin in raw mode when it is a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // Keep output post-processing so that "\n" from berth itself still
        // starts a new line.
        raw.output_flags |= termios::OutputFlags::OPOST;
        termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, &self.saved);
    }
}

/// The size of the terminal on stdout (or stdin): (height, width).
pub fn terminal_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
        let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Where resizes and forwarded signals go.
#[derive(Debug, Clone)]
pub enum Target {
    Container(String),
    Exec(String),
}

const PROXIED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Blocks the signals berth forwards, so that a thread can take them with
/// sigwait. Call before any other thread starts.
pub fn block_signals() {
    let mut set = SigSet::empty();
    for s in PROXIED {
        set.add(s);
    }
    let _ = set.thread_block();
}

/// Takes blocked signals in a thread of its own: window changes resize the
/// TTY, and with `proxy` the others go to the container (Docker's
/// `--sig-proxy`); without it they act as they would have.
pub fn handle_signals(client: Client, target: Target, tty: bool, proxy: bool) {
    let mut set = SigSet::empty();
    for s in PROXIED {
        set.add(s);
    }
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        if sig == Signal::SIGWINCH {
            if tty {
                resize(&client, &target);
            }
            continue;
        }
        match (&target, proxy) {
            (Target::Container(id), true) => {
                let q = Query::new().add("signal", sig.as_str().trim_start_matches("SIG"));
                let _ = client.post_empty(&format!("/containers/{id}/kill"), &q);
            }
            _ => {
                // Not forwarded: the default action (exit for these).
                let _ = nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
                    Some(&SigSet::from(sig)),
                    None,
                );
                let _ = nix::sys::signal::raise(sig);
            }
        }
    });
}

/// Tells the daemon the terminal's size.
pub fn resize(client: &Client, target: &Target) {
    let Some((h, w)) = terminal_size() else { return };
    let q = Query::new().add("h", h.to_string()).add("w", w.to_string());
    let path = match target {
        Target::Container(id) => format!("/containers/{id}/resize"),
        Target::Exec(id) => format!("/exec/{id}/resize"),
    };
    let _ = client.post_empty(&path, &q);
}

/// The `detachKeys` of the CLI's config file (`$DOCKER_CONFIG/config.json`,
/// else `~/.docker/config.json`), which Docker's CLI takes when no
/// `--detach-keys` is given.
pub fn configured_detach_keys() -> Option<String> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let body = std::fs::read(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v.get("detachKeys").and_then(|k| k.as_str()).filter(|k| !k.is_empty()).map(str::to_owned)
}

/// Docker's `--detach-keys`: `ctrl-<a-z@[\\]^_>` or single characters,
/// comma-separated; the config file's, else `ctrl-p,ctrl-q`, by default.
pub fn detach_keys(spec: Option<&str>) -> Result<Vec<u8>, String> {
    let configured = configured_detach_keys();
    let spec = spec.filter(|s| !s.is_empty()).or(configured.as_deref()).unwrap_or("ctrl-p,ctrl-q");
    berth_core::term::detach_keys(spec).ok_or_else(|| format!("Invalid escape keys ({spec}) provided"))
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The daemon ended the output (the process exited).
    Output,
    /// The user typed the detach keys.
    Detached,
}

/// Joins the connection to this process's stdio until the output ends.
/// stdin goes in only with `stdin`; its end half-closes the connection.
/// With `detach`, that key sequence typed on stdin ends the session
/// without sending it, and leaves the container running.
pub fn pump(h: Hijacked, stdin: bool, detach: Option<Vec<u8>>) -> std::io::Result<Ended> {
    let Hijacked { mut reader, writer, multiplexed } = h;
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if stdin {
        let mut w = writer.try_clone()?;
        let flag = detached.clone();
        std::thread::spawn(move || {
            let mut input = std::io::stdin().lock();
            let mut buf = [0u8; 32 * 1024];
            let keys = detach.unwrap_or_default();
            let mut held = 0usize;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let mut send = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if !keys.is_empty() && b == keys[held] {
                        held += 1;
                        if held == keys.len() {
                            flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            let _ = w.write_all(&send);
                            let _ = w.close();
                            return;
                        }
                        continue;
                    }
                    send.extend_from_slice(&keys[..held]);
                    held = 0;
                    send.push(b);
                }
                if w.write_all(&send).is_err() {
                    return;
                }
            }
            let _ = w.close_write();
        });
    } else {
        let _ = writer.close_write();
    }
    let out = std::io::stdout();
    let err = std::io::stderr();
    let r = if multiplexed {
        berth_client::stdcopy::demux(&mut reader, &mut out.lock(), &mut err.lock())
    } else {
        copy_flushing(&mut reader, &mut out.lock())
    };
    if detached.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(Ended::Detached);
    }
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Ended::Output),
        Err(e) => Err(e),
        Ok(()) => Ok(Ended::Output),
    }
}

/// Copies with a flush after every read, so an interactive session sees
/// each byte when it comes.
fn copy_flushing(src: &mut impl Read, dst: &mut impl Write) -> std::io::Result<()> {
    let mut buf = [0u8; 32 * 1024];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                dst.write_all(&buf[..n])?;
                dst.flush()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detach_key_specs() {
        assert_eq!(detach_keys(None).unwrap(), vec![16, 17]);
        assert_eq!(detach_keys(Some("ctrl-a,x,ctrl-@,ctrl-\\")).unwrap(), vec![1, b'x', 0, 28]);
        assert!(detach_keys(Some("ctrl-1")).is_err());
        assert!(detach_keys(Some("ab")).is_err());
    }
}
