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
