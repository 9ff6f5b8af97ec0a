//! The engine's errors; each has a kind the API maps to a status code.

use berth_core::{ErrorKind, Kinded};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Not allowed at all (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The object is already in the state asked for (HTTP 304).
    #[error("{0}")]
    NotModified(String),
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error(transparent)]
    Network(#[from] berth_network::Error),
    #[error(transparent)]
    Registry(#[from] berth_registry::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// Whether this is a 304 rather than a failure.
    pub fn is_not_modified(&self) -> bool {
        matches!(self, Error::NotModified(_))
    }
}

impl Kinded for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Invalid(_) => ErrorKind::InvalidArgument,
            Error::Forbidden(_) => ErrorKind::PermissionDenied,
            Error::NotModified(_) => ErrorKind::NotModified,
            Error::Image(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Registry(e) => e.kind(),
            Error::Io { source, .. } => source.raw_os_error().map_or(ErrorKind::Internal, ErrorKind::from_errno),
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}
