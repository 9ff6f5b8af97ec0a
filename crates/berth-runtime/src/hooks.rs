//! OCI hooks: each runs with the container's state JSON on stdin, its own
//! args and env, and is killed when its timeout passes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::{Error, OciState, Result};

/// Run `hooks` in order; the first failure stops the rest.
pub(crate) fn run(hooks: &[Hook], state: &OciState) -> Result<()> {
    run_with_input(hooks, state_json(state)?.as_bytes())
}

/// Run every hook of `hooks` whatever the others do, logging each failure:
/// the spec's rule for poststart and poststop, whose failures must not
/// fail `start` or `delete`.
pub(crate) fn run_all_logged(hooks: &[Hook], state: &OciState, which: &str) {
    let input = match state_json(state) {
        Ok(s) => s,
        Err(e) => {
            berth_core::say(format_args!("berth-runtime: warning: {which} hooks not run: {e}"));
            return;
        }
    };
    for h in hooks {
        if let Err(e) = run_one(h, input.as_bytes()) {
            berth_core::say(format_args!("berth-runtime: warning: {which} {e}"));
        }
    }
}

/// Run `hooks` in order with `input` (a serialised state) on stdin.
pub(crate) fn run_with_input(hooks: &[Hook], input: &[u8]) -> Result<()> {
    for h in hooks {
        run_one(h, input)?;
    }
    Ok(())
}

pub(crate) fn state_json(state: &OciState) -> Result<String> {
    serde_json::to_string(state).map_err(|e| Error::Invalid(e.to_string()))
}

pub(crate) fn run_one(h: &Hook, input: &[u8]) -> Result<()> {
    let fail = |reason: String| Error::Hook { path: h.path().clone(), reason };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(a0) = args.first() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, a0);
    }
    cmd.args(args.iter().skip(1)).env_clear().stdin(Stdio::piped());
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE).
        let _ = stdin.write_all(input);
    }
    let deadline = h.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => return Err(fail(format!("exited with {st}"))),
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {}s", h.timeout().unwrap_or(0))));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
