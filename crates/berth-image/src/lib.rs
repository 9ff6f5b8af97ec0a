//! The image store: references, a content store of blobs, unpacked layers
//! shared by chain id and mounted with overlayfs, image records, and the
//! archive formats of `docker save` and the OCI image layout.
//!
//! Synchronous at its core; the engine calls it from blocking tasks.

pub mod digest;
pub mod reference;

pub use digest::{Algorithm, ChainId, DiffId, Digest, DigestError, ImageId};
pub use reference::{Reference, ReferenceError};
pub mod content;
pub mod error;

pub use content::ContentStore;
pub use error::{Error, Result};
pub mod layers;
pub mod overlay;
mod record;
pub mod targuard;
pub mod unpack;

pub use layers::{Layer, LayerStore, RwLayer};
pub use overlay::OverlayMount;
pub mod config;
pub mod images;

pub use config::{ImageConfig, RunConfig};
pub use images::{ContainerUse, Deleted, ImageRecord, ImageStore};
pub mod archive;
pub mod changes;
pub mod commit;
pub mod copy;
pub mod fixture;
pub mod instruction;
pub mod rootfs;
pub mod save;
#[cfg(test)]
mod testdir;
