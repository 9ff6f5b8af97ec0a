//! Processes run in a running container (`docker exec`): created, then
//! started by the container's shim with the container's own process
//! settings as the base. Exec records live in memory, as Docker's do, until
//! their container is removed.

use std::sync::Arc;

use berth_shim_proto::{ExecRequest, Reply, Request};
use serde_json::Value;
use tokio::net::UnixStream;

use crate::model::{Container, Status};
use crate::shim::{self, ShimDir};
use crate::{names, spec, user, Engine, Error, Result};

/// What `POST /containers/{id}/exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub privileged: bool,
    pub detach_keys: String,
    /// Height and width of the terminal.
    pub console_size: Option<(u16, u16)>,
}

/// One exec as inspect shows it.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    /// Set once the process has ended.
    pub exit_code: Option<i32>,
    pub pid: i32,
    /// Started once; an exec never runs twice.
    pub started: bool,
}

/// Exec records and a signal for those waiting on an exit.
#[derive(Debug, Default)]
pub(crate) struct Execs {
    map: std::sync::Mutex<std::collections::HashMap<String, ExecInfo>>,
    ended: tokio::sync::Notify,
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("exec table poisoned".into())
}

/// Whether a process may be run in `c` now, in Docker's words when not.
fn can_exec(c: &Container) -> Result<()> {
    match c.state.status {
        Status::Running => Ok(()),
        Status::Paused => {
            Err(Error::Conflict(format!("Container {} is paused, unpause the container before exec", c.id)))
        }
        Status::Restarting => {
            Err(Error::Conflict(format!("Container {} is restarting, wait until the container is running", c.id)))
        }
        _ => Err(Error::Conflict(format!("Container {} is not running", c.id))),
    }
}

/// An exec runs once.
fn not_started(x: &ExecInfo) -> Result<()> {
    if x.running {
        return Err(Error::Conflict(format!("Error: Exec command {} is already running", x.id)));
    }
    if x.started {
        return Err(Error::Conflict(format!("Error: Exec command {} has already run", x.id)));
    }
    Ok(())
}

impl Engine {
    /// `POST /containers/{id}/exec`: a new exec for a running container.
    pub fn exec_create(&self, key: &str, cfg: ExecConfig) -> Result<String> {
        let e = self.find(key)?;
        let c = e.rec.lock().map_err(poisoned)?.clone();
        can_exec(&c)?;
        if cfg.cmd.is_empty() {
            return Err(Error::Invalid("No exec command specified".into()));
        }
        self.prime_cgroups();
        let id = names::new_id();
        let info = ExecInfo {
            id: id.clone(),
            container_id: c.id.clone(),
            config: cfg,
            running: false,
            exit_code: None,
            pid: 0,
            started: false,
        };
        let action = format!("exec_create: {}", info.config.cmd.join(" "));
        self.execs.map.lock().map_err(poisoned)?.insert(id.clone(), info);
        self.event_with(&c, &action, [("execID", id.clone())]);
        Ok(id)
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInfo> {
        let map = self.execs.map.lock().map_err(poisoned)?;
        map.get(id).cloned().ok_or_else(|| Error::NotFound(format!("No such exec instance: {id}")))
    }

    /// An exec that has not been started yet (checked again at start).
    pub fn exec_ready(&self, id: &str) -> Result<ExecInfo> {
        let x = self.exec_inspect(id)?;
        not_started(&x)?;
        Ok(x)
    }

    /// The execs of one container, for its inspect.
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let map = self.execs.map.lock().map(|m| m.clone()).unwrap_or_default();
        map.into_values().filter(|x| x.container_id == container_id).map(|x| x.id).collect()
    }

    /// Forget one exec (a health check's or a CRI ExecSync's, once it has
    /// its result).
    pub fn forget_exec(&self, id: &str) {
        if let Ok(mut m) = self.execs.map.lock() {
            m.remove(id);
        }
    }

    /// Signal an exec's process through its container's shim.
    pub async fn exec_signal(&self, container_id: &str, id: &str, signal: i32) -> Result<()> {
        let sock = ShimDir::new(&self.cfg.exec_root, container_id).socket();
        shim::call(&sock, &Request::ExecSignal { exec_id: id.to_owned(), signal }).await.map(drop)
    }

    /// Forget the execs of a removed container.
    pub(crate) fn forget_execs(&self, container_id: &str) {
        if let Ok(mut m) = self.execs.map.lock() {
            m.retain(|_, x| x.container_id != container_id);
        }
    }

    /// `POST /exec/{id}/start`: runs the process. Unless `detach`, the
    /// returned connection carries its stdio (raw with a terminal, else
    /// stdcopy frames) and ends when the process has ended.
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        detach: bool,
        console_size: Option<(u16, u16)>,
    ) -> Result<Option<UnixStream>> {
        let cfg = {
            let mut map = self.execs.map.lock().map_err(poisoned)?;
            let x = map.get_mut(id).ok_or_else(|| Error::NotFound(format!("No such exec instance: {id}")))?;
            not_started(x)?;
            x.started = true;
            if console_size.is_some() {
                x.config.console_size = console_size;
            }
            x.clone()
        };
        match self.exec_launch(&cfg, detach).await {
            Ok(s) => Ok(s),
            Err(err) => {
                if let Ok(mut map) = self.execs.map.lock() {
                    if let Some(x) = map.get_mut(id) {
                        x.exit_code = Some(crate::containers::start_exit_code(&err.to_string()));
                    }
                }
                self.execs.ended.notify_waiters();
                Err(err)
            }
        }
    }

    async fn exec_launch(self: &Arc<Self>, x: &ExecInfo, detach: bool) -> Result<Option<UnixStream>> {
        let c = self.inspect(&x.container_id)?;
        can_exec(&c)?;
        let sd = ShimDir::new(&self.cfg.exec_root, &c.id);
        let sock = sd.socket();
        let process = exec_process(&sd, x, &c.host.group_add)?;
        let attach = !detach && (x.config.attach_stdin || x.config.attach_stdout || x.config.attach_stderr);
        let req = Request::Exec(ExecRequest {
            exec_id: x.id.clone(),
            process,
            tty: x.config.tty,
            stdin: x.config.attach_stdin,
            stdout: x.config.attach_stdout,
            stderr: x.config.attach_stderr,
            detach: !attach,
        });
        let (reply, stream) = shim::open(&sock, &req).await?;
        let pid = match reply {
            Reply::ExecStarted { pid } => pid,
            Reply::Error { message } => return Err(exec_error(message)),
            other => return Err(Error::Internal(format!("exec: unexpected shim reply {other:?}"))),
        };
        if let Ok(mut map) = self.execs.map.lock() {
            if let Some(r) = map.get_mut(&x.id) {
                r.running = true;
                r.pid = pid;
            }
        }
        self.event_with(&c, &format!("exec_start: {}", x.config.cmd.join(" ")), [("execID", x.id.clone())]);
        let engine = self.clone();
        let exec_id = x.id.clone();
        tokio::spawn(async move {
            let code = match shim::open(&sock, &Request::ExecWait { exec_id: exec_id.clone() }).await {
                Ok((Reply::Exited(r), _)) => r.code,
                Ok((Reply::Ok, mut s)) => match shim::read_reply(&mut s).await {
                    Ok(Reply::Exited(r)) => r.code,
                    _ => 137,
                },
                _ => 137,
            };
            if let Ok(mut map) = engine.execs.map.lock() {
                if let Some(r) = map.get_mut(&exec_id) {
                    r.running = false;
                    r.exit_code = Some(code);
                    r.pid = 0;
                }
            }
            engine.execs.ended.notify_waiters();
            engine.event_with(&c, "exec_die", [("execID", exec_id), ("exitCode", code.to_string())]);
        });
        Ok(attach.then_some(stream))
    }

    /// The exit code of an exec, once it has one; waits for at most `limit`.
    pub async fn exec_exit(&self, id: &str, limit: std::time::Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ended = self.execs.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let x = self.exec_inspect(id).ok()?;
            if x.exit_code.is_some() {
                return x.exit_code;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return None;
            }
        }
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(&self, id: &str, width: u16, height: u16) -> Result<()> {
        let x = self.exec_inspect(id)?;
        if !x.running {
            return Err(Error::Conflict(format!("Exec {id} is not running")));
        }
        let sock = ShimDir::new(&self.cfg.exec_root, &x.container_id).socket();
        shim::call(&sock, &Request::ExecResize { exec_id: id.to_owned(), width, height }).await.map(drop)
    }
}

/// The exec's process: the container's own (its capabilities, limits,
/// environment and user), with the exec's command and settings on top.
fn exec_process(sd: &ShimDir, x: &ExecInfo, group_add: &[String]) -> Result<Value> {
    let path = sd.dir.join("config.json");
    let body = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
    let bundle: Value = serde_json::from_slice(&body).map_err(|e| Error::Internal(format!("config.json: {e}")))?;
    let mut p = bundle.get("process").cloned().unwrap_or_else(|| Value::Object(Default::default()));
    let cfg = &x.config;
    p["args"] = cfg.cmd.iter().map(|a| Value::String(a.clone())).collect();
    p["terminal"] = Value::Bool(cfg.tty);
    match cfg.console_size.filter(|_| cfg.tty) {
        Some((h, w)) => p["consoleSize"] = serde_json::json!({"height": h, "width": w}),
        None => {
            if let Some(o) = p.as_object_mut() {
                o.remove("consoleSize");
            }
        }
    }
    let mut env: Vec<String> = p.get("env").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    crate::model::merge_env(&mut env, &cfg.env);
    // As Docker's CreateDaemonEnvironment: a terminal gets TERM.
    if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    p["env"] = serde_json::json!(env);
    if !cfg.working_dir.is_empty() {
        p["cwd"] = Value::String(cfg.working_dir.clone());
    }
    if !cfg.user.is_empty() {
        let root = bundle.pointer("/root/path").and_then(Value::as_str).unwrap_or("");
        let u = user::resolve(std::path::Path::new(root), &cfg.user, group_add)?;
        p["user"] = serde_json::json!({"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids});
    }
    if cfg.privileged {
        let all: Vec<Value> = spec::all_caps().iter().cloned().map(Value::String).collect();
        p["capabilities"] = serde_json::json!({"bounding": all, "effective": all, "permitted": all});
    }
    Ok(p)
}

/// A shim's refusal to start a process: a conflict when the container is
/// not in a state to run one, else the process itself could not start.
fn exec_error(message: String) -> Error {
    if message.contains("not running") || message.contains("paused") {
        Error::Conflict(message)
    } else {
        Error::Invalid(message)
    }
}
