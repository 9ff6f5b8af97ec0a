//! Restart policies (no, on-failure[:N], always, unless-stopped) with
//! Docker's back-off: 100 ms before the first restart, doubled at each
//! one up to a minute, back to the start once a run lasted 10 s.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Container, RestartName, Status};
use crate::{Engine, Entry};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const GOOD_RUN: Duration = Duration::from_secs(10);

/// Restarts by policy since the last start by the user.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    count: i64,
    delay: Duration,
}

impl Backoff {
    /// A start by the user: the policy begins afresh.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// Whether the policy of `c`, which ended with `code` after running for
    /// `ran`, restarts it, and after how long.
    pub fn decide(&mut self, c: &Container, code: i32, ran: Duration) -> Option<Duration> {
        if c.state.stopped_by_user || c.host.auto_remove {
            return None;
        }
        let p = &c.host.restart_policy;
        let restart = match p.name {
            RestartName::No => false,
            RestartName::Always | RestartName::UnlessStopped => true,
            RestartName::OnFailure => code != 0 && (p.maximum_retry_count == 0 || self.count < p.maximum_retry_count),
        };
        if !restart {
            return None;
        }
        if ran >= GOOD_RUN {
            self.delay = Duration::ZERO;
        }
        self.delay = if self.delay.is_zero() { FIRST_DELAY } else { (self.delay * 2).min(MAX_DELAY) };
        self.count += 1;
        Some(self.delay)
    }
}

/// How long a container ran, from its record's times.
pub(crate) fn run_time(c: &Container, finished_at: &str) -> Duration {
    let start = crate::logs::rfc3339_nanos(&c.state.started_at);
    let end = crate::logs::rfc3339_nanos(finished_at);
    match (start, end) {
        (Some(a), Some(b)) if b > a => Duration::from_nanos((b - a) as u64),
        _ => Duration::ZERO,
    }
}

/// Whether a container that is not running is started when the daemon
/// starts: `always` ones, `unless-stopped` ones the user did not stop, and
/// those that were waiting to restart when the daemon went.
pub(crate) fn start_on_open(c: &Container) -> bool {
    match c.state.status {
        Status::Restarting => true,
        Status::Exited => match c.host.restart_policy.name {
            RestartName::Always => true,
            RestartName::UnlessStopped => !c.state.stopped_by_user,
            _ => false,
        },
        _ => false,
    }
}

impl Engine {
    /// Start `e` again after `delay`, unless the user stopped or removed it
    /// in between (which moves it out of `restarting`).
    pub(crate) fn restart_later(self: &Arc<Self>, e: Arc<Entry>, delay: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = e.op.lock().await;
            let waiting = e.rec.lock().map(|r| r.state.status == Status::Restarting).unwrap_or(false);
            if waiting {
                let _ = engine.start_locked(&e).await;
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::RestartPolicy;

    fn with(name: RestartName, max: i64) -> Container {
        let mut c = Container::default();
        c.host.restart_policy = RestartPolicy { name, maximum_retry_count: max };
        c
    }

    #[test]
    fn policies_decide_as_docker() {
        let short = Duration::from_millis(5);
        assert_eq!(Backoff::default().decide(&with(RestartName::No, 0), 1, short), None);
        assert!(Backoff::default().decide(&with(RestartName::Always, 0), 0, short).is_some());
        assert_eq!(Backoff::default().decide(&with(RestartName::OnFailure, 0), 0, short), None);
        let mut b = Backoff::default();
        let c = with(RestartName::OnFailure, 2);
        assert!(b.decide(&c, 3, short).is_some());
        assert!(b.decide(&c, 3, short).is_some());
        assert_eq!(b.decide(&c, 3, short), None, "at most two retries");
        let mut stopped = with(RestartName::Always, 0);
        stopped.state.stopped_by_user = true;
        assert_eq!(Backoff::default().decide(&stopped, 0, short), None);
    }

    #[test]
    fn the_delay_doubles_up_to_a_minute_and_resets_after_a_good_run() {
        let c = with(RestartName::Always, 0);
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        let delays: Vec<u128> = (0..4).map(|_| b.decide(&c, 0, short).unwrap().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        for _ in 0..20 {
            b.decide(&c, 0, short);
        }
        assert_eq!(b.decide(&c, 0, short), Some(MAX_DELAY));
        assert_eq!(b.decide(&c, 0, GOOD_RUN), Some(FIRST_DELAY));
    }

    #[test]
    fn the_daemon_starts_always_and_unless_stopped_containers() {
        let mut c = with(RestartName::UnlessStopped, 0);
        c.state.status = Status::Exited;
        assert!(start_on_open(&c));
        c.state.stopped_by_user = true;
        assert!(!start_on_open(&c));
        let mut a = with(RestartName::Always, 0);
        a.state.status = Status::Exited;
        a.state.stopped_by_user = true;
        assert!(start_on_open(&a));
        let mut n = with(RestartName::No, 0);
        n.state.status = Status::Restarting;
        assert!(start_on_open(&n));
    }
}
