//! Image verbs: images, rmi, tag, load and save (with progress bars on a
//! terminal), import, history, prune.

use std::io::Read;

use berth_api_types::ImageSummary;
use berth_client::{Body, Client, Query, Response};
use berth_core::units::human_size;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::cli::{HistoryArgs, ImagesArgs, ImportArgs, LoadArgs, PruneArgs, RmiArgs, SaveArgs, TagArgs};
use crate::container::{filters, to_output};
use crate::format::{ago, ellipsis, print_out, short_id, unix_time, Format};
use crate::{each, CliError, Result};

/// `repo:tag` split at the tag's colon (not a registry port's).
fn split_tag(r: &str) -> (&str, &str) {
    match r.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (r, "latest"),
    }
}

pub fn images(c: &Client, a: ImagesArgs) -> Result<()> {
    let mut f = filters(&a.filter)?;
    if let Some(r) = &a.reference {
        f.push(("reference".into(), r.clone()));
    }
    let list: Vec<ImageSummary> = c.get("/images/json", &Query::new().flag("all", a.all).filters(&f))?;
    let id_of = |i: &ImageSummary| if a.no_trunc { i.id.clone() } else { short_id(&i.id) };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        let out: String = list.iter().map(id_of).filter(|i| seen.insert(i.clone())).map(|i| format!("{i}\n")).collect();
        return print_out(&out);
    }
    let mut rows = Vec::new();
    for i in &list {
        let tags: Vec<(String, String)> = if i.repo_tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.repo_tags.iter().map(|t| split_tag(t)).map(|(r, t)| (r.to_owned(), t.to_owned())).collect()
        };
        for (repo, tag) in tags {
            rows.push(json!({
                "ID": id_of(i),
                "Repository": repo,
                "Tag": tag,
                "Digest": i.repo_digests.first().and_then(|d| d.split_once('@')).map_or("<none>", |d| d.1),
                "CreatedSince": ago(i.created),
                "CreatedAt": unix_time(i.created),
                "Size": human_size(i.size as f64),
                "Containers": if i.containers < 0 { "N/A".to_owned() } else { i.containers.to_string() },
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "VirtualSize": human_size(i.size as f64),
            }));
        }
    }
    let header = json!({
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
    });
    let cols: &[&str] = if a.digests {
        &["Repository", "Tag", "Digest", "ID", "CreatedSince", "Size"]
    } else {
        &["Repository", "Tag", "ID", "CreatedSince", "Size"]
    };
    Format::parse(a.format.as_deref())?.print(cols, &header, &rows)
}

pub fn rmi(c: &Client, a: RmiArgs) -> Result<()> {
    let q = Query::new().flag("force", a.force).flag("noprune", a.no_prune);
    each(&a.images, |name| {
        let done: Vec<Value> = c.delete(&format!("/images/{name}"), &q)?.json()?;
        let mut out = String::new();
        for d in done {
            if let Some(u) = d["Untagged"].as_str() {
                out.push_str(&format!("Untagged: {u}\n"));
            }
            if let Some(id) = d["Deleted"].as_str() {
                out.push_str(&format!("Deleted: {id}\n"));
            }
        }
        print_out(&out)
    })
}

pub fn tag(c: &Client, a: TagArgs) -> Result<()> {
    let (repo, tag) = split_tag(&a.target);
    c.call("POST", &format!("/images/{}/tag", a.source), &Query::new().add("repo", repo).add("tag", tag), Body::None)?;
    Ok(())
}

/// A bar over bytes on stderr; hidden when stderr is not a terminal.
fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let b = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let tpl = if total.is_some() {
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(s) = ProgressStyle::with_template(tpl) {
        b.set_style(s.progress_chars("=> "));
    }
    b.set_message(what.to_owned());
    b
}

/// Prints a JSON-lines progress stream (load, import) as Docker does:
/// `stream` and `status` lines, and an `error` ends it with that error.
fn print_messages(mut r: Response, quiet: bool) -> Result<()> {
    let mut line = Vec::new();
    while r.next_line(&mut line)? {
        let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
        if let Some(e) = v["error"].as_str().or_else(|| v.pointer("/errorDetail/message").and_then(Value::as_str)) {
            return Err(CliError::Usage(e.to_owned()));
        }
        if quiet {
            continue;
        }
        if let Some(s) = v["stream"].as_str() {
            print_out(s)?;
        } else if let Some(s) = v["status"].as_str() {
            print_out(&format!("{s}\n"))?;
        }
    }
    Ok(())
}

/// A file or stdin to upload, with its size when known.
fn source(path: Option<&str>) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    match path.filter(|p| *p != "-") {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| CliError::Usage(format!("open {p}: {e}")))?;
            let len = f.metadata().ok().map(|m| m.len());
            Ok((Box::new(f), len))
        }
        None => {
            // SAFETY: isatty only inspects the descriptor.
            if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
                return Err(CliError::Usage(
                    "requested load from stdin, but stdin is empty. Use -i to load from a file".into(),
                ));
            }
            Ok((Box::new(std::io::stdin()), None))
        }
    }
}

pub fn load(c: &Client, a: LoadArgs) -> Result<()> {
    let (src, len) = source(a.input.as_deref())?;
    let b = bar(len, "Loading");
    if a.quiet {
        b.finish_and_clear();
    }
    let reader = Box::new(b.wrap_read(src));
    let r = c.call(
        "POST",
        "/images/load",
        &Query::new().flag("quiet", a.quiet),
        Body::Stream { content_type: "application/x-tar", reader },
    );
    b.finish_and_clear();
    print_messages(r?, a.quiet)
}

pub fn save(c: &Client, a: SaveArgs) -> Result<()> {
    let mut q = Query::new();
    for n in &a.images {
        q = q.add("names", n);
    }
    let r = c.call("GET", "/images/get", &q, Body::None)?;
    let b = bar(None, "Saving");
    let res = to_output(b.wrap_read(r), a.output.as_deref(), "to a terminal");
    b.finish_and_clear();
    res
}

pub fn import(c: &Client, a: ImportArgs) -> Result<()> {
    let (src, len) = source(Some(a.file.as_str()))?;
    let mut q = Query::new().add("fromSrc", "-").opt("message", a.message.as_deref());
    if let Some(r) = &a.repository {
        let (repo, tag) = split_tag(r);
        q = q.add("repo", repo).add("tag", tag);
    }
    for ch in &a.change {
        q = q.add("changes", ch);
    }
    let b = bar(len, "Importing");
    let r = c.call(
        "POST",
        "/images/create",
        &q,
        Body::Stream { content_type: "application/x-tar", reader: Box::new(b.wrap_read(src)) },
    );
    b.finish_and_clear();
    print_messages(r?, false)
}

pub fn history(c: &Client, a: HistoryArgs) -> Result<()> {
    let list: Vec<Value> = c.get(&format!("/images/{}/history", a.image), &Query::new())?;
    if a.quiet {
        let out: String = list
            .iter()
            .map(|h| h["Id"].as_str().unwrap_or(""))
            .map(|id| if a.no_trunc || id == "<missing>" { id.to_owned() } else { short_id(id) })
            .map(|id| format!("{id}\n"))
            .collect();
        return print_out(&out);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("");
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
            let size = h["Size"].as_f64().unwrap_or(0.0);
            json!({
                "ID": if a.no_trunc || id == "<missing>" { id.to_owned() } else { short_id(id) },
                "CreatedSince": if a.human { ago(created) } else { unix_time(created) },
                "CreatedAt": unix_time(created),
                "CreatedBy": if a.no_trunc { by } else { ellipsis(&by, 45) },
                "Size": if a.human { human_size(size) } else { (size as i64).to_string() },
                "Comment": h["Comment"].as_str().unwrap_or(""),
            })
        })
        .collect();
    let header = json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
        "Size": "SIZE", "Comment": "COMMENT",
    });
    Format::parse(a.format.as_deref())?.print(&["ID", "CreatedSince", "CreatedBy", "Size", "Comment"], &header, &rows)
}

pub fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    let what =
        if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
    if !a.force && !crate::container::confirm(what)? {
        return Ok(());
    }
    print_out(&prune_images(c, a.all, &a.filter)?)
}

/// `POST /images/prune`; what Docker prints of it.
pub fn prune_images(c: &Client, all: bool, f: &[String]) -> Result<String> {
    let mut f = filters(f)?;
    if all {
        f.push(("dangling".into(), "false".into()));
    }
    let v: Value = c.post("/images/prune", &Query::new().filters(&f), None::<&()>)?;
    let mut out = String::new();
    let deleted = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for d in deleted {
            if let Some(u) = d["Untagged"].as_str() {
                out.push_str(&format!("untagged: {u}\n"));
            }
            if let Some(id) = d["Deleted"].as_str() {
                out.push_str(&format!("deleted: {id}\n"));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))));
    Ok(out)
}
