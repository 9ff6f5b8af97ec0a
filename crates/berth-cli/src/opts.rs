//! `run` and `create` flags to the create request, as the docker CLI
//! builds it (cli/command/container/opts.go): units, env files, binds,
//! tmpfs, ulimits, the restart policy, and which streams to attach.

use std::collections::BTreeMap;

use berth_api_types::{ContainerConfig, HostConfig, LogConfig, Resources, RestartPolicy, StrOrVec, Ulimit};
use berth_core::units::ram_in_bytes;

use crate::cli::{ResourceArgs, RunArgs};
use crate::CliError;

fn bad(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

fn bytes(flag: &str, v: &Option<String>) -> Result<i64, CliError> {
    match v.as_deref() {
        None => Ok(0),
        Some("-1") => Ok(-1),
        Some(s) => {
            ram_in_bytes(s).ok_or_else(|| bad(format!("invalid argument {s:?} for \"{flag}\" flag: invalid size")))
        }
    }
}

/// `-e K=V`, `-e K` (from this environment, dropped when unset) and
/// `--env-file` lines, in order.
pub fn env(env: &[String], files: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| bad(format!("open {f}: {e}")))?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            push_env(&mut out, l)?;
        }
    }
    for e in env {
        push_env(&mut out, e)?;
    }
    Ok(out)
}

fn push_env(out: &mut Vec<String>, e: &str) -> Result<(), CliError> {
    if e.starts_with('=') {
        return Err(bad(format!("invalid environment variable: {e}")));
    }
    if e.contains('=') {
        out.push(e.to_owned());
    } else if let Ok(v) = std::env::var(e) {
        out.push(format!("{e}={v}"));
    }
    Ok(())
}

fn key_values(flag: &str, list: &[String]) -> Result<Option<BTreeMap<String, String>>, CliError> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut m = BTreeMap::new();
    for kv in list {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k.is_empty() {
            return Err(bad(format!("invalid argument {kv:?} for \"{flag}\" flag")));
        }
        m.insert(k.to_owned(), v.to_owned());
    }
    Ok(Some(m))
}

/// `name=soft[:hard]`.
pub fn ulimit(s: &str) -> Result<Ulimit, CliError> {
    let e = || bad(format!("invalid argument {s:?} for \"--ulimit\" flag: want name=soft[:hard]"));
    let (name, vals) = s.split_once('=').ok_or_else(e)?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    Ok(Ulimit { name: name.to_owned(), soft: soft.parse().map_err(|_| e())?, hard: hard.parse().map_err(|_| e())? })
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn restart(s: &str) -> Result<RestartPolicy, CliError> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let maximum_retry_count = match (name, count) {
        (_, "") => 0,
        ("on-failure", n) => {
            n.parse().map_err(|_| bad(format!("invalid restart policy: maximum retry count {n:?}")))?
        }
        _ => {
            return Err(bad(format!(
                "invalid restart policy format: maximum retry count is only valid for on-failure: {s}"
            )))
        }
    };
    if !matches!(name, "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(bad(format!("invalid restart policy format: {s}")));
    }
    Ok(RestartPolicy { name: name.to_owned(), maximum_retry_count })
}

/// `--security-opt seccomp=<file>` sends the file's content, as the docker
/// CLI does; the daemon never reads client paths.
fn security_opts(list: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for o in list {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o, ""));
        if k == "seccomp" && v != "unconfined" && !v.is_empty() && !v.trim_start().starts_with('{') {
            let text =
                std::fs::read_to_string(v).map_err(|e| bad(format!("opening seccomp profile ({v}) failed: {e}")))?;
            let compact: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(format!("parsing seccomp profile ({v}) failed: {e}")))?;
            out.push(format!("seccomp={compact}"));
        } else {
            out.push(o.clone());
        }
    }
    Ok(out)
}

fn some<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The resource flags as the API's Resources.
pub fn resources(a: &ResourceArgs) -> Result<Resources, CliError> {
    let nano_cpus = match a.cpus {
        Some(c) if !(0.0..=1e6).contains(&c) => {
            return Err(bad(format!("invalid argument \"{c}\" for \"--cpus\" flag")))
        }
        Some(c) => (c * 1e9).round() as i64,
        None => 0,
    };
    Ok(Resources {
        memory: bytes("--memory", &a.memory)?,
        memory_swap: bytes("--memory-swap", &a.memory_swap)?,
        memory_reservation: bytes("--memory-reservation", &a.memory_reservation)?,
        nano_cpus,
        cpu_shares: a.cpu_shares.unwrap_or(0),
        cpu_period: a.cpu_period.unwrap_or(0),
        cpu_quota: a.cpu_quota.unwrap_or(0),
        cpuset_cpus: a.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: a.cpuset_mems.clone().unwrap_or_default(),
        pids_limit: a.pids_limit,
        blkio_weight: a.blkio_weight.unwrap_or(0),
        oom_kill_disable: None,
        ulimits: None,
    })
}

/// The create request for `run`/`create`, and the name.
pub fn create_request(a: &RunArgs, console: Option<(u16, u16)>) -> Result<ContainerConfig, CliError> {
    let (image, cmd) = a.args.split_first().ok_or_else(|| bad("\"run\" requires at least 1 argument"))?;
    let attach: Vec<String> = a.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    for s in &attach {
        if !matches!(s.as_str(), "stdin" | "stdout" | "stderr") {
            return Err(bad(format!(
                "invalid argument {s:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
            )));
        }
    }
    if a.detach && !attach.is_empty() {
        return Err(bad("conflicting options: cannot specify both --attach and --detach"));
    }
    let (stdin, stdout, stderr) = if a.detach {
        (false, false, false)
    } else if attach.is_empty() {
        (a.interactive, true, true)
    } else {
        (
            attach.iter().any(|s| s == "stdin"),
            attach.iter().any(|s| s == "stdout"),
            attach.iter().any(|s| s == "stderr"),
        )
    };
    let mut tmpfs = BTreeMap::new();
    for t in &a.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(path.to_owned(), opts.to_owned());
    }
    let mut ulimits = Vec::new();
    for u in &a.ulimit {
        ulimits.push(ulimit(u)?);
    }
    let mut log_config = LogConfig { typ: a.log_driver.clone().unwrap_or_default(), config: BTreeMap::new() };
    log_config.config = key_values("--log-opt", &a.log_opt)?.unwrap_or_default();
    let host = HostConfig {
        binds: some(a.volume.clone()),
        log_config,
        network_mode: a.network.clone().unwrap_or_default(),
        restart_policy: a.restart.as_deref().map(restart).transpose()?.unwrap_or_default(),
        auto_remove: a.rm,
        cap_add: some(a.cap_add.clone()),
        cap_drop: some(a.cap_drop.clone()),
        dns: some(a.dns.clone()),
        dns_options: some(a.dns_option.clone()),
        dns_search: some(a.dns_search.clone()),
        extra_hosts: some(a.add_host.clone()),
        group_add: some(a.group_add.clone()),
        oom_score_adj: a.oom_score_adj.unwrap_or(0),
        privileged: a.privileged,
        readonly_rootfs: a.read_only,
        security_opt: some(security_opts(&a.security_opt)?),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        userns_mode: a.userns.clone().unwrap_or_default(),
        shm_size: bytes("--shm-size", &a.shm_size)?,
        sysctls: key_values("--sysctl", &a.sysctl)?,
        init: a.init.then_some(true),
        resources: Resources {
            oom_kill_disable: a.oom_kill_disable.then_some(true),
            ulimits: some(ulimits),
            ..resources(&a.res)?
        },
        console_size: console.map(|(h, w)| vec![u32::from(h), u32::from(w)]),
    };
    if a.rm && !host.restart_policy.name.is_empty() && host.restart_policy.name != "no" {
        return Err(bad("conflicting options: cannot specify both --restart and --rm"));
    }
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        // `--entrypoint ""` clears the image's entrypoint.
        StrOrVec::Vec(if e.is_empty() { vec![] } else { vec![e.clone()] })
    });
    Ok(ContainerConfig {
        hostname: a.hostname.clone().unwrap_or_default(),
        domainname: a.domainname.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        attach_stdin: stdin,
        attach_stdout: stdout,
        attach_stderr: stderr,
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: a.interactive && stdin,
        env: some(env(&a.env, &a.env_file)?),
        cmd: (!cmd.is_empty()).then(|| StrOrVec::Vec(cmd.to_vec())),
        image: image.clone(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        entrypoint,
        labels: key_values("--label", &a.label)?,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        host_config: Some(host),
        ..ContainerConfig::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(restart("on-failure:3").unwrap().maximum_retry_count, 3);
        assert!(restart("always:3").is_err());
        assert!(restart("sometimes").is_err());
        let u = ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert_eq!(ulimit("nproc=10").unwrap().hard, 10);
        assert!(ulimit("nofile").is_err());
        let a = RunArgs {
            args: vec!["busybox".into(), "echo".into(), "-n".into()],
            res: ResourceArgs { memory: Some("64m".into()), cpus: Some(0.5), ..Default::default() },
            interactive: true,
            env: vec!["A=1".into()],
            entrypoint: Some(String::new()),
            ..RunArgs::default()
        };
        let c = create_request(&a, None).unwrap();
        let h = c.host_config.unwrap();
        assert_eq!(h.resources.memory, 64 << 20);
        assert_eq!(h.resources.nano_cpus, 500_000_000);
        assert!(c.attach_stdin && c.stdin_once && c.open_stdin);
        assert_eq!(c.cmd, Some(StrOrVec::Vec(vec!["echo".into(), "-n".into()])));
        assert_eq!(c.entrypoint, Some(StrOrVec::Vec(vec![])));
        assert_eq!(c.env, Some(vec!["A=1".into()]));
        let bad = RunArgs {
            args: vec!["x".into()],
            res: ResourceArgs { memory: Some("lots".into()), ..Default::default() },
            ..RunArgs::default()
        };
        assert!(create_request(&bad, None).is_err());
    }
}
