//! The harness for berthd's integration tests: a daemon of its own per
//! test (roots, socket, cgroup parent), driven by the stock docker CLI and
//! raw HTTP, and torn down with everything it made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod registry;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DOCKER: &str = "/usr/local/bin/docker";

pub fn can_run(what: &str) -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let docker = Path::new(DOCKER).exists();
    if !root || !docker {
        assert!(!ci, "{what}: needs root and {DOCKER} under CI");
        eprintln!("skipping {what}: needs root and {DOCKER}");
        return false;
    }
    true
}

static N: AtomicU32 = AtomicU32::new(0);

pub struct Daemon {
    pub dir: PathBuf,
    pub cgroup: String,
    /// Its default bridge, and that bridge's subnet (`10.x.y.0/24`).
    pub bridge: String,
    pub subnet: [u8; 3],
    child: Option<Child>,
    extra: Vec<String>,
    /// The umask berthd is started under (the harness's own when `None`).
    pub umask: Option<libc::mode_t>,
    /// RLIMIT_NOFILE (soft and hard) berthd is started with.
    pub nofile: Option<u64>,
}

impl Daemon {
    pub fn start(tag: &str) -> Daemon {
        Daemon::start_with(tag, &[])
    }

    pub fn start_with(tag: &str, extra: &[&str]) -> Daemon {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("berthd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cgroup = format!("/berth-test-{}-{n}", std::process::id());
        let extra = extra.iter().map(|s| (*s).to_owned()).collect();
        // A bridge and a /24 of 10.64.0.0/10 of its own, so that daemons
        // running side by side never share a link, a subnet or a table.
        let mut r = [0u8; 3];
        std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut r).unwrap();
        let bridge = format!("bt{:02x}{:02x}{:02x}", r[0], r[1], r[2]);
        let subnet = [10, 64 + (r[0] & 63), r[1]];
        let mut d = Daemon { dir, cgroup, bridge, subnet, child: None, extra, umask: None, nofile: None };
        d.spawn();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("berth.sock")
    }

    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berthd"));
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--cgroup-parent")
            .arg(&self.cgroup)
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--bip")
            .arg(format!("{}.{}.{}.1/24", self.subnet[0], self.subnet[1], self.subnet[2]))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log);
        let (umask, nofile) = (self.umask, self.nofile);
        if umask.is_some() || nofile.is_some() {
            // SAFETY: umask and setrlimit are async-signal-safe and touch
            // only the child.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if let Some(m) = umask {
                        libc::umask(m);
                    }
                    if let Some(n) = nofile {
                        let r = libc::rlimit { rlim_cur: n, rlim_max: n };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                })
            };
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while UnixStream::connect(self.socket()).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "berthd did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address `host` of the default bridge's subnet.
    pub fn addr(&self, host: u8) -> String {
        format!("{}.{}.{}.{host}", self.subnet[0], self.subnet[1], self.subnet[2])
    }

    /// The bridges of this daemon's networks, from their records.
    pub fn bridges(&self) -> Vec<String> {
        let mut out = vec![self.bridge.clone()];
        for e in std::fs::read_dir(self.dir.join("data/network")).into_iter().flatten().flatten() {
            let Ok(b) = std::fs::read(e.path()) else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else { continue };
            if let Some(br) = v["bridge"].as_str().filter(|b| !b.is_empty() && *b != self.bridge) {
                out.push(br.to_owned());
            }
        }
        out
    }

    /// SIGTERM, and wait for the daemon to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with a pid and a signal.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// SIGKILL the daemon, as a crash would.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, None)
    }

    pub fn docker_in(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.join("docker-config"));
        run_with(c, args, input)
    }

    /// The berth CLI, pointed at this daemon by BERTH_HOST.
    pub fn berth_in(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut c = Command::new(berth_bin());
        c.env("BERTH_HOST", format!("unix://{}", self.socket().display()))
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", self.dir.join("docker-config"));
        run_with(c, args, input)
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_in(args, None)
    }

    /// berth, expected to succeed; its stdout.
    pub fn bok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(o.status.success(), "berth {args:?}: {}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    }

    /// docker, expected to succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    }

    pub fn load_busybox(&self) {
        let tar = self.fixture();
        let loaded = self.ok(&["load", "-i", tar.to_str().unwrap()]);
        assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
    }

    /// The busybox test image as a `docker save` tar in the daemon's dir.
    pub fn fixture(&self) -> PathBuf {
        let tar = self.dir.join("busybox.tar");
        let out = Command::new(env!("CARGO_BIN_EXE_berthd").replace("berthd", "berth-image"))
            .args(["fixture", "--output"])
            .arg(&tar)
            .arg("busybox:latest")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        tar
    }

    /// One raw HTTP request; (status, body).
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|x| x.1.to_owned()).unwrap_or_default();
        (status, body)
    }
}

/// Runs a command line with `args`, `input` on its stdin (else none).
pub fn run_with(mut c: Command, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = c
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Poll `docker args` until `done` holds for its output, for at most 20 s.
pub fn until(d: &Daemon, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let out = stdout(&d.docker(args));
        if done(&out) {
            return out;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "docker {args:?} still says {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `curl` of `url` until it answers with a body, for at most 10 s.
pub fn curl_until(url: &str) -> Vec<u8> {
    let t = Instant::now();
    loop {
        let o = Command::new("curl").args(["-s", "-g", "--max-time", "3", url]).output().unwrap();
        if o.status.success() && !o.stdout.is_empty() {
            return o.stdout;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{url}: {o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The berth CLI binary, built beside berthd.
pub fn berth_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() && UnixStream::connect(self.socket()).is_err() {
            self.spawn();
        }
        let ids = self.docker(&["ps", "-aq"]);
        for id in stdout(&ids).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        self.crash();
        // Whatever still runs from this daemon's roots (a failed test's
        // shims), and the processes of its cgroups; gone before the cgroups
        // are removed, which a cgroup with a dying process refuses.
        let mut killed = vec![];
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for p in rd.flatten() {
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(self.dir.to_str().unwrap()) {
                    if let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() {
                        killed.push(pid);
                    }
                }
            }
        }
        for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            killed.extend(cgroup_procs(&h.path().join(self.cgroup.trim_start_matches('/'))));
        }
        for pid in &killed {
            // SAFETY: kill with a pid and a signal.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let t = Instant::now();
        let alive = |pid: &i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        };
        while killed.iter().any(alive) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(self.dir.to_str().unwrap()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let c = std::ffi::CString::new(p).unwrap();
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_cgroup_tree(&h.path().join(self.cgroup.trim_start_matches('/')));
        }
        for b in self.bridges() {
            let _ = Command::new("ip").args(["link", "delete", &b]).stderr(Stdio::null()).status();
        }
        for family in ["ip", "ip6"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, &format!("berth-{}", self.bridge)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes of a cgroup and of every one under it.
fn cgroup_procs(dir: &std::path::Path) -> Vec<i32> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let mut out: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
        out.extend(cgroup_procs(&sub.path()));
    }
    out
}

/// A cgroup and every one under it (kubelet's kind of parents a CRI test
/// names among them), deepest first.
fn remove_cgroup_tree(dir: &std::path::Path) {
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
        remove_cgroup_tree(&sub.path());
    }
    let _ = std::fs::remove_dir(dir);
}

/// The links that are ports of bridge `name`.
pub fn bridge_ports(name: &str) -> Vec<String> {
    std::fs::read_dir(format!("/sys/class/net/{name}/brif"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Nothing of the daemon's containers is left: no mounts under its roots,
/// no cgroups under its parent, no shims.
pub fn assert_clean(d: &Daemon) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = d.dir.to_str().unwrap();
    // A running daemon with CRI keeps one network namespace pinned ahead
    // for the next pod.
    let spare = format!(" {root}/run/cri-netns/spare ");
    let left: Vec<&str> = info.lines().filter(|l| l.contains(root) && !l.contains(&spare)).collect();
    assert!(left.is_empty(), "mounts left under {root}: {left:?}");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let top = h.path().join(d.cgroup.trim_start_matches('/'));
        let subs = std::fs::read_dir(&top).map(|rd| rd.flatten().filter(|e| e.path().is_dir()).count()).unwrap_or(0);
        assert_eq!(subs, 0, "cgroups left under {}", top.display());
    }
    let run = d.dir.join("run");
    let left: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // The daemon's own: the runtime's state, the init binary, the CRI
        // socket it listens on, the directory of pods' namespaces and the
        // root pod sandboxes share.
        .filter(|n| !["runtime", "berth-init", "cri.sock", "cri-netns", "sandbox-root"].contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "exec root holds {left:?}");
    // The pods' pinned network namespaces, all let go.
    let pins: Vec<_> = std::fs::read_dir(run.join("cri-netns"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "spare")
        .collect();
    assert!(pins.is_empty(), "pinned network namespaces left: {pins:?}");
    // veth pairs are deleted in the background after an exit.
    let t = Instant::now();
    for b in d.bridges() {
        while !bridge_ports(&b).is_empty() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ports = bridge_ports(&b);
        assert!(ports.is_empty(), "veths left on {b}: {ports:?}");
    }
}
