//! `docker import` and `docker export`: a root file system tar in as a
//! one-layer image with config changes, and a container's merged root out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use berth_image::fixture;
use berth_image::rootfs::{export, export_image, import, ImportOptions};
use berth_image::{Error, ImageStore, Reference};
use common::{can_run, gzip, tree, with_rootfs, Scratch};

fn counts(store: &ImageStore) -> (usize, usize, usize) {
    (store.list().unwrap().len(), store.layers.list().unwrap().len(), store.content.list().unwrap().len())
}

#[test]
fn import_makes_a_one_layer_image_with_changes() {
    if !can_run("import") {
        return;
    }
    let s = Scratch::new("import");
    let store = ImageStore::open(&s.layer).unwrap();
    let busybox = fixture::busybox(Path::new("/bin/busybox")).unwrap();
    let opts = ImportOptions {
        changes: vec![
            r#"CMD ["sh", "-c", "echo hi"]"#.into(),
            "ENV GREETING=hello".into(),
            "EXPOSE 8080".into(),
            "WORKDIR /srv".into(),
            "LABEL made=import".into(),
        ],
        message: None,
        source: "-".into(),
        tag: Some(Reference::parse("imported:1").unwrap()),
    };
    let rec = import(&store, &gzip(&busybox.layers[0])[..], &opts).unwrap();
    assert_eq!(store.resolve("imported:1").unwrap(), rec.id);
    let cfg = store.config(&rec.id).unwrap();
    let run = cfg.run();
    assert_eq!(run.cmd.unwrap(), ["sh", "-c", "echo hi"]);
    assert_eq!(run.env.unwrap(), ["GREETING=hello"]);
    assert!(run.exposed_ports.unwrap().contains_key("8080/tcp"));
    assert_eq!(run.working_dir.as_deref(), Some("/srv"));
    assert_eq!(run.labels.unwrap()["made"], "import");
    assert_eq!((cfg.os.as_str(), cfg.architecture.as_str()), ("linux", "amd64"));
    assert_eq!(cfg.history[0].comment.as_deref(), Some("Imported from -"));
    assert_eq!(cfg.rootfs.diff_ids, busybox.diff_ids(), "the diff id is of the uncompressed tar");
    let layer = store.layers.get(rec.top_layer.as_ref().unwrap()).unwrap().unwrap();
    assert!(store.content.contains(layer.blob.as_ref().unwrap()), "the tar is kept as the layer's blob");
    let files = with_rootfs(&store, "imported:1", tree);
    assert!(files["/bin/busybox"].starts_with("file 755 0:0"), "{}", files["/bin/busybox"]);

    // A bad change or a broken tar stores nothing.
    let before = counts(&store);
    let bad = ImportOptions { changes: vec!["RUN rm -rf /".into()], ..ImportOptions::default() };
    let e = import(&store, &busybox.layers[0][..], &bad).unwrap_err();
    assert!(e.to_string().contains("run is not a valid change command"), "{e}");
    let mut cut = gzip(&busybox.layers[0]);
    cut.truncate(cut.len() / 2);
    let e = import(&store, &cut[..], &ImportOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Io { .. } | Error::Invalid(_)), "{e:?}");
    assert_eq!(counts(&store), before);
    assert_eq!(std::fs::read_dir(s.layer.join("blobs/ingest")).unwrap().count(), 0);
}

/// The names, kinds and sizes of a tar's entries.
fn entries(tar_bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

#[test]
fn export_writes_the_merged_root() {
    if !can_run("export") {
        return;
    }
    let s = Scratch::new("export");
    let store = ImageStore::open(&s.layer).unwrap();
    let img = fixture::layered(Path::new("/bin/busybox")).unwrap();
    let mut parent = None;
    for l in &img.layers {
        parent = Some(store.create_layer(&l[..], parent.as_ref()).unwrap().chain_id);
    }
    let id = store.add(&img.config).unwrap().id;
    store.tag(&Reference::parse("fx:layered").unwrap(), &id).unwrap();

    // A "running" container: its root mounted and changed.
    let rw = store.layers.create_rw("ctr", parent.as_ref()).unwrap();
    let m = store.layers.mount_of(&rw).unwrap();
    m.mount().unwrap();
    std::fs::write(m.target.join("new"), b"new\n").unwrap();
    std::fs::remove_file(m.target.join("data/keep")).unwrap();
    let mut out = Vec::new();
    let exported = export(&store, &rw, &mut out);
    let merged = tree(&m.target);
    m.unmount().unwrap();
    exported.unwrap();
    let names = entries(&out);
    assert!(names.iter().any(|n| n == "bin/busybox"));
    assert!(names.iter().any(|n| n == "new"));
    for gone in ["data/keep", "data/gone", "data/swap/old"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} is deleted in the merged root");
    }
    assert!(!names.iter().any(|n| n.contains(".wh.")), "no whiteouts in an export: {names:?}");

    // The export unpacks to exactly the merged tree.
    let unpacked = s.base.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    berth_image::unpack::apply(&unpacked, &out[..]).unwrap();
    assert_eq!(tree(&unpacked), merged);

    // Stopped (unmounted) the same; an image exports as its own root.
    let mut again = Vec::new();
    export(&store, &rw, &mut again).unwrap();
    assert!(again == out, "the same tree exports to the same bytes");
    let mut image_tar = Vec::new();
    export_image(&store, "fx:layered", &mut image_tar).unwrap();
    let image_names = entries(&image_tar);
    assert!(image_names.iter().any(|n| n == "data/keep") && !image_names.iter().any(|n| n == "new"));

    // Nothing left behind: no view directory, no mount, one container layer.
    let dir = m.target.parent().unwrap();
    let leftover: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!leftover.iter().any(|n| n.to_string_lossy().starts_with(".export")), "{leftover:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&s.layer.display().to_string()), "no mount left");
    assert_eq!(store.layers.list_rw().unwrap().len(), 1);
    store.layers.remove_rw(&rw).unwrap();
}
