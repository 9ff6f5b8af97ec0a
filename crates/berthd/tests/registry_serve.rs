//! `berth-registry serve`, checked by clients no one here wrote (skopeo,
//! the stock docker CLI through berthd), by raw HTTP where the spec's
//! corners are, and against Debian's docker-registry (distribution 2.8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::registry::{berth_registry_bin, certificates, have_registry_tools, Bridge, Registry, SKOPEO};
use common::*;

fn ready(what: &str) -> bool {
    can_run(what) && have_registry_tools(what)
}

/// A header's value, by name in any case.
fn hdr(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(data))
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new(SKOPEO).args(args).output().unwrap()
}

fn skopeo_ok(args: &[&str]) -> Vec<u8> {
    let o = skopeo(args);
    assert!(o.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn gc(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(berth_registry_bin()).arg("gc").arg("--root").arg(root).args(args).output().unwrap()
}

#[test]
fn skopeo_copies_images_into_and_out_of_it_in_oci_and_docker_formats() {
    if !ready("berth-registry skopeo") {
        return;
    }
    let reg = Registry::berth("skopeo", None, "127.0.0.1:0", &[]);
    let dist = Registry::start("skopeo-dist", None);
    let d = Daemon::start("brs-skopeo");
    reg.push_archive_as(&d.fixture(), "lib/bb:docker", Some("v2s2"));
    reg.push_archive_as(&d.fixture(), "lib/bb:oci", Some("oci"));
    for (tag, media) in [
        ("docker", "application/vnd.docker.distribution.manifest.v2+json"),
        ("oci", "application/vnd.oci.image.manifest.v1+json"),
    ] {
        let src = format!("docker://{}/lib/bb:{tag}", reg.addr);
        // What skopeo wrote is what is served, byte for byte.
        let raw = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &src]);
        let (s, head, body) = reg.http("GET", &format!("/v2/lib/bb/manifests/{tag}"), &[("Accept", media)], b"");
        assert_eq!(s, 200, "{head}");
        assert_eq!(body, raw);
        assert_eq!(hdr(&head, "content-type").as_deref(), Some(media), "{head}");
        assert_eq!(hdr(&head, "docker-content-digest"), Some(sha(&raw)), "{head}");
        // Out again, into distribution, keeping its digest; and into an
        // OCI layout.
        let dst = format!("docker://{}/copied:{tag}", dist.addr);
        skopeo_ok(&["copy", "--src-tls-verify=false", "--dest-tls-verify=false", &src, &dst]);
        let copied = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &dst]);
        assert_eq!(sha(&copied), sha(&raw), "distribution has the same manifest");
        let layout = d.dir.join(format!("layout-{tag}"));
        skopeo_ok(&["copy", "--src-tls-verify=false", &src, &format!("oci:{}:x", layout.display())]);
        assert!(layout.join("index.json").is_file());
        // berthd pulls and runs it.
        let name = format!("{}/lib/bb:{tag}", reg.addr);
        let out = d.ok(&["pull", &name]);
        assert!(out.contains(&format!("Digest: {}", sha(&raw))), "{out}");
        assert_eq!(d.ok(&["run", "--rm", &name, "echo", tag]), format!("{tag}\n"));
    }
    // berthd pushes to it; a second repository mounts the layers.
    let pushed = format!("{}/pushed/app:1", reg.addr);
    d.ok(&["tag", &format!("{}/lib/bb:docker", reg.addr), &pushed]);
    let out = d.ok(&["push", &pushed]);
    let digest = out.lines().find_map(|l| l.strip_prefix("1: digest: ")).unwrap().split(' ').next().unwrap().to_owned();
    let info: serde_json::Value =
        serde_json::from_slice(&skopeo_ok(&["inspect", "--tls-verify=false", &format!("docker://{pushed}")])).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    let other = format!("{}/pushed/other:1", reg.addr);
    d.ok(&["tag", &pushed, &other]);
    let out = d.ok(&["push", &other]);
    assert!(out.contains("Mounted from "), "{out}");
    // The storage is its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(reg.root()).unwrap().permissions().mode() & 0o777, 0o700);
    for n in
        [pushed.as_str(), other.as_str(), &format!("{}/lib/bb:docker", reg.addr), &format!("{}/lib/bb:oci", reg.addr)]
    {
        d.ok(&["rmi", n]);
    }
    assert_clean(&d);
}

/// `POST` an upload; its path.
fn start_upload(reg: &Registry, repo: &str) -> String {
    let (s, head, _) = reg.http("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(s, 202, "{head}");
    assert_eq!(hdr(&head, "range").as_deref(), Some("0-0"), "{head}");
    assert!(hdr(&head, "docker-upload-uuid").is_some(), "{head}");
    hdr(&head, "location").unwrap()
}

#[test]
fn chunked_uploads_resume_after_a_kill_and_every_digest_is_checked() {
    if !ready("berth-registry uploads") {
        return;
    }
    let mut reg = Registry::berth("uploads", None, "127.0.0.1:0", &[]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (c1, c2, c3) = (&data[..100_000], &data[100_000..200_000], &data[200_000..]);
    let loc = start_upload(&reg, "up/blob");
    let (s, head, _) = reg.http("PATCH", &loc, &[("Content-Range", "0-99999")], c1);
    assert_eq!(s, 202, "{head}");
    assert_eq!(hdr(&head, "range").as_deref(), Some("0-99999"), "{head}");
    // A chunk that does not begin where the data ends is refused.
    let (s, head, _) = reg.http("PATCH", &loc, &[("Content-Range", "0-99999")], c1);
    assert_eq!(s, 416, "{head}");
    assert_eq!(hdr(&head, "range").as_deref(), Some("0-99999"), "{head}");
    let committed = reg.put_blob("up/blob", b"committed before the kill");
    // kill -9: what was committed stays, the upload can go on.
    reg.kill_and_restart();
    let (s, _, body) = reg.http("GET", &format!("/v2/up/blob/blobs/{committed}"), &[], b"");
    assert_eq!((s, body.as_slice()), (200, &b"committed before the kill"[..]));
    let (s, head, _) = reg.http("GET", &loc, &[], b"");
    assert_eq!(s, 204, "{head}");
    assert_eq!(hdr(&head, "range").as_deref(), Some("0-99999"), "{head}");
    let (s, head, _) = reg.http("PATCH", &loc, &[], c2);
    assert_eq!(s, 202, "{head}");
    assert_eq!(hdr(&head, "range").as_deref(), Some("0-199999"), "{head}");
    // The wrong digest: refused, the upload dropped, nothing stored.
    let wrong = sha(b"something else");
    let (s, head, body) = reg.http("PUT", &format!("{loc}?digest={wrong}"), &[], c3);
    assert_eq!(s, 400, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("DIGEST_INVALID"));
    assert_eq!(reg.http("GET", &loc, &[], b"").0, 404);
    let right = sha(&data);
    assert_eq!(reg.http("HEAD", &format!("/v2/up/blob/blobs/{right}"), &[], b"").0, 404);
    // Again, whole: three chunks, the last with the PUT.
    let loc = start_upload(&reg, "up/blob");
    assert_eq!(reg.http("PATCH", &loc, &[("Content-Range", "0-99999")], c1).0, 202);
    assert_eq!(reg.http("PATCH", &loc, &[("Content-Range", "100000-199999")], c2).0, 202);
    let (s, head, _) = reg.http("PUT", &format!("{loc}?digest={right}"), &[], c3);
    assert_eq!(s, 201, "{head}");
    assert_eq!(hdr(&head, "location"), Some(format!("/v2/up/blob/blobs/{right}")));
    assert_eq!(hdr(&head, "docker-content-digest"), Some(right.clone()));
    let (s, head, _) = reg.http("HEAD", &format!("/v2/up/blob/blobs/{right}"), &[], b"");
    assert_eq!(s, 200, "{head}");
    assert_eq!(hdr(&head, "content-length").as_deref(), Some("300000"), "{head}");
    let (s, head, body) = reg.http("GET", &format!("/v2/up/blob/blobs/{right}"), &[("Range", "bytes=1000-1999")], b"");
    assert_eq!(s, 206, "{head}");
    assert_eq!(hdr(&head, "content-range").as_deref(), Some("bytes 1000-1999/300000"));
    assert_eq!(body, &data[1000..2000]);
    // One POST with the digest is a whole upload.
    let small = b"monolithic".to_vec();
    let (s, head, _) = reg.http("POST", &format!("/v2/up/blob/blobs/uploads/?digest={}", sha(&small)), &[], &small);
    assert_eq!(s, 201, "{head}");
    // A blob is its repository's: another sees it after a mount only.
    let (s, _, body) = reg.http("GET", &format!("/v2/up/other/blobs/{right}"), &[], b"");
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&body).contains("BLOB_UNKNOWN"));
    let (s, head, _) = reg.http("POST", &format!("/v2/up/other/blobs/uploads/?mount={right}&from=up/blob"), &[], b"");
    assert_eq!(s, 201, "{head}");
    assert_eq!(reg.http("HEAD", &format!("/v2/up/other/blobs/{right}"), &[], b"").0, 200);
    // Names and digests outside the spec's grammar.
    let (s, _, body) = reg.http("GET", "/v2/Up/x/tags/list", &[], b"");
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("NAME_INVALID"));
    assert_eq!(reg.http("GET", "/v2/up/blob/blobs/sha256:zz", &[], b"").0, 400);
    // An upload cancelled is gone.
    let loc = start_upload(&reg, "up/blob");
    assert_eq!(reg.http("DELETE", &loc, &[], b"").0, 204);
    assert_eq!(reg.http("PATCH", &loc, &[], b"x").0, 404);
}

/// Store `data` as a blob of `repo`; its descriptor.
fn blob(reg: &Registry, repo: &str, media: &str, data: &[u8]) -> serde_json::Value {
    let d = reg.put_blob(repo, data);
    serde_json::json!({"mediaType": media, "digest": d, "size": data.len()})
}

fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    media: &str,
    m: &serde_json::Value,
) -> (u16, String, String) {
    let body = serde_json::to_vec(m).unwrap();
    let (s, head, b) = reg.http("PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("Content-Type", media)], &body);
    (s, head, String::from_utf8_lossy(&b).into_owned())
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn tags_page_the_catalog_lists_referrers_are_found_and_garbage_is_collected() {
    if !ready("berth-registry tags") {
        return;
    }
    let mut reg = Registry::berth("tags", None, "127.0.0.1:0", &[]);
    let config = blob(
        &reg,
        "art/app",
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let layer = blob(&reg, "art/app", "application/vnd.oci.image.layer.v1.tar", b"not really a tar");
    let image = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
    let mut image_digest = String::new();
    for t in ["t1", "t2", "t3", "t4", "t5"] {
        let (s, head, b) = put_manifest(&reg, "art/app", t, OCI_MANIFEST, &image);
        assert_eq!(s, 201, "{head}{b}");
        image_digest = hdr(&head, "docker-content-digest").unwrap();
    }
    assert_eq!(image_digest, sha(&serde_json::to_vec(&image).unwrap()));
    // Pages of two, each pointing at the next.
    let mut seen = vec![];
    let mut path = "/v2/art/app/tags/list?n=2".to_owned();
    loop {
        let (s, head, body) = reg.http("GET", &path, &[], b"");
        assert_eq!(s, 200, "{head}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["name"], "art/app");
        seen.extend(v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()));
        match hdr(&head, "link") {
            Some(l) => path = l.trim_start_matches('<').split('>').next().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["t1", "t2", "t3", "t4", "t5"]);
    blob(&reg, "art/other", "x", b"other");
    let (_, head, body) = reg.http("GET", "/v2/_catalog?n=1", &[], b"");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["repositories"],
        serde_json::json!(["art/app"])
    );
    assert!(hdr(&head, "link").unwrap().contains("last=art/app"), "{head}");
    let (_, _, body) = reg.http("GET", "/v2/_catalog?n=5&last=art/app", &[], b"");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["repositories"],
        serde_json::json!(["art/other"])
    );
    // What a manifest names must be there; schema 1 and a wrong digest are refused.
    let missing = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(b"absent"), "size": 6}]});
    let (s, _, b) = put_manifest(&reg, "art/app", "bad", OCI_MANIFEST, &missing);
    assert_eq!(s, 400);
    assert!(b.contains("MANIFEST_BLOB_UNKNOWN"), "{b}");
    let v1 = serde_json::json!({"schemaVersion": 1, "name": "art/app", "tag": "old", "fsLayers": []});
    let (s, _, b) = put_manifest(&reg, "art/app", "old", "application/vnd.docker.distribution.manifest.v1+json", &v1);
    assert_eq!(s, 400);
    assert!(b.contains("MANIFEST_INVALID"), "{b}");
    let (s, _, b) = put_manifest(&reg, "art/app", &sha(b"another"), OCI_MANIFEST, &image);
    assert_eq!(s, 400);
    assert!(b.contains("DIGEST_INVALID"), "{b}");
    // An artifact that refers to the image is among its referrers.
    let empty = blob(&reg, "art/app", "application/vnd.oci.empty.v1+json", b"{}");
    let artifact = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.berth.test.signature", "config": empty, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": serde_json::to_vec(&image).unwrap().len()},
        "annotations": {"org.berth.test": "yes"}});
    let artifact_digest = sha(&serde_json::to_vec(&artifact).unwrap());
    let (s, head, b) = put_manifest(&reg, "art/app", &artifact_digest, OCI_MANIFEST, &artifact);
    assert_eq!(s, 201, "{head}{b}");
    assert_eq!(hdr(&head, "oci-subject"), Some(image_digest.clone()), "{head}");
    let (s, head, body) = reg.http("GET", &format!("/v2/art/app/referrers/{image_digest}"), &[], b"");
    assert_eq!(s, 200, "{head}");
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(index["manifests"][0]["digest"], artifact_digest.as_str());
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.berth.test.signature");
    assert_eq!(index["manifests"][0]["annotations"]["org.berth.test"], "yes");
    let (_, head, body) =
        reg.http("GET", &format!("/v2/art/app/referrers/{image_digest}?artifactType=other"), &[], b"");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["manifests"], serde_json::json!([]));
    assert_eq!(hdr(&head, "oci-filters-applied").as_deref(), Some("artifactType"));
    // Deletion: a tag, then the manifest with the tags that name it, then a blob.
    assert_eq!(reg.http("DELETE", "/v2/art/app/manifests/t5", &[], b"").0, 202);
    assert_eq!(reg.http("GET", "/v2/art/app/manifests/t5", &[], b"").0, 404);
    assert_eq!(reg.http("GET", "/v2/art/app/manifests/t1", &[], b"").0, 200);
    assert_eq!(reg.http("DELETE", &format!("/v2/art/app/manifests/{image_digest}"), &[], b"").0, 202);
    let (s, _, b) = reg.http("GET", "/v2/art/app/manifests/t1", &[], b"");
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&b).contains("MANIFEST_UNKNOWN"));
    let layer_digest = layer["digest"].as_str().unwrap().to_owned();
    assert_eq!(reg.http("DELETE", &format!("/v2/art/other/blobs/{}", sha(b"other")), &[], b"").0, 202);
    assert_eq!(reg.http("GET", &format!("/v2/art/other/blobs/{}", sha(b"other")), &[], b"").0, 404);
    let abandoned = start_upload(&reg, "art/app");
    assert_eq!(reg.http("PATCH", &abandoned, &[], b"half").0, 202);
    // No collection while the registry is served.
    let o = gc(&reg.root(), &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use"), "{}", String::from_utf8_lossy(&o.stderr));
    reg.stop();
    let blob_file = |d: &str| reg.root().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let o = gc(&reg.root(), &["--dry-run", "--upload-age", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("would remove blob {layer_digest}")));
    assert!(blob_file(&layer_digest).exists(), "a dry run removes nothing");
    let o = gc(&reg.root(), &["--upload-age", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("1 uploads"), "{out}");
    // The deleted image's blobs are gone; the artifact and its config stay.
    for gone in [&layer_digest, &image_digest, &sha(b"other")] {
        assert!(!blob_file(gone).exists(), "{gone} collected");
    }
    for kept in [&artifact_digest, empty["digest"].as_str().unwrap()] {
        assert!(blob_file(kept).exists(), "{kept} kept");
    }
    assert_eq!(std::fs::read_dir(reg.root().join("uploads")).unwrap().count(), 0);
    // Untagged manifests go with --delete-untagged.
    let o = gc(&reg.root(), &["--delete-untagged"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!blob_file(&artifact_digest).exists(), "{}", String::from_utf8_lossy(&o.stdout));
    reg.kill_and_restart();
    assert_eq!(reg.http("GET", &format!("/v2/art/app/manifests/{artifact_digest}"), &[], b"").0, 404);
}

/// The claims of a JWT, unchecked.
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn basic(u: &str, p: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
}

#[test]
fn bearer_tokens_carry_scopes_and_a_pull_only_token_cannot_push() {
    if !ready("berth-registry tokens") {
        return;
    }
    // The users and rules live in the daemon's directory, removed with it.
    let d = Daemon::start("brs-tokens");
    let dir = d.dir.join("registry-auth");
    std::fs::create_dir_all(&dir).unwrap();
    let mut htpasswd = Vec::new();
    for (u, p) in [("alice", "apw"), ("bob", "bpw")] {
        let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().unwrap();
        htpasswd.extend(String::from_utf8_lossy(&out.stdout).trim().bytes());
        htpasswd.push(b'\n');
    }
    std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
    std::fs::write(dir.join("acl"), "alice * *\nbob * pull\n").unwrap();
    let (h, a) = (dir.join("htpasswd").display().to_string(), dir.join("acl").display().to_string());
    let reg = Registry::berth("tokens", None, "127.0.0.1:0", &["--token-auth", "--htpasswd", &h, "--acl", &a]);
    // The challenge names the token endpoint.
    let (s, head, _) = reg.http("GET", "/v2/", &[], b"");
    assert_eq!(s, 401);
    let realm = format!("http://{}/token", reg.addr);
    assert_eq!(hdr(&head, "www-authenticate"), Some(format!(r#"Bearer realm="{realm}",service="berth-registry""#)));
    let token_for = |who: Option<(&str, &str)>, scope: &str| {
        let auth = who.map(|(u, p)| basic(u, p));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (s, head, body) = reg.http("GET", &format!("/token?service=berth-registry&scope={scope}"), &headers, b"");
        (s, head, serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
    };
    // Bob asks for pull and push and is given pull.
    let (s, _, t) = token_for(Some(("bob", "bpw")), "repository:team/app:pull,push");
    assert_eq!(s, 200);
    let bob = t["token"].as_str().unwrap().to_owned();
    let c = claims(&bob);
    assert_eq!(c["access"], serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]));
    assert_eq!((c["sub"].as_str(), c["aud"].as_str()), (Some("bob"), Some("berth-registry")));
    let bearer = format!("Bearer {bob}");
    let (s, head, _) = reg.http("POST", "/v2/team/app/blobs/uploads/", &[("Authorization", &bearer)], b"");
    assert_eq!(s, 401, "a pull-only token cannot push");
    let challenge = hdr(&head, "www-authenticate").unwrap();
    assert!(challenge.contains(r#"scope="repository:team/app:pull,push""#), "{challenge}");
    assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");
    // Nor reach another repository than its scope's.
    assert_eq!(reg.http("GET", "/v2/team/other/tags/list", &[("Authorization", &bearer)], b"").0, 401);
    // A wrong password gets no token; the anonymous get one of no access.
    assert_eq!(token_for(Some(("bob", "nope")), "repository:team/app:pull").0, 401);
    let (s, _, t) = token_for(None, "repository:team/app:pull");
    assert_eq!(s, 200);
    assert_eq!(claims(t["token"].as_str().unwrap())["access"], serde_json::json!([]));
    // A token changed by hand is not taken.
    let (_, _, t) = token_for(Some(("alice", "apw")), "repository:team/app:pull,push");
    let alice = t["token"].as_str().unwrap().to_owned();
    let forged =
        format!("Bearer {}", bob.rsplit_once('.').unwrap().0.to_owned() + "." + alice.rsplit_once('.').unwrap().1);
    assert_eq!(reg.http("GET", "/v2/team/app/tags/list", &[("Authorization", &forged)], b"").0, 401);
    // Alice may push. A refresh token (OAuth's password grant, offline)
    // gets her access tokens again, and is no access token itself.
    let form = "grant_type=password&username=alice&password=apw&access_type=offline&client_id=t&service=berth-registry&scope=repository%3Ateam%2Fapp%3Apush";
    let (s, _, body) =
        reg.http("POST", "/token", &[("Content-Type", "application/x-www-form-urlencoded")], form.as_bytes());
    assert_eq!(s, 200);
    let t: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=t&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
    );
    let (s, _, body) = reg.http("POST", "/token", &[], form.as_bytes());
    assert_eq!(s, 200);
    let t: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let fresh = format!("Bearer {}", t["access_token"].as_str().unwrap());
    assert_eq!(reg.http("POST", "/v2/team/app/blobs/uploads/", &[("Authorization", &fresh)], b"").0, 202);
    assert_eq!(reg.http("GET", "/v2/", &[("Authorization", &format!("Bearer {refresh}"))], b"").0, 401);
    // skopeo and the docker CLI through berthd go through the same flow.
    let o = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:bpw",
        &format!("docker-archive:{}", d.fixture().display()),
        &format!("docker://{}/team/app:1", reg.addr),
    ]);
    assert!(!o.status.success(), "bob may not push");
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:apw",
        &format!("docker-archive:{}", d.fixture().display()),
        &format!("docker://{}/team/app:1", reg.addr),
    ]);
    let name = format!("{}/team/app:1", reg.addr);
    let o = d.docker(&["pull", &name]);
    assert!(!o.status.success(), "anonymous pulls are refused");
    let o = d.docker_in(&["login", "-u", "bob", "--password-stdin", &reg.addr], Some(b"wrong\n"));
    assert!(!o.status.success());
    let o = d.docker_in(&["login", "-u", "bob", "--password-stdin", &reg.addr], Some(b"bpw\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The login traded the password for a refresh token, which the CLI
    // keeps in its stead and the pull then uses.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.dir.join("docker-config/config.json")).unwrap()).unwrap();
    let entry = &cfg["auths"][&reg.addr];
    assert!(entry["identitytoken"].as_str().is_some_and(|t| !t.is_empty()), "{cfg}");
    // The CLI keeps the user alone beside it, as `user:`.
    assert!(entry.get("auth").is_none_or(|a| a == "Ym9iOg=="), "no password is kept: {cfg}");
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    let mine = format!("{}/team/app:bob", reg.addr);
    d.ok(&["tag", &name, &mine]);
    let o = d.docker(&["push", &mine]);
    assert!(!o.status.success(), "bob's push is denied: {}", stdout(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o)).to_lowercase();
    assert!(said.contains("unauthorized") || said.contains("denied") || said.contains("authentication"), "{said}");
    let o = d.docker_in(&["login", "-u", "alice", "--password-stdin", &reg.addr], Some(b"apw\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.ok(&["push", &mine]);
    assert!(out.contains("bob: digest: sha256:"), "{out}");
    d.ok(&["rmi", &name, &mine]);
    assert_clean(&d);
}

#[test]
fn it_serves_tls_with_basic_auth_and_is_trusted_through_certs_d() {
    if !ready("berth-registry TLS") {
        return;
    }
    let bridge = Bridge::new();
    let d = Daemon::start("brs-tls");
    let certs = d.dir.join("made-certs");
    let (ca, cert, key) = certificates(&certs, &bridge.ip);
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let reg = Registry::berth(
        "tls",
        Some(("tls-user", "tls-pw")),
        &format!("{}:0", bridge.ip),
        &["--tls-cert", &c, "--tls-key", &k],
    );
    let dest = format!("docker://{}/secure/bb:1", reg.addr);
    let archive = format!("docker-archive:{}", d.fixture().display());
    // An unknown CA is refused; with it, the copy is made (and needs the password).
    let o = skopeo(&["copy", "--dest-creds", "tls-user:tls-pw", &archive, &dest]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("certificate"), "{}", String::from_utf8_lossy(&o.stderr));
    let skopeo_certs = certs.join("skopeo");
    std::fs::create_dir_all(&skopeo_certs).unwrap();
    std::fs::copy(&ca, skopeo_certs.join("ca.crt")).unwrap();
    let cert_dir = skopeo_certs.display().to_string();
    let o = skopeo(&["copy", "--dest-cert-dir", &cert_dir, "--dest-creds", "tls-user:wrong", &archive, &dest]);
    assert!(!o.status.success(), "a wrong password is refused");
    skopeo_ok(&["copy", "--dest-cert-dir", &cert_dir, "--dest-creds", "tls-user:tls-pw", &archive, &dest]);
    // berthd trusts it through certs.d.
    let name = format!("{}/secure/bb:1", reg.addr);
    let o = d.docker_in(&["login", "-u", "tls-user", "--password-stdin", &reg.addr], Some(b"tls-pw\n"));
    assert!(!o.status.success(), "the CA is not trusted yet");
    let trusted = d.dir.join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&ca, trusted.join("ca.crt")).unwrap();
    let o = d.docker_in(&["login", "-u", "tls-user", "--password-stdin", &reg.addr], Some(b"tls-pw\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "tls"]), "tls\n");
    d.ok(&["rmi", &name]);
    drop(reg);
    drop(bridge);
    assert_clean(&d);
}

#[test]
fn a_pull_through_cache_mirrors_docker_io_and_serves_what_it_kept_when_upstream_is_gone() {
    if !ready("berth-registry proxy") {
        return;
    }
    let mut upstream = Registry::start("ptc-up", None);
    let mut d = Daemon::start("brs-proxy");
    upstream.push_archive(&d.fixture(), "library/busybox:latest");
    let up = format!("http://{}", upstream.addr);
    let cache = Registry::berth("ptc", None, "127.0.0.1:0", &["--proxy", &up]);
    std::fs::write(d.dir.join("daemon.json"), format!(r#"{{"registry-mirrors": ["http://{}"]}}"#, cache.addr)).unwrap();
    d.crash();
    d.spawn();
    let out = d.ok(&["pull", "busybox"]);
    assert!(out.contains("Status: Downloaded newer image for busybox:latest"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "cached"]), "cached\n");
    d.ok(&["rmi", "busybox"]);
    // The upstream gone, what the cache kept is still served.
    upstream.stop();
    let out = d.ok(&["pull", "busybox"]);
    assert!(out.contains("Pull complete"), "{out}");
    d.ok(&["rmi", "busybox"]);
    // A cache takes no pushes.
    let (s, _, body) = cache.http("POST", "/v2/library/busybox/blobs/uploads/", &[], b"");
    assert_eq!(s, 405);
    assert!(String::from_utf8_lossy(&body).contains("UNSUPPORTED"));
    drop(upstream);
    assert_clean(&d);
}

#[test]
fn a_push_goes_in_chunks_when_the_registry_asks_for_them() {
    if !ready("berth-registry chunked push") {
        return;
    }
    let reg = Registry::berth("chunks", None, "127.0.0.1:0", &["--chunk-min-length", "1048576"]);
    let d = Daemon::start("brs-chunks");
    d.load_busybox();
    // 40 MiB that do not compress: three chunks of 16 MiB at most.
    d.ok(&["run", "--name", "mk", "--network", "none", "busybox", "sh", "-c", "head -c 41943040 /dev/urandom > /big"]);
    let name = format!("{}/chunk/app:1", reg.addr);
    d.ok(&["commit", "mk", &name]);
    d.ok(&["rm", "mk"]);
    let sum = d.ok(&["run", "--rm", "--network", "none", &name, "sha256sum", "/big"]);
    let out = d.ok(&["push", &name]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    let patches =
        reg.log().lines().filter(|l| l.contains("PATCH /v2/chunk/app/blobs/uploads/") && l.ends_with(" 202")).count();
    assert!(patches >= 3, "{patches} chunks: {}", reg.log());
    // What came in chunks is the same image.
    d.ok(&["rmi", &name]);
    d.ok(&["pull", &name]);
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", &name, "sha256sum", "/big"]), sum);
    d.ok(&["rmi", &name, "busybox"]);
    assert_clean(&d);
}

#[test]
fn foreign_layers_follow_their_urls_only_where_the_daemon_allows_it() {
    if !ready("foreign layers") {
        return;
    }
    let reg = Registry::berth("foreign", None, "127.0.0.1:0", &[]);
    let mut d = Daemon::start("brs-foreign");
    reg.push_archive_as(&d.fixture(), "foreign/store:1", Some("v2s2"));
    let v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let (_, _, body) = reg.http("GET", "/v2/foreign/store/manifests/1", &[("Accept", v2)], b"");
    let mut m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The config is in the image's repository; the layers only at their URLs.
    let config = m["config"]["digest"].as_str().unwrap().to_owned();
    let (s, _, _) =
        reg.http("POST", &format!("/v2/foreign/app/blobs/uploads/?mount={config}&from=foreign/store"), &[], b"");
    assert_eq!(s, 201);
    for l in m["layers"].as_array_mut().unwrap() {
        let url = format!("http://{}/v2/foreign/store/blobs/{}", reg.addr, l["digest"].as_str().unwrap());
        l["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
        l["urls"] = serde_json::json!([url]);
    }
    let (s, head, b) = put_manifest(&reg, "foreign/app", "1", v2, &m);
    assert_eq!(s, 201, "{head}{b}");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(reg.http("HEAD", &format!("/v2/foreign/app/blobs/{layer}"), &[], b"").0, 404);
    let name = format!("{}/foreign/app:1", reg.addr);
    let o = d.docker(&["pull", &name]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("allow-nondistributable-artifacts"), "{}", stderr(&o));
    std::fs::write(d.dir.join("daemon.json"), r#"{"allow-nondistributable-artifacts": ["127.0.0.0/8"]}"#).unwrap();
    d.crash();
    d.spawn();
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(reg.log().contains(&format!("GET /v2/foreign/store/blobs/{layer} 200")), "fetched from its URL");
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", &name, "echo", "foreign"]), "foreign\n");
    d.ok(&["rmi", &name]);
    std::fs::remove_file(d.dir.join("daemon.json")).unwrap();
    d.crash();
    d.spawn();
    assert_clean(&d);
}

#[test]
fn an_oci_index_it_serves_resolves_to_the_host_s_platform_or_the_one_asked_for() {
    if !ready("berth-registry OCI index") {
        return;
    }
    let reg = Registry::berth("ociindex", None, "127.0.0.1:0", &[]);
    let d = Daemon::start("brs-ociindex");
    reg.push_archive_as(&d.fixture(), "multi:amd64", Some("oci"));
    let (_, _, body) = reg.http("GET", "/v2/multi/manifests/amd64", &[("Accept", OCI_MANIFEST)], b"");
    let amd: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (_, _, cfg) =
        reg.http("GET", &format!("/v2/multi/blobs/{}", amd["config"]["digest"].as_str().unwrap()), &[], b"");
    let mut cfg: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    cfg["architecture"] = "arm64".into();
    cfg["variant"] = "v8".into();
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let mut arm = amd.clone();
    arm["config"] = blob(&reg, "multi", amd["config"]["mediaType"].as_str().unwrap(), &cfg);
    let arm_bytes = serde_json::to_vec(&arm).unwrap();
    let (s, head, b) = put_manifest(&reg, "multi", &sha(&arm_bytes), OCI_MANIFEST, &arm);
    assert_eq!(s, 201, "{head}{b}");
    let entry = |bytes: &[u8], arch: &str| {
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": sha(bytes), "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch}})
    };
    let oci_index = "application/vnd.oci.image.index.v1+json";
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": oci_index,
        "manifests": [entry(&arm_bytes, "arm64"), entry(&body, "amd64")]});
    // An index whose manifests are not here is refused.
    let absent =
        serde_json::json!({"schemaVersion": 2, "mediaType": oci_index, "manifests": [entry(b"nothing", "amd64")]});
    assert_eq!(put_manifest(&reg, "multi", "absent", oci_index, &absent).0, 400);
    let (s, head, b) = put_manifest(&reg, "multi", "latest", oci_index, &index);
    assert_eq!(s, 201, "{head}{b}");
    let name = format!("{}/multi", reg.addr);
    d.ok(&["pull", &name]);
    let host_arch = if std::env::consts::ARCH == "aarch64" { "arm64" } else { "amd64" };
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &name]).trim(), host_arch);
    d.ok(&["rmi", &name]);
    d.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &name]).trim(), "arm64");
    d.ok(&["rmi", &name]);
    assert_clean(&d);
}
