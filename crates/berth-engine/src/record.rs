//! A container's record on disk, in two files of its directory:
//! `container.json`, replaced whole and synced at every change the user
//! asks for, and `state`, whose two slots are written in place without a
//! sync at every change of its process's state (`Engine::save_state`).
//! Each write carries a generation from one counter of the daemon; the
//! record is the newest whole one of the two files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Container;

pub(crate) const DURABLE: &str = "container.json";
pub(crate) const VOLATILE: &str = "state";

/// A record as written: the container's fields and its generation.
#[derive(Serialize)]
pub(crate) struct Versioned<'a> {
    #[serde(flatten)]
    pub rec: &'a Container,
    pub generation: u64,
}

/// The generation of a record (0 in one from before generations).
#[derive(Deserialize)]
struct Generation {
    #[serde(default)]
    generation: u64,
}

fn parse(body: &[u8]) -> Option<(u64, Container)> {
    let g: Generation = serde_json::from_slice(body).ok()?;
    let c: Container = serde_json::from_slice(body).ok()?;
    Some((g.generation, c))
}

/// The newest whole record in the container directory `dir`, with its
/// generation; None when neither file holds one.
pub(crate) fn load(dir: &Path) -> Option<(u64, Container)> {
    let durable = std::fs::read(dir.join(DURABLE)).ok().and_then(|b| parse(&b));
    let volatile = berth_core::twoslot::read(&dir.join(VOLATILE)).ok().flatten().and_then(|(_, b)| parse(&b));
    match (durable, volatile) {
        (Some(d), Some(v)) => Some(if v.0 > d.0 { v } else { d }),
        (d, v) => d.or(v),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(dir: &Path, status: &str, generation: u64, durable: bool) {
        let mut c = Container { id: "c1".into(), ..Default::default() };
        c.state.status = serde_json::from_value(serde_json::json!(status)).unwrap();
        let body = serde_json::to_vec(&Versioned { rec: &c, generation }).unwrap();
        if durable {
            std::fs::write(dir.join(DURABLE), body).unwrap();
        } else {
            berth_core::twoslot::write(&dir.join(VOLATILE), generation, &body, 0o600).unwrap();
        }
    }

    fn status(dir: &Path) -> String {
        let (_, c) = load(dir).unwrap();
        serde_json::to_value(c.state.status).unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn the_newest_of_both_files_is_the_record() {
        let dir = std::env::temp_dir().join(format!("berth-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load(&dir).is_none());
        record(&dir, "created", 5, true);
        assert_eq!(status(&dir), "created");
        record(&dir, "running", 6, false);
        assert_eq!(status(&dir), "running");
        record(&dir, "exited", 7, false);
        assert_eq!(status(&dir), "exited");
        // A change the user asked for, written whole after them.
        record(&dir, "paused", 8, true);
        assert_eq!(status(&dir), "paused");
        assert_eq!(load(&dir).unwrap().0, 8);
        // A record from before generations, with no state file.
        std::fs::remove_file(dir.join(VOLATILE)).unwrap();
        let c = Container { id: "c1".into(), ..Default::default() };
        std::fs::write(dir.join(DURABLE), serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(load(&dir).unwrap().0, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
