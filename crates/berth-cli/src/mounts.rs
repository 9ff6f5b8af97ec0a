//! `-v` and `--mount` as the docker CLI turns them into the create
//! request (cli/command/container/opts.go, opts/mount.go): a `-v` with a
//! destination only is one of Config.Volumes, any other goes to Binds
//! with a `./`-relative host path made absolute; `--mount` is parsed from
//! its comma-separated `key=value` fields into HostConfig.Mounts.

use std::collections::HashMap;

use berth_api_types::{BindOptions, DriverConfig, Mount, MountType, TmpfsOptions, VolumeOptions};

use crate::CliError;

fn bad(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

/// `-v` values into (Binds, Config.Volumes).
pub fn split_volumes(vs: &[String]) -> (Vec<String>, Vec<String>) {
    let mut binds = vec![];
    let mut volumes = vec![];
    for v in vs {
        match v.split_once(':') {
            None => {
                if !volumes.contains(v) {
                    volumes.push(v.clone());
                }
            }
            Some((host, rest)) => {
                let rel = host == "." || host.starts_with("./") || host == ".." || host.starts_with("../");
                let host = match std::env::current_dir() {
                    Ok(cwd) if rel => cwd.join(host).display().to_string(),
                    _ => host.to_owned(),
                };
                binds.push(format!("{host}:{rest}"));
            }
        }
    }
    (binds, volumes)
}

fn boolean(key: &str, v: Option<&str>) -> Result<bool, CliError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(_) => Err(bad(format!("invalid value for {key}: {}", v.unwrap_or_default()))),
    }
}

/// `k=v` (or a bare `k`) into a map that may not be there yet.
fn put(map: &mut Option<HashMap<String, String>>, kv: &str) {
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    map.get_or_insert_with(HashMap::new).insert(k.to_owned(), v.to_owned());
}

/// One `--mount type=…,source=…,target=…,…`. A type or propagation the
/// API does not name is refused here with the daemon's message.
pub fn parse_mount(spec: &str) -> Result<Mount, CliError> {
    let mut m = Mount { typ: Some(MountType::VOLUME), ..Default::default() };
    let (mut bind, mut vol, mut tmpfs) = (BindOptions::default(), VolumeOptions::default(), TmpfsOptions::default());
    let (mut has_bind, mut has_vol, mut has_tmpfs) = (false, false, false);
    let mut driver = DriverConfig::default();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = || value.ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")));
        match key.as_str() {
            "type" => {
                let t = need()?.to_ascii_lowercase();
                m.typ = Some(
                    t.parse().map_err(|_| bad(format!("invalid mount config for type \"{t}\": mount type unknown")))?,
                );
            }
            "source" | "src" => m.source = Some(need()?.to_owned()),
            "target" | "dst" | "destination" => m.target = Some(need()?.to_owned()),
            "readonly" | "ro" => m.read_only = Some(boolean(&key, value)?),
            "consistency" => m.consistency = Some(need()?.to_owned()),
            "bind-propagation" => {
                has_bind = true;
                let p = need()?;
                bind.propagation = Some(p.parse().map_err(|_| bad(format!("invalid propagation mode: {p}")))?);
            }
            "bind-nonrecursive" => {
                has_bind = true;
                bind.non_recursive = Some(boolean(&key, value)?);
            }
            "bind-create-src" => {
                has_bind = true;
                bind.create_mountpoint = Some(boolean(&key, value)?);
            }
            "volume-nocopy" => {
                has_vol = true;
                vol.no_copy = Some(boolean(&key, value)?);
            }
            "volume-subpath" => {
                has_vol = true;
                vol.subpath = Some(need()?.to_owned());
            }
            "volume-label" => {
                has_vol = true;
                put(&mut vol.labels, need()?);
            }
            "volume-driver" => {
                has_vol = true;
                driver.name = Some(need()?.to_owned());
            }
            "volume-opt" => {
                has_vol = true;
                put(&mut driver.options, need()?);
            }
            "tmpfs-size" => {
                has_tmpfs = true;
                let v = need()?;
                tmpfs.size_bytes = Some(
                    berth_core::units::ram_in_bytes(v).ok_or_else(|| bad(format!("invalid value for {key}: {v}")))?,
                );
            }
            "tmpfs-mode" => {
                has_tmpfs = true;
                let v = need()?;
                tmpfs.mode = Some(i64::from_str_radix(v, 8).map_err(|_| bad(format!("invalid value for {key}: {v}")))?);
            }
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    if m.target.as_deref().unwrap_or("").is_empty() {
        return Err(bad("target is required"));
    }
    if driver.name.is_some() || driver.options.is_some() {
        vol.driver_config = Some(driver);
    }
    m.bind_options = has_bind.then_some(bind);
    m.volume_options = has_vol.then_some(vol);
    m.tmpfs_options = has_tmpfs.then_some(tmpfs);
    Ok(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_the_docker_cli_does() {
        let m = parse_mount("type=bind,src=/a,dst=/b,readonly,bind-propagation=rslave").unwrap();
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!((m.source.as_deref(), m.target.as_deref(), m.read_only), (Some("/a"), Some("/b"), Some(true)));
        assert_eq!(m.bind_options.unwrap().propagation.unwrap().to_string(), "rslave");
        let m = parse_mount("target=/v,volume-nocopy,volume-label=a=b,volume-driver=local").unwrap();
        assert_eq!(m.typ, Some(MountType::VOLUME));
        let v = m.volume_options.unwrap();
        assert_eq!(v.no_copy, Some(true));
        assert_eq!(v.driver_config.unwrap().name.as_deref(), Some("local"));
        let m = parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        let t = m.tmpfs_options.unwrap();
        assert_eq!((t.size_bytes, t.mode), (Some(1 << 20), Some(0o1770)));
        assert!(parse_mount("type=bind,src=/a").is_err());
        assert!(parse_mount("type=bind,bogus=1,target=/x").is_err());
        assert!(parse_mount("readonly=maybe,target=/x").is_err());
        let e = parse_mount("type=weird,target=/x").unwrap_err().to_string();
        assert!(e.contains("invalid mount config for type \"weird\""), "{e}");
        let e = parse_mount("type=bind,src=/a,dst=/b,bind-propagation=sideways").unwrap_err().to_string();
        assert!(e.contains("invalid propagation mode: sideways"), "{e}");
    }

    #[test]
    fn a_destination_alone_is_an_anonymous_volume() {
        let (binds, vols) = split_volumes(&["/data".into(), "name:/x:ro".into(), "/h:/y".into()]);
        assert_eq!(binds, ["name:/x:ro", "/h:/y"]);
        assert_eq!(vols, ["/data"]);
    }
}
