//! berth's OCI runtime: an OCI runtime-spec bundle (config.json + rootfs)
//! turned into a running, isolated process, with runc's lifecycle.
//!
//! The container's init is a fork of the calling process, not a re-exec of a
//! runtime binary: the parent and the child share one path through
//! `create.rs` and `init.rs`, synchronised at numbered points over a socket.
//! Everything here is synchronous and expects a single-threaded caller
//! (fork in a multi-threaded process would copy locked allocator state).

mod cgroup;
pub mod console;
mod create;
mod delete;
mod error;
mod exec;
pub mod features;
mod hooks;
mod init;
mod lifecycle;
mod mounts;
mod namespaces;
mod process;
mod rootfs;
mod seccomp;
mod spec;
mod state;
mod sync;

pub use berth_cgroups::{Hierarchies, V1Mount};
pub use create::{create, CreateOptions};
pub use delete::delete;
pub use error::{Error, Result};
pub use exec::{exec, ExecOptions, ExecOutcome, ExecProcess, ProcessOverrides};
pub use lifecycle::{kill, list, pause, ps, resume, start, wait_exit, ExitStatus};
pub use spec::load_spec;
pub use state::{Container, OciState, Status};

/// Where a runtime keeps its state by default (runc uses /run/runc).
pub const DEFAULT_ROOT: &str = "/run/berth-runtime";
