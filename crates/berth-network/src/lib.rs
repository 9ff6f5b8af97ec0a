//! berth's networks: bridges and veth pairs made through netlink, the
//! addresses handed out on each network, NAT and published ports in an
//! nftables table of berth's own, and the records of user networks.
//!
//! Everything here is synchronous; the engine calls it from its blocking
//! pool. Namespaces are only entered, never made (see [`netns`]).

pub mod cni;
pub mod dns;
pub mod ipam;
pub mod ipam6;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod store;

use berth_core::{ErrorKind, Kinded};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Not allowed at all (HTTP 403), as removing a predefined network.
    #[error("{0}")]
    Forbidden(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

impl Kinded for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Invalid(_) => ErrorKind::InvalidArgument,
            Error::Forbidden(_) => ErrorKind::PermissionDenied,
            Error::Io { source, .. } => source.raw_os_error().map_or(ErrorKind::Internal, ErrorKind::from_errno),
        }
    }
}

/// Random bytes from the kernel (getrandom(2)), or from the clock and the
/// pid if it has none to give: names and MACs need only be unlikely to meet.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SAFETY: b is a writable buffer of N bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), N, 0) };
    if n != N as isize {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let seed = t ^ (u128::from(std::process::id()) << 64);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    b
}
