//! Kubernetes' Container Runtime Interface (CRI v1) over the berth
//! engine: `runtime.v1.RuntimeService` and `runtime.v1.ImageService`,
//! served on a socket of their own beside the Docker API, with the same
//! engine and image store behind both.
//!
//! Served so far: Version, Status and RuntimeConfig; every image call
//! (ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo); pod
//! sandboxes with their network through CNI; containers, their logs in
//! CRI format and their resources; ExecSync; Exec, Attach and PortForward
//! through the streaming server; stats; container events. Checkpoints and
//! the metrics calls answer `Unimplemented` with the call's name, as
//! containerd's do without CRIU and metrics.
// The services' trait answers every call with `tonic::Status` as its
// error, large as it is; the helpers answer in the same type.
#![allow(clippy::result_large_err)]

mod containers;
mod events;
mod exec;
mod images;
mod netns;
mod runtime;
mod sandbox;
mod stats;
mod store;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use berth_engine::Engine;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

/// How the CRI is set up.
#[derive(Debug, Clone)]
pub struct CriConfig {
    /// Where CNI network configurations are read (`--cni-conf-dir`).
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are found (`--cni-bin-dir`).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Where the streaming server of Exec, Attach and PortForward listens
    /// (`--cri-stream-address`; port 0 takes a free one).
    pub stream_address: std::net::SocketAddr,
}

/// The runtime service's state: the engine, and what the CRI keeps of its
/// own.
#[derive(Debug)]
pub(crate) struct Cri {
    pub engine: Arc<Engine>,
    /// Shared with the blocking threads that write records.
    pub store: Arc<store::Store>,
    pub cni: Arc<berth_network::cni::Cni>,
    /// Pods' pinned network namespaces, and the spare.
    pub pins: Arc<netns::Pins>,
    pub cpu: stats::CpuReadings,
    /// The streaming server, once it listens.
    pub streams: std::sync::OnceLock<stream::Streams>,
}

/// Open the CRI's records under the engine's data root.
fn open(engine: Arc<Engine>, cfg: &CriConfig) -> std::io::Result<Cri> {
    let store = store::Store::open(&engine.cfg.data_root.join("cri"))?;
    let cni = berth_network::cni::Cni { conf_dir: cfg.cni_conf_dir.clone(), bin_dirs: cfg.cni_bin_dirs.clone() };
    let pins = Arc::new(netns::Pins::new(engine.cfg.exec_root.join("cri-netns")));
    Ok(Cri {
        engine,
        store: Arc::new(store),
        cni: Arc::new(cni),
        pins,
        cpu: Default::default(),
        streams: Default::default(),
    })
}

/// Serve CRI on `listener` until the future is dropped.
pub async fn serve(
    engine: Arc<Engine>,
    cfg: CriConfig,
    listener: tokio::net::UnixListener,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cri = Arc::new(open(engine.clone(), &cfg)?);
    let streaming = tokio::net::TcpListener::bind(cfg.stream_address).await?;
    let _ = cri.streams.set(stream::Streams::new(streaming.local_addr()?));
    tracing::info!("CRI streaming on {}", streaming.local_addr()?);
    tokio::spawn(stream::serve(cri.clone(), streaming));
    cri.restore().await;
    // The spare network namespace goes when serving ends, the future
    // dropped included.
    struct Close(Arc<Cri>);
    impl Drop for Close {
        fn drop(&mut self) {
            self.0.pins.close(&self.0.engine);
        }
    }
    let _close = Close(cri.clone());
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(runtime::Runtime { cri }))
        .add_service(ImageServiceServer::new(images::Images { engine }))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
        .await?;
    Ok(())
}

/// An I/O failure of the CRI's own records.
fn io_status(what: &'static str) -> impl FnOnce(std::io::Error) -> tonic::Status {
    move |e| tonic::Status::internal(format!("{what}: {e}"))
}

/// An engine or store error as gRPC answers it, with containerd's codes.
fn status(e: impl Into<berth_engine::Error>) -> tonic::Status {
    use berth_engine::Error as E;
    let e = e.into();
    let msg = e.to_string();
    match e {
        E::NotFound(_) | E::Image(berth_image::Error::NotFound(_)) => tonic::Status::not_found(msg),
        E::Conflict(_) | E::Image(berth_image::Error::Conflict(_)) => tonic::Status::failed_precondition(msg),
        E::Invalid(_) | E::Image(berth_image::Error::Invalid(_)) => tonic::Status::invalid_argument(msg),
        _ => tonic::Status::internal(msg),
    }
}
