//! Records on disk in two files: one replaced whole and synced at every
//! change the user asks for, and one whose two slots are written in place
//! without a sync (`berth_core::twoslot`) at changes a power loss makes
//! moot, such as a process's state. Each write carries a generation from
//! one counter of the daemon; the record is the newest whole one of the
//! two files. A container's are `container.json` and `state` in its
//! directory (`Engine::save`, `Engine::save_state`); the CRI's records
//! use the same.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(crate) const DURABLE: &str = "container.json";
pub(crate) const VOLATILE: &str = "state";

/// The generations given to records' writes: above every one written or
/// read before (the counter starts at the clock, in ns, and is raised past
/// each record read back, in case the clock went back).
#[derive(Debug)]
pub struct Generations(AtomicU64);

impl Default for Generations {
    fn default() -> Self {
        Generations(AtomicU64::new(u64::try_from(berth_core::time::now_nanos()).unwrap_or(0)))
    }
}

impl Generations {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A record of generation `g` was read back.
    pub fn seen(&self, g: u64) {
        self.0.fetch_max(g, Ordering::Relaxed);
    }
}

/// A record as written: its fields and its generation.
#[derive(Serialize)]
struct Versioned<'a, T> {
    #[serde(flatten)]
    rec: &'a T,
    generation: u64,
}

/// `rec` as JSON, with `generation`.
pub fn body<T: Serialize>(rec: &T, generation: u64) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Versioned { rec, generation })
}

/// The generation of a record (0 in one from before generations).
#[derive(Deserialize)]
struct Generation {
    #[serde(default)]
    generation: u64,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Option<(u64, T)> {
    let g: Generation = serde_json::from_slice(body).ok()?;
    let r: T = serde_json::from_slice(body).ok()?;
    Some((g.generation, r))
}

/// The newest whole record of the file replaced whole at `durable` and
/// the slots at `volatile`, with its generation; None when neither holds
/// one.
pub fn load<T: DeserializeOwned>(durable: &Path, volatile: &Path) -> Option<(u64, T)> {
    let whole = std::fs::read(durable).ok().and_then(|b| parse(&b));
    let slots = berth_core::twoslot::read(volatile).ok().flatten().and_then(|(_, b)| parse(&b));
    match (whole, slots) {
        (Some(w), Some(s)) => Some(if s.0 > w.0 { s } else { w }),
        (w, s) => w.or(s),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::Container;

    fn record(dir: &Path, status: &str, generation: u64, durable: bool) {
        let mut c = Container { id: "c1".into(), ..Default::default() };
        c.state.status = serde_json::from_value(serde_json::json!(status)).unwrap();
        let body = body(&c, generation).unwrap();
        if durable {
            std::fs::write(dir.join(DURABLE), body).unwrap();
        } else {
            berth_core::twoslot::write(&dir.join(VOLATILE), generation, &body, 0o600).unwrap();
        }
    }

    fn load_in(dir: &Path) -> Option<(u64, Container)> {
        load(&dir.join(DURABLE), &dir.join(VOLATILE))
    }

    fn status(dir: &Path) -> String {
        let (_, c) = load_in(dir).unwrap();
        serde_json::to_value(c.state.status).unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn the_newest_of_both_files_is_the_record() {
        let dir = std::env::temp_dir().join(format!("berth-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load_in(&dir).is_none());
        record(&dir, "created", 5, true);
        assert_eq!(status(&dir), "created");
        record(&dir, "running", 6, false);
        assert_eq!(status(&dir), "running");
        record(&dir, "exited", 7, false);
        assert_eq!(status(&dir), "exited");
        // A change the user asked for, written whole after them.
        record(&dir, "paused", 8, true);
        assert_eq!(status(&dir), "paused");
        assert_eq!(load_in(&dir).unwrap().0, 8);
        // A record from before generations, with no state file.
        std::fs::remove_file(dir.join(VOLATILE)).unwrap();
        let c = Container { id: "c1".into(), ..Default::default() };
        std::fs::write(dir.join(DURABLE), serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(load_in(&dir).unwrap().0, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
