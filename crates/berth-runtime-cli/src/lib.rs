//! runc's command line over `berth_runtime`. Each subcommand parses its
//! flags and calls one library function; errors become exit code 1 with the
//! message on stderr (and in `--log`, as text or runc's JSON lines).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use berth_runtime::{CreateOptions, ExecOptions, ExecOutcome, ExecProcess, ProcessOverrides};
use clap::{Args, Parser, Subcommand};

mod run;

#[derive(Debug, Parser)]
#[command(name = "berth-runtime", version, about = "OCI runtime with runc's command line")]
pub struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = berth_runtime::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file for errors and debug messages (default: stderr only).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Accepted for runc compatibility; berth-runtime logs only errors.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility; cgroups are managed through cgroupfs.
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args)]
struct CreateArgs {
    id: String,
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master for a terminal.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Pass fds 3..3+N to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Use a move mount and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "no-new-keyring", hide = true)]
    no_new_keyring: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Create, start and wait for a container; exit with its status.
    Run {
        #[command(flatten)]
        c: CreateArgs,
        /// Return after start instead of waiting.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init.
    Kill {
        id: String,
        signal: Option<String>,
        /// Send to every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Remove a container's state and cgroup.
    Delete {
        id: String,
        /// Kill the container first if it runs.
        #[arg(short, long)]
        force: bool,
    },
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List a container's processes.
    Ps {
        id: String,
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Arguments for ps(1) in table format.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the features this runtime supports.
    Features,
}

#[derive(Debug, Args)]
struct ExecArgs {
    id: String,
    /// Command and arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    #[arg(short, long)]
    tty: bool,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long)]
    env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability (CAP_NAME) to every set.
    #[arg(short = 'c', long)]
    cap: Vec<String>,
    #[arg(short, long)]
    detach: bool,
    /// A process.json giving the whole process.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
}

/// Parse, run, and map any error to exit code 1 with a message.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let log = Logger { file: cli.log.clone(), json: cli.log_format == "json" };
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            log.error(&message(&e));
            1
        }
    }
}

/// An error and its causes, each said once: the library's errors already
/// show their source in their own text, so a cause that the text so far
/// holds is not added again.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for part in e.chain().map(|c| c.to_string()) {
        if out.contains(&part) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&part);
    }
    out
}

struct Logger {
    file: Option<PathBuf>,
    json: bool,
}

impl Logger {
    fn error(&self, msg: &str) {
        let _ = writeln!(std::io::stderr(), "berth-runtime: {msg}");
        let Some(path) = &self.file else { return };
        let line = if self.json {
            serde_json::json!({ "level": "error", "msg": msg, "time": now() }).to_string()
        } else {
            format!("time=\"{}\" level=error msg={:?}", now(), msg)
        };
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn create_options(root: &std::path::Path, c: &CreateArgs) -> CreateOptions {
    CreateOptions {
        root: root.to_owned(),
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        console_socket: c.console_socket.clone(),
        console_fd: None,
        pid_file: c.pid_file.clone(),
        preserve_fds: c.preserve_fds,
        no_pivot: c.no_pivot,
        hierarchies: None,
    }
}

fn dispatch(cli: &Cli) -> Result<i32> {
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Create(c) => {
            berth_runtime::create(create_options(root, c))?;
            Ok(0)
        }
        Cmd::Start { id } => {
            berth_runtime::start(root, id)?;
            Ok(0)
        }
        Cmd::Run { c, detach, keep } => run::run(root, create_options(root, c), *detach, *keep),
        Cmd::State { id } => {
            let c = berth_runtime::Container::load(root, id)?;
            println!("{}", serde_json::to_string_pretty(&c.oci_state())?);
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            berth_runtime::kill(root, id, signal.as_deref().unwrap_or("SIGTERM"), *all)?;
            Ok(0)
        }
        Cmd::Delete { id, force } => {
            berth_runtime::delete(root, id, *force)?;
            Ok(0)
        }
        Cmd::Exec(e) => exec(root, e),
        Cmd::Ps { id, format, ps_args } => ps(root, id, format, ps_args),
        Cmd::Pause { id } => {
            berth_runtime::pause(root, id)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            berth_runtime::resume(root, id)?;
            Ok(0)
        }
        Cmd::List { format, quiet } => list(root, format, *quiet),
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&berth_runtime::features::features())?);
            Ok(0)
        }
    }
}

fn exec(root: &std::path::Path, e: &ExecArgs) -> Result<i32> {
    let process = match &e.process {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            ExecProcess::Given(Box::new(serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))?))
        }
        None => {
            if e.command.is_empty() {
                return Err(anyhow!("exec needs a command or --process"));
            }
            let user = match &e.user {
                Some(u) => Some(match u.split_once(':') {
                    Some((a, b)) => (a.parse().context("--user uid")?, b.parse().context("--user gid")?),
                    None => (u.parse().context("--user uid")?, 0),
                }),
                None => None,
            };
            ExecProcess::FromConfig(ProcessOverrides {
                args: e.command.clone(),
                tty: e.tty,
                cwd: e.cwd.clone(),
                env: e.env.clone(),
                user,
                additional_gids: e.additional_gids.clone(),
                caps: e.cap.clone(),
                no_new_privs: e.no_new_privs,
            })
        }
    };
    let outcome = berth_runtime::exec(ExecOptions {
        root: root.to_owned(),
        id: e.id.clone(),
        process,
        console_socket: e.console_socket.clone(),
        console_fd: None,
        pid_file: e.pid_file.clone(),
        detach: e.detach,
        preserve_fds: e.preserve_fds,
    })?;
    Ok(match outcome {
        ExecOutcome::Detached(_) => 0,
        ExecOutcome::Exited(st) => st.code(),
    })
}

fn ps(root: &std::path::Path, id: &str, format: &str, ps_args: &[String]) -> Result<i32> {
    let pids = berth_runtime::ps(root, id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
            let out = std::process::Command::new("ps").args(&args).output().context("run ps")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for l in lines {
                if l.split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
                {
                    println!("{l}");
                }
            }
        }
        other => return Err(anyhow!("invalid format option {other:?}")),
    }
    Ok(0)
}

fn list(root: &std::path::Path, format: &str, quiet: bool) -> Result<i32> {
    let all = berth_runtime::list(root)?;
    if quiet {
        for c in &all {
            println!("{}", c.id);
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let v: Vec<_> = all.iter().map(|c| c.oci_state()).collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            println!("{:<12} {:<10} {:<10} {:<40} {:<30} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
            for c in &all {
                let s = c.oci_state();
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<30} {}",
                    s.id,
                    s.pid,
                    s.status.as_str(),
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
        }
        other => return Err(anyhow!("invalid format option {other:?}")),
    }
    Ok(0)
}
