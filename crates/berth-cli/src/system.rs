//! info, version, events and system prune.

use berth_api_types::{ContainerSummary, ContainerSummaryStateEnum, DiskUsage, ImageSummary, UsageData, Volume};
use berth_client::{Body, Client, Query};
use berth_core::units::human_size;
use serde_json::{json, Value};

use crate::cli::{DfArgs, EventsArgs, FormatArgs, SystemPruneArgs};
use crate::container::{filters, prune_containers, relative_time};
use crate::format::{ago, print_out, short_id, table, template, Format};
use crate::image::prune_images;
use crate::{CliError, Result};

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

pub fn info(c: &Client, a: FormatArgs) -> Result<()> {
    let v: Value = c.get("/info", &Query::new())?;
    if let Some(f) = &a.format {
        return print_out(&format!("{}\n", template(f)?.render(&v)?));
    }
    let n = |k: &str| v[k].as_i64().unwrap_or(0);
    let runtimes: Vec<&str> =
        v["Runtimes"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let out = format!(
        "Server:\n Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n Server Version: {}\n \
         Storage Driver: {}\n Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}\n Runtimes: {}\n \
         Default Runtime: {}\n Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n \
         CPUs: {}\n Total Memory: {}\n Name: {}\n Berth Root Dir: {}\n Live Restore Enabled: {}\n",
        n("Containers"),
        n("ContainersRunning"),
        n("ContainersPaused"),
        n("ContainersStopped"),
        n("Images"),
        s(&v, "ServerVersion"),
        s(&v, "Driver"),
        s(&v, "LoggingDriver"),
        s(&v, "CgroupDriver"),
        s(&v, "CgroupVersion"),
        runtimes.join(" "),
        s(&v, "DefaultRuntime"),
        s(&v, "KernelVersion"),
        s(&v, "OperatingSystem"),
        s(&v, "OSType"),
        s(&v, "Architecture"),
        n("NCPU"),
        berth_core::units::bytes_size(n("MemTotal") as f64),
        s(&v, "Name"),
        s(&v, "DockerRootDir"),
        v["LiveRestoreEnabled"].as_bool().unwrap_or(false),
    );
    print_out(&out)
}

pub fn version(c: &Client, a: FormatArgs) -> Result<()> {
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": berth_api_types::API_VERSION,
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
    });
    let server = c.get::<Value>("/version", &Query::new());
    let all = json!({"Client": client, "Server": server.as_ref().ok()});
    if let Some(f) = &a.format {
        print_out(&format!("{}\n", template(f)?.render(&all)?))?;
        return server.map(|_| ()).map_err(CliError::from);
    }
    let mut out = format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/{}\n",
        s(&client, "Version"),
        s(&client, "ApiVersion"),
        s(&client, "Arch")
    );
    if let Ok(sv) = &server {
        out.push_str(&format!(
            "\nServer: berth\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  \
             OS/Arch:          {}/{}\n  Kernel Version:   {}\n",
            s(sv, "Version"),
            s(sv, "ApiVersion"),
            s(sv, "MinAPIVersion"),
            s(sv, "Os"),
            s(sv, "Arch"),
            s(sv, "KernelVersion"),
        ));
    }
    print_out(&out)?;
    server.map(|_| ()).map_err(CliError::from)
}

/// One event as `docker events` prints it: the time, type, action, actor
/// and its attributes in order.
fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"].as_i64().unwrap_or(0);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos.max(0) as u64);
    let when = berth_core::time::rfc3339(t);
    let attrs: Vec<String> = e
        .pointer("/Actor/Attributes")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    let mut line = format!(
        "{when} {} {} {}",
        s(e, "Type"),
        s(e, "Action"),
        e.pointer("/Actor/ID").and_then(Value::as_str).unwrap_or("")
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line.push('\n');
    line
}

pub fn events(c: &Client, a: EventsArgs) -> Result<()> {
    let q = Query::new()
        .opt("since", a.since.as_deref().map(relative_time))
        .opt("until", a.until.as_deref().map(relative_time))
        .filters(&filters(&a.filter)?);
    let tpl = a.format.as_deref().map(template).transpose()?;
    let mut r = c.call("GET", "/events", &q, Body::None)?;
    let mut line = Vec::new();
    while r.next_line(&mut line)? {
        let Ok(e) = serde_json::from_slice::<Value>(&line) else { continue };
        let out = match &tpl {
            Some(t) => format!("{}\n", t.render(&e)?),
            None => event_line(&e),
        };
        print_out(&out)?;
    }
    Ok(())
}

pub fn prune(c: &Client, sa: SystemPruneArgs) -> Result<()> {
    let a = &sa.prune;
    let images =
        if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
    let volumes = if sa.volumes { "\n  - all anonymous volumes not used by at least one container" } else { "" };
    if !a.force && !crate::container::confirm(&format!("all stopped containers{volumes}\n  - {images}"))? {
        return Ok(());
    }
    let mut out = prune_containers(c, &a.filter)?;
    if sa.volumes {
        out.push_str(&crate::volume::prune_volumes(c, false, &a.filter)?);
    }
    out.push_str(&prune_images(c, a.all, &a.filter)?);
    print_out(&out)
}

/// "12.5MB (40%)": a reclaimable size and its share of the total.
fn share(part: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", human_size(part as f64), part * 100 / total)
    } else {
        human_size(part as f64)
    }
}

pub fn df(c: &Client, a: DfArgs) -> Result<()> {
    let du: DiskUsage = c.get("/system/df", &Query::new())?;
    let images = du.images.unwrap_or_default();
    let containers = du.containers.unwrap_or_default();
    let volumes = du.volumes.unwrap_or_default();
    if a.verbose && a.format.is_none() {
        return df_verbose(&images, &containers, &volumes);
    }
    let used: i64 = images
        .iter()
        .filter(|i| i.containers > 0 && i.size >= 0 && i.shared_size >= 0)
        .map(|i| i.size - i.shared_size)
        .sum();
    let active = |c: &&ContainerSummary| {
        matches!(c.state, Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::PAUSED))
    };
    let rw: i64 = containers.iter().filter_map(|c| c.size_rw).sum();
    let idle_rw: i64 = containers.iter().filter(|c| !active(c)).filter_map(|c| c.size_rw).sum();
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(),
               "Active": images.iter().filter(|i| i.containers > 0).count().to_string(),
               "Size": human_size(du.layers_size as f64), "Reclaimable": share(du.layers_size - used, du.layers_size)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(),
               "Active": containers.iter().filter(active).count().to_string(),
               "Size": human_size(rw as f64), "Reclaimable": share(idle_rw, rw)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(),
               "Active": volumes.iter().filter(|v| v.usage_data.as_ref().is_some_and(|u| u.ref_count > 0)).count().to_string(),
               "Size": human_size(vol_size(&volumes, |_| true) as f64),
               "Reclaimable": share(vol_size(&volumes, |u| u.ref_count == 0), vol_size(&volumes, |_| true))}),
        json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    let header = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    Format::parse(a.format.as_deref())?.print(&["Type", "TotalCount", "Active", "Size", "Reclaimable"], &header, &rows)
}

/// The bytes of the volumes whose usage passes `which`.
fn vol_size(vs: &[Volume], which: impl Fn(&UsageData) -> bool) -> i64 {
    vs.iter().filter_map(|v| v.usage_data.as_ref()).filter(|u| which(u) && u.size > 0).map(|u| u.size).sum()
}

fn df_verbose(images: &[ImageSummary], containers: &[ContainerSummary], volumes: &[Volume]) -> Result<()> {
    let mut out = String::from("Images space usage:\n\n");
    let mut t = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"]
        .map(str::to_owned)
        .to_vec()];
    for i in images {
        let tags = if i.repo_tags.is_empty() { vec!["<none>:<none>".to_owned()] } else { i.repo_tags.clone() };
        for tag in tags {
            let (repo, tag) = tag.rsplit_once(':').unwrap_or((&tag, "<none>"));
            t.push(vec![
                repo.to_owned(),
                tag.to_owned(),
                short_id(&i.id),
                ago(i.created),
                human_size(i.size as f64),
                human_size(i.shared_size.max(0) as f64),
                human_size((i.size - i.shared_size.max(0)) as f64),
                i.containers.to_string(),
            ]);
        }
    }
    out.push_str(&table(&t));
    out.push_str("\nContainers space usage:\n\n");
    let mut t = vec![["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"]
        .map(str::to_owned)
        .to_vec()];
    for c in containers {
        let r = crate::container::ps_row(c, true);
        let cell = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        t.push(vec![
            cell("ID"),
            cell("Image"),
            cell("Command"),
            c.mounts.iter().flatten().filter(|m| m.typ.as_deref() == Some("volume")).count().to_string(),
            human_size(c.size_rw.unwrap_or(0) as f64),
            cell("RunningFor"),
            cell("Status"),
            cell("Names"),
        ]);
    }
    out.push_str(&table(&t));
    out.push_str("\nLocal Volumes space usage:\n\n");
    let mut t = vec![["VOLUME NAME", "LINKS", "SIZE"].map(str::to_owned).to_vec()];
    for v in volumes {
        let u = v.usage_data.clone().unwrap_or_default();
        t.push(vec![v.name.clone(), u.ref_count.to_string(), human_size(u.size.max(0) as f64)]);
    }
    out.push_str(&table(&t));
    out.push_str("\nBuild cache usage: 0B\n");
    print_out(&out)
}
