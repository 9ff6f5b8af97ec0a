//! Networking with real traffic: published ports, outbound NAT to a
//! namespace the test makes behind the host, user networks and their
//! isolation, the other modes, a daemon crash, and bad input. Every
//! address used is of a bridge or namespace the test (or its daemon)
//! made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_clean, can_run, curl_until, stderr, Daemon};

/// An httpd in the container serving "hello from <name>" on port 80.
const WEB: &str = "mkdir -p /w && echo hello from $HOSTNAME > /w/index.html && exec httpd -f -p 80 -h /w";

fn get(addr: &str) -> std::io::Result<String> {
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// GET until it answers (the httpd may still be starting), for 5 s.
fn get_soon(addr: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match get(addr) {
            Ok(s) if s.contains("200 OK") => return s,
            Ok(s) if Instant::now() > until => panic!("GET {addr}: {s}"),
            Err(e) if Instant::now() > until => panic!("GET {addr}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn host_port(d: &Daemon, c: &str, port: &str) -> String {
    let out = d.ok(&["port", c, port]);
    let line = out.lines().next().unwrap_or_else(|| panic!("no mapping for {port}: {out}"));
    line.rsplit(':').next().unwrap().trim().to_owned()
}

#[test]
fn published_ports_answer_on_loopback_the_bridge_and_from_containers() {
    if !can_run("published ports") {
        return;
    }
    let d = Daemon::start("net-publish");
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "web", "--hostname", "web", "-p", "127.0.0.1::80", "busybox", "sh", "-c", WEB]);
    let p = host_port(&d, "web", "80/tcp");
    assert!(get_soon(&format!("127.0.0.1:{p}")).contains("hello from web"));
    // Bound to 127.0.0.1 only: not on the bridge's address.
    assert!(get(&format!("{}:{p}", d.addr(1))).is_err());

    // -P: the image's and --expose's ports on free ports, which `port` reports.
    d.ok(&["run", "-d", "--name", "all", "--hostname", "all", "--expose", "80", "-P", "busybox", "sh", "-c", WEB]);
    let p2 = host_port(&d, "all", "80");
    assert_ne!(p2, "0");
    assert!(get_soon(&format!("127.0.0.1:{p2}")).contains("hello from all"));
    assert!(get_soon(&format!("{}:{p2}", d.addr(1))).contains("hello from all"));
    let ports = d.ok(&["ps", "--filter", "name=all", "--format", "{{.Ports}}"]);
    assert!(ports.contains(&format!("0.0.0.0:{p2}->80/tcp")), "{ports}");
    let inspect = d.ok(&["inspect", "all", "--format", "{{json .NetworkSettings.Ports}}"]);
    assert!(inspect.contains(&format!("\"HostPort\":\"{p2}\"")), "{inspect}");
    // The list's publish and expose filters go by container port.
    let names = |f: &str| {
        let mut n: Vec<String> =
            d.ok(&["ps", "--filter", f, "--format", "{{.Names}}"]).lines().map(str::to_owned).collect();
        n.sort();
        n.join(",")
    };
    assert_eq!(names("publish=80"), "all,web");
    assert_eq!(names("publish=70-90/tcp"), "all,web");
    assert_eq!(names("publish=80/udp"), "");
    assert_eq!(names("expose=80"), "all,web");
    assert_eq!(names("network=bridge"), "all,web");
    // Exposed-only ports are listed too, and both CLIs print the list the
    // same way, runs merged into ranges.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "--expose",
        "7000-7002",
        "--expose",
        "53/udp",
        "-p",
        "9000-9001:9000-9001",
        "busybox",
        "sleep",
        "300",
    ]);
    let theirs = d.ok(&["ps", "--filter", "name=ex", "--format", "{{.Ports}}"]);
    assert!(theirs.contains("7000-7002/tcp") && theirs.contains("53/udp"), "{theirs}");
    assert_eq!(d.bok(&["ps", "--filter", "name=ex", "--format", "{{.Ports}}"]), theirs);
    d.ok(&["rm", "-f", "ex"]);
    let o = d.docker(&["ps", "--filter", "publish=http"]);
    assert!(!o.status.success() && stderr(&o).contains("invalid filter 'publish=http'"), "{}", stderr(&o));

    // Hairpin: a container reaches a published port through the host's
    // address on its own bridge, its own included.
    let own = d.ok(&["exec", "all", "timeout", "3", "wget", "-qO-", &format!("http://{}:{p2}/", d.addr(1))]);
    assert!(own.contains("hello from all"), "{own}");
    let other =
        d.ok(&["run", "--rm", "busybox", "timeout", "3", "wget", "-qO-", &format!("http://{}:{p2}/", d.addr(1))]);
    assert!(other.contains("hello from all"), "{other}");

    // The port of a running container cannot be taken twice; nothing is left of the try.
    let o = d.docker(&["run", "--name", "twice", "-p", &format!("{p2}:80"), "busybox", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("address already in use"), "{}", stderr(&o));
    d.ok(&["rm", "twice"]);
    assert!(get_soon(&format!("127.0.0.1:{p2}")).contains("hello from all"));

    // Stopped: the port is gone; started again, it answers again.
    d.ok(&["stop", "-t", "0", "all"]);
    assert!(get(&format!("127.0.0.1:{p2}")).is_err());
    d.ok(&["rm", "-f", "web", "all"]);
    assert_clean(&d);
}

/// A namespace behind the host, `198.18.<x>.2/30` on a veth pair whose
/// host end is `.1`; no route back to the daemon's subnets, so only
/// masqueraded traffic can be answered.
struct Behind {
    ns: String,
    veth: String,
    server: std::process::Child,
    dir: std::path::PathBuf,
}

impl Behind {
    fn new(tag: u8) -> Behind {
        let ns = format!("bt-ext-{}-{tag}", std::process::id());
        let veth = format!("bx{}{tag}", std::process::id() % 10000);
        let dir = std::env::temp_dir().join(format!("berth-behind-{}-{tag}", std::process::id()));
        let cgi = dir.join("cgi-bin");
        std::fs::create_dir_all(&cgi).unwrap();
        std::fs::write(cgi.join("ip"), "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"$REMOTE_ADDR\"\n")
            .unwrap();
        Command::new("chmod").arg("+x").arg(cgi.join("ip")).status().unwrap();
        let sh = |cmd: String| {
            let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
            assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        };
        sh(format!("ip netns add {ns}"));
        sh(format!("ip link add {veth} type veth peer name eth0 netns {ns}"));
        sh(format!("ip addr add 198.18.{tag}.1/30 dev {veth} && ip link set {veth} up"));
        sh(format!(
            "ip netns exec {ns} sh -c 'ip addr add 198.18.{tag}.2/30 dev eth0 && ip link set eth0 up && ip link set lo up'"
        ));
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "7000", "-h"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Behind { ns, veth, server, dir }
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["link", "delete", &self.veth]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["netns", "delete", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn containers_reach_out_through_masquerade_and_internal_networks_do_not() {
    if !can_run("outbound NAT") {
        return;
    }
    let d = Daemon::start("net-out");
    d.load_busybox();
    let tag = d.subnet[2];
    let _behind = Behind::new(tag);
    let url = format!("http://198.18.{tag}.2:7000/cgi-bin/ip");
    let mut seen = String::new();
    for _ in 0..20 {
        let o = d.docker(&["run", "--rm", "busybox", "timeout", "2", "wget", "-qO-", &url]);
        seen = common::stdout(&o);
        if o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server saw the host's address on its link, not the container's.
    assert!(seen.contains(&format!("198.18.{tag}.1]")) || seen.trim() == format!("198.18.{tag}.1"), "{seen}");

    d.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &format!("10.{}.{}.0/24", d.subnet[1], d.subnet[2] ^ 0x80),
        "inner",
    ]);
    let o = d.docker(&["run", "--rm", "--network", "inner", "busybox", "timeout", "2", "wget", "-qO-", &url]);
    assert!(!o.status.success(), "an internal network has no way out");
    let routes = d.ok(&["run", "--rm", "--network", "inner", "busybox", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    d.ok(&["network", "rm", "inner"]);
    assert_clean(&d);
}

#[test]
fn user_networks_connect_their_containers_and_keep_others_apart() {
    if !can_run("user networks") {
        return;
    }
    let d = Daemon::start("net-user");
    d.load_busybox();
    let (b, c) = (d.subnet[1], d.subnet[2]);
    let n1 = format!("10.{b}.{}.0/24", c ^ 0x40);
    let n2 = format!("10.{b}.{}.0/24", c ^ 0x80);
    let ip1 = format!("10.{b}.{}.50", c ^ 0x40);
    d.ok(&["network", "create", "--subnet", &n1, "--label", "team=a", "one"]);
    d.ok(&["network", "create", "--subnet", &n2, "-o", "com.docker.network.bridge.name=btx-two", "two"]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["bridge bridge", "host host", "none null", "one bridge", "two bridge"] {
        assert!(ls.contains(want), "{ls}");
    }
    assert_eq!(d.ok(&["network", "ls", "-q", "--filter", "label=team=a"]).lines().count(), 1);
    assert!(Command::new("ip").args(["link", "show", "btx-two"]).output().unwrap().status.success());

    d.ok(&[
        "run",
        "-d",
        "--name",
        "ca",
        "--network",
        "one",
        "--ip",
        &ip1,
        "--network-alias",
        "alpha",
        "busybox",
        "sleep",
        "60",
    ]);
    let inspect = d.ok(&["network", "inspect", "one", "--format", "{{json .Containers}}"]);
    assert!(inspect.contains(&format!("{ip1}/24")), "{inspect}");
    assert!(d.ok(&["inspect", "ca", "--format", "{{json .NetworkSettings.Networks.one.Aliases}}"]).contains("alpha"));
    // Same network: reachable. The other network, or the default bridge: not.
    d.ok(&["run", "--rm", "--network", "one", "busybox", "ping", "-c", "1", "-W", "2", &ip1]);
    for net in ["two", "bridge"] {
        let o = d.docker(&["run", "--rm", "--network", net, "busybox", "ping", "-c", "1", "-W", "1", &ip1]);
        assert!(!o.status.success(), "{net} reached {ip1}");
    }
    // The address is taken while `a` runs.
    let o = d.docker(&["run", "--rm", "--network", "one", "--ip", &ip1, "busybox", "true"]);
    assert!(stderr(&o).contains("Address already in use"), "{}", stderr(&o));

    // connect adds eth1 live; disconnect takes it away.
    d.ok(&["network", "connect", "two", "ca"]);
    let addrs = d.ok(&["exec", "ca", "ip", "addr"]);
    assert!(addrs.contains(&format!("10.{b}.{}.", c ^ 0x80)) && addrs.contains("eth1"), "{addrs}");
    d.ok(&["network", "disconnect", "two", "ca"]);
    assert!(!d.ok(&["exec", "ca", "ip", "addr"]).contains("eth1"));

    // The other modes.
    let none = d.ok(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    assert_eq!(none.lines().count(), 1, "{none}");
    assert!(none.contains("lo:") && none.contains("UP"), "{none}");
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    let host = d.ok(&["run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(host.split_whitespace().count(), host_links, "{host}");
    let joined = d.ok(&["run", "--rm", "--network", "container:ca", "busybox", "ip", "addr"]);
    assert!(joined.contains(&ip1), "{joined}");
    // As Docker: the joiner takes the other's hostname and /etc/hosts.
    let joined = d.ok(&["run", "--rm", "--network", "container:ca", "busybox", "sh", "-c", "hostname; cat /etc/hosts"]);
    let ca_host = d.ok(&["exec", "ca", "hostname"]);
    assert!(joined.starts_with(&ca_host) && joined.contains(&format!("{ip1}\t{}", ca_host.trim())), "{joined}");
    // Its /etc files are the other's, as inspect says (moby's paths too).
    let paths = "{{.HostnamePath}} {{.HostsPath}} {{.ResolvConfPath}}";
    let joiner = d.ok(&["create", "--network", "container:ca", "busybox", "true"]);
    assert_eq!(d.ok(&["inspect", "-f", paths, joiner.trim()]), d.ok(&["inspect", "-f", paths, "ca"]));
    d.ok(&["rm", joiner.trim()]);
    let o = d.docker(&["run", "--rm", "--network", "container:ca", "-p", "80", "busybox", "true"]);
    assert!(stderr(&o).contains("conflicting options"), "{}", stderr(&o));

    // In use: refused; unused: removed by rm and by prune.
    let o = d.docker(&["network", "rm", "one"]);
    assert!(stderr(&o).contains("has active endpoints"), "{}", stderr(&o));
    let o = d.docker(&["network", "rm", "bridge"]);
    assert!(stderr(&o).contains("pre-defined network"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "ca"]);
    d.ok(&["network", "rm", "one"]);
    let pruned = d.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("two"), "{pruned}");
    assert!(!Command::new("ip").args(["link", "show", "btx-two"]).output().unwrap().status.success());

    // A bridge that was there before its network is used, and left in place.
    let pre = format!("bp{}", std::process::id() % 100_000);
    let link = |args: &[&str]| Command::new("ip").args(["link"]).args(args).status().unwrap().success();
    assert!(link(&["add", &pre, "type", "bridge"]));
    let made = d.docker(&["network", "create", "-o", &format!("com.docker.network.bridge.name={pre}"), "pre"]);
    let removed = d.docker(&["network", "rm", "pre"]);
    let still_there = link(&["show", &pre]);
    link(&["delete", &pre]);
    assert!(made.status.success() && removed.status.success(), "{}{}", stderr(&made), stderr(&removed));
    assert!(still_there, "the network's removal deleted {pre}, which it did not make");
    assert_clean(&d);
}

#[test]
fn bad_network_input_is_refused_with_nothing_made() {
    if !can_run("bad network input") {
        return;
    }
    let d = Daemon::start("net-bad");
    d.load_busybox();
    let own = format!("10.{}.{}.0/25", d.subnet[1], d.subnet[2]);
    let refused = |args: &[&str], want: &str| {
        let o = d.docker(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    };
    refused(&["network", "create", "--subnet", &own, "overlap"], "overlaps");
    refused(&["network", "create", "--subnet", "10.1.2.0/33", "cidr"], "invalid CIDR");
    refused(&["network", "create", "--subnet", "10.1.2.3/24", "hostbits"], "it should be 10.1.2.0/24");
    refused(&["network", "create", "--driver", "overlayx", "drv"], "not found");
    refused(&["network", "create", "bad/name"], "invalid network name");
    refused(&["run", "--rm", "--network", "nosuch", "busybox", "true"], "network nosuch not found");
    refused(&["run", "--rm", "--ip", "10.9.9.9", "busybox", "true"], "user defined networks");
    refused(&["run", "--rm", "-p", "99999:80", "busybox", "true"], "invalid");
    refused(&["network", "rm", "nosuch"], "not found");
    let ls = d.ok(&["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 3, "only the predefined networks: {ls}");
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "no container was left");
    assert_eq!(d.bridges(), std::slice::from_ref(&d.bridge));
    assert_clean(&d);
}

#[test]
fn published_ports_and_addresses_survive_a_daemon_crash() {
    if !can_run("network restore") {
        return;
    }
    let mut d = Daemon::start("net-crash");
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "web", "--hostname", "web", "-p", "80", "busybox", "sh", "-c", WEB]);
    let p = host_port(&d, "web", "80/tcp");
    assert!(get_soon(&format!("127.0.0.1:{p}")).contains("hello from web"));
    let ip = d.ok(&["inspect", "web", "--format", "{{.NetworkSettings.IPAddress}}"]).trim().to_owned();
    d.crash();
    d.spawn();
    assert!(get_soon(&format!("127.0.0.1:{p}")).contains("hello from web"));
    assert_eq!(host_port(&d, "web", "80/tcp"), p);
    // Not handed out twice: a new container gets another address and
    // cannot take the port.
    let other = d.ok(&["run", "--rm", "busybox", "ip", "addr"]);
    assert!(!other.contains(&format!("{ip}/")), "{ip} given again: {other}");
    let o = d.docker(&["run", "--rm", "-p", &format!("{p}:80"), "busybox", "true"]);
    assert!(stderr(&o).contains("address already in use"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "web"]);
    assert!(get(&format!("127.0.0.1:{p}")).is_err());
    assert_clean(&d);
}

/// A resolver on a loopback address of its own (`127.53.<pid>.<tag>:53`)
/// that knows one name, `upstream.test` (192.0.2.55), and says NXDOMAIN
/// to everything else: where the embedded resolver forwards to in tests.
struct Upstream {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(tag: u8) -> Upstream {
        use berth_network::dns;
        let addr = format!("127.53.{}.{tag}", std::process::id() % 250);
        let sock = std::net::UdpSocket::bind(format!("{addr}:53")).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
                let Ok(q) = dns::parse(&buf[..n]) else { continue };
                let a = match (q.name.as_str(), q.qtype) {
                    ("upstream.test", dns::TYPE_A) => dns::Answer::A(vec![std::net::Ipv4Addr::new(192, 0, 2, 55)]),
                    ("upstream.test", _) => dns::Answer::NoData,
                    _ => dns::Answer::Error(dns::NXDOMAIN),
                };
                let _ = sock.send_to(&dns::reply(&q, &a), peer);
            }
        });
        Upstream { addr, stop, thread: Some(thread) }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `nslookup <name>` in a new container on `net`; its output.
fn lookup(d: &Daemon, net: &str, dns: &str, name: &str) -> String {
    let o = d.docker(&["run", "--rm", "--network", net, "--dns", dns, "busybox", "nslookup", name]);
    format!("{}{}", common::stdout(&o), stderr(&o))
}

/// A DNS query for `name`'s A record over TCP (two-byte length first),
/// as octal escapes for busybox's printf.
fn tcp_query(name: &str) -> String {
    let mut m: Vec<u8> = vec![0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&m);
    framed.iter().map(|b| format!("\\{b:03o}")).collect()
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name_and_alias() {
    if !can_run("embedded DNS") {
        return;
    }
    let mut d = Daemon::start("net-dns");
    d.load_busybox();
    let up = Upstream::start(1);
    // Outside every test daemon's default subnet (10.64–127.x.0/24).
    let (b, c) = (d.subnet[1] + 64, d.subnet[2]);
    d.ok(&["network", "create", "--subnet", &format!("10.{b}.{c}.0/24"), "dns-one"]);
    d.ok(&["network", "create", "--subnet", &format!("10.{b}.{}.0/24", c ^ 0x80), "dns-two"]);
    let ca = d.ok(&[
        "run",
        "-d",
        "--name",
        "ca",
        "--network",
        "dns-one",
        "--network-alias",
        "web",
        "busybox",
        "sleep",
        "120",
    ]);
    d.ok(&["run", "-d", "--name", "cb", "--network", "dns-two", "--dns", &up.addr, "busybox", "sleep", "120"]);
    let ip_a = d.ok(&["inspect", "ca", "--format", "{{(index .NetworkSettings.Networks \"dns-one\").IPAddress}}"]);
    let ip_a = ip_a.trim().to_owned();
    assert!(ip_a.starts_with(&format!("10.{b}.{c}.")), "{ip_a}");

    // By name, alias, short id and name.network; and the reverse.
    for name in ["ca", "web", "WEB", &ca.trim()[..12], "ca.dns-one"] {
        let out = lookup(&d, "dns-one", &up.addr, name);
        assert!(out.contains(&format!("Address: {ip_a}")), "{name}: {out}");
    }
    let rev = lookup(&d, "dns-one", &up.addr, &ip_a);
    assert!(rev.contains("name = ca.dns-one"), "{rev}");
    // Other names go to --dns, from the host: its answer, and its NXDOMAIN.
    let out = lookup(&d, "dns-one", &up.addr, "upstream.test");
    assert!(out.contains("Address: 192.0.2.55"), "{out}");
    // Another network's container is not known here.
    let out = lookup(&d, "dns-one", &up.addr, "cb");
    assert!(out.contains("NXDOMAIN"), "{out}");
    let out = d.docker(&["exec", "cb", "nslookup", "ca"]);
    assert!(common::stdout(&out).contains("NXDOMAIN") || stderr(&out).contains("NXDOMAIN"), "{out:?}");
    // Over TCP too.
    let tcp = d.ok(&[
        "run",
        "--rm",
        "--network",
        "dns-one",
        "busybox",
        "sh",
        "-c",
        &format!("printf '{}' | timeout 3 nc 127.0.0.11 53 | od -An -tu1", tcp_query("web")),
    ]);
    let octets: String = ip_a.split('.').collect::<Vec<_>>().join(" ");
    let words: Vec<&str> = tcp.split_whitespace().collect();
    assert!(words.join(" ").ends_with(&octets), "{tcp}");

    // resolv.conf: the resolver, and what was asked of it.
    let conf = d.ok(&[
        "run",
        "--rm",
        "--network",
        "dns-one",
        "--dns",
        &up.addr,
        "--dns-search",
        "example.test",
        "--dns-option",
        "attempts:2",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(conf.starts_with("nameserver 127.0.0.11\n"), "{conf}");
    assert!(conf.contains("search example.test\n") && conf.contains("options attempts:2 ndots:0\n"), "{conf}");
    // The default bridge has no resolver: --dns as given, and /etc/hosts
    // with --hostname, --domainname and --add-host.
    let out = d.ok(&[
        "run",
        "--rm",
        "--dns",
        &up.addr,
        "--hostname",
        "h1",
        "--domainname",
        "example.test",
        "--add-host",
        "db:192.0.2.7",
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
    ]);
    assert!(out.contains(&format!("nameserver {}\n", up.addr)) && !out.contains("127.0.0.11"), "{out}");
    assert!(out.contains("192.0.2.7\tdb\n") && out.contains("h1.example.test h1\n"), "{out}");

    // Connected live: known on the new network at once, both ways.
    d.ok(&["network", "connect", "--alias", "second", "dns-one", "cb"]);
    let out = lookup(&d, "dns-one", &up.addr, "second");
    assert!(out.contains(&format!("Address: 10.{b}.{c}.")), "{out}");
    let out = d.ok(&["exec", "cb", "nslookup", "web"]);
    assert!(out.contains(&format!("Address: {ip_a}")), "{out}");

    // After a daemon crash, the resolver is served again.
    d.crash();
    d.spawn();
    let out = d.ok(&["exec", "ca", "nslookup", "cb"]);
    assert!(out.contains(&format!("Address: 10.{b}.{c}.")), "{out}");
    // Stopped: no longer known.
    d.ok(&["stop", "-t", "0", "cb"]);
    let out = d.docker(&["exec", "ca", "nslookup", "second"]);
    assert!(!common::stdout(&out).contains(&format!("Address: 10.{b}.{c}.")), "{out:?}");
    d.ok(&["rm", "-f", "ca", "cb"]);
    d.ok(&["network", "rm", "dns-one", "dns-two"]);
    drop(up);
    assert_clean(&d);
}

#[test]
fn berth_cli_manages_networks() {
    if !can_run("berth network") {
        return;
    }
    let d = Daemon::start("net-cli");
    d.load_busybox();
    let (b, c) = (d.subnet[1] + 64, d.subnet[2] ^ 0x40);
    let subnet = format!("10.{b}.{c}.0/24");
    let gw = format!("10.{b}.{c}.254");
    let id = d.bok(&["network", "create", "--subnet", &subnet, "--gateway", &gw, "--label", "k=v", "clinet"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = d.bok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    assert!(ls.lines().any(|l| l.starts_with(&id[..12]) && l.contains("clinet") && l.contains("bridge")), "{ls}");
    assert_eq!(d.bok(&["network", "ls", "-q", "--filter", "label=k=v"]).trim(), &id[..12]);
    let gateway = d.bok(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "clinet"]);
    assert_eq!(gateway.trim(), gw);
    // `inspect` finds networks too.
    assert_eq!(d.bok(&["inspect", "-f", "{{.Name}}", "clinet"]).trim(), "clinet");

    d.bok(&["run", "-d", "--name", "cli-a", "busybox", "sleep", "60"]);
    let ip = format!("10.{b}.{c}.9");
    d.bok(&["network", "connect", "--ip", &ip, "--alias", "al", "clinet", "cli-a"]);
    let addrs = d.bok(&["exec", "cli-a", "ip", "addr"]);
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    let aliases = d.bok(&["inspect", "-f", "{{json .NetworkSettings.Networks.clinet.Aliases}}", "cli-a"]);
    assert!(aliases.contains("al"), "{aliases}");
    let o = d.berth(&["network", "rm", "clinet"]);
    assert!(!o.status.success() && stderr(&o).contains("active endpoints"), "{}", stderr(&o));
    d.bok(&["network", "disconnect", "clinet", "cli-a"]);
    assert!(!d.bok(&["exec", "cli-a", "ip", "addr"]).contains(&ip));
    d.bok(&["rm", "-f", "cli-a"]);
    assert_eq!(d.bok(&["network", "rm", "clinet"]).trim(), "clinet");
    d.bok(&["network", "create", "--subnet", &subnet, "spare"]);
    let pruned = d.bok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nspare\n");
    assert_clean(&d);
}

#[test]
fn ipam_pools_take_nulls_and_auxiliary_addresses_and_names_take_spaces() {
    if !can_run("ipam details") {
        return;
    }
    let d = Daemon::start("ipamaux");
    d.load_busybox();
    let base = format!("{}.{}.{}", d.subnet[0], d.subnet[1] ^ 0x20, d.subnet[2]);
    let body = format!(
        r#"{{"Name":"aux net","IPAM":{{"Driver":"default","Config":[{{"Subnet":"{base}.0/24","IPRange":null,"Gateway":null,"AuxiliaryAddresses":{{"router":"{base}.2"}}}}],"Options":null}}}}"#
    );
    let (s, b) = d.http("POST", "/networks/create", body.as_bytes());
    assert_eq!(s, 201, "{b}");
    let ipam = d.ok(&["network", "inspect", "-f", "{{json .IPAM}}", "aux net"]);
    let ipam: serde_json::Value = serde_json::from_str(&ipam).unwrap();
    assert_eq!(ipam["Options"], serde_json::Value::Null, "{ipam}");
    assert_eq!(ipam["Config"][0]["AuxiliaryAddresses"]["router"], format!("{base}.2"), "{ipam}");
    assert_eq!(ipam["Config"][0]["Gateway"], format!("{base}.1"), "{ipam}");
    // Containers never get the auxiliary address.
    let mut ips = vec![];
    for i in 0..2 {
        let name = format!("c{i}");
        d.ok(&["run", "-d", "--name", &name, "--network", "aux net", "busybox", "sleep", "1000"]);
        ips.push(
            d.ok(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"aux net\").IPAddress}}", &name])
                .trim()
                .to_owned(),
        );
    }
    assert!(!ips.contains(&format!("{base}.2")), "{ips:?}");
    let o = d.docker(&["run", "--rm", "--network", "aux net", "--ip", &format!("{base}.2"), "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("Address already in use"), "{}", stderr(&o));
    // The CLI's --aux-address too.
    let base2 = format!("{}.{}.{}", d.subnet[0], d.subnet[1] ^ 0x10, d.subnet[2]);
    d.bok(&[
        "network",
        "create",
        "--subnet",
        &format!("{base2}.0/24"),
        "--aux-address",
        &format!("dns={base2}.3"),
        "cli-aux",
    ]);
    let aux = d.ok(&["network", "inspect", "-f", "{{json (index .IPAM.Config 0).AuxiliaryAddresses}}", "cli-aux"]);
    assert_eq!(aux.trim(), format!(r#"{{"dns":"{base2}.3"}}"#));
    // Refused by name: an IPv6 subnet without EnableIPv6, IPv6-only
    // networks, other IPAM drivers, swarm's kinds.
    for (body, msg) in [
        (r#"{"Name":"v6s","IPAM":{"Config":[{"Subnet":"fd00:1::/64"}]}}"#, "given, but EnableIPv6 is not"),
        (r#"{"Name":"v6o","EnableIPv4":false}"#, "EnableIPv4 false"),
        (r#"{"Name":"ip","IPAM":{"Driver":"infoblox"}}"#, "IPAM driver \"infoblox\""),
        (r#"{"Name":"ing","Ingress":true}"#, "Ingress"),
        (r#"{"Name":"   "}"#, "invalid network name"),
    ] {
        let (s, b) = d.http("POST", "/networks/create", body.as_bytes());
        assert_eq!(s, 400, "{body}: {b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert!(v["message"].as_str().unwrap().contains(msg), "{body}: {b}");
    }
    d.ok(&["rm", "-f", "c0", "c1"]);
    d.ok(&["network", "rm", "aux net", "cli-aux"]);
    assert_clean(&d);
}

#[test]
fn ipv6_networks_carry_containers_names_and_published_ports_over_v6() {
    if !can_run("ipv6 networks") {
        return;
    }
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "ipv6 networks: the kernel has no IPv6");
        return;
    }
    let d = Daemon::start("ipv6");
    d.load_busybox();
    let sub4 = format!("{}.{}.{}.0/24", d.subnet[0], d.subnet[1] ^ 0x08, d.subnet[2]);
    // Written as the daemon writes it back: no leading zeros in a group.
    let group = (u16::from(d.subnet[2]) << 8) | u16::from(d.subnet[1] ^ d.subnet[2]);
    let prefix = format!("fd{:02x}:{group:x}:6", d.subnet[1]);
    let sub6 = format!("{prefix}::/64");
    d.ok(&["network", "create", "--ipv6", "--subnet", &sub4, "--subnet", &sub6, "net6"]);
    let shown = d.ok(&["network", "inspect", "-f", "{{.EnableIPv6}} {{json .IPAM.Config}}", "net6"]);
    assert!(
        shown.starts_with("true ") && shown.contains(&format!(r#""Subnet":"{sub6}","Gateway":"{prefix}::1""#)),
        "{shown}"
    );
    for n in ["aa", "bb"] {
        d.ok(&["run", "-d", "--name", n, "--network", "net6", "busybox", "sleep", "1000"]);
    }
    d.ok(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "net6",
        "--ip6",
        &format!("{prefix}::99"),
        "busybox",
        "sleep",
        "1000",
    ]);
    let v6 = |n: &str| {
        d.ok(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"net6\").GlobalIPv6Address}}", n])
            .trim()
            .to_owned()
    };
    let (a6, fixed6) = (v6("aa"), v6("fixed"));
    assert!(a6.starts_with(&format!("{prefix}::")), "{a6}");
    assert_eq!(fixed6, format!("{prefix}::99"));
    let gw = d.ok(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"net6\").IPv6Gateway}}", "aa"]);
    assert_eq!(gw.trim(), format!("{prefix}::1"));
    // Over IPv6, by address and by name.
    let ping = d.ok(&["exec", "bb", "ping", "-6", "-c", "1", "-W", "3", &a6]);
    assert!(ping.contains("1 packets received"), "{ping}");
    let aaaa = d.ok(&["exec", "bb", "nslookup", "-type=AAAA", "fixed"]);
    assert!(aaaa.contains(&fixed6), "{aaaa}");
    let route = d.ok(&["exec", "aa", "ip", "-6", "route", "show", "default"]);
    assert!(route.contains(&format!("via {prefix}::1")), "{route}");
    assert!(d.ok(&["exec", "aa", "cat", "/etc/hosts"]).contains(&a6));
    let members = d.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.IPv6Address}} {{end}}", "net6"]);
    assert!(members.contains(&format!("{fixed6}/64")), "{members}");
    // A port published on all addresses answers on the host's IPv6 ones.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "net6",
        "-p",
        "80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let port = d.ok(&["port", "web", "80/tcp"]);
    let host_port = port.lines().next().and_then(|l| l.rsplit(':').next()).unwrap().trim().to_owned();
    let url = format!("http://[{prefix}::1]:{host_port}/hostname");
    curl_until(&url);
    // Outbound IPv6 is masqueraded, as IPv4 is.
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip6", &format!("berth-{}", d.bridge)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("ip6 saddr {sub6}")), "{table}");
    // An address outside the subnet, or on a network without IPv6, is refused.
    let o = d.docker(&["run", "--rm", "--network", "net6", "--ip6", "fd99::5", "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("does not belong"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "aa", "bb", "fixed", "web"]);
    d.ok(&["network", "rm", "net6"]);
    assert_clean(&d);
}

#[test]
fn the_default_bridge_has_ipv6_with_the_daemon_s_ipv6_flags() {
    if !can_run("ipv6 default bridge") {
        return;
    }
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "ipv6 default bridge: the kernel has no IPv6");
        return;
    }
    let n = std::process::id();
    let cidr = format!("fd42:{:x}:{:x}:1::/64", (n & 0xffff) | 1, ((n >> 16) & 0xffff) | 1);
    let d = Daemon::start_with("ipv6def", &["--ipv6", "--fixed-cidr-v6", &cidr]);
    d.load_busybox();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_owned();
    let ip6 = d.ok(&["inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", &id]).trim().to_owned();
    let prefix = cidr.trim_end_matches("::/64");
    assert!(ip6.starts_with(&format!("{prefix}::")), "{ip6} not in {cidr}");
    let addrs = d.ok(&["exec", &id, "ip", "-6", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip6}/64")), "{addrs}");
    let ping = d.ok(&["exec", &id, "ping", "-6", "-c", "1", "-W", "3", &format!("{prefix}::1")]);
    assert!(ping.contains("1 packets received"), "{ping}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args(["--fixed-cidr-v6", "fd00::/64", "--config-file", "/nonexistent/daemon.json"])
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("--fixed-cidr-v6 needs --ipv6"), "{}", stderr(&o));
    d.ok(&["rm", "-f", &id]);
    assert_clean(&d);
}

#[test]
fn published_ports_answer_on_the_ipv6_loopback() {
    if !can_run("[::1] published ports") {
        return;
    }
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "[::1] published ports: no IPv6 loopback");
        return;
    }
    let d = Daemon::start("v6lo");
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "web", "-p", "80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let port = |spec: &str| {
        let p = d.ok(&["port", "web", spec]);
        p.lines().next().and_then(|l| l.rsplit(':').next()).unwrap().trim().parse::<u16>().unwrap()
    };
    let tcp = port("80/tcp");
    // Docker lists a port published on all addresses once per family.
    let both = d.ok(&["port", "web", "80/tcp"]);
    assert!(both.contains(&format!("0.0.0.0:{tcp}")) && both.contains(&format!("[::]:{tcp}")), "{both}");
    let listed = d.ok(&["ps", "--filter", "name=web", "--format", "{{.Ports}}"]);
    assert!(listed.contains(&format!("[::]:{tcp}->80/tcp")), "{listed}");
    let ours = d.bok(&["ps", "--filter", "name=web", "--format", "{{.Ports}}"]);
    assert_eq!(ours.trim(), format!("0.0.0.0:{tcp}->80/tcp, [::]:{tcp}->80/tcp"));
    let url = format!("http://[::1]:{tcp}/hostname");
    curl_until(&url);
    // A port published on an IPv6 address answers there alone; one with
    // no host port gets a free one.
    d.ok(&["run", "-d", "--name", "v6only", "-p", "[::1]::80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let shown = d.ok(&["port", "v6only", "80/tcp"]);
    let v6port: u16 = shown.trim().strip_prefix("[::1]:").unwrap_or_else(|| panic!("{shown}")).parse().unwrap();
    assert!(v6port > 0);
    curl_until(&format!("http://[::1]:{v6port}/hostname"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", v6port)).is_err(), "an IPv6 port answered on IPv4");
    let o = d.docker(&["run", "--rm", "-p", "[::1]:40000-40010:80", "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("range of host ports"), "{}", stderr(&o));
    // Gone with the container.
    d.ok(&["rm", "-f", "web", "v6only"]);
    assert!(std::net::TcpStream::connect(("::1", tcp)).is_err(), "[::1]:{tcp} still answers");
    assert!(std::net::TcpStream::connect(("::1", v6port)).is_err(), "[::1]:{v6port} still answers");
    assert_clean(&d);
}
