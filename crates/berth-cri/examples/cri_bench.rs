//! A CRI client for `bench/cri.sh`: the same calls, in the same order, to
//! any CRI server (berthd's, containerd's), as kubelet makes them.
//!
//!   cri_bench SOCKET cycle N CGROUP LOGDIR
//!       N pods one after another: RunPodSandbox, CreateContainer and
//!       StartContainer of busybox `true`, then its exit, StopPodSandbox
//!       and RemovePodSandbox. Prints the medians in ms: to the started
//!       container, of each of the three calls, and of the whole cycle.
//!   cri_bench SOCKET samples N CGROUP LOGDIR
//!       The same pods, with each one's times on a line of its own:
//!       `start MS sandbox MS create MS run MS cycle MS`.
//!   cri_bench SOCKET hold N CGROUP LOGDIR
//!       N pods running busybox `sleep 3600`; prints "ready", waits for a
//!       line on stdin, then removes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

async fn connect(path: String) -> RuntimeServiceClient<Channel> {
    let ch = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to the CRI socket");
    RuntimeServiceClient::new(ch)
}

fn pod(n: usize, cgroup: &str, logs: &str) -> PodSandboxConfig {
    let name = format!("bench-{n}");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{n}-{}", std::process::id()),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: format!("{logs}/{name}"),
        linux: Some(LinuxPodSandboxConfig { cgroup_parent: format!("{cgroup}/pod{n}"), ..Default::default() }),
        ..Default::default()
    }
}

fn container(args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: "c".into(), attempt: 0 }),
        image: Some(ImageSpec { image: "busybox".into(), ..Default::default() }),
        command: args.iter().map(|a| (*a).to_owned()).collect(),
        log_path: "c.log".into(),
        ..Default::default()
    }
}

/// Sandbox, container and start; the pod's and container's ids, and the
/// milliseconds each of the three calls took.
async fn start(
    rt: &mut RuntimeServiceClient<Channel>,
    cfg: PodSandboxConfig,
    args: &[&str],
) -> (String, String, [f64; 3]) {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(cfg.clone()), ..Default::default() })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let sandbox = ms(t);
    let t = Instant::now();
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container(args)),
            sandbox_config: Some(cfg),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    let create = ms(t);
    let t = Instant::now();
    rt.start_container(StartContainerRequest { container_id: id.clone() }).await.expect("StartContainer");
    (pod, id, [sandbox, create, ms(t)])
}

async fn remove(rt: &mut RuntimeServiceClient<Channel>, pod: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.into() }).await.expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.into() }).await.expect("RemovePodSandbox");
}

/// What each pod of a cycle is timed for, in ms.
const NAMES: [&str; 5] = ["start", "sandbox", "create", "run", "cycle"];

/// `n` pods one after another, each to its removal; per pod, the times
/// [`NAMES`] lists.
async fn cycle(rt: &mut RuntimeServiceClient<Channel>, n: usize, cgroup: &str, logs: &str) -> Vec<[f64; 5]> {
    let mut out = vec![];
    for i in 0..n {
        let t = Instant::now();
        let (pod, id, each) = start(rt, pod(i, cgroup, logs), &["true"]).await;
        let started = t.elapsed().as_secs_f64() * 1000.0;
        loop {
            let st = rt
                .container_status(ContainerStatusRequest { container_id: id.clone(), verbose: false })
                .await
                .expect("ContainerStatus")
                .into_inner()
                .status
                .unwrap();
            if st.state == ContainerState::ContainerExited as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        remove(rt, &pod).await;
        out.push([started, each[0], each[1], each[2], t.elapsed().as_secs_f64() * 1000.0]);
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, mode, n, cgroup, logs] = args.as_slice() else {
        panic!("usage: cri_bench SOCKET cycle|samples|hold N CGROUP LOGDIR");
    };
    let n: usize = n.parse().unwrap();
    let mut rt = connect(socket.clone()).await;
    match mode.as_str() {
        "cycle" => {
            let mut samples = cycle(&mut rt, n, cgroup, logs).await;
            for (i, name) in NAMES.iter().enumerate() {
                let mut v: Vec<f64> = samples.iter_mut().map(|s| s[i]).collect();
                println!("{name} {:.2}", median(&mut v));
            }
        }
        "samples" => {
            for s in cycle(&mut rt, n, cgroup, logs).await {
                let line: Vec<String> = NAMES.iter().zip(s).map(|(name, ms)| format!("{name} {ms:.3}")).collect();
                println!("{}", line.join(" "));
            }
        }
        "hold" => {
            let mut pods = vec![];
            for i in 0..n {
                pods.push(start(&mut rt, pod(i, cgroup, logs), &["sleep", "3600"]).await.0);
            }
            println!("ready");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            for p in pods {
                remove(&mut rt, &p).await;
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
