//! The instructions of a Dockerfile, typed and checked: each one's flags,
//! its arguments in the forms the reference allows, and the stages they
//! make. Values stay as written (quotes and `$` included) until the build
//! expands them with the stage's ARGs and ENVs, on the instructions that
//! take expansion.

use crate::parse::{self, Args, Dockerfile, Heredoc, Node, ParseError};
use crate::shell::Lexer;

/// A command in the exec (JSON) form or the shell form (run by the
/// stage's SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// COPY's and ADD's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copy {
    /// Sources as written; a `<<NAME` source is a heredoc's content.
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from=<stage|image>` (COPY).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    /// `--parents` (COPY): keep the sources' directories under the dest.
    pub parents: bool,
    /// `--checksum=` (ADD of a URL).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD of a git URL).
    pub keep_git_dir: bool,
    pub heredocs: Vec<Heredoc>,
}

/// HEALTHCHECK CMD and its options, durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub test: Command,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

/// RUN and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    /// `--mount=` values, as written.
    pub mounts: Vec<String>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    /// `KEY=value` pairs, as written.
    Label(Vec<(String, String)>),
    Maintainer(String),
    Expose(Vec<String>),
    Env(Vec<(String, String)>),
    Add(Copy),
    Copy(Copy),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    /// Names and their defaults.
    Arg(Vec<(String, Option<String>)>),
    /// The trigger, as the image config keeps it (`RUN echo hi`).
    Onbuild(String),
    Stopsignal(String),
    /// `HEALTHCHECK NONE` is `None`.
    Healthcheck(Option<Health>),
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub line: usize,
    /// As written, continuations joined (for `Step N/M : …`).
    pub original: String,
    pub kind: Kind,
}

/// A stage: FROM and what follows it up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its place among the stages, from 0.
    pub index: usize,
    /// `AS name`, lower case.
    pub name: Option<String>,
    /// The base as written: an image, a stage's name, or `scratch`.
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    /// The FROM line as written.
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// A Dockerfile as stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub directives: parse::Directives,
    /// The ARGs before the first FROM: names FROM lines may use.
    pub meta_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
}

struct Flags {
    all: Vec<(String, Option<String>)>,
}

impl Flags {
    fn new(node: &Node, allowed: &[&str], err: &dyn Fn(String) -> ParseError) -> Result<Flags, ParseError> {
        let mut all = vec![];
        for f in &node.flags {
            let (k, v) = match f.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (f.clone(), None),
            };
            if !allowed.contains(&k.as_str()) {
                return Err(err(format!("unknown flag: {k}")));
            }
            all.push((k, v));
        }
        Ok(Flags { all })
    }

    /// The value of a flag given once at most.
    fn one(&self, name: &str, err: &dyn Fn(String) -> ParseError) -> Result<Option<String>, ParseError> {
        let mut found = self.all.iter().filter(|(k, _)| k == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(err(format!("flag --{name} given more than once")));
        }
        match first {
            None => Ok(None),
            Some((_, Some(v))) => Ok(Some(v.clone())),
            Some((_, None)) => Err(err(format!("flag --{name} needs a value"))),
        }
    }

    fn many(&self, name: &str) -> Vec<String> {
        self.all.iter().filter(|(k, _)| k == name).filter_map(|(_, v)| v.clone()).collect()
    }

    /// A boolean flag: `--link`, `--link=true|false`.
    fn bool(&self, name: &str, err: &dyn Fn(String) -> ParseError) -> Result<bool, ParseError> {
        match self.all.iter().rev().find(|(k, _)| k == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(err(format!("expecting boolean value for flag {name}, not: {v}"))),
            },
        }
    }
}

/// A Go duration (`30s`, `1m30s`, `1.5h`, `500ms`) in nanoseconds.
pub fn duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    (total <= i64::MAX as f64).then_some(total as i64)
}

fn text(node: &Node) -> String {
    match &node.args {
        Args::Text(t) => t.clone(),
        Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn command(node: &Node, err: &dyn Fn(String) -> ParseError) -> Result<Command, ParseError> {
    match &node.args {
        Args::Json(v) => Ok(Command::Exec(v.clone())),
        Args::Text(t) if t.trim().is_empty() && node.heredocs.is_empty() => {
            Err(err(format!("{} requires at least one argument", node.keyword)))
        }
        Args::Text(t) => Ok(Command::Shell(t.clone())),
    }
}

/// `KEY=value …`, or the old `KEY value` (one pair, the rest its value).
fn pairs(node: &Node, lexer: Lexer, err: &dyn Fn(String) -> ParseError) -> Result<Vec<(String, String)>, ParseError> {
    let t = text(node);
    let words = lexer.split_raw(&t).map_err(|e| err(e.0))?;
    let Some(first) = words.first() else {
        return Err(err(format!("{} requires at least one argument", node.keyword)));
    };
    if !first.contains('=') {
        if node.keyword == "LABEL" {
            return Err(err(format!("Syntax error - can't find = in {first:?}. Must be of the form: name=value")));
        }
        let value = t.trim_start()[first.len()..].trim().to_owned();
        if value.is_empty() {
            return Err(err(format!("{} must have two arguments", node.keyword)));
        }
        return Ok(vec![(first.clone(), value)]);
    }
    let mut out = vec![];
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value")));
        };
        if k.is_empty() {
            return Err(err(format!("{} names can not be blank", node.keyword)));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

fn valid_arg_name(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn copy(node: &Node, lexer: Lexer, err: &dyn Fn(String) -> ParseError) -> Result<Copy, ParseError> {
    let add = node.keyword == "ADD";
    let allowed: &[&str] = if add {
        &["chown", "chmod", "link", "exclude", "checksum", "keep-git-dir"]
    } else {
        &["from", "chown", "chmod", "link", "exclude", "parents"]
    };
    let f = Flags::new(node, allowed, err)?;
    let mut words = match &node.args {
        Args::Json(v) => v.clone(),
        Args::Text(t) => lexer.split_raw(t).map_err(|e| err(e.0))?,
    };
    if words.len() < 2 {
        return Err(err(format!(
            "{} requires at least two arguments, but only one was provided. Destination could not be determined",
            node.keyword
        )));
    }
    let dest = words.pop().unwrap_or_default();
    Ok(Copy {
        sources: words,
        dest,
        from: f.one("from", err)?,
        chown: f.one("chown", err)?,
        chmod: f.one("chmod", err)?,
        link: f.bool("link", err)?,
        exclude: f.many("exclude"),
        parents: f.bool("parents", err)?,
        checksum: f.one("checksum", err)?,
        keep_git_dir: f.bool("keep-git-dir", err)?,
        heredocs: node.heredocs.clone(),
    })
}

fn health(node: &Node, err: &dyn Fn(String) -> ParseError) -> Result<Option<Health>, ParseError> {
    let f = Flags::new(node, &["interval", "timeout", "start-period", "start-interval", "retries"], err)?;
    let t = text(node);
    let (kind, rest) = t.trim().split_once(char::is_whitespace).unwrap_or((t.trim(), ""));
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.trim().is_empty() || !node.flags.is_empty() {
                return Err(err("HEALTHCHECK NONE takes no arguments".into()));
            }
            Ok(None)
        }
        "CMD" => {
            let rest = rest.trim();
            let test = if rest.starts_with('[') {
                match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) => Command::Exec(v),
                    Err(_) => Command::Shell(rest.to_owned()),
                }
            } else if rest.is_empty() {
                return Err(err("Missing command after HEALTHCHECK CMD".into()));
            } else {
                Command::Shell(rest.to_owned())
            };
            let dur = |name: &str| -> Result<Option<i64>, ParseError> {
                match f.one(name, err)? {
                    None => Ok(None),
                    Some(v) => match duration(&v) {
                        Some(d) if d == 0 || d >= 1_000_000 => Ok(Some(d)),
                        Some(_) => Err(err(format!("Interval {name:?} cannot be less than 1ms"))),
                        None => Err(err(format!("time: invalid duration {v:?}"))),
                    },
                }
            };
            let retries = match f.one("retries", err)? {
                None => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n >= 0 => Some(n),
                    _ => return Err(err(format!("--retries must be a non-negative integer: {v:?}"))),
                },
            };
            Ok(Some(Health {
                test,
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                start_period: dur("start-period")?,
                start_interval: dur("start-interval")?,
                retries,
            }))
        }
        _ => Err(err("Unknown type for HEALTHCHECK: expected CMD or NONE".into())),
    }
}

/// One node as an instruction.
fn instruction(node: &Node, lexer: Lexer, err: &dyn Fn(String) -> ParseError) -> Result<Kind, ParseError> {
    let k = node.keyword.as_str();
    let no_flags = |node: &Node| Flags::new(node, &[], err).map(|_| ());
    let one_arg = |node: &Node| -> Result<String, ParseError> {
        no_flags(node)?;
        let t = text(node).trim().to_owned();
        if t.is_empty() {
            return Err(err(format!("{} requires exactly one argument", node.keyword)));
        }
        Ok(t)
    };
    Ok(match k {
        "RUN" => {
            let f = Flags::new(node, &["mount", "network", "security"], err)?;
            let network = f.one("network", err)?;
            if let Some(n) = network.as_deref().filter(|n| !["default", "none", "host"].contains(n)) {
                return Err(err(format!("unsupported network mode: {n} (default, none or host)")));
            }
            let security = f.one("security", err)?;
            if let Some(s) = security.as_deref().filter(|s| !["sandbox", "insecure"].contains(s)) {
                return Err(err(format!("unsupported security mode: {s} (sandbox or insecure)")));
            }
            Kind::Run(Run {
                command: command(node, err)?,
                mounts: f.many("mount"),
                network,
                security,
                heredocs: node.heredocs.clone(),
            })
        }
        "CMD" => {
            no_flags(node)?;
            Kind::Cmd(command(node, err)?)
        }
        "ENTRYPOINT" => {
            no_flags(node)?;
            Kind::Entrypoint(command(node, err)?)
        }
        "SHELL" => {
            no_flags(node)?;
            match &node.args {
                Args::Json(v) if !v.is_empty() => Kind::Shell(v.clone()),
                _ => return Err(err("SHELL requires the arguments to be in JSON form".into())),
            }
        }
        "LABEL" => {
            no_flags(node)?;
            Kind::Label(pairs(node, lexer, err)?)
        }
        "ENV" => {
            no_flags(node)?;
            Kind::Env(pairs(node, lexer, err)?)
        }
        "MAINTAINER" => Kind::Maintainer(one_arg(node)?),
        "EXPOSE" => {
            no_flags(node)?;
            let words = lexer.split_raw(&text(node)).map_err(|e| err(e.0))?;
            if words.is_empty() {
                return Err(err("EXPOSE requires at least one argument".into()));
            }
            Kind::Expose(words)
        }
        "ADD" => Kind::Add(copy(node, lexer, err)?),
        "COPY" => Kind::Copy(copy(node, lexer, err)?),
        "VOLUME" => {
            no_flags(node)?;
            let v = match &node.args {
                Args::Json(v) => v.clone(),
                Args::Text(t) => lexer.split_raw(t).map_err(|e| err(e.0))?,
            };
            if v.is_empty() || v.iter().any(|p| p.trim().is_empty()) {
                return Err(err("VOLUME specified can not be an empty string".into()));
            }
            Kind::Volume(v)
        }
        "USER" => Kind::User(one_arg(node)?),
        "WORKDIR" => Kind::Workdir(one_arg(node)?),
        "STOPSIGNAL" => Kind::Stopsignal(one_arg(node)?),
        "ARG" => {
            no_flags(node)?;
            let words = lexer.split_raw(&text(node)).map_err(|e| err(e.0))?;
            if words.is_empty() {
                return Err(err("ARG requires at least one argument".into()));
            }
            let mut out = vec![];
            for w in words {
                let (name, default) = match w.split_once('=') {
                    Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                    None => (w, None),
                };
                if !valid_arg_name(&name) {
                    return Err(err(format!("invalid ARG name {name:?}")));
                }
                out.push((name, default));
            }
            Kind::Arg(out)
        }
        "ONBUILD" => {
            let inner = node.inner.as_ref().ok_or_else(|| err("ONBUILD requires an instruction".into()))?;
            // The trigger is checked now, so that a bad one fails this build.
            instruction(inner, lexer, err)?;
            let rest = inner.original.trim_start();
            let after = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r);
            Kind::Onbuild(format!("{} {}", inner.keyword, after.trim_start()).trim_end().to_owned())
        }
        "HEALTHCHECK" => Kind::Healthcheck(health(node, err)?),
        other => return Err(err(format!("{other} is not allowed here"))),
    })
}

/// Whether `name` may name a stage.
fn valid_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// A Dockerfile's stages, each instruction checked.
pub fn build(file: &str, d: &Dockerfile) -> Result<Build, ParseError> {
    let lexer = Lexer { escape: d.directives.escape };
    let mut meta_args = vec![];
    let mut stages: Vec<Stage> = vec![];
    if d.nodes.is_empty() {
        return Err(ParseError {
            file: file.to_owned(),
            line: 1,
            msg: format!("the Dockerfile ({file}) cannot be empty"),
        });
    }
    for node in &d.nodes {
        let err = |msg: String| ParseError { file: file.to_owned(), line: node.line, msg };
        if node.keyword == "FROM" {
            let f = Flags::new(node, &["platform"], &err)?;
            let words = lexer.split_raw(&text(node)).map_err(|e| err(e.0))?;
            let (base, name) = match words.as_slice() {
                [b] => (b.clone(), None),
                [b, as_, n] if as_.eq_ignore_ascii_case("as") => {
                    let n = n.to_ascii_lowercase();
                    if !valid_stage_name(&n) {
                        return Err(err(format!(
                            "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                        )));
                    }
                    if stages.iter().any(|s| s.name.as_deref() == Some(n.as_str())) {
                        return Err(err(format!("duplicate stage name {n:?}")));
                    }
                    (b.clone(), Some(n))
                }
                _ => return Err(err("FROM requires either one or three arguments".into())),
            };
            stages.push(Stage {
                index: stages.len(),
                name,
                base,
                platform: f.one("platform", &err)?,
                line: node.line,
                original: node.original.clone(),
                instructions: vec![],
            });
            continue;
        }
        let kind = instruction(node, lexer, &err)?;
        match stages.last_mut() {
            Some(s) => s.instructions.push(Instruction { line: node.line, original: node.original.clone(), kind }),
            None => match kind {
                Kind::Arg(a) => meta_args.extend(a),
                _ => return Err(err("no build stage in current context".into())),
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError { file: file.to_owned(), line: 1, msg: "no build stage in current context".into() });
    }
    Ok(Build { directives: d.directives.clone(), meta_args, stages })
}

/// Parse a Dockerfile into its stages.
pub fn read(file: &str, text: &str) -> Result<Build, ParseError> {
    build(file, &parse::parse(file, text)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        read("Dockerfile", text).unwrap_err().to_string()
    }

    #[test]
    fn every_instruction_reads() {
        let b = read(
            "Dockerfile",
            r#"ARG BASE=busybox
FROM --platform=$BUILDPLATFORM ${BASE} AS Build
RUN --mount=type=cache,target=/c --network=none echo "hi"
CMD ["sh"]
ENTRYPOINT echo x
SHELL ["/bin/sh", "-ec"]
LABEL a=b "c d"="e f"
MAINTAINER someone <a@b>
EXPOSE 80/tcp 53/udp
ENV A=1 B="two words"
ENV OLD value with spaces
ADD --checksum=sha256:abc --chmod=644 https://x/y /y
COPY --from=other --chown=1:2 --link --exclude=*.md a b /dest/
VOLUME ["/data"]
VOLUME /a /b
USER 1000:1000
WORKDIR /my dir
ARG X Y=2
ONBUILD run echo later
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=1m30s --retries=3 CMD ["true"]
HEALTHCHECK NONE
FROM build
"#,
        )
        .unwrap();
        assert_eq!(b.meta_args, [("BASE".to_owned(), Some("busybox".to_owned()))]);
        let s = &b.stages[0];
        assert_eq!(
            (s.name.as_deref(), s.base.as_str(), s.platform.as_deref()),
            (Some("build"), "${BASE}", Some("$BUILDPLATFORM"))
        );
        let k: Vec<&Kind> = s.instructions.iter().map(|i| &i.kind).collect();
        assert_eq!(
            k[0],
            &Kind::Run(Run {
                command: Command::Shell("echo \"hi\"".into()),
                mounts: vec!["type=cache,target=/c".into()],
                network: Some("none".into()),
                security: None,
                heredocs: vec![]
            })
        );
        assert_eq!(k[1], &Kind::Cmd(Command::Exec(vec!["sh".into()])));
        assert_eq!(k[2], &Kind::Entrypoint(Command::Shell("echo x".into())));
        assert_eq!(k[3], &Kind::Shell(vec!["/bin/sh".into(), "-ec".into()]));
        assert_eq!(k[4], &Kind::Label(vec![("a".into(), "b".into()), ("\"c d\"".into(), "\"e f\"".into())]));
        assert_eq!(k[5], &Kind::Maintainer("someone <a@b>".into()));
        assert_eq!(k[6], &Kind::Expose(vec!["80/tcp".into(), "53/udp".into()]));
        assert_eq!(k[7], &Kind::Env(vec![("A".into(), "1".into()), ("B".into(), "\"two words\"".into())]));
        assert_eq!(k[8], &Kind::Env(vec![("OLD".into(), "value with spaces".into())]));
        let Kind::Add(add) = k[9] else { panic!("{:?}", k[9]) };
        assert_eq!(
            (add.checksum.as_deref(), add.chmod.as_deref(), add.sources.as_slice()),
            (Some("sha256:abc"), Some("644"), &["https://x/y".to_owned()][..])
        );
        let Kind::Copy(c) = k[10] else { panic!("{:?}", k[10]) };
        assert_eq!(
            (c.from.as_deref(), c.chown.as_deref(), c.link, c.exclude.as_slice()),
            (Some("other"), Some("1:2"), true, &["*.md".to_owned()][..])
        );
        assert_eq!((c.sources.as_slice(), c.dest.as_str()), (&["a".to_owned(), "b".to_owned()][..], "/dest/"));
        assert_eq!(k[11], &Kind::Volume(vec!["/data".into()]));
        assert_eq!(k[12], &Kind::Volume(vec!["/a".into(), "/b".into()]));
        assert_eq!(k[13], &Kind::User("1000:1000".into()));
        assert_eq!(k[14], &Kind::Workdir("/my dir".into()));
        assert_eq!(k[15], &Kind::Arg(vec![("X".into(), None), ("Y".into(), Some("2".into()))]));
        assert_eq!(k[16], &Kind::Onbuild("RUN echo later".into()));
        assert_eq!(k[17], &Kind::Stopsignal("SIGTERM".into()));
        let Kind::Healthcheck(Some(h)) = k[18] else { panic!("{:?}", k[18]) };
        assert_eq!(
            (h.interval, h.retries, &h.test),
            (Some(90_000_000_000), Some(3), &Command::Exec(vec!["true".into()]))
        );
        assert_eq!(k[19], &Kind::Healthcheck(None));
        assert_eq!(b.stages[1].base, "build");
        assert_eq!(s.instructions[0].original, "RUN --mount=type=cache,target=/c --network=none echo \"hi\"");
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        assert_eq!(err(""), "Dockerfile:1: the Dockerfile (Dockerfile) cannot be empty");
        assert_eq!(err("RUN true\n"), "Dockerfile:1: no build stage in current context");
        assert_eq!(err("FROM a\nCOPY --form=x a b\n"), "Dockerfile:2: unknown flag: form");
        assert_eq!(err("FROM a\nCOPY a\n"), "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined");
        assert_eq!(
            err("FROM a AS 1x\n"),
            "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        assert_eq!(err("FROM a AS x\nFROM b AS x\n"), "Dockerfile:2: duplicate stage name \"x\"");
        assert_eq!(err("FROM a b\n"), "Dockerfile:1: FROM requires either one or three arguments");
        assert_eq!(err("FROM a\nSHELL sh -c\n"), "Dockerfile:2: SHELL requires the arguments to be in JSON form");
        assert_eq!(
            err("FROM a\nLABEL x\n"),
            "Dockerfile:2: Syntax error - can't find = in \"x\". Must be of the form: name=value"
        );
        assert_eq!(err("FROM a\nENV x\n"), "Dockerfile:2: ENV must have two arguments");
        assert_eq!(err("FROM a\nHEALTHCHECK --interval=1x CMD true\n"), "Dockerfile:2: time: invalid duration \"1x\"");
        assert_eq!(err("FROM a\nHEALTHCHECK CMD\n"), "Dockerfile:2: Missing command after HEALTHCHECK CMD");
        assert_eq!(
            err("FROM a\nRUN --network=bridge true\n"),
            "Dockerfile:2: unsupported network mode: bridge (default, none or host)"
        );
        assert_eq!(err("FROM a\nWORKDIR\n"), "Dockerfile:2: WORKDIR requires exactly one argument");
        assert_eq!(err("FROM a\nONBUILD COPY a\n"), "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined");
        assert_eq!(err("FROM a\nARG 9x\n"), "Dockerfile:2: invalid ARG name \"9x\"");
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("1m30s"), Some(90_000_000_000));
        assert_eq!(duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(duration("500ms"), Some(500_000_000));
        assert_eq!(duration("0"), Some(0));
        assert_eq!(duration("10"), None);
        assert_eq!(duration(""), None);
    }
}
