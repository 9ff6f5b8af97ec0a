//! `berth build`: the context sent as a tar (what `.dockerignore` leaves
//! out not sent), `POST /build` with docker build's flags, and the build's
//! stream shown as it comes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_client::{Body, Client, Query};
use serde_json::Value;

use crate::cli::BuildArgs;
use crate::{CliError, Result};

/// The Dockerfile named in the context by a build whose Dockerfile is not
/// in it (`-f -`, or a path outside).
const OUTSIDE_NAME: &str = ".dockerfile.berth";

/// What is sent: the context directory, and the Dockerfile's text when it
/// comes from outside it.
struct Context {
    dir: PathBuf,
    dockerfile: String,
    outside: Option<Vec<u8>>,
}

/// `berth build -`: stdin is the context as a tar (any compression the
/// daemon takes), or else a Dockerfile alone, with an empty context.
fn stdin_context(a: &BuildArgs) -> Result<(Vec<u8>, String)> {
    if a.file.as_deref() == Some("-") {
        return Err(CliError::Usage("invalid argument: can't use stdin for both build context and dockerfile".into()));
    }
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data)?;
    let archive = data.starts_with(&[0x1f, 0x8b])
        || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || data.starts_with(b"BZh")
        || data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || (data.len() >= 262 && &data[257..262] == b"ustar");
    if archive {
        return Ok((data, a.file.clone().unwrap_or_else(|| "Dockerfile".into())));
    }
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut root_file(data.len()), "Dockerfile", data.as_slice())?;
    Ok((b.into_inner()?, "Dockerfile".into()))
}

/// The header of a root-owned file of `size` bytes, mode 0600, as a
/// Dockerfile the context did not hold is sent.
fn root_file(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn context(a: &BuildArgs) -> Result<Context> {
    if a.path.starts_with("http://") || a.path.starts_with("https://") || a.path.starts_with("git@") {
        return Err(CliError::Usage(format!("a remote context ({}) is not supported by berth build yet", a.path)));
    }
    let dir = PathBuf::from(&a.path);
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("unable to prepare context: path {:?} not found", a.path)));
    }
    let (dockerfile, outside) = match a.file.as_deref() {
        Some("-") => {
            let mut text = Vec::new();
            std::io::stdin().read_to_end(&mut text)?;
            (OUTSIDE_NAME.to_owned(), Some(text))
        }
        Some(f) => {
            let p = Path::new(f);
            let abs =
                std::fs::canonicalize(p).map_err(|e| CliError::Usage(format!("unable to read Dockerfile {f}: {e}")))?;
            let root = std::fs::canonicalize(&dir)?;
            match abs.strip_prefix(&root) {
                Ok(rel) => (rel.display().to_string(), None),
                Err(_) => (OUTSIDE_NAME.to_owned(), Some(std::fs::read(&abs)?)),
            }
        }
        None => ("Dockerfile".to_owned(), None),
    };
    Ok(Context { dir, dockerfile, outside })
}

/// Write the context as a tar to `w`: every file `.dockerignore` does
/// not leave out (the Dockerfile and `.dockerignore` always), symlinks as
/// symlinks.
fn write_context(ctx: &Context, w: impl Write) -> std::io::Result<()> {
    let ignore = std::fs::read_to_string(ctx.dir.join(format!("{}.dockerignore", ctx.dockerfile)))
        .or_else(|_| std::fs::read_to_string(ctx.dir.join(".dockerignore")))
        .unwrap_or_default();
    let patterns = berth_build::ignore::Patterns::parse(&ignore);
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let always = [ctx.dockerfile.as_str(), ".dockerignore"];
    let mut stack = vec![(ctx.dir.clone(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let is_dir = e.file_type()?.is_dir();
            let left_out = patterns.excludes(&r) && !always.contains(&r.as_str());
            if is_dir {
                // A directory left out may hold an exception.
                if !left_out {
                    b.append_path_with_name(e.path(), &r)?;
                }
                stack.push((e.path(), r));
            } else if !left_out {
                b.append_path_with_name(e.path(), &r)?;
            }
        }
    }
    if let Some(text) = &ctx.outside {
        b.append_data(&mut root_file(text.len()), OUTSIDE_NAME, text.as_slice())?;
    }
    b.into_inner()?.flush()
}

fn query(a: &BuildArgs, dockerfile: &str) -> Result<Query> {
    let mut q = Query::new().add("dockerfile", dockerfile).add("version", "1");
    for t in &a.tag {
        q = q.add("t", t);
    }
    let mut args = serde_json::Map::new();
    for b in &a.build_arg {
        match b.split_once('=') {
            Some((k, v)) => args.insert(k.to_owned(), Value::String(v.to_owned())),
            // `--build-arg NAME` takes the value from the environment.
            None => args.insert(b.clone(), std::env::var(b).map_or(Value::Null, Value::String)),
        };
    }
    let mut labels = serde_json::Map::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    q = q
        .add("buildargs", Value::Object(args).to_string())
        .add("labels", Value::Object(labels).to_string())
        .opt("target", a.target.as_deref())
        .flag("nocache", a.no_cache)
        .flag("pull", a.pull)
        .flag("q", a.quiet)
        .add("rm", if a.rm { "1" } else { "0" })
        .flag("forcerm", a.force_rm)
        .opt("networkmode", a.network.as_deref())
        .opt("platform", a.platform.as_deref());
    if !a.add_host.is_empty() {
        q = q.add("extrahosts", a.add_host.join(","));
    }
    if !a.cache_from.is_empty() {
        q = q.add("cachefrom", serde_json::to_string(&a.cache_from)?);
    }
    if a.squash {
        q = q.add("squash", "1");
    }
    for (k, flag, v) in [
        ("shmsize", "--shm-size", &a.shm_size),
        ("memory", "--memory", &a.memory),
        ("memswap", "--memory-swap", &a.memory_swap),
    ] {
        if v.is_some() {
            q = q.add(k, crate::opts::bytes(flag, v)?.to_string());
        }
    }
    for (k, v) in [("cpushares", a.cpu_shares), ("cpuperiod", a.cpu_period), ("cpuquota", a.cpu_quota)] {
        if let Some(v) = v {
            q = q.add(k, v.to_string());
        }
    }
    q = q.opt("cpusetcpus", a.cpuset_cpus.as_deref()).opt("cpusetmems", a.cpuset_mems.as_deref());
    if !a.ulimit.is_empty() {
        let mut list = vec![];
        for u in &a.ulimit {
            let (name, lim) =
                u.split_once('=').ok_or_else(|| CliError::Usage(format!("invalid ulimit argument: {u}")))?;
            let (soft, hard) = lim.split_once(':').unwrap_or((lim, lim));
            let n = |s: &str| s.parse::<i64>().map_err(|_| CliError::Usage(format!("invalid ulimit argument: {u}")));
            list.push(serde_json::json!({"Name": name, "Soft": n(soft)?, "Hard": n(hard)?}));
        }
        q = q.add("ulimits", Value::Array(list).to_string());
    }
    Ok(q)
}

pub fn build(c: &Client, a: BuildArgs) -> Result<()> {
    let r = if a.path == "-" {
        let (tar, dockerfile) = stdin_context(&a)?;
        let q = query(&a, &dockerfile)?;
        c.call(
            "POST",
            "/build",
            &q,
            Body::Stream { content_type: "application/x-tar", reader: Box::new(std::io::Cursor::new(tar)) },
        )?
    } else if c.is_local() && !a.send_context {
        // A daemon on this machine reads the directory where it is: nothing
        // is sent, and what did not change is not read again.
        let ctx = context(&a)?;
        if ctx.outside.is_some() {
            return build_sent(c, &a, ctx);
        }
        let dir = std::fs::canonicalize(&ctx.dir)?;
        let q = query(&a, &ctx.dockerfile)?.add("contextdir", dir.display().to_string());
        c.call("POST", "/build", &q, Body::None)?
    } else {
        build_sent(c, &a, context(&a)?)?;
        return Ok(());
    };
    show(r, &a)
}

/// A build whose context is sent as a tar.
fn build_sent(c: &Client, a: &BuildArgs, ctx: Context) -> Result<()> {
    let r = {
        let q = query(a, &ctx.dockerfile)?;
        let (reader, writer) = std::io::pipe()?;
        let dir = ctx.dir.clone();
        let sender = std::thread::spawn(move || write_context(&ctx, writer));
        if !a.quiet {
            eprintln!("Sending build context from {}", dir.display());
        }
        let r =
            c.call("POST", "/build", &q, Body::Stream { content_type: "application/x-tar", reader: Box::new(reader) });
        let sent = sender.join().map_err(|_| CliError::Usage("the context writer panicked".into()))?;
        let r = r?;
        sent.map_err(|e| CliError::Usage(format!("sending the build context: {e}")))?;
        r
    };
    show(r, a)
}

/// The build's stream, shown as it comes; the image id kept for `-q` and
/// `--iidfile`.
fn show(mut r: berth_client::Response, a: &BuildArgs) -> Result<()> {
    let mut id = None;
    let mut line = Vec::new();
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    let mut step_started: Option<Instant> = None;
    let mut out = std::io::stdout().lock();
    while r.next_line(&mut line)? {
        let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
        if let Some(e) = v["error"].as_str().or_else(|| v.pointer("/errorDetail/message").and_then(Value::as_str)) {
            if let Some(t) = step_started.take().filter(|_| tty) {
                writeln!(out, " ---> failed after {:.1}s", t.elapsed().as_secs_f64())?;
            }
            return Err(CliError::Usage(e.trim_end().to_owned()));
        }
        if let Some(i) = v.pointer("/aux/ID").and_then(Value::as_str) {
            id = Some(i.to_owned());
        }
        if a.quiet {
            continue;
        }
        if let Some(s) = v["stream"].as_str() {
            // On a terminal, each step ends with the time it took.
            if tty && (s.starts_with("Step ") || s.starts_with("Successfully built")) {
                if let Some(t) = step_started.take() {
                    writeln!(out, " ---> done in {:.1}s", t.elapsed().as_secs_f64())?;
                }
                if s.starts_with("Step ") {
                    step_started = Some(Instant::now());
                }
            }
            out.write_all(s.as_bytes())?;
            out.flush()?;
        }
    }
    let Some(id) = id else { return Err(CliError::Usage("the build ended without an image".into())) };
    if a.quiet {
        writeln!(out, "{id}")?;
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).map_err(|e| CliError::Usage(format!("writing {f}: {e}")))?;
    }
    Ok(())
}
