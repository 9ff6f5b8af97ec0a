//! Kubernetes' CRI on berthd's second socket, driven by a client made
//! from the same proto kubelet speaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::registry::{have_registry_tools, Registry};
use common::*;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;

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
        let e = runtime.run_pod_sandbox(RunPodSandboxRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("RunPodSandbox"), "{e:?}");
    });
    assert_clean(&d);
}
