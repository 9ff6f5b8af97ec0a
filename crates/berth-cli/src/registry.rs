//! `pull`, `push`, `login` and `logout`, with credentials kept in Docker's
//! config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`),
//! so that `docker login` and `berth login` share them, and progress drawn
//! as Docker's CLI draws it (one line a layer, redrawn in place on a
//! terminal).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use base64::Engine as _;
use berth_client::{Body, Client, Query, Response};
use serde_json::{json, Value};

use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs, SearchArgs};
use crate::format::print_out;
use crate::{CliError, Result};

/// docker.io's key in the config file, as Docker's CLI writes it.
const DOCKER_IO_KEY: &str = "https://index.docker.io/v1/";

fn config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

fn read_config() -> Value {
    config_dir()
        .and_then(|d| std::fs::read(d.join("config.json")).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}))
}

/// Write the config file whole, readable by its owner only.
fn write_config(v: &Value) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = config_dir().ok_or_else(|| CliError::Usage("no config directory: set HOME or DOCKER_CONFIG".into()))?;
    // Made for its owner alone, as Docker's CLI makes it.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| CliError::Usage(format!("create {}: {e}", dir.display())))?;
    let tmp = dir.join("config.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CliError::Usage(format!("write {}: {e}", tmp.display())))?;
    f.write_all(&serde_json::to_vec_pretty(v)?).map_err(|e| CliError::Usage(format!("write config: {e}")))?;
    std::fs::rename(&tmp, dir.join("config.json")).map_err(|e| CliError::Usage(format!("write config: {e}")))?;
    Ok(())
}

/// The config file's key of a registry: docker.io's old index URL, else
/// the host as given.
fn key_of(server: &str) -> String {
    let host = server.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or("");
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_IO_KEY.to_owned(),
        h => h.to_owned(),
    }
}

/// The registry of an image name: what comes before the first `/` when it
/// has a `.`, a `:` or is `localhost`, else docker.io.
fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_owned(),
        _ => DOCKER_IO_KEY.to_owned(),
    }
}

/// `X-Registry-Auth` for a registry: the stored credentials, base64url.
fn auth_header(registry: &str) -> String {
    let cfg = read_config();
    let key = key_of(registry);
    let entry = &cfg["auths"][&key];
    let mut creds = json!({"serveraddress": key});
    if let Some(a) = entry["auth"].as_str() {
        if let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(a) {
            let pair = String::from_utf8_lossy(&pair).into_owned();
            let (u, p) = pair.split_once(':').unwrap_or((&pair, ""));
            creds["username"] = u.into();
            creds["password"] = p.into();
        }
    }
    if let Some(t) = entry["identitytoken"].as_str() {
        creds["identitytoken"] = t.into();
    }
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&creds).unwrap_or_default())
}

/// Draws Docker's JSON messages: a line per id, redrawn in place on a
/// terminal; elsewhere each status once, without progress bars.
struct Display {
    tty: bool,
    ids: HashMap<String, usize>,
    lines: usize,
}

impl Display {
    fn new() -> Display {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        Display { tty, ids: HashMap::new(), lines: 0 }
    }

    fn show(&mut self, v: &Value) -> Result<()> {
        let mut out = std::io::stdout().lock();
        let status = v["status"].as_str().unwrap_or("");
        let progress = v["progress"].as_str().unwrap_or("");
        let io = |e: std::io::Error| CliError::Usage(format!("write: {e}"));
        match v["id"].as_str() {
            Some(id) if self.tty => {
                let text = format!("{id}: {status} {progress}");
                match self.ids.get(id) {
                    Some(&at) => {
                        let up = self.lines - at;
                        write!(out, "\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r").map_err(io)?;
                    }
                    None => {
                        self.ids.insert(id.to_owned(), self.lines);
                        self.lines += 1;
                        writeln!(out, "{text}").map_err(io)?;
                    }
                }
            }
            Some(_) if !progress.is_empty() => {}
            Some(id) => writeln!(out, "{id}: {status}").map_err(io)?,
            None if !status.is_empty() => {
                self.lines += 1;
                writeln!(out, "{status}").map_err(io)?;
            }
            None => {}
        }
        Ok(())
    }
}

/// Show a stream of JSON messages; its error, if it ends in one.
fn show_stream(mut r: Response, quiet: bool) -> Result<()> {
    let mut d = Display::new();
    let mut line = Vec::new();
    while r.next_line(&mut line)? {
        let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
        if let Some(e) = v["error"].as_str().or_else(|| v.pointer("/errorDetail/message").and_then(Value::as_str)) {
            return Err(CliError::Usage(e.to_owned()));
        }
        if !quiet {
            d.show(&v)?;
        }
    }
    Ok(())
}

/// A name split into repository and tag (or digest, where `digests`):
/// no tag is every tag with `all`, else `latest`, said as Docker says it.
fn name_and_tag(name: &str, all: bool, quiet: bool, digests: bool) -> Result<(String, String)> {
    if let Some((i, d)) = name.rsplit_once('@').filter(|_| digests) {
        return Ok((i.to_owned(), d.to_owned()));
    }
    Ok(match name.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((i, t)) => (i.to_owned(), t.to_owned()),
        None if all => (name.to_owned(), String::new()),
        None => {
            if !quiet {
                print_out("Using default tag: latest\n")?;
            }
            (name.to_owned(), "latest".to_owned())
        }
    })
}

/// A pull or push request with the registry's credentials, its progress
/// shown, then the name alone when quiet.
fn transfer(c: &Client, path: &str, q: &Query, image: &str, name: &str, quiet: bool) -> Result<()> {
    let auth = auth_header(&registry_of(image));
    let r = c.send_with("POST", path, q, &[("X-Registry-Auth", &auth)], Body::None)?.ok()?;
    show_stream(r, quiet)?;
    if quiet {
        print_out(&format!("{name}\n"))?;
    }
    Ok(())
}

pub fn pull(c: &Client, a: PullArgs) -> Result<()> {
    let (image, tag) = name_and_tag(&a.name, a.all_tags, a.quiet, true)?;
    let q = Query::new().add("fromImage", &image).add("tag", &tag).opt("platform", a.platform.as_deref());
    transfer(c, "/images/create", &q, &image, &a.name, a.quiet)
}

pub fn push(c: &Client, a: PushArgs) -> Result<()> {
    let (image, tag) = name_and_tag(&a.name, a.all_tags, a.quiet, false)?;
    transfer(c, &format!("/images/{image}/push"), &Query::new().add("tag", &tag), &image, &a.name, a.quiet)
}

pub fn login(c: &Client, a: LoginArgs) -> Result<()> {
    let server = a.server.clone().unwrap_or_else(|| DOCKER_IO_KEY.to_owned());
    let user = match a.username {
        Some(u) => u,
        None => return Err(CliError::Usage("login needs --username: berth does not prompt for it".into())),
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => {
            return Err(CliError::Usage("--password and --password-stdin are mutually exclusive".into()))
        }
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map_err(|e| CliError::Usage(format!("read password: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => return Err(CliError::Usage("login needs --password or --password-stdin".into())),
    };
    let key = key_of(&server);
    let body = json!({"username": user, "password": password, "serveraddress": key});
    let v: Value = c.post("/auth", &Query::new(), Some(&body))?;
    let mut cfg = read_config();
    let mut entry = json!({"auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))});
    if let Some(t) = v["IdentityToken"].as_str().filter(|t| !t.is_empty()) {
        entry = json!({"identitytoken": t});
    }
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    cfg["auths"][&key] = entry;
    write_config(&cfg)?;
    print_out(&format!("{}\n", v["Status"].as_str().unwrap_or("Login Succeeded")))
}

/// `search`: NAME, DESCRIPTION (45 characters unless `--no-trunc`),
/// STARS, OFFICIAL and AUTOMATED, as Docker's CLI shows them.
pub fn search(c: &Client, a: SearchArgs) -> Result<()> {
    let f = crate::container::filters(&a.filter)?;
    let mut q = Query::new().add("term", &a.term).filters(&f);
    if let Some(l) = a.limit {
        q = q.add("limit", l.to_string());
    }
    let auth = auth_header(&registry_of(&a.term));
    let list: Vec<Value> =
        c.send_with("GET", "/images/search", &q, &[("X-Registry-Auth", &auth)], Body::None)?.ok()?.json()?;
    let ok = |b: bool| if b { "[OK]" } else { "" };
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            let desc = r["description"].as_str().unwrap_or("").replace('\n', " ");
            json!({
                "Name": r["name"], "StarCount": r["star_count"].as_u64().unwrap_or(0).to_string(),
                "Description": if a.no_trunc { desc } else { crate::format::ellipsis(&desc, 45) },
                "IsOfficial": ok(r["is_official"].as_bool().unwrap_or(false)),
                "IsAutomated": ok(r["is_automated"].as_bool().unwrap_or(false)),
            })
        })
        .collect();
    let header = json!({
        "Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL",
        "IsAutomated": "AUTOMATED",
    });
    let cols = ["Name", "Description", "StarCount", "IsOfficial", "IsAutomated"];
    crate::format::Format::parse(a.format.as_deref())?.print(&cols, &header, &rows)
}

pub fn logout(_c: &Client, a: LogoutArgs) -> Result<()> {
    let key = key_of(a.server.as_deref().unwrap_or(DOCKER_IO_KEY));
    let mut cfg = read_config();
    let had = cfg["auths"].as_object_mut().and_then(|m| m.remove(&key)).is_some();
    if had {
        write_config(&cfg)?;
        print_out(&format!("Removing login credentials for {key}\n"))
    } else {
        print_out(&format!("Not logged in to {key}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_keys_are_named_as_docker_s_cli_names_them() {
        assert_eq!(registry_of("busybox"), DOCKER_IO_KEY);
        assert_eq!(registry_of("user/app"), DOCKER_IO_KEY);
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(key_of("https://index.docker.io/v1/"), DOCKER_IO_KEY);
        assert_eq!(key_of("reg.example:443"), "reg.example:443");
    }
}
