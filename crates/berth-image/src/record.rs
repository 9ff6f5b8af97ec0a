//! The store's JSON records: read (absent is `None`), written atomically,
//! and listed (a record that does not parse is skipped, as a half-written
//! one cannot exist).

use std::fmt::Display;
use std::path::{Path, PathBuf};

use berth_core::atomic::Durability;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

pub(crate) fn read<T: DeserializeOwned>(path: &Path, what: impl Display) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::Invalid(format!("{what}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { what: format!("read {what}"), source: e }),
    }
}

pub(crate) fn write<T: Serialize>(path: &Path, value: &T, what: impl Display) -> Result<()> {
    write_as(path, value, what, Durability::Full)
}

/// [`write`], as durable as `d` says.
pub(crate) fn write_as<T: Serialize>(path: &Path, value: &T, what: impl Display, d: Durability) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    berth_core::atomic::replace(path, &json, 0o600, d).map_err(Error::io(format!("write {what}")))
}

/// The records at `file(entry)` for each entry of `dir`; dot entries (the
/// temp files of atomic writes) are not records.
pub(crate) fn list<T: DeserializeOwned>(dir: &Path, file: impl Fn(PathBuf) -> PathBuf) -> Result<Vec<T>> {
    let rd = std::fs::read_dir(dir).map_err(Error::io(format!("list {}", dir.display())))?;
    Ok(rd
        .flatten()
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .filter_map(|e| std::fs::read(file(e.path())).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect())
}
