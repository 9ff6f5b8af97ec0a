//! The verbs that join a terminal to a container: run, create, start -a,
//! attach and exec. As the docker CLI does, the attach connection and the
//! wait request are open before the container starts, so neither its
//! first output nor its exit is missed.

use berth_api_types::spec::ExecConfig;
use berth_api_types::{ContainerInspect, CreateResponse, ExecInspect, ExecStartRequest, IdResponse, WaitResponse};
use berth_client::{Body, Client, Hijacked, Query, Response};

use crate::cli::{AttachArgs, ExecArgs, RunArgs, StartArgs};
use crate::format::print_out;
use crate::stream::{self, Ended, RawMode, Target};
use crate::{each, opts, CliError, Result};

/// Creates the container; its id and whether it has a TTY, stdin and
/// which streams to attach.
fn create_container(c: &Client, a: &RunArgs) -> Result<(String, berth_api_types::spec::ContainerConfig)> {
    let console = if a.tty { stream::terminal_size() } else { None };
    let cfg = opts::create_request(a, console)?;
    let q = Query::new().opt("name", a.name.as_deref());
    match c.post::<CreateResponse>("/containers/create", &q, Some(&cfg)) {
        Ok(r) => {
            for w in r.warnings {
                say!("WARNING: {w}");
            }
            Ok((r.id, cfg.config.spec))
        }
        Err(e) if e.is_not_found() && e.to_string().contains("image") => {
            say!("Unable to find image '{}' locally", cfg.config.spec.image.unwrap_or_default());
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn create(c: &Client, a: RunArgs) -> Result<()> {
    let (id, _) = create_container(c, &a).map_err(CliError::run)?;
    print_out(&format!("{id}\n"))
}

/// The detach keys to tell the daemon, which acts on them too: the
/// flag's, else the config file's (Docker's CLI sends them the same way).
fn keys_for_daemon(given: Option<&str>) -> Option<String> {
    given.filter(|k| !k.is_empty()).map(str::to_owned).or_else(stream::configured_detach_keys)
}

fn attach_stream(c: &Client, id: &str, streams: [bool; 3], keys: Option<&str>) -> Result<Hijacked> {
    let [stdin, stdout, stderr] = streams;
    let mut q = Query::new().add("stream", "1").flag("stdin", stdin).flag("stdout", stdout).flag("stderr", stderr);
    if let Some(k) = keys_for_daemon(keys) {
        q = q.add("detachKeys", &k);
    }
    Ok(c.hijack(&format!("/containers/{id}/attach"), &q, None::<&()>)?)
}

fn wait_request(c: &Client, id: &str, condition: &str) -> Result<Response> {
    Ok(c.call("POST", &format!("/containers/{id}/wait"), &Query::new().add("condition", condition), Body::None)?)
}

fn wait_result(r: Response) -> Result<i32> {
    let w: WaitResponse = r.json()?;
    if let Some(message) = w.error.and_then(|e| e.message).filter(|m| !m.is_empty()) {
        say!("{message}");
    }
    Ok(i32::try_from(w.status_code).unwrap_or(255))
}

fn status(code: i32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Status(code))
    }
}

/// A terminal session: raw mode when the local stdin is a terminal and
/// goes in, the size passed on, signals handled; then the output.
fn session(
    c: &Client,
    h: Hijacked,
    target: Target,
    tty: bool,
    stdin: bool,
    proxy: bool,
    keys: Option<&str>,
) -> Result<Ended> {
    let detach = if tty && stdin { Some(stream::detach_keys(keys).map_err(CliError::Usage)?) } else { None };
    let raw = if tty && stdin { RawMode::enter() } else { None };
    if tty {
        stream::resize(c, &target);
    }
    stream::handle_signals(c.clone(), target, tty, proxy && !tty);
    let r = stream::pump(h, stdin, detach);
    drop(raw);
    Ok(r?)
}

fn check_tty(tty: bool, stdin: bool) -> Result<()> {
    if tty && stdin && !stream::stdin_is_terminal() {
        return Err(CliError::Usage("the input device is not a TTY".into()));
    }
    Ok(())
}

pub fn run(c: &Client, a: RunArgs) -> Result<()> {
    check_tty(a.tty, a.interactive && !a.detach).map_err(CliError::run)?;
    let (id, cfg) = create_container(c, &a).map_err(CliError::run)?;
    let start = || c.post_empty(&format!("/containers/{id}/start"), &Query::new()).map_err(|e| CliError::run(e.into()));
    if a.detach {
        start()?;
        return print_out(&format!("{id}\n"));
    }
    stream::block_signals();
    let on = |v: Option<bool>| v.unwrap_or(false);
    let attach = on(cfg.attach_stdin) || on(cfg.attach_stdout) || on(cfg.attach_stderr);
    let h = if attach {
        let streams = [on(cfg.attach_stdin), on(cfg.attach_stdout), on(cfg.attach_stderr)];
        Some(attach_stream(c, &id, streams, a.detach_keys.as_deref()).map_err(CliError::run)?)
    } else {
        None
    };
    let waiter = wait_request(c, &id, if a.rm { "removed" } else { "next-exit" }).map_err(CliError::run)?;
    start()?;
    if let Some(h) = h {
        let keys = a.detach_keys.as_deref();
        let ended = session(c, h, Target::Container(id.clone()), a.tty, on(cfg.attach_stdin), a.sig_proxy, keys)?;
        if ended == Ended::Detached {
            return Ok(());
        }
    } else {
        stream::handle_signals(c.clone(), Target::Container(id.clone()), a.tty, a.sig_proxy && !a.tty);
    }
    status(wait_result(waiter)?)
}

pub fn start(c: &Client, a: StartArgs) -> Result<()> {
    if !a.attach && !a.interactive {
        return each(&a.containers, |name| {
            c.post_empty(&format!("/containers/{name}/start"), &Query::new())?;
            print_out(&format!("{name}\n"))
        });
    }
    let [name] = a.containers.as_slice() else {
        return Err(CliError::Usage("you cannot start and attach multiple containers at once".into()));
    };
    let info: ContainerInspect = c.get(&format!("/containers/{name}/json"), &Query::new())?;
    let (id, tty, open_stdin) = container_io(&info);
    let stdin = a.interactive && open_stdin;
    check_tty(tty, stdin)?;
    stream::block_signals();
    let h = attach_stream(c, &id, [stdin, true, true], a.detach_keys.as_deref())?;
    let waiter = wait_request(c, &id, "next-exit")?;
    c.post_empty(&format!("/containers/{id}/start"), &Query::new()).map_err(|e| CliError::run(e.into()))?;
    let ended = session(c, h, Target::Container(id.clone()), tty, stdin, true, a.detach_keys.as_deref())?;
    if ended == Ended::Detached {
        return Ok(());
    }
    status(wait_result(waiter)?)
}

/// A container's id, and whether it has a TTY and an open stdin.
fn container_io(info: &ContainerInspect) -> (String, bool, bool) {
    let c = &info.config.spec;
    (info.spec.id.clone().unwrap_or_default(), c.tty.unwrap_or(false), c.open_stdin.unwrap_or(false))
}

pub fn attach(c: &Client, a: AttachArgs) -> Result<()> {
    let info: ContainerInspect = c.get(&format!("/containers/{}/json", a.container), &Query::new())?;
    let state = info.spec.state.clone().unwrap_or_default();
    if state.running != Some(true) {
        return Err(CliError::Usage("You cannot attach to a stopped container, start it first".into()));
    }
    if state.paused == Some(true) {
        return Err(CliError::Usage("You cannot attach to a paused container, unpause it first".into()));
    }
    let (id, tty, open_stdin) = container_io(&info);
    let stdin = !a.no_stdin && open_stdin;
    check_tty(tty, stdin)?;
    stream::block_signals();
    let h = attach_stream(c, &id, [stdin, true, true], a.detach_keys.as_deref())?;
    let waiter = wait_request(c, &id, "not-running")?;
    let ended = session(c, h, Target::Container(id.clone()), tty, stdin, a.sig_proxy, a.detach_keys.as_deref())?;
    if ended == Ended::Detached {
        return Ok(());
    }
    status(wait_result(waiter)?)
}

pub fn exec(c: &Client, a: ExecArgs) -> Result<()> {
    let (container, cmd) =
        a.args.split_first().ok_or_else(|| CliError::Usage("exec needs a container and a command".into()))?;
    check_tty(a.tty, a.interactive && !a.detach)?;
    let req = ExecConfig {
        attach_stdin: Some(a.interactive && !a.detach),
        attach_stdout: Some(!a.detach),
        attach_stderr: Some(!a.detach),
        console_size: if a.tty {
            stream::terminal_size().map(|(h, w)| vec![usize::from(h), usize::from(w)])
        } else {
            None
        },
        detach_keys: keys_for_daemon(a.detach_keys.as_deref()),
        tty: Some(a.tty),
        env: Some(opts::env(&a.env, &a.env_file)?).filter(|e| !e.is_empty()),
        cmd: Some(cmd.to_vec()),
        privileged: Some(a.privileged),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
    };
    let created: IdResponse = c.post(&format!("/containers/{container}/exec"), &Query::new(), Some(&req))?;
    let id = created.id;
    let start = ExecStartRequest { detach: Some(a.detach), tty: Some(a.tty), console_size: req.console_size.clone() };
    if a.detach {
        let r = c.call("POST", &format!("/exec/{id}/start"), &Query::new(), Body::Json(serde_json::to_vec(&start)?))?;
        std::io::copy(&mut { r }, &mut std::io::sink())?;
        return Ok(());
    }
    stream::block_signals();
    let h = c.hijack(&format!("/exec/{id}/start"), &Query::new(), Some(&start))?;
    let ended = session(
        c,
        h,
        Target::Exec(id.clone()),
        a.tty,
        req.attach_stdin == Some(true),
        false,
        a.detach_keys.as_deref(),
    )?;
    if ended == Ended::Detached {
        return Ok(());
    }
    let info: ExecInspect = c.get(&format!("/exec/{id}/json"), &Query::new())?;
    status(info.exit_code.map_or(0, |c| i32::try_from(c).unwrap_or(255)))
}
