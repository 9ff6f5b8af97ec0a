//! Health checks as Docker runs them (moby `daemon/health.go`): the
//! container's check command is run by exec at an interval, and its exit
//! code says healthy (0) or failing (anything else, a timeout included).
//! `Retries` failures in a row make the container unhealthy; failures in
//! the start period do not count until a first success. The last five
//! results are kept, and each change of status is an event.
//!
//! Beyond Docker, as podman has it (`--health-on-failure`), a container
//! that turns unhealthy can be killed, restarted or stopped (moby #28400).

use std::sync::Arc;
use std::time::Duration;

use berth_shim_proto::Request;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::model::{Container, Health, HealthConfig, HealthResult, HealthStatus, OnFailure, Status};
use crate::{shim, Engine, Entry, Error, ExecConfig, Result};
use berth_core::time::now_nanos;

/// moby's defaults (`daemon/health.go`), in nanoseconds.
const DEFAULT_INTERVAL: i64 = 30_000_000_000;
const DEFAULT_TIMEOUT: i64 = 30_000_000_000;
const DEFAULT_START_INTERVAL: i64 = 5_000_000_000;
const DEFAULT_RETRIES: i64 = 3;
/// Output kept of one run; the rest is cut and marked with "...".
const MAX_OUTPUT: usize = 4096;
/// Results kept in `State.Health.Log`.
const MAX_LOG: usize = 5;
/// The shortest duration Docker accepts (`container.MinimumDuration`).
const MIN_DURATION: i64 = 1_000_000;
/// How long an exec may take to start, apart from the check's timeout.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a killed check is waited for.
const KILL_WAIT: Duration = Duration::from_secs(5);

fn or_default(v: i64, default: i64) -> Duration {
    Duration::from_nanos(if v <= 0 { default } else { v } as u64)
}

/// The request's check over the image's, as moby's `merge` does: no check
/// in the request takes the image's; each field the request leaves unset
/// takes the image's value.
pub(crate) fn merge(user: Option<HealthConfig>, image: Option<&Value>) -> Result<Option<HealthConfig>> {
    let image = image.filter(|v| !v.is_null()).map(from_image).transpose()?;
    Ok(match (user, image) {
        (None, image) => image,
        (Some(u), None) => Some(u),
        (Some(mut u), Some(i)) => {
            if u.test.is_empty() {
                u.test = i.test;
            }
            for (mine, theirs) in [
                (&mut u.interval, i.interval),
                (&mut u.timeout, i.timeout),
                (&mut u.start_period, i.start_period),
                (&mut u.start_interval, i.start_interval),
                (&mut u.retries, i.retries),
            ] {
                if *mine == 0 {
                    *mine = theirs;
                }
            }
            Some(u)
        }
    })
}

/// An image config's `Healthcheck`, in Docker's JSON.
fn from_image(v: &Value) -> Result<HealthConfig> {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Wire {
        test: Option<Vec<String>>,
        interval: i64,
        timeout: i64,
        start_period: i64,
        start_interval: i64,
        retries: i64,
    }
    let w: Wire =
        serde_json::from_value(v.clone()).map_err(|e| Error::Invalid(format!("the image's Healthcheck: {e}")))?;
    Ok(HealthConfig {
        test: w.test.unwrap_or_default(),
        interval: w.interval,
        timeout: w.timeout,
        start_period: w.start_period,
        start_interval: w.start_interval,
        retries: w.retries,
    })
}

/// A check as an image config keeps it (Docker's JSON, zero fields left out).
pub(crate) fn to_image(h: &HealthConfig) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("Test".into(), serde_json::json!(h.test));
    for (k, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
        ("Retries", h.retries),
    ] {
        if v != 0 {
            m.insert(k.into(), serde_json::json!(v));
        }
    }
    Value::Object(m)
}

/// moby's `validateHealthCheck`, and a test of a kind berth runs: moby
/// only warns of an unknown kind and then never checks.
pub(crate) fn verify(h: &HealthConfig) -> Result<()> {
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if v != 0 && v < MIN_DURATION {
            return Err(Error::Invalid(format!("{name} in Healthcheck cannot be less than 1ms")));
        }
    }
    if h.retries < 0 {
        return Err(Error::Invalid("Retries in Healthcheck cannot be negative".into()));
    }
    match h.test.first().map(String::as_str) {
        None | Some("NONE") => Ok(()),
        Some(kind @ ("CMD" | "CMD-SHELL")) if h.test.len() < 2 => {
            Err(Error::Invalid(format!("Healthcheck {kind} has no command")))
        }
        Some("CMD" | "CMD-SHELL") => Ok(()),
        Some(other) => {
            Err(Error::Invalid(format!("unknown Healthcheck type {other:?}: expected CMD, CMD-SHELL or NONE")))
        }
    }
}

/// The command a check runs, or `None` when the container has none.
fn command(c: &Container) -> Option<Vec<String>> {
    let h = c.config.healthcheck.as_ref()?;
    let args = h.test.get(1..).unwrap_or_default();
    match h.test.first()?.as_str() {
        "CMD" => Some(args.to_vec()),
        "CMD-SHELL" => {
            let mut cmd = if c.config.shell.is_empty() {
                vec!["/bin/sh".to_owned(), "-c".to_owned()]
            } else {
                c.config.shell.clone()
            };
            cmd.extend(args.iter().cloned());
            Some(cmd)
        }
        _ => None,
    }
}

/// Up to [`MAX_OUTPUT`] bytes of a check's stdout and stderr, taken out of
/// the stream frames the shim sends.
#[derive(Default)]
struct Output {
    frames: berth_shim_proto::Deframer,
    kept: Vec<u8>,
    cut: bool,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        let (kept, cut) = (&mut self.kept, &mut self.cut);
        self.frames.push(data, |_, p| {
            let room = MAX_OUTPUT - kept.len();
            kept.extend_from_slice(&p[..p.len().min(room)]);
            *cut |= p.len() > room;
        });
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.kept).into_owned();
        if self.cut {
            s.push_str("...");
        }
        s
    }
}

enum Outcome {
    Done,
    TimedOut,
    Stopped,
}

impl Engine {
    /// Run the checks of a container that has just started (`fresh`: its
    /// status goes back to starting, as moby's `initHealthMonitor`), or
    /// that was found running or unpaused (its status kept).
    pub(crate) fn health_start(self: &Arc<Self>, e: &Arc<Entry>, fresh: bool) {
        let (cmd, cfg, started_at) = {
            let Ok(mut r) = e.rec.lock() else { return };
            let Some(cmd) = command(&r) else { return };
            let cfg = r.config.healthcheck.clone().unwrap_or_default();
            let h = r.state.health.get_or_insert_with(Health::default);
            if fresh {
                h.status = HealthStatus::Starting;
                h.failing_streak = 0;
                let _ = self.save_state(&r);
            }
            (cmd, cfg, crate::logs::rfc3339_nanos(&r.state.started_at).unwrap_or_else(now_nanos))
        };
        let (tx, rx) = oneshot::channel();
        // Replacing the sender of an earlier monitor stops that one.
        if let Ok(mut slot) = e.health.lock() {
            *slot = Some(tx);
        }
        tokio::spawn(self.clone().health_monitor(e.clone(), cfg, cmd, started_at, rx));
    }

    /// Stop the checks of a container that stops or pauses.
    pub(crate) fn health_stop(&self, e: &Entry) {
        if let Ok(mut slot) = e.health.lock() {
            slot.take();
        }
    }

    async fn health_monitor(
        self: Arc<Self>,
        e: Arc<Entry>,
        cfg: HealthConfig,
        cmd: Vec<String>,
        started_at: i64,
        mut stop: oneshot::Receiver<()>,
    ) {
        let interval = or_default(cfg.interval, DEFAULT_INTERVAL);
        let start_interval = or_default(cfg.start_interval, DEFAULT_START_INTERVAL);
        let timeout = or_default(cfg.timeout, DEFAULT_TIMEOUT);
        let start_period = cfg.start_period.max(0);
        let in_start_period = |at: i64| at - started_at < start_period;
        loop {
            // In the start period, until a first success, at the start
            // interval (API 1.44's StartInterval).
            let starting =
                e.rec.lock().is_ok_and(|r| r.state.health.as_ref().is_some_and(|h| h.status == HealthStatus::Starting));
            let wait = if starting && in_start_period(now_nanos()) { start_interval } else { interval };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let at = now_nanos();
            let Some(result) = self.probe(&e, &cmd, timeout, &mut stop).await else { return };
            // Stopped while the result came: it is not the container's any
            // more (moby's `done` check).
            if matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Closed)) {
                return;
            }
            self.health_result(&e, &cfg, result, in_start_period(at));
        }
    }

    /// One run of the check; `None` when the checks were stopped meanwhile.
    async fn probe(
        self: &Arc<Self>,
        e: &Arc<Entry>,
        cmd: &[String],
        timeout: Duration,
        stop: &mut oneshot::Receiver<()>,
    ) -> Option<HealthResult> {
        let start = berth_core::time::now_rfc3339();
        let failed = |output: String| HealthResult {
            start: start.clone(),
            end: berth_core::time::now_rfc3339(),
            exit_code: -1,
            output,
        };
        let id = e.rec.lock().ok()?.id.clone();
        let cfg = ExecConfig { cmd: cmd.to_vec(), attach_stdout: true, attach_stderr: true, ..Default::default() };
        let exec_id = match self.exec_create(&id, cfg) {
            Ok(x) => x,
            Err(err) => return Some(failed(err.to_string())),
        };
        let stream = match tokio::time::timeout(START_LIMIT, self.exec_start(&exec_id, false, None)).await {
            Ok(Ok(s)) => s,
            Ok(Err(err)) => {
                self.forget_exec(&exec_id);
                return Some(failed(err.to_string()));
            }
            Err(_) => {
                self.forget_exec(&exec_id);
                return Some(failed(format!("timed out starting health check for container {id}")));
            }
        };
        let mut out = Output::default();
        let outcome = {
            let read = async {
                let Some(mut s) = stream else { return };
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    out.push(&buf[..n]);
                }
            };
            tokio::select! {
                _ = &mut *stop => Outcome::Stopped,
                r = tokio::time::timeout(timeout, read) => if r.is_ok() { Outcome::Done } else { Outcome::TimedOut },
            }
        };
        if !matches!(outcome, Outcome::Done) {
            // A check that outlives its time, or its container's checks,
            // is killed so that dying checks do not pile up.
            let _ = self.exec_signal(&id, &exec_id, 9).await;
        }
        let code = self.exec_exit(&exec_id, KILL_WAIT).await;
        self.forget_exec(&exec_id);
        let end = berth_core::time::now_rfc3339();
        match outcome {
            Outcome::Stopped => None,
            Outcome::TimedOut => {
                let t = berth_core::units::go_duration(timeout.as_nanos() as i64);
                let output = match out.text() {
                    o if o.is_empty() => format!("Health check exceeded timeout ({t})"),
                    o => format!("Health check exceeded timeout ({t}): {o}"),
                };
                Some(HealthResult { start, end, exit_code: -1, output })
            }
            Outcome::Done => Some(match code {
                Some(c) => HealthResult { start, end, exit_code: i64::from(c), output: out.text() },
                None => failed(format!("healthcheck for container {id} has no exit code")),
            }),
        }
    }

    /// Record one result: the log, the streak and the status, an event
    /// when the status changes, and the action on failure.
    fn health_result(self: &Arc<Self>, e: &Arc<Entry>, cfg: &HealthConfig, res: HealthResult, in_start_period: bool) {
        let retries = if cfg.retries <= 0 { DEFAULT_RETRIES } else { cfg.retries };
        let (c, old, new) = {
            let Ok(mut r) = e.rec.lock() else { return };
            if r.state.status != Status::Running {
                return;
            }
            let h = r.state.health.get_or_insert_with(Health::default);
            let old = h.status;
            if h.log.len() >= MAX_LOG {
                h.log.drain(..=h.log.len() - MAX_LOG);
            }
            let passed = res.exit_code == 0;
            h.log.push(res);
            if passed {
                h.failing_streak = 0;
                h.status = HealthStatus::Healthy;
            } else if !(h.status == HealthStatus::Starting && in_start_period) {
                h.failing_streak += 1;
                if h.failing_streak >= retries {
                    h.status = HealthStatus::Unhealthy;
                }
            }
            let new = h.status;
            // As Docker, the results themselves are kept in memory; the
            // record on disk follows changes of status.
            if new != old {
                let _ = self.save_state(&r);
            }
            (r.clone(), old, new)
        };
        if old == new {
            return;
        }
        self.event(&c, &format!("health_status: {}", new.as_str()));
        if new == HealthStatus::Unhealthy && c.config.health_on_failure != OnFailure::None {
            self.on_unhealthy(c);
        }
    }

    fn on_unhealthy(self: &Arc<Self>, c: Container) {
        let engine = self.clone();
        tokio::spawn(async move {
            let id = c.id.as_str();
            let done = match c.config.health_on_failure {
                OnFailure::None => Ok(()),
                OnFailure::Kill => engine.kill_unhealthy(id).await,
                OnFailure::Restart => engine.restart(id, None, None).await,
                OnFailure::Stop => engine.stop(id, None, None).await,
            };
            if let Err(err) = done {
                let action = c.config.health_on_failure.as_str();
                tracing::warn!(container = id, "turned unhealthy; {action}: {err}");
            }
        });
    }

    /// SIGKILL to every process of an unhealthy container, as an exit of
    /// its own: unlike the user's kill, its restart policy still applies.
    async fn kill_unhealthy(self: &Arc<Self>, id: &str) -> Result<()> {
        let e = self.find(id)?;
        let (sock, c) = self.shim_socket(&e)?;
        shim::call(&sock, &Request::Signal { signal: 9, all: true }).await?;
        self.event_with(&c, "kill", [("signal", "9".to_string())]);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(test: &[&str]) -> HealthConfig {
        HealthConfig { test: test.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn the_request_s_check_is_merged_over_the_image_s() {
        let image = json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000i64, "Retries": 2});
        assert_eq!(merge(None, Some(&image)).unwrap().unwrap().test, ["CMD-SHELL", "true"]);
        let mut mine = check(&[]);
        mine.timeout = 7;
        let m = merge(Some(mine), Some(&image)).unwrap().unwrap();
        assert_eq!((m.test[1].as_str(), m.interval, m.timeout, m.retries), ("true", 5_000_000_000, 7, 2));
        let none = merge(Some(check(&["NONE"])), Some(&image)).unwrap().unwrap();
        assert_eq!(none.test, ["NONE"]);
        assert_eq!(merge(None, None).unwrap(), None);
        assert_eq!(merge(None, Some(&Value::Null)).unwrap(), None);
        assert!(merge(None, Some(&json!({"Test": "x"}))).is_err());
        assert_eq!(from_image(&to_image(&m)).unwrap(), m, "an image keeps a committed check");
    }

    #[test]
    fn checks_are_verified_as_moby_does() {
        assert!(verify(&check(&["CMD", "true"])).is_ok());
        assert!(verify(&check(&["NONE"])).is_ok());
        assert!(verify(&check(&[])).is_ok());
        let e = verify(&check(&["CMD"])).unwrap_err().to_string();
        assert!(e.contains("has no command"), "{e}");
        let e = verify(&check(&["RUN", "x"])).unwrap_err().to_string();
        assert!(e.contains("unknown Healthcheck type \"RUN\""), "{e}");
        let mut h = check(&["CMD", "true"]);
        h.interval = 999;
        assert_eq!(verify(&h).unwrap_err().to_string(), "Interval in Healthcheck cannot be less than 1ms");
        h.interval = 0;
        h.retries = -1;
        assert_eq!(verify(&h).unwrap_err().to_string(), "Retries in Healthcheck cannot be negative");
    }

    #[test]
    fn shell_checks_run_under_the_container_s_shell() {
        let mut c = Container::default();
        assert_eq!(command(&c), None);
        c.config.healthcheck = Some(check(&["CMD-SHELL", "exit 1"]));
        assert_eq!(command(&c).unwrap(), ["/bin/sh", "-c", "exit 1"]);
        c.config.shell = vec!["/bin/ash".into(), "-ec".into()];
        assert_eq!(command(&c).unwrap(), ["/bin/ash", "-ec", "exit 1"]);
        c.config.healthcheck = Some(check(&["CMD", "cat", "/x"]));
        assert_eq!(command(&c).unwrap(), ["cat", "/x"]);
        c.config.healthcheck = Some(check(&["NONE"]));
        assert_eq!(command(&c), None);
    }

    #[test]
    fn output_is_taken_out_of_frames_and_cut() {
        let mut o = Output::default();
        let mut wire = berth_shim_proto::frame_header(1, 3).to_vec();
        wire.extend_from_slice(b"ok\n");
        wire.extend_from_slice(&berth_shim_proto::frame_header(2, 4));
        wire.extend_from_slice(b"err\n");
        // Byte by byte, as a socket may cut it.
        for b in &wire {
            o.push(std::slice::from_ref(b));
        }
        assert_eq!(o.text(), "ok\nerr\n");
        let mut big = berth_shim_proto::frame_header(1, 5000).to_vec();
        big.extend(std::iter::repeat_n(b'x', 5000));
        o.push(&big);
        let t = o.text();
        assert!(t.ends_with("...") && t.len() == MAX_OUTPUT + 3, "{}", t.len());
    }
}
