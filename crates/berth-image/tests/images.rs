//! Image records and names: add, tag, resolve, and delete as `docker rmi`,
//! with layers shared between images kept while one still uses them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use berth_image::images::ContainerUse;
use berth_image::{Deleted, ImageId, ImageStore, Reference};
use common::{can_run, Scratch, TarBuilder};

fn layer(store: &ImageStore, name: &str, parent: Option<&berth_image::ChainId>) -> berth_image::Layer {
    let mut t = TarBuilder::new();
    t.file(name, name.as_bytes(), 0o644);
    store.layers.create(&t.finish()[..], None, parent).unwrap()
}

fn config(diffs: &[&berth_image::DiffId], cmd: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": [cmd] },
        "rootfs": { "type": "layers", "diff_ids": diffs.iter().map(|d| d.to_string()).collect::<Vec<_>>() }
    }))
    .unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn add_tag_resolve_delete() {
    if !can_run("images") {
        return;
    }
    let s = Scratch::new("images");
    let store = ImageStore::open(&s.layer).unwrap();
    let base = layer(&store, "base", None);
    let top = layer(&store, "top", Some(&base.chain_id));
    let a = store.add(&config(&[&base.diff_id], "a")).unwrap();
    let b = store.add(&config(&[&base.diff_id, &top.diff_id], "b")).unwrap();
    assert_eq!(b.top_layer.as_ref(), Some(&top.chain_id));
    // A config naming a layer that is not there is refused.
    let missing = berth_image::DiffId::from(berth_image::Digest::sha256(b"nope"));
    assert!(store.add(&config(&[&missing], "x")).is_err());

    store.tag(&r("busybox"), &a.id).unwrap();
    store.tag(&r("localhost:5000/a/b:v1"), &a.id).unwrap();
    store.tag(&r("app:1"), &b.id).unwrap();
    assert_eq!(store.resolve("busybox").unwrap(), a.id);
    assert_eq!(store.resolve("docker.io/library/busybox:latest").unwrap(), a.id);
    assert_eq!(store.resolve(&a.id.to_string()).unwrap(), a.id);
    assert_eq!(store.resolve(a.id.short()).unwrap(), a.id);
    assert!(matches!(store.resolve("nothere"), Err(berth_image::Error::NotFound(_))));
    let names: Vec<String> = store.names_of(&a.id).unwrap().iter().map(|n| n.familiar()).collect();
    assert_eq!(names, ["busybox:latest", "localhost:5000/a/b:v1"]);
    assert_eq!(store.config(&b.id).unwrap().run().cmd, Some(vec!["b".to_owned()]));

    let unused = |_: &ImageId| None;
    let stopped = |_: &ImageId| Some(ContainerUse { id: "c0ffee0123456789".into(), running: false });
    let running = |_: &ImageId| Some(ContainerUse { id: "c0ffee0123456789".into(), running: true });
    // An id with names in two repositories needs force.
    let err = store.delete(&a.id.to_string(), false, unused).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            a.id.short()
        )
    );
    // A name with others left only untags, container or not.
    assert_eq!(store.delete("busybox", false, running).unwrap(), [Deleted::Untagged("busybox:latest".into())]);
    assert!(store.get(&a.id).unwrap().is_some());
    // The last name while a container uses the image needs force.
    let err = store.delete("localhost:5000/a/b:v1", false, stopped).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to remove repository reference \"localhost:5000/a/b:v1\" (must force) - container c0ffee012345 is using its referenced image {}",
            a.id.short()
        )
    );
    // By id: a running container refuses even with force, a stopped one
    // without.
    let err = store.delete(a.id.short(), true, running).unwrap_err().to_string();
    assert!(err.ends_with("(cannot be forced) - image is being used by running container c0ffee012345"), "{err}");
    let err = store.delete(a.id.short(), false, stopped).unwrap_err().to_string();
    assert!(err.ends_with("(must be forced) - image is being used by stopped container c0ffee012345"), "{err}");
    // The last name: untagged and deleted; the layer b shares stays.
    let out = store.delete("localhost:5000/a/b:v1", false, unused).unwrap();
    assert_eq!(out, [Deleted::Untagged("localhost:5000/a/b:v1".into()), Deleted::Deleted(a.id.clone())]);
    assert!(store.get(&a.id).unwrap().is_none());
    assert!(store.layers.get(&base.chain_id).unwrap().is_some(), "shared layer kept");
    // A tag and a digest reference in one repository: the tag takes the
    // digest with it.
    let digest_ref = r("app").with_digest(berth_image::Digest::sha256(b"manifest"));
    store.tag(&digest_ref, &b.id).unwrap();
    let out = store.delete("app:1", false, unused).unwrap();
    assert_eq!(out[..2], [Deleted::Untagged("app:1".into()), Deleted::Untagged(digest_ref.familiar())]);
    assert_eq!(out[2], Deleted::Deleted(b.id.clone()));
    assert!(store.layers.list().unwrap().is_empty());
    assert_eq!(store.prune_blobs().unwrap().len(), 2);
    assert!(store.content.list().unwrap().is_empty());
}

#[test]
fn a_container_keeps_its_image_layers() {
    if !can_run("container_layer") {
        return;
    }
    let s = Scratch::new("rwkeep");
    let store = ImageStore::open(&s.layer).unwrap();
    let base = layer(&store, "base", None);
    let img = store.add(&config(&[&base.diff_id], "a")).unwrap();
    let rw = store.layers.create_rw("c1", Some(&base.chain_id)).unwrap();
    let use_of = |running: bool| move |_: &ImageId| Some(ContainerUse { id: "c1".into(), running });

    // Forced by name while a container runs: untagged, the image stays
    // (dangling) for the container.
    store.tag(&r("keep"), &img.id).unwrap();
    let out = store.delete("keep", true, use_of(true)).unwrap();
    assert_eq!(out, [Deleted::Untagged("keep:latest".into())]);
    assert!(store.get(&img.id).unwrap().is_some(), "the image stays, dangling");

    // Forced while it is stopped: the image goes, its layers stay for the
    // container's layer.
    store.tag(&r("keep"), &img.id).unwrap();
    let out = store.delete("keep", true, use_of(false)).unwrap();
    assert_eq!(out, [Deleted::Untagged("keep:latest".into()), Deleted::Deleted(img.id.clone())]);
    assert!(store.get(&img.id).unwrap().is_none());
    assert!(store.layers.get(&base.chain_id).unwrap().is_some(), "the container's lower layer stays");
    store.layers.remove_rw(&rw).unwrap();
    store.collect_layers().unwrap();
    assert!(store.layers.list().unwrap().is_empty());
}

#[test]
fn busybox_fixtures_are_deterministic_and_mount() {
    if !can_run("fixtures") {
        return;
    }
    let bb = std::path::Path::new("/bin/busybox");
    assert!(bb.is_file(), "/bin/busybox missing: apt-get install busybox-static");
    let one = berth_image::fixture::busybox(bb).unwrap();
    let again = berth_image::fixture::busybox(bb).unwrap();
    assert_eq!(one.layers, again.layers);
    assert_eq!(one.config, again.config);
    let layered = berth_image::fixture::layered(bb).unwrap();
    assert_eq!(layered.layers.len(), 4);
    assert_eq!(layered.layers[0], one.layers[0], "the base layer is shared");

    let s = Scratch::new("fixture");
    let store = ImageStore::open(&s.layer).unwrap();
    let mut parent = None;
    for l in &layered.layers {
        parent = Some(store.layers.create(&l[..], None, parent.as_ref()).unwrap().chain_id);
    }
    let img = store.add(&layered.config).unwrap();
    assert_eq!(img.id.digest(), &berth_image::Digest::sha256(&layered.config));
    let rw = store.layers.create_rw("fx", img.top_layer.as_ref()).unwrap();
    let m = store.layers.mount_of(&rw).unwrap();
    m.mount().unwrap();
    let t = &m.target;
    let seen = (
        t.join("bin/sh").exists(),
        std::fs::read_to_string(t.join("data/keep")).ok(),
        t.join("data/gone").exists(),
        t.join("data/swap/old").exists(),
        std::fs::read_to_string(t.join("data/swap/new")).ok(),
    );
    let _ = m.unmount();
    store.layers.remove_rw(&rw).unwrap();
    assert_eq!(seen, (true, Some("keep\n".into()), false, false, Some("new\n".into())));
}
