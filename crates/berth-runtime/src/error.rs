//! Runtime errors. Each carries the id or path it is about, and its kind.

use std::path::PathBuf;

use berth_core::{ErrorKind, Kinded};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Id(#[from] berth_core::IdError),
    #[error("container with id {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("invalid bundle config {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("rootfs {0} does not exist or is not a directory")]
    NoRootfs(PathBuf),
    #[error("cannot {action} container {id}: it is {status}")]
    BadState { id: String, action: &'static str, status: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    #[error("unable to start container process: {0}")]
    Init(String),
    #[error("{0}")]
    Invalid(String),
    #[error("hook {path} failed: {reason}")]
    Hook { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn errno(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let what = what.into();
        move |e| Error::Io { what, source: std::io::Error::from_raw_os_error(e as i32) }
    }
}

impl Kinded for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Id(_) | Error::Spec { .. } | Error::NoRootfs(_) | Error::Invalid(_) => ErrorKind::InvalidArgument,
            Error::Exists(_) => ErrorKind::AlreadyExists,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::BadState { .. } => ErrorKind::Conflict,
            Error::Io { source, .. } => ErrorKind::from_errno(source.raw_os_error().unwrap_or(0)),
            Error::Cgroup(e) => e.kind(),
            Error::Init(_) | Error::Hook { .. } => ErrorKind::Internal,
        }
    }
}
