//! The shim's one loop: poll the container's output, the socket and its
//! clients, and SIGCHLD (through a signalfd), until the container has
//! exited, its exit is on disk and every attacher has its output.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use berth_shim_proto::{self as proto, ExecRequest, ExitRecord, Reply, Request, State, Status};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::jsonlog::{JsonLog, Stream};
use crate::runtime::Runtime;
use crate::stdio::{self, Stdio};

/// How long output may still come after a process exits (from processes
/// it left behind holding its pipes) before the shim stops waiting.
const DRAIN: Duration = Duration::from_secs(2);
/// An attacher that falls this far behind is dropped rather than letting
/// the shim's memory grow without bound.
const MAX_BACKLOG: usize = 16 << 20;
/// The key of the container's own process among the processes served.
const MAIN: &str = "";

#[derive(Debug)]
pub(crate) struct Proc {
    pub pid: i32,
    pub io: Stdio,
    pub tty: bool,
    /// Close stdin when the attacher that gave it goes (`StdinOnce`; always
    /// for exec).
    pub stdin_once: bool,
    pub exit: Option<ExitRecord>,
    pub exited_at: Option<Instant>,
    /// Exited and its output drained: waiters are answered.
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Request,
    Attached {
        key: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Wait,
    ExecWait(String),
    /// Close once the output buffer is written.
    Closing,
}

#[derive(Debug)]
struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    role: Role,
    read_closed: bool,
    dead: bool,
}

/// How long the shim is idle after a request before it releases its code
/// pages (see `trim`).
const TRIM_AFTER_MS: i32 = 200;

#[derive(Debug, Clone)]
enum Src {
    Signal,
    Listen,
    Out(String, usize),
    In(String),
    Client(usize),
}

#[derive(Debug)]
pub(crate) struct Shim {
    pub id: String,
    pub rt: Runtime,
    /// Where the shim keeps its files (the bundle).
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub exit_file: PathBuf,
    pub listener: UnixListener,
    pub sigfd: SignalFd,
    pub started: bool,
    pub paused: bool,
    pub main: Proc,
    pub execs: HashMap<String, Proc>,
    pub log: Option<JsonLog>,
    clients: Vec<Client>,
    finished_at: Option<Instant>,
    /// Requests came since the code pages were last released.
    trim_due: bool,
    /// Log writes that failed since the last one that did not.
    log_lost: u64,
}

impl Shim {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        rt: Runtime,
        dir: PathBuf,
        socket: PathBuf,
        exit_file: PathBuf,
        listener: UnixListener,
        sigfd: SignalFd,
        main: Proc,
        log: Option<JsonLog>,
    ) -> Shim {
        Shim {
            id,
            rt,
            dir,
            socket,
            exit_file,
            listener,
            sigfd,
            started: false,
            paused: false,
            main,
            execs: HashMap::new(),
            log,
            clients: vec![],
            finished_at: None,
            trim_due: true,
            log_lost: 0,
        }
    }

    /// Let the created container run at once (`ShimConfig::start`). If it
    /// cannot, the container is killed and deleted: the daemon is told it
    /// failed, and nothing of it is left to serve.
    pub(crate) fn start_created(&mut self) -> Result<(), String> {
        match self.rt.start(&self.id) {
            Ok(()) => {
                self.started = true;
                Ok(())
            }
            Err(e) => {
                let _ = self.rt.kill(&self.id, 9, true);
                let _ = self.rt.delete(&self.id);
                Err(e)
            }
        }
    }

    fn proc_mut(&mut self, key: &str) -> Option<&mut Proc> {
        if key == MAIN {
            Some(&mut self.main)
        } else {
            self.execs.get_mut(key)
        }
    }

    fn status(&self) -> Status {
        match (self.main.exit.is_some(), self.started, self.paused) {
            (true, _, _) => Status::Stopped,
            (false, false, _) => Status::Created,
            (false, true, true) => Status::Paused,
            (false, true, false) => Status::Running,
        }
    }

    pub(crate) fn serve(mut self) -> i32 {
        loop {
            self.settle();
            if let Some(t) = self.finished_at {
                let flushed = self.clients.iter().all(|c| c.out.is_empty());
                if flushed || t.elapsed() > DRAIN {
                    break;
                }
            }
            let (mut fds, srcs) = self.poll_set();
            let draining = self.main.exit.is_some() || self.execs.values().any(|p| p.exit.is_some() && !p.done);
            let timeout = match (draining || self.finished_at.is_some(), self.trim_due) {
                (true, _) => 50,
                (false, true) => TRIM_AFTER_MS,
                (false, false) => -1,
            };
            // SAFETY: `fds` is a live, correctly sized array of pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n == 0 && self.trim_due && !draining {
                crate::trim::release_clean_file_pages();
                self.trim_due = false;
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                say!("berth-shim {}: poll: {e}", self.id);
                break;
            }
            for (pfd, src) in fds.iter().zip(srcs) {
                if pfd.revents != 0 {
                    self.handle(src, pfd.revents);
                }
            }
            self.clients.retain(|c| !c.dead);
        }
        let _ = std::fs::remove_file(&self.socket);
        0
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Src>) {
        let mut fds = vec![];
        let mut srcs = vec![];
        let mut add = |fd: RawFd, events: i16, src: Src| {
            fds.push(libc::pollfd { fd, events, revents: 0 });
            srcs.push(src);
        };
        add(self.sigfd.as_raw_fd(), libc::POLLIN, Src::Signal);
        if self.finished_at.is_none() {
            add(self.listener.as_raw_fd(), libc::POLLIN, Src::Listen);
        }
        let procs = std::iter::once((MAIN, &self.main)).chain(self.execs.iter().map(|(k, p)| (k.as_str(), p)));
        for (key, p) in procs {
            for (i, fd) in p.io.out.iter().enumerate() {
                if let Some(fd) = fd {
                    add(fd.as_raw_fd(), libc::POLLIN, Src::Out(key.to_owned(), i));
                }
            }
            if let (Some(fd), false) = (&p.io.stdin, p.io.stdin_buf.is_empty()) {
                add(fd.as_raw_fd(), libc::POLLOUT, Src::In(key.to_owned()));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = 0;
            if !c.read_closed {
                ev |= libc::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.sock.as_raw_fd(), ev, Src::Client(i));
        }
        (fds, srcs)
    }

    fn handle(&mut self, src: Src, revents: i16) {
        match src {
            Src::Signal => {
                while let Ok(Some(_)) = self.sigfd.read_signal() {}
                self.reap();
            }
            Src::Listen => {
                self.trim_due = true;
                while let Ok((sock, _)) = self.listener.accept() {
                    stdio::set_nonblocking(sock.as_raw_fd());
                    self.clients.push(Client {
                        sock,
                        inbuf: vec![],
                        out: vec![],
                        role: Role::Request,
                        read_closed: false,
                        dead: false,
                    });
                }
            }
            Src::Out(key, i) => self.read_output(&key, i),
            Src::In(key) => {
                if let Some(p) = self.proc_mut(&key) {
                    flush_stdin(p);
                }
            }
            Src::Client(i) => {
                if revents & libc::POLLOUT != 0 {
                    self.write_client(i);
                }
                if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.read_client(i);
                }
            }
        }
    }

    /// Reap every child that has exited: the container's init, exec'd
    /// processes, and orphans reparented to us.
    fn reap(&mut self) {
        loop {
            let (pid, rec) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), exit_record(code, None)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    (pid.as_raw(), exit_record(128 + sig as i32, Some(sig as i32)))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let procs = std::iter::once(&mut self.main).chain(self.execs.values_mut());
            for p in procs.filter(|p| p.pid == pid && p.exit.is_none()) {
                p.exit = Some(rec.clone());
                p.exited_at = Some(Instant::now());
            }
        }
    }

    fn read_output(&mut self, key: &str, i: usize) {
        let mut buf = vec![0u8; 64 * 1024];
        let Some(p) = self.proc_mut(key) else { return };
        let Some(fd) = p.io.out[i].as_ref().map(AsRawFd::as_raw_fd) else { return };
        let tty = p.tty;
        let n = match stdio::read_some(fd, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => {
                p.io.out[i] = None;
                if key == MAIN {
                    if let Some(log) = &mut self.log {
                        let _ = log.close_stream(log_stream(i), SystemTime::now());
                    }
                }
                return;
            }
        };
        let data = &buf[..n];
        if key == MAIN {
            if let Some(log) = &mut self.log {
                match log.write(log_stream(i), data, SystemTime::now()) {
                    Ok(()) if self.log_lost > 0 => {
                        say!("berth-shim {}: log: written again after {} failed writes", self.id, self.log_lost);
                        self.log_lost = 0;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        // Once, until a write succeeds: a full disk fails
                        // every write, and this log is on the same disk.
                        if self.log_lost == 0 {
                            say!("berth-shim {}: log: {e}; output is lost until a write succeeds", self.id);
                        }
                        self.log_lost += 1;
                    }
                }
            }
        }
        for c in &mut self.clients {
            let Role::Attached { key: k, stdout, stderr, .. } = &c.role else { continue };
            if k != key || !(if i == 0 { *stdout } else { *stderr }) {
                continue;
            }
            if !tty {
                c.out.extend_from_slice(&proto::frame_header(if i == 0 { proto::STDOUT } else { proto::STDERR }, n));
            }
            c.out.extend_from_slice(data);
            if c.out.len() > MAX_BACKLOG {
                c.dead = true;
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = vec![0u8; 32 * 1024];
        let c = &mut self.clients[i];
        let n = match c.sock.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => 0,
        };
        if n == 0 {
            c.read_closed = true;
            match c.role.clone() {
                Role::Attached { key, stdin: true, .. } => {
                    if let Some(p) = self.proc_mut(&key) {
                        if p.stdin_once {
                            p.io.stdin_closing = true;
                            flush_stdin(p);
                        }
                    }
                }
                // An attacher without stdin may half-close and still read.
                Role::Attached { .. } => {}
                _ => c.dead = true,
            }
            return;
        }
        let data = &buf[..n];
        match c.role.clone() {
            Role::Request => {
                c.inbuf.extend_from_slice(data);
                let Some(pos) = c.inbuf.iter().position(|b| *b == b'\n') else {
                    if c.inbuf.len() > proto::MAX_LINE {
                        c.dead = true;
                    }
                    return;
                };
                let rest = c.inbuf.split_off(pos + 1);
                let line = std::mem::take(&mut c.inbuf);
                let (reply, role) = match proto::parse::<Request>(&line) {
                    Ok(req) => self.request(req),
                    Err(e) => (Reply::Error { message: format!("bad request: {e}") }, Role::Closing),
                };
                let c = &mut self.clients[i];
                if let Ok(mut line) = serde_json::to_vec(&reply) {
                    line.push(b'\n');
                    c.out.extend_from_slice(&line);
                }
                c.role = role.clone();
                if let Role::Attached { key, stdin: true, .. } = role {
                    if let Some(p) = self.proc_mut(&key) {
                        push_stdin(p, &rest);
                    }
                }
                self.write_client(i);
            }
            Role::Attached { key, stdin: true, .. } => {
                if let Some(p) = self.proc_mut(&key) {
                    push_stdin(p, data);
                }
            }
            _ => {}
        }
    }

    fn write_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.out.is_empty() {
            // SAFETY: sends from a buffer we own; MSG_NOSIGNAL keeps a
            // vanished peer from raising SIGPIPE.
            let n = unsafe {
                libc::send(
                    c.sock.as_raw_fd(),
                    c.out.as_ptr().cast(),
                    c.out.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return,
                    _ => {
                        c.dead = true;
                        return;
                    }
                }
            }
            c.out.drain(..n as usize);
        }
        if c.role == Role::Closing {
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
            c.dead = true;
        }
    }

    fn request(&mut self, req: Request) -> (Reply, Role) {
        let ok = |r: Result<(), String>| match r {
            Ok(()) => (Reply::Ok, Role::Closing),
            Err(message) => (Reply::Error { message }, Role::Closing),
        };
        let running = self.main.exit.is_none();
        match req {
            Request::State => (
                Reply::State(State { status: self.status(), pid: self.main.pid, exit: self.main.exit.clone() }),
                Role::Closing,
            ),
            Request::Start => {
                if self.started || !running {
                    return ok(Err(format!("container {} is not in the created state", self.id)));
                }
                let r = self.rt.start(&self.id);
                self.started = r.is_ok();
                ok(r)
            }
            Request::Wait => match (&self.main.exit, self.main.done) {
                (Some(rec), true) => (Reply::Exited(rec.clone()), Role::Closing),
                _ => (Reply::Ok, Role::Wait),
            },
            Request::Signal { signal, all } => {
                if !running {
                    return ok(Err(format!("container {} is not running", self.id)));
                }
                ok(self.rt.kill(&self.id, signal, all))
            }
            Request::Resize { width, height } => ok(self.main.io.resize(width, height)),
            Request::ReopenLog => match &mut self.log {
                Some(log) => ok(log.reopen().map_err(|e| format!("reopen the log: {e}"))),
                None => ok(Err(format!("container {} keeps no log", self.id))),
            },
            Request::Pause | Request::Resume => {
                let frozen = req == Request::Pause;
                if !running || !self.started {
                    return ok(Err(format!("container {} is not running", self.id)));
                }
                let r = self.rt.pause(&self.id, frozen);
                if r.is_ok() {
                    self.paused = frozen;
                }
                ok(r)
            }
            Request::Attach { stdin, stdout, stderr } => {
                (Reply::Ok, Role::Attached { key: MAIN.to_owned(), stdin, stdout, stderr })
            }
            Request::Exec(e) => self.exec(e),
            Request::ExecWait { exec_id } => match self.execs.get(&exec_id) {
                None => ok(Err(format!("no such exec: {exec_id}"))),
                Some(p) if p.done => {
                    // Its exit is told once; the daemon keeps it from here.
                    let rec = p.exit.clone().unwrap_or_default();
                    self.execs.remove(&exec_id);
                    (Reply::Exited(rec), Role::Closing)
                }
                Some(_) => (Reply::Ok, Role::ExecWait(exec_id)),
            },
            Request::ExecSignal { exec_id, signal } => match self.execs.get(&exec_id) {
                None => ok(Err(format!("no such exec: {exec_id}"))),
                // Not reaped yet, so the pid is still this process's.
                Some(p) if p.exit.is_none() => ok(signal_pid(p.pid, signal)),
                Some(_) => ok(Ok(())),
            },
            Request::ExecResize { exec_id, width, height } => match self.execs.get(&exec_id) {
                None => ok(Err(format!("no such exec: {exec_id}"))),
                Some(p) => ok(p.io.resize(width, height)),
            },
        }
    }

    fn exec(&mut self, e: ExecRequest) -> (Reply, Role) {
        let err = |message: String| (Reply::Error { message }, Role::Closing);
        if self.main.exit.is_some() || !self.started {
            return err(format!("container {} is not running", self.id));
        }
        if self.paused {
            return err(format!("container {} is paused, unpause the container before exec", self.id));
        }
        if e.exec_id.is_empty() || self.execs.contains_key(&e.exec_id) {
            return err(format!("exec id {:?} is empty or taken", e.exec_id));
        }
        let attach = !e.detach && (e.stdin || e.stdout || e.stderr);
        let (mut io, mut ends) = match Stdio::new(e.tty, e.stdin && attach) {
            Ok(x) => x,
            Err(m) => return err(m),
        };
        let console = ends.console.take();
        let pid = match stdio::with_stdio(&ends, || self.rt.exec(&self.id, &e.process, console, &self.dir)) {
            Ok(Ok(pid)) => pid,
            Ok(Err(m)) | Err(m) => return err(m),
        };
        if let Err(m) = io.receive_master(&ends, e.stdin && attach) {
            return err(m);
        }
        drop(ends);
        let p = Proc { pid, io, tty: e.tty, stdin_once: !e.tty, exit: None, exited_at: None, done: false };
        self.execs.insert(e.exec_id.clone(), p);
        // The process may already have exited and been reaped as an orphan
        // before its pid was known here.
        self.reap();
        let role = if attach {
            Role::Attached { key: e.exec_id, stdin: e.stdin, stdout: e.stdout, stderr: e.stderr }
        } else {
            Role::Closing
        };
        (Reply::ExecStarted { pid }, role)
    }

    /// Move processes that exited and drained to done: answer their
    /// waiters and end their attachers. The container's own exit is written
    /// to disk first, and the runtime's state removed.
    fn settle(&mut self) {
        for p in std::iter::once(&mut self.main).chain(self.execs.values_mut()) {
            if p.io.stdin_closing && p.io.stdin_buf.is_empty() {
                p.io.stdin = None;
            }
        }
        let mut finished: Vec<(String, ExitRecord)> = vec![];
        let keys: Vec<String> = std::iter::once(MAIN.to_owned()).chain(self.execs.keys().cloned()).collect();
        for key in keys {
            let Some(p) = self.proc_mut(&key) else { continue };
            let (Some(rec), Some(at), false) = (&p.exit, p.exited_at, p.done) else { continue };
            if p.io.outputs_open() && at.elapsed() < DRAIN {
                continue;
            }
            let rec = rec.clone();
            p.done = true;
            p.io.out = [None, None];
            p.io.stdin = None;
            finished.push((key, rec));
        }
        for (key, mut rec) in finished {
            let mut told = false;
            if key == MAIN {
                rec = self.finish_main(rec);
            }
            for c in &mut self.clients {
                let ours = match &c.role {
                    Role::Attached { key: k, .. } => *k == key,
                    Role::Wait => key == MAIN,
                    Role::ExecWait(k) => *k == key,
                    _ => false,
                };
                if !ours {
                    continue;
                }
                if matches!(c.role, Role::Wait | Role::ExecWait(_)) {
                    if let Ok(mut line) = serde_json::to_vec(&Reply::Exited(rec.clone())) {
                        line.push(b'\n');
                        c.out.extend_from_slice(&line);
                    }
                    told = true;
                }
                c.role = Role::Closing;
            }
            // An exec whose exit a waiter has is forgotten, so that a
            // container probed by its health check for months does not
            // grow its shim; one nobody waited for yet stays to be asked.
            if told && key != MAIN {
                self.execs.remove(&key);
            }
        }
        // Requests still being read when the container is gone are answered
        // by the exit file.
        for i in 0..self.clients.len() {
            if !self.clients[i].out.is_empty() || self.clients[i].role == Role::Closing {
                self.write_client(i);
            }
        }
    }

    fn finish_main(&mut self, mut rec: ExitRecord) -> ExitRecord {
        rec.oom_killed = self.rt.oom_kills(&self.id) > 0;
        if let Some(log) = &mut self.log {
            let now = SystemTime::now();
            let _ = log.close_stream(Stream::Stdout, now);
            let _ = log.close_stream(Stream::Stderr, now);
        }
        if let Err(e) = self.rt.delete(&self.id) {
            say!("berth-shim {}: delete: {e}", self.id);
        }
        self.main.exit = Some(rec.clone());
        match serde_json::to_vec(&rec) {
            Ok(body) => {
                if let Err(e) =
                    berth_core::atomic::replace(&self.exit_file, &body, 0o600, berth_core::atomic::Durability::Volatile)
                {
                    say!("berth-shim {}: write {}: {e}", self.id, self.exit_file.display());
                }
            }
            Err(e) => say!("berth-shim {}: exit record: {e}", self.id),
        }
        self.finished_at = Some(Instant::now());
        rec
    }
}

fn signal_pid(pid: i32, signal: i32) -> Result<(), String> {
    let sig = nix::sys::signal::Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
    nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(|e| format!("signal {signal} to {pid}: {e}"))
}

fn log_stream(i: usize) -> Stream {
    if i == 0 {
        Stream::Stdout
    } else {
        Stream::Stderr
    }
}

fn exit_record(code: i32, signal: Option<i32>) -> ExitRecord {
    ExitRecord { code, signal, oom_killed: false, finished_at: berth_core::time::now_rfc3339() }
}

fn push_stdin(p: &mut Proc, data: &[u8]) {
    if p.io.stdin.is_none() || p.io.stdin_closing || data.is_empty() {
        return;
    }
    p.io.stdin_buf.extend_from_slice(data);
    flush_stdin(p);
}

fn flush_stdin(p: &mut Proc) {
    let Some(fd) = p.io.stdin.as_ref().map(AsRawFd::as_raw_fd) else {
        p.io.stdin_buf.clear();
        return;
    };
    while !p.io.stdin_buf.is_empty() {
        match stdio::write_some(fd, &p.io.stdin_buf) {
            Ok(0) => return,
            Ok(n) => {
                p.io.stdin_buf.drain(..n);
            }
            Err(_) => {
                // The process closed its stdin: nothing more goes in.
                p.io.stdin_buf.clear();
                p.io.stdin = None;
                return;
            }
        }
    }
    if p.io.stdin_closing {
        p.io.stdin = None;
    }
}
