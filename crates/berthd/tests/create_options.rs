//! Create options Docker's API has that berth honours or refuses by name:
//! MAC addresses, link-local addresses and endpoint driver options, links
//! (legacy ones on the default bridge, and an endpoint's on a user
//! network), annotations, masked and read-only paths, kernel TCP memory,
//! NetworkDisabled, StorageOpt and the Windows-only fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn created(d: &Daemon, body: &str) -> String {
    let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
    assert_eq!(s, 201, "{body}: {b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    v["Id"].as_str().unwrap().to_owned()
}

fn refused(d: &Daemon, body: &str, msg: &str) {
    let (s, b) = d.http("POST", "/containers/create", body.as_bytes());
    assert_eq!(s, 400, "{body}: {b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert!(v["message"].as_str().unwrap().contains(msg), "{body}: {b}");
}

#[test]
fn endpoints_have_the_mac_addresses_and_options_asked_for() {
    if !can_run("endpoint options") {
        return;
    }
    let d = Daemon::start("endpoints");
    d.load_busybox();
    let net = format!("e{}", std::process::id());
    let subnet = format!("{}.{}.{}.0/24", d.subnet[0], d.subnet[1] ^ 0x80, d.subnet[2]);
    d.ok(&["network", "create", "--subnet", &subnet, &net]);
    // The container-wide MAC address, on the default bridge.
    let id = d.ok(&["run", "-d", "--mac-address", "92:d0:c6:0a:29:33", "busybox", "sleep", "1000"]).trim().to_owned();
    let link = d.ok(&["exec", &id, "ip", "link", "show", "eth0"]);
    assert!(link.contains("link/ether 92:d0:c6:0a:29:33"), "{link}");
    let mac = d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.bridge.MacAddress}}", &id]);
    assert_eq!(mac.trim(), "92:d0:c6:0a:29:33");
    // An endpoint's MAC, link-local address, interface name and sysctls.
    let body = format!(
        r#"{{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{{"NetworkMode":"{net}"}},
        "NetworkingConfig":{{"EndpointsConfig":{{"{net}":{{"MacAddress":"02:aa:bb:cc:dd:01",
        "IPAMConfig":{{"LinkLocalIPs":["169.254.10.20"]}},
        "DriverOpts":{{"com.docker.network.endpoint.ifname":"web0",
                       "com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.forwarding=1"}}}}}}}}}}"#
    );
    let ep = created(&d, &body);
    d.ok(&["start", &ep]);
    let addr = d.ok(&["exec", &ep, "ip", "addr", "show", "web0"]);
    assert!(addr.contains("link/ether 02:aa:bb:cc:dd:01"), "{addr}");
    assert!(addr.contains("inet 169.254.10.20/16"), "{addr}");
    assert_eq!(d.ok(&["exec", &ep, "cat", "/proc/sys/net/ipv4/conf/web0/forwarding"]).trim(), "1");
    let shown = d.ok(&["inspect", "-f", &format!("{{{{json (index .NetworkSettings.Networks \"{net}\")}}}}"), &ep]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["MacAddress"], "02:aa:bb:cc:dd:01", "{shown}");
    assert_eq!(shown["IPAMConfig"]["LinkLocalIPs"], serde_json::json!(["169.254.10.20"]), "{shown}");
    assert_eq!(shown["DriverOpts"]["com.docker.network.endpoint.ifname"], "web0", "{shown}");
    // What cannot be had is refused.
    let ep_body = |ep: &str| {
        format!(
            r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"NetworkMode":"{net}"}},"NetworkingConfig":{{"EndpointsConfig":{{"{net}":{ep}}}}}}}"#
        )
    };
    refused(&d, &ep_body(r#"{"MacAddress":"02:aa:bb"}"#), "invalid MAC address 02:aa:bb");
    refused(&d, &ep_body(r#"{"DriverOpts":{"com.example.x":"1"}}"#), "no endpoint option \"com.example.x\"");
    refused(
        &d,
        &ep_body(r#"{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.ip_forward=1"}}"#),
        "is not allowed",
    );
    refused(&d, &ep_body(r#"{"IPAMConfig":{"LinkLocalIPs":["nonsense"]}}"#), "invalid link-local IP address");
    refused(&d, &ep_body(r#"{"IPAMConfig":{"IPv6Address":"fd00::5"}}"#), "has no IPv6");
    refused(
        &d,
        r#"{"Image":"busybox","MacAddress":"02:00:00:00:00:01","HostConfig":{"NetworkMode":"host"}}"#,
        "conflicting options: mac-address and the network mode",
    );
    refused(
        &d,
        &format!(
            r#"{{"Image":"busybox","MacAddress":"02:00:00:00:00:01","HostConfig":{{"NetworkMode":"{net}"}},"NetworkingConfig":{{"EndpointsConfig":{{"{net}":{{"MacAddress":"02:00:00:00:00:02"}}}}}}}}"#
        ),
        "must match the endpoint-specific MAC address",
    );
    // NetworkDisabled leaves loopback alone.
    let nd = created(&d, r#"{"Image":"busybox","Cmd":["sleep","1000"],"NetworkDisabled":true}"#);
    d.ok(&["start", &nd]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &nd]).trim(), "none");
    let links = d.ok(&["exec", &nd, "ls", "/sys/class/net"]);
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo"], "{links}");
    d.ok(&["rm", "-f", &id, &ep, &nd]);
    d.ok(&["network", "rm", &net]);
    assert_clean(&d);
}

#[test]
fn links_name_containers_in_hosts_env_and_dns() {
    if !can_run("links") {
        return;
    }
    let d = Daemon::start("links");
    d.load_busybox();
    let db = d
        .ok(&["run", "-d", "--name", "db", "--expose", "5432", "-e", "SECRET=s3", "busybox", "sleep", "1000"])
        .trim()
        .to_owned();
    let db_ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]).trim().to_owned();
    d.ok(&["run", "-d", "--name", "web", "--link", "db:database", "busybox", "sleep", "1000"]);
    let hosts = d.ok(&["exec", "web", "cat", "/etc/hosts"]);
    let line = format!("{db_ip}\tdatabase {} db", &db[..12]);
    assert!(hosts.lines().any(|l| l == line), "no {line:?} in {hosts}");
    let env = d.ok(&["exec", "web", "env"]);
    for want in [
        format!("DATABASE_PORT=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP_ADDR={db_ip}"),
        "DATABASE_NAME=/web/database".to_owned(),
        "DATABASE_ENV_SECRET=s3".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == want), "no {want} in {env}");
    }
    let ping = d.ok(&["exec", "web", "ping", "-c", "1", "-W", "2", "database"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    assert_eq!(d.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"]).trim(), r#"["/db:/web/database"]"#);
    // rm --link takes the link away from the parent.
    d.ok(&["rm", "--link", "/web/database"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"]).trim(), "null");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "db"]).trim(), "running", "the linked container stays");
    let o = d.docker(&["rm", "--link", "/web/nothing"]);
    assert!(!o.status.success(), "{o:?}");
    // A link to what does not run fails the start; to nothing, the create.
    d.ok(&["stop", "-t", "0", "db"]);
    let o = d.docker(&["run", "-d", "--link", "db:x", "busybox", "true"]);
    assert!(stderr(&o).contains("Cannot link to a non running container: /db AS /"), "{}", stderr(&o));
    let o = d.docker(&["create", "--link", "ghost:x", "busybox", "true"]);
    assert!(stderr(&o).contains("could not get container for ghost"), "{}", stderr(&o));
    let o = d.docker(&["create", "--network", "host", "--link", "db:x", "busybox", "true"]);
    assert!(stderr(&o).contains("host type networking can't be used with links"), "{}", stderr(&o));
    // On a user network the link is the endpoint's: the alias resolves
    // for the linking container alone.
    d.ok(&["start", "db"]);
    let net = format!("l{}", std::process::id());
    let subnet = format!("{}.{}.{}.0/24", d.subnet[0], d.subnet[1] ^ 0x40, d.subnet[2]);
    d.ok(&["network", "create", "--subnet", &subnet, &net]);
    d.ok(&["run", "-d", "--name", "api", "--network", &net, "busybox", "sleep", "1000"]);
    d.ok(&["run", "-d", "--name", "front", "--network", &net, "--link", "api:backend", "busybox", "sleep", "1000"]);
    d.ok(&["run", "-d", "--name", "other", "--network", &net, "busybox", "sleep", "1000"]);
    let api_ip = d
        .ok(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"), "api"])
        .trim()
        .to_owned();
    let found = d.ok(&["exec", "front", "nslookup", "backend"]);
    assert!(found.contains(&api_ip), "{found}");
    let o = d.docker(&["exec", "other", "nslookup", "backend"]);
    assert!(!stdout(&o).contains(&api_ip), "another container resolved the alias: {}", stdout(&o));
    let eplinks =
        d.ok(&["inspect", "-f", &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Links}}}}"), "front"]);
    assert_eq!(eplinks.trim(), r#"["api:backend"]"#);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "front"]).trim(), r#"["/api:/front/backend"]"#);
    d.ok(&["rm", "-f", "db", "web", "api", "front", "other"]);
    d.ok(&["network", "rm", &net]);
    assert_clean(&d);
}

#[test]
fn annotations_paths_kernel_tcp_and_refusals() {
    if !can_run("annotations and paths") {
        return;
    }
    let d = Daemon::start("createopts");
    d.load_busybox();
    let body = r#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none",
        "Annotations":{"org.example.team":"blue"},"MaskedPaths":["/proc/cpuinfo"],"ReadonlyPaths":["/tmp"]}}"#;
    let id = created(&d, body);
    d.ok(&["start", &id]);
    // The bundle carries the annotations; the paths are masked or read-only.
    let cfg = std::fs::read_to_string(d.dir.join("run").join(&id).join("config.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["annotations"]["org.example.team"], "blue");
    assert_eq!(d.ok(&["exec", &id, "cat", "/proc/cpuinfo"]), "");
    let o = d.docker(&["exec", &id, "touch", "/tmp/x"]);
    assert!(stderr(&o).contains("Read-only file system"), "{o:?}");
    let shown = d.ok(&["inspect", "-f", "{{json .HostConfig.Annotations}} {{json .HostConfig.MaskedPaths}}", &id]);
    assert_eq!(shown.trim(), r#"{"org.example.team":"blue"} ["/proc/cpuinfo"]"#);
    // OnBuild is kept with the container and goes into a commit's image.
    let ob = created(&d, r#"{"Image":"busybox","Cmd":["true"],"OnBuild":["RUN echo later"]}"#);
    d.ok(&["commit", &ob, "onbuild:1"]);
    let kept = d.ok(&["image", "inspect", "-f", "{{json .Config.OnBuild}}", "onbuild:1"]);
    assert_eq!(kept.trim(), r#"["RUN echo later"]"#);
    d.ok(&["rm", &ob]);
    d.ok(&["rmi", "onbuild:1"]);
    // The defaults otherwise.
    let plain = d.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"]).trim().to_owned();
    assert!(!d.ok(&["exec", &plain, "cat", "/proc/cpuinfo"]).is_empty());
    // Kernel TCP memory, on a host whose cgroup v1 has it.
    let tcp = std::path::Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists();
    let body =
        r#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none","KernelMemoryTCP":8388608}}"#;
    let k = created(&d, body);
    let started = d.docker(&["start", &k]);
    if tcp {
        assert!(started.status.success(), "{}", stderr(&started));
        let f = format!("/sys/fs/cgroup/memory{}/{k}/memory.kmem.tcp.limit_in_bytes", d.cgroup);
        assert_eq!(std::fs::read_to_string(f).unwrap().trim(), "8388608");
    } else {
        assert!(!started.status.success(), "kernel TCP memory accepted where the kernel has none");
    }
    for (body, msg) in [
        (
            r#"{"Image":"busybox","HostConfig":{"StorageOpt":{"size":"10G"}}}"#,
            "--storage-opt is supported only for overlay over xfs",
        ),
        (r#"{"Image":"busybox","HostConfig":{"Cgroup":"container:x"}}"#, "Cgroup \"container:x\""),
        (r#"{"Image":"busybox","HostConfig":{"CpuCount":2}}"#, "CpuCount is for Windows containers only"),
        (r#"{"Image":"busybox","HostConfig":{"IOMaximumIOps":5}}"#, "IOMaximumIOps is for Windows containers only"),
        (r#"{"Image":"busybox","ArgsEscaped":true}"#, "ArgsEscaped is for Windows containers only"),
        (r#"{"Image":"busybox","NetworkDisabled":true,"HostConfig":{"NetworkMode":"host"}}"#, "NetworkDisabled"),
    ] {
        refused(&d, body, msg);
    }
    let o = d.docker(&["run", "--storage-opt", "size=1G", "busybox", "true"]);
    assert!(stderr(&o).contains("--storage-opt is supported only"), "{}", stderr(&o));
    d.ok(&["rm", "-f", &id, &plain, &k]);
    assert_clean(&d);
}
