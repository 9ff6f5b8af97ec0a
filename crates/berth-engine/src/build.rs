//! A build run by the engine, as Docker's classic builder runs it (the
//! Dockerfile read by `berth-build`):
//! stage after stage, each instruction an image. A RUN is a container
//! made by the engine's own create and start, attached before it starts
//! so that its output streams, committed when it exits 0 and removed
//! either way. COPY and ADD write a tar of their sources straight into a
//! layer, named as they land in the image below (no container).
//! Metadata instructions make an image of a new config and no layer.
//!
//! Secrets and ssh agents, which BuildKit takes through its session, come
//! with the request (berth's `X-Berth-Build-Secrets` header and `ssh`
//! parameter, which `berth build --secret` and `--ssh` send).
//!
//! Not yet here (refused by name, never ignored): ADD of git repositories.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::model::{CreateRequest, HostConfig, RunConfig as CtrConfig};
use crate::Engine;
use berth_image::{ImageId, Reference, RunConfig};
use std::future::Future as _;
use std::os::unix::fs::OpenOptionsExt as _;

use tokio::io::AsyncReadExt;

use berth_build::ignore::Patterns;
use berth_build::instructions::{Build, Command, Copy, Instruction, Kind, Stage};
use berth_build::shell::Lexer;

/// Why a build failed; the message is the stream's last.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

type Result<T> = std::result::Result<T, BuildError>;

fn fail(e: impl std::fmt::Display) -> BuildError {
    BuildError(e.to_string())
}

/// What `POST /build` asks for, as far as the builder is concerned.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub tags: Vec<Reference>,
    pub target: Option<String>,
    pub build_args: HashMap<String, Option<String>>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Always pull FROM images.
    pub pull: bool,
    /// Run every step, whatever the cache holds (the results are kept
    /// for the next build).
    pub no_cache: bool,
    /// Remove intermediate containers after a step that passes (`rm`), and
    /// after one that fails (`forcerm`). berth removes them in both cases;
    /// `rm=false` keeps the ones that passed, as Docker does.
    pub keep_passed: bool,
    /// `networkmode`: what RUN steps' containers are on.
    pub network_mode: String,
    pub extra_hosts: Vec<String>,
    /// Resource limits, ulimits and shm size for RUN steps.
    pub host: HostConfig,
    /// `.dockerignore`: what of the context the build does not see.
    pub ignore: Patterns,
    /// `X-Registry-Config`: credentials by registry, for FROM's pulls.
    pub registry_auth: Vec<(String, berth_registry::Credentials)>,
    /// The context is a directory of this host, read where it is (not an
    /// unpacked tar): its files' digests are kept by size, times and inode,
    /// so that a rebuild reads only the files that changed.
    pub local_context: bool,
    /// `cachefrom`: images whose history a step may be taken from.
    pub cache_from: Vec<String>,
    /// Secrets by id, for `RUN --mount=type=secret`.
    pub secrets: HashMap<String, Vec<u8>>,
    /// ssh agent sockets of this machine by id, for `RUN --mount=type=ssh`.
    pub ssh: HashMap<String, PathBuf>,
}

/// One line of the build's JSON stream.
pub type Out = tokio::sync::mpsc::UnboundedSender<serde_json::Value>;

fn say(out: &Out, text: impl Into<String>) {
    let _ = out.send(serde_json::json!({"stream": text.into()}));
}

fn short(id: &ImageId) -> String {
    id.to_string().trim_start_matches("sha256:").chars().take(12).collect()
}

/// The build-time state of a stage.
#[derive(Debug, Clone, Default)]
struct State {
    /// None: scratch (nothing yet).
    image: Option<ImageId>,
    run: RunConfig,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, String)>,
    /// MAINTAINER: the image's author.
    author: Option<String>,
    /// Whether this stage set CMD (an ENTRYPOINT after the base's CMD
    /// resets it, as Docker's builder does).
    cmd_set: bool,
    /// The `--cache-from` image the stage's steps were last taken from:
    /// the only one asked from then on, so that a stage does not jump
    /// from one image's history to another's (as in Docker's builder).
    cache_source: Option<ImageId>,
    /// The stage's index and the instruction's, while it runs.
    at: (usize, usize),
    /// Whether a step of this stage missed the cache: every one after
    /// does (their parents are new).
    missed: bool,
}

impl State {
    fn env(&self) -> Vec<(String, String)> {
        self.run
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect()
    }

    /// What words are expanded with: the stage's ARGs, then its ENV,
    /// which wins over an ARG of the same name.
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.env());
        v
    }

    fn shell(&self) -> Vec<String> {
        match &self.run.shell {
            Some(s) if !s.is_empty() => s.clone(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }
}

/// The predefined ARGs every stage may declare without a value.
fn predefined(name: &str) -> Option<String> {
    let arch = berth_image::config::host_architecture();
    let v = match name {
        "TARGETPLATFORM" | "BUILDPLATFORM" => format!("linux/{arch}"),
        "TARGETOS" | "BUILDOS" => "linux".into(),
        "TARGETARCH" | "BUILDARCH" => arch.into(),
        "TARGETVARIANT" | "BUILDVARIANT" => String::new(),
        _ => return None,
    };
    Some(v)
}

const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The build: its engine, context, options and output.
pub struct Builder {
    engine: Arc<Engine>,
    context: PathBuf,
    /// The build's own directory (temp files, downloads, heredocs); never
    /// inside the context, which may be the user's own directory.
    work: PathBuf,
    opts: Options,
    out: Out,
    lexer: Lexer,
    /// Step counter and total, for `Step N/M`.
    step: std::sync::atomic::AtomicUsize,
    steps: usize,
    /// The image each built stage ended with, by index.
    built: std::sync::Mutex<HashMap<usize, Option<ImageId>>>,
    /// Build args used by a stage (those not used are warned about).
    used_args: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Stages by name.
    names: HashMap<String, usize>,
    /// Set when the build is to stop (its client went away).
    cancel: tokio::sync::watch::Sender<bool>,
    /// The `--cache-from` images found here.
    sources: Vec<ImageId>,
    /// Layers being staged ahead of their COPY, by stage and instruction.
    ahead: std::sync::Mutex<HashMap<(usize, usize), Staging>>,
    /// Removals of the containers of steps that passed.
    removing: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    digests: Digests,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("context", &self.context).field("steps", &self.steps).finish()
    }
}

impl Builder {
    pub fn new(engine: Arc<Engine>, context: PathBuf, work: PathBuf, opts: Options, out: Out) -> Builder {
        Builder {
            engine,
            context,
            work,
            opts,
            out,
            lexer: Lexer::default(),
            step: Default::default(),
            steps: 0,
            built: Default::default(),
            used_args: Default::default(),
            names: HashMap::new(),
            cancel: tokio::sync::watch::channel(false).0,
            sources: vec![],
            ahead: Default::default(),
            removing: Default::default(),
            digests: Default::default(),
        }
    }

    /// What stops this build: `true` sent on it ends the running step
    /// (its container killed and removed) and starts no other.
    pub fn canceller(&self) -> tokio::sync::watch::Sender<bool> {
        self.cancel.clone()
    }

    fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves once the build is cancelled.
    async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// The stages the target needs, in order: the target, and the stages
    /// it is built FROM or copies `--from`, and theirs.
    fn needed(&self, b: &Build, meta: &[(String, String)]) -> Result<std::collections::BTreeMap<usize, Vec<usize>>> {
        let last = match &self.opts.target {
            Some(t) => b
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| BuildError(format!("failed to reach build target {t} in Dockerfile")))?,
            None => b.stages.len() - 1,
        };
        let meta = meta.to_vec();
        // A stage a name (or number) refers to, among those before `before`.
        let stage_of = |name: &str, before: usize| -> Option<usize> {
            let name = self.lexer.word(name, &meta).unwrap_or_else(|_| name.to_owned()).to_ascii_lowercase();
            match name.parse::<usize>() {
                Ok(n) if n < before => Some(n),
                _ => b.stages[..before].iter().rposition(|s| s.name.as_deref() == Some(name.as_str())),
            }
        };
        let mut want = std::collections::BTreeMap::new();
        let mut todo = vec![last];
        while let Some(i) = todo.pop() {
            if want.contains_key(&i) {
                continue;
            }
            let s = &b.stages[i];
            let mut deps: Vec<usize> = stage_of(&s.base, i).into_iter().collect();
            for ins in &s.instructions {
                match &ins.kind {
                    Kind::Copy(Copy { from: Some(f), .. }) | Kind::Add(Copy { from: Some(f), .. }) => {
                        deps.extend(stage_of(f, i));
                    }
                    // RUN --mount=…,from=<stage>
                    Kind::Run(r) => {
                        for m in &r.mounts {
                            for part in m.split(',') {
                                if let Some(("from", f)) = part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                                    deps.extend(stage_of(f, i));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            todo.extend(deps.iter().copied());
            want.insert(i, deps);
        }
        Ok(want)
    }

    /// Build `b`; the final image's id.
    pub async fn build(mut self, b: &Build) -> Result<ImageId> {
        self.lexer = Lexer { escape: b.directives.escape };
        self.names = b.stages.iter().filter_map(|s| s.name.clone().map(|n| (n, s.index))).collect();
        for r in &self.opts.cache_from {
            // As Docker's builder: an image not here is no cache, not an error.
            match self.engine.images.resolve(r) {
                Ok(id) => self.sources.push(id),
                Err(_) => say(&self.out, format!("cache-from {r}: no such image here, not used\n")),
            }
        }
        // The ARGs before the first FROM, for FROM lines.
        let mut meta: Vec<(String, String)> = vec![];
        for (name, default) in &b.meta_args {
            let v = self.arg_value(name, default.as_deref(), &meta)?;
            if let Some(v) = v {
                meta.push((name.clone(), v));
            }
        }
        let mut pending = self.needed(b, &meta)?;
        self.steps = pending.keys().map(|i| 1 + b.stages[*i].instructions.len()).sum();
        let target = pending.keys().max().copied().unwrap_or(0);
        // Each stage starts once the stages it needs are built; stages that
        // need nothing of each other run at once, as BuildKit runs them.
        let me = Arc::new(self);
        let shared = Arc::new((b.clone(), meta));
        let mut running = tokio::task::JoinSet::new();
        let mut failed = None;
        loop {
            if failed.is_none() {
                let done: Vec<usize> = me.built.lock().map(|m| m.keys().copied().collect()).unwrap_or_default();
                let ready: Vec<usize> =
                    pending.iter().filter(|(_, d)| d.iter().all(|x| done.contains(x))).map(|(i, _)| *i).collect();
                for i in ready {
                    pending.remove(&i);
                    let (me2, sh) = (me.clone(), shared.clone());
                    running.spawn(async move { (i, me2.stage(&sh.0, &sh.0.stages[i], &sh.1).await) });
                }
            }
            match running.join_next().await {
                None => break,
                Some(Ok((i, Ok(image)))) => {
                    if let Ok(mut m) = me.built.lock() {
                        m.insert(i, image);
                    }
                }
                // The others finish their stage (no container is left
                // behind); nothing new starts.
                Some(Ok((_, Err(e)))) => {
                    failed.get_or_insert(e);
                }
                Some(Err(e)) => {
                    failed.get_or_insert(fail(e));
                }
            }
        }
        let removing: Vec<_> = me.removing.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        for task in removing {
            let _ = task.await;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let last = me.built.lock().ok().and_then(|m| m.get(&target).cloned()).flatten();
        let this = me;
        let Some(mut id) = last else { return Err(BuildError("the build made no image (FROM scratch alone)".into())) };
        if !this.opts.labels.is_empty() {
            let mut run = this.engine.images.config(&id).map_err(fail)?.run();
            run.labels.get_or_insert_with(Default::default).extend(this.opts.labels.clone());
            let created = format!("/bin/sh -c #(nop)  LABEL {}", label_text(&this.opts.labels));
            let author = this.engine.images.config(&id).map_err(fail)?.author;
            id = this.config_image(Some(&id), &run, &created, author.as_deref()).await?;
        }
        let unused: Vec<&String> = this
            .opts
            .build_args
            .keys()
            .filter(|k| !this.used_args.lock().is_ok_and(|u| u.contains(*k)) && !PROXY_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let mut names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            names.sort();
            say(&this.out, format!("[Warning] One or more build-args [{}] were not consumed\n", names.join(" ")));
        }
        let _ = this.out.send(serde_json::json!({"aux": {"ID": id.to_string()}}));
        say(&this.out, format!("Successfully built {}\n", short(&id)));
        for t in &this.opts.tags {
            let (store, t2, id2) = (this.engine.images.clone(), t.clone(), id.clone());
            tokio::task::spawn_blocking(move || store.tag(&t2, &id2)).await.map_err(fail)?.map_err(fail)?;
            say(&this.out, format!("Successfully tagged {}\n", t.familiar()));
        }
        Ok(id)
    }

    /// An ARG's value: the build arg given for it, else its default
    /// expanded, else a predefined one's.
    fn arg_value(&self, name: &str, default: Option<&str>, vars: &[(String, String)]) -> Result<Option<String>> {
        if let Some(given) = self.opts.build_args.get(name) {
            if let Ok(mut u) = self.used_args.lock() {
                u.insert(name.to_owned());
            }
            if let Some(v) = given {
                return Ok(Some(v.clone()));
            }
        }
        match default {
            Some(d) => Ok(Some(self.lexer.word(d, &vars.to_vec()).map_err(fail)?)),
            None => Ok(predefined(name)),
        }
    }

    fn next_step(&self, text: &str) {
        let n = self.step.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        say(&self.out, format!("Step {}/{} : {}\n", n, self.steps, text));
    }

    async fn stage(&self, b: &Build, s: &Stage, meta: &[(String, String)]) -> Result<Option<ImageId>> {
        self.next_step(&s.original);
        let base = self.lexer.word(&s.base, &meta.to_vec()).map_err(fail)?;
        if let Some(p) = &s.platform {
            let p = self.lexer.word(p, &meta.to_vec()).map_err(fail)?;
            let host = format!("linux/{}", berth_image::config::host_architecture());
            if p != host && p != "linux" {
                return Err(BuildError(format!(
                    "FROM --platform={p}: berth builds for this machine's platform ({host}) only"
                )));
            }
        }
        let mut st = State { at: (s.index, usize::MAX), ..Default::default() };
        let from_stage = b
            .stages
            .iter()
            .position(|o| o.index < s.index && o.name.as_deref() == Some(base.to_ascii_lowercase().as_str()));
        st.image = match from_stage {
            Some(i) => self
                .built
                .lock()
                .ok()
                .and_then(|m| m.get(&i).cloned())
                .ok_or_else(|| BuildError(format!("stage {base} was not built")))?,
            None if base == "scratch" => None,
            None => Some(self.base_image(&base).await?),
        };
        if let Some(id) = &st.image {
            st.run = self.engine.images.config(id).map_err(fail)?.run();
            say(&self.out, format!(" ---> {}\n", short(id)));
            // The base's ONBUILD triggers run first, as Docker runs them.
            let triggers = st.run.on_build.take().unwrap_or_default();
            if !triggers.is_empty() {
                say(
                    &self.out,
                    format!(
                        "# Executing {} build trigger{}\n",
                        triggers.len(),
                        if triggers.len() == 1 { "" } else { "s" }
                    ),
                );
                for t in triggers {
                    let ins =
                        berth_build::instructions::read("ONBUILD", &format!("FROM scratch\n{t}\n")).map_err(fail)?;
                    for i in &ins.stages[0].instructions {
                        self.instruction(&mut st, i, true).await?;
                    }
                }
            }
        }
        let built = self.instructions(&mut st, s).await;
        // What was staged ahead and not taken (the build failed, or a
        // step came from the cache after all) goes.
        self.drop_stage_ahead(s.index);
        built.map(|()| st.image)
    }

    async fn instructions(&self, st: &mut State, s: &Stage) -> Result<()> {
        for (n, ins) in s.instructions.iter().enumerate() {
            st.at = (s.index, n);
            if st.missed || self.opts.no_cache {
                self.look_ahead(st, s, n);
            }
            self.next_step(&ins.original);
            self.instruction(st, ins, false).await?;
            if let Some(id) = &st.image {
                say(&self.out, format!(" ---> {}\n", short(id)));
            }
        }
        Ok(())
    }

    async fn base_image(&self, name: &str) -> Result<ImageId> {
        let store = self.engine.images.clone();
        let n = name.to_owned();
        let local = tokio::task::spawn_blocking(move || store.resolve(&n)).await.map_err(fail)?;
        match local {
            Ok(id) if !self.opts.pull => Ok(id),
            _ => {
                say(&self.out, format!("{name}: Pulling from the registry\n"));
                // The credentials the client sent for the image's registry.
                let host = Reference::parse(name).map(|r| r.domain().to_owned()).unwrap_or_default();
                let creds = self
                    .opts
                    .registry_auth
                    .iter()
                    .find(|(server, _)| {
                        berth_registry::client::login_host(server) == berth_registry::client::login_host(&host)
                    })
                    .map(|(_, c)| c.clone());
                let (_, pulled) =
                    self.engine.pull(name, "", creds, berth_registry::progress::Reporter(None)).await.map_err(|e| {
                        BuildError(format!("pull access denied or repository does not exist for {name}: {e}"))
                    })?;
                Ok(pulled.id)
            }
        }
    }

    async fn config_image(
        &self,
        base: Option<&ImageId>,
        run: &RunConfig,
        created_by: &str,
        author: Option<&str>,
    ) -> Result<ImageId> {
        let (store, b, r, c) = (self.engine.images.clone(), base.cloned(), run.clone(), created_by.to_owned());
        let a = author.map(str::to_owned);
        let rec = tokio::task::spawn_blocking(move || {
            berth_image::commit::config_only(&store, b.as_ref(), &r, &c, a.as_deref())
        })
        .await
        .map_err(fail)?
        .map_err(fail)?;
        Ok(rec.id)
    }

    /// A metadata step: the config changed, an image with no layer.
    async fn meta(&self, st: &mut State, text: &str) -> Result<()> {
        let created = format!("/bin/sh -c #(nop)  {text}");
        let key = format!("meta\n{created}\n{}\n{:?}", run_json(&st.run), st.author);
        if self.take_cached(st, &key, &created) {
            return Ok(());
        }
        let parent = st.image.clone();
        st.image = Some(self.config_image(st.image.as_ref(), &st.run, &created, st.author.as_deref()).await?);
        self.remember(&parent, &key, st.image.as_ref());
        Ok(())
    }

    /// Where the cache keeps the image a step of `key` made on `parent`.
    fn cache_path(&self, parent: &Option<ImageId>, key: &str) -> PathBuf {
        let p = parent.as_ref().map_or_else(|| "scratch".to_owned(), |p| p.to_string());
        let h = berth_image::Digest::sha256(format!("{p}\n{key}").as_bytes());
        berth_build::cache::records_dir(&self.engine.cfg.data_root).join(h.hex())
    }

    /// A step of `key` made before on the stage's image, when the image it
    /// made is still here; or else a step `created_by` made on it in the
    /// history of a `--cache-from` image: taken, and said so.
    fn take_cached(&self, st: &mut State, key: &str, created_by: &str) -> bool {
        if self.opts.no_cache {
            st.missed = true;
            return false;
        }
        let local = std::fs::read_to_string(self.cache_path(&st.image, key)).ok().and_then(|text| {
            let id = self.engine.images.resolve(text.trim()).ok()?;
            (id.to_string() == text.trim()).then_some(id)
        });
        let id = match local {
            Some(id) => id,
            None => {
                let sources = match &st.cache_source {
                    Some(s) => std::slice::from_ref(s),
                    None => self.sources.as_slice(),
                };
                let found = sources.iter().find_map(|src| {
                    match berth_image::commit::from_history(
                        &self.engine.images,
                        st.image.as_ref(),
                        src,
                        created_by,
                        &st.run,
                    ) {
                        Ok(Some(id)) => Some((src.clone(), id)),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!("cache-from {src}: {e}");
                            None
                        }
                    }
                });
                let Some((src, id)) = found else {
                    st.missed = true;
                    return false;
                };
                st.cache_source = Some(src);
                self.remember(&st.image, key, Some(&id));
                id
            }
        };
        say(&self.out, " ---> Using cache\n");
        st.image = Some(id);
        true
    }

    /// Keep what a step of `key` made on `parent`.
    fn remember(&self, parent: &Option<ImageId>, key: &str, made: Option<&ImageId>) {
        let Some(id) = made else { return };
        let path = self.cache_path(parent, key);
        if let Some(dir) = path.parent() {
            let _ = berth_core::perm::ensure_dir(dir, berth_core::perm::PRIVATE_DIR);
        }
        if let Err(e) = berth_core::atomic::write_atomic(&path, id.to_string().as_bytes(), berth_core::perm::RECORD) {
            tracing::warn!("build cache: {e}");
        }
    }

    /// WORKDIR: the directory made in the image where it is missing, as
    /// Docker's builder makes it (a layer, empty when it was there).
    async fn workdir(&self, st: &mut State, dir: &str) -> Result<()> {
        let created = format!("/bin/sh -c #(nop) WORKDIR {dir}");
        let key = format!("workdir\n{created}\n{}\n{:?}", run_json(&st.run), st.author);
        if self.take_cached(st, &key, &created) {
            return Ok(());
        }
        let parent = st.image.clone();
        // A layer of the directories that were missing (with those on the
        // way, as a copy-up keeps them); empty when it was all there.
        let (store, image, path) = (self.engine.images.clone(), st.image.clone(), dir.to_owned());
        let (run, author) = (st.run.clone(), st.author.clone());
        let made = tokio::task::spawn_blocking(move || -> Result<ImageId> {
            let land = match &image {
                Some(img) => {
                    let mut out = None;
                    berth_image::rootfs::with_image_view(&store, img, |root| {
                        out = Some(landing(Some(root), &path));
                        Ok(())
                    })
                    .map_err(fail)?;
                    out.unwrap_or_else(|| Err(BuildError("the image's files could not be read".into())))?
                }
                None => landing(None, &path)?,
            };
            let write = |w: std::fs::File| -> berth_image::Result<()> {
                let mut b = tar::Builder::new(std::io::BufWriter::new(w));
                if !land.is_dir {
                    for (name, h) in &land.dirs {
                        b.append_data(&mut h.clone(), name, std::io::empty())
                            .map_err(|e| berth_image::Error::Invalid(e.to_string()))?;
                    }
                }
                b.into_inner().and_then(|mut w| w.flush()).map_err(|e| berth_image::Error::Invalid(e.to_string()))
            };
            let rec = berth_image::commit::with_layer(&store, image.as_ref(), &run, &created, author.as_deref(), write)
                .map_err(fail)?;
            Ok(rec.id)
        })
        .await
        .map_err(fail)??;
        st.image = Some(made);
        self.remember(&parent, &key, st.image.as_ref());
        Ok(())
    }

    fn word(&self, st: &State, s: &str) -> Result<String> {
        self.lexer.word(s, &st.vars()).map_err(fail)
    }

    async fn instruction(&self, st: &mut State, ins: &Instruction, trigger: bool) -> Result<()> {
        let _ = trigger;
        if self.is_cancelled() {
            return Err(BuildError("the build was cancelled".into()));
        }
        match &ins.kind {
            Kind::Run(r) => {
                let mut script = None;
                let cmd = match (&r.command, r.heredocs.as_slice()) {
                    (Command::Shell(t), [h])
                        if t.trim().trim_start_matches("<<").trim_start_matches('-').trim_matches(['"', '\''])
                            == h.name =>
                    {
                        // The heredoc is the script: with a `#!`, run as a file
                        // of its own (at /dev/pipes/<name>, as BuildKit has it).
                        if h.content.starts_with("#!") {
                            script = Some((h.name.clone(), h.content.clone()));
                            vec![format!("/dev/pipes/{}", h.name)]
                        } else {
                            let mut c = st.shell();
                            c.push(h.content.clone());
                            c
                        }
                    }
                    (Command::Shell(t), hs) if !hs.is_empty() => {
                        // The command and its heredocs, for the shell to read.
                        let mut script = format!("{t}\n");
                        for h in hs {
                            script.push_str(&h.content);
                            script.push_str(&h.name);
                            script.push('\n');
                        }
                        let mut c = st.shell();
                        c.push(script);
                        c
                    }
                    (Command::Exec(_), [_, ..]) => {
                        return Err(BuildError("RUN in the exec form takes no heredoc".into()));
                    }
                    (Command::Shell(t), _) => {
                        let mut c = st.shell();
                        c.push(t.clone());
                        c
                    }
                    (Command::Exec(v), []) => v.clone(),
                };
                if r.security.as_deref() == Some("insecure") {
                    return Err(BuildError(
                        "RUN --security=insecure needs the security.insecure entitlement, which berth's builder does not grant"
                            .into(),
                    ));
                }
                let network = match r.network.as_deref() {
                    Some("none") => "none".to_owned(),
                    Some("host") => "host".to_owned(),
                    _ => self.opts.network_mode.clone(),
                };
                self.run(st, cmd, &network, &r.mounts, script).await
            }
            Kind::Cmd(c) => {
                st.run.cmd = Some(self.command(st, c));
                st.cmd_set = true;
                self.meta(st, &format!("CMD {}", json_of(st.run.cmd.as_deref().unwrap_or_default()))).await
            }
            Kind::Entrypoint(c) => {
                st.run.entrypoint = Some(self.command(st, c));
                if !st.cmd_set {
                    st.run.cmd = None;
                }
                self.meta(st, &format!("ENTRYPOINT {}", json_of(st.run.entrypoint.as_deref().unwrap_or_default())))
                    .await
            }
            Kind::Shell(s) => {
                st.run.shell = Some(s.clone());
                self.meta(st, &format!("SHELL {}", json_of(s))).await
            }
            Kind::Label(pairs) => {
                let mut shown = vec![];
                for (k, v) in pairs {
                    let (k, v) = (self.word(st, k)?, self.word(st, v)?);
                    shown.push(format!("{k}={v}"));
                    st.run.labels.get_or_insert_with(Default::default).insert(k, v);
                }
                self.meta(st, &format!("LABEL {}", shown.join(" "))).await
            }
            Kind::Maintainer(m) => {
                st.author = Some(m.clone());
                self.meta(st, &format!("MAINTAINER {m}")).await
            }
            Kind::Expose(ports) => {
                let mut shown = vec![];
                for p in ports {
                    for w in self.lexer.words(p, &st.vars()).map_err(fail)? {
                        let p = if w.contains('/') { w } else { format!("{w}/tcp") };
                        shown.push(p.clone());
                        st.run.exposed_ports.get_or_insert_with(Default::default).insert(p, serde_json::json!({}));
                    }
                }
                self.meta(st, &format!("EXPOSE {}", shown.join(" "))).await
            }
            Kind::Env(pairs) => {
                let mut shown = vec![];
                for (k, v) in pairs {
                    let (k, v) = (self.word(st, k)?, self.word(st, v)?);
                    shown.push(format!("{k}={v}"));
                    let env = st.run.env.get_or_insert_with(Vec::new);
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
                    env.push(format!("{k}={v}"));
                }
                self.meta(st, &format!("ENV {}", shown.join(" "))).await
            }
            Kind::Volume(v) => {
                let mut shown = vec![];
                for p in v {
                    let p = self.word(st, p)?;
                    shown.push(p.clone());
                    st.run.volumes.get_or_insert_with(Default::default).insert(p, serde_json::json!({}));
                }
                self.meta(st, &format!("VOLUME {}", json_of(&shown))).await
            }
            Kind::User(u) => {
                st.run.user = Some(self.word(st, u)?);
                self.meta(st, &format!("USER {}", st.run.user.clone().unwrap_or_default())).await
            }
            Kind::Workdir(w) => {
                let w = self.word(st, w)?;
                let base = st.run.working_dir.clone().unwrap_or_else(|| "/".into());
                let full = if w.starts_with('/') { w } else { format!("{}/{w}", base.trim_end_matches('/')) };
                st.run.working_dir = Some(full.clone());
                self.workdir(st, &full).await
            }
            Kind::Arg(list) => {
                let mut shown = vec![];
                for (name, default) in list {
                    let vars = st.vars();
                    let v = self.arg_value(name, default.as_deref(), &vars)?;
                    shown.push(match default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                    st.args.retain(|(n, _)| n != name);
                    if let Some(v) = v {
                        st.args.push((name.clone(), v));
                    }
                }
                self.meta(st, &format!("ARG {}", shown.join(" "))).await
            }
            Kind::Onbuild(t) => {
                st.run.on_build.get_or_insert_with(Vec::new).push(t.clone());
                self.meta(st, &format!("ONBUILD {t}")).await
            }
            Kind::Stopsignal(s) => {
                st.run.stop_signal = Some(self.word(st, s)?);
                self.meta(st, &format!("STOPSIGNAL {}", st.run.stop_signal.clone().unwrap_or_default())).await
            }
            Kind::Healthcheck(h) => {
                let v = match h {
                    None => serde_json::json!({"Test": ["NONE"]}),
                    Some(h) => {
                        let test = match &h.test {
                            Command::Exec(v) => {
                                std::iter::once("CMD".to_owned()).chain(v.iter().cloned()).collect::<Vec<_>>()
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                        };
                        let mut v = serde_json::json!({"Test": test});
                        for (k, d) in [
                            ("Interval", h.interval),
                            ("Timeout", h.timeout),
                            ("StartPeriod", h.start_period),
                            ("StartInterval", h.start_interval),
                        ] {
                            if let Some(d) = d {
                                v[k] = d.into();
                            }
                        }
                        if let Some(r) = h.retries {
                            v["Retries"] = r.into();
                        }
                        v
                    }
                };
                st.run.healthcheck = Some(v.clone());
                self.meta(st, &format!("HEALTHCHECK {}", v)).await
            }
            Kind::Copy(c) => self.copy(st, c, false).await,
            Kind::Add(c) => self.copy(st, c, true).await,
        }
    }

    fn command(&self, st: &State, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// A container of the stage's image, made by the engine.
    async fn container_with(
        &self,
        st: &State,
        cmd: Vec<String>,
        network: &str,
        env: Vec<String>,
        mounts: &Mounts,
    ) -> Result<String> {
        let Some(image) = &st.image else {
            return Err(BuildError("a step that needs a container cannot run on scratch alone".into()));
        };
        let mut host = self.opts.host.clone();
        host.binds.extend(mounts.binds.iter().cloned());
        host.tmpfs.extend(mounts.tmpfs.clone());
        host.network_mode = if network.is_empty() { "default".into() } else { network.to_owned() };
        host.extra_hosts.extend(self.opts.extra_hosts.clone());
        host.auto_remove = false;
        let req = CreateRequest {
            id: None,
            name: None,
            config: CtrConfig {
                image: image.to_string(),
                env,
                attach_stdout: true,
                attach_stderr: true,
                ..Default::default()
            },
            host,
            endpoints: Default::default(),
            entrypoint: Some(vec![]),
            cmd: Some(cmd),
            working_dir: st.run.working_dir.clone(),
            user: st.run.user.clone(),
            build_step: true,
            pod_sandbox: false,
            cri_log_path: None,
            netns_path: None,
        };
        let c = self.engine.create(req).await.map_err(fail)?;
        Ok(c.id)
    }

    /// A RUN's `--mount`s as the container's binds and tmpfs: a cache
    /// (a directory of the daemon's, kept across builds, by `id`), a bind
    /// of a path of the context (read-only), or a tmpfs.
    async fn mounts(&self, st: &State, specs: &[String]) -> Result<Mounts> {
        let mut out = Mounts::default();
        let workdir = st.run.working_dir.clone().unwrap_or_else(|| "/".into());
        for spec in specs {
            let mut kv: Vec<(String, String)> = vec![];
            for part in spec.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                kv.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            let get = |k: &[&str]| kv.iter().rev().find(|(n, _)| k.contains(&n.as_str())).map(|(_, v)| v.clone());
            let flag = |k: &str| kv.iter().any(|(n, v)| n == k && (v.is_empty() || v == "true"));
            let kind = get(&["type"]).unwrap_or_else(|| "bind".into());
            if kind == "secret" || kind == "ssh" {
                let known = ["type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid", "env"];
                if let Some((k, _)) = kv.iter().find(|(k, _)| !known.contains(&k.as_str())) {
                    return Err(BuildError(format!("RUN --mount={spec}: unknown option {k} for a {kind} mount")));
                }
                if kind == "ssh" && get(&["env"]).is_some() {
                    return Err(BuildError(format!("RUN --mount={spec}: env is for secret mounts")));
                }
                self.private_mount(&mut out, &kind, &get, flag("required"), &workdir)?;
                continue;
            }
            let Some(target) = get(&["target", "dst", "destination"]) else {
                return Err(BuildError(format!("RUN --mount={spec}: the mount needs a target")));
            };
            let target =
                if target.starts_with('/') { target } else { format!("{}/{target}", workdir.trim_end_matches('/')) };
            let known: &[&str] = match kind.as_str() {
                "cache" => {
                    &["type", "target", "dst", "destination", "id", "sharing", "uid", "gid", "mode", "readonly", "ro"]
                }
                "bind" => &[
                    "type",
                    "target",
                    "dst",
                    "destination",
                    "source",
                    "src",
                    "readonly",
                    "ro",
                    "rw",
                    "readwrite",
                    "from",
                ],
                "tmpfs" => &["type", "target", "dst", "destination", "size"],
                other => return Err(BuildError(format!("RUN --mount: unknown mount type {other:?}"))),
            };
            if let Some((k, _)) = kv.iter().find(|(k, _)| !known.contains(&k.as_str())) {
                return Err(BuildError(format!(
                    "RUN --mount={spec}: {k} is not supported by berth's builder for a {kind} mount yet"
                )));
            }
            match kind.as_str() {
                "cache" => {
                    let id = get(&["id"]).unwrap_or_else(|| target.clone());
                    let dir = self.cache_mount_dir(&id, &get(&["uid"]), &get(&["gid"]), &get(&["mode"]))?;
                    if let Some(n) = dir.file_name() {
                        out.uses.push(berth_build::cache::use_mount(&n.to_string_lossy()));
                    }
                    match get(&["sharing"]).as_deref().unwrap_or("shared") {
                        "shared" => {}
                        // One step at a time uses it.
                        "locked" | "private" => out.locks.push(cache_lock(&id).lock_owned().await),
                        other => return Err(BuildError(format!("RUN --mount: unknown sharing mode {other:?}"))),
                    }
                    let ro = if flag("readonly") || flag("ro") { ":ro" } else { "" };
                    out.binds.push(format!("{}:{target}{ro}", dir.display()));
                }
                "bind" => {
                    let source = get(&["source", "src"]).unwrap_or_else(|| ".".into());
                    let rw = flag("rw") || flag("readwrite");
                    let from = get(&["from"]).filter(|f| !f.is_empty());
                    // From a stage or an image, or the context written to:
                    // an overlay of its own over it, whose writes go with
                    // the step.
                    let root = match (&from, rw) {
                        (None, false) => self.context.clone(),
                        (None, true) => {
                            let lower = self.context.display().to_string();
                            out.overlays.push(self.overlay(vec![lower])?);
                            out.overlays.last().map(|o| o.mount.target.clone()).unwrap_or_default()
                        }
                        (Some(f), _) => {
                            let image = self.source_image(f).await?;
                            let (store, id) = (self.engine.images.clone(), image.clone());
                            let lowers = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
                                match store.get(&id).map_err(fail)?.and_then(|r| r.top_layer) {
                                    Some(top) => store.layers.lowers(&top).map_err(fail),
                                    None => Ok(vec![]),
                                }
                            })
                            .await
                            .map_err(fail)??;
                            out.overlays.push(self.overlay(lowers)?);
                            out.overlays.last().map(|o| o.mount.target.clone()).unwrap_or_default()
                        }
                    };
                    let rel = inside(&source)?;
                    let whence = match &from {
                        Some(f) => f.clone(),
                        None => "the build context".into(),
                    };
                    // Every component a real directory or file: no symlink
                    // leads the bind out of its root.
                    let mut at = root;
                    for c in rel.components() {
                        at.push(c);
                        let md = std::fs::symlink_metadata(&at)
                            .map_err(|_| BuildError(format!("RUN --mount=type=bind: {source} is not in {whence}")))?;
                        if md.file_type().is_symlink() {
                            return Err(BuildError(format!(
                                "RUN --mount=type=bind: {source} passes through a symlink of {whence}"
                            )));
                        }
                    }
                    let ro = if rw { "" } else { ":ro" };
                    out.binds.push(format!("{}:{target}{ro}", at.display()));
                }
                _ => {
                    let opts = match get(&["size"]) {
                        Some(sz) => format!("size={sz}"),
                        None => String::new(),
                    };
                    out.tmpfs.insert(target, opts);
                }
            }
        }
        Ok(out)
    }

    /// A secret (a file of the build's private directory, bound read-only)
    /// or an ssh agent's socket, as BuildKit mounts them: at
    /// `/run/secrets/<id>` or `/run/buildkit/ssh_agent.N` unless a target
    /// is given; a secret mode 0400 owned by root unless told, a socket
    /// as it is.
    /// A secret may go to an env var instead (`env=`). A missing one is
    /// skipped unless `required`; a missing ssh agent is an error unless
    /// `required=false`, as in BuildKit.
    fn private_mount(
        &self,
        out: &mut Mounts,
        kind: &str,
        get: &dyn Fn(&[&str]) -> Option<String>,
        required: bool,
        workdir: &str,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let id = get(&["id"]).unwrap_or_else(|| if kind == "ssh" { "default".into() } else { String::new() });
        let num = |k: &str, d: u32| -> Result<u32> {
            match get(&[k]) {
                None => Ok(d),
                Some(v) => {
                    v.parse().map_err(|_| BuildError(format!("RUN --mount=type={kind}: {k} {v:?} is not a number")))
                }
            }
        };
        let absolute =
            |t: String| if t.starts_with('/') { t } else { format!("{}/{t}", workdir.trim_end_matches('/')) };
        if kind == "ssh" {
            // The agent's socket is bound as it is: a bind cannot give it
            // another mode or owner (BuildKit proxies it to do so).
            if let Some(k) = ["mode", "uid", "gid"].into_iter().find(|k| get(&[k]).is_some()) {
                return Err(BuildError(format!(
                    "RUN --mount=type=ssh: {k} is not supported by berth's builder (the agent's socket is bound with its own mode and owner)"
                )));
            }
            let explicit = get(&["required"]).is_some();
            let Some(sock) = self.opts.ssh.get(&id) else {
                if explicit && !required {
                    return Ok(());
                }
                return Err(BuildError(format!(
                    "RUN --mount=type=ssh: no SSH key {id} forwarded from the client (berth build --ssh {id})"
                )));
            };
            let n = out.ssh;
            out.ssh += 1;
            let target = absolute(
                get(&["target", "dst", "destination"]).unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}")),
            );
            if n == 0 {
                out.env.push(format!("SSH_AUTH_SOCK={target}"));
            }
            out.binds.push(format!("{}:{target}", sock.display()));
            return Ok(());
        }
        if id.is_empty() {
            return Err(BuildError("RUN --mount=type=secret: the mount needs an id".into()));
        }
        let mode = match get(&["mode"]) {
            None => 0o400,
            Some(m) => u32::from_str_radix(&m, 8)
                .map_err(|_| BuildError(format!("RUN --mount=type=secret: mode {m:?} is not octal")))?,
        };
        let (uid, gid) = (num("uid", 0)?, num("gid", 0)?);
        let Some(data) = self.opts.secrets.get(&id) else {
            if required {
                return Err(BuildError(format!(
                    "RUN --mount=type=secret: secret {id} not found (berth build --secret id={id},src=…)"
                )));
            }
            return Ok(());
        };
        if let Some(var) = get(&["env"]) {
            let text = String::from_utf8(data.clone())
                .map_err(|_| BuildError(format!("secret {id}: not text, so not for an env var")))?;
            out.env.push(format!("{var}={text}"));
            if get(&["target", "dst", "destination"]).is_none() {
                return Ok(());
            }
        }
        let target = absolute(get(&["target", "dst", "destination"]).unwrap_or_else(|| format!("/run/secrets/{id}")));
        let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.work.join(format!("secret-{n}"));
        berth_core::perm::ensure_dir(&dir, berth_core::perm::PRIVATE_DIR).map_err(fail)?;
        let file = dir.join("secret");
        berth_core::perm::write_file(&file, data, 0o600).map_err(fail)?;
        std::os::unix::fs::chown(&file, Some(uid), Some(gid)).map_err(fail)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
        // The directory is only a way to the file: the step's user may pass.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).map_err(fail)?;
        out.binds.push(format!("{}:{target}:ro", file.display()));
        out.secrets.push(dir);
        Ok(())
    }

    /// An overlay of `lowers` (paths of layers as the layer store names
    /// them, or absolute directories), mounted in the build's directory
    /// with a writable layer of its own, unmounted and removed when
    /// dropped.
    fn overlay(&self, lowers: Vec<String>) -> Result<Overlaid> {
        let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.work.join(format!("mnt-{n}"));
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(d)).map_err(fail)?;
        }
        let mount = berth_image::OverlayMount {
            base: self.engine.images.layers.overlay_dir().to_owned(),
            lowers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("merged"),
        };
        if let Err(e) = mount.mount() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(fail(e));
        }
        Ok(Overlaid { mount, dir })
    }

    /// The directory of cache mount `id`, made (owned and moded as asked)
    /// the first time.
    fn cache_mount_dir(
        &self,
        id: &str,
        uid: &Option<String>,
        gid: &Option<String>,
        mode: &Option<String>,
    ) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let h = berth_image::Digest::sha256(id.as_bytes());
        let root = berth_build::cache::mounts_dir(&self.engine.cfg.data_root);
        berth_core::perm::ensure_dir(&root, berth_core::perm::PRIVATE_DIR).map_err(fail)?;
        let dir = root.join(h.hex());
        if !dir.is_dir() {
            // A temp directory of its own: two stages may make it at once.
            let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = root.join(format!(".{}-{}-{n}", h.hex(), std::process::id()));
            std::fs::create_dir(&tmp).map_err(fail)?;
            let n = |v: &Option<String>, what: &str| -> Result<u32> {
                match v {
                    None => Ok(0),
                    Some(s) => s.parse().map_err(|_| BuildError(format!("RUN --mount: {what} {s:?} is not a number"))),
                }
            };
            std::os::unix::fs::chown(&tmp, Some(n(uid, "uid")?), Some(n(gid, "gid")?)).map_err(fail)?;
            let m = match mode {
                None => 0o755,
                Some(m) => u32::from_str_radix(m, 8)
                    .map_err(|_| BuildError(format!("RUN --mount: mode {m:?} is not octal")))?,
            };
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m)).map_err(fail)?;
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Ok(dir)
    }

    async fn remove(&self, id: &str) {
        if let Err(e) = self.engine.remove(id, true, true).await {
            tracing::warn!(id, "remove build container: {e}");
        }
    }

    async fn commit(&self, st: &mut State, id: &str, created_by: String, mounts: &Mounts) -> Result<()> {
        let mut mount_points: Vec<PathBuf> = mounts
            .binds
            .iter()
            .filter_map(|b| b.split(':').nth(1))
            .chain(mounts.tmpfs.keys().map(String::as_str))
            .map(|t| PathBuf::from(t.trim_start_matches('/')))
            .collect();
        mount_points.sort();
        let r = crate::CommitRequest {
            exact_run: Some(st.run.clone()),
            created_by: Some(created_by),
            mount_points,
            author: st.author.clone().unwrap_or_default(),
            ..Default::default()
        };
        st.image = Some(self.engine.commit(id, r).await.map_err(fail)?);
        Ok(())
    }

    async fn run(
        &self,
        st: &mut State,
        cmd: Vec<String>,
        network: &str,
        mount_specs: &[String],
        script: Option<(String, String)>,
    ) -> Result<()> {
        // ARGs are in a RUN's environment, not in the image's.
        let env: Vec<String> = st.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut specs = vec![];
        for m in mount_specs {
            specs.push(self.word(st, m)?);
        }
        let key =
            format!("run\n{}\n{}\n{network}\n{}\n{}", json_of(&cmd), json_of(&env), json_of(&specs), run_json(&st.run));
        if self.take_cached(st, &key, &run_created(st, &cmd)) {
            return Ok(());
        }
        let parent = st.image.clone();
        let mut mounts = self.mounts(st, &specs).await?;
        if let Some((name, content)) = &script {
            use std::os::unix::fs::PermissionsExt;
            let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = self.work.join(format!("pipes-{n}"));
            std::fs::create_dir_all(&dir).map_err(fail)?;
            std::fs::write(dir.join(name), content).map_err(fail)?;
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
            mounts.binds.push(format!("{}:/dev/pipes:ro", dir.display()));
        }
        let mut env = env;
        env.extend(mounts.env.iter().cloned());
        let made = self.run_step(st, cmd, network, env, &mounts).await;
        drop(mounts);
        if made.is_ok() {
            self.remember(&parent, &key, st.image.as_ref());
        }
        made
    }

    async fn run_step(
        &self,
        st: &mut State,
        cmd: Vec<String>,
        network: &str,
        env: Vec<String>,
        mounts: &Mounts,
    ) -> Result<()> {
        let id = self.container_with(st, cmd.clone(), network, env, mounts).await?;
        say(&self.out, format!(" ---> Running in {}\n", &id[..12.min(id.len())]));
        let result = self.run_in(&id, &cmd).await;
        match result {
            Ok(()) => {
                let committed = self.commit(st, &id, run_created(st, &cmd), mounts).await;
                if !self.opts.keep_passed {
                    say(&self.out, format!("Removing intermediate container {}\n", &id[..12.min(id.len())]));
                    // Removed while the next step runs; the build waits
                    // for it before it ends.
                    let engine = self.engine.clone();
                    let task = tokio::spawn(async move {
                        if let Err(e) = engine.remove(&id, true, true).await {
                            tracing::warn!(id, "remove build container: {e}");
                        }
                    });
                    if let Ok(mut v) = self.removing.lock() {
                        v.push(task);
                    }
                }
                committed
            }
            Err(e) => {
                self.remove(&id).await;
                Err(e)
            }
        }
    }

    /// Start container `id`, stream its output, and wait for its exit.
    async fn run_in(&self, id: &str, cmd: &[String]) -> Result<()> {
        let (engine, key) = (self.engine.clone(), id.to_owned());
        let mut attach = Box::pin(async move { engine.attach(&key, false, true, true).await });
        // Polled once before the start: the attach is then registered, so
        // that no output is missed.
        let early = std::future::poll_fn(|cx| std::task::Poll::Ready(attach.as_mut().poll(cx))).await;
        let waiter = self.engine.waiter(id, crate::WaitCondition::NextExit).map_err(fail)?;
        self.engine.start(id).await.map_err(fail)?;
        let stream = match early {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => attach.await,
        }
        .map_err(fail)?;
        let tty = stream.tty;
        let mut s = stream.stream;
        let read = async {
            if tty {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => say(&self.out, String::from_utf8_lossy(&buf[..n]).into_owned()),
                    }
                }
            } else {
                let mut head = [0u8; 8];
                while s.read_exact(&mut head).await.is_ok() {
                    let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
                    let mut body = vec![0u8; n];
                    if s.read_exact(&mut body).await.is_err() {
                        break;
                    }
                    say(&self.out, String::from_utf8_lossy(&body).into_owned());
                }
            }
        };
        tokio::select! {
            () = read => {}
            () = self.cancelled() => {
                let _ = self.engine.kill(id, Some("SIGKILL")).await;
            }
        }
        let (code, _) = waiter.await;
        if self.is_cancelled() {
            return Err(BuildError("the build was cancelled".into()));
        }
        if code != 0 {
            let shown = match cmd {
                [sh, c, script] if c == "-c" => format!("{sh} -c {script}"),
                _ => json_of(cmd),
            };
            return Err(BuildError(format!("The command '{shown}' returned a non-zero code: {code}")));
        }
        Ok(())
    }

    async fn copy(&self, st: &mut State, c: &Copy, add: bool) -> Result<()> {
        let w = copy_words(&self.lexer, st, c, add)?;
        // Where the files come from: the context, heredocs, URLs, or an image.
        let (source, sources) = if w.urls {
            let (dir, names) = self.download(&w.sources, w.checksum.as_deref()).await?;
            (Source::Dir(dir), names)
        } else if !c.heredocs.is_empty() {
            (
                Source::Dir(self.heredocs(c, &w.sources, &st.vars())?),
                w.sources
                    .iter()
                    .map(|s| s.trim_start_matches("<<-").trim_start_matches("<<").trim_matches(['"', '\'']).to_owned())
                    .collect(),
            )
        } else {
            match &w.from {
                None => (Source::Context, w.sources.clone()),
                Some(f) => (Source::Image(self.source_image(f).await?), w.sources.clone()),
            }
        };
        let read = self.reader();
        let (src2, names) = (source.clone(), sources.clone());
        let content = tokio::task::spawn_blocking(move || read.digest(&src2, &names)).await.map_err(fail)??;
        let (step, key) = copy_step_of(st, c, add, w, source, sources, content);
        if self.take_cached(st, &key, &step.created) {
            self.drop_ahead(st.at);
            return Ok(());
        }
        let parent = st.image.clone();
        let made = self.copy_step(st, c, add, step).await;
        if made.is_ok() {
            self.remember(&parent, &key, st.image.as_ref());
        }
        made
    }

    /// What reads a COPY's sources, for a blocking task.
    fn reader(&self) -> Reader {
        Reader {
            store: self.engine.images.clone(),
            context: self.context.clone(),
            ignore: self.opts.ignore.clone(),
            local: self.opts.local_context,
            digests: self.digests.clone(),
        }
    }

    /// COPY and ADD: a tar of the sources, owned and named as they land,
    /// made straight into a layer over the stage's image (no container).
    /// The destination is resolved in the image below, symlinks and all,
    /// and the directories on the way keep their own mode and owner; with
    /// `--link` the files land as on an empty directory. A layer staged
    /// ahead for this step (see [`Builder::look_ahead`]) is taken when it
    /// was made of the same files landing the same way.
    async fn copy_step(&self, st: &mut State, c: &Copy, add: bool, step: CopyStep) -> Result<()> {
        let ahead = self.take_ahead(st.at).await;
        let read = self.reader();
        let (image, run, author) = (st.image.clone(), st.run.clone(), st.author.clone());
        let (c, ignore) = (c.clone(), self.opts.ignore.clone());
        let made = tokio::task::spawn_blocking(move || -> Result<ImageId> {
            let store = read.store.clone();
            let (owner, land) = below(&store, image.as_ref(), c.link, step.chown.as_deref(), &step.dest_abs)?;
            let fp = fingerprint(&step, owner, &land);
            if let Some(a) = &ahead {
                tracing::debug!(taken = a.fingerprint == fp, "{}: the layer staged ahead", step.created);
            }
            let rec = match ahead {
                Some(a) if a.fingerprint == fp => berth_image::commit::with_staged(
                    &store,
                    image.as_ref(),
                    a.staged,
                    &run,
                    &step.created,
                    author.as_deref(),
                ),
                other => {
                    if let Some(a) = other {
                        store.layers.discard(a.staged);
                    }
                    let spec = tar_spec(&c, add, &step, owner, &ignore);
                    let write = |w: std::fs::File| read.write(&step.source, &spec, &land, w);
                    berth_image::commit::with_layer(
                        &store,
                        image.as_ref(),
                        &run,
                        &step.created,
                        author.as_deref(),
                        write,
                    )
                }
            };
            rec.map(|r| r.id).map_err(|e| match e {
                berth_image::Error::Invalid(m) => BuildError(m),
                e => fail(e),
            })
        })
        .await
        .map_err(fail)??;
        st.image = Some(made);
        Ok(())
    }

    /// Once a stage's steps miss the cache (or with `--no-cache`), every
    /// step after runs: the next COPY or ADD of the context is staged
    /// into a layer in the meantime, on another thread, from the state
    /// as it is now. Its step takes that layer only if the same files
    /// land the same way by then.
    fn look_ahead(&self, st: &State, s: &Stage, from: usize) {
        let Some((n, c, add)) = s.instructions.iter().enumerate().skip(from).find_map(|(n, ins)| match &ins.kind {
            Kind::Copy(c) => Some((n, c.clone(), false)),
            Kind::Add(c) => Some((n, c.clone(), true)),
            _ => None,
        }) else {
            return;
        };
        if c.from.is_some() || !c.heredocs.is_empty() {
            return;
        }
        let at = (st.at.0, n);
        let Ok(mut map) = self.ahead.lock() else { return };
        if map.contains_key(&at) {
            return;
        }
        let Ok(w) = copy_words(&self.lexer, st, &c, add) else { return };
        if w.urls || w.from.is_some() {
            return;
        }
        let (read, st, ignore) = (self.reader(), st.clone(), self.opts.ignore.clone());
        let task = tokio::task::spawn_blocking(move || -> Option<Ahead> {
            let names = w.sources.clone();
            let content = read.digest(&Source::Context, &names).ok()?;
            let (step, _) = copy_step_of(&st, &c, add, w, Source::Context, names, content);
            let (owner, land) =
                below(&read.store, st.image.as_ref(), c.link, step.chown.as_deref(), &step.dest_abs).ok()?;
            let spec = tar_spec(&c, add, &step, owner, &ignore);
            let write = |f: std::fs::File| read.write(&Source::Context, &spec, &land, f);
            let staged = berth_image::commit::staged_of(&read.store, write).ok()?;
            Some(Ahead { fingerprint: fingerprint(&step, owner, &land), staged })
        });
        map.insert(at, task);
    }

    /// The layer staged ahead for the step at `at`, once it is made.
    async fn take_ahead(&self, at: (usize, usize)) -> Option<Ahead> {
        let task = self.ahead.lock().ok()?.remove(&at)?;
        task.await.ok().flatten()
    }

    /// A layer staged ahead that its step will not take: dropped once made.
    fn drop_ahead(&self, at: (usize, usize)) {
        let Some(task) = self.ahead.lock().ok().and_then(|mut m| m.remove(&at)) else { return };
        let store = self.engine.images.clone();
        tokio::spawn(async move {
            if let Ok(Some(a)) = task.await {
                store.layers.discard(a.staged);
            }
        });
    }

    /// Every layer staged ahead for stage `stage` and not taken: dropped.
    fn drop_stage_ahead(&self, stage: usize) {
        let ats: Vec<(usize, usize)> =
            self.ahead.lock().map(|m| m.keys().filter(|k| k.0 == stage).copied().collect()).unwrap_or_default();
        for at in ats {
            self.drop_ahead(at);
        }
    }

    /// ADD's URLs fetched by the daemon into a directory of their own, each
    /// file named from the URL's last path component, mode 0600, its
    /// modification time the answer's Last-Modified; with `checksum`, the
    /// one file must have that digest. The directory and the names.
    async fn download(&self, urls: &[String], checksum: Option<&str>) -> Result<(PathBuf, Vec<String>)> {
        use std::os::unix::fs::PermissionsExt;
        let want = match checksum {
            None => None,
            Some(c) => {
                Some(c.parse::<berth_image::Digest>().map_err(|e| BuildError(format!("ADD --checksum={c}: {e}")))?)
            }
        };
        let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.work.join(format!("download-{n}"));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(fail)?;
        let mut names = vec![];
        for url in urls {
            let mut resp = http.get(url).send().await.map_err(|e| BuildError(format!("ADD {url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(BuildError(format!("ADD {url}: the server answered {}", resp.status())));
            }
            let name = url
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .map(berth_core::url::percent_decode)
                .filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains('/'))
                .unwrap_or_else(|| "index.html".to_owned());
            let modified =
                resp.headers().get(reqwest::header::LAST_MODIFIED).and_then(|v| v.to_str().ok()).and_then(http_date);
            let path = dir.join(&name);
            let mut f = std::fs::File::create(&path).map_err(fail)?;
            let mut hasher = want.as_ref().map_or(berth_image::Algorithm::Sha256, |d| d.algorithm()).hasher();
            while let Some(chunk) = resp.chunk().await.map_err(|e| BuildError(format!("ADD {url}: {e}")))? {
                hasher.update(&chunk);
                f.write_all(&chunk).map_err(fail)?;
            }
            let got = hasher.finish();
            if let Some(w) = &want {
                if *w != got {
                    return Err(BuildError(format!("ADD {url}: digest mismatch {got}: expected {w}")));
                }
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
            if let Some(t) = modified {
                let _ = f.set_modified(t);
            }
            names.push(name);
        }
        Ok((dir, names))
    }

    /// The image a `--from` names: a stage built before (by name or
    /// number), else an image (pulled when missing).
    async fn source_image(&self, from: &str) -> Result<ImageId> {
        let stage = match from.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => self.names.get(&from.to_ascii_lowercase()).copied(),
        };
        match stage {
            Some(i) => match self.built.lock().ok().and_then(|m| m.get(&i).cloned()) {
                Some(Some(id)) => Ok(id),
                Some(None) => Ok(self.empty_image(&RunConfig::default()).await?),
                None => Err(BuildError(format!("COPY --from={from}: stage {from} is not built before this one"))),
            },
            None => self.base_image(from).await,
        }
    }

    /// An image of no layer and no history: what FROM scratch starts from
    /// when a step needs a container.
    async fn empty_image(&self, run: &RunConfig) -> Result<ImageId> {
        let (store, r) = (self.engine.images.clone(), run.clone());
        let rec = tokio::task::spawn_blocking(move || berth_image::commit::empty(&store, &r))
            .await
            .map_err(fail)?
            .map_err(fail)?;
        Ok(rec.id)
    }

    /// The heredocs a COPY names as its sources, written as files of a
    /// directory of their own.
    fn heredocs(&self, c: &Copy, sources: &[String], vars: &[(String, String)]) -> Result<PathBuf> {
        let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.work.join(format!("heredoc-{n}"));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        for s in sources {
            let name = s.trim_start_matches("<<-").trim_start_matches("<<").trim_matches(['"', '\'']);
            let Some(h) = c.heredocs.iter().find(|h| h.name == name && s.starts_with("<<")) else {
                return Err(BuildError(format!("COPY of a heredoc: {s} is not one of its heredocs; a heredoc and files cannot be copied by one COPY")));
            };
            let content = if h.expand {
                self.lexer.heredoc(&h.content, &vars.to_vec()).map_err(fail)?
            } else {
                h.content.clone()
            };
            std::fs::write(dir.join(name), content).map_err(fail)?;
        }
        Ok(dir)
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts[..] else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == mon)? as i64
        + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<Vec<_>>>()?;
    let [h, mi, se] = hms[..] else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if month <= 2 { (y - 1, month + 9) } else { (y, month - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + se;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

/// A RUN's history entry: its command, after its ARGs when it has any
/// (`|N K=V… cmd`), as Docker's builder writes it.
fn run_created(st: &State, cmd: &[String]) -> String {
    if st.args.is_empty() {
        cmd.join(" ")
    } else {
        let a: Vec<String> = st.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("|{} {} {}", a.len(), a.join(" "), cmd.join(" "))
    }
}

fn run_json(r: &RunConfig) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

/// The digest of what `sources` name in `root`: each entry's name, type,
/// mode, owner, link and bytes, read as COPY reads them; not its times.
fn digest_sources(root: &Path, sources: &[String], ignore: &Patterns) -> Result<String> {
    use sha2::Digest as _;
    let mut sum = sha2::Sha256::new();
    for s in sources {
        for file in glob_in(root, s, ignore)? {
            let (f, _) = Piped::archive(root, if file == "/" { "/." } else { &file })?;
            let mut a = tar::Archive::new(f);
            for e in a.entries().map_err(fail)? {
                let mut e = e.map_err(fail)?;
                if left_out(ignore, &file, &e.path().map_err(fail)?) {
                    continue;
                }
                let h = e.header();
                let line = format!(
                    "{}\0{:?}\0{:o}\0{}:{}\0{:?}\n",
                    e.path().map_err(fail)?.display(),
                    h.entry_type(),
                    h.mode().unwrap_or(0),
                    h.uid().unwrap_or(0),
                    h.gid().unwrap_or(0),
                    e.link_name().ok().flatten().map(|l| l.into_owned())
                );
                sum.update(line.as_bytes());
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = std::io::Read::read(&mut e, &mut buf).map_err(fail)?;
                    if n == 0 {
                        break;
                    }
                    sum.update(&buf[..n]);
                }
            }
            a.into_inner().finish()?;
        }
    }
    Ok(format!("{:x}", sum.finalize()))
}

/// The digests of files already read, by device, inode, size and
/// modification time: a file none of them changed in is not read again
/// (bytes rewritten in place with the time put back go unseen, as with
/// git and BuildKit).
type FileKey = (u64, u64, u64, i64, i64);
static FILE_DIGESTS: std::sync::Mutex<Option<HashMap<FileKey, String>>> = std::sync::Mutex::new(None);

/// The most files [`FILE_DIGESTS`] keeps (about 15 MiB of entries).
const FILE_DIGESTS_MAX: usize = 100_000;

/// The digest of a regular file's bytes, from [`FILE_DIGESTS`] when it is
/// unchanged.
fn file_digest(path: &Path, md: &std::fs::Metadata) -> Result<String> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let key = (md.dev(), md.ino(), md.size(), md.mtime(), md.mtime_nsec());
    if let Some(d) = FILE_DIGESTS.lock().ok().and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned())) {
        return Ok(d);
    }
    // Opened without following a link, and checked to be the file stat'ed.
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(fail)?;
    let now = f.metadata().map_err(fail)?;
    if now.ino() != md.ino() || now.dev() != md.dev() {
        return Err(BuildError(format!("{} changed while it was read", path.display())));
    }
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(fail)?;
    let d = format!("{:x}", h.finalize());
    if let Ok(mut m) = FILE_DIGESTS.lock() {
        let m = m.get_or_insert_with(HashMap::new);
        // Bounded: past this many files the digests start over (a file is
        // then read once more), so a daemon that builds many contexts does
        // not grow without end.
        if m.len() >= FILE_DIGESTS_MAX {
            m.clear();
        }
        m.insert(key, d.clone());
    }
    Ok(d)
}

/// [`digest_sources`] for a context that is a directory of this host:
/// walked where it is, each regular file's bytes hashed only when its
/// size, modification time or inode changed since they last were. A source whose path
/// passes through a symlink is read as COPY reads it instead.
fn digest_local(root: &Path, sources: &[String], ignore: &Patterns) -> Result<String> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let mut sum = sha2::Sha256::new();
    for s in sources {
        for file in glob_in(root, s, ignore)? {
            let rel = Path::new(file.trim_start_matches('/'));
            let mut at = root.to_path_buf();
            let mut through_link = false;
            for c in rel.components() {
                at.push(c);
                if std::fs::symlink_metadata(&at).map_err(fail)?.file_type().is_symlink() && at != root.join(rel) {
                    through_link = true;
                }
            }
            if through_link {
                sum.update(digest_sources(root, std::slice::from_ref(&file), ignore)?.as_bytes());
                continue;
            }
            let mut stack = vec![(root.join(rel), rel.to_path_buf())];
            while let Some((path, name)) = stack.pop() {
                let md = std::fs::symlink_metadata(&path).map_err(fail)?;
                if !name.as_os_str().is_empty() && ignore.excludes(&name.display().to_string()) {
                    continue;
                }
                let ft = md.file_type();
                let kind = if ft.is_dir() {
                    "dir"
                } else if ft.is_symlink() {
                    "link"
                } else if ft.is_file() {
                    "file"
                } else {
                    "other"
                };
                let link = if ft.is_symlink() { std::fs::read_link(&path).ok() } else { None };
                let content = if ft.is_file() { file_digest(&path, &md)? } else { String::new() };
                sum.update(
                    format!(
                        "{}\0{kind}\0{:o}\0{}:{}\0{:?}\0{content}\n",
                        name.display(),
                        md.mode() & 0o7777,
                        md.uid(),
                        md.gid(),
                        link
                    )
                    .as_bytes(),
                );
                if ft.is_dir() {
                    let mut entries: Vec<_> =
                        std::fs::read_dir(&path).map_err(fail)?.flatten().map(|e| e.file_name()).collect();
                    entries.sort();
                    for n in entries.into_iter().rev() {
                        stack.push((path.join(&n), name.join(&n)));
                    }
                }
            }
        }
    }
    Ok(format!("{:x}", sum.finalize()))
}

fn json_of(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn label_text(l: &std::collections::BTreeMap<String, String>) -> String {
    l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// A path of the context, cleaned: no `..` that climbs out, relative.
fn inside(s: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if !out.pop() => {
                return Err(BuildError(format!("COPY failed: forbidden path outside the build context: {s}")));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A RUN's mounts, and the locks of the cache mounts it holds alone.
#[derive(Default)]
struct Mounts {
    binds: Vec<String>,
    tmpfs: std::collections::BTreeMap<String, String>,
    locks: Vec<tokio::sync::OwnedMutexGuard<()>>,
    /// The cache mounts marked in use while the step runs.
    uses: Vec<berth_build::cache::InUse>,
    /// Bind mounts' overlays (from a stage or image, or written to).
    overlays: Vec<Overlaid>,
    /// Env vars the mounts set (`SSH_AUTH_SOCK`, a secret's `env=`).
    env: Vec<String>,
    /// ssh agents bound so far.
    ssh: usize,
    /// The secrets' directories, removed once the step is done.
    secrets: Vec<PathBuf>,
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for d in &self.secrets {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// An overlay a RUN's bind mount shows: unmounted and removed when
/// dropped (once the step's container is gone).
struct Overlaid {
    mount: berth_image::OverlayMount,
    dir: PathBuf,
}

impl Drop for Overlaid {
    fn drop(&mut self) {
        if let Err(e) = self.mount.unmount() {
            tracing::warn!("build bind mount: {e}");
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The lock of cache mount `id`, shared by the daemon's builds.
fn cache_lock(id: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        std::sync::OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    match map.lock() {
        Ok(mut m) => m.entry(id.to_owned()).or_default().clone(),
        Err(_) => Arc::new(tokio::sync::Mutex::new(())),
    }
}

/// A COPY or ADD, its words expanded.
struct CopyStep {
    source: Source,
    sources: Vec<String>,
    dest: String,
    dest_abs: String,
    /// Its history entry.
    created: String,
    mode: Option<u32>,
    chown: Option<String>,
    exclude: Vec<String>,
}

/// A COPY's or ADD's words, expanded and checked.
struct Words {
    sources: Vec<String>,
    dest: String,
    mode: Option<u32>,
    chown: Option<String>,
    exclude: Vec<String>,
    checksum: Option<String>,
    /// `--from`, expanded.
    from: Option<String>,
    /// ADD of URLs.
    urls: bool,
}

fn copy_words(lexer: &Lexer, st: &State, c: &Copy, add: bool) -> Result<Words> {
    let what = if add { "ADD" } else { "COPY" };
    if c.keep_git_dir {
        return Err(BuildError(format!(
            "{what} --keep-git-dir applies to git repositories, which berth's builder does not fetch yet"
        )));
    }
    let vars = st.vars();
    let word = |s: &str| lexer.word(s, &vars).map_err(fail);
    let sources = c.sources.iter().map(|s| word(s)).collect::<Result<Vec<_>>>()?;
    let dest = word(&c.dest)?;
    let is_url = |s: &String| s.starts_with("http://") || s.starts_with("https://");
    if let Some(g) = sources.iter().find(|s| s.starts_with("git@") || s.ends_with(".git")) {
        return Err(BuildError(format!("{what} of a git repository ({g}) is not supported by berth's builder yet")));
    }
    let urls = add && sources.iter().any(is_url);
    if urls && !sources.iter().all(is_url) {
        return Err(BuildError("ADD of URLs and local files at once is not supported by berth's builder yet".into()));
    }
    if c.checksum.is_some() && !(urls && sources.len() == 1) {
        return Err(BuildError("ADD --checksum takes one URL as its source".into()));
    }
    let mode = match &c.chmod {
        None => None,
        Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| BuildError(format!("invalid chmod parameter: {m}")))?),
    };
    Ok(Words {
        sources,
        dest,
        mode,
        chown: c.chown.as_deref().map(word).transpose()?,
        exclude: c.exclude.iter().map(|x| word(x)).collect::<Result<Vec<_>>>()?,
        checksum: c.checksum.as_deref().map(word).transpose()?,
        from: c.from.as_deref().map(word).transpose()?,
        urls,
    })
}

/// The step a COPY or ADD makes of its words and sources, and its cache
/// key: the history names the files by a digest of what lands (their
/// content, owner, mode, and what is left out; Docker's `file:…`,
/// `dir:…` and `multi:…` forms).
fn copy_step_of(
    st: &State,
    c: &Copy,
    add: bool,
    w: Words,
    source: Source,
    sources: Vec<String>,
    content: (String, &'static str),
) -> (CopyStep, String) {
    let what = if add { "ADD" } else { "COPY" };
    let (content, kind) = content;
    let workdir = st.run.working_dir.clone().unwrap_or_else(|| "/".into());
    let dest = w.dest;
    let dest_abs =
        if dest.starts_with('/') { dest.clone() } else { format!("{}/{dest}", workdir.trim_end_matches('/')) };
    let created_text = format!("{what} {} {}", sources.join(" "), dest);
    let landed = format!(
        "{content}\n{:?}\n{:?}\n{:?}\n{}\n{}\n{}",
        w.chown,
        c.chmod,
        w.exclude,
        c.parents,
        c.link,
        add && c.from.is_none() && c.heredocs.is_empty()
    );
    let sum = format!("{kind}:{}", berth_image::Digest::sha256(landed.as_bytes()).hex());
    let created = format!("/bin/sh -c #(nop) {what} {sum} in {dest} ");
    let key = format!("copy\n{created_text}\n{created}\n{}", run_json(&st.run));
    let step = CopyStep { source, sources, dest, dest_abs, created, mode: w.mode, chown: w.chown, exclude: w.exclude };
    (step, key)
}

/// What the files of a COPY are written as: their names, where they go,
/// and how they are owned.
fn tar_spec(c: &Copy, add: bool, step: &CopyStep, owner: (u64, u64), ignore: &Patterns) -> TarSpec {
    TarSpec {
        sources: step.sources.clone(),
        dir_dest: step.dest.ends_with('/') || step.dest.ends_with("/."),
        owner,
        mode: step.mode,
        extract: add && c.from.is_none() && c.heredocs.is_empty(),
        exclude: berth_build::ignore::Patterns::parse(&step.exclude.join("\n")),
        parents: c.parents,
        ignore: match step.source {
            Source::Context => ignore.clone(),
            _ => Patterns::default(),
        },
    }
}

/// The image below a COPY: the owner's ids (`--chown` names looked up in
/// it), and where the files land in it (on nothing with `--link`).
fn below(
    store: &berth_image::ImageStore,
    image: Option<&ImageId>,
    link: bool,
    chown: Option<&str>,
    dest: &str,
) -> Result<((u64, u64), Landing)> {
    let names = chown.is_some_and(|o| o.split(':').any(|p| p.parse::<u64>().is_err()));
    let look = |root: Option<&Path>| -> Result<((u64, u64), Landing)> {
        let owner = match chown {
            None => (0, 0),
            Some(o) => owner_from(o, root)?,
        };
        Ok((owner, landing(if link { None } else { root }, dest)?))
    };
    match image {
        Some(img) if !link || names => {
            let mut out = None;
            berth_image::rootfs::with_image_view(store, img, |root| {
                out = Some(look(Some(root)));
                Ok(())
            })
            .map_err(fail)?;
            out.unwrap_or_else(|| Err(BuildError("the image's files could not be read".into())))
        }
        _ => look(None),
    }
}

/// What a COPY's layer is made of: its files (content, names, owner,
/// mode), where they land and the directories on the way.
fn fingerprint(step: &CopyStep, owner: (u64, u64), land: &Landing) -> String {
    let mut f =
        format!("{}\n{}\n{:?}\n{owner:?}\n{}\n{}\n", step.created, step.dest_abs, step.sources, land.dest, land.is_dir);
    for (name, h) in &land.dirs {
        f.push_str(name);
        f.push_str(&berth_core::id::hex(h.as_bytes()));
        f.push('\n');
    }
    f
}

/// The task staging a COPY's layer ahead of its step.
type Staging = tokio::task::JoinHandle<Option<Ahead>>;

/// A COPY's layer staged ahead of its step (see `Builder::look_ahead`).
struct Ahead {
    fingerprint: String,
    staged: berth_image::layers::Staged,
}

/// The digests of sources of a context unpacked from a tar, by their
/// names: it does not change while the build runs.
type Digests = Arc<std::sync::Mutex<HashMap<String, (String, &'static str)>>>;

/// Reads a COPY's sources, on a blocking thread.
struct Reader {
    store: Arc<berth_image::ImageStore>,
    context: PathBuf,
    ignore: Patterns,
    local: bool,
    digests: Digests,
}

impl Reader {
    /// The digest of what `names` are in `source` (see [`digest_sources`]),
    /// and their kind.
    fn digest(&self, source: &Source, names: &[String]) -> Result<(String, &'static str)> {
        let (ctx, ignore) = (&self.context, &self.ignore);
        match source {
            Source::Context if self.local => Ok((digest_local(ctx, names, ignore)?, source_kind(ctx, names, ignore)?)),
            Source::Context => {
                let key = format!("{names:?}");
                if let Some(d) = self.digests.lock().ok().and_then(|m| m.get(&key).cloned()) {
                    return Ok(d);
                }
                let d = (digest_sources(ctx, names, ignore)?, source_kind(ctx, names, ignore)?);
                if let Ok(mut m) = self.digests.lock() {
                    m.insert(key, d.clone());
                }
                Ok(d)
            }
            Source::Dir(root) => {
                let none = Patterns::default();
                Ok((digest_sources(root, names, &none)?, source_kind(root, names, &none)?))
            }
            Source::Image(img) => {
                let mut out = None;
                let r = berth_image::rootfs::with_image_view(&self.store, img, |root| {
                    let none = Patterns::default();
                    out = Some(
                        digest_sources(root, names, &none).and_then(|d| Ok((d, source_kind(root, names, &none)?))),
                    );
                    Ok(())
                });
                match (r, out) {
                    (Ok(()), Some(d)) => d,
                    (Err(e), _) => Err(fail(e)),
                    (Ok(()), None) => Err(BuildError("the image's files could not be read".into())),
                }
            }
        }
    }

    /// The layer's tar of `spec` from `source` into `w` (see [`write_tar`]).
    fn write(&self, source: &Source, spec: &TarSpec, land: &Landing, w: std::fs::File) -> berth_image::Result<()> {
        let to_image = |e: BuildError| berth_image::Error::Invalid(e.0);
        let w = std::io::BufWriter::with_capacity(1 << 20, w);
        match source {
            Source::Context => write_tar(&self.context, spec, land, w).map_err(to_image),
            Source::Dir(root) => write_tar(root, spec, land, w).map_err(to_image),
            Source::Image(img) => berth_image::rootfs::with_image_view(&self.store, img, |root| {
                write_tar(root, spec, land, w).map_err(to_image)
            }),
        }
    }
}

/// What the sources are, as the history names them: one file, one
/// directory, or several (`multi`).
fn source_kind(root: &Path, sources: &[String], ignore: &Patterns) -> Result<&'static str> {
    let mut found = vec![];
    for s in sources {
        found.extend(glob_in(root, s, ignore)?);
    }
    Ok(match found.as_slice() {
        [one] if berth_image::copy::stat(root, one).is_ok_and(|st| st.mode & (1 << 31) != 0) => "dir",
        [_] => "file",
        _ => "multi",
    })
}

/// Where COPY's files are read from.
#[derive(Clone)]
enum Source {
    /// The build context, less what `.dockerignore` leaves out.
    Context,
    /// A directory: the context, or heredocs written out.
    Dir(PathBuf),
    /// An image's root file system, through a read-only view.
    Image(ImageId),
}

/// What a COPY's tar holds.
struct TarSpec {
    sources: Vec<String>,
    /// Whether the destination (see [`Landing`]) is a directory the
    /// sources go into, by how it is written (a trailing `/`).
    dir_dest: bool,
    owner: (u64, u64),
    mode: Option<u32>,
    /// ADD: a single local archive is extracted at `dest`.
    extract: bool,
    /// `--exclude`: paths, relative to each source, left out.
    exclude: berth_build::ignore::Patterns,
    /// `.dockerignore`, for sources of the context: paths of the context
    /// the build does not see.
    ignore: Patterns,
    /// `--parents`: each source lands with its directories (those after a
    /// `/./` in its path, when it has one).
    parents: bool,
}

/// The paths (inside `root`, absolute) a source names: itself, or what
/// its wildcards match, component by component as Go's `filepath.Match`
/// does. No symlink is followed on the way: a wildcard lists directories
/// only.
fn glob_in(root: &Path, s: &str, ignore: &Patterns) -> Result<Vec<String>> {
    let rel = inside(s)?;
    if !rel.as_os_str().is_empty() && ignore.excludes(&rel.display().to_string()) {
        return Err(BuildError(format!(
            "COPY failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
        )));
    }
    let shown = |p: &Path| format!("/{}", p.display());
    if !s.contains(['*', '?', '[']) {
        return match berth_image::copy::stat(root, &shown(&rel)) {
            Ok(_) => Ok(vec![shown(&rel)]),
            Err(_) => Err(BuildError(format!(
                "COPY failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
            ))),
        };
    }
    let mut found = vec![PathBuf::new()];
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let pat: Vec<char> = part.as_os_str().to_string_lossy().chars().collect();
        let last = i + 1 == parts.len();
        let mut next = vec![];
        for base in &found {
            let Ok(rd) = std::fs::read_dir(root.join(base)) else { continue };
            let mut entries: Vec<(String, bool)> = rd
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
                .collect();
            entries.sort();
            for (n, is_dir) in entries {
                if (last || is_dir) && berth_build::shell::glob(&pat, &n.chars().collect::<Vec<_>>()) {
                    next.push(base.join(n));
                }
            }
        }
        found = next;
    }
    found.retain(|p| !ignore.excludes(&p.display().to_string()));
    if found.is_empty() {
        return Err(BuildError(format!("COPY failed: no source files were specified for {s:?}")));
    }
    Ok(found.iter().map(|p| shown(p)).collect())
}

/// Whether an entry of the archive of source `file` (named from its base
/// name, or `.` for the root) is left out by `.dockerignore`, by its path
/// in the context.
fn left_out(ignore: &Patterns, file: &str, entry: &Path) -> bool {
    if ignore.is_empty() {
        return false;
    }
    let parent = Path::new(file.trim_start_matches('/')).parent().unwrap_or(Path::new(""));
    let rel: PathBuf = parent.join(entry).components().filter(|c| !matches!(c, Component::CurDir)).collect();
    !rel.as_os_str().is_empty() && ignore.excludes(&rel.display().to_string())
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// Whether the first bytes are those of a tar, plain or compressed with
/// gzip, zstd, bzip2 or xz: what ADD unpacks, as Docker's does.
fn archive_magic(h: &[u8]) -> bool {
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || h.starts_with(b"BZh")
        || h.starts_with(XZ_MAGIC)
        || (h.len() >= 262 && &h[257..262] == b"ustar")
}

/// A stream uncompressed: plain, gzip, zstd, bzip2 or xz (a build
/// context, or an archive ADD unpacks). An xz stream is decoded by a
/// thread into a pipe; its error cuts the stream short, which the tar
/// reader then reports.
pub fn uncompressed<'a>(r: impl std::io::Read + Send + 'static) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    use std::io::BufRead;
    let mut r = std::io::BufReader::with_capacity(1 << 20, r);
    let head = r.fill_buf()?.to_vec();
    if head.starts_with(b"BZh") {
        return Ok(Box::new(bzip2::read::MultiBzDecoder::new(r)));
    }
    if head.starts_with(XZ_MAGIC) {
        let (pr, mut pw) = std::io::pipe()?;
        std::thread::spawn(move || {
            if let Err(e) = lzma_rs::xz_decompress(&mut r, &mut pw) {
                tracing::debug!("xz stream: {e:?}");
            }
        });
        return Ok(Box::new(pr));
    }
    berth_image::unpack::decompress(r)
}

/// `--chown`'s user and group as ids, names looked up in the image's
/// `/etc/passwd` and `/etc/group` (read inside `root`).
fn owner_from(spec: &str, root: Option<&Path>) -> Result<(u64, u64)> {
    let table = |path: &str| -> String {
        let Some(root) = root else { return String::new() };
        let Ok(dir) = std::fs::File::open(root) else { return String::new() };
        use std::os::fd::AsFd;
        match berth_core::rootfs::openat_in_root(dir.as_fd(), Path::new(path), libc::O_RDONLY) {
            Ok(fd) => {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text);
                text
            }
            Err(_) => String::new(),
        }
    };
    let find = |text: &str, name: &str, fields: usize| -> Option<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.first().map(String::as_str) == Some(name) && f.len() > fields)
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = match u.parse::<u64>() {
        Ok(n) => (n, None),
        Err(_) => {
            let Some(f) = find(&table("/etc/passwd"), u, 3) else {
                return Err(BuildError(format!(
                    "unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"
                )));
            };
            (f[2].parse().map_err(fail)?, f[3].parse::<u64>().ok())
        }
    };
    let gid = match g {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let Some(f) = find(&table("/etc/group"), g, 2) else {
                    return Err(BuildError(format!(
                        "unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"
                    )));
                };
                f[2].parse().map_err(fail)?
            }
        },
    };
    Ok((uid, gid))
}

/// Where a COPY's files land in the image below: the destination with
/// its symlinks resolved inside the image's root, and a directory header
/// for each of its components, the destination's own last: the image's
/// mode, owner and time where it has the directory, root's 0755 where it
/// does not.
struct Landing {
    /// Absolute, resolved.
    dest: String,
    /// Whether the destination is a directory of the image.
    is_dir: bool,
    dirs: Vec<(String, tar::Header)>,
}

fn dir_header(mode: u32, uid: u64, gid: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

/// [`Landing`] of `dest` in `root` (none: an empty directory). The
/// path is cleaned as Go's `filepath.Clean` cleans it, then walked a
/// component at a time inside the root, each symlink followed as the
/// image's own processes would see it (an absolute target from the
/// image's root, `..` stopping there).
fn landing(root: Option<&Path>, dest: &str) -> Result<Landing> {
    use std::os::unix::fs::MetadataExt;
    let mut todo = std::collections::VecDeque::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => todo.push_back(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                todo.pop_back();
            }
            _ => {}
        }
    }
    let mut found: Vec<(String, Option<std::fs::Metadata>)> = vec![];
    if let Some(root) = root {
        let mut links = 0;
        while let Some(p) = todo.pop_front() {
            match p.as_str() {
                "." | "" => continue,
                ".." => {
                    found.pop();
                    continue;
                }
                _ => {}
            }
            let mut at = root.to_path_buf();
            at.extend(found.iter().map(|(n, _)| n.as_str()));
            at.push(&p);
            let Ok(md) = std::fs::symlink_metadata(&at) else {
                todo.push_front(p);
                break;
            };
            if md.file_type().is_symlink() {
                links += 1;
                if links > 40 {
                    return Err(BuildError(format!("COPY failed: too many levels of symbolic links in {dest}")));
                }
                let target = std::fs::read_link(&at).map_err(fail)?;
                if target.is_absolute() {
                    found.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push_front(n.to_string_lossy().into_owned()),
                        Component::ParentDir => todo.push_front("..".into()),
                        _ => {}
                    }
                }
                continue;
            }
            found.push((p, Some(md)));
        }
    }
    // What is not there is made; `..` in it stays at the root.
    for p in todo {
        match p.as_str() {
            "." | "" => {}
            ".." => {
                found.pop();
            }
            _ => found.push((p, None)),
        }
    }
    let is_dir = found.last().is_some_and(|(_, m)| m.as_ref().is_some_and(|m| m.is_dir()));
    let mut dirs = vec![];
    let mut path = String::new();
    for (name, md) in &found {
        path = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
        let h = match md {
            Some(m) => dir_header(m.mode() & 0o7777, u64::from(m.uid()), u64::from(m.gid()), m.mtime().max(0) as u64),
            None => dir_header(0o755, 0, 0, 0),
        };
        dirs.push((format!("{path}/"), h));
    }
    Ok(Landing { dest: format!("/{path}"), is_dir, dirs })
}

/// No layer can hold a file named as an overlay whiteout.
fn check_name(p: &Path) -> Result<()> {
    match p.file_name().map(|n| n.to_string_lossy()) {
        Some(n) if n.starts_with(".wh.") => Err(BuildError(format!(
            "COPY failed: {}: a file whose name begins with .wh. cannot be stored in an image layer",
            p.display()
        ))),
        _ => Ok(()),
    }
}

/// Write to `w` the layer's tar of what `spec` names in `root`: the
/// directories the files land in (see [`Landing`]), then each source read
/// through `copy::archive` (resolved inside the root, so that no symlink
/// leads out of it), its entries renamed to where they land, owned by
/// `spec.owner`, with `spec.mode` when given. ADD of a single local
/// archive extracts it at the destination instead.
fn write_tar(root: &Path, spec: &TarSpec, land: &Landing, w: impl Write + Send) -> Result<()> {
    // Each match, with the directories it keeps under the dest (--parents).
    let mut kept: Vec<(String, PathBuf)> = vec![];
    for s in &spec.sources {
        let strip = match s.split_once("/./") {
            Some((before, _)) => inside(before)?.components().count(),
            None => 0,
        };
        for m in glob_in(root, s, &spec.ignore)? {
            let keep: PathBuf = Path::new(m.trim_start_matches('/')).components().skip(strip).collect();
            kept.push((m, keep));
        }
    }
    let files: Vec<String> = kept.iter().map(|(m, _)| m.clone()).collect();
    let dir_dest = spec.dir_dest || land.is_dir || files.len() > 1 || spec.parents;
    let dest = land.dest.as_str();
    let rel_dest = dest.trim_start_matches('/').to_owned();
    let mut b = tar::Builder::new(w);
    let dirs = |b: &mut tar::Builder<_>, all: bool| -> Result<()> {
        let n = if all { land.dirs.len() } else { land.dirs.len().saturating_sub(1) };
        for (name, h) in &land.dirs[..n] {
            b.append_data(&mut h.clone(), name, std::io::empty()).map_err(fail)?;
        }
        Ok(())
    };
    // One source read out of the root, as a tar of its own.
    let read = |path: &str| -> Result<(Piped, bool)> { Piped::archive(root, path) };
    if spec.extract && files.len() == 1 {
        let (f, is_dir) = read(&files[0])?;
        if !is_dir {
            let mut a = tar::Archive::new(f);
            let mut entries = a.entries().map_err(fail)?;
            if let Some(Ok(mut e)) = entries.next() {
                if e.header().entry_type().is_file() {
                    let mut head = std::io::BufReader::with_capacity(1 << 20, &mut e);
                    let magic = std::io::BufRead::fill_buf(&mut head).map_err(fail)?.to_vec();
                    if archive_magic(&magic) {
                        dirs(&mut b, true)?;
                        if magic.starts_with(XZ_MAGIC) {
                            // Decoded by a thread of this scope into a pipe.
                            let (pr, mut pw) = std::io::pipe().map_err(fail)?;
                            std::thread::scope(|s| -> Result<()> {
                                let (b, rel) = (&mut b, &rel_dest);
                                let put = s.spawn(move || extract_into(b, pr, rel));
                                let dec = lzma_rs::xz_decompress(&mut head, &mut pw);
                                drop(pw);
                                let put =
                                    put.join().unwrap_or_else(|_| Err(BuildError("the ADD unpacker panicked".into())));
                                match (put, dec) {
                                    (Err(e), _) => Err(e),
                                    (Ok(()), Err(e)) => Err(BuildError(format!("ADD failed: the xz archive: {e:?}"))),
                                    (Ok(()), Ok(())) => Ok(()),
                                }
                            })?;
                        } else if magic.starts_with(b"BZh") {
                            extract_into(&mut b, bzip2::read::MultiBzDecoder::new(head), &rel_dest)?;
                        } else {
                            extract_into(&mut b, berth_image::unpack::decompress(head).map_err(fail)?, &rel_dest)?;
                        }
                        b.into_inner().map_err(fail)?.flush().map_err(fail)?;
                        return Ok(());
                    }
                }
            }
        }
    }
    dirs(&mut b, dir_dest)?;
    for (file, keep) in &kept {
        // The root itself is read as `/.`, its entries named from `.`.
        let (f, is_dir) = read(if file == "/" { "/." } else { file })?;
        let base = Path::new(file).file_name().map_or_else(|| PathBuf::from("."), PathBuf::from);
        // An entry's name as it lands.
        let join = |p: PathBuf, w: &Path| if w.as_os_str().is_empty() { p } else { p.join(w) };
        let land = |name: &Path| -> Option<PathBuf> {
            if left_out(&spec.ignore, file, name) {
                return None;
            }
            let within = name.strip_prefix(&base).ok()?;
            // Left out by --exclude: by its path within a directory
            // source, or a file source by its name.
            let rel = if is_dir { within.to_path_buf() } else { base.clone() };
            if !rel.as_os_str().is_empty() && spec.exclude.excludes(&rel.display().to_string()) {
                return None;
            }
            if spec.parents {
                return Some(join(Path::new(&rel_dest).join(keep), within));
            }
            if is_dir {
                // A directory's contents go, not the directory itself.
                (!within.as_os_str().is_empty()).then(|| join(PathBuf::from(&rel_dest), within))
            } else if dir_dest {
                Some(join(Path::new(&rel_dest).join(&base), within))
            } else {
                Some(join(PathBuf::from(&rel_dest), within))
            }
        };
        let mut a = tar::Archive::new(f);
        for e in a.entries().map_err(fail)? {
            let mut e = e.map_err(fail)?;
            let name = e.path().map_err(fail)?.into_owned();
            let Some(to) = land(&name) else { continue };
            check_name(&to)?;
            let mut h = e.header().clone();
            h.set_uid(spec.owner.0);
            h.set_gid(spec.owner.1);
            if let Some(m) = spec.mode {
                h.set_mode(m);
            }
            match h.entry_type() {
                tar::EntryType::Link => {
                    let target = e.link_name().map_err(fail)?.map(|t| t.into_owned()).unwrap_or_default();
                    let target = land(&target).unwrap_or(target);
                    b.append_link(&mut h, &to, &target).map_err(fail)?;
                }
                tar::EntryType::Symlink => {
                    let target = e.link_name().map_err(fail)?.map(|t| t.into_owned()).unwrap_or_default();
                    b.append_link(&mut h, &to, &target).map_err(fail)?;
                }
                _ => {
                    b.append_data(&mut h, &to, &mut e).map_err(fail)?;
                }
            }
        }
        a.into_inner().finish()?;
    }
    b.into_inner().map_err(fail)?.flush().map_err(fail)?;
    Ok(())
}

/// ADD's archive, its entries put under `rel_dest` as they are (owners,
/// modes and all); one that climbs out of the destination is refused.
fn extract_into<W: Write>(b: &mut tar::Builder<W>, archive: impl std::io::Read, rel_dest: &str) -> Result<()> {
    let under = |p: &Path| -> Result<PathBuf> {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::ParentDir if !out.pop() => {
                    return Err(BuildError(format!("ADD failed: the archive's entry {} leads out of it", p.display())));
                }
                _ => {}
            }
        }
        Ok(Path::new(rel_dest).join(out))
    };
    let mut a = tar::Archive::new(archive);
    for e in a.entries().map_err(fail)? {
        let mut e = e.map_err(fail)?;
        let name = e.path().map_err(fail)?.into_owned();
        let to = under(&name)?;
        if to.as_os_str() == rel_dest {
            continue;
        }
        check_name(&to)?;
        let mut h = e.header().clone();
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = under(&e.link_name().map_err(fail)?.map(|t| t.into_owned()).unwrap_or_default())?;
                b.append_link(&mut h, &to, &target).map_err(fail)?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name().map_err(fail)?.map(|t| t.into_owned()).unwrap_or_default();
                b.append_link(&mut h, &to, &target).map_err(fail)?;
            }
            tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Continuous => {
                b.append_data(&mut h, &to, &mut e).map_err(fail)?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => {
                // Devices, fifos: as they are, with no data.
                h.set_size(0);
                b.append_data(&mut h, &to, std::io::empty()).map_err(fail)?;
            }
        }
    }
    Ok(())
}

/// The tar `copy::archive` makes of a path, read as a writer thread makes
/// it (no temp file); [`Piped::finish`] says whether the writer succeeded.
struct Piped {
    r: std::io::PipeReader,
    writer: Option<std::thread::JoinHandle<berth_image::Result<berth_image::copy::PathStat>>>,
}

impl Piped {
    /// `path` of `root` as a tar, and whether it is a directory.
    fn archive(root: &Path, path: &str) -> Result<(Piped, bool)> {
        let st = berth_image::copy::stat(root, path).map_err(fail)?;
        let (r, w) = std::io::pipe().map_err(fail)?;
        let (root, p) = (root.to_owned(), path.to_owned());
        let writer = std::thread::spawn(move || berth_image::copy::archive(&root, &p, w));
        Ok((Piped { r, writer: Some(writer) }, st.mode & (1 << 31) != 0))
    }

    /// Read to the end, and the writer's own error if it had one.
    fn finish(mut self) -> Result<()> {
        std::io::copy(&mut self.r, &mut std::io::sink()).map_err(fail)?;
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(Ok(_))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(fail(e)),
            Some(Err(_)) => Err(BuildError("the archive writer panicked".into())),
        }
    }
}

impl std::io::Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}
