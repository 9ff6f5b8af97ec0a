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

/// `--secret`s read here, as the `X-Berth-Build-Secrets` header: base64
/// of a JSON object of ids and base64 contents.
fn secrets_header(a: &BuildArgs) -> Result<Option<String>> {
    use base64::Engine as _;
    if a.secret.is_empty() {
        return Ok(None);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut map = serde_json::Map::new();
    for spec in &a.secret {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(v.to_owned()),
                Some(("env", v)) => env = Some(v.to_owned()),
                Some(("type", "file" | "env")) => {}
                _ => {
                    return Err(CliError::Usage(format!("--secret {spec}: unexpected {part:?} (id=…, src=… or env=…)")))
                }
            }
        }
        let id = id.ok_or_else(|| CliError::Usage(format!("--secret {spec}: the secret needs an id")))?;
        let data = match (src, env) {
            (Some(path), _) => {
                std::fs::read(&path).map_err(|e| CliError::Usage(format!("--secret {id}: {path}: {e}")))?
            }
            (None, Some(var)) => std::env::var(&var)
                .map_err(|_| CliError::Usage(format!("--secret {id}: env var {var} is not set")))?
                .into_bytes(),
            // Neither: the env var of the id's name, as buildx reads it.
            (None, None) => std::env::var(&id)
                .map_err(|_| CliError::Usage(format!("--secret {id}: give src=<file> or env=<var>")))?
                .into_bytes(),
        };
        map.insert(id, Value::String(b64.encode(data)));
    }
    Ok(Some(b64.encode(Value::Object(map).to_string())))
}

/// `--ssh`: agent sockets of this machine by id (`default` is
/// `$SSH_AUTH_SOCK`), for the daemon to bind; only a daemon on this
/// machine can.
fn ssh_query(c: &Client, a: &BuildArgs, q: Query) -> Result<Query> {
    if a.ssh.is_empty() {
        return Ok(q);
    }
    if !c.is_local() {
        return Err(CliError::Usage(
            "--ssh: the daemon binds the agent's socket, so it must run on this machine".into(),
        ));
    }
    let mut map = serde_json::Map::new();
    for spec in &a.ssh {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) => (id.to_owned(), p.to_owned()),
            None => (
                spec.clone(),
                std::env::var("SSH_AUTH_SOCK")
                    .map_err(|_| CliError::Usage(format!("--ssh {spec}: SSH_AUTH_SOCK is not set")))?,
            ),
        };
        let path = std::fs::canonicalize(&path).map_err(|e| CliError::Usage(format!("--ssh {id}: {path}: {e}")))?;
        map.insert(id, Value::String(path.display().to_string()));
    }
    Ok(q.add("ssh", Value::Object(map).to_string()))
}

/// `POST /build`, with the secrets' header when there are any.
fn post(c: &Client, a: &BuildArgs, q: &Query, body: Body) -> Result<berth_client::Response> {
    let q = ssh_query(c, a, q.clone())?;
    match secrets_header(a)? {
        Some(h) => Ok(c.send_with("POST", "/build", &q, &[("X-Berth-Build-Secrets", &h)], body)?.ok()?),
        None => Ok(c.call("POST", "/build", &q, body)?),
    }
}

pub fn build(c: &Client, a: BuildArgs) -> Result<()> {
    let output = a.output.as_deref().map(output_of).transpose()?;
    let id = built(c, &a)?;
    match output {
        Some(o) => export_output(c, &id, o),
        None => Ok(()),
    }
}

/// Run the build; the image's id.
fn built(c: &Client, a: &BuildArgs) -> Result<String> {
    let r = if a.path == "-" {
        let (tar, dockerfile) = stdin_context(a)?;
        let q = query(a, &dockerfile)?;
        post(c, a, &q, Body::Stream { content_type: "application/x-tar", reader: Box::new(std::io::Cursor::new(tar)) })?
    } else if c.is_local() && !a.send_context {
        // A daemon on this machine reads the directory where it is: nothing
        // is sent, and what did not change is not read again.
        let ctx = context(a)?;
        if ctx.outside.is_some() {
            return build_sent(c, a, ctx);
        }
        let dir = std::fs::canonicalize(&ctx.dir)?;
        let q = query(a, &ctx.dockerfile)?.add("contextdir", dir.display().to_string());
        post(c, a, &q, Body::None)?
    } else {
        return build_sent(c, a, context(a)?);
    };
    show(r, a)
}

/// A build whose context is sent as a tar.
fn build_sent(c: &Client, a: &BuildArgs, ctx: Context) -> Result<String> {
    let r = {
        let q = query(a, &ctx.dockerfile)?;
        let (reader, writer) = std::io::pipe()?;
        let dir = ctx.dir.clone();
        let sender = std::thread::spawn(move || write_context(&ctx, writer));
        if !a.quiet {
            eprintln!("Sending build context from {}", dir.display());
        }
        let r = post(c, a, &q, Body::Stream { content_type: "application/x-tar", reader: Box::new(reader) });
        let sent = sender.join().map_err(|_| CliError::Usage("the context writer panicked".into()))?;
        let r = r?;
        sent.map_err(|e| CliError::Usage(format!("sending the build context: {e}")))?;
        r
    };
    show(r, a)
}

/// One step as the live display shows it.
struct Step {
    title: String,
    started: Instant,
    ended: Option<Instant>,
    cached: bool,
    /// The last lines of its output.
    tail: std::collections::VecDeque<String>,
}

/// Lines of a running step's output the display keeps.
const TAIL: usize = 6;

/// The build on a terminal, drawn again as it goes, as BuildKit draws it:
/// each step with its time (or CACHED), the running one's last lines of
/// output under it.
struct Live {
    started: Instant,
    steps: Vec<Step>,
    total: usize,
    drawn: usize,
    last_draw: Option<Instant>,
    width: usize,
    /// Drawn for the last time: what follows is printed below it.
    finished: bool,
}

impl Live {
    fn new() -> Live {
        let width = crate::stream::terminal_size().map_or(80, |(_, w)| usize::from(w).max(20));
        Live { started: Instant::now(), steps: vec![], total: 0, drawn: 0, last_draw: None, width, finished: false }
    }

    fn current(&mut self) -> Option<&mut Step> {
        self.steps.iter_mut().rev().find(|s| s.ended.is_none())
    }

    /// Take one `stream` text of the build.
    fn take(&mut self, s: &str) {
        for line in s.lines() {
            if let Some(rest) = line.strip_prefix("Step ") {
                let (count, title) = rest.split_once(" : ").unwrap_or((rest, ""));
                if let Some((_, m)) = count.split_once('/') {
                    self.total = m.parse().unwrap_or(self.total);
                }
                self.steps.push(Step {
                    title: format!("[{count}] {title}"),
                    started: Instant::now(),
                    ended: None,
                    cached: false,
                    tail: Default::default(),
                });
            } else if line == " ---> Using cache" {
                if let Some(st) = self.current() {
                    st.cached = true;
                }
            } else if let Some(id) = line.strip_prefix(" ---> ") {
                // ` ---> <id>` ends a step; `Running in` does not.
                if !id.starts_with("Running in") {
                    if let Some(st) = self.current() {
                        st.ended = Some(Instant::now());
                    }
                }
            } else if line.starts_with("Removing intermediate container") || line.starts_with("# Executing") {
                // The builder's own words, not the step's output.
                continue;
            } else if let Some(st) = self.current() {
                st.tail.push_back(line.to_owned());
                while st.tail.len() > TAIL {
                    st.tail.pop_front();
                }
            }
        }
    }

    fn cut(&self, s: &str) -> String {
        s.chars().take(self.width.saturating_sub(1)).collect()
    }

    /// Draw the block again over the last one (at most every 50 ms unless
    /// `now`).
    fn draw(&mut self, out: &mut impl Write, now: bool) -> std::io::Result<()> {
        if !now && self.last_draw.is_some_and(|t| t.elapsed().as_millis() < 50) {
            return Ok(());
        }
        self.last_draw = Some(Instant::now());
        let mut lines = vec![];
        let done = self.steps.iter().filter(|s| s.ended.is_some()).count();
        lines.push(format!(
            "[+] Building {:.1}s ({done}/{})",
            self.started.elapsed().as_secs_f64(),
            self.total.max(self.steps.len())
        ));
        for st in &self.steps {
            let time = match (st.cached, st.ended) {
                (true, _) => "CACHED".to_owned(),
                (false, Some(e)) => format!("{:.1}s", e.duration_since(st.started).as_secs_f64()),
                (false, None) => format!("{:.1}s", st.started.elapsed().as_secs_f64()),
            };
            let head = self.cut(&format!(" => {}", st.title));
            let pad = self.width.saturating_sub(head.chars().count() + time.len() + 2);
            lines.push(format!("{head}{} {time}", " ".repeat(pad)));
            if st.ended.is_none() {
                for t in &st.tail {
                    lines.push(self.cut(&format!(" => => {t}")));
                }
            }
        }
        if self.drawn > 0 {
            // Back to the block's first line, and clear from there.
            write!(out, "\x1b[{}F\x1b[J", self.drawn)?;
        }
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        self.drawn = lines.len();
        out.flush()
    }

    /// The end: every step done, the block drawn once more and left.
    fn end(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let now = Instant::now();
        for st in &mut self.steps {
            st.ended.get_or_insert(now);
        }
        self.draw(out, true)
    }
}

/// The build's stream, shown as it comes: on a terminal, drawn live as
/// BuildKit draws it; otherwise Docker's plain lines. The image id kept
/// for `-q` and `--iidfile`.
fn show(mut r: berth_client::Response, a: &BuildArgs) -> Result<String> {
    let mut id = None;
    let mut line = Vec::new();
    // With the files' tar on STDOUT (`-o -`), what is shown goes to STDERR.
    let fd = if a.output.as_deref().map(output_of).is_some_and(|o| matches!(o, Ok(Output::Tar(None)))) {
        libc::STDERR_FILENO
    } else {
        libc::STDOUT_FILENO
    };
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(fd) } == 1;
    let mut live = (tty && !a.quiet).then(Live::new);
    let mut out: Box<dyn Write> =
        if fd == libc::STDERR_FILENO { Box::new(std::io::stderr().lock()) } else { Box::new(std::io::stdout().lock()) };
    while r.next_line(&mut line)? {
        let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
        if let Some(e) = v["error"].as_str().or_else(|| v.pointer("/errorDetail/message").and_then(Value::as_str)) {
            if let Some(l) = live.as_mut() {
                l.draw(&mut out, true)?;
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
            match live.as_mut() {
                Some(l) if l.finished || s.starts_with("Successfully") || s.starts_with("[Warning]") => {
                    if !l.finished {
                        l.end(&mut out)?;
                        l.finished = true;
                    }
                    out.write_all(s.as_bytes())?;
                }
                Some(l) => {
                    // A step that ends is drawn once more with its last
                    // output first.
                    if s.starts_with(" ---> ") && !s.starts_with(" ---> Running in") {
                        l.draw(&mut out, true)?;
                    }
                    l.take(s);
                    l.draw(&mut out, s.starts_with("Step "))?;
                }
                None => out.write_all(s.as_bytes())?,
            }
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
    Ok(id)
}

/// Where `--output` puts the image's files: a directory, or a tar (a
/// file, or STDOUT for `-`).
enum Output {
    Local(PathBuf),
    Tar(Option<String>),
}

fn output_of(spec: &str) -> Result<Output> {
    if spec == "-" {
        return Ok(Output::Tar(None));
    }
    if !spec.contains('=') {
        return Ok(Output::Local(PathBuf::from(spec)));
    }
    let (mut kind, mut dest) = ("local".to_owned(), None);
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", t)) => t.clone_into(&mut kind),
            Some(("dest", d)) => dest = Some(d.to_owned()),
            _ => return Err(CliError::Usage(format!("--output {spec}: unexpected {part:?} (type=…, dest=…)"))),
        }
    }
    match (kind.as_str(), dest) {
        ("local", Some(d)) => Ok(Output::Local(PathBuf::from(d))),
        ("tar", d) => Ok(Output::Tar(d.filter(|d| d != "-"))),
        ("local", None) => Err(CliError::Usage(format!("--output {spec}: type=local needs dest="))),
        (other, _) => Err(CliError::Usage(format!(
            "--output {spec}: type {other} is not supported by berth build (local or tar; the image itself is always made)"
        ))),
    }
}

/// The built image's files written where `--output` says, as BuildKit's
/// local and tar exporters write them: read through a container of the
/// image that never starts, exported and removed.
fn export_output(c: &Client, id: &str, out: Output) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Created {
        #[serde(rename = "Id")]
        id: String,
    }
    let cfg = serde_json::json!({"Image": id, "Entrypoint": ["#(nop)"], "Cmd": ["output"]});
    let made: Created = c.post("/containers/create", &Query::new(), Some(&cfg))?;
    let r = c.call("GET", &format!("/containers/{}/export", made.id), &Query::new(), Body::None);
    let written = r.map_err(CliError::from).and_then(|r| match &out {
        Output::Tar(path) => crate::container::to_output(r, path.as_deref(), "the build's files"),
        Output::Local(dir) => {
            std::fs::create_dir_all(dir)?;
            let mut a = tar::Archive::new(r);
            a.set_preserve_permissions(true);
            a.set_overwrite(true);
            // Entries are unpacked inside `dir` only (the tar crate refuses
            // `..` and a link that leads out).
            a.unpack(dir).map_err(|e| CliError::Usage(format!("--output {}: {e}", dir.display())))
        }
    });
    let removed = c.delete(&format!("/containers/{}", made.id), &Query::new().add("force", "1"));
    written?;
    removed?;
    Ok(())
}
