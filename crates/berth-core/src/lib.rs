//! Foundations shared by every berth crate: error kinds, typed ids, atomic
//! record writes and path resolution inside a root directory.

pub mod atomic;
pub mod error;
pub mod id;
pub mod mountinfo;
pub mod perm;
pub mod rootfs;
pub mod sockpath;
pub mod sysctl;
pub mod term;
pub mod time;
pub mod twoslot;
pub mod units;
pub mod url;

pub use error::{ErrorKind, Kinded};

/// Write one line to stderr without ever panicking, as `eprintln!` does
/// when the write fails: a log file on a full disk, a closed pipe. A
/// daemon, a shim or a command must not die of its own diagnostics.
pub fn say(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{args}");
}
pub use id::{ContainerId, IdError};
