//! berth's registry client: the OCI distribution API (the Docker Registry
//! HTTP API V2) as a pull sees it: resolve a reference through the
//! daemon's mirrors, answer the registry's auth challenge, read a
//! manifest or an index down to the host's platform, and stream each
//! missing layer through its digest check and decompression into the
//! layer store, a few at a time. The image record is written last, so a
//! pull cut short leaves no image, and the blobs and layers it verified
//! serve the next pull.
//!
//! [`serve`] is the other side: a registry server of the same API, with
//! its storage, access control, garbage collection and a pull-through
//! cache mode (the `berth-registry` binary).

pub mod auth;
pub mod client;
pub mod config;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod serve;

pub use auth::Credentials;
pub use client::Registries;
pub use config::RegistryConfig;
pub use manifest::Platform;
pub use progress::Progress;
pub use pull::{describe, pull, tags, Described, Pulled};
pub use push::{push, Pushed};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be reached, or the connection failed.
    #[error("{0}")]
    Transport(String),
    /// Credentials missing or refused (401), or access denied (403).
    #[error("{0}")]
    Unauthorized(String),
    /// The manifest, tag or blob is not on the registry.
    #[error("{0}")]
    NotFound(String),
    /// The registry answered something berth cannot use: a schema 1
    /// manifest, a platform it lacks, a malformed document.
    #[error("{0}")]
    Invalid(String),
    /// Content whose digest or size is not the one asked for.
    #[error("{0}")]
    Digest(String),
    /// Any other answer of the registry.
    #[error("{0}")]
    Registry(String),
    /// Something the registry does not offer (a search, on any but an index).
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Image(#[from] berth_image::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl berth_core::Kinded for Error {
    fn kind(&self) -> berth_core::ErrorKind {
        use berth_core::ErrorKind as K;
        match self {
            Error::Transport(_) | Error::Registry(_) => K::Internal,
            Error::Unauthorized(_) => K::Unauthorized,
            Error::NotFound(_) => K::NotFound,
            Error::Invalid(_) | Error::Digest(_) => K::InvalidArgument,
            Error::Unsupported(_) => K::Unsupported,
            Error::Image(e) => e.kind(),
        }
    }
}
