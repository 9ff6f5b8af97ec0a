//! The Container Network Interface (CNI spec 1.0) as a runtime drives it:
//! a network configuration list found in a directory, and its plugins,
//! executables found in the plugin directories, run in order for ADD and
//! CHECK and in reverse for DEL, each given the previous one's result.
//!
//! What a runtime must do is the spec's (`SPEC.md` of containernetworking/
//! cni): configurations are read as libcni reads them (`*.conf`,
//! `*.conflist` and `*.json` in name order, the first valid one), each
//! plugin gets the list's `name` and `cniVersion`, `prevResult`, and the
//! `runtimeConfig` of the capabilities it declares; a failed plugin's
//! error is the JSON it prints.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::{Error, Result};

/// The most of each of a plugin's outputs that is read.
const MAX_OUTPUT: u64 = 1 << 20;
/// How long one plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where configurations and plugins are found.
#[derive(Debug, Clone)]
pub struct Cni {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

/// A network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<Map<String, Value>>,
    /// The file it was read from.
    pub source: PathBuf,
}

/// What one attachment of a container to the network is: the same for
/// its ADD, CHECK and DEL.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub container_id: String,
    /// The network namespace's path; empty for a DEL once it is gone.
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`, `KEY=value` pairs.
    pub args: Vec<(String, String)>,
    /// The runtime's values for capabilities (`portMappings`, …), given
    /// to the plugins that declare them.
    pub capabilities: BTreeMap<String, Value>,
}

impl Cni {
    /// The configuration list in force: the first file, in name order,
    /// that parses. `NotFound` when there is none.
    pub fn load(&self) -> Result<NetworkList> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.conf_dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(Error::io(format!("read {}", self.conf_dir.display()))(e)),
        };
        files.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("conf" | "conflist" | "json")));
        files.sort();
        let mut last = None;
        for f in files {
            match read_list(&f) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::NotFound(match last {
            Some(e) => format!("no valid CNI network config in {}: {e}", self.conf_dir.display()),
            None => format!("no CNI network config found in {}", self.conf_dir.display()),
        }))
    }

    /// ADD: every plugin in order; the last one's result. On failure the
    /// plugins are asked to DEL what they may have made.
    pub fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for p in &list.plugins {
            match self.exec(list, p, "ADD", att, prev.as_ref()) {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    let _ = self.del(list, att, None);
                    return Err(e);
                }
            }
        }
        prev.ok_or_else(|| Error::Invalid(format!("CNI network {} has no plugins", list.name)))
    }

    /// CHECK against the result of the ADD (CNI 0.4.0 and later).
    pub fn check(&self, list: &NetworkList, att: &Attachment, result: &Value) -> Result<()> {
        if list.disable_check || !at_least(&list.cni_version, 0, 4) {
            return Ok(());
        }
        for p in &list.plugins {
            self.exec(list, p, "CHECK", att, Some(result))?;
        }
        Ok(())
    }

    /// DEL: every plugin in reverse order, each given the ADD's result
    /// when it is known. Every plugin is asked even when one fails; the
    /// first error is returned.
    pub fn del(&self, list: &NetworkList, att: &Attachment, result: Option<&Value>) -> Result<()> {
        let prev = result.filter(|_| at_least(&list.cni_version, 0, 4));
        let mut first = None;
        for p in list.plugins.iter().rev() {
            if let Err(e) = self.exec(list, p, "DEL", att, prev) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// One plugin, one command.
    fn exec(
        &self,
        list: &NetworkList,
        plugin: &Map<String, Value>,
        command: &str,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Value> {
        let kind = plugin.get("type").and_then(Value::as_str).unwrap_or_default();
        let bin = self.find(kind)?;
        let conf = plugin_conf(list, plugin, att, prev);
        let stdin = serde_json::to_vec(&conf).map_err(|e| Error::Invalid(e.to_string()))?;
        let args: Vec<String> = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path = std::env::join_paths(&self.bin_dirs).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut child = Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", args.join(";"))
            .env("CNI_PATH", path)
            // The standard plugins run iptables and ip; they look on PATH.
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io(format!("run CNI plugin {}", bin.display())))?;
        let pid = child.id();
        let (done, timer) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if timer.recv_timeout(PLUGIN_TIMEOUT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: kill(2) on the plugin's pid, not yet reaped (the
                // wait below is what reaps it, after this thread is told).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        if let Some(mut w) = child.stdin.take() {
            let _ = w.write_all(&stdin);
        }
        // Both outputs are read together (stderr on a thread of its own):
        // a plugin that fills one pipe while the other is read would wait
        // for ever, or for the watchdog.
        let err_pipe = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut err = Vec::new();
            if let Some(r) = err_pipe {
                let _ = r.take(MAX_OUTPUT).read_to_end(&mut err);
            }
            err
        });
        let mut out = Vec::new();
        if let Some(r) = child.stdout.take() {
            let _ = r.take(MAX_OUTPUT).read_to_end(&mut out);
        }
        let err = err_reader.join().unwrap_or_default();
        let _ = done.send(());
        let _ = watchdog.join();
        let status = child.wait().map_err(Error::io(format!("wait for CNI plugin {kind}")))?;
        if !status.success() {
            return Err(plugin_error(kind, command, &out, &err, status));
        }
        if command != "ADD" {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out)
            .map_err(|e| Error::Invalid(format!("CNI plugin {kind} {command}: its result is not JSON: {e}")))
    }

    fn find(&self, kind: &str) -> Result<PathBuf> {
        if kind.is_empty() || kind.contains('/') || kind == "." || kind == ".." {
            return Err(Error::Invalid(format!("invalid CNI plugin type {kind:?}")));
        }
        self.bin_dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file()).ok_or_else(|| {
            let dirs: Vec<String> = self.bin_dirs.iter().map(|d| d.display().to_string()).collect();
            Error::NotFound(format!("failed to find CNI plugin {kind:?} in path [{}]", dirs.join(" ")))
        })
    }
}

/// A configuration file: a list, or a single plugin's (`.conf`) made one.
fn read_list(path: &Path) -> Result<NetworkList> {
    let bytes = std::fs::read(path).map_err(Error::io(format!("read {}", path.display())))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: not a CNI config: {e}", path.display())))?;
    let Some(obj) = v.as_object() else {
        return Err(Error::Invalid(format!("{}: not a JSON object", path.display())));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let plugins: Vec<Map<String, Value>> = match obj.get("plugins") {
        Some(Value::Array(ps)) => ps.iter().filter_map(|p| p.as_object().cloned()).collect(),
        Some(_) => return Err(Error::Invalid(format!("{}: plugins is not a list", path.display()))),
        // A single plugin's config is its own list.
        None if obj.contains_key("type") => vec![obj.clone()],
        None => return Err(Error::Invalid(format!("{}: no plugins", path.display()))),
    };
    let list = NetworkList {
        name: text("name"),
        cni_version: text("cniVersion"),
        disable_check: obj.get("disableCheck").and_then(Value::as_bool).unwrap_or(false),
        plugins,
        source: path.to_owned(),
    };
    if list.name.is_empty() {
        return Err(Error::Invalid(format!("{}: the network has no name", path.display())));
    }
    if list.plugins.is_empty() {
        return Err(Error::Invalid(format!("{}: no plugins", path.display())));
    }
    if list.plugins.iter().any(|p| p.get("type").and_then(Value::as_str).is_none_or(str::is_empty)) {
        return Err(Error::Invalid(format!("{}: a plugin has no type", path.display())));
    }
    Ok(list)
}

/// The config a plugin reads on its stdin.
fn plugin_conf(list: &NetworkList, plugin: &Map<String, Value>, att: &Attachment, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), json!(list.name));
    conf.insert("cniVersion".into(), json!(list.cni_version));
    conf.remove("capabilities");
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    let wanted = plugin.get("capabilities").and_then(Value::as_object);
    let mut runtime = Map::new();
    for (cap, value) in &att.capabilities {
        if wanted.and_then(|w| w.get(cap)).and_then(Value::as_bool) == Some(true) {
            runtime.insert(cap.clone(), value.clone());
        }
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

/// A plugin's failure, with the message it printed (its error JSON, or
/// its stderr).
fn plugin_error(kind: &str, command: &str, out: &[u8], err: &[u8], status: std::process::ExitStatus) -> Error {
    let msg = serde_json::from_slice::<Value>(out)
        .ok()
        .and_then(|v| {
            let msg = v.get("msg").and_then(Value::as_str)?.to_owned();
            Some(match v.get("details").and_then(Value::as_str).filter(|d| !d.is_empty()) {
                Some(d) => format!("{msg}: {d}"),
                None => msg,
            })
        })
        .unwrap_or_else(|| {
            let e = String::from_utf8_lossy(err).trim().to_owned();
            if e.is_empty() {
                status.to_string()
            } else {
                e
            }
        });
    Error::Invalid(format!("plugin type={kind:?} failed ({command}): {msg}"))
}

/// `version` is `major.minor` or later.
fn at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// The addresses a result gives (`ips`, as CNI 0.3.0 and later have
/// them; `ip4`/`ip6` before), with their prefix lengths, IPv4 first.
pub fn addresses(result: &Value) -> Vec<(std::net::IpAddr, u8)> {
    let parse = |cidr: &str| {
        let (ip, len) = cidr.split_once('/')?;
        Some((ip.parse().ok()?, len.parse().ok()?))
    };
    let mut out: Vec<(std::net::IpAddr, u8)> = match result.get("ips").and_then(Value::as_array) {
        Some(ips) => ips.iter().filter_map(|i| i.get("address")?.as_str()).filter_map(parse).collect(),
        None => ["ip4", "ip6"].iter().filter_map(|k| result.get(*k)?.get("ip")?.as_str()).filter_map(parse).collect(),
    };
    out.sort_by_key(|(ip, _)| ip.is_ipv6());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-cni-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_first_valid_config_in_name_order_is_taken_and_a_single_plugin_is_a_list() {
        let d = dir("load");
        std::fs::write(d.join("05-bad.conflist"), "{not json").unwrap();
        std::fs::write(d.join("10-net.conf"), r#"{"cniVersion":"1.0.0","name":"one","type":"bridge"}"#).unwrap();
        std::fs::write(d.join("20-other.conflist"), r#"{"cniVersion":"1.0.0","name":"two","plugins":[{"type":"x"}]}"#)
            .unwrap();
        std::fs::write(d.join("00-ignored.txt"), "{}").unwrap();
        let cni = Cni { conf_dir: d.clone(), bin_dirs: vec![] };
        let l = cni.load().unwrap();
        assert_eq!((l.name.as_str(), l.plugins.len()), ("one", 1));
        assert_eq!(l.plugins[0]["type"], "bridge");
        std::fs::remove_dir_all(&d).unwrap();
        assert!(matches!(cni.load(), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_plugin_gets_the_list_s_name_version_prev_result_and_only_the_capabilities_it_declares() {
        let list = NetworkList {
            name: "pods".into(),
            cni_version: "1.0.0".into(),
            disable_check: false,
            plugins: vec![],
            source: PathBuf::new(),
        };
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true}}).as_object().unwrap().clone();
        let mut att = Attachment::default();
        att.capabilities.insert("portMappings".into(), json!([{"hostPort": 8080}]));
        att.capabilities.insert("bandwidth".into(), json!({}));
        let conf = plugin_conf(&list, &plugin, &att, Some(&json!({"ips": []})));
        assert_eq!(
            conf,
            json!({"type": "portmap", "name": "pods", "cniVersion": "1.0.0", "prevResult": {"ips": []},
                   "runtimeConfig": {"portMappings": [{"hostPort": 8080}]}})
        );
    }

    #[test]
    fn addresses_come_from_ips_or_the_old_ip4_and_ip6() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.1.0.5/24", "gateway": "10.1.0.1"}]});
        assert_eq!(addresses(&r), [("10.1.0.5".parse().unwrap(), 24), ("fd00::5".parse().unwrap(), 64)]);
        assert_eq!(addresses(&json!({"ip4": {"ip": "10.2.0.3/16"}})), [("10.2.0.3".parse().unwrap(), 16)]);
        assert!(addresses(&json!({"ips": [{"address": "junk"}]})).is_empty());
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(at_least("1.0.0", 0, 4) && at_least("0.4.0", 0, 4));
        assert!(!at_least("0.3.1", 0, 4) && !at_least("", 0, 4));
    }
}
