//! Layer tars applied for real (root: owners, devices, trusted xattrs),
//! including crafted hostile archives that must fail cleanly or stay inside
//! the layer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_image::unpack::apply;
use berth_image::{Digest, Error};
use common::{can_run, getxattr, Scratch, TarBuilder};

#[test]
fn everything_a_layer_holds() {
    if !can_run("everything_a_layer_holds") {
        return;
    }
    let s = Scratch::new("all");
    let mut t = TarBuilder::new();
    t.dir("etc", 0o755, 0, 0, 1_000_000);
    t.dir("opt/app", 0o750, 1000, 1000, 1_200_000);
    t.file_x(
        "opt/app/run",
        b"#!/bin/sh\n",
        0o4755,
        (1000, 1000, 1_300_000),
        &[
            ("user.note", b"hi"),
            (
                "security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
        ],
    );
    t.symlink("etc/alias", "../opt/app/run");
    t.hardlink("opt/app/run2", "opt/app/run");
    t.device("dev/console", b'3', 5, 1);
    t.device("dev/fifo", b'6', 0, 0);
    t.file("gone/.wh.old", b"", 0o644);
    t.file("dark/.wh..wh..opq", b"", 0o644);
    t.file("dark/kept", b"new", 0o644);
    let bytes = t.finish();

    let u = apply(&s.layer, &bytes[..]).unwrap();
    assert_eq!(u.diff_id.digest(), &Digest::sha256(&bytes));
    assert_eq!(u.size, 10 + 3);
    let l = &s.layer;
    let run = fs::metadata(l.join("opt/app/run")).unwrap();
    assert_eq!(run.permissions().mode() & 0o7777, 0o4755, "setuid kept after chown");
    assert_eq!((run.uid(), run.gid()), (1000, 1000));
    assert_eq!(run.mtime(), 1_300_000);
    assert_eq!(run.nlink(), 2, "hardlinked");
    assert_eq!(getxattr(&l.join("opt/app/run"), "user.note").as_deref(), Some(&b"hi"[..]));
    assert!(getxattr(&l.join("opt/app/run"), "security.capability").is_some());
    let app = fs::metadata(l.join("opt/app")).unwrap();
    assert_eq!((app.permissions().mode() & 0o7777, app.uid(), app.mtime()), (0o750, 1000, 1_200_000));
    assert_eq!(fs::read_link(l.join("etc/alias")).unwrap(), Path::new("../opt/app/run"));
    let console = fs::symlink_metadata(l.join("dev/console")).unwrap();
    assert!(console.file_type().is_char_device());
    assert_eq!(console.rdev(), libc::makedev(5, 1));
    assert!(fs::symlink_metadata(l.join("dev/fifo")).unwrap().file_type().is_fifo());
    let wh = fs::symlink_metadata(l.join("gone/old")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is a 0:0 char device");
    assert!(!l.join("gone/.wh.old").exists());
    assert_eq!(getxattr(&l.join("dark"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(!l.join("dark/.wh..wh..opq").exists());
    assert_eq!(fs::read(l.join("dark/kept")).unwrap(), b"new");
}

#[test]
fn compressed_layers_have_the_diff_id_of_their_tar() {
    if !can_run("compressed_layers") {
        return;
    }
    let mut t = TarBuilder::new();
    t.file("a/b", &vec![b'x'; 100_000], 0o644);
    let tar = t.finish();
    let gz = common::gzip(&tar);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (name, blob) in [("plain", &tar), ("gzip", &gz), ("zstd", &zst)] {
        let s = Scratch::new(name);
        let u = apply(&s.layer, &blob[..]).unwrap();
        assert_eq!(u.diff_id.digest(), &Digest::sha256(&tar), "{name}");
        assert_eq!(fs::read(s.layer.join("a/b")).unwrap().len(), 100_000);
    }
    // A gzip cut short is an error, not a silently short layer.
    let s = Scratch::new("cut");
    let err = apply(&s.layer, &gz[..gz.len() / 2]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

#[test]
fn later_entries_replace_earlier_ones() {
    if !can_run("later_entries") {
        return;
    }
    let s = Scratch::new("replace");
    let mut t = TarBuilder::new();
    t.file("x/f", b"1", 0o644);
    t.file("x", b"now a file", 0o644);
    t.dir("y", 0o755, 0, 0, 0);
    t.file("y/keep", b"k", 0o644);
    t.dir("y", 0o700, 0, 0, 0);
    let bytes = t.finish();
    apply(&s.layer, &bytes[..]).unwrap();
    assert_eq!(fs::read(s.layer.join("x")).unwrap(), b"now a file");
    assert_eq!(fs::read(s.layer.join("y/keep")).unwrap(), b"k", "a dir over a dir keeps its content");
    assert_eq!(fs::metadata(s.layer.join("y")).unwrap().permissions().mode() & 0o777, 0o700);
}

/// Every hostile case: the outside directory stays untouched.
#[test]
fn hostile_archives_stay_contained() {
    if !can_run("hostile_archives") {
        return;
    }
    type Case = (&'static str, fn(&mut TarBuilder, &Path), bool);
    let cases: &[Case] = &[
        ("dotdot", |t, _| t.file("../escaped", b"x", 0o644), true),
        ("dotdot-deep", |t, _| t.file("a/../../escaped", b"x", 0o644), true),
        ("absolute", |t, out| t.file(&format!("{}/escaped", out.display()), b"x", 0o644), false),
        (
            "symlink-parent",
            |t, out| {
                t.symlink("link", &out.display().to_string());
                t.file("link/escaped", b"x", 0o644);
            },
            false,
        ),
        (
            "symlink-parent-relative",
            |t, _| {
                t.symlink("up", "../../../../../../../../..");
                t.file("up/tmp/escaped", b"x", 0o644);
            },
            false,
        ),
        (
            "symlink-then-file",
            |t, out| {
                t.symlink("f", &format!("{}/victim", out.display()));
                t.file("f", b"overwritten?", 0o644);
            },
            false,
        ),
        (
            "symlink-then-dir",
            |t, out| {
                t.symlink("d", &out.display().to_string());
                t.dir("d", 0o777, 0, 0, 0);
            },
            false,
        ),
        ("hardlink-dotdot", |t, _| t.hardlink("h", "../outside/victim"), true),
        ("hardlink-absolute", |t, out| t.hardlink("h", &format!("{}/victim", out.display())), true),
        (
            "hardlink-via-symlink",
            |t, out| {
                t.symlink("s", &out.display().to_string());
                t.hardlink("h", "s/victim");
            },
            true,
        ),
        (
            "whiteout-via-symlink",
            |t, out| {
                t.symlink("w", &out.display().to_string());
                t.file("w/.wh.victim", b"", 0o644);
            },
            false,
        ),
        (
            "opaque-via-symlink",
            |t, out| {
                t.symlink("o", &out.display().to_string());
                t.file("o/.wh..wh..opq", b"", 0o644);
            },
            false,
        ),
    ];
    for (name, build, must_fail) in cases {
        let s = Scratch::new(name);
        let victim = s.outside.join("victim");
        fs::write(&victim, b"original").unwrap();
        let mut t = TarBuilder::new();
        build(&mut t, &s.outside);
        let bytes = t.finish();
        let r = apply(&s.layer, &bytes[..]);
        if *must_fail {
            assert!(r.is_err(), "{name}: should fail");
        } else {
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let outside: Vec<_> = fs::read_dir(&s.outside).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(outside, ["victim"], "{name}: nothing new outside");
        assert_eq!(fs::read(&victim).unwrap(), b"original", "{name}: victim untouched");
        let vm = fs::symlink_metadata(&victim).unwrap();
        assert!(vm.file_type().is_file() && vm.nlink() == 1, "{name}: victim not linked or replaced");
        assert!(getxattr(&s.outside, "trusted.overlay.opaque").is_none(), "{name}");
        assert!(!s.base.join("escaped").exists(), "{name}");
        if matches!(*name, "absolute" | "symlink-parent") {
            let inside = s.layer.join(s.outside.strip_prefix("/").unwrap()).join("escaped");
            assert_eq!(fs::read(&inside).unwrap(), b"x", "{name}: written inside the layer instead");
        }
    }
}
