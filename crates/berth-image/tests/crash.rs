//! Crash safety: `berth-image load` killed with SIGKILL at random points,
//! then the store reopened. It must be consistent every time (no image
//! without all its layers, no layer without its files, no name without its
//! image, no partial blob), and a load after the crash must complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::fixture::{self, FixtureImage};
use berth_image::{Digest, ImageStore, Reference};
use common::{can_run, Scratch};

const BIN: &str = env!("CARGO_BIN_EXE_berth-image");

/// Random-ish numbers without a crate: xorshift seeded from the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng(t | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(n).collect()
    }
}

/// The layered fixture and three more layers, each a big file and many
/// small ones, so a load spends time in every phase.
fn big_image(rng: &mut Rng) -> FixtureImage {
    let mut img = fixture::layered(Path::new("/bin/busybox")).unwrap();
    for i in 0..3 {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: String, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_000);
            h.set_uid(0);
            h.set_gid(0);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(format!("big{i}"), &rng.bytes(2 << 20));
        for j in 0..300 {
            add(format!("small{i}/{j}"), &rng.bytes(64));
        }
        img.layers.push(b.into_inner().unwrap());
    }
    let diff_ids: Vec<String> = img.diff_ids().iter().map(|d| d.to_string()).collect();
    img.config = serde_json::to_vec(&serde_json::json!({ "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids } }))
    .unwrap();
    img
}

fn load(root: &Path, archive: &Path) -> std::process::Child {
    Command::new(BIN)
        .arg("--root")
        .arg(root)
        .arg("load")
        .arg("-i")
        .arg(archive)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Everything the store records is whole.
fn check(root: &Path) -> (usize, usize) {
    let store = ImageStore::open(root).unwrap();
    assert_eq!(std::fs::read_dir(root.join("blobs/ingest")).unwrap().count(), 0, "partial blobs collected");
    for d in store.content.list().unwrap() {
        d.verify(&store.content.read(&d).unwrap()).unwrap_or_else(|_| panic!("blob {d} is whole"));
    }
    let layers = store.layers.list().unwrap();
    let mut cache_ids: Vec<String> = Vec::new();
    for l in &layers {
        assert!(store.layers.diff_dir(l).is_dir(), "layer {} has its files", l.chain_id);
        if let Some(p) = &l.parent {
            assert!(store.layers.get(p).unwrap().is_some(), "parent of {} recorded", l.chain_id);
        }
        assert!(store.content.contains(l.blob.as_ref().unwrap()), "blob of {} kept", l.chain_id);
        cache_ids.push(l.cache_id.clone());
    }
    let overlay = root.join("overlay");
    for e in std::fs::read_dir(&overlay).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(n == "l" || cache_ids.contains(&n), "overlay/{n} belongs to a recorded layer");
    }
    for e in std::fs::read_dir(overlay.join("l")).unwrap().flatten() {
        assert!(e.path().join(".").is_dir(), "link {:?} resolves", e.file_name());
    }
    let images = store.list().unwrap();
    for img in &images {
        let cfg = store.config(&img.id).unwrap();
        let chain = store.layers.chain(img.top_layer.as_ref().unwrap()).unwrap();
        assert_eq!(chain.len(), cfg.rootfs.diff_ids.len(), "image {} has every layer", img.id);
    }
    if let Ok(raw) = std::fs::read(root.join("repositories.json")) {
        let repos: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        for (name, id) in repos["refs"].as_object().unwrap() {
            let id: Digest = id.as_str().unwrap().parse().unwrap();
            assert!(images.iter().any(|i| *i.id.digest() == id), "{name} names a recorded image");
        }
    }
    (images.len(), layers.len())
}

#[test]
fn a_load_killed_anywhere_leaves_a_consistent_store() {
    if !can_run("crash_load") {
        return;
    }
    let mut rng = Rng::new();
    let s = Scratch::new("crash");
    let img = big_image(&mut rng);
    let archive = s.base.join("big.tar");
    let name = Reference::parse("crash:big").unwrap();
    fixture::write_archive(&[(&img, &name)], std::fs::File::create(&archive).unwrap()).unwrap();

    let t0 = Instant::now();
    assert!(load(&s.base.join("timing"), &archive).wait().unwrap().success());
    let full = t0.elapsed();
    let _ = std::fs::remove_dir_all(s.base.join("timing"));

    let mut outcomes = Vec::new();
    for i in 0..12 {
        let root = s.base.join(format!("r{i}"));
        let mut child = load(&root, &archive);
        // Half the kills anywhere in the load, half near its end, where
        // layers, the image and its name are recorded.
        let t = full.as_micros() as u64;
        let delay = Duration::from_micros(if i % 2 == 0 {
            rng.next() % t.max(1)
        } else {
            t * 7 / 10 + rng.next() % (t * 6 / 10).max(1)
        });
        std::thread::sleep(delay);
        // SAFETY: a pid this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        let (images, layers) = check(&root);
        outcomes.push((delay, status.success(), images, layers));
        // The store recovers: a new load completes and the image is whole.
        assert!(load(&root, &archive).wait().unwrap().success(), "load after a crash");
        assert_eq!(check(&root), (1, img.layers.len()));
        let store = ImageStore::open(&root).unwrap();
        let tree = common::with_rootfs(&store, "crash:big", common::tree);
        assert!(tree.contains_key("/big2") && tree.contains_key("/data/swap/new") && !tree.contains_key("/data/gone"));
        assert!(store.prune_blobs().unwrap().is_empty(), "no blob left unreferenced: {i}");
        drop(store);
        std::fs::remove_dir_all(&root).unwrap();
    }
    eprintln!("full load {full:?}; kills (delay, finished, images, layers): {outcomes:?}");
    assert!(outcomes.iter().any(|o| !o.1), "some kills landed mid-load");
}
