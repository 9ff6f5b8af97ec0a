//! Layers on overlayfs for real (root): what a container sees through the
//! stack, where its writes land, images of 128 layers with both mount
//! paths, sharing by chain id, and cleanup of half-applied layers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use berth_image::{LayerStore, OverlayMount};
use common::{can_run, Scratch, TarBuilder};

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted(OverlayMount);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.0.unmount();
    }
}

#[test]
fn the_stack_as_a_container_sees_it() {
    if !can_run("the_stack") {
        return;
    }
    let s = Scratch::new("stack");
    let store = LayerStore::open(&s.layer).unwrap();
    let mut l1 = TarBuilder::new();
    l1.file("a", b"a1", 0o644);
    l1.file("d/x", b"x1", 0o644);
    l1.file("d/y", b"y1", 0o644);
    l1.file("o/p", b"p1", 0o644);
    l1.file("o/q", b"q1", 0o644);
    l1.file("gone", b"g", 0o644);
    let mut l2 = TarBuilder::new();
    l2.file(".wh.gone", b"", 0o644);
    l2.file("o/.wh..wh..opq", b"", 0o644);
    l2.file("o/new", b"n2", 0o644);
    l2.file("d/x", b"x2", 0o644);
    l2.file("b", b"b2", 0o644);
    let base = store.create(&l1.finish()[..], None, None).unwrap();
    let top = store.create(&l2.finish()[..], None, Some(&base.chain_id)).unwrap();
    assert_eq!(top.parent.as_ref(), Some(&base.chain_id));

    let rw = store.create_rw("ctr1", Some(&top.chain_id)).unwrap();
    assert_eq!(store.list_rw().unwrap(), vec![rw.clone()]);
    let mut made: Vec<String> = fs::read_dir(s.layer.join("overlay").join(&rw.cache_id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(made, ["diff", "merged", "rw.json", "work"], "no owner file, nothing left of the making");
    let m = store.mount_of(&rw).unwrap();
    m.mount().unwrap();
    let m = Mounted(m);
    let root = &m.0.target;
    let mut seen: Vec<String> = Vec::new();
    for e in walk(root) {
        seen.push(format!("{e}={}", fs::read_to_string(root.join(&e)).unwrap_or_default()));
    }
    assert_eq!(seen, ["a=a1", "b=b2", "d=", "d/x=x2", "d/y=y1", "o=", "o/new=n2"]);
    // Writes land in the container's layer only.
    fs::write(root.join("d/y"), b"changed").unwrap();
    fs::write(root.join("fresh"), b"f").unwrap();
    fs::remove_file(root.join("a")).unwrap();
    assert_eq!(fs::read(m.0.upper.join("d/y")).unwrap(), b"changed");
    assert!(m.0.upper.join("fresh").is_file());
    assert_eq!(fs::read(store.diff_dir(&base).join("d/y")).unwrap(), b"y1", "lower untouched");
    assert_eq!(fs::read(store.diff_dir(&base).join("a")).unwrap(), b"a1");
    drop(m);
    store.remove_rw(&rw).unwrap();
    assert!(store.list_rw().unwrap().is_empty());
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap().flatten() {
            let name = if rel.is_empty() {
                e.file_name().to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", e.file_name().to_string_lossy())
            };
            if e.file_type().unwrap().is_dir() {
                stack.push(name.clone());
            }
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn an_image_of_128_layers_mounts_both_ways() {
    if !can_run("128_layers") {
        return;
    }
    let s = Scratch::new("many");
    let store = LayerStore::open(&s.layer).unwrap();
    let mut parent = None;
    for i in 0..128 {
        let mut t = TarBuilder::new();
        t.file(&format!("f{i:03}"), format!("{i}").as_bytes(), 0o644);
        let l = store.create(&t.finish()[..], None, parent.as_ref()).unwrap();
        parent = Some(l.chain_id);
    }
    let rw = store.create_rw("many", parent.as_ref()).unwrap();
    let m = store.mount_of(&rw).unwrap();
    assert_eq!(m.lowers.len(), 128);
    assert!(m.data_relative().len() < 4096, "short links keep the classic mount data in a page");
    for (how, mount) in
        [("new API", OverlayMount::mount_fsconfig as fn(&OverlayMount) -> _), ("classic", OverlayMount::mount_classic)]
    {
        mount(&m).unwrap_or_else(|e| panic!("{how}: {e}"));
        let guard = Mounted(m.clone());
        assert_eq!(fs::read_dir(&m.target).unwrap().count(), 128, "{how}");
        assert_eq!(fs::read_to_string(m.target.join("f127")).unwrap(), "127", "{how}");
        drop(guard);
    }
}

#[test]
fn layers_are_shared_and_half_work_is_cleaned() {
    if !can_run("layers_shared") {
        return;
    }
    let s = Scratch::new("shared");
    let store = LayerStore::open(&s.layer).unwrap();
    let mut t = TarBuilder::new();
    t.file("same", b"1", 0o644);
    let tar = t.finish();
    let a = store.create(&tar[..], None, None).unwrap();
    let b = store.create(&tar[..], None, None).unwrap();
    assert_eq!(a, b, "one layer per chain id");
    let dirs = |p: &std::path::Path| fs::read_dir(p).unwrap().count();
    assert_eq!(dirs(&s.layer.join("overlay")), 2, "one cache dir and l/");
    // Staged by a live process (another load): a second open keeps it and
    // the stage still registers.
    let mut other = TarBuilder::new();
    other.file("other", b"2", 0o644);
    let live = store.stage(&other.finish()[..], None).unwrap();
    let second = LayerStore::open(&s.layer).unwrap();
    let registered = second.register(live, None).unwrap();
    assert!(second.diff_dir(&registered).join("other").is_file(), "a live stage survives another open");
    second.remove(&registered.chain_id).unwrap();
    // Staged but never recorded by a process that died mid-load, and a
    // record directory with no record in it.
    let staged = store.stage(&tar[..], None).unwrap();
    fs::create_dir_all(s.layer.join("layers/deadbeef")).unwrap();
    std::mem::forget(staged);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    for e in fs::read_dir(s.layer.join("overlay")).unwrap().flatten() {
        if e.path().join("owner").exists() {
            fs::write(e.path().join("owner"), dead_pid.to_string()).unwrap();
        }
    }
    // Container layers being made, by a dead process and by this one.
    let dead_making = s.layer.join(format!("overlay/.making-{dead_pid}-0123"));
    let live_making = s.layer.join(format!("overlay/.making-{}-4567", std::process::id()));
    for d in [&dead_making, &live_making] {
        fs::create_dir_all(d.join("diff")).unwrap();
    }
    assert_eq!(dirs(&s.layer.join("overlay")), 5);
    let store = LayerStore::open(&s.layer).unwrap();
    assert!(!dead_making.exists(), "a dead maker's container layer is removed on open");
    assert!(live_making.is_dir(), "a live maker's container layer is kept");
    fs::remove_dir_all(&live_making).unwrap();
    assert_eq!(dirs(&s.layer.join("overlay")), 2, "half-applied layer removed on open");
    assert!(!s.layer.join("layers/deadbeef").exists());
    assert_eq!(store.list().unwrap(), vec![a.clone()]);
    store.remove(&a.chain_id).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(dirs(&s.layer.join("overlay")), 1);
    assert_eq!(dirs(&s.layer.join("overlay/l")), 0);
}

#[test]
fn diff_and_commit_of_a_container_layer() {
    if !can_run("diff_and_commit") {
        return;
    }
    use berth_image::changes::{changes, export, ChangeKind};
    let s = Scratch::new("commit");
    let store = LayerStore::open(&s.layer).unwrap();
    let mut t = TarBuilder::new();
    t.file("etc/conf", b"old", 0o644);
    t.file("etc/drop", b"x", 0o644);
    t.file("var/cache/a", b"a", 0o644);
    t.file("var/cache/b", b"b", 0o644);
    let base = store.create(&t.finish()[..], None, None).unwrap();
    let rw = store.create_rw("c", Some(&base.chain_id)).unwrap();
    let m = store.mount_of(&rw).unwrap();
    m.mount().unwrap();
    let guard = Mounted(m.clone());
    let root = &m.target;
    fs::write(root.join("etc/conf"), b"new").unwrap();
    fs::remove_file(root.join("etc/drop")).unwrap();
    fs::write(root.join("added"), b"+").unwrap();
    fs::hard_link(root.join("added"), root.join("added2")).unwrap();
    std::os::unix::fs::symlink("etc/conf", root.join("ln")).unwrap();
    // Replacing a directory makes it opaque in the upper dir.
    fs::remove_dir_all(root.join("var/cache")).unwrap();
    fs::create_dir(root.join("var/cache")).unwrap();
    fs::write(root.join("var/cache/c"), b"c").unwrap();
    drop(guard);

    let lowers = vec![store.diff_dir(&base)];
    let got: Vec<(String, ChangeKind)> =
        changes(&m.upper, &lowers).unwrap().into_iter().map(|c| (c.path, c.kind)).collect();
    use ChangeKind::*;
    let want = [
        ("/added", Added),
        ("/added2", Added),
        ("/etc", Modified),
        ("/etc/conf", Modified),
        ("/etc/drop", Deleted),
        ("/ln", Added),
        ("/var", Modified),
        ("/var/cache", Modified),
        ("/var/cache/c", Added),
    ];
    let want: Vec<(String, ChangeKind)> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    assert_eq!(got, want);

    // The exported tar, applied as a new layer on the same base, gives the
    // container's view: the commit round trip.
    let mut tar = Vec::new();
    let diff_id = export(&m.upper, &mut tar).unwrap();
    assert_eq!(diff_id.digest(), &berth_image::Digest::sha256(&tar));
    let mut again = Vec::new();
    assert_eq!(export(&m.upper, &mut again).unwrap(), diff_id, "export is deterministic");
    let committed = store.create(&tar[..], None, Some(&base.chain_id)).unwrap();
    let rw2 = store.create_rw("c2", Some(&committed.chain_id)).unwrap();
    let m2 = store.mount_of(&rw2).unwrap();
    m2.mount().unwrap();
    let guard2 = Mounted(m2.clone());
    let r2 = &m2.target;
    assert_eq!(fs::read(r2.join("etc/conf")).unwrap(), b"new");
    assert!(!r2.join("etc/drop").exists());
    assert_eq!(walk(&r2.join("var/cache")), ["c"], "opaque dir exported and applied");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(r2.join("added")).unwrap().ino(), fs::metadata(r2.join("added2")).unwrap().ino());
    assert_eq!(fs::read_link(r2.join("ln")).unwrap(), std::path::Path::new("etc/conf"));
    drop(guard2);
    store.remove_rw(&rw2).unwrap();
    store.remove_rw(&rw).unwrap();
}

#[test]
fn one_layer_made_by_many_at_once_is_one_layer() {
    if !can_run("layers_at_once") {
        return;
    }
    let s = Scratch::new("at-once");
    let store = std::sync::Arc::new(LayerStore::open(&s.layer).unwrap());
    let mut t = TarBuilder::new();
    t.file("same", b"the same bytes", 0o644);
    let tar = std::sync::Arc::new(t.finish());
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (store, tar) = (store.clone(), tar.clone());
            std::thread::spawn(move || store.create(&tar[..], None, None))
        })
        .collect();
    let made: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    assert!(made.iter().all(|l| l.chain_id == made[0].chain_id && l.cache_id == made[0].cache_id));
    assert_eq!(store.list().unwrap().len(), 1);
}
