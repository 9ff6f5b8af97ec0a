//! `berth`: Docker's command line against berthd. Each verb turns its flags
//! into Engine API calls through berth-client and prints what the docker
//! CLI prints; errors map to Docker's exit codes in one place.

/// `eprintln!` that cannot panic: when stderr is a closed pipe (its reader
/// went away) the message is lost, and the command still ends with its own
/// exit code instead of aborting.
macro_rules! say {
    ($($t:tt)*) => {
        berth_core::say(format_args!($($t)*))
    };
}

/// `eprint!` that cannot panic (see `say!`).
macro_rules! say_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut e = std::io::stderr();
        let _ = write!(e, $($t)*);
        let _ = e.flush();
    }};
}

mod build;
pub mod cli;
mod container;
mod cp;
mod format;
mod image;
mod mounts;
mod network;
mod opts;
mod registry;
mod run;
mod stats;
mod stream;
mod system;
pub mod template;
mod volume;

use berth_client::{Client, Host};
use clap::Parser;

use crate::cli::{Cli, Cmd, ContainerCmd, ImageCmd, NetworkCmd, SystemCmd, VolumeCmd};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or arguments.
    #[error("{0}")]
    Usage(String),
    #[error("{}", daemon_message(.0))]
    Client(#[from] berth_client::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Some of many targets failed; each was reported as it failed.
    #[error("")]
    Partial,
    /// Exit with the container's (or exec's) status; nothing to print.
    #[error("")]
    Status(i32),
    /// `run`/`create`/`start -a` failed before the container ran: Docker's
    /// 125, or 126/127 when the command could not be run.
    #[error("{1}")]
    Run(i32, Box<CliError>),
}

fn daemon_message(e: &berth_client::Error) -> String {
    match e {
        berth_client::Error::Api { message, .. } => format!("Error response from daemon: {message}"),
        other => other.to_string(),
    }
}

impl CliError {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Status(c) | CliError::Run(c, _) => *c,
            _ => 1,
        }
    }
    /// An error of `run`/`create`: 125 unless the daemon said the command
    /// could not be found (127) or run (126), as the docker CLI decides.
    pub fn run(e: CliError) -> CliError {
        if let CliError::Status(_) | CliError::Run(..) = e {
            return e;
        }
        let msg = e.to_string();
        let code = if msg.contains("executable file not found") || msg.contains("no such file or directory") {
            127
        } else if msg.contains("permission denied") {
            126
        } else {
            125
        };
        CliError::Run(code, Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Parses the arguments and runs the command; the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let client = match Host::choose(cli.host.as_deref()) {
        Ok(h) => Client::new(h),
        Err(e) => {
            say!("{e}");
            return 1;
        }
    };
    match dispatch(&client, cli.cmd) {
        Ok(()) => 0,
        Err(e) => {
            let text = e.to_string();
            if !text.is_empty() {
                say!("{text}");
            }
            e.exit_code()
        }
    }
}

fn dispatch(c: &Client, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Run(a) => run::run(c, a),
        Cmd::Create(a) => run::create(c, a),
        Cmd::Start(a) => run::start(c, a),
        Cmd::Attach(a) => run::attach(c, a),
        Cmd::Exec(a) => run::exec(c, a),
        Cmd::Stop(a) => container::stop(c, a, false),
        Cmd::Restart(a) => container::stop(c, a, true),
        Cmd::Kill(a) => container::kill(c, a),
        Cmd::Rm(a) => container::rm(c, a),
        Cmd::Ps(a) => container::ps(c, a),
        Cmd::Logs(a) => container::logs(c, a),
        Cmd::Inspect(a) => container::inspect(c, a),
        Cmd::Top(a) => container::top(c, a),
        Cmd::Stats(a) => stats::stats(c, a),
        Cmd::Update(a) => container::update(c, a),
        Cmd::Diff(a) => container::diff(c, a),
        Cmd::Cp(a) => cp::cp(c, a),
        Cmd::Export(a) => container::export(c, a),
        Cmd::Commit(a) => container::commit(c, a),
        Cmd::Rename(a) => container::rename(c, a),
        Cmd::Wait(a) => container::wait(c, a),
        Cmd::Pause(a) => container::pause(c, a, true),
        Cmd::Unpause(a) => container::pause(c, a, false),
        Cmd::Port(a) => container::port(c, a),
        Cmd::Images(a) => image::images(c, a),
        Cmd::Rmi(a) => image::rmi(c, a),
        Cmd::Tag(a) => image::tag(c, a),
        Cmd::Pull(a) => registry::pull(c, a),
        Cmd::Push(a) => registry::push(c, a),
        Cmd::Login(a) => registry::login(c, a),
        Cmd::Logout(a) => registry::logout(c, a),
        Cmd::Search(a) => registry::search(c, a),
        Cmd::Build(a) => build::build(c, a),
        Cmd::Load(a) => image::load(c, a),
        Cmd::Save(a) => image::save(c, a),
        Cmd::Import(a) => image::import(c, a),
        Cmd::History(a) => image::history(c, a),
        Cmd::Info(a) => system::info(c, a),
        Cmd::Version(a) => system::version(c, a),
        Cmd::Events(a) => system::events(c, a),
        Cmd::ContainerPrune(a) => container::prune(c, a),
        Cmd::Container(sub) => dispatch(c, container_cmd(sub)),
        Cmd::Image(sub) => match sub {
            ImageCmd::Ls(a) => image::images(c, a),
            ImageCmd::Rm(a) => image::rmi(c, a),
            ImageCmd::Tag(a) => image::tag(c, a),
            ImageCmd::Pull(a) => registry::pull(c, a),
            ImageCmd::Push(a) => registry::push(c, a),
            ImageCmd::Load(a) => image::load(c, a),
            ImageCmd::Save(a) => image::save(c, a),
            ImageCmd::Import(a) => image::import(c, a),
            ImageCmd::History(a) => image::history(c, a),
            ImageCmd::Inspect(mut a) => {
                a.typ = Some("image".into());
                container::inspect(c, a)
            }
            ImageCmd::Prune(a) => image::prune(c, a),
        },
        Cmd::Network(sub) => match sub {
            NetworkCmd::Create(a) => network::create(c, a),
            NetworkCmd::Ls(a) => network::ls(c, a),
            NetworkCmd::Inspect(a) => inspect_as(c, a, "network"),
            NetworkCmd::Rm(a) => network::rm(c, a),
            NetworkCmd::Prune(a) => network::prune(c, a),
            NetworkCmd::Connect(a) => network::connect(c, a),
            NetworkCmd::Disconnect(a) => network::disconnect(c, a),
        },
        Cmd::Volume(sub) => match sub {
            VolumeCmd::Create(a) => volume::create(c, a),
            VolumeCmd::Ls(a) => volume::ls(c, a),
            VolumeCmd::Inspect(a) => inspect_as(c, a, "volume"),
            VolumeCmd::Rm(a) => volume::rm(c, a),
            VolumeCmd::Prune(a) => volume::prune(c, a),
        },
        Cmd::System(sub) => match sub {
            SystemCmd::Info(a) => system::info(c, a),
            SystemCmd::Df(a) => system::df(c, a),
            SystemCmd::Events(a) => system::events(c, a),
            SystemCmd::Prune(a) => system::prune(c, a),
        },
    }
}

/// `network inspect`, `volume inspect`: `inspect --type <typ>`.
fn inspect_as(c: &Client, a: crate::cli::NamedInspectArgs, typ: &str) -> Result<()> {
    let a = crate::cli::InspectArgs { format: a.format, size: false, typ: Some(typ.into()), names: a.names };
    container::inspect(c, a)
}

/// `container <verb>` as the top-level verb of the same name.
fn container_cmd(sub: ContainerCmd) -> Cmd {
    match sub {
        ContainerCmd::Run(a) => Cmd::Run(a),
        ContainerCmd::Create(a) => Cmd::Create(a),
        ContainerCmd::Start(a) => Cmd::Start(a),
        ContainerCmd::Stop(a) => Cmd::Stop(a),
        ContainerCmd::Restart(a) => Cmd::Restart(a),
        ContainerCmd::Kill(a) => Cmd::Kill(a),
        ContainerCmd::Rm(a) => Cmd::Rm(a),
        ContainerCmd::Ls(a) => Cmd::Ps(a),
        ContainerCmd::Logs(a) => Cmd::Logs(a),
        ContainerCmd::Exec(a) => Cmd::Exec(a),
        ContainerCmd::Attach(a) => Cmd::Attach(a),
        ContainerCmd::Inspect(mut a) => {
            a.typ = Some("container".into());
            Cmd::Inspect(a)
        }
        ContainerCmd::Top(a) => Cmd::Top(a),
        ContainerCmd::Stats(a) => Cmd::Stats(a),
        ContainerCmd::Update(a) => Cmd::Update(a),
        ContainerCmd::Diff(a) => Cmd::Diff(a),
        ContainerCmd::Cp(a) => Cmd::Cp(a),
        ContainerCmd::Export(a) => Cmd::Export(a),
        ContainerCmd::Commit(a) => Cmd::Commit(a),
        ContainerCmd::Rename(a) => Cmd::Rename(a),
        ContainerCmd::Wait(a) => Cmd::Wait(a),
        ContainerCmd::Pause(a) => Cmd::Pause(a),
        ContainerCmd::Unpause(a) => Cmd::Unpause(a),
        ContainerCmd::Port(a) => Cmd::Port(a),
        ContainerCmd::Prune(a) => Cmd::ContainerPrune(a),
    }
}

/// Runs `f` for each target, reporting failures as Docker does (the
/// error on stderr, the rest carried on), then failing if any did.
fn each(targets: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = false;
    for t in targets {
        if let Err(e) = f(t) {
            say!("{e}");
            failed = true;
        }
    }
    if failed {
        Err(CliError::Partial)
    } else {
        Ok(())
    }
}
