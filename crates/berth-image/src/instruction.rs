//! The Dockerfile instructions that change an image's run config, as
//! `docker import --change` and `docker commit --change` take them: CMD,
//! ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER,
//! VOLUME and WORKDIR, with Dockerfile quoting and exec (JSON) or shell
//! forms.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::RunConfig;
use crate::error::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// Split as the Dockerfile parser does: whitespace separates words; double
/// quotes group and take `\` escapes, single quotes group literally, and a
/// `\` outside quotes escapes the next character.
pub fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            q @ ('"' | '\'') => {
                in_word = true;
                let which = if q == '"' { "double-quote" } else { "single-quote" };
                loop {
                    match chars.next() {
                        Some(x) if x == q => break,
                        // Escapes work inside double quotes only.
                        Some('\\') if q == '"' => match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err(invalid(format!("unexpected end of statement in {s:?}"))),
                        },
                        Some(x) => cur.push(x),
                        None => {
                            return Err(invalid(format!(
                                "unexpected end of statement while looking for matching {which} in {s:?}"
                            )))
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// The exec form (`["a", "b"]`) when `rest` is a JSON array of strings.
fn exec_form(rest: &str) -> Option<Vec<String>> {
    if !rest.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// Exec form, or the shell form run by the image's shell.
fn command(rest: &str, shell: Option<&[String]>) -> Vec<String> {
    exec_form(rest).unwrap_or_else(|| {
        let mut v = shell.map_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()], <[String]>::to_vec);
        v.push(rest.to_owned());
        v
    })
}

/// `k=v k2="v 2"`, or the legacy `k value with spaces`.
fn pairs(instr: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let ws = words(rest)?;
    let first_has_eq = ws.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        let mut it = rest.trim().splitn(2, char::is_whitespace);
        let key = it.next().unwrap_or_default();
        let value = it.next().map(str::trim).unwrap_or_default();
        if key.is_empty() || value.is_empty() {
            return Err(invalid(format!("{instr} requires at least one argument")));
        }
        return Ok(vec![(key.to_owned(), value.to_owned())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(invalid(format!("{instr} names can not be blank"))),
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Err(invalid(format!("Syntax error - can't find = in \"{w}\". Must be of the form: name=value"))),
        })
        .collect()
}

/// `80`, `53/udp`, `8000-8002/tcp` → the exposed port keys.
fn ports(rest: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for w in words(rest)? {
        let (range, proto) = w.split_once('/').unwrap_or((&w, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(invalid(format!("invalid proto: {proto}")));
        }
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let parse = |p: &str| {
            p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| invalid(format!("invalid containerPort: {range}")))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if hi < lo {
            return Err(invalid(format!("invalid range specified for container port: {range}")));
        }
        out.extend((lo..=hi).map(|p| format!("{p}/{proto}")));
    }
    if out.is_empty() {
        return Err(invalid("EXPOSE requires at least one argument"));
    }
    Ok(out)
}

/// `NONE`, or `[--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD command`.
fn healthcheck(rest: &str) -> Result<Value> {
    let rest = rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        return Ok(json!({ "Test": ["NONE"] }));
    }
    let mut h = serde_json::Map::new();
    let mut tail = rest;
    while let Some(flag) = tail.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end]
            .split_once('=')
            .ok_or_else(|| invalid(format!("missing a value on flag --{}", &flag[..end])))?;
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            _ => return Err(invalid(format!("unknown flag: --{name}"))),
        };
        let v = if key == "Retries" {
            value.parse::<i64>().ok().filter(|&n| n >= 1).ok_or_else(|| invalid("--retries must be at least 1"))?
        } else {
            berth_core::units::parse_go_duration(value)
                .ok_or_else(|| invalid(format!("time: invalid duration \"{value}\"")))?
        };
        h.insert(key.to_owned(), json!(v));
        tail = flag[end..].trim_start();
    }
    let (kw, cmd) = tail.split_once(char::is_whitespace).unwrap_or((tail, ""));
    if !kw.eq_ignore_ascii_case("cmd") || cmd.trim().is_empty() {
        return Err(invalid(format!("Unknown type \"{kw}\" in HEALTHCHECK (try CMD)")));
    }
    let test = match exec_form(cmd) {
        Some(v) => [vec!["CMD".to_owned()], v].concat(),
        None => vec!["CMD-SHELL".to_owned(), cmd.trim().to_owned()],
    };
    h.insert("Test".to_owned(), json!(test));
    Ok(Value::Object(h))
}

/// Lexically joined and cleaned, as WORKDIR resolves a relative path.
fn join_workdir(base: Option<&str>, dir: &str) -> String {
    let full = if dir.starts_with('/') { dir.to_owned() } else { format!("{}/{dir}", base.unwrap_or("/")) };
    let mut parts: Vec<&str> = Vec::new();
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Apply `changes`, one instruction each, in order.
pub fn apply(run: &mut RunConfig, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for line in changes {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let instr = instr.to_ascii_lowercase();
        let rest = rest.trim();
        let needs_arg = |what: &str| {
            if rest.is_empty() {
                Err(invalid(format!("{what} requires at least one argument")))
            } else {
                Ok(())
            }
        };
        match instr.as_str() {
            "cmd" => {
                needs_arg("CMD")?;
                run.cmd = Some(command(rest, run.shell.as_deref()));
                cmd_set = true;
            }
            "entrypoint" => {
                needs_arg("ENTRYPOINT")?;
                run.entrypoint = Some(command(rest, run.shell.as_deref()));
                // A new entrypoint drops an inherited CMD, as in a build.
                if !cmd_set {
                    run.cmd = None;
                }
            }
            "env" => {
                let env = run.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs("ENV", rest)? {
                    let entry = format!("{k}={v}");
                    match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == k) {
                        Some(e) => *e = entry,
                        None => env.push(entry),
                    }
                }
            }
            "label" => {
                let labels = run.labels.get_or_insert_with(BTreeMap::new);
                labels.extend(pairs("LABEL", rest)?);
            }
            "expose" => {
                let exposed = run.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in ports(rest)? {
                    exposed.insert(p, json!({}));
                }
            }
            "volume" => {
                let list = match exec_form(rest) {
                    Some(v) => v,
                    None => words(rest)?,
                };
                if list.is_empty() || list.iter().any(|v| v.trim().is_empty()) {
                    return Err(invalid("VOLUME specified can not be an empty string"));
                }
                let vols = run.volumes.get_or_insert_with(BTreeMap::new);
                for v in list {
                    vols.insert(v, json!({}));
                }
            }
            "user" => {
                needs_arg("USER")?;
                run.user = Some(rest.to_owned());
            }
            "workdir" => {
                needs_arg("WORKDIR")?;
                run.working_dir = Some(join_workdir(run.working_dir.as_deref(), rest));
            }
            "stopsignal" => {
                needs_arg("STOPSIGNAL")?;
                run.stop_signal = Some(rest.to_owned());
            }
            "onbuild" => {
                needs_arg("ONBUILD")?;
                let (first, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                match first.to_ascii_uppercase().as_str() {
                    "ONBUILD" => return Err(invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
                    "FROM" | "MAINTAINER" => {
                        return Err(invalid(format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            first.to_ascii_uppercase()
                        )))
                    }
                    up => run
                        .on_build
                        .get_or_insert_with(Vec::new)
                        .push(format!("{up} {}", tail.trim()).trim().to_owned()),
                }
            }
            "healthcheck" => {
                needs_arg("HEALTHCHECK")?;
                run.healthcheck = Some(healthcheck(rest)?);
            }
            other => return Err(invalid(format!("{other} is not a valid change command"))),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(changes: &[&str]) -> Result<RunConfig> {
        let mut r = RunConfig {
            cmd: Some(vec!["old".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            working_dir: Some("/srv".into()),
            ..RunConfig::default()
        };
        apply(&mut r, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(r)
    }

    fn strs(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn every_instruction() {
        let r = run(&[
            r#"CMD ["echo", "hi"]"#,
            "ENV A=2 B=\"two words\" C=x\\ y",
            "env LEGACY value with spaces",
            r#"LABEL version="1.0" "quoted key"=v"#,
            "EXPOSE 80 53/udp 8000-8001",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "USER 1000:1000",
            "WORKDIR app/../web",
            "STOPSIGNAL SIGINT",
            "ONBUILD run echo built",
            "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/",
        ])
        .unwrap();
        assert_eq!(r.cmd, strs(&["echo", "hi"]));
        assert_eq!(r.env, strs(&["PATH=/bin", "A=2", "B=two words", "C=x y", "LEGACY=value with spaces"]));
        let labels = r.labels.unwrap();
        assert_eq!((labels["version"].as_str(), labels["quoted key"].as_str()), ("1.0", "v"));
        let ports: Vec<_> = r.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        let vols: Vec<_> = r.volumes.unwrap().into_keys().collect();
        assert_eq!(vols, ["/cache", "/data", "/logs"]);
        assert_eq!(r.user.as_deref(), Some("1000:1000"));
        assert_eq!(r.working_dir.as_deref(), Some("/srv/web"));
        assert_eq!(r.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(r.on_build, strs(&["RUN echo built"]));
        assert_eq!(
            r.healthcheck.unwrap(),
            json!({ "Test": ["CMD-SHELL", "curl -f http://localhost/"], "Interval": 90_000_000_000i64, "Retries": 3 })
        );
    }

    #[test]
    fn shell_forms_and_entrypoint() {
        let r = run(&["ENTRYPOINT /bin/app --flag"]).unwrap();
        assert_eq!(r.entrypoint, strs(&["/bin/sh", "-c", "/bin/app --flag"]));
        assert_eq!(r.cmd, None, "an inherited CMD goes with a new ENTRYPOINT");
        let r = run(&["CMD [\"x\"]", "ENTRYPOINT [\"/e\"]"]).unwrap();
        assert_eq!((r.cmd, r.entrypoint), (strs(&["x"]), strs(&["/e"])));
        let r = run(&["CMD echo $HOME", "HEALTHCHECK NONE"]).unwrap();
        assert_eq!(r.cmd, strs(&["/bin/sh", "-c", "echo $HOME"]));
        assert_eq!(r.healthcheck.unwrap(), json!({ "Test": ["NONE"] }));
    }

    #[test]
    fn bad_changes() {
        for (change, text) in [
            ("RUN echo", "run is not a valid change command"),
            ("FROM busybox", "from is not a valid change command"),
            ("ENV A=1 B", "can't find = in \"B\""),
            ("ENV =1", "names can not be blank"),
            ("ENV", "requires at least one argument"),
            ("EXPOSE 70000", "invalid containerPort"),
            ("EXPOSE 80/ip", "invalid proto"),
            ("EXPOSE 90-80", "invalid range"),
            ("VOLUME [\"\"]", "can not be an empty string"),
            ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
            ("HEALTHCHECK --interval=soon CMD x", "invalid duration"),
            ("HEALTHCHECK --bogus=1 CMD x", "unknown flag"),
            ("HEALTHCHECK RUN x", "try CMD"),
            ("ENV A=\"open", "double-quote"),
            ("CMD", "requires at least one argument"),
        ] {
            let e = run(&[change]).unwrap_err().to_string();
            assert!(e.contains(text), "{change}: {e}");
        }
    }
}
