//! Container verbs that make one call (or one per container) and print
//! what the docker CLI prints: stop, restart, kill, rm, ps, logs, inspect,
//! top, diff, export, commit, rename, wait, pause, unpause, port, prune.

use std::io::Write;

use berth_api_types::{ContainerSummary, IdResponse, PortSummary, WaitResponse};
use berth_client::{Body, Client, Query};
use berth_core::units::human_size;
use serde_json::{json, Value};

use crate::cli::{
    CommitArgs, ExportArgs, InspectArgs, KillArgs, LogsArgs, ManyArgs, OneArg, PortArgs, PruneArgs, PsArgs, RenameArgs,
    RmArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::format::{ago, ellipsis, pretty, print_out, short_id, table, unix_time, Format};
use crate::{each, CliError, Result};

fn say(name: &str) -> Result<()> {
    print_out(&format!("{name}\n"))
}

pub fn stop(c: &Client, a: StopArgs, restart: bool) -> Result<()> {
    let verb = if restart { "restart" } else { "stop" };
    let q = Query::new().opt("signal", a.signal.as_deref()).opt("t", a.time.map(|t| t.to_string()));
    each(&a.containers, |name| {
        c.post_empty(&format!("/containers/{name}/{verb}"), &q)?;
        say(name)
    })
}

pub fn kill(c: &Client, a: KillArgs) -> Result<()> {
    let q = Query::new().add("signal", &a.signal);
    each(&a.containers, |name| {
        c.post_empty(&format!("/containers/{name}/kill"), &q)?;
        say(name)
    })
}

pub fn rm(c: &Client, a: RmArgs) -> Result<()> {
    let q = Query::new().flag("force", a.force).flag("v", a.volumes);
    each(&a.containers, |name| {
        c.delete(&format!("/containers/{name}"), &q)?;
        say(name)
    })
}

pub fn pause(c: &Client, a: ManyArgs, pause: bool) -> Result<()> {
    let verb = if pause { "pause" } else { "unpause" };
    each(&a.containers, |name| {
        c.post_empty(&format!("/containers/{name}/{verb}"), &Query::new())?;
        say(name)
    })
}

pub fn wait(c: &Client, a: ManyArgs) -> Result<()> {
    each(&a.containers, |name| {
        let r: WaitResponse = c.post(&format!("/containers/{name}/wait"), &Query::new(), None::<&()>)?;
        print_out(&format!("{}\n", r.status_code))
    })
}

pub fn rename(c: &Client, a: RenameArgs) -> Result<()> {
    if a.new_name.trim().is_empty() {
        return Err(CliError::Usage("Error: Neither old nor new names may be empty".into()));
    }
    c.post_empty(&format!("/containers/{}/rename", a.container), &Query::new().add("name", &a.new_name))?;
    Ok(())
}

/// `key=value` filters as the API takes them.
pub fn filters(list: &[String]) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.trim().to_ascii_lowercase(), v.to_owned())),
            _ => Err(CliError::Usage(format!("bad format of filter (expected name=value): {f}"))),
        })
        .collect()
}

/// A container's ports as Docker's `ps` shows them
/// (`DisplayablePorts` of the docker CLI): a published port whose host
/// port differs as `ip:public->private/proto` (an IPv6 address in
/// brackets), and runs of consecutive ports, exposed only or published on
/// the same numbers, merged into ranges.
fn ports_text(ports: &[PortSummary]) -> String {
    let host = |ip: &str, port: &str| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    let mut sorted: Vec<&PortSummary> = ports.iter().collect();
    let proto = |p: &PortSummary| p.typ.map(|t| t.to_string()).unwrap_or_default();
    sorted.sort_by_key(|p| (p.private_port, p.ip.clone().unwrap_or_default(), p.public_port, proto(p)));
    let group = |(ip, proto): &(String, String), (first, last): (u16, u16)| {
        let span = if first == last { first.to_string() } else { format!("{first}-{last}") };
        if ip.is_empty() {
            format!("{span}/{proto}")
        } else {
            format!("{}->{span}/{proto}", host(ip, &span))
        }
    };
    // (ip, proto) → the run being built, in the order first seen; a run
    // that breaks is written out at once, as Docker's formatter does.
    let mut groups: Vec<((String, String), (u16, u16))> = vec![];
    let (mut out, mut mapped) = (vec![], vec![]);
    for p in sorted {
        let ip = p.ip.clone().unwrap_or_default();
        if !ip.is_empty() && p.public_port != Some(p.private_port) {
            let public = p.public_port.unwrap_or(0).to_string();
            mapped.push(format!("{}->{}/{}", host(&ip, &public), p.private_port, proto(p)));
            continue;
        }
        let (key, port) = ((ip, proto(p)), p.private_port);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((k, run)) if run.1.checked_add(1) == Some(port) => run.1 = port,
            Some((k, run)) => {
                out.push(group(k, *run));
                *run = (port, port);
            }
            None => groups.push((key, (port, port))),
        }
    }
    out.extend(groups.iter().map(|(k, run)| group(k, *run)));
    out.extend(mapped);
    out.join(", ")
}

/// One row of `ps`, with the field names Docker's templates use.
pub(crate) fn ps_row(s: &ContainerSummary, trunc: bool) -> Value {
    let (full_id, full_image) = (s.id.clone().unwrap_or_default(), s.image.clone().unwrap_or_default());
    let command = s.command.clone().unwrap_or_default();
    let created = s.created.unwrap_or(0);
    let id = if trunc { short_id(&full_id) } else { full_id };
    let image = if trunc && full_image.starts_with("sha256:") { short_id(&full_image) } else { full_image };
    let cmd = if trunc { ellipsis(&command, 20) } else { command };
    let names: Vec<&str> = s.names.iter().flatten().map(|n| n.trim_start_matches('/')).collect();
    let mut labels: Vec<String> = s.labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    let size = match (s.size_rw, s.size_root_fs) {
        (Some(rw), Some(root)) => format!("{} (virtual {})", human_size(rw as f64), human_size(root as f64)),
        (Some(rw), None) => human_size(rw as f64),
        _ => String::new(),
    };
    // A volume by its name, anything else by its source, as Docker's
    // formatter shows them.
    let mounts: Vec<String> = s
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let n = m.name.clone().filter(|n| !n.is_empty()).or_else(|| m.source.clone()).unwrap_or_default();
            if trunc {
                ellipsis(&n, 15)
            } else {
                n
            }
        })
        .collect();
    let mut networks: Vec<&str> = s
        .network_settings
        .iter()
        .filter_map(|n| n.networks.as_ref())
        .flat_map(|n| n.keys().map(String::as_str))
        .collect();
    networks.sort_unstable();
    json!({
        "ID": id,
        "Image": image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": unix_time(created),
        "RunningFor": ago(created),
        "Ports": ports_text(s.ports.as_deref().unwrap_or_default()),
        "State": s.state.map(|x| x.to_string()).unwrap_or_default(),
        "Status": s.status.clone().unwrap_or_default(),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
    })
}

pub fn ps(c: &Client, a: PsArgs) -> Result<()> {
    let mut q = Query::new()
        .flag("all", a.all)
        .flag("size", a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size")))
        .filters(&filters(&a.filter)?);
    let last = if a.latest { 1 } else { a.last };
    if last > 0 {
        q = q.add("limit", last.to_string());
    }
    let list: Vec<ContainerSummary> = c.get("/containers/json", &q)?;
    if a.quiet {
        let ids: String = list
            .iter()
            .flat_map(|s| s.id.as_deref())
            .map(|id| format!("{}\n", if a.no_trunc { id.to_owned() } else { short_id(id) }))
            .collect();
        return print_out(&ids);
    }
    let rows: Vec<Value> = list.iter().map(|s| ps_row(s, !a.no_trunc)).collect();
    let header = json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
        "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
    });
    let mut cols = vec!["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"];
    if a.size {
        cols.push("Size");
    }
    Format::parse(a.format.as_deref())?.print(&cols, &header, &rows)
}

pub fn update(c: &Client, a: UpdateArgs) -> Result<()> {
    let body = berth_api_types::UpdateConfig {
        restart_policy: a.restart.as_deref().map(crate::opts::restart).transpose()?,
        ..crate::opts::resources(&a.res)?
    };
    let empty = berth_api_types::UpdateConfig::default();
    if serde_json::to_value(&body)? == serde_json::to_value(&empty)? {
        return Err(CliError::Usage("you must provide one or more flags when using this command".into()));
    }
    each(&a.containers, |id| {
        let _: Value = c.post(&format!("/containers/{id}/update"), &Query::new(), Some(&body))?;
        print_out(&format!("{id}\n"))
    })
}

pub fn logs(c: &Client, a: LogsArgs) -> Result<()> {
    let info: Value = c.get(&format!("/containers/{}/json", a.container), &Query::new())?;
    let tty = info.pointer("/Config/Tty").and_then(Value::as_bool).unwrap_or(false);
    let q = Query::new()
        .add("stdout", "1")
        .add("stderr", "1")
        .flag("follow", a.follow)
        .flag("timestamps", a.timestamps)
        .add("tail", &a.tail)
        .opt("since", a.since.as_deref().map(relative_time))
        .opt("until", a.until.as_deref().map(relative_time));
    let mut r = c.call("GET", &format!("/containers/{}/logs", a.container), &q, Body::None)?;
    let (out, err) = (std::io::stdout(), std::io::stderr());
    let res = if tty {
        std::io::copy(&mut r, &mut out.lock()).map(|_| ())
    } else {
        berth_client::stdcopy::demux(&mut r, &mut out.lock(), &mut err.lock())
    };
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `--since 10m` and the like, as Unix seconds; anything else as given.
pub(crate) fn relative_time(s: &str) -> String {
    let unit = s.chars().last().unwrap_or(' ');
    let mult = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        _ => return s.to_owned(),
    };
    match s[..s.len() - 1].parse::<f64>() {
        Ok(n) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            format!("{:.9}", now - n * mult)
        }
        Err(_) => s.to_owned(),
    }
}

pub fn inspect(c: &Client, a: InspectArgs) -> Result<()> {
    let tpl = a.format.as_deref().map(crate::format::template).transpose()?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.names {
        let container = || c.get::<Value>(&format!("/containers/{name}/json"), &Query::new().flag("size", a.size));
        let image = || c.get::<Value>(&format!("/images/{name}/json"), &Query::new());
        let network = || c.get::<Value>(&format!("/networks/{name}"), &Query::new());
        let volume = || c.get::<Value>(&format!("/volumes/{name}"), &Query::new());
        let r = match a.typ.as_deref() {
            Some("container") => container(),
            Some("image") => image(),
            Some("network") => network(),
            Some("volume") => volume(),
            None => {
                let mut r = container();
                for next in [&image as &dyn Fn() -> _, &network, &volume] {
                    match r {
                        Err(e) if e.is_not_found() => r = next(),
                        _ => break,
                    }
                }
                r
            }
            Some(t) => return Err(CliError::Usage(format!("\"{t}\" is not a valid value for --type"))),
        };
        match r {
            Ok(v) => found.push(v),
            Err(e) if e.is_not_found() => {
                say!("Error: No such object: {name}");
                failed = true;
            }
            Err(e) => {
                say!("{}", CliError::from(e));
                failed = true;
            }
        }
    }
    match tpl {
        Some(t) => {
            let mut out = String::new();
            for v in &found {
                out.push_str(&t.render(v)?);
                out.push('\n');
            }
            print_out(&out)?;
        }
        None => print_out(&format!("{}\n", pretty(&Value::Array(found))))?,
    }
    if failed {
        Err(CliError::Partial)
    } else {
        Ok(())
    }
}

pub fn top(c: &Client, a: TopArgs) -> Result<()> {
    let q = Query::new().opt("ps_args", Some(a.ps_args.join(" ")));
    let v: Value = c.get(&format!("/containers/{}/top", a.container), &q)?;
    let cell = |x: &Value| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string());
    let mut rows = vec![v["Titles"].as_array().map(|t| t.iter().map(cell).collect()).unwrap_or_default()];
    for p in v["Processes"].as_array().into_iter().flatten() {
        rows.push(p.as_array().map(|r| r.iter().map(cell).collect()).unwrap_or_default());
    }
    print_out(&table(&rows))
}

pub fn diff(c: &Client, a: OneArg) -> Result<()> {
    let list: Vec<Value> = c.get(&format!("/containers/{}/changes", a.container), &Query::new())?;
    let mut out = String::new();
    for ch in list {
        let kind = match ch["Kind"].as_i64() {
            Some(0) => 'C',
            Some(1) => 'A',
            _ => 'D',
        };
        out.push_str(&format!("{kind} {}\n", ch["Path"].as_str().unwrap_or("")));
    }
    print_out(&out)
}

/// A stream from the daemon to a file, or to stdout when it is not a
/// terminal (a tar on a terminal helps no one, as Docker says).
pub fn to_output(mut r: impl std::io::Read, output: Option<&str>, what: &str) -> Result<()> {
    match output {
        Some(path) => {
            let tmp = format!("{path}.berth-tmp");
            let mut f = std::fs::File::create(&tmp)?;
            let res = std::io::copy(&mut r, &mut f).and_then(|_| f.sync_all());
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, path)?;
            Ok(())
        }
        None => {
            // SAFETY: isatty only inspects the descriptor.
            if unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 {
                return Err(CliError::Usage(format!(
                    "cowardly refusing to save {what} to a terminal. Use the -o flag or redirect"
                )));
            }
            let mut o = std::io::stdout().lock();
            match std::io::copy(&mut r, &mut o).and_then(|_| o.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => Ok(r?),
            }
        }
    }
}

pub fn export(c: &Client, a: ExportArgs) -> Result<()> {
    let r = c.call("GET", &format!("/containers/{}/export", a.container), &Query::new(), Body::None)?;
    to_output(r, a.output.as_deref(), "to a terminal")
}

pub fn commit(c: &Client, a: CommitArgs) -> Result<()> {
    let mut q = Query::new()
        .add("container", &a.container)
        .opt("comment", a.message.as_deref())
        .opt("author", a.author.as_deref())
        .add("pause", if a.pause { "1" } else { "0" });
    if let Some(r) = &a.repository {
        q = q.add("repo", r);
    }
    for ch in &a.change {
        q = q.add("changes", ch);
    }
    let r: IdResponse = c.post("/commit", &q, None::<&()>)?;
    say(&r.id)
}

pub fn port(c: &Client, a: PortArgs) -> Result<()> {
    let v: Value = c.get(&format!("/containers/{}/json", a.container), &Query::new())?;
    let mut out = String::new();
    let ports = v.pointer("/NetworkSettings/Ports").and_then(Value::as_object).cloned().unwrap_or_default();
    let want = a.port.as_ref().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") });
    for (k, binds) in &ports {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in binds.as_array().into_iter().flatten() {
            let ip = b["HostIp"].as_str().unwrap_or("0.0.0.0");
            let port = b["HostPort"].as_str().unwrap_or("");
            if want.is_some() {
                out.push_str(&format!("{ip}:{port}\n"));
            } else {
                out.push_str(&format!("{k} -> {ip}:{port}\n"));
            }
        }
    }
    if let (Some(w), true) = (&want, out.is_empty()) {
        return Err(CliError::Usage(format!("Error: No public port '{w}' published for {}", a.container)));
    }
    print_out(&out)
}

pub(crate) fn confirm(what: &str) -> Result<bool> {
    say_part!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force && !confirm("all stopped containers")? {
        return Ok(());
    }
    let out = prune_containers(c, &a.filter)?;
    print_out(&out)
}

/// `POST /containers/prune`; what Docker prints of it.
pub fn prune_containers(c: &Client, f: &[String]) -> Result<String> {
    let v: Value = c.post("/containers/prune", &Query::new().filters(&filters(f)?), None::<&()>)?;
    let mut out = String::new();
    let deleted = v["ContainersDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Containers:\n");
        for d in deleted {
            out.push_str(&format!("{}\n", d.as_str().unwrap_or("")));
        }
        out.push('\n');
    }
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api_types::PortSummaryTypeEnum as T;

    fn port(ip: Option<&str>, private: u16, public: Option<u16>, typ: T) -> PortSummary {
        PortSummary { ip: ip.map(str::to_owned), private_port: private, public_port: public, typ: Some(typ) }
    }

    #[test]
    fn ports_show_as_docker_s_ps_shows_them() {
        let both = [port(Some("::"), 80, Some(55115), T::TCP), port(Some("0.0.0.0"), 80, Some(55115), T::TCP)];
        assert_eq!(ports_text(&both), "0.0.0.0:55115->80/tcp, [::]:55115->80/tcp");
        let exposed = [port(None, 82, None, T::TCP), port(None, 53, None, T::UDP), port(None, 80, None, T::TCP)];
        // A broken run is written when it breaks, the open ones at the end.
        assert_eq!(ports_text(&exposed), "80/tcp, 53/udp, 82/tcp");
        let run = [port(None, 81, None, T::TCP), port(None, 80, None, T::TCP), port(None, 83, None, T::TCP)];
        assert_eq!(ports_text(&run), "80-81/tcp, 83/tcp");
        let same = [port(Some("0.0.0.0"), 8001, Some(8001), T::TCP), port(Some("0.0.0.0"), 8000, Some(8000), T::TCP)];
        assert_eq!(ports_text(&same), "0.0.0.0:8000-8001->8000-8001/tcp");
        assert_eq!(ports_text(&[]), "");
    }
}
