//! Pods' network namespaces, pinned on files under the exec root. One is
//! kept made ahead, on `spare`: a pod's CNI ADD, the longest step of its
//! start, can then begin as soon as the spare is bound on the pod's own
//! file (a bind mount and an unmount), instead of after berth-init has
//! made and pinned a namespace (about 1.7 ms). Once a pod takes the
//! spare, another is made in the background.
//!
//! The spare is an empty namespace with only its loopback, down. It goes
//! when the CRI stops serving; a daemon killed with one pinned finds it at
//! its next start among the pins no record names, which restore lets go.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use berth_engine::Engine;

/// Where the spare is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Spare {
    #[default]
    None,
    /// A refill is pinning it.
    Making,
    /// Pinned, free to take.
    Ready,
    /// A pod is taking it.
    Moving,
}

#[derive(Debug, Default)]
struct State {
    spare: Spare,
    closed: bool,
}

/// How long a pod waits for a spare being made before it makes its own
/// namespace: berth-init makes one in about 1.7 ms.
const WAIT_MAKING: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(crate) struct Pins {
    dir: PathBuf,
    state: Mutex<State>,
    /// Told when a refill is done.
    made: Condvar,
}

impl Pins {
    pub(crate) fn new(dir: PathBuf) -> Pins {
        Pins { dir, state: Mutex::new(State::default()), made: Condvar::new() }
    }

    /// Where pods' network namespaces are pinned.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn spare(&self) -> PathBuf {
        self.dir.join("spare")
    }

    /// A file to pin a pod's namespace on.
    pub(crate) fn new_file(&self) -> PathBuf {
        self.dir.join(berth_engine::names::new_id())
    }

    /// Pin a namespace on `file`: the spare if there is one (or one being
    /// made, which is nearly done), else a new one. Blocks (run it on a
    /// blocking thread).
    pub(crate) fn pin(&self, engine: &Engine, file: &Path) -> berth_engine::Result<()> {
        let claimed = self.state.lock().ok().and_then(|mut st| {
            let deadline = Instant::now() + WAIT_MAKING;
            while st.spare == Spare::Making && !st.closed {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self.made.wait_timeout(st, left).ok()?.0;
            }
            let free = st.spare == Spare::Ready;
            if free {
                st.spare = Spare::Moving;
            }
            Some(free)
        });
        let claimed = claimed.unwrap_or(false);
        if claimed {
            let moved = engine.move_netns(&self.spare(), file);
            if let Err(e) = &moved {
                tracing::warn!("take the spare network namespace: {e}");
                let _ = engine.unpin_netns(&self.spare());
            }
            // Free for a refill only now: it pins on the same file.
            if let Ok(mut st) = self.state.lock() {
                st.spare = Spare::None;
            }
            if moved.is_ok() {
                return Ok(());
            }
        }
        engine.pin_netns(file)
    }

    /// Make a spare on a blocking thread, unless there is one, one is
    /// being made or moved, or the CRI has stopped.
    pub(crate) fn refill(self: &Arc<Self>, engine: &Arc<Engine>) {
        {
            let Ok(mut st) = self.state.lock() else { return };
            if st.spare != Spare::None || st.closed {
                return;
            }
            st.spare = Spare::Making;
        }
        let (pins, engine) = (self.clone(), engine.clone());
        tokio::task::spawn_blocking(move || {
            let made = engine.pin_netns(&pins.spare());
            let Ok(mut st) = pins.state.lock() else { return };
            st.spare = Spare::None;
            pins.made.notify_all();
            match made {
                Ok(()) if st.closed => {
                    drop(st);
                    let _ = engine.unpin_netns(&pins.spare());
                }
                Ok(()) => st.spare = Spare::Ready,
                Err(e) => tracing::warn!("pin a spare network namespace: {e}"),
            }
        });
    }

    /// No spare from now on; the one there is goes. A spare being made
    /// goes as soon as it is.
    pub(crate) fn close(&self, engine: &Engine) {
        let spare = self.state.lock().is_ok_and(|mut st| {
            st.closed = true;
            let free = st.spare == Spare::Ready;
            if free {
                st.spare = Spare::None;
            }
            free
        });
        if spare {
            if let Err(e) = engine.unpin_netns(&self.spare()) {
                tracing::warn!("{e}");
            }
        }
    }
}
