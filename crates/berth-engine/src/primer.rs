//! Keeping the kernel's cgroup migration lock switched while containers
//! are being made.
//!
//! Every container process joins its cgroup by a write to `cgroup.procs`,
//! which write-locks `cgroup_threadgroup_rwsem`. In its fast mode that
//! first waits a full RCU grace period, while holding `cgroup_mutex`, which
//! every cgroup `mkdir` also takes (`berth_cgroups`' prime module tells
//! more). On a 2-CPU host a grace period is 7 to 15 ms: longer than all the
//! rest of a container's start. The lock goes back to its fast mode one
//! grace period after its last writer, so a migration at least once per
//! grace period keeps it switched, and each one then costs microseconds.
//!
//! Containers come in bursts: a pod's sandbox and its containers, `docker
//! run` in a loop, a compose project, kubelet's pods after a node starts.
//! So each container operation "touches" the primer: it writes the daemon
//! into its own cgroup (a migration that moves nothing) on a thread of its
//! own, at once and then every `PAUSE`, until `LINGER` after the last
//! touch. The first write of a burst waits the grace period beside the
//! container's other set-up; the container's own migration, and those of
//! the burst's later containers, find the lock switched. An idle daemon
//! writes nothing and has no thread.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after the last container operation the lock is kept switched.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// The pause between writes: under a grace period's length (7.5 ms idle
/// on the 2-CPU host these numbers come from). A write in the switched
/// mode costs about 25 us, so a burst's writes take about 1% of a CPU.
const PAUSE: Duration = Duration::from_millis(2);

#[derive(Debug)]
pub(crate) struct Primer {
    /// The `cgroup.procs` file of the daemon's own cgroup.
    procs: PathBuf,
    linger: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Writes go on until then.
    until: Instant,
    running: bool,
    /// Writes done, for tests.
    writes: u64,
}

impl Primer {
    pub(crate) fn new(procs: PathBuf, linger: Duration) -> Arc<Primer> {
        let state = State { until: Instant::now(), running: false, writes: 0 };
        Arc::new(Primer { procs, linger, state: Mutex::new(state) })
    }

    /// A container process is about to join its cgroup: start writing, or
    /// keep writing for `linger` more.
    pub(crate) fn touch(self: &Arc<Self>) {
        let Ok(mut st) = self.state.lock() else { return };
        st.until = Instant::now() + self.linger;
        if st.running {
            return;
        }
        st.running = true;
        drop(st);
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("cgroup-primer".into()).spawn(move || me.run());
        if spawned.is_err() {
            // Only a head start: the container's own migration waits, as it
            // would have anyway.
            if let Ok(mut st) = self.state.lock() {
                st.running = false;
            }
        }
    }

    fn run(&self) {
        // One open file for the whole burst; each write is one migration.
        // A write refused takes the lock all the same (pure v2 refuses one
        // into a cgroup with controllers enabled for its children).
        let mut file = std::fs::OpenOptions::new().write(true).open(&self.procs).ok();
        let me = std::process::id().to_string();
        loop {
            let opened = file.as_mut().map(|f| f.write_all(me.as_bytes())).is_some();
            {
                let Ok(mut st) = self.state.lock() else { return };
                st.writes += 1;
                if !opened || Instant::now() >= st.until {
                    st.running = false;
                    return;
                }
            }
            std::thread::sleep(PAUSE);
        }
    }

    #[cfg(test)]
    fn snapshot(&self) -> (bool, u64) {
        let st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (st.running, st.writes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A directory of the test's own, removed even when the test fails.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let d = std::env::temp_dir().join(format!("berth-primer-{}", crate::names::new_id()));
            std::fs::create_dir(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn wait_stopped(p: &Primer) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (running, writes) = p.snapshot();
            if !running {
                return writes;
            }
            assert!(Instant::now() < deadline, "the primer did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn writes_until_the_linger_passes_then_stops_and_starts_again() {
        let dir = Dir::new();
        let procs = dir.0.join("cgroup.procs");
        std::fs::write(&procs, "").unwrap();
        let p = Primer::new(procs.clone(), Duration::from_millis(60));
        p.touch();
        let first = wait_stopped(&p);
        // Written again and again while warm, one pid per write.
        assert!(first > 1, "{first} writes");
        let pid = std::process::id().to_string();
        let body = std::fs::read_to_string(&procs).unwrap();
        assert_eq!(body, pid.repeat(first as usize));
        // Idle: nothing more is written.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(p.snapshot(), (false, first));
        // A later touch starts a new burst.
        p.touch();
        assert!(wait_stopped(&p) > first);
    }

    #[test]
    fn a_file_that_cannot_be_opened_ends_the_burst() {
        let dir = Dir::new();
        let p = Primer::new(dir.0.join("missing/cgroup.procs"), Duration::from_secs(60));
        p.touch();
        assert_eq!(wait_stopped(&p), 1);
    }
}
