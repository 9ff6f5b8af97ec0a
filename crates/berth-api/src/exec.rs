//! `/containers/{id}/exec` and `/exec/…`.

use std::time::Duration;

use berth_api_types as w;
use berth_engine::ExecConfig;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::containers::int_arg;
use crate::stream::{self, Reframe, Streams};
use crate::{json_response, read_json, status_only, ApiError, Ctx, Reply};

/// How long the end of an attached exec's output may run ahead of its exit
/// status.
const EXIT_GRACE: Duration = Duration::from_secs(5);

pub async fn create(ctx: &Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let body: Option<w::ExecCreateRequest> = read_json(req).await?;
    let w::ExecCreateRequest { spec, detach: _ } =
        body.ok_or_else(|| ApiError::bad("exec configuration cannot be empty"))?;
    // Every field of the spec's request, so that one it grows is a build
    // error here until it is honoured or refused.
    let w::spec::ExecConfig {
        attach_stdin,
        attach_stdout,
        attach_stderr,
        console_size,
        detach_keys,
        tty,
        env,
        cmd,
        privileged,
        user,
        working_dir,
    } = spec;
    let cfg = ExecConfig {
        cmd: cmd.unwrap_or_default(),
        env: env.unwrap_or_default(),
        user: user.unwrap_or_default(),
        working_dir: working_dir.unwrap_or_default(),
        tty: tty.unwrap_or(false),
        attach_stdin: attach_stdin.unwrap_or(false),
        attach_stdout: attach_stdout.unwrap_or(false),
        attach_stderr: attach_stderr.unwrap_or(false),
        privileged: privileged.unwrap_or(false),
        detach_keys: detach_keys.unwrap_or_default(),
        console_size: crate::create::console_size(console_size.as_deref()),
    };
    stream::detach_keys(&cfg.detach_keys)?;
    if !cfg.working_dir.is_empty() && !cfg.working_dir.starts_with('/') {
        return Err(ApiError::bad(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            cfg.working_dir
        )));
    }
    let exec_id = ctx.engine.exec_create(id, cfg)?;
    json_response(StatusCode::CREATED, &w::IdResponse { id: exec_id })
}

/// `POST /exec/{id}/start`: detached, it answers once the process runs;
/// attached, it answers 101 and streams the process's stdio until it ends,
/// with its exit status recorded before the connection closes (the docker
/// CLI reads it right after). The request's Tty decides the framing, raw
/// or multiplexed, whatever the exec was made with (moby's
/// `postContainerExecStart`).
pub async fn start(ctx: &Ctx, id: &str, mut req: Request<Incoming>) -> Reply {
    let upgrade = req.headers().get(hyper::header::UPGRADE).is_some();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body: Option<w::ExecStartRequest> = read_json(req).await?;
    let b = body.unwrap_or_default();
    let size = crate::create::console_size(b.console_size.as_deref());
    if b.detach == Some(true) {
        ctx.engine.exec_start(id, true, size).await?;
        return status_only(StatusCode::OK);
    }
    let x = ctx.engine.exec_ready(id)?;
    let engine = ctx.engine.clone();
    let exec_id = x.id.clone();
    let raw = b.tty == Some(true);
    let streams = Streams {
        detach: (x.config.tty && x.config.attach_stdin)
            .then(|| stream::detach_keys(&x.config.detach_keys))
            .transpose()?,
        reframe: Reframe::between(x.config.tty, raw),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut client = TokioIo::new(upgraded);
        match engine.exec_start(&exec_id, false, size).await {
            Ok(Some(stream)) => {
                let engine = engine.clone();
                let exec_id = exec_id.clone();
                stream::proxy(client, stream, streams, async move {
                    engine.exec_exit(&exec_id, EXIT_GRACE).await;
                })
                .await;
            }
            Ok(None) => {
                engine.exec_exit(&exec_id, EXIT_GRACE).await;
                let _ = client.shutdown().await;
            }
            Err(e) => {
                // As Docker: the error goes to the client's stdout.
                let text = format!("{e}\r\n").into_bytes();
                if !raw {
                    let _ = client.write_all(&berth_engine::logs::frame_header(1, text.len())).await;
                }
                let _ = client.write_all(&text).await;
                let _ = client.shutdown().await;
            }
        }
    });
    stream::hijacked(raw, upgrade)
}

pub async fn resize(ctx: &Ctx, id: &str) -> Reply {
    let h = int_arg(ctx, "h")?.unwrap_or(0).clamp(0, 65535) as u16;
    let wd = int_arg(ctx, "w")?.unwrap_or(0).clamp(0, 65535) as u16;
    ctx.engine.exec_resize(id, wd, h).await?;
    status_only(StatusCode::OK)
}

pub fn inspect(ctx: &Ctx, id: &str) -> Reply {
    let x = ctx.engine.exec_inspect(id)?;
    let mut args = x.config.cmd.clone();
    let entrypoint = if args.is_empty() { String::new() } else { args.remove(0) };
    let out = w::ExecInspect {
        can_remove: Some(false),
        detach_keys: Some(x.config.detach_keys.clone()),
        id: Some(x.id),
        running: Some(x.running),
        exit_code: x.exit_code.map(i64::from),
        process_config: Some(w::ExecProcessConfig {
            privileged: Some(x.config.privileged),
            user: Some(x.config.user).filter(|u| !u.is_empty()),
            tty: Some(x.config.tty),
            entrypoint: Some(entrypoint),
            arguments: Some(args),
        }),
        open_stdin: Some(x.config.attach_stdin),
        open_stderr: Some(x.config.attach_stderr),
        open_stdout: Some(x.config.attach_stdout),
        container_id: Some(x.container_id),
        pid: Some(i64::from(x.pid)),
    };
    let mut v = serde_json::to_value(&out).unwrap_or_default();
    w::fill_nulls(&mut v, &["ExitCode"]);
    json_response(StatusCode::OK, &v)
}
