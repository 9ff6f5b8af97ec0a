//! Errors of the image store, each with its kind.

use berth_core::{ErrorKind, Kinded};

use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    Digest(#[from] DigestError),
    /// Bad input: a malformed archive, tar, manifest or config.
    #[error("{0}")]
    Invalid(String),
    /// A tar entry that would write outside the layer.
    #[error("invalid layer entry {name:?}: {why}")]
    Breakout { name: String, why: &'static str },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// An `Io` error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

impl Kinded for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(e) => ErrorKind::from_errno(e),
                None if source.kind() == std::io::ErrorKind::UnexpectedEof => ErrorKind::InvalidArgument,
                None if source.kind() == std::io::ErrorKind::InvalidData => ErrorKind::InvalidArgument,
                None => ErrorKind::Internal,
            },
            Error::DigestMismatch { .. }
            | Error::Reference(_)
            | Error::Digest(_)
            | Error::Invalid(_)
            | Error::Breakout { .. } => ErrorKind::InvalidArgument,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
