//! Test support: bundles made from Debian's busybox-static plus the static
//! probe, a runtime under test (berth-runtime or runc) with its own state
//! root, and cleanup that runs even when a test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the test can run: needs root. Under CI a missing requirement fails.
pub fn can_run(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(!in_ci(), "{what}: needs root under CI");
        eprintln!("skipping {what}: needs root");
    }
    root
}

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "true", "false", "ls", "sleep", "id", "hostname", "mkdir", "touch", "ps", "kill", "seq", "wc",
    "grep", "stat", "stty", "tty",
];

/// The probe, built once per test binary, statically, with plain rustc.
pub fn probe() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let src = manifest.join("../berth-probe/src/main.rs");
            let out_dir = manifest.join("../../target/probe");
            std::fs::create_dir_all(&out_dir).unwrap();
            let out = out_dir.join(format!("berth-probe-{}", std::process::id()));
            let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
            let st = Command::new(rustc)
                .args(["--edition", "2021", "-O", "-C", "target-feature=+crt-static", "-o"])
                .arg(&out)
                .arg(&src)
                .status()
                .expect("run rustc for the probe");
            assert!(st.success(), "building the static probe failed");
            out
        })
        .clone()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique short id for a container or resource.
pub fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Which runtime runs the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Berth,
    Runc,
}

/// A runtime with a private state root; deletes every container it made on drop.
pub struct Rt {
    pub kind: Kind,
    pub bin: PathBuf,
    pub root: PathBuf,
    pub made: std::cell::RefCell<Vec<String>>,
}

impl Rt {
    /// `None` when the runtime is not installed (a failure under CI).
    pub fn new(kind: Kind) -> Option<Rt> {
        let bin = match kind {
            Kind::Berth => PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime")),
            Kind::Runc => match which("runc") {
                Some(p) => p,
                None => {
                    assert!(!in_ci(), "runc is not installed (apt-get install runc)");
                    eprintln!("skipping: runc is not installed");
                    return None;
                }
            },
        };
        let root = std::env::temp_dir().join(unique("berth-rt-state"));
        Some(Rt { kind, bin, root, made: Default::default() })
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn out(&self, args: &[&str]) -> Output {
        if let Some(i) = args.iter().position(|a| *a == "create" || *a == "run") {
            if let Some(id) = args.iter().skip(i + 1).find(|a| !a.starts_with('-') && !a.starts_with('/')) {
                self.made.borrow_mut().push((*id).to_owned());
            }
        }
        self.cmd(args).output().expect("run the runtime")
    }

    /// Run to completion: (exit code, stdout, stderr).
    pub fn run(&self, b: &Bundle, id: &str) -> (i32, String, String) {
        b.write();
        let o = self.out(&["run", "--bundle", b.dir.to_str().unwrap(), id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Run the probe's report and parse it.
    pub fn report(&self, b: &mut Bundle) -> Value {
        b.args(&["/probe", "report"]);
        let id = unique("rep");
        let (code, out, err) = self.run(b, &id);
        assert_eq!(code, 0, "{:?} run failed: {err}", self.kind);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("probe output {out:?}: {e}"))
    }

    /// `create`; the container's init inherits the caller's stdio, so it
    /// goes to files, not to pipes that would stay open while init lives.
    pub fn create(&self, b: &Bundle, id: &str) -> Output {
        b.write();
        self.made.borrow_mut().push(id.to_owned());
        let out_path = b.dir.join(format!("{id}.out"));
        let err_path = b.dir.join(format!("{id}.err"));
        let status = self
            .cmd(&["create", "--bundle", b.dir.to_str().unwrap(), id])
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .expect("run the runtime");
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        }
    }

    pub fn state(&self, id: &str) -> Value {
        let o = self.out(&["state", id]);
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    pub fn wait_status(&self, id: &str, want: &str) -> bool {
        for _ in 0..500 {
            if self.state(id)["status"] == want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        for id in self.made.borrow().iter() {
            let _ = self.cmd(&["delete", "--force", id]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// A bundle: busybox-static and the probe in a rootfs, and a config.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
    pub cgroup_name: String,
}

impl Bundle {
    pub fn new() -> Bundle {
        assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} missing: apt-get install busybox-static");
        let dir = std::env::temp_dir().join(unique("berth-bundle"));
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "data"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::copy(probe(), rootfs.join("probe")).unwrap();
        let cgroup_name = unique("berth-test-cg");
        let config = base_config(&cgroup_name);
        Bundle { dir, config, cgroup_name }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    pub fn write(&self) {
        std::fs::write(self.dir.join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
    }

    /// The container's cgroup directory in a v1 controller (this host's layout).
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup").join(controller).join(&self.cgroup_name)
    }

    pub fn add_mount(&mut self, m: Value) {
        self.config["mounts"].as_array_mut().unwrap().push(m);
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config like `runc spec` writes, without a terminal.
fn base_config(cgroup: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "berth-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "cgroupsPath": format!("/{cgroup}"),
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Define a test of what berth-runtime does and the runc here does not (or
/// does otherwise); the comment above it says why.
#[macro_export]
macro_rules! berth_only {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() {
            if !support::can_run(stringify!($name)) {
                return;
            }
            let rt = support::Rt::new(support::Kind::Berth).unwrap();
            ($body)(&rt);
        }
    };
}

/// Define a test that runs once with berth-runtime and once with runc.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn berth() {
                if !support::can_run(stringify!($name)) {
                    return;
                }
                let rt = support::Rt::new(support::Kind::Berth).unwrap();
                ($body)(&rt);
            }
            #[test]
            fn runc() {
                if !support::can_run(stringify!($name)) {
                    return;
                }
                let Some(rt) = support::Rt::new(support::Kind::Runc) else { return };
                ($body)(&rt);
            }
        }
    };
}

/// Accept one connection on a console socket and take the pty master sent
/// over it with SCM_RIGHTS.
pub fn accept_pty_master(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this fd for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no pty master received over SCM_RIGHTS")
}

/// Everything the pty prints until its slave side closes, without CRs.
pub fn read_pty(master: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    // EIO once the last slave fd closes.
    while let Ok(n) = f.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}
