//! Foundations shared by every berth crate: error kinds, typed ids, atomic
//! record writes and path resolution inside a root directory.

pub mod atomic;
pub mod error;
pub mod id;
pub mod perm;
pub mod rootfs;
pub mod sockpath;
pub mod sysctl;
pub mod time;
pub mod units;

pub use error::{ErrorKind, Kinded};
pub use id::{ContainerId, IdError};
