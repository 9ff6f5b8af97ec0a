//! Kubernetes' Container Runtime Interface (CRI v1) over the berth
//! engine: `runtime.v1.RuntimeService` and `runtime.v1.ImageService`,
//! served on a socket of their own beside the Docker API, with the same
//! engine and image store behind both.
//!
//! Served so far: Version, Status and RuntimeConfig; every image call
//! (ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo). Pod
//! sandboxes, containers, streaming and stats answer `Unimplemented`
//! with the call's name.
// The services' trait answers every call with `tonic::Status` as its
// error, large as it is; the helpers answer in the same type.
#![allow(clippy::result_large_err)]

mod images;
mod runtime;

use std::sync::Arc;

use berth_engine::Engine;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

/// Serve CRI on `listener` until the future is dropped.
pub async fn serve(engine: Arc<Engine>, listener: tokio::net::UnixListener) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(runtime::Runtime { engine: engine.clone() }))
        .add_service(ImageServiceServer::new(images::Images { engine }))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
        .await
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
