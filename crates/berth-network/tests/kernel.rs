//! berth-network against the real kernel: a bridge, a veth pair into a
//! network namespace of a process the test starts, a published port that
//! answers on 127.0.0.1 and on the bridge's address, and the table gone
//! after. Needs root and busybox (and nft); under CI it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_network::link::{self, Endpoint};
use berth_network::netlink::Netlink;
use berth_network::ports::Proto;
use berth_network::store::{default_address_pools, Config, DefaultBridge, PublishRequest, Store};
use berth_network::{netns, Error};

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["busybox", "nft", "unshare"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !(root && tools) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root, busybox, nft and unshare under CI");
        eprintln!("skipped: needs root, busybox, nft and unshare");
        return false;
    }
    true
}

fn rand_hex(n: usize) -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()[..n].to_owned()
}

/// What a test made, undone however it ends.
struct Cleanup {
    child: Option<Child>,
    dir: std::path::PathBuf,
    table: String,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = berth_network::nft::delete(&self.table);
        if let Ok(mut nl) = Netlink::open() {
            let _ = nl.delete_link_named(&self.bridge);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn get(addr: (Ipv4Addr, u16)) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn get_soon(addr: (Ipv4Addr, u16)) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match get(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() > until => panic!("GET {addr:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn a_namespace_on_a_bridge_serves_through_a_published_port() {
    if !usable() {
        return;
    }
    let tag = rand_hex(6);
    let dir = std::env::temp_dir().join(format!("berth-net-{tag}"));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the namespace\n").unwrap();
    let mut cleanup =
        Cleanup { child: None, dir: dir.clone(), table: format!("berth-test-{tag}"), bridge: format!("bt{tag}") };
    // A subnet of 10.64.0.0/10 from the tag, so parallel runs do not meet.
    let b = u8::from_str_radix(&tag[..2], 16).unwrap();
    let c = u8::from_str_radix(&tag[2..4], 16).unwrap();
    let gw = Ipv4Addr::new(10, 64 + (b & 63), c, 1);
    let store = Store::open(Config {
        dir: dir.join("network"),
        table: cleanup.table.clone(),
        default_bridge: DefaultBridge {
            name: cleanup.bridge.clone(),
            bip: (gw, 24),
            fixed_cidr: None,
            mtu: 1500,
            ..Default::default()
        },
        address_pools: default_address_pools(),
    })
    .unwrap();
    let child =
        Command::new("unshare").args(["-n", "busybox", "httpd", "-f", "-p", "80", "-h"]).arg(&www).spawn().unwrap();
    let pid = child.id() as i32;
    cleanup.child = Some(child);

    let net = store.for_mode("bridge").unwrap();
    let idx = store.bridge_index(&net).unwrap();
    let lease = store.allocate(&net.id, None).unwrap();
    assert_eq!(lease.gateway, gw);
    // unshare(1) may not have unshared yet.
    let until = Instant::now() + Duration::from_secs(5);
    let ns = loop {
        let ns = netns::of_pid(pid).unwrap();
        if !netns::is_current(&ns).unwrap() {
            break ns;
        }
        assert!(Instant::now() < until, "the child never left the host's namespace");
        std::thread::sleep(Duration::from_millis(5));
    };
    let veth = link::veth_name();
    let ep = Endpoint {
        veth: veth.clone(),
        ifname: "eth0".into(),
        bridge: idx,
        ip: lease.ip,
        prefix: lease.prefix,
        gateway: Some(lease.gateway),
        mtu: 1500,
        mac: link::mac_of(lease.ip),
        extra: vec![],
        sysctls: vec![],
        ip6: None,
        gateway6: None,
    };
    let inside = store
        .with_netlink(|nl| {
            link::plug(nl, &ns, std::slice::from_ref(&ep), || {
                let mut nl = Netlink::open()?;
                Ok((nl.links()?, nl.addrs()?, nl.routes()?))
            })
        })
        .unwrap()
        .unwrap();
    let (links, addrs, routes) = inside;
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lo", "eth0"], "{links:?}");
    assert!(links.iter().all(|l| l.up), "{links:?}");
    assert!(addrs.iter().any(|a| a.ip == lease.ip && a.prefix == 24), "{addrs:?}");
    assert!(routes.iter().any(|r| r.prefix == 0), "a default route: {routes:?}");

    // The container's address straight from the host, over the bridge.
    assert!(get_soon((lease.ip, 80)).contains("hello from the namespace"));

    // Published on an ephemeral port: on 127.0.0.1 and the bridge address.
    let req = PublishRequest { port: 80, proto: Proto::Tcp, host_ip: None, host_ports: None };
    let published = store.publish("c1", lease.ip, None, std::slice::from_ref(&req)).unwrap();
    let hp = published[0].host_port;
    assert!(hp > 0);
    assert!(get_soon((Ipv4Addr::LOCALHOST, hp)).contains("hello from the namespace"));
    assert!(get_soon((gw, hp)).contains("hello from the namespace"));

    // The same host port again: refused, and the first still answers.
    let again = PublishRequest { host_ports: Some((hp, hp)), ..req };
    match store.publish("c2", lease.ip, None, &[again]) {
        Err(Error::Conflict(m)) => assert!(m.contains("address already in use"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(get_soon((Ipv4Addr::LOCALHOST, hp)).contains("hello"));

    store.unpublish("c1").unwrap();
    assert!(get((Ipv4Addr::LOCALHOST, hp)).is_err(), "unpublished");
    store.delete_link(&veth).unwrap();
    store.release(&net.id, lease.ip);
    let mut nl = Netlink::open().unwrap();
    assert!(nl.link(&veth).unwrap().is_none());
    store.drop_table().unwrap();
    let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains(&cleanup.table));
}
