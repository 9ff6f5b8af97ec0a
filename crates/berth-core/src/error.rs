//! Error kinds. Every berth error maps to one kind; the API maps kinds to HTTP
//! status codes and the command lines map them to exit codes, each in one
//! place.

/// What went wrong, independent of where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request or input is malformed (bad JSON, bad name, bad option).
    InvalidArgument,
    /// The thing asked for does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The object is in a state that does not allow the operation.
    Conflict,
    /// The object is already in the state asked for; nothing was done.
    NotModified,
    /// The kernel or the file system refused.
    PermissionDenied,
    /// Credentials were missing or refused (by a registry).
    Unauthorized,
    /// The feature is not supported on this host or in this configuration.
    Unsupported,
    /// Anything else: an unexpected failure of the system.
    Internal,
}

/// Errors that know their kind.
pub trait Kinded {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}

impl ErrorKind {
    /// Kind of a raw OS error number.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ENOENT | libc::ESRCH => Self::NotFound,
            libc::EEXIST => Self::AlreadyExists,
            libc::EPERM | libc::EACCES => Self::PermissionDenied,
            libc::EINVAL => Self::InvalidArgument,
            libc::EBUSY => Self::Conflict,
            libc::ENOSYS | libc::EOPNOTSUPP => Self::Unsupported,
            _ => Self::Internal,
        }
    }
}
