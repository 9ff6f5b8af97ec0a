//! Events, as `/events` streams them: a broadcast to live listeners and a
//! short history for `since`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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
        let time_nano = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        let e = Event { typ: typ.into(), action: action.into(), actor_id: actor_id.into(), attributes, time_nano };
        if let Ok(mut h) = self.history.lock() {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(e.clone());
        }
        let _ = self.tx.send(e);
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
