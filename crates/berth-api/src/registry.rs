//! Pulls as the Engine API serves them: `POST /images/create?fromImage=`,
//! whose answer is Docker's stream of JSON progress messages.

use berth_registry::progress::{Progress, Reporter};
use berth_registry::Credentials;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::{body, ApiError, Ctx, Reply};

/// The credentials of `X-Registry-Auth`, if any.
pub fn credentials(req: &Request<Incoming>) -> Result<Option<Credentials>, ApiError> {
    match req.headers().get("X-Registry-Auth").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(h)) => Credentials::from_header(h).map_err(|e| ApiError::bad(e.to_string())),
        Some(Err(_)) => Err(ApiError::bad("X-Registry-Auth is not text")),
    }
}

/// Docker's text bar for a `progress` field: `[==>   ]  1.2MB/3.4MB`.
fn bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let size = |b: u64| berth_core::units::human_size_with_precision(b as f64, 3);
    if total == 0 {
        return format!("{:>8}", size(current));
    }
    let done = (current.min(total) * WIDTH / total).min(WIDTH);
    let arrow = if done < WIDTH { ">" } else { "" };
    let pad = WIDTH.saturating_sub(done + arrow.len() as u64);
    format!("[{}{}{}] {:>8}/{}", "=".repeat(done as usize), arrow, " ".repeat(pad as usize), size(current), size(total))
}

/// A progress step as one of Docker's JSON messages.
pub fn message(p: &Progress) -> Value {
    match p {
        Progress::Status { id: Some(id), status } => json!({"status": status, "id": id}),
        Progress::Status { id: None, status } => json!({"status": status}),
        Progress::Layer { id, status, detail: Some((current, total)) } => json!({
            "status": status, "progressDetail": {"current": current, "total": total},
            "progress": bar(*current, *total), "id": id
        }),
        Progress::Layer { id, status, detail: None } => json!({"status": status, "progressDetail": {}, "id": id}),
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// The reference `fromImage` and `tag` name together: the tag may be a
/// tag or a digest, and `fromImage` may carry either itself.
fn pull_reference(ctx: &Ctx) -> Result<String, ApiError> {
    let image = ctx.q("fromImage").unwrap_or("");
    let tag = ctx.q("tag").unwrap_or("");
    let r = match tag {
        "" => image.to_owned(),
        t if t.contains(':') => format!("{image}@{t}"),
        t => format!("{image}:{t}"),
    };
    berth_image::Reference::parse(&r).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(r)
}

/// A pull or push as Docker streams it: its progress messages, then what
/// `end` makes of its result. An error before the first message is the
/// answer's status; a later one ends the stream.
async fn progress_stream<T: Send + 'static>(
    mut job: tokio::task::JoinHandle<Result<T, berth_engine::Error>>,
    mut prx: tokio::sync::mpsc::UnboundedReceiver<Progress>,
    end: fn(T) -> Vec<Value>,
) -> Reply {
    let mut done: Option<T> = None;
    let first = tokio::select! {
        Some(p) = prx.recv() => Some(p),
        r = &mut job => {
            let r = r.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            done = Some(r?);
            prx.recv().await
        }
    };
    let (tx, out) = body::channel();
    tokio::spawn(async move {
        let mut pending = first;
        while let Some(p) = pending.take() {
            if tx.send(line(&message(&p))).await.is_err() {
                // The client went away; the job goes on to its end.
                if done.is_none() {
                    let _ = job.await;
                }
                return;
            }
            pending = prx.recv().await;
        }
        let result = match done {
            Some(v) => Ok(v),
            None => match job.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        let lines = match result {
            Ok(v) => end(v),
            Err(msg) => vec![json!({"errorDetail": {"message": msg}, "error": msg})],
        };
        for v in lines {
            if tx.send(line(&v)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(out)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /images/create?fromImage=&tag=&platform=`; a missing image is a
/// 404, as the CLI's pull-then-create expects.
/// Query parameters a request may carry that this one cannot carry out:
/// refused by name rather than dropped.
fn refuse_params(ctx: &Ctx, names: &[&str], why: &str) -> Result<(), ApiError> {
    match names.iter().find(|n| ctx.q(n).is_some_and(|v| !v.is_empty())) {
        Some(n) => Err(ApiError::bad(format!("{n}: {why}"))),
        None => Ok(()),
    }
}

pub async fn pull(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    refuse_params(ctx, &["fromSrc", "repo", "message", "changes"], "an import's, not a pull's (fromImage is given)")?;
    let reference = pull_reference(ctx)?;
    let creds = credentials(&req)?;
    let platform = ctx.q("platform").unwrap_or("").to_owned();
    let (ptx, prx) = tokio::sync::mpsc::unbounded_channel();
    let engine = ctx.engine.clone();
    // No tag anywhere: every tag of the repository (`pull -a`).
    let parsed = berth_image::Reference::parse(&reference).map_err(|e| ApiError::bad(e.to_string()))?;
    let all = parsed.tag().is_none() && parsed.digest().is_none();
    let job = tokio::spawn(async move {
        let report = Reporter(Some(ptx));
        let refs = if all {
            let tags = berth_registry::tags(&engine.registries, &parsed, creds.clone()).await?;
            tags.iter().map(|t| format!("{reference}:{t}")).collect()
        } else {
            vec![reference]
        };
        let mut out = vec![];
        for r in refs {
            out.push(engine.pull(&r, &platform, creds.clone(), report.clone()).await?);
        }
        Ok::<_, berth_engine::Error>(out)
    });
    progress_stream(job, prx, |pulled| {
        let mut out = vec![];
        for (r, p) in &pulled {
            out.push(json!({"status": format!("Digest: {}", p.digest)}));
            if pulled.len() == 1 {
                let name = r.familiar();
                let status = if p.updated {
                    format!("Status: Downloaded newer image for {name}")
                } else {
                    format!("Status: Image is up to date for {name}")
                };
                out.push(json!({"status": status}));
            }
        }
        if pulled.len() > 1 {
            let name = pulled[0].0.familiar_name();
            let newer = pulled.iter().any(|(_, p)| p.updated);
            out.push(json!({"status": if newer {
                format!("Status: Downloaded newer image for {name}")
            } else {
                format!("Status: Image is up to date for {name}")
            }}));
        }
        out
    })
    .await
}

/// `POST /images/{name}/push?tag=`: the tag, or every tag of the
/// repository when none is given.
pub async fn push(ctx: &Ctx, name: &str, req: Request<Incoming>) -> Reply {
    refuse_params(
        ctx,
        &["platform"],
        "berth pushes an image of the one platform it keeps, not a choice among several",
    )?;
    let creds = credentials(&req)?;
    let tag = ctx.q("tag").unwrap_or("").to_owned();
    berth_image::Reference::parse(name).map_err(|e| ApiError::bad(e.to_string()))?;
    let (ptx, prx) = tokio::sync::mpsc::unbounded_channel();
    let engine = ctx.engine.clone();
    let name = name.to_owned();
    let job = tokio::spawn(async move { engine.push(&name, &tag, creds, Reporter(Some(ptx))).await });
    progress_stream(job, prx, |pushed| {
        let mut out = vec![];
        for (r, p) in pushed {
            let tag = r.tag().unwrap_or("latest").to_owned();
            out.push(json!({"status": format!("{tag}: digest: {} size: {}", p.digest, p.size)}));
            out.push(
                json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": p.digest.to_string(), "Size": p.size}}),
            );
        }
        out
    })
    .await
}

/// `GET /distribution/{name}/json`: the descriptor a name resolves to on
/// its registry, and its platforms.
pub async fn distribution(ctx: &Ctx, name: &str, req: Request<Incoming>) -> Reply {
    let r = berth_image::Reference::parse(name).map_err(|e| ApiError::bad(e.to_string()))?;
    let creds = credentials(&req)?;
    let d = berth_registry::describe(&ctx.engine.registries, &r, creds).await.map_err(berth_engine::Error::from)?;
    let platforms: Vec<Value> = d
        .platforms
        .iter()
        .map(|p| {
            let mut v = json!({"architecture": p.arch, "os": p.os});
            if let Some(var) = &p.variant {
                v["variant"] = json!(var);
            }
            v
        })
        .collect();
    crate::json_response(
        StatusCode::OK,
        &json!({
            "Descriptor": {"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size},
            "Platforms": platforms
        }),
    )
}

/// `GET /images/search?term=&limit=&filters=`.
pub async fn search(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let term = ctx.q("term").filter(|t| !t.is_empty()).ok_or_else(|| ApiError::bad("term is required"))?.to_owned();
    let limit = match ctx.q("limit") {
        None | Some("") => 25,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::bad(format!("limit {l} is outside the range of [1, 100]")))?,
    };
    let f = crate::system::filters(ctx)?;
    if let Some(k) = f.keys().find(|k| !matches!(k.as_str(), "is-official" | "is-automated" | "stars")) {
        return Err(ApiError::bad(format!("invalid filter '{k}'")));
    }
    let flag = |k: &str| -> Result<Option<bool>, ApiError> {
        match f.get(k).and_then(|v| v.first()).map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad(format!("invalid filter '{k}={v}'"))),
        }
    };
    let (official, automated) = (flag("is-official")?, flag("is-automated")?);
    let stars = match f.get("stars").and_then(|v| v.first()) {
        Some(s) => s.parse::<u64>().map_err(|_| ApiError::bad(format!("invalid filter 'stars={s}'")))?,
        None => 0,
    };
    let creds = credentials(&req)?;
    let results =
        ctx.engine.registries.search(&term, limit, creds.as_ref()).await.map_err(berth_engine::Error::from)?;
    let kept: Vec<Value> = results
        .into_iter()
        .filter(|r| official.is_none_or(|o| r["is_official"].as_bool().unwrap_or(false) == o))
        .filter(|r| automated.is_none_or(|a| r["is_automated"].as_bool().unwrap_or(false) == a))
        .filter(|r| r["star_count"].as_u64().unwrap_or(0) >= stars)
        .map(|r| {
            json!({
                "name": r["name"], "description": r["description"], "star_count": r["star_count"].as_u64().unwrap_or(0),
                "is_official": r["is_official"].as_bool().unwrap_or(false),
                "is_automated": r["is_automated"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    crate::json_response(StatusCode::OK, &kept)
}

/// `POST /auth`: the credentials checked against their registry.
pub async fn auth(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let body: Option<Credentials> = crate::read_json(req).await?;
    let creds = body.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad("no credentials given"))?;
    let identity = ctx.engine.registries.login(&creds).await.map_err(berth_engine::Error::from)?;
    crate::json_response(
        StatusCode::OK,
        &json!({"Status": "Login Succeeded", "IdentityToken": identity.unwrap_or_default()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_docker_writes_it() {
        let p = Progress::Layer { id: "abc".into(), status: "Downloading".into(), detail: Some((500, 1000)) };
        let v = message(&p);
        assert_eq!(v["progressDetail"], json!({"current": 500, "total": 1000}));
        assert!(v["progress"].as_str().unwrap_or("").starts_with("[=========================>"), "{v}");
        let v = message(&Progress::Layer { id: "abc".into(), status: "Pull complete".into(), detail: None });
        assert_eq!(v, json!({"status": "Pull complete", "progressDetail": {}, "id": "abc"}));
        assert_eq!(message(&Progress::Status { id: None, status: "x".into() }), json!({"status": "x"}));
    }
}
