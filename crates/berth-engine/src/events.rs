//! Events, as `/events` streams them: a broadcast to live listeners and a
//! short history for `since`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, `daemon`…
    pub typ: String,
    pub action: String,
    pub actor_id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i64,
}

const HISTORY: usize = 1024;

/// The most bytes of one attribute's key or value an event keeps.
const ATTR_MAX: usize = 1024;
/// The most bytes of attributes one event keeps. With [`HISTORY`] events
/// kept, the history holds at most 8 MiB of them, whatever the labels of
/// the containers are.
const ATTRS_MAX: usize = 8 << 10;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The attributes an event keeps: each cut to [`ATTR_MAX`], and no more
/// than [`ATTRS_MAX`] in all. The ones berth sets (name, image, exit code…)
/// are short and come first in key order only by chance, so they are kept
/// before any other.
fn bounded(attrs: BTreeMap<String, String>, own: &[&str]) -> BTreeMap<String, String> {
    let (mine, rest): (Vec<_>, Vec<_>) = attrs.into_iter().partition(|(k, _)| own.contains(&k.as_str()));
    let mut out = BTreeMap::new();
    let mut total = 0;
    for (k, v) in mine.into_iter().chain(rest) {
        let (k, v) = (cut(k, ATTR_MAX), cut(v, ATTR_MAX));
        if total + k.len() + v.len() > ATTRS_MAX {
            continue;
        }
        total += k.len() + v.len();
        out.insert(k, v);
    }
    out
}

#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events { tx: broadcast::channel(1024).0, history: Mutex::new(VecDeque::new()) }
    }
}

impl Events {
    pub fn publish(&self, typ: &str, action: &str, actor_id: &str, attributes: BTreeMap<String, String>) {
        let attributes = bounded(attributes, &["name", "image", "exitCode", "container", "type", "driver"]);
        let time_nano = berth_core::time::now_nanos();
        let e = Event { typ: typ.into(), action: action.into(), actor_id: actor_id.into(), attributes, time_nano };
        if let Ok(mut h) = self.history.lock() {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// Clients following events now (`/info`'s NEventsListener).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Past events from `since_nano` on, and a receiver for what follows
    /// (taken together so nothing falls between them).
    pub fn subscribe(&self, since_nano: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock();
        let rx = self.tx.subscribe();
        let past = match (since_nano, h) {
            (Some(s), Ok(h)) => h.iter().filter(|e| e.time_nano >= s).cloned().collect(),
            _ => vec![],
        };
        (past, rx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_bounded_and_berth_s_own_are_kept() {
        let mut a = BTreeMap::new();
        for i in 0..100 {
            a.insert(format!("a{i:03}"), "x".repeat(100_000));
        }
        a.insert("name".into(), "web".into());
        a.insert("zz".into(), "é".repeat(1000));
        let b = bounded(a, &["name"]);
        assert_eq!(b["name"], "web");
        assert!(b.values().all(|v| v.len() <= ATTR_MAX));
        assert!(b.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= ATTRS_MAX);
        let e = Events::default();
        e.publish("container", "create", "id", b);
        assert_eq!(e.subscribe(Some(0)).0.len(), 1);
        assert!(cut("ééé".into(), 3) == "é");
    }
}
