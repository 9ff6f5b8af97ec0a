//! Loading the archive formats of `docker save` and OCI layouts, built here
//! from the busybox fixture; and bad archives that must fail cleanly and
//! leave the store as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use berth_image::archive::load;
use berth_image::fixture::{self, FixtureImage};
use berth_image::{Digest, Error, ImageStore};
use common::{can_run, gzip, Scratch};
use serde_json::json;

fn outer(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

fn hex(d: &[u8]) -> String {
    Digest::sha256(d).hex().to_owned()
}

/// `docker save` before Docker 25: `<id>.json`, `<dir>/layer.tar`.
fn legacy(img: &FixtureImage, tag: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(format!("{}.json", hex(&img.config)), img.config.clone())];
    let mut layers = Vec::new();
    for l in &img.layers {
        let name = format!("{}/layer.tar", hex(l));
        layers.push(name.clone());
        files.push((name, l.clone()));
    }
    let manifest = json!([{ "Config": format!("{}.json", hex(&img.config)), "RepoTags": [tag], "Layers": layers }]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    files
}

/// An OCI layout; with `docker_manifest`, also the manifest.json Docker 25
/// writes beside it. Layers gzip-compressed when `gz`.
fn oci(img: &FixtureImage, tag: &str, gz: bool, docker_manifest: bool) -> Vec<(String, Vec<u8>)> {
    let blob = |d: &[u8]| format!("blobs/sha256/{}", hex(d));
    let mut files = vec![(blob(&img.config), img.config.clone())];
    let mut descs = Vec::new();
    let mut paths = Vec::new();
    for l in &img.layers {
        let data = if gz { gzip(l) } else { l.clone() };
        descs.push(json!({ "mediaType": if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" },
            "digest": format!("sha256:{}", hex(&data)), "size": data.len() }));
        paths.push(blob(&data));
        files.push((blob(&data), data));
    }
    let manifest = serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", hex(&img.config)), "size": img.config.len() },
        "layers": descs })).unwrap();
    let index = json!({ "schemaVersion": 2, "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", hex(&manifest)), "size": manifest.len(),
        "annotations": { "org.opencontainers.image.ref.name": tag } }] });
    files.push((blob(&manifest), manifest));
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    files.push(("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    if docker_manifest {
        let m = json!([{ "Config": blob(&img.config), "RepoTags": [tag], "Layers": paths }]);
        files.push(("manifest.json".into(), serde_json::to_vec(&m).unwrap()));
    }
    files
}

fn write(s: &Scratch, name: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
    let p = s.base.join(name);
    outer(&p, files);
    p
}

fn overlay_dirs(s: &Scratch) -> usize {
    std::fs::read_dir(s.layer.join("overlay")).unwrap().count()
}

#[test]
fn every_format_loads_the_same_image() {
    if !can_run("archive_formats") {
        return;
    }
    let img = fixture::layered(Path::new("/bin/busybox")).unwrap();
    let s = Scratch::new("formats");
    let store = ImageStore::open(&s.layer).unwrap();
    let want_id = format!("sha256:{}", hex(&img.config));
    let cases = [
        ("legacy.tar", legacy(&img, "fx:legacy")),
        ("docker25.tar", oci(&img, "fx:docker25", false, true)),
        ("oci.tar", oci(&img, "fx:oci", true, false)),
    ];
    for (name, files) in cases {
        let path = write(&s, name, &files);
        let loaded = load(&store, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.len(), 1, "{name}");
        assert_eq!(loaded[0].id.to_string(), want_id, "{name}");
    }
    for tag in ["fx:legacy", "fx:docker25", "fx:oci"] {
        assert_eq!(store.resolve(tag).unwrap().to_string(), want_id);
    }
    assert_eq!(store.layers.list().unwrap().len(), 4, "layers shared across loads");
    let layer = &store.layers.list().unwrap()[0];
    assert!(store.content.contains(layer.blob.as_ref().unwrap()), "layer blobs kept for save");
    // The loaded image mounts to the fixture's tree.
    let rec = store.get(&store.resolve("fx:oci").unwrap()).unwrap().unwrap();
    let rw = store.layers.create_rw("a", rec.top_layer.as_ref()).unwrap();
    let m = store.layers.mount_of(&rw).unwrap();
    m.mount().unwrap();
    let seen = (
        m.target.join("bin/busybox").is_file(),
        m.target.join("data/gone").exists(),
        m.target.join("data/swap/new").exists(),
    );
    let _ = m.unmount();
    store.layers.remove_rw(&rw).unwrap();
    assert_eq!(seen, (true, false, true));
}

#[test]
fn bad_archives_fail_and_keep_the_store() {
    if !can_run("bad_archives") {
        return;
    }
    let img = fixture::busybox(Path::new("/bin/busybox")).unwrap();
    let s = Scratch::new("bad");
    let store = ImageStore::open(&s.layer).unwrap();
    let good = write(&s, "good.tar", &legacy(&img, "keep:1"));
    let kept = load(&store, &good).unwrap()[0].id.clone();
    let before = overlay_dirs(&s);

    // A layer the store does not have yet, with other bytes under its name:
    // its digest does not match.
    let layered = fixture::layered(Path::new("/bin/busybox")).unwrap();
    let mut wrong_blob = oci(&layered, "bad:blob", true, false);
    // Files are config, the four layers, manifest, index, layout.
    let mut t = common::TarBuilder::new();
    t.file("evil", b"x", 0o644);
    wrong_blob[4].1 = gzip(&t.finish());
    // A layer the store lacks is missing from the archive (layers the store
    // has are not read, as in Docker).
    let mut missing = legacy(&layered, "bad:missing");
    let last = format!("{}/layer.tar", hex(&layered.layers[3]));
    missing.retain(|(n, _)| *n != last);
    let mut not_json = legacy(&img, "bad:json");
    not_json[0].1 = b"this is not json".to_vec();
    let mut not_json_manifest = legacy(&img, "bad:manifest");
    not_json_manifest.last_mut().unwrap().1 = b"[{".to_vec();
    let mut truncated = std::fs::read(&good).unwrap();
    truncated.truncate(truncated.len() / 2);
    std::fs::write(s.base.join("truncated.tar"), &truncated).unwrap();
    let cases: Vec<(&str, PathBuf)> = vec![
        ("layer digest mismatch", write(&s, "b1.tar", &wrong_blob)),
        ("manifest names a missing layer", write(&s, "b2.tar", &missing)),
        ("config is not JSON", write(&s, "b3.tar", &not_json)),
        ("manifest is not JSON", write(&s, "b4.tar", &not_json_manifest)),
        ("truncated archive", s.base.join("truncated.tar")),
        ("not an archive", {
            let p = s.base.join("junk.tar");
            std::fs::write(&p, vec![7u8; 2048]).unwrap();
            p
        }),
    ];
    for (what, path) in cases {
        let err = load(&store, &path).expect_err(what);
        assert!(matches!(err, Error::Invalid(_) | Error::DigestMismatch { .. }), "{what}: {err:?}");
        assert_eq!(overlay_dirs(&s), before, "{what}: no half-made layer left");
        assert_eq!(store.list().unwrap().len(), 1, "{what}");
        assert_eq!(store.resolve("keep:1").unwrap(), kept, "{what}");
    }
    assert_eq!(std::fs::read_dir(s.layer.join("blobs/ingest")).unwrap().count(), 0, "no partial blob");
}

/// A config for these layers, as a build would write it.
fn config_for(layers: &[Vec<u8>], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", hex(l))).collect();
    serde_json::to_vec(&json!({ "architecture": "amd64", "os": "linux", "config": { "Cmd": [cmd] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids } }))
    .unwrap()
}

/// busybox and a layer with every kind of entry and metadata a save must
/// carry: owners, setuid, capabilities and user xattrs, a hardlink, a
/// symlink, a device, a fifo.
fn rich() -> FixtureImage {
    let base = fixture::busybox(Path::new("/bin/busybox")).unwrap().layers.remove(0);
    // vfs_cap_data v2, effective, CAP_NET_BIND_SERVICE permitted.
    let cap: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut t = common::TarBuilder::new();
    t.dir("opt", 0o755, 0, 0, 3_000);
    t.dir("opt/owned", 0o750, 1000, 1001, 5_000);
    t.file_x(
        "opt/owned/cap",
        b"capable\n",
        0o4755,
        (1000, 1001, 7_000),
        &[("security.capability", cap), ("user.note", b"hi")],
    );
    t.hardlink("opt/hard", "opt/owned/cap");
    t.symlink("opt/sym", "owned/cap");
    t.device("opt/null", b'3', 1, 3);
    t.device("opt/fifo", b'6', 0, 0);
    t.file("opt/plain", b"plain\n", 0o600);
    let layers = vec![base, t.finish()];
    FixtureImage { config: config_for(&layers, "sh"), layers }
}

/// An image committed from a container over `base`: its top layer is an
/// export of the upper dir, kept without a blob.
fn commit(store: &ImageStore, base: &str, tag: &str) {
    let id = store.resolve(base).unwrap();
    let rec = store.get(&id).unwrap().unwrap();
    let rw = store.layers.create_rw("committer", rec.top_layer.as_ref()).unwrap();
    let m = store.layers.mount_of(&rw).unwrap();
    m.mount().unwrap();
    std::fs::write(m.target.join("opt/added"), b"added\n").unwrap();
    std::fs::remove_file(m.target.join("opt/plain")).unwrap();
    m.unmount().unwrap();
    let mut diff = Vec::new();
    berth_image::changes::export(&m.upper, &mut diff).unwrap();
    store.layers.remove_rw(&rw).unwrap();
    let top = store.layers.create(&diff[..], None, rec.top_layer.as_ref()).unwrap();
    assert!(top.blob.is_none());
    let mut cfg: serde_json::Value = serde_json::from_slice(&store.config_bytes(&id).unwrap()).unwrap();
    cfg["rootfs"]["diff_ids"].as_array_mut().unwrap().push(json!(top.diff_id.to_string()));
    let new = store.add(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    store.tag(&berth_image::Reference::parse(tag).unwrap(), &new.id).unwrap();
}

/// Load the fixture images in their formats, and a committed one.
fn filled(s: &Scratch, dir: &str) -> ImageStore {
    let store = ImageStore::open(&s.base.join(dir)).unwrap();
    let layered = fixture::layered(Path::new("/bin/busybox")).unwrap();
    load(&store, &write(s, "in-legacy.tar", &legacy(&layered, "fx:legacy"))).unwrap();
    load(&store, &write(s, "in-oci.tar", &oci(&rich(), "fx:rich", true, false))).unwrap();
    commit(&store, "fx:rich", "fx:commit");
    store
}

const SAVED: [&str; 3] = ["fx:legacy", "fx:rich", "fx:commit"];

type Trees = Vec<std::collections::BTreeMap<String, String>>;

fn trees(store: &ImageStore, names: &[&str]) -> Trees {
    names.iter().map(|n| common::with_rootfs(store, n, common::tree)).collect()
}

#[test]
fn save_then_load_gives_the_same_images_and_files() {
    if !can_run("save_round_trip") {
        return;
    }
    let s = Scratch::new("roundtrip");
    let a = filled(&s, "a");
    let ids: Vec<_> = SAVED.iter().map(|n| a.resolve(n).unwrap()).collect();
    let before = trees(&a, &SAVED);
    assert_eq!(before[1]["/opt/owned/cap"], before[1]["/opt/hard"], "hardlinked");
    assert!(before[1]["/opt/owned/cap"].contains("4755 1000:1001"), "{}", before[1]["/opt/owned/cap"]);
    assert!(before[1]["/opt/owned/cap"].contains("security.capability"));
    assert!(before[2].contains_key("/opt/added") && !before[2].contains_key("/opt/plain"));

    let saved = s.base.join("saved.tar");
    berth_image::save::save(&a, &SAVED, std::fs::File::create(&saved).unwrap()).unwrap();
    let bytes = std::fs::read(&saved).unwrap();
    let mut again = Vec::new();
    berth_image::save::save(&a, &SAVED, &mut again).unwrap();
    assert!(again == bytes, "save is deterministic");
    let committed = a.get(&ids[2]).unwrap().unwrap().top_layer.unwrap();
    assert!(a.layers.get(&committed).unwrap().unwrap().blob.is_some(), "the committed layer's blob is kept");

    let b = ImageStore::open(&s.base.join("b")).unwrap();
    let loaded = load(&b, &saved).unwrap();
    assert_eq!(loaded.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), ids);
    for (n, id) in SAVED.iter().zip(&ids) {
        assert_eq!(b.resolve(n).unwrap(), *id, "{n}");
    }
    assert_eq!(trees(&b, &SAVED), before, "the same files after the round trip");
    let mut from_b = Vec::new();
    berth_image::save::save(&b, &SAVED, &mut from_b).unwrap();
    assert!(from_b == bytes, "a loaded save saves to the same bytes");

    // Saved by id: no names; a bare repository name saves every tag.
    let mut by_id = Vec::new();
    berth_image::save::save(&a, &[&ids[0].to_string()], &mut by_id).unwrap();
    let c = ImageStore::open(&s.base.join("c")).unwrap();
    let p = s.base.join("by-id.tar");
    std::fs::write(&p, &by_id).unwrap();
    let l = load(&c, &p).unwrap();
    assert_eq!((l.len(), l[0].names.len(), c.names_of(&ids[0]).unwrap().len()), (1, 0, 0));
    let mut repo = Vec::new();
    berth_image::save::save(&a, &["fx"], &mut repo).unwrap();
    let p = s.base.join("repo.tar");
    std::fs::write(&p, &repo).unwrap();
    assert_eq!(load(&c, &p).unwrap().len(), 3);
    assert_eq!(c.resolve("fx:commit").unwrap(), ids[2]);
    assert!(matches!(berth_image::save::save(&a, &["nope:1"], &mut Vec::new()), Err(Error::NotFound(_))));
}

fn skopeo(args: &[&str]) {
    let out = std::process::Command::new("skopeo").args(args).output().expect("skopeo (Debian package skopeo)");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn skopeo_reads_what_save_writes() {
    if !can_run("skopeo_reads_save") {
        return;
    }
    let have = std::process::Command::new("skopeo").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "skopeo is needed under CI");
        eprintln!("skipping: no skopeo");
        return;
    }
    let s = Scratch::new("skopeo");
    let a = filled(&s, "a");
    let saved = s.base.join("saved.tar");
    berth_image::save::save(&a, &SAVED, std::fs::File::create(&saved).unwrap()).unwrap();
    let saved = saved.display().to_string();
    // skopeo reads the save both as a docker-archive and as an OCI archive
    // and writes each form again, which berth loads.
    let via_docker = s.base.join("sk-docker.tar").display().to_string();
    let via_oci = s.base.join("sk-oci.tar").display().to_string();
    skopeo(&[
        "copy",
        "-q",
        &format!("docker-archive:{saved}:fx:commit"),
        &format!("docker-archive:{via_docker}:sk/docker:1"),
    ]);
    skopeo(&["copy", "-q", &format!("oci-archive:{saved}:commit"), &format!("oci-archive:{via_oci}:sk/oci:1")]);
    let c = ImageStore::open(&s.base.join("c")).unwrap();
    load(&c, Path::new(&via_docker)).unwrap();
    load(&c, Path::new(&via_oci)).unwrap();
    let id = a.resolve("fx:commit").unwrap();
    assert_eq!(c.resolve("sk/docker:1").unwrap(), id);
    assert_eq!(c.resolve("sk/oci:1").unwrap(), id);
    let want = trees(&a, &["fx:commit"]);
    assert_eq!(trees(&c, &["sk/docker:1"]), want);
    assert_eq!(trees(&c, &["sk/oci:1"]), want);
}

/// The OCI layout of `img` with its manifest behind an image index of
/// several platforms; `host` says whether this machine's is among them.
fn multi_platform(img: &FixtureImage, tag: &str, host: bool) -> Vec<(String, Vec<u8>)> {
    let mut files = oci(img, tag, false, false);
    let index_at = files.iter().position(|(n, _)| n == "index.json").unwrap();
    let index: serde_json::Value = serde_json::from_slice(&files[index_at].1).unwrap();
    let manifest = index["manifests"][0].clone();
    let absent = format!("sha256:{}", hex(b"not in the archive"));
    let platform = |arch: &str| json!({ "os": "linux", "architecture": arch });
    let mut entries = vec![
        json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent, "size": 1, "platform": platform("arm64") }),
        json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent, "size": 1,
            "platform": { "os": "unknown", "architecture": "unknown" } }),
    ];
    if host {
        let mut m = manifest.clone();
        m["platform"] = platform("amd64");
        m.as_object_mut().unwrap().remove("annotations");
        entries.insert(1, m);
    }
    let nested = serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries }),
    )
    .unwrap();
    let outer = json!({ "schemaVersion": 2, "manifests": [{ "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{}", hex(&nested)), "size": nested.len(), "annotations": manifest["annotations"] }] });
    files[index_at].1 = serde_json::to_vec(&outer).unwrap();
    files.push((format!("blobs/sha256/{}", hex(&nested)), nested));
    files
}

#[test]
fn an_index_of_platforms_loads_this_machines_image() {
    if !can_run("multi_platform") {
        return;
    }
    let img = fixture::busybox(Path::new("/bin/busybox")).unwrap();
    let s = Scratch::new("platforms");
    let store = ImageStore::open(&s.layer).unwrap();
    let loaded = load(&store, &write(&s, "multi.tar", &multi_platform(&img, "fx:multi", true))).unwrap();
    assert_eq!(loaded[0].id.to_string(), format!("sha256:{}", hex(&img.config)));
    assert_eq!(store.resolve("fx:multi").unwrap(), loaded[0].id);
    let other = Scratch::new("platforms-other");
    let empty = ImageStore::open(&other.layer).unwrap();
    let err = load(&empty, &write(&other, "arm.tar", &multi_platform(&img, "fx:arm", false))).unwrap_err();
    assert!(err.to_string().contains("has no image for linux/amd64"), "{err}");
    assert!(empty.list().unwrap().is_empty() && empty.layers.list().unwrap().is_empty());
}

/// `tests/data/docker-20.10-save.tar`: what Docker 20.10's `docker save`
/// wrote for an image berth had imported (`CMD ["cat", "/h"]`, one file
/// `/h`) and saved, and `docker load` had read back: the legacy layout with
/// `VERSION`, `json` and `repositories`.
#[test]
fn a_save_written_by_docker_loads() {
    if !can_run("docker_written") {
        return;
    }
    let s = Scratch::new("docker-written");
    let store = ImageStore::open(&s.layer).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/docker-20.10-save.tar");
    let loaded = load(&store, &data).unwrap();
    assert_eq!(loaded[0].id.to_string(), "sha256:29f4d48a22f1b4b02e5ad5de7973cd0530790eb02796589eadd71babfded9721");
    assert_eq!(store.resolve("imp:1").unwrap(), loaded[0].id);
    assert_eq!(store.config(&loaded[0].id).unwrap().run().cmd.unwrap(), ["cat", "/h"]);
    let files = common::with_rootfs(&store, "imp:1", |root| std::fs::read_to_string(root.join("h")).unwrap());
    assert_eq!(files, "hello");
}
