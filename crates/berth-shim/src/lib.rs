//! berth-shim: the parent of one container. It holds the container's
//! stdio, writes its log, serves attach and resize, and records the exit
//! status on disk before it exits, so berthd can restart without losing a
//! container.

pub mod jsonlog;
