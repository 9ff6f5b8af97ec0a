//! Volume verbs: create, ls, rm, prune (inspect is the shared one with
//! `--type volume`).

use berth_api_types::{Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse};
use berth_client::{Client, Query};
use berth_core::units::human_size;
use serde_json::{json, Value};

use crate::cli::{PruneArgs, VolumeCreateArgs, VolumeLsArgs, VolumeRmArgs};
use crate::container::{confirm, filters};
use crate::format::{print_out, Format};
use crate::network::key_values;
use crate::{each, Result};

pub fn create(c: &Client, a: VolumeCreateArgs) -> Result<()> {
    let body = VolumeCreateRequest {
        name: a.name,
        driver: Some(a.driver),
        driver_opts: Some(key_values(&a.opt).into_iter().collect()),
        labels: Some(key_values(&a.label).into_iter().collect()),
        cluster_volume_spec: None,
    };
    let v: Volume = c.post("/volumes/create", &Query::new(), Some(&body))?;
    print_out(&format!("{}\n", v.name))
}

/// One row of `volume ls`, with the field names Docker's templates use.
fn ls_row(v: &Volume) -> Value {
    let mut labels: Vec<String> = v.labels.iter().map(|(k, val)| format!("{k}={val}")).collect();
    labels.sort();
    let (size, links) = match &v.usage_data {
        Some(u) => (human_size(u.size.max(0) as f64), u.ref_count.to_string()),
        None => ("N/A".into(), "N/A".into()),
    };
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Scope": v.scope.map(|s| s.to_string()).unwrap_or_default(),
        "Mountpoint": v.mountpoint,
        "Labels": labels.join(","),
        "Size": size,
        "Links": links,
    })
}

pub fn ls(c: &Client, a: VolumeLsArgs) -> Result<()> {
    let f = filters(&a.filter)?;
    let r: VolumeListResponse = c.get("/volumes", &Query::new().filters(&f))?;
    let volumes = r.volumes.unwrap_or_default();
    let rows: Vec<Value> = volumes.iter().map(ls_row).collect();
    if a.quiet {
        return print_out(&volumes.iter().map(|v| format!("{}\n", v.name)).collect::<String>());
    }
    let header = json!({
        "Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS", "Size": "SIZE", "Links": "LINKS",
    });
    Format::parse(a.format.as_deref())?.print(&["Driver", "Name"], &header, &rows)
}

pub fn rm(c: &Client, a: VolumeRmArgs) -> Result<()> {
    each(&a.volumes, |v| {
        c.delete(&format!("/volumes/{v}"), &Query::new().flag("force", a.force))?;
        print_out(&format!("{v}\n"))
    })
}

pub fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    let what = if a.all {
        "all local volumes not used by at least one container"
    } else {
        "all anonymous local volumes not used by at least one container"
    };
    if !a.force && !confirm(what)? {
        return Ok(());
    }
    print_out(&prune_volumes(c, a.all, &a.filter)?)
}

/// `POST /volumes/prune` and what it removed, as `volume prune` and
/// `system prune --volumes` print it.
pub fn prune_volumes(c: &Client, all: bool, filter: &[String]) -> Result<String> {
    let mut f = filters(filter)?;
    if all {
        f.push(("all".into(), "true".into()));
    }
    let r: VolumePruneResponse = c.post("/volumes/prune", &Query::new().filters(&f), None::<&()>)?;
    let mut out = String::new();
    let deleted = r.volumes_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Volumes:\n");
        out.extend(deleted.iter().map(|v| format!("{v}\n")));
        out.push('\n');
    }
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(r.space_reclaimed.unwrap_or(0) as f64)));
    Ok(out)
}
