//! berth-probe: runs inside test containers and prints what it sees.
//!
//! std only, so a test can build it statically with plain `rustc` and drop
//! it into any rootfs. Commands:
//!   report              JSON: ids, caps, namespaces, mounts, cgroups, limits, fds, /proc pids
//!   write PATH          create PATH; prints "ok" or "errno N"
//!   read PATH           prints the file, or "errno N"
//!   mkdir PATH          prints "ok" or "errno N"
//!   open-exe PID        open /proc/PID/exe for reading; "ok" or "errno N"
//!   alloc MIB           touch MIB mebibytes, then print "ok"
//!   spawn N             start N sleeping copies of itself; prints how many started and the first errno
//!   tick PATH           write an increasing counter to PATH every 10 ms, for ever
//!   sleep SECS          sleep
//!   exit CODE           exit with CODE

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn read(p: &str) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim_start_matches(':').trim().to_owned()))
        .unwrap_or_default()
}

fn errno(e: &std::io::Error) -> String {
    format!("errno {}", e.raw_os_error().unwrap_or(-1))
}

fn report() -> String {
    let status = read("/proc/self/status");
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut s = |k: &str, v: String| fields.push((k.to_owned(), esc(&v)));
    for k in
        ["Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Umask"]
    {
        s(k, status_field(&status, k));
    }
    s("pid", std::process::id().to_string());
    s("hostname", read("/proc/sys/kernel/hostname").trim().to_owned());
    s("domainname", read("/proc/sys/kernel/domainname").trim().to_owned());
    s("uid_map", read("/proc/self/uid_map"));
    s("gid_map", read("/proc/self/gid_map"));
    s("cgroup", read("/proc/self/cgroup"));
    s("mountinfo", read("/proc/self/mountinfo"));
    s("limits", read("/proc/self/limits"));
    s("oom_score_adj", read("/proc/self/oom_score_adj").trim().to_owned());
    s("cwd", fs::read_link("/proc/self/cwd").map(|p| p.display().to_string()).unwrap_or_default());
    let mut out = String::from("{");
    for (k, v) in &fields {
        let _ = write!(out, "{}:{},", esc(k), v);
    }
    let mut ns = Vec::new();
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
        let l = fs::read_link(format!("/proc/self/ns/{n}")).map(|p| p.display().to_string()).unwrap_or_default();
        ns.push(format!("{}:{}", esc(n), esc(&l)));
    }
    let _ = write!(out, "\"ns\":{{{}}},", ns.join(","));
    // Listing /proc/self/fd opens one fd itself; it is left out by target.
    let mut fds = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let target = fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default();
            if target.starts_with("/proc/") && target.ends_with("/fd") {
                continue;
            }
            fds.push(format!("{}:{}", esc(&name), esc(&target)));
        }
    }
    let _ = write!(out, "\"fds\":{{{}}},", fds.join(","));
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    let _ = write!(out, "\"proc_pids\":{:?},", pids);
    let env: Vec<String> = std::env::vars().map(|(k, v)| esc(&format!("{k}={v}"))).collect();
    let _ = write!(out, "\"env\":[{}]", env.join(","));
    out.push('}');
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let out = match arg(1).as_str() {
        "report" => report(),
        "write" => match fs::write(arg(2), b"probe") {
            Ok(()) => "ok".into(),
            Err(e) => errno(&e),
        },
        "read" => match fs::read_to_string(arg(2)) {
            Ok(s) => s,
            Err(e) => errno(&e),
        },
        "mkdir" => match fs::create_dir(arg(2)) {
            Ok(()) => "ok".into(),
            Err(e) => errno(&e),
        },
        "open-exe" => match fs::File::open(format!("/proc/{}/exe", arg(2))) {
            Ok(_) => "ok".into(),
            Err(e) => errno(&e),
        },
        "alloc" => {
            let mib: usize = arg(2).parse().unwrap_or(0);
            let mut blocks = Vec::new();
            for _ in 0..mib {
                let mut v = vec![0u8; 1 << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                blocks.push(v);
            }
            format!("ok {}", blocks.len())
        }
        "spawn" => {
            let n: usize = arg(2).parse().unwrap_or(0);
            let mut kids = Vec::new();
            let mut err = String::from("none");
            for _ in 0..n {
                match std::process::Command::new("/proc/self/exe").args(["sleep", "30"]).spawn() {
                    Ok(c) => kids.push(c),
                    Err(e) => {
                        err = errno(&e);
                        break;
                    }
                }
            }
            let started = kids.len();
            for mut k in kids {
                let _ = k.kill();
                let _ = k.wait();
            }
            format!("started {started} {err}")
        }
        "tick" => {
            let mut i: u64 = 0;
            loop {
                i += 1;
                let _ = fs::write(arg(2), i.to_string());
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(arg(2).parse().unwrap_or(1)));
            String::new()
        }
        "exit" => {
            let code = arg(2).parse().unwrap_or(0);
            let _ = std::io::stdout().flush();
            #[allow(clippy::exit)] // a test tool: the exit code is its output
            std::process::exit(code)
        }
        other => format!("unknown command {other:?}"),
    };
    println!("{out}");
}
