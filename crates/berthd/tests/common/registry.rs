//! A registry for a test: Debian's docker-registry (distribution 2.8) on a
//! port of 127.0.0.1 of its own, with its own storage, stopped and removed
//! with the test; and plain HTTP/1.1 to it for what a test builds by hand.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
pub const SKOPEO: &str = "/usr/bin/skopeo";

/// Whether the registry tools are here; under CI their absence fails.
pub fn have_registry_tools(what: &str) -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let have = std::path::Path::new(DOCKER_REGISTRY).exists() && std::path::Path::new(SKOPEO).exists();
    if !have {
        assert!(!ci, "{what}: needs {DOCKER_REGISTRY} and {SKOPEO} under CI");
        eprintln!("skipping {what}: needs {DOCKER_REGISTRY} and {SKOPEO}");
    }
    have
}

pub struct Registry {
    pub dir: PathBuf,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The user and password of its htpasswd, if it has one.
    pub user: Option<(String, String)>,
    child: Child,
    /// For `berth-registry serve`: the arguments it was started with.
    berth_args: Option<Vec<String>>,
}

/// The `berth-registry` binary, built beside berthd.
pub fn berth_registry_bin() -> PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth-registry")
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port_on(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

impl Registry {
    /// A registry on 127.0.0.1, with Basic auth of one user when `user`
    /// is given.
    pub fn start(tag: &str, user: Option<(&str, &str)>) -> Registry {
        Registry::start_on(tag, user, "127.0.0.1", None)
    }

    /// A registry on `ip`, serving TLS with `(cert, key)` when given.
    pub fn start_on(
        tag: &str,
        user: Option<(&str, &str)>,
        ip: &str,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Registry {
        let dir = std::env::temp_dir().join(format!("berth-registry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().unwrap();
            assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", dir.join("htpasswd").display());
        }
        let mut http_tls = match tls {
            Some((cert, key)) => format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()),
            None => String::new(),
        };
        // A CA beside the certificate named `clients.crt` makes client
        // certificates signed by it required.
        if let Some(clients) =
            tls.and_then(|(cert, _)| cert.parent()).map(|d| d.join("clients.crt")).filter(|p| p.exists())
        {
            http_tls.push_str(&format!("    clientcas:\n      - {}\n", clients.display()));
        }
        for _ in 0..5 {
            let addr = format!("{ip}:{}", free_port_on(ip));
            let config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http_tls}{auth}",
                dir.join("data").display()
            );
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let mut child = Command::new(DOCKER_REGISTRY)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(&addr).is_ok() {
                    let user = user.map(|(u, p)| (u.to_owned(), p.to_owned()));
                    return Registry { dir, addr, user, child, berth_args: None };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }

    /// Copy a `docker save` tar into `repo` (`name:tag`) with skopeo.
    pub fn push_archive(&self, tar: &std::path::Path, repo: &str) {
        self.push_archive_as(tar, repo, None)
    }

    /// [`Registry::push_archive`], in the manifest format given (`oci`,
    /// `v2s2`) when one is.
    pub fn push_archive_as(&self, tar: &std::path::Path, repo: &str, format: Option<&str>) {
        let mut c = Command::new(SKOPEO);
        c.args(["copy", "--dest-tls-verify=false"]);
        if let Some(f) = format {
            c.arg("--format").arg(f);
        }
        if let Some((u, p)) = &self.user {
            c.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        let out = c
            .arg(format!("docker-archive:{}", tar.display()))
            .arg(format!("docker://{}/{repo}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// One request to the registry: (status, headers, body).
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some((u, p)) = &self.user {
            use base64::Engine as _;
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            head.push_str(&format!("Authorization: Basic {pair}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = vec![];
        s.read_to_end(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut body = out[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = unchunk(&body);
        }
        (status, head, body)
    }

    /// Upload a blob (a POST for the session, then its PUT) and its digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        use sha2::Digest as _;
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(data));
        let (s, head, _) = self.http("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(s, 202, "{head}");
        let loc = head
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
            .unwrap()
            .trim()
            .to_owned();
        let path = loc.split_once(&self.addr).map_or(loc.as_str(), |(_, p)| p);
        let sep = if path.contains('?') { '&' } else { '?' };
        let (s, head, _) = self.http(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(s, 201, "{head}");
        digest
    }
}

/// Start `berth-registry` with `args` and `--listen listen`; its address
/// is read from the line it prints once it serves.
fn spawn_berth(dir: &std::path::Path, args: &[String], listen: &str) -> (Child, String) {
    let log_path = dir.join("registry.log");
    for _ in 0..50 {
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(berth_registry_bin())
            .env("BERTH_REGISTRY_DEBUG", "1")
            .args(args)
            .args(["--listen", listen])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.split("://").nth(1).filter(|_| l.contains(": serving "))) {
                return (child, addr.trim().to_owned());
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        // The address of a server just killed may be a moment from free.
        assert!(text.contains("Address already in use"), "berth-registry did not start: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("berth-registry: {listen} stayed in use");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let o = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A key `<name>.key` and a certificate `<out>` for `subject`, signed by
/// the CA of [`certificates`] in `dir`, with the extensions `ext`.
pub fn sign(dir: &std::path::Path, name: &str, out: &str, subject: &str, ext: &str) {
    let (key, csr, extfile) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            out,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

/// A CA, and a certificate for `ip` signed by it, made with openssl in
/// `dir`: (ca.crt, server.crt, server.key).
pub fn certificates(dir: &std::path::Path, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ],
    );
    sign(dir, "server", "server.crt", &format!("/CN={ip}"), &format!("subjectAltName=IP:{ip}\n"));
    (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"))
}

fn unchunk(b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    let mut rest = b;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + n]);
        rest = &rest[i + 2 + n + 2..];
    }
    out
}

impl Registry {
    /// `berth-registry serve` on `listen` (`127.0.0.1:0` for any port),
    /// storing under its own directory, with `args` besides; Basic (or
    /// token) credentials of `user` made into an htpasswd when given.
    pub fn berth(tag: &str, user: Option<(&str, &str)>, listen: &str, args: &[&str]) -> Registry {
        let dir = std::env::temp_dir().join(format!("berth-registry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut all: Vec<String> = vec!["serve".into(), "--root".into(), dir.join("data").display().to_string()];
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().unwrap();
            assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            all.extend(["--htpasswd".into(), dir.join("htpasswd").display().to_string()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let (child, addr) = spawn_berth(&dir, &all, listen);
        let user = user.map(|(u, p)| (u.to_owned(), p.to_owned()));
        Registry { dir, addr, user, child, berth_args: Some(all) }
    }

    /// Kill `berth-registry` with SIGKILL and start it again on the same
    /// storage and address.
    pub fn kill_and_restart(&mut self) {
        let args = self.berth_args.clone().expect("a berth-registry");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr) = spawn_berth(&self.dir, &args, &self.addr);
        self.child = child;
        self.addr = addr;
    }

    /// Stop the server, leaving its storage.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the registry logged (a `berth-registry` logs each request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Where a `berth-registry` keeps its data.
    pub fn root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stop it and serve the same storage at the same address again, now
    /// with Basic auth of `user`.
    pub fn restart_with_user(&mut self, user: (&str, &str)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = Command::new("htpasswd").args(["-Bbn", user.0, user.1]).output().unwrap();
        std::fs::write(self.dir.join("htpasswd"), &out.stdout).unwrap();
        let mut config = std::fs::read_to_string(self.dir.join("config.yml")).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            self.dir.join("htpasswd").display()
        ));
        std::fs::write(self.dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::options().append(true).open(self.dir.join("registry.log")).unwrap();
        self.child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while TcpStream::connect(&self.addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "docker-registry did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.user = Some((user.0.to_owned(), user.1.to_owned()));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a [`FaultProxy`] does to the blobs it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close each blob's first answer after this many bytes of its body.
    CutOnce(usize),
    /// Answer each blob's first request with a 500.
    FailOnce,
    /// Flip a byte of every blob's body.
    Corrupt,
    /// Pass bodies at about this many bytes a second.
    Slow(usize),
    /// Send each blob request to the registry itself with a 307, as a
    /// registry sends it to blob storage.
    Redirect,
}

/// A proxy on 127.0.0.1 in front of a registry that misbehaves with blobs,
/// one request per connection; it keeps each request's head.
pub struct FaultProxy {
    pub addr: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Blob body bytes passed so far.
    pub passed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn head_of(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = vec![];
    let mut b = [0u8; 4096];
    loop {
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
    }
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: Fault) -> FaultProxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(vec![]));
        let passed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
        let (up, reqs, pass, st) = (upstream.to_owned(), requests.clone(), passed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (up, reqs, pass, seen) = (up.clone(), reqs.clone(), pass.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = c.set_nonblocking(false);
                    // A TLS hello gets what a plain HTTP server gives it.
                    let mut first_byte = [0u8; 1];
                    if c.peek(&mut first_byte).is_ok() && first_byte[0] == 0x16 {
                        let _ = c.write_all(
                            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
                        );
                        return;
                    }
                    let Some((head, _)) = head_of(&mut c) else { return };
                    reqs.lock().unwrap().push(head.clone());
                    let first_line = head.lines().next().unwrap_or("").to_owned();
                    let blob = first_line.starts_with("GET ") && first_line.contains("/blobs/sha256:");
                    let path = first_line.split(' ').nth(1).unwrap_or("").to_owned();
                    let first = blob && seen.lock().unwrap().insert(path);
                    if blob && fault == Fault::Redirect {
                        let path = first_line.split(' ').nth(1).unwrap_or("/");
                        let answer = format!(
                            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{up}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = c.write_all(answer.as_bytes());
                        return;
                    }
                    if first && fault == Fault::FailOnce {
                        let _ = c.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let mut fwd: String = head
                        .lines()
                        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    fwd.push_str("Connection: close\r\n\r\n");
                    let Ok(mut u) = TcpStream::connect(&up) else { return };
                    if u.write_all(fwd.as_bytes()).is_err() {
                        return;
                    }
                    let Some((rhead, mut body)) = head_of(&mut u) else { return };
                    if c.write_all(rhead.as_bytes()).is_err() {
                        return;
                    }
                    let mut sent = 0usize;
                    let mut b = vec![0u8; 16 << 10];
                    loop {
                        if body.is_empty() {
                            match u.read(&mut b) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => body.extend_from_slice(&b[..n]),
                            }
                        }
                        let mut chunk = std::mem::take(&mut body);
                        if blob {
                            match fault {
                                Fault::CutOnce(n) if first && sent + chunk.len() >= n => {
                                    let _ = c.write_all(&chunk[..n - sent]);
                                    pass.fetch_add(n - sent, Ordering::Relaxed);
                                    let _ = c.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                                Fault::Corrupt if sent <= 1000 && sent + chunk.len() > 1000 => {
                                    chunk[1000 - sent] ^= 0xff
                                }
                                Fault::Slow(rate) => {
                                    // A twentieth of the rate each 50 ms; the rest waits.
                                    body = chunk.split_off(chunk.len().min(rate / 20 + 1));
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                _ => {}
                            }
                            pass.fetch_add(chunk.len(), Ordering::Relaxed);
                        }
                        sent += chunk.len();
                        if c.write_all(&chunk).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FaultProxy { addr, requests, passed, stop, thread: Some(thread) }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A bridge of the test's own with one address, removed on drop: a
/// registry there is not on loopback, so its TLS is verified.
pub struct Bridge {
    name: String,
    pub ip: String,
}

impl Bridge {
    pub fn new() -> Bridge {
        let mut r = [0u8; 2];
        use std::io::Read as _;
        std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut r).unwrap();
        let name = format!("btls{:02x}{:02x}", r[0], r[1]);
        let ip = format!("10.{}.{}.1", 128 + (r[0] & 63), r[1]);
        let sh = |args: &[&str]| {
            let o = std::process::Command::new("ip").args(args).output().unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        sh(&["link", "add", &name, "type", "bridge"]);
        let b = Bridge { name, ip };
        sh(&["addr", "add", &format!("{}/24", b.ip), "dev", &b.name]);
        sh(&["link", "set", &b.name, "up"]);
        b
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.name]).output();
    }
}
