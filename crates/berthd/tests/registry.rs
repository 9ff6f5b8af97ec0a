//! Pulls and logins against a registry the test starts on 127.0.0.1:
//! Debian's docker-registry (distribution 2.8), filled by skopeo, and
//! driven through berthd by the stock docker CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::registry::{certificates, have_registry_tools, sign, Bridge, Registry};
use common::*;

fn ready(what: &str) -> bool {
    can_run(what) && have_registry_tools(what)
}

#[test]
fn pull_by_tag_and_digest_and_run_an_image_that_is_not_here_yet() {
    if !ready("pull") {
        return;
    }
    let reg = Registry::start("pull", None);
    let d = Daemon::start("pull");
    reg.push_archive(&d.fixture(), "tools/busybox:1");
    let name = format!("{}/tools/busybox:1", reg.addr);
    // `run` of an image that is not here: the CLI's create gets a 404,
    // pulls, and creates again.
    let o = d.docker(&["run", "--rm", &name, "echo", "pulled and ran"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "pulled and ran\n");
    assert!(stderr(&o).contains(&format!("Unable to find image '{name}' locally")), "{}", stderr(&o));
    // The progress is Docker's, and the image is recorded with its digest.
    let (_, manifest_head, manifest) = reg.http(
        "GET",
        "/v2/tools/busybox/manifests/1",
        &[("Accept", "application/vnd.docker.distribution.manifest.v2+json")],
        b"",
    );
    let digest = manifest_head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("docker-content-digest"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap();
    assert!(!manifest.is_empty());
    let again = d.ok(&["pull", &name]);
    assert!(again.contains("Already exists"), "{again}");
    assert!(again.contains(&format!("Digest: {digest}")), "{again}");
    assert!(again.contains(&format!("Status: Image is up to date for {name}")), "{again}");
    let digests = d.ok(&["images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"]);
    assert!(digests.contains(&format!("{}/tools/busybox 1 {digest}", reg.addr)), "{digests}");
    let repo_digests = d.ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &name]);
    assert!(repo_digests.contains(&format!("{}/tools/busybox@{digest}", reg.addr)), "{repo_digests}");
    // By digest, after the image has gone: its layers come down again.
    d.ok(&["rmi", &name]);
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");
    let by_digest = format!("{}/tools/busybox@{digest}", reg.addr);
    let out = d.ok(&["pull", &by_digest]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {by_digest}")), "{out}");
    assert_eq!(d.ok(&["run", "--rm", &by_digest, "echo", "ok"]), "ok\n");
    // What is not there is a 404 with Docker's words.
    let o = d.docker(&["pull", &format!("{}/tools/busybox:2", reg.addr)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&format!("manifest for {}/tools/busybox:2 not found", reg.addr)), "{}", stderr(&o));
    let (s, b) = d.http("POST", &format!("/images/create?fromImage={}/nothere&tag=latest", reg.addr), b"");
    assert_eq!(s, 404, "{b}");
    // An import's parameters with a pull are refused, not dropped.
    let (s, b) =
        d.http("POST", &format!("/images/create?fromImage={}/tools/busybox&tag=1&changes=CMD%20x", reg.addr), b"");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("changes:"), "{b}");
    // A bad reference is a 400, before anything is asked of a registry.
    let (s, b) = d.http("POST", "/images/create?fromImage=Bad/Name&tag=latest", b"");
    assert_eq!(s, 400, "{b}");
    // Every tag of the repository.
    reg.push_archive(&d.fixture(), "tools/busybox:3");
    let all = d.ok(&["pull", "--all-tags", &format!("{}/tools/busybox", reg.addr)]);
    assert!(all.contains("Pulling from tools/busybox"), "{all}");
    let tags = d.ok(&["images", "--format", "{{.Tag}}", &format!("{}/tools/busybox", reg.addr)]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["1", "3"]);
    d.ok(&["rmi", &format!("{}/tools/busybox:3", reg.addr)]);
    // A registry of the distribution API has nothing to search with.
    let (s, b) = d.http("GET", &format!("/v1.41/images/search?term={}/tools", reg.addr), b"");
    assert_eq!(s, 501, "{b}");
    assert!(b.contains("has no search API"), "{b}");
    let (s, b) = d.http("GET", "/v1.41/images/search?term=x&limit=101", b"");
    assert_eq!(s, 400, "{b}");
    // A pull event, with the image's name.
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let events = d.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until.to_string(),
        "--filter",
        "event=pull",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    assert!(events.contains(&format!("image pull {name}")), "{events}");
    d.ok(&["rmi", &by_digest]);
    assert_clean(&d);
}

#[test]
fn login_then_pull_from_a_registry_with_basic_auth() {
    if !ready("basic auth") {
        return;
    }
    let reg = Registry::start("basic", Some(("tester", "s3cret")));
    let d = Daemon::start("basic");
    reg.push_archive(&d.fixture(), "private/busybox:latest");
    let name = format!("{}/private/busybox", reg.addr);
    // Without credentials the registry's refusal comes through.
    let o = d.docker(&["pull", &name]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("credentials") || stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    // A wrong password is refused by /auth with a 401.
    let o = d.docker_in(&["login", "-u", "tester", "--password-stdin", &reg.addr], Some(b"wrong\n"));
    assert!(!o.status.success());
    let body = format!(r#"{{"username":"tester","password":"wrong","serveraddress":"{}"}}"#, reg.addr);
    let (s, b) = d.http("POST", "/auth", body.as_bytes());
    assert_eq!(s, 401, "{b}");
    let o = d.docker_in(&["login", "-u", "tester", "--password-stdin", &reg.addr], Some(b"s3cret\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Login Succeeded"), "{}", stdout(&o));
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "in"]), "in\n");
    d.ok(&["logout", &reg.addr]);
    d.ok(&["rmi", &name]);
    let o = d.docker(&["pull", &name]);
    assert!(!o.status.success(), "logged out, the pull is refused again");
    assert_clean(&d);
}

#[test]
fn an_index_resolves_to_the_host_s_platform_or_the_one_asked_for() {
    if !ready("index") {
        return;
    }
    let reg = Registry::start("index", None);
    let d = Daemon::start("index");
    reg.push_archive(&d.fixture(), "multi:amd64");
    let v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let (s, _, body) = reg.http("GET", "/v2/multi/manifests/amd64", &[("Accept", v2)], b"");
    assert_eq!(s, 200);
    let amd: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let amd_digest = {
        use sha2::Digest as _;
        format!("sha256:{:x}", sha2::Sha256::digest(&body))
    };
    let (_, _, cfg) =
        reg.http("GET", &format!("/v2/multi/blobs/{}", amd["config"]["digest"].as_str().unwrap()), &[], b"");
    let mut cfg: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    // An arm64 image of the same layer, told apart by its config.
    cfg["architecture"] = "arm64".into();
    cfg["variant"] = "v8".into();
    cfg["config"]["Labels"] = serde_json::json!({"made-for": "arm64"});
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let cfg_digest = reg.put_blob("multi", &cfg);
    let mut arm = amd.clone();
    arm["config"]["digest"] = cfg_digest.clone().into();
    arm["config"]["size"] = cfg.len().into();
    let arm = serde_json::to_vec(&arm).unwrap();
    let (s, head, _) = reg.http("PUT", "/v2/multi/manifests/arm64", &[("Content-Type", v2)], &arm);
    assert_eq!(s, 201, "{head}");
    let arm_digest = {
        use sha2::Digest as _;
        format!("sha256:{:x}", sha2::Sha256::digest(&arm))
    };
    let entry = |digest: &str, size: usize, arch: &str, variant: Option<&str>| {
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": v2, "digest": digest, "size": size, "platform": p})
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [entry(&arm_digest, arm.len(), "arm64", Some("v8")), entry(&amd_digest, body.len(), "amd64", None)]
    });
    let (s, head, _) = reg.http(
        "PUT",
        "/v2/multi/manifests/latest",
        &[("Content-Type", "application/vnd.docker.distribution.manifest.list.v2+json")],
        &serde_json::to_vec(&index).unwrap(),
    );
    assert_eq!(s, 201, "{head}");
    let name = format!("{}/multi", reg.addr);
    // What the name resolves to, without a pull: the index and its platforms.
    let (s, b) = d.http("GET", &format!("/v1.41/distribution/{name}/json"), b"");
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["Descriptor"]["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json", "{b}");
    let archs: Vec<&str> =
        v["Platforms"].as_array().unwrap().iter().map(|p| p["architecture"].as_str().unwrap()).collect();
    assert_eq!(archs, ["arm64", "amd64"], "{b}");
    assert_eq!(d.ok(&["images", "-q"]).trim(), "", "nothing is pulled");
    d.ok(&["pull", &name]);
    let host_arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &name]).trim(), host_arch);
    d.ok(&["rmi", &name]);
    d.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Architecture}} {{.Config.Labels}}", &name]).trim(),
        "arm64 map[made-for:arm64]"
    );
    let o = d.docker(&["pull", "--platform", "linux/s390x", &name]);
    assert!(stderr(&o).contains("no matching manifest for linux/s390x"), "{}", stderr(&o));
    // An image of one platform, without an index, is checked against the
    // platform asked for.
    let o = d.docker(&["pull", "--platform", "linux/s390x", &format!("{}/multi:amd64", reg.addr)]);
    assert!(stderr(&o).contains("does not match the specified platform: wanted linux/s390x"), "{}", stderr(&o));
    d.ok(&["rmi", &name]);
    assert_clean(&d);
}

/// Blobs kept in a daemon's content store.
fn blobs(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.dir.join("data/blobs/sha256"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Unpacked layer directories of a daemon, records or not.
fn overlay_dirs(d: &Daemon) -> usize {
    std::fs::read_dir(d.dir.join("data/overlay"))
        .map(|rd| rd.flatten().filter(|e| e.file_name() != "l").count())
        .unwrap_or(0)
}

#[test]
fn a_cut_download_resumes_a_failing_registry_is_asked_again_and_redirects_are_followed() {
    if !ready("pull faults") {
        return;
    }
    let reg = Registry::start("resume", None);
    let d = Daemon::start("resume");
    reg.push_archive(&d.fixture(), "bb:1");
    for fault in [
        common::registry::Fault::CutOnce(300_000),
        common::registry::Fault::FailOnce,
        common::registry::Fault::Redirect,
    ] {
        let proxy = common::registry::FaultProxy::start(&reg.addr, fault);
        let name = format!("{}/bb:1", proxy.addr);
        let out = d.ok(&["pull", &name]);
        assert!(out.contains("Pull complete"), "{fault:?}: {out}");
        assert_eq!(d.ok(&["run", "--rm", &name, "echo", "whole"]), "whole\n", "{fault:?}");
        let heads = proxy.requests.lock().unwrap().clone();
        let blob_gets: Vec<&String> = heads
            .iter()
            .filter(|h| h.starts_with("GET ") && h.contains("/blobs/sha256:") && h.lines().count() > 1)
            .collect();
        match fault {
            common::registry::Fault::CutOnce(n) => assert!(
                heads.iter().any(|h| h.to_ascii_lowercase().contains(&format!("range: bytes={n}-"))),
                "no Range request after the cut: {heads:#?}"
            ),
            common::registry::Fault::FailOnce => {
                assert!(blob_gets.len() >= 3, "the failed blob is asked for again: {heads:#?}")
            }
            // Followed to the registry, which served the blobs itself.
            _ => assert!(!blob_gets.is_empty(), "{heads:#?}"),
        }
        d.ok(&["rmi", &name]);
    }
    assert_clean(&d);
}

#[test]
fn a_blob_with_wrong_bytes_is_refused_and_nothing_is_kept() {
    if !ready("corrupt blob") {
        return;
    }
    let reg = Registry::start("corrupt", None);
    let d = Daemon::start("corrupt");
    reg.push_archive(&d.fixture(), "bb:1");
    let proxy = common::registry::FaultProxy::start(&reg.addr, common::registry::Fault::Corrupt);
    let o = d.docker(&["pull", &format!("{}/bb:1", proxy.addr)]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success() || all.contains("digest"), "{all}");
    assert!(all.contains("digest"), "{all}");
    assert_eq!(d.ok(&["images", "-qa"]).trim(), "", "no image is recorded");
    assert!(blobs(&d).is_empty(), "no blob is kept: {:?}", blobs(&d));
    assert_eq!(overlay_dirs(&d), 0, "no layer is left unpacked");
    // The same image, whole, from the registry itself.
    d.ok(&["pull", &format!("{}/bb:1", reg.addr)]);
    d.ok(&["rmi", &format!("{}/bb:1", reg.addr)]);
    assert_clean(&d);
}

#[test]
fn a_daemon_killed_mid_pull_leaves_no_torn_record_and_the_next_pull_completes() {
    if !ready("killed pull") {
        return;
    }
    let reg = Registry::start("killed", None);
    let mut d = Daemon::start("killed");
    reg.push_archive(&d.fixture(), "bb:1");
    let proxy = common::registry::FaultProxy::start(&reg.addr, common::registry::Fault::Slow(200_000));
    let name = format!("{}/bb:1", proxy.addr);
    let mut pull = std::process::Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .args(["pull", &name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while proxy.passed.load(std::sync::atomic::Ordering::Relaxed) < 100_000 {
        if let Ok(Some(_)) = pull.try_wait() {
            let o = pull.wait_with_output().unwrap();
            panic!("the pull ended before the kill: {}{}", stdout(&o), stderr(&o));
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the pull did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    d.crash();
    let _ = pull.wait();
    d.spawn();
    assert_eq!(d.ok(&["images", "-qa"]).trim(), "", "no image is recorded");
    assert_eq!(overlay_dirs(&d), 0, "no layer is left half unpacked");
    let out = d.ok(&["pull", &format!("{}/bb:1", reg.addr)]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", &format!("{}/bb:1", reg.addr), "echo", "whole"]), "whole\n");
    d.ok(&["rmi", &format!("{}/bb:1", reg.addr)]);
    assert_clean(&d);
}

#[test]
fn a_registry_s_tls_and_client_certificates_come_from_certs_d() {
    if !ready("registry TLS") {
        return;
    }
    let bridge = Bridge::new();
    let d = Daemon::start("tls");
    let certs = d.dir.join("made-certs");
    let (ca, cert, key) = certificates(&certs, &bridge.ip);
    let reg = Registry::start_on("tls", None, &bridge.ip, Some((&cert, &key)));
    reg.push_archive(&d.fixture(), "bb:1");
    let name = format!("{}/bb:1", reg.addr);
    let o = d.docker(&["pull", &name]);
    assert!(!o.status.success(), "an unknown CA is refused");
    assert!(stderr(&o).to_ascii_lowercase().contains("certificate"), "{}", stderr(&o));
    let trusted = d.dir.join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&ca, trusted.join("ca.crt")).unwrap();
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    d.ok(&["rmi", &name]);
    drop(reg);
    // A registry that asks for a client certificate: refused without one,
    // served with `client.cert` and `client.key` from certs.d.
    std::fs::copy(&ca, certs.join("clients.crt")).unwrap();
    sign(&certs, "client", "client.cert", "/CN=berth", "extendedKeyUsage=clientAuth\n");
    let reg = Registry::start_on("mtls", None, &bridge.ip, Some((&cert, &key)));
    let name = format!("{}/bb:1", reg.addr);
    let no_client = std::process::Command::new(common::registry::SKOPEO)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", d.fixture().display()))
        .arg(format!("docker://{}/bb:1", reg.addr))
        .output()
        .unwrap();
    assert!(!no_client.status.success(), "the registry asks for a client certificate");
    let skopeo_certs = certs.join("skopeo");
    std::fs::create_dir_all(&skopeo_certs).unwrap();
    for f in ["client.cert", "client.key"] {
        std::fs::copy(certs.join(f), skopeo_certs.join(f)).unwrap();
    }
    std::fs::copy(&ca, skopeo_certs.join("ca.crt")).unwrap();
    let o = std::process::Command::new(common::registry::SKOPEO)
        .arg("copy")
        .arg("--dest-cert-dir")
        .arg(&skopeo_certs)
        .arg(format!("docker-archive:{}", d.fixture().display()))
        .arg(format!("docker://{}/bb:1", reg.addr))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", String::from_utf8_lossy(&o.stderr));
    let trusted = d.dir.join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&ca, trusted.join("ca.crt")).unwrap();
    let o = d.docker(&["pull", &name]);
    assert!(!o.status.success(), "no client certificate yet: {}", stdout(&o));
    for f in ["client.cert", "client.key"] {
        std::fs::copy(certs.join(f), trusted.join(f)).unwrap();
    }
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    d.ok(&["rmi", &name]);
    drop(reg);
    drop(bridge);
    assert_clean(&d);
}

#[test]
fn a_push_then_a_pull_round_trips_and_a_second_push_sends_nothing() {
    if !ready("push") {
        return;
    }
    let reg = Registry::start("push", Some(("pusher", "pw")));
    let d = Daemon::start("push");
    d.load_busybox();
    let name = format!("{}/team/app:1", reg.addr);
    d.ok(&["tag", "busybox", &name]);
    d.ok(&["tag", "busybox", &format!("{}/team/app:2", reg.addr)]);
    // Refused without credentials, in the registry's words.
    let o = d.docker(&["push", &name]);
    assert!(!o.status.success(), "{}", stdout(&o));
    d.docker_in(&["login", "-u", "pusher", "--password-stdin", &reg.addr], Some(b"pw\n"));
    let out = d.ok(&["push", &name]);
    assert!(out.contains(&format!("The push refers to repository [{}/team/app]", reg.addr)), "{out}");
    assert!(out.contains("Pushed"), "{out}");
    let digest = out.lines().find_map(|l| l.strip_prefix("1: digest: ")).unwrap().split(' ').next().unwrap().to_owned();
    let digests = d.ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &name]);
    assert!(digests.contains(&format!("{}/team/app@{digest}", reg.addr)), "{digests}");
    // skopeo, a client no one here wrote, reads what berth pushed.
    let o = std::process::Command::new(common::registry::SKOPEO)
        .args(["inspect", "--tls-verify=false", "--creds", "pusher:pw", &format!("docker://{name}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    // The second push finds everything there and compresses nothing.
    let again = d.ok(&["push", &name]);
    assert!(again.contains("Layer already exists") && !again.contains("Pushed"), "{again}");
    assert!(again.contains(&format!("1: digest: {digest}")), "{again}");
    // A platform to push is refused, not dropped.
    let (s, b) = d.http("POST", &format!("/v1.41/images/{}/team/app/push?tag=1&platform=linux/arm64", reg.addr), b"");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("platform:"), "{b}");
    // Every tag of the repository.
    let all = d.ok(&["push", "--all-tags", &format!("{}/team/app", reg.addr)]);
    assert!(all.contains("1: digest:") && all.contains("2: digest:"), "{all}");
    // Another daemon pulls the same image, byte for byte: the same id.
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", &name]);
    let d2 = Daemon::start("push2");
    d2.docker_in(&["login", "-u", "pusher", "--password-stdin", &reg.addr], Some(b"pw\n"));
    d2.ok(&["pull", &name]);
    assert_eq!(d2.ok(&["image", "inspect", "-f", "{{.Id}}", &name]), id);
    assert_eq!(d2.ok(&["run", "--rm", &name, "echo", "round trip"]), "round trip\n");
    d2.ok(&["rmi", &name]);
    assert_clean(&d2);
    assert_clean(&d);
}

#[test]
fn the_berth_cli_logs_in_pushes_and_pulls_sharing_docker_s_credentials() {
    if !ready("berth cli registry") {
        return;
    }
    let reg = Registry::start("cli", Some(("cli-user", "cli-pw")));
    let d = Daemon::start("cliregistry");
    d.load_busybox();
    let name = format!("{}/cli/app:7", reg.addr);
    d.bok(&["tag", "busybox", &name]);
    let o = d.berth_in(&["login", "-u", "cli-user", "--password-stdin", &reg.addr], Some(b"cli-pw\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Login Succeeded\n");
    let cfg = std::fs::read_to_string(d.dir.join("docker-config/config.json")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.dir.join("docker-config/config.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the credentials are their owner's alone");
    }
    assert!(cfg.contains(&reg.addr), "{cfg}");
    let out = d.bok(&["push", &name]);
    assert!(out.contains("7: digest: sha256:"), "{out}");
    d.bok(&["rmi", &name]);
    // docker's CLI takes the credentials berth's stored.
    let pulled = d.ok(&["pull", &name]);
    assert!(pulled.contains("Pull complete") || pulled.contains("Already exists"), "{pulled}");
    d.ok(&["rmi", &name]);
    let out = d.bok(&["pull", &name]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    let o = d.berth(&["search", &format!("{}/cli", reg.addr)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has no search API"), "{}", stderr(&o));
    assert_eq!(d.bok(&["logout", &reg.addr]), format!("Removing login credentials for {}\n", reg.addr));
    d.bok(&["rmi", &name]);
    let o = d.berth(&["pull", &name]);
    assert!(!o.status.success(), "logged out, the pull is refused");
    d.bok(&["rmi", "busybox"]);
    assert_clean(&d);
}

#[test]
fn docker_io_names_are_pulled_through_the_configured_mirror() {
    if !ready("mirror") {
        return;
    }
    let mirror = Registry::start("mirror", None);
    let mut d = Daemon::start("mirror");
    mirror.push_archive(&d.fixture(), "library/busybox:latest");
    std::fs::write(d.dir.join("daemon.json"), format!(r#"{{"registry-mirrors": ["http://{}"]}}"#, mirror.addr))
        .unwrap();
    d.crash();
    d.spawn();
    // `busybox` is docker.io/library/busybox, which only the mirror has
    // here: no request leaves the machine.
    let out = d.ok(&["pull", "busybox"]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Status: Downloaded newer image for busybox:latest"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "mirrored"]), "mirrored\n");
    d.ok(&["rmi", "busybox"]);
    // A bad mirror is refused at start.
    std::fs::write(d.dir.join("daemon.json"), r#"{"registry-mirrors": ["not a url"]}"#).unwrap();
    d.crash();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args(["--config-file", d.dir.join("daemon.json").to_str().unwrap(), "-H"])
        .arg(format!("unix://{}", d.dir.join("never.sock").display()))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid mirror"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(d.dir.join("daemon.json")).unwrap();
    d.spawn();
    assert_clean(&d);
}

#[test]
fn a_registry_that_starts_asking_for_credentials_is_answered_with_them() {
    if !ready("new challenge") {
        return;
    }
    let mut reg = Registry::start("rechallenge", None);
    let d = Daemon::start("rechallenge");
    reg.push_archive(&d.fixture(), "app:1");
    let name = format!("{}/app:1", reg.addr);
    // berthd learns that the registry asks for nothing (and a login to it
    // succeeds, keeping the credentials in the CLI's config)...
    d.ok(&["pull", &name]);
    d.ok(&["rmi", &name]);
    let o = d.docker_in(&["login", "-u", "late", "--password-stdin", &reg.addr], Some(b"pw\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    // ...then it asks for a password: the 401's challenge is taken, and
    // the credentials the CLI sends are used.
    reg.restart_with_user(("late", "pw"));
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    d.ok(&["rmi", &name]);
    assert_clean(&d);
}

#[test]
fn an_oci_image_is_pulled_as_a_docker_one_is() {
    if !ready("oci pull") {
        return;
    }
    let reg = Registry::start("oci", None);
    let d = Daemon::start("oci");
    reg.push_archive_as(&d.fixture(), "oci/busybox:1", Some("oci"));
    let (_, head, _) = reg.http(
        "GET",
        "/v2/oci/busybox/manifests/1",
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    );
    assert!(head.contains("application/vnd.oci.image.manifest.v1+json"), "skopeo wrote OCI: {head}");
    let name = format!("{}/oci/busybox:1", reg.addr);
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "oci"]), "oci\n");
    d.ok(&["rmi", &name]);
    assert_clean(&d);
}

#[test]
fn a_daemon_set_to_zstd_pushes_zstd_layers_under_an_oci_manifest() {
    if !ready("zstd push") {
        return;
    }
    let reg = Registry::start("zstd", None);
    let mut d = Daemon::start("zstd");
    std::fs::write(d.dir.join("daemon.json"), r#"{"push-compression": "zstd"}"#).unwrap();
    d.crash();
    d.spawn();
    d.load_busybox();
    d.ok(&["run", "--name", "mk", "--network", "none", "busybox", "sh", "-c", "echo zstd > /made"]);
    let name = format!("{}/z/app:1", reg.addr);
    d.ok(&["commit", "mk", &name]);
    d.ok(&["rm", "mk"]);
    let out = d.ok(&["push", &name]);
    assert!(out.contains("1: digest:"), "{out}");
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let (s, head, body) = reg.http("GET", "/v2/z/app/manifests/1", &[("Accept", oci)], b"");
    assert_eq!(s, 200, "{head}");
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["mediaType"], oci, "{m}");
    let layers = m["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"), "{m}");
    // A daemon of the default settings pulls and runs it.
    let d2 = Daemon::start("zstd2");
    assert_eq!(d2.ok(&["run", "--rm", &name, "cat", "/made"]), "zstd\n");
    d2.ok(&["rmi", &name]);
    assert_clean(&d2);
    // Anything but gzip or zstd is refused at start.
    std::fs::write(d.dir.join("daemon.json"), r#"{"push-compression": "lz4"}"#).unwrap();
    d.crash();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args(["--config-file", d.dir.join("daemon.json").to_str().unwrap(), "-H"])
        .arg(format!("unix://{}", d.dir.join("never.sock").display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("push-compression \"lz4\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(d.dir.join("daemon.json")).unwrap();
    d.spawn();
    d.ok(&["rmi", &name, "busybox"]);
    assert_clean(&d);
}
