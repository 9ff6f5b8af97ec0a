//! Kubernetes' CRI on berthd's second socket, driven by a client made
//! from the same proto kubelet speaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::registry::{have_registry_tools, Registry};
use common::*;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::os::unix::fs::MetadataExt;

/// A channel to the daemon's CRI socket.
async fn channel(d: &Daemon) -> tonic::transport::Channel {
    let path = d.dir.join("run/cri.sock");
    tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

type Rt = RuntimeServiceClient<tonic::transport::Channel>;

async fn pod_status(rt: &mut Rt, id: &str) -> PodSandboxStatus {
    let req = PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
    rt.pod_sandbox_status(req).await.unwrap().into_inner().status.unwrap()
}

async fn ctr_status(rt: &mut Rt, id: &str) -> ContainerStatus {
    let req = ContainerStatusRequest { container_id: id.into(), verbose: false };
    rt.container_status(req).await.unwrap().into_inner().status.unwrap()
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: image.into(), ..Default::default() })
}

#[test]
fn the_runtime_says_what_it_is_and_images_are_the_docker_api_s() {
    if !can_run("cri") || !have_registry_tools("cri") {
        return;
    }
    let d = Daemon::start("cri");
    d.load_busybox();
    let reg = Registry::start("cri", None);
    reg.push_archive(&d.fixture(), "pods/busybox:1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ch = channel(&d).await;
        let mut runtime = RuntimeServiceClient::new(ch.clone());
        let mut images = ImageServiceClient::new(ch);
        let v = runtime.version(VersionRequest::default()).await.unwrap().into_inner();
        assert_eq!((v.runtime_name.as_str(), v.runtime_api_version.as_str()), ("berth", "v1"));
        let s = runtime.status(StatusRequest::default()).await.unwrap().into_inner();
        let conds = s.status.unwrap().conditions;
        let cond = |t: &str| conds.iter().find(|c| c.r#type == t).cloned().unwrap();
        assert!(cond("RuntimeReady").status);
        let net = cond("NetworkReady");
        assert!(!net.status && net.reason == "NetworkPluginNotReady", "{net:?}");
        let c = runtime.runtime_config(RuntimeConfigRequest::default()).await.unwrap().into_inner();
        assert_eq!(c.linux.unwrap().cgroup_driver, CgroupDriver::Cgroupfs as i32);
        // One image store: what `docker load` put there is listed here.
        let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).trim().to_owned();
        let list = images.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
        let bb = list.iter().find(|i| i.id == id).unwrap();
        assert!(bb.repo_tags.iter().any(|t| t.ends_with("busybox:latest")), "{bb:?}");
        assert!(bb.size > 0);
        let st = images.image_status(ImageStatusRequest { image: spec("busybox"), verbose: false }).await.unwrap();
        assert_eq!(st.into_inner().image.unwrap().id, id);
        // An image not here is an empty answer, not an error.
        let st = images.image_status(ImageStatusRequest { image: spec("absent:1"), verbose: false }).await.unwrap();
        assert!(st.into_inner().image.is_none());
        let e = images.image_status(ImageStatusRequest { image: None, verbose: false }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // Pulled through the registry client, seen by the Docker API.
        let name = format!("{}/pods/busybox:1", reg.addr);
        let pulled = images
            .pull_image(PullImageRequest { image: spec(&name), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", &name]).trim(), pulled.image_ref);
        let fs = images.image_fs_info(ImageFsInfoRequest::default()).await.unwrap().into_inner();
        assert!(fs.image_filesystems[0].used_bytes.unwrap().value > 0);
        // Removed through CRI: gone from `docker images`; again is no error.
        images.remove_image(RemoveImageRequest { image: spec(&name) }).await.unwrap();
        assert!(!d.docker(&["image", "inspect", &name]).status.success());
        images.remove_image(RemoveImageRequest { image: spec(&name) }).await.unwrap();
        // What is not served yet says so, by name.
        let e = runtime.checkpoint_container(CheckpointContainerRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("CheckpointContainer"), "{e:?}");
    });
    assert_clean(&d);
}

/// A CNI network of the test's own: a bridge, host-local addresses in a
/// /24 of 10.64.0.0/10 and portmap, configured in the daemon's directory.
/// Dropped, it takes away the bridge and the portmap plugin's chains.
struct PodNet {
    bridge: String,
    subnet: [u8; 3],
    /// The config directory (`conf/`) and host-local's (`ipam/`).
    dir: std::path::PathBuf,
}

impl PodNet {
    fn new() -> PodNet {
        use std::io::Read;
        let mut r = [0u8; 3];
        std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut r).unwrap();
        let bridge = format!("bc{:02x}{:02x}{:02x}", r[0], r[1], r[2]);
        let dir = std::env::temp_dir().join(format!("berth-cni-{bridge}"));
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        PodNet { bridge, subnet: [10, 64 + (r[0] & 63), r[1]], dir }
    }

    fn conf_dir(&self) -> std::path::PathBuf {
        self.dir.join("conf")
    }

    fn write(&self) {
        self.write_with(true)
    }

    /// The config, with portmap or without.
    fn write_with(&self, portmap: bool) {
        let [a, b, c] = self.subnet;
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("pods-{}", self.bridge),
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("{a}.{b}.{c}.0/24")}]],
                          "dataDir": self.dir.join("ipam").display().to_string()}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        let mut conf = conf;
        if !portmap {
            conf["plugins"].as_array_mut().unwrap().pop();
        }
        std::fs::write(self.conf_dir().join("10-pods.conflist"), conf.to_string()).unwrap();
    }

    fn gateway(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.1")
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "delete", &self.bridge]).status();
        // portmap's chains and the rules that jump to them (its own
        // per-pod chains go with each DEL).
        let rules = std::process::Command::new("iptables").args(["-t", "nat", "-S"]).output().unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
        for r in rules.lines().filter_map(|r| r.strip_prefix("-A ")).filter(|r| r.contains("CNI-HOSTPORT")) {
            // `-S` quotes comments as a shell would read them back.
            let _ = std::process::Command::new("sh").args(["-c", &format!("iptables -t nat -D {r}")]).status();
        }
        for r in rules.lines().filter_map(|r| r.strip_prefix("-N ")).filter(|c| c.starts_with("CNI-HOSTPORT")) {
            let _ = std::process::Command::new("iptables").args(["-t", "nat", "-X", r]).status();
        }
        // A pod's own chain, left when a failed test never DELed it.
        let [a, b, c] = self.subnet;
        let ours = format!("--to-destination {a}.{b}.{c}.");
        for chain in rules.lines().filter(|r| r.starts_with("-A CNI-DN-") && r.contains(&ours)) {
            let chain = chain.split_whitespace().nth(1).unwrap_or_default();
            for op in ["-F", "-X"] {
                let _ = std::process::Command::new("iptables").args(["-t", "nat", op, chain]).status();
            }
        }
        // A test's shared mount, if it made one.
        let _ = std::process::Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("shared"))
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(2))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// GET until it answers, for 5 s.
fn get_soon(addr: &str) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match get(addr) {
            Ok(s) if s.contains("200") => return s,
            other if std::time::Instant::now() > until => panic!("GET {addr}: {other:?}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

fn pod_config(name: &str, uid: &str, host_port: i32, log_directory: &std::path::Path) -> PodSandboxConfig {
    PodSandboxConfig {
        log_directory: log_directory.display().to_string(),
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port,
            host_ip: String::new(),
        }],
        labels: [("app".to_owned(), name.to_owned())].into(),
        annotations: [("note".to_owned(), "kept".to_owned())].into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { pid: NamespaceMode::Pod as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: spec("busybox"),
        command: vec!["sh".into(), "-c".into()],
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        labels: [("role".to_owned(), name.to_owned())].into(),
        envs: vec![KeyValue { key: "GREETING".into(), value: "hello from the pod".into() }],
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

async fn exec(
    runtime: &mut RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
    cmd: &[&str],
) -> ExecSyncResponse {
    let req =
        ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|c| (*c).to_owned()).collect(), timeout: 10 };
    runtime.exec_sync(req).await.unwrap().into_inner()
}

#[test]
fn a_pod_runs_on_its_cni_network_shares_localhost_and_outlives_a_daemon_crash() {
    if !can_run("cri-pods") {
        return;
    }
    assert!(
        std::path::Path::new("/usr/lib/cni/bridge").exists() || std::env::var("CI").is_err(),
        "CNI plugins missing: install containernetworking-plugins"
    );
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipped: no CNI plugins in /usr/lib/cni");
        return;
    }
    let net = PodNet::new();
    let mut d = Daemon::start_with("cri-pods", &["--cni-conf-dir", net.conf_dir().to_str().unwrap()]);
    d.load_busybox();
    let host_port = 20000 + (std::process::id() % 20000) as i32;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (pod, web, client) = rt.block_on(async {
        let mut runtime = RuntimeServiceClient::new(channel(&d).await);
        // No CNI config yet: the network is not ready and no pod starts.
        let s = runtime.status(StatusRequest::default()).await.unwrap().into_inner();
        let ready = s.status.unwrap().conditions.iter().find(|c| c.r#type == "NetworkReady").unwrap().clone();
        assert!(!ready.status && ready.reason == "NetworkPluginNotReady", "{ready:?}");
        let cfg = pod_config("web", "uid-web", host_port, &net.dir.join("logs"));
        let e = runtime
            .run_pod_sandbox(RunPodSandboxRequest { config: Some(cfg.clone()), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        net.write();
        let s = runtime.status(StatusRequest::default()).await.unwrap().into_inner();
        assert!(s.status.unwrap().conditions.iter().all(|c| c.status));

        let pod = runtime
            .run_pod_sandbox(RunPodSandboxRequest { config: Some(cfg.clone()), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let st = pod_status(&mut runtime, &pod).await;
        assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
        assert_eq!(st.metadata.unwrap().name, "web");
        assert_eq!(st.annotations.get("note").map(String::as_str), Some("kept"));
        let ip = st.network.unwrap().ip;
        let [a, b, c] = net.subnet;
        assert!(ip.starts_with(&format!("{a}.{b}.{c}.")), "{ip}");

        // The next pod's network namespace is made ahead, and the next pod
        // runs in it; then another is made.
        let spare = d.dir.join("run/cri-netns/spare");
        // A spare is there once its namespace is bound on the file (the
        // file itself is made first).
        let pinned = |p: &std::path::Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: statfs is plain data, all zeroes a valid value.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: statfs fills the struct given, for a NUL-terminated path.
            unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == 0x6e73_6673 }
        };
        let spare_ns = || {
            let t = std::time::Instant::now();
            while !pinned(&spare) && t.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            std::fs::metadata(&spare).unwrap().ino()
        };
        let ahead = spare_ns();
        let mut next = pod_config("next", "uid-next", 0, &net.dir.join("logs"));
        next.port_mappings.clear();
        let mut events = runtime.get_container_events(GetEventsRequest {}).await.unwrap().into_inner();
        let next = runtime
            .run_pod_sandbox(RunPodSandboxRequest { config: Some(next), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        // The sandbox's own events, its create among them (its record is
        // written while the engine makes it).
        let mut seen = vec![];
        while seen.len() < 2 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), events.message()).await;
            let e = e.expect("sandbox events").unwrap().unwrap();
            assert_eq!((e.container_id.as_str(), e.pod_sandbox_status.unwrap().id.as_str()), (next.as_str(), next.as_str()));
            seen.push(e.container_event_type);
        }
        assert_eq!(
            seen,
            [ContainerEventType::ContainerCreatedEvent as i32, ContainerEventType::ContainerStartedEvent as i32]
        );
        drop(events);
        let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &next]);
        assert_eq!(std::fs::metadata(format!("/proc/{}/ns/net", pid.trim())).unwrap().ino(), ahead);
        let t = std::time::Instant::now();
        while spare_ns() == ahead && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_ne!(spare_ns(), ahead);
        runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: next.clone() }).await.unwrap();
        runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: next }).await.unwrap();

        let mut events = runtime.get_container_events(GetEventsRequest {}).await.unwrap().into_inner();
        let mk = |name: &str, args: &[&str]| CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config(name, args)),
            sandbox_config: Some(cfg.clone()),
        };
        let web = runtime
            .create_container(mk(
                "httpd",
                &["echo starting; echo warning >&2; mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 80 -h /www"],
            ))
            .await
            .unwrap()
            .into_inner()
            .container_id;
        let client =
            runtime.create_container(mk("client", &["while :; do echo tick; sleep 0.1; done"])).await.unwrap().into_inner().container_id;
        for id in [&web, &client] {
            runtime.start_container(StartContainerRequest { container_id: id.clone() }).await.unwrap();
        }
        // Container events, each with the pod's status.
        let mut seen = vec![];
        while seen.len() < 4 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), events.message()).await;
            let e = e.expect("container events").unwrap().unwrap();
            assert_eq!(e.pod_sandbox_status.as_ref().unwrap().id, pod);
            seen.push((e.container_id, e.container_event_type));
        }
        for id in [&web, &client] {
            assert!(seen.contains(&(id.clone(), ContainerEventType::ContainerCreatedEvent as i32)), "{seen:?}");
            assert!(seen.contains(&(id.clone(), ContainerEventType::ContainerStartedEvent as i32)), "{seen:?}");
        }
        drop(events);
        // One pod: localhost is shared, and so are the hostname and DNS.
        let mut out = String::new();
        for _ in 0..50 {
            let r = exec(&mut runtime, &client, &["wget", "-qO-", "http://localhost:80/"]).await;
            out = String::from_utf8_lossy(&r.stdout).into_owned();
            if r.exit_code == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(out, "hello from the pod\n");
        let r =
            exec(&mut runtime, &client, &["sh", "-c", "hostname; cat /etc/resolv.conf; echo oops >&2; exit 3"]).await;
        let text = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(text.starts_with("web\n") && text.contains("nameserver 10.96.0.10"), "{text}");
        assert!(text.contains("search default.svc.cluster.local") && text.contains("ndots:5"), "{text}");
        assert_eq!((String::from_utf8_lossy(&r.stderr).as_ref(), r.exit_code), ("oops\n", 3));
        // Hairpin: the pod reaches itself through its own hostPort.
        let hairpin = format!("http://{}:{host_port}/", net.gateway());
        let r = exec(&mut runtime, &client, &["wget", "-qO-", &hairpin]).await;
        assert_eq!(String::from_utf8_lossy(&r.stdout), "hello from the pod\n", "{r:?}");
        // A pod PID namespace: the client sees the httpd.
        let r = exec(&mut runtime, &client, &["ps"]).await;
        assert!(String::from_utf8_lossy(&r.stdout).contains("httpd"), "{r:?}");

        let listed = runtime
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter { pod_sandbox_id: pod.clone(), ..Default::default() }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|c| c.state == ContainerState::ContainerRunning as i32));
        let selected = runtime
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: [("role".to_owned(), "httpd".to_owned())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(selected.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [web.as_str()]);
        // Logs in CRI format where kubelet said, reopened after a rotation.
        let log = net.dir.join("logs/httpd/0.log");
        let st = ctr_status(&mut runtime, &web).await;
        assert_eq!(st.log_path, log.display().to_string());
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, ' ').collect()).collect();
        assert!(lines.iter().any(|l| l[1..] == ["stdout", "F", "starting"]), "{text}");
        assert!(lines.iter().any(|l| l[1..] == ["stderr", "F", "warning"]), "{text}");
        assert!(lines.iter().all(|l| l[0].ends_with('Z') && l[0].len() == 30), "{text}");
        let ticks = net.dir.join("logs/client/0.log");
        std::fs::rename(&ticks, net.dir.join("logs/client/0.log.1")).unwrap();
        runtime.reopen_container_log(ReopenContainerLogRequest { container_id: client.clone() }).await.unwrap();
        for _ in 0..50 {
            if std::fs::read_to_string(&ticks).is_ok_and(|t| t.contains(" stdout F tick\n")) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(std::fs::read_to_string(&ticks).unwrap().ends_with(" stdout F tick\n"));

        let mut no_image = container_config("x", &["true"]);
        no_image.image = None;
        let e = runtime
            .create_container(CreateContainerRequest { config: Some(no_image), ..mk("x", &["true"]) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        // A container cannot leave its pod's network.
        let mut own_net = container_config("x", &["true"]);
        let sc = own_net.linux.get_or_insert_with(Default::default).security_context.get_or_insert_with(Default::default);
        sc.namespace_options.get_or_insert_with(Default::default).network = NamespaceMode::Node as i32;
        let e = runtime
            .create_container(CreateContainerRequest { config: Some(own_net), ..mk("x", &["true"]) })
            .await
            .unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("namespace_options.network"), "{e:?}");
        (pod, web, client)
    });

    // The pod IP answers from the host, and so does the hostPort.
    let ip = {
        let st = d.ok(&["inspect", "-f", "{{.Name}}", &pod]);
        assert_eq!(st.trim(), "/k8s_POD_web_default_uid-web_0");
        let st = rt.block_on(async { pod_status(&mut RuntimeServiceClient::new(channel(&d).await), &pod).await });
        st.network.unwrap().ip
    };
    assert!(get_soon(&format!("{ip}:80")).contains("hello from the pod"));
    assert!(get_soon(&format!("{}:{host_port}", net.gateway())).contains("hello from the pod"));

    // The Docker side sees the same containers, by dockershim's names.
    let names = d.ok(&["ps", "--format", "{{.Names}} {{.Label \"io.kubernetes.docker.type\"}}"]);
    assert!(names.contains("k8s_POD_web_default_uid-web_0 podsandbox"), "{names}");
    assert!(names.contains("k8s_httpd_web_default_uid-web_0 container"), "{names}");
    // A sandbox runs in a root all of them share: no layer of its own to
    // list, copy or change, which Docker's side says by name.
    let diff = d.docker(&["diff", "k8s_POD_web_default_uid-web_0"]);
    assert!(stderr(&diff).contains("is a pod sandbox, which has no file system of its own"), "{}", stderr(&diff));
    assert!(d.ok(&["ps", "-s", "--format", "{{.Names}} {{.Size}}"]).contains("k8s_POD_web_default_uid-web_0 0B"));
    assert_eq!(d.ok(&["exec", "k8s_client_web_default_uid-web_0", "hostname"]).trim(), "web");
    let logs = d.docker(&["logs", &web]);
    assert_eq!((stdout(&logs).as_str(), stderr(&logs).as_str()), ("starting\n", "warning\n"));
    let label = d.ok(&["inspect", "-f", "{{index .Config.Labels \"io.kubernetes.sandbox.id\"}}", &web]);
    assert_eq!(label.trim(), pod);

    // Stats of the containers and the pod; resources updated live.
    rt.block_on(async {
        let mut runtime = RuntimeServiceClient::new(channel(&d).await);
        let stats = |runtime: &mut RuntimeServiceClient<tonic::transport::Channel>| {
            let mut r = runtime.clone();
            let web = web.clone();
            async move {
                r.container_stats(ContainerStatsRequest { container_id: web })
                    .await
                    .unwrap()
                    .into_inner()
                    .stats
                    .unwrap()
            }
        };
        let first = stats(&mut runtime).await;
        let v = |x: &Option<UInt64Value>| x.as_ref().unwrap().value;
        assert!(v(&first.cpu.as_ref().unwrap().usage_core_nano_seconds) > 0, "{first:?}");
        assert!(v(&first.memory.as_ref().unwrap().working_set_bytes) > 0, "{first:?}");
        assert!(v(&first.writable_layer.as_ref().unwrap().used_bytes) > 0, "{first:?}");
        let second = stats(&mut runtime).await;
        assert!(second.cpu.unwrap().usage_nano_cores.is_some());
        let all = runtime
            .list_container_stats(ListContainerStatsRequest {
                filter: Some(ContainerStatsFilter { pod_sandbox_id: pod.clone(), ..Default::default() }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(all.len(), 2);
        let p = runtime
            .pod_sandbox_stats(PodSandboxStatsRequest { pod_sandbox_id: pod.clone() })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap()
            .linux
            .unwrap();
        let eth0 = p.network.unwrap().default_interface.unwrap();
        assert!(v(&eth0.rx_bytes) > 0 && v(&eth0.tx_bytes) > 0, "{eth0:?}");
        assert!(v(&p.process.unwrap().process_count) >= 3);
        assert_eq!(p.containers.len(), 2);
        let listed = runtime.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default()).await.unwrap();
        assert_eq!(listed.into_inner().stats.len(), 1);
        runtime
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: web.clone(),
                linux: Some(LinuxContainerResources { memory_limit_in_bytes: 64 << 20, ..Default::default() }),
                ..Default::default()
            })
            .await
            .unwrap();
    });
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.Memory}}", &web]).trim(), (64u64 << 20).to_string());

    // kill -9 of the daemon: the pod runs on, and is found again.
    d.crash();
    assert!(get_soon(&format!("{ip}:80")).contains("hello from the pod"));
    // A sandbox the crash cut short after its ADD, before its container
    // was made (the two go side by side) and before the ADD's result was
    // recorded: its record, and the address host-local holds for it.
    let records = d.dir.join("data/cri/sandboxes");
    let mut cut: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records.join(format!("{pod}.json"))).unwrap()).unwrap();
    let cut_id = "c0ffee".repeat(10) + "c0ff";
    cut["id"] = cut_id.clone().into();
    cut["network"]["attachment"]["container_id"] = cut_id.clone().into();
    cut["network"]["attachment"]["netns"] = d.dir.join("run/cri-netns/gone").display().to_string().into();
    cut["network"]["result"] = serde_json::Value::Null;
    std::fs::write(records.join(format!("{cut_id}.json")), serde_json::to_vec(&cut).unwrap()).unwrap();
    let ipam = net.dir.join("ipam").join(format!("pods-{}", net.bridge));
    let held_ip = format!("{}.200", ip.rsplit_once('.').unwrap().0);
    std::fs::write(ipam.join(&held_ip), format!("{cut_id}\r\neth0")).unwrap();
    d.spawn();
    rt.block_on(async {
        let mut runtime = RuntimeServiceClient::new(channel(&d).await);
        let pods = runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
        assert_eq!(pods.len(), 1);
        assert_eq!((pods[0].id.as_str(), pods[0].state), (pod.as_str(), PodSandboxState::SandboxReady as i32));
        // The namespace the killed daemon had pinned ahead was let go as
        // CRI came up (no pod has asked for one since).
        assert!(!d.dir.join("run/cri-netns/spare").exists());
        // The cut-short sandbox is gone, its address given back by a DEL
        // without a result.
        assert!(!records.join(format!("{cut_id}.json")).exists());
        assert!(!ipam.join(&held_ip).exists(), "the address of a sandbox cut short is still held");
        let r = exec(&mut runtime, &client, &["wget", "-qO-", "http://localhost:80/"]).await;
        assert_eq!(String::from_utf8_lossy(&r.stdout), "hello from the pod\n");

        // Stopped with a timeout: exited, with its times and reason.
        runtime.stop_container(StopContainerRequest { container_id: web.clone(), timeout: 1 }).await.unwrap();
        let st = ctr_status(&mut runtime, &web).await;
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert!(st.finished_at >= st.started_at && st.started_at > st.created_at - 1_000_000_000, "{st:?}");
        assert_eq!(st.metadata.as_ref().unwrap().name, "httpd");
        assert!(st.reason == "Error" && st.exit_code != 0, "{st:?}");

        // Stopped: not ready, its address given back.
        runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        let st = pod_status(&mut runtime, &pod).await;
        assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
        let ipam = net.dir.join("ipam").join(format!("pods-{}", net.bridge));
        let held: Vec<_> = std::fs::read_dir(&ipam).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!held.iter().any(|n| n.to_string_lossy() == ip), "{held:?}");
        // Again is no error.
        runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        let left = runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner().containers;
        assert!(left.is_empty(), "{left:?}");

        // Bad input gets the codes containerd gives.
        let e = runtime
            .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: "nosuch".into(), verbose: false })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: "nosuch".into(),
                config: Some(container_config("x", &["true"])),
                sandbox_config: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = runtime.run_pod_sandbox(RunPodSandboxRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    });
    assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
    assert_clean(&d);
    drop(net);
}

/// The SPDY client (`tests/fixtures/cri-stream`, Go over moby/spdystream),
/// built for one test; its directory goes when it is dropped. `None` (a
/// skip) without Go or the library, except under CI.
struct StreamClient {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stream_client() -> Option<StreamClient> {
    let have = std::path::Path::new("/usr/share/gocode/src/github.com/moby/spdystream").exists()
        && std::process::Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert!(std::env::var("CI").is_err(), "go and golang-github-docker-spdystream-dev are needed");
        eprintln!("skipped: no go or spdystream to build the SPDY client");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("berth-cri-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = StreamClient { bin: dir.join("cri-stream"), dir };
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cri-stream");
    let out = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&client.bin)
        .arg(".")
        .current_dir(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOCACHE", client.dir.join("cache"))
        .env("GOFLAGS", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    Some(client)
}

/// The client run with `input`: stdout, stderr and whether it exited 0.
fn stream_run(bin: &std::path::Path, args: &[&str], input: &[u8]) -> (String, String, bool) {
    use std::io::Write;
    let mut c = std::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let o = c.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

#[test]
fn exec_attach_and_port_forward_stream_over_spdy_and_websocket() {
    if !can_run("cri-stream") {
        return;
    }
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        assert!(std::env::var("CI").is_err(), "CNI plugins missing: install containernetworking-plugins");
        return;
    }
    let Some(go) = stream_client() else { return };
    let client = go.bin.clone();
    let net = PodNet::new();
    net.write_with(false);
    let d = Daemon::start_with("cri-stream", &["--cni-conf-dir", net.conf_dir().to_str().unwrap()]);
    d.load_busybox();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (exec_urls, attach_url, forward_url, ws_url) = rt.block_on(async {
        let mut runtime = RuntimeServiceClient::new(channel(&d).await);
        let mut cfg = pod_config("stream", "uid-stream", 0, &net.dir.join("logs"));
        cfg.port_mappings.clear();
        let pod = runtime
            .run_pod_sandbox(RunPodSandboxRequest { config: Some(cfg.clone()), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mk = |c: ContainerConfig| CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(cfg.clone()),
        };
        // A web server on the pod's loopback only: reached by port forward.
        let web = container_config(
            "web",
            &["mkdir -p /www && echo forwarded > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"],
        );
        let web = runtime.create_container(mk(web)).await.unwrap().into_inner().container_id;
        let mut cat = container_config("cat", &["exec cat"]);
        cat.stdin = true;
        cat.stdin_once = true;
        let cat = runtime.create_container(mk(cat)).await.unwrap().into_inner().container_id;
        for id in [&web, &cat] {
            runtime.start_container(StartContainerRequest { container_id: id.clone() }).await.unwrap();
        }
        let exec = |cmd: &[&str], stdin: bool, tty: bool| ExecRequest {
            container_id: web.clone(),
            cmd: cmd.iter().map(|c| (*c).to_owned()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        };
        let mut urls = vec![];
        for req in [
            exec(&["sh", "-c", "cat; echo to-stderr >&2; exit 3"], true, false),
            exec(&["sh", "-c", "sleep 0.5; stty size"], false, true),
            exec(&["sh", "-c", "echo started; exec sleep 4217"], false, false),
        ] {
            urls.push(runtime.exec(req).await.unwrap().into_inner().url);
        }
        let ws = runtime.exec(exec(&["sh", "-c", "cat; exit 5"], true, false)).await.unwrap().into_inner().url;
        let attach = runtime
            .attach(AttachRequest { container_id: cat.clone(), stdin: true, stdout: true, ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .url;
        let forward = runtime
            .port_forward(PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![8080] })
            .await
            .unwrap()
            .into_inner()
            .url;
        // Bad requests are refused before any URL is made.
        let e = runtime.exec(ExecRequest { container_id: "nosuch".into(), ..exec(&["true"], false, false) }).await;
        assert_eq!(e.unwrap_err().code(), tonic::Code::NotFound);
        let e = runtime.exec(ExecRequest { stdout: false, stderr: false, ..exec(&["true"], false, false) }).await;
        assert_eq!(e.unwrap_err().code(), tonic::Code::InvalidArgument);
        (urls, attach, forward, ws)
    });

    // SPDY, without a terminal: stdin in, both outputs, the exit code.
    let (out, err, ok) = stream_run(&client, &["exec", &exec_urls[0], "-stdin"], b"from stdin\n");
    assert!(!ok);
    assert_eq!(out, "from stdin\n");
    assert!(err.starts_with("to-stderr\nSTATUS "), "{err}");
    let status: serde_json::Value = serde_json::from_str(err.trim_start_matches("to-stderr\nSTATUS ").trim()).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");
    // A URL is good once.
    let (_, err, ok) = stream_run(&client, &["exec", &exec_urls[0], "-stdin"], b"");
    assert!(!ok && err.contains("404"), "{err}");

    // SPDY with a terminal, resized.
    let (out, err, ok) = stream_run(&client, &["exec", &exec_urls[1], "-tty", "-resize", "100x40"], b"");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "40 100");

    // Attach to a container's stdin and stdout; its end is the attach's.
    let (out, err, ok) = stream_run(&client, &["exec", &attach_url, "-stdin", "-no-stderr"], b"through attach\n");
    assert!(ok, "{err}");
    assert_eq!(out, "through attach\n");

    // Port forward to the pod's loopback.
    let (out, err, ok) = stream_run(&client, &["portforward", &forward_url, "8080"], b"GET / HTTP/1.0\r\n\r\n");
    assert!(ok, "{err}");
    assert!(out.contains("200 OK") && out.ends_with("forwarded\n"), "{out}");

    // WebSocket, v5: channel bytes, stdin closed by channel 255.
    let ws_url = ws_url.replace("http://", "ws://");
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut ws, resp) = tungstenite::connect(req).unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    ws.send(tungstenite::Message::binary(b"\x00over websocket\n".to_vec())).unwrap();
    ws.send(tungstenite::Message::binary(vec![255, 0])).unwrap();
    let (mut out, mut status) = (Vec::new(), None);
    while let Ok(m) = ws.read() {
        let tungstenite::Message::Binary(b) = m else { continue };
        match b.first() {
            Some(1) => out.extend_from_slice(&b[1..]),
            Some(3) => status = Some(serde_json::from_slice::<serde_json::Value>(&b[1..]).unwrap()),
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "over websocket\n");
    let status = status.unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "5", "{status}");

    // A client that goes takes its command with it.
    let sleeping = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c.as_slice() == b"sleep\x004217\x00".as_slice())
        })
    };
    let url = exec_urls[2].replace("http://", "ws://");
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut ws, _) = tungstenite::connect(req).unwrap();
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) if b.starts_with(b"\x01started") => break,
            _ => {}
        }
    }
    // "started" comes before the shell's exec of sleep.
    let t = std::time::Instant::now();
    while !sleeping() && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(sleeping());
    drop(ws);
    let t = std::time::Instant::now();
    while sleeping() && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!sleeping(), "the command outlived its client");

    drop(d);
    drop(net);
}

#[test]
fn pods_honour_their_security_context_and_namespace_modes() {
    if !can_run("cri-security") {
        return;
    }
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        assert!(std::env::var("CI").is_err(), "CNI plugins missing: install containernetworking-plugins");
        return;
    }
    let net = PodNet::new();
    net.write_with(false);
    let mut d = Daemon::start_with("cri-security", &["--cni-conf-dir", net.conf_dir().to_str().unwrap()]);
    d.load_busybox();
    let profile = net.dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut runtime = RuntimeServiceClient::new(channel(&d).await);
        let run = |runtime: &mut RuntimeServiceClient<tonic::transport::Channel>, cfg: PodSandboxConfig| {
            let mut r = runtime.clone();
            async move {
                r.run_pod_sandbox(RunPodSandboxRequest { config: Some(cfg), ..Default::default() })
                    .await
                    .map(|r| r.into_inner().pod_sandbox_id)
            }
        };
        // A pod on its own network, with a pod PID namespace, a sysctl
        // and a cgroup parent of kubelet's kind.
        let mut cfg = pod_config("secure", "uid-secure", 0, &net.dir.join("logs"));
        cfg.port_mappings.clear();
        let linux = cfg.linux.as_mut().unwrap();
        linux.sysctls.insert("kernel.shm_rmid_forced".into(), "1".into());
        linux.cgroup_parent = format!("{}/kubepods-test/pod1", d.cgroup);
        // Its pause process runs as nobody, in the root sandboxes share.
        linux.security_context.as_mut().unwrap().run_as_user = Some(Int64Value { value: 65534 });
        let pod = run(&mut runtime, cfg.clone()).await.unwrap();
        let start = |runtime: &mut RuntimeServiceClient<tonic::transport::Channel>,
                     pod: String,
                     cfg: PodSandboxConfig,
                     c: ContainerConfig| {
            let mut r = runtime.clone();
            async move {
                let id = r
                    .create_container(CreateContainerRequest {
                        pod_sandbox_id: pod,
                        config: Some(c),
                        sandbox_config: Some(cfg),
                    })
                    .await?
                    .into_inner()
                    .container_id;
                r.start_container(StartContainerRequest { container_id: id.clone() }).await?;
                Ok::<_, tonic::Status>(id)
            }
        };
        let with = |name: &str, sc: LinuxContainerSecurityContext| {
            let mut c = container_config(name, &["exec sleep 1000"]);
            c.linux = Some(LinuxContainerConfig { security_context: Some(sc), ..Default::default() });
            c
        };
        let text = |r: ExecSyncResponse| String::from_utf8_lossy(&r.stdout).trim().to_owned();

        // User, group and supplemental groups; a read-only root.
        let user = with(
            "user",
            LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 1000 }),
                run_as_group: Some(Int64Value { value: 2000 }),
                supplemental_groups: vec![3000],
                readonly_rootfs: true,
                ..Default::default()
            },
        );
        let mut user = user;
        let shared = net.dir.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("f"), "from the host\n").unwrap();
        // kubelet's volumes with HostToContainer propagation sit on a
        // shared mount; a private one is refused.
        let sh = shared.display().to_string();
        let mount = |args: &[&str]| assert!(std::process::Command::new("mount").args(args).status().unwrap().success());
        mount(&["--bind", &sh, &sh]);
        mount(&["--make-shared", &sh]);
        user.mounts = vec![Mount {
            container_path: "/data".into(),
            host_path: shared.display().to_string(),
            readonly: true,
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        user.devices = vec![Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        let user = start(&mut runtime, pod.clone(), cfg.clone(), user).await.unwrap();
        assert_eq!(text(exec(&mut runtime, &user, &["cat", "/data/f"]).await), "from the host");
        assert_ne!(exec(&mut runtime, &user, &["touch", "/data/x"]).await.exit_code, 0);
        let r = exec(&mut runtime, &user, &["sh", "-c", "echo x > /dev/mynull && test -c /dev/mynull"]).await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        let mounts = text(exec(&mut runtime, &user, &["cat", "/proc/self/mountinfo"]).await);
        let data = mounts.lines().find(|l| l.split(' ').nth(4) == Some("/data")).unwrap().to_owned();
        assert!(data.contains("master:"), "not a slave mount: {data}");
        let private = net.dir.join("private");
        std::fs::create_dir_all(&private).unwrap();
        let mut p = with("private", LinuxContainerSecurityContext::default());
        p.mounts = vec![Mount {
            container_path: "/p".into(),
            host_path: private.display().to_string(),
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        let e = start(&mut runtime, pod.clone(), cfg.clone(), p).await.unwrap_err();
        assert!(e.message().contains("not a shared or slave mount"), "{e:?}");
        assert_eq!(text(exec(&mut runtime, &user, &["id", "-u"]).await), "1000");
        assert_eq!(text(exec(&mut runtime, &user, &["id", "-g"]).await), "2000");
        assert!(text(exec(&mut runtime, &user, &["id", "-G"]).await).split(' ').any(|g| g == "3000"));
        assert_ne!(exec(&mut runtime, &user, &["touch", "/x"]).await.exit_code, 0);
        // The pod's PID namespace: pid 1 is its pause process.
        let init = text(exec(&mut runtime, &user, &["cat", "/proc/1/cmdline"]).await);
        assert!(init.contains("--pause"), "{init:?}");
        let status = text(exec(&mut runtime, &user, &["grep", "^Uid:", "/proc/1/status"]).await);
        assert_eq!(status.split_whitespace().nth(1), Some("65534"), "{status:?}");
        assert_eq!(text(exec(&mut runtime, &user, &["cat", "/proc/sys/kernel/shm_rmid_forced"]).await), "1");
        let cgroup = text(exec(&mut runtime, &user, &["cat", "/proc/self/cgroup"]).await);
        assert!(cgroup.contains("/kubepods-test/pod1/"), "{cgroup}");

        // A PID namespace of its own and a localhost seccomp profile.
        let own = with(
            "own",
            LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption { pid: NamespaceMode::Container as i32, ..Default::default() }),
                seccomp: Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::Localhost as i32,
                    localhost_ref: profile.display().to_string(),
                }),
                ..Default::default()
            },
        );
        let own = start(&mut runtime, pod.clone(), cfg.clone(), own).await.unwrap();
        let init = text(exec(&mut runtime, &own, &["cat", "/proc/1/cmdline"]).await);
        assert!(init.starts_with("sleep"), "{init:?}");
        assert_ne!(exec(&mut runtime, &own, &["mkdir", "/tmp/x"]).await.exit_code, 0);
        // Privileged: every capability (and, as containerd has it, no seccomp).
        let privileged = with("privileged", LinuxContainerSecurityContext { privileged: true, ..Default::default() });
        let privileged = start(&mut runtime, pod.clone(), cfg.clone(), privileged).await.unwrap();
        let caps = text(exec(&mut runtime, &privileged, &["grep", "CapEff", "/proc/self/status"]).await);
        let default_caps = text(exec(&mut runtime, &user, &["grep", "CapEff", "/proc/self/status"]).await);
        assert_ne!(caps, default_caps);
        assert_eq!(exec(&mut runtime, &privileged, &["mkdir", "/tmp/x"]).await.exit_code, 0);
        // RuntimeDefault seccomp is Docker's profile (a filter), Unconfined
        // none; the working directory is where the command starts; TARGET
        // joins another container's PID namespace.
        let seccomp = |t: security_profile::ProfileType| {
            let mut c = with(
                &format!("seccomp-{}", t as i32),
                LinuxContainerSecurityContext {
                    seccomp: Some(SecurityProfile { profile_type: t as i32, ..Default::default() }),
                    namespace_options: Some(NamespaceOption {
                        pid: NamespaceMode::Target as i32,
                        target_id: own.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            c.working_dir = "/etc".into();
            c
        };
        for (t, mode) in
            [(security_profile::ProfileType::RuntimeDefault, "2"), (security_profile::ProfileType::Unconfined, "0")]
        {
            let c = start(&mut runtime, pod.clone(), cfg.clone(), seccomp(t)).await.unwrap();
            let status = text(exec(&mut runtime, &c, &["grep", "^Seccomp:", "/proc/self/status"]).await);
            assert_eq!(status.split_whitespace().nth(1), Some(mode), "{t:?}: {status}");
            assert_eq!(text(exec(&mut runtime, &c, &["pwd"]).await), "/etc");
            let init = text(exec(&mut runtime, &c, &["cat", "/proc/1/cmdline"]).await);
            assert!(init.starts_with("sleep"), "TARGET: pid 1 is {init:?}, not own's");
            let ps = text(exec(&mut runtime, &c, &["ps", "-o", "comm"]).await);
            // own's sleep and its own (and the one before's).
            assert!(ps.lines().filter(|l| l.trim() == "sleep").count() >= 2, "TARGET: {ps}");
        }

        // A missing profile, and a pod of a node's user namespace kind
        // berth does not make, are refused by name.
        let mut bad = with("bad", LinuxContainerSecurityContext::default());
        bad.linux.as_mut().unwrap().security_context.as_mut().unwrap().seccomp = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Localhost as i32,
            localhost_ref: "/nonexistent.json".into(),
        });
        let e = start(&mut runtime, pod.clone(), cfg.clone(), bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        let mut userns = pod_config("userns", "uid-userns", 0, &net.dir.join("logs"));
        userns
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .userns_options = Some(UserNamespace { mode: NamespaceMode::Pod as i32, ..Default::default() });
        let e = run(&mut runtime, userns).await.unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("userns"), "{e:?}");

        // A pod on the node's network and PID namespace.
        let mut host = pod_config("host", "uid-host", 0, &net.dir.join("logs"));
        host.port_mappings.clear();
        let ns = host.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap();
        ns.network = NamespaceMode::Node as i32;
        ns.pid = NamespaceMode::Node as i32;
        let hpod = run(&mut runtime, host.clone()).await.unwrap();
        let st = pod_status(&mut runtime, &hpod).await;
        assert_eq!(st.network.unwrap().ip, "");
        let c = start(&mut runtime, hpod.clone(), host.clone(), container_config("c", &["exec sleep 1000"])).await;
        let c = c.unwrap();
        let links = text(exec(&mut runtime, &c, &["ls", "/sys/class/net"]).await);
        // The host's links (the test's own bridges among them; others
        // come and go with the tests running beside it).
        let links: Vec<&str> = links.split_whitespace().collect();
        assert!(links.contains(&net.bridge.as_str()) && links.contains(&d.bridge.as_str()), "{links:?}");
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(text(exec(&mut runtime, &c, &["hostname"]).await), host_name.trim());
        let init = text(exec(&mut runtime, &c, &["cat", "/proc/1/cmdline"]).await);
        assert!(!init.contains("--pause") && !init.starts_with("sleep"), "{init:?}");

        for p in [pod, hpod] {
            runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: p.clone() }).await.unwrap();
            runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: p }).await.unwrap();
        }

        // A network whose second plugin fails: the pod is not made, and
        // nothing of it is left (its address is given back, its link
        // goes with its namespace, its record and container go).
        let conf = net.conf_dir().join("10-pods.conflist");
        let good = std::fs::read_to_string(&conf).unwrap();
        let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
        bad["plugins"].as_array_mut().unwrap().push(serde_json::json!({"type": "berth-no-such-plugin"}));
        std::fs::write(&conf, bad.to_string()).unwrap();
        let mut cfg = pod_config("failing", "uid-failing", 0, &net.dir.join("logs"));
        cfg.port_mappings.clear();
        let e = run(&mut runtime, cfg).await.unwrap_err();
        assert!(e.code() == tonic::Code::Unknown && e.message().contains("berth-no-such-plugin"), "{e:?}");
        std::fs::write(&conf, good).unwrap();
        let pods = runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
        assert!(pods.is_empty(), "{pods:?}");
        let ipam = net.dir.join("ipam").join(format!("pods-{}", net.bridge));
        let held: Vec<_> = std::fs::read_dir(&ipam)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        assert!(held.is_empty(), "addresses held: {held:?}");
        let pins: Vec<_> = std::fs::read_dir(d.dir.join("run/cri-netns"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "spare")
            .collect();
        assert!(pins.is_empty(), "{pins:?}");
        let t = std::time::Instant::now();
        while !bridge_ports(&net.bridge).is_empty() && t.elapsed() < std::time::Duration::from_secs(5) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(bridge_ports(&net.bridge).is_empty(), "{:?}", bridge_ports(&net.bridge));
    });
    assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
    // The pod's cgroups are kubelet's to remove, as it makes them.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let top = h.path().join(d.cgroup.trim_start_matches('/')).join("kubepods-test");
        let _ = std::fs::remove_dir(top.join("pod1"));
        let _ = std::fs::remove_dir(&top);
    }
    assert_clean(&d);
    // The namespace pinned ahead for the next pod, there while the daemon
    // serves, goes when it stops.
    let netns = d.dir.join("run/cri-netns");
    assert!(netns.join("spare").exists());
    d.stop();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&format!(" {} ", netns.join("spare").display())), "the spare is still pinned");
    assert_eq!(std::fs::read_dir(&netns).unwrap().count(), 0);
    drop(net);
}
