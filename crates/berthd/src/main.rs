//! berthd: reads its flags and daemon.json, opens the engine and serves the
//! Docker Engine API on a unix socket. Containers outlive it: stopping the
//! daemon leaves their shims running, and the next start finds them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_engine::model::Ulimit;
use berth_engine::{Engine, EngineConfig};
use berth_network::ipam::Subnet;
use berth_network::store::{default_address_pools, AddressPool, Config as NetConfig, DefaultBridge};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "berth daemon: the Docker Engine API on a unix socket")]
struct Args {
    /// Daemon socket to listen on (unix:///path or a path).
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Root of persistent state (images, containers).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Root of runtime state (bundles, shim sockets).
    #[arg(long)]
    exec_root: Option<PathBuf>,
    /// Kubernetes CRI socket (unix:///path or a path; "none" serves no CRI).
    /// Default: cri.sock in the exec root (/run/berth/cri.sock).
    #[arg(long)]
    cri_socket: Option<String>,
    /// Where CRI pods' CNI network configs are read.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where CNI plugins are found (repeatable). Default: /usr/lib/cni
    /// (Debian's containernetworking-plugins), then /opt/cni/bin.
    #[arg(long = "cni-bin-dir")]
    cni_bin_dirs: Vec<PathBuf>,
    /// Where the CRI streaming server (exec, attach, port-forward) listens;
    /// port 0 takes a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    cri_stream_address: std::net::SocketAddr,
    /// daemon.json to read.
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    config_file: PathBuf,
    /// "berth" (built in) or the path or name of a runc-compatible runtime.
    #[arg(long)]
    default_runtime: Option<String>,
    #[arg(short = 'l', long)]
    log_level: Option<String>,
    /// Default ulimits for containers (name=soft[:hard]).
    #[arg(long = "default-ulimit")]
    default_ulimits: Vec<String>,
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Real-time period (µs) of the containers' cgroup parent.
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// Real-time runtime (µs a period) containers may share.
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    /// The default bridge's link name (made if missing).
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// The default bridge's address and prefix, 172.17.0.1/16 by default.
    #[arg(long)]
    bip: Option<String>,
    /// Where the default bridge gives containers addresses from (a subnet of --bip's).
    #[arg(long)]
    fixed_cidr: Option<String>,
    /// IPv6 on the default bridge.
    #[arg(long)]
    ipv6: bool,
    /// The default bridge's IPv6 subnet (a new unique local /64 when not given).
    #[arg(long = "fixed-cidr-v6")]
    fixed_cidr_v6: Option<String>,
    /// The default bridge's MTU.
    #[arg(long)]
    mtu: Option<u32>,
    /// Group that may use the socket (0660).
    #[arg(short = 'G', long)]
    group: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct DaemonJson {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    default_runtime: Option<String>,
    runtimes: Option<std::collections::BTreeMap<String, RuntimeJson>>,
    log_level: Option<String>,
    default_ulimits: Option<std::collections::BTreeMap<String, UlimitJson>>,
    cgroup_parent: Option<String>,
    cpu_rt_period: Option<u64>,
    cpu_rt_runtime: Option<i64>,
    group: Option<String>,
    live_restore: Option<bool>,
    bridge: Option<String>,
    bip: Option<String>,
    fixed_cidr: Option<String>,
    ipv6: Option<bool>,
    fixed_cidr_v6: Option<String>,
    mtu: Option<u32>,
    default_address_pools: Option<Vec<AddressPoolJson>>,
    registry_mirrors: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
    allow_nondistributable_artifacts: Option<Vec<String>>,
    max_concurrent_downloads: Option<usize>,
    /// berth's: `gzip` (Docker's, the default) or `zstd` for layers pushed
    /// for the first time.
    push_compression: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct AddressPoolJson {
    base: String,
    size: u8,
}

#[derive(Deserialize, Default, Debug)]
struct RuntimeJson {
    path: String,
    /// Refused when given: the shim runs a runtime by its path alone.
    #[serde(default, rename = "runtimeArgs")]
    runtime_args: Vec<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
struct UlimitJson {
    name: String,
    soft: i64,
    hard: i64,
}

fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s.split_once('=').context(format!("invalid ulimit {s:?}: want name=soft[:hard]"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let n = |v: &str| v.parse::<i64>().with_context(|| format!("invalid ulimit value {v:?}"));
    Ok(Ulimit { name: name.to_owned(), soft: n(soft)?, hard: n(hard)? })
}

/// The networks' settings from the flags, else daemon.json, else Docker's
/// defaults. The nftables table is `berth` for the default bridge name,
/// else named after the bridge, so daemons with their own bridges (tests)
/// keep their rules apart.
fn network_config(args: &Args, file: &DaemonJson, data_root: &std::path::Path) -> Result<NetConfig> {
    let mut d = DefaultBridge::default();
    if let Some(b) = args.bridge.clone().or(file.bridge.clone()) {
        if !berth_network::link::valid_link_name(&b) {
            bail!("invalid bridge name {b:?}");
        }
        d.name = b;
    }
    if let Some(bip) = args.bip.clone().or(file.bip.clone()) {
        d.bip = berth_network::ipam::parse_cidr(&bip).with_context(|| format!("--bip {bip}"))?;
    }
    if let Some(f) = args.fixed_cidr.clone().or(file.fixed_cidr.clone()) {
        let s: Subnet = f.parse().with_context(|| format!("--fixed-cidr {f}"))?;
        if !Subnet::containing(d.bip.0, d.bip.1).covers(&s) {
            bail!("--fixed-cidr {f} is not within the bridge's subnet");
        }
        d.fixed_cidr = Some(s);
    }
    d.ipv6 = args.ipv6 || file.ipv6 == Some(true);
    if let Some(f) = args.fixed_cidr_v6.clone().or(file.fixed_cidr_v6.clone()) {
        if !d.ipv6 {
            bail!("--fixed-cidr-v6 needs --ipv6");
        }
        d.fixed_cidr_v6 = Some(f.parse().with_context(|| format!("--fixed-cidr-v6 {f}"))?);
    }
    if let Some(m) = args.mtu.or(file.mtu) {
        if !(68..=65535).contains(&m) {
            bail!("invalid MTU {m}");
        }
        d.mtu = m;
    }
    let address_pools = match &file.default_address_pools {
        Some(p) => p
            .iter()
            .map(|p| {
                let base: Subnet = p.base.parse().with_context(|| format!("default-address-pools base {}", p.base))?;
                if p.size < base.prefix() || p.size > 30 {
                    bail!("default-address-pools: size {} does not fit base {}", p.size, p.base);
                }
                Ok(AddressPool { base, size: p.size })
            })
            .collect::<Result<Vec<_>>>()?,
        None => default_address_pools(),
    };
    let table = if d.name == "berth0" { "berth".to_owned() } else { format!("berth-{}", d.name) };
    Ok(NetConfig { dir: data_root.join("network"), table, default_bridge: d, address_pools })
}

fn socket_path(h: &str) -> Result<PathBuf> {
    if let Some(p) = h.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if h.contains("://") {
        bail!("only unix sockets are supported: {h}");
    }
    Ok(PathBuf::from(h))
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; the limits as they were.
fn raise_nofile() -> Option<(i64, i64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } < 0 {
        return None;
    }
    let was = (i64::try_from(r.rlim_cur).ok()?, i64::try_from(r.rlim_max).ok()?);
    let raised = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } < 0 {
        tracing::warn!("cannot raise RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
    }
    Some(was)
}

/// A group by number or by name in /etc/group.
fn group_id(g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    let groups = std::fs::read_to_string("/etc/group").context("read /etc/group")?;
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == g).then(|| f[2].parse().ok()).flatten()
        })
        .with_context(|| format!("group {g} not found"))
}

/// Diagnostics at `level` and above, to stderr, as dockerd's `--log-level`.
fn init_logging(level: &str) -> Result<()> {
    use tracing::Level;
    let max = match level {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "panic" => Level::ERROR,
        other => bail!("unable to parse logging level: {other}"),
    };
    tracing_subscriber::fmt().with_max_level(max).with_writer(std::io::stderr).with_target(false).init();
    Ok(())
}

/// daemon.json's registry settings; the certificates are under
/// `certs.d` beside the daemon.json (`/etc/berth/certs.d`), as Docker
/// keeps them under `/etc/docker/certs.d`.
fn registry_config(file: &DaemonJson, config_file: &std::path::Path) -> Result<berth_registry::RegistryConfig> {
    let mut mirrors = vec![];
    for m in file.registry_mirrors.iter().flatten() {
        let m = m.trim_end_matches('/');
        if !(m.starts_with("https://") || m.starts_with("http://")) || m.matches('/').count() > 2 {
            bail!("invalid mirror: {m:?} is not a URL of the form scheme://host[:port]");
        }
        mirrors.push(m.split_once("://").map_or(m, |(_, h)| h).to_owned());
    }
    let mut insecure = vec![];
    for i in file.insecure_registries.iter().flatten() {
        insecure.push(i.parse::<berth_registry::config::Insecure>().map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    // A mirror given as http:// is reached over HTTP.
    for m in file.registry_mirrors.iter().flatten().filter(|m| m.starts_with("http://")) {
        let host = m.trim_start_matches("http://").trim_end_matches('/');
        insecure.push(berth_registry::config::Insecure::Host(host.to_owned()));
    }
    let mut nondistributable = vec![];
    for i in file.allow_nondistributable_artifacts.iter().flatten() {
        nondistributable.push(
            i.parse::<berth_registry::config::Insecure>()
                .map_err(|e| anyhow::anyhow!("allow-nondistributable-artifacts: {e}"))?,
        );
    }
    let max = file.max_concurrent_downloads.unwrap_or(berth_registry::config::DEFAULT_CONCURRENT_DOWNLOADS);
    if max == 0 {
        bail!("max-concurrent-downloads must be at least 1");
    }
    let push_zstd = match file.push_compression.as_deref() {
        None | Some("gzip") => false,
        Some("zstd") => true,
        Some(other) => bail!("push-compression {other:?}: berth compresses layers with \"gzip\" or \"zstd\""),
    };
    let dir = config_file.parent().unwrap_or(std::path::Path::new("/etc/berth"));
    Ok(berth_registry::RegistryConfig {
        mirrors,
        insecure,
        certs_dir: dir.join("certs.d"),
        max_concurrent_downloads: max,
        push_zstd,
        nondistributable,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let file: DaemonJson = match std::fs::read(&args.config_file) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{}", args.config_file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DaemonJson::default(),
        Err(e) => return Err(e).context(format!("read {}", args.config_file.display())),
    };
    init_logging(args.log_level.as_deref().or(file.log_level.as_deref()).unwrap_or("info"))?;
    // Honour or refuse: berth's containers always outlive the daemon (each
    // has its own shim), so a daemon.json that asks otherwise is refused.
    if file.live_restore == Some(false) {
        bail!("\"live-restore\": false is not supported: berth's containers always outlive the daemon");
    }
    let hosts = if !args.host.is_empty() { args.host.clone() } else { file.hosts.clone().unwrap_or_default() };
    let socket = socket_path(hosts.first().map(String::as_str).unwrap_or("unix:///run/berth/berth.sock"))?;
    let data_root = args.data_root.clone().or(file.data_root.clone()).unwrap_or_else(|| "/var/lib/berth".into());
    let exec_root = args.exec_root.clone().or(file.exec_root.clone()).unwrap_or_else(|| "/run/berth".into());
    let runtime_name = args.default_runtime.clone().or(file.default_runtime.clone()).unwrap_or_else(|| "berth".into());
    if let Some((name, _)) = file.runtimes.iter().flatten().find(|(_, r)| !r.runtime_args.is_empty()) {
        bail!("runtimes.{name}.runtimeArgs is not supported: give a wrapper script as its path");
    }
    let network = network_config(&args, &file, &data_root)?;
    let registry = registry_config(&file, &args.config_file)?;
    let mut default_ulimits: Vec<Ulimit> = file
        .default_ulimits
        .unwrap_or_default()
        .into_values()
        .map(|u| Ulimit { name: u.name, soft: u.soft, hard: u.hard })
        .collect();
    for u in &args.default_ulimits {
        let u = parse_ulimit(u)?;
        default_ulimits.retain(|d| d.name != u.name);
        default_ulimits.push(u);
    }
    // Containers keep the limit berthd was started with, unless a default
    // ulimit says otherwise; berthd itself holds a descriptor per client.
    if let Some((soft, hard)) = raise_nofile() {
        if !default_ulimits.iter().any(|u| u.name == "nofile") {
            default_ulimits.push(Ulimit { name: "nofile".into(), soft, hard });
        }
    }
    let cfg = EngineConfig {
        data_root,
        exec_root,
        shim: Engine::sibling_binary("berth-shim"),
        runtime_name: if runtime_name.is_empty() { "berth".into() } else { runtime_name.clone() },
        runtimes: file
            .runtimes
            .as_ref()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), PathBuf::from(&v.path))).collect())
            .unwrap_or_default(),
        cgroup_parent: args.cgroup_parent.clone().or(file.cgroup_parent.clone()).unwrap_or_else(|| "/berth".into()),
        cpu_rt_period: args.cpu_rt_period.or(file.cpu_rt_period).unwrap_or(0),
        cpu_rt_runtime: args.cpu_rt_runtime.or(file.cpu_rt_runtime).unwrap_or(0),
        default_ulimits,
        network,
        registry,
    };
    let group = args.group.clone().or(file.group.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cri_path = match args.cri_socket.as_deref() {
        Some("none") => None,
        Some(h) => Some(socket_path(h)?),
        None => Some(cfg.exec_root.join("cri.sock")),
    };
    let cni_bin_dirs = if args.cni_bin_dirs.is_empty() {
        vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()]
    } else {
        args.cni_bin_dirs.clone()
    };
    let cri = cri_path.map(|p| {
        (
            p,
            berth_cri::CriConfig {
                cni_conf_dir: args.cni_conf_dir.clone(),
                cni_bin_dirs,
                stream_address: args.cri_stream_address,
            },
        )
    });
    rt.block_on(run(cfg, socket, cri, group))
}

async fn run(
    cfg: EngineConfig,
    socket: PathBuf,
    cri: Option<(PathBuf, berth_cri::CriConfig)>,
    group: Option<String>,
) -> Result<()> {
    let cfg_exec_root = cfg.exec_root.clone();
    let engine = Engine::open(cfg).await.context("open the engine")?;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let gid = match &group {
        None => None,
        Some(g) => Some(group_id(g).with_context(|| format!("can't create unix socket {}", socket.display()))?),
    };
    // A socket in the exec root is reached through it: its group may pass.
    if let (Some(gid), Some(dir)) = (gid, socket.parent()) {
        if dir == cfg_exec_root.as_path() {
            berth_core::perm::ensure_dir_group(dir, berth_core::perm::SHARED_DIR, gid)
                .with_context(|| format!("give {} to group {gid}", dir.display()))?;
        }
    }
    // CRI, for kubelet: root's alone (no group), as containerd's socket.
    // Bound before the API's, so that a daemon that answers has both.
    let cri_listener = match &cri {
        None => None,
        Some((path, cri_cfg)) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            }
            let l = berth_core::sockpath::bind_private(path, None)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::UnixListener::from_std(l)
                })
                .with_context(|| format!("listen on {}", path.display()))?;
            tracing::info!("CRI listen on {}", path.display());
            Some((l, cri_cfg.clone()))
        }
    };
    let listener = berth_core::sockpath::bind_private(&socket, gid)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(l)
        })
        .with_context(|| format!("listen on {}", socket.display()))?;
    tracing::info!("API listen on {}", socket.display());
    let cri_engine = engine.clone();
    let cri_served = async move {
        match cri_listener {
            Some((l, c)) => berth_cri::serve(cri_engine, c, l).await.map_err(|e| anyhow::anyhow!("{e}")),
            None => std::future::pending().await,
        }
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        _ = berth_api::serve(engine, listener) => {}
        r = cri_served => { r.context("serve CRI")?; }
        r = stop => { r?; }
    }
    let _ = std::fs::remove_file(&socket);
    if let Some((c, _)) = &cri {
        let _ = std::fs::remove_file(c);
    }
    Ok(())
}
