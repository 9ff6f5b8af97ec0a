//! A container's files and images against berthd: diff, export, commit
//! then run, history, tag, save and load, rmi and prune.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn commit_diff_export_and_image_commands() {
    if !can_run("images") {
        return;
    }
    let d = Daemon::start("images");
    d.load_busybox();
    d.ok(&["run", "--name", "maker", "busybox", "sh", "-c", "echo hello > /greeting; rm /bin/vi; mkdir /made"]);

    // diff: only what the container did, not the mount points made for it.
    let diff = d.ok(&["diff", "maker"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(lines, ["C /bin", "D /bin/vi", "A /greeting", "A /made"], "{diff}");

    // ps -s: the container's own bytes and, with its image, the virtual size.
    let size = d.ok(&["ps", "-a", "-s", "--format", "{{.Size}}"]);
    assert!(size.starts_with("6B (virtual ") && size.contains("MB)"), "{size}");

    // export: the whole root as a tar.
    let out = d.docker(&["export", "maker"]);
    assert!(out.status.success());
    let tar = d.dir.join("export.tar");
    std::fs::write(&tar, &out.stdout).unwrap();
    let list = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let names = stdout(&list);
    assert!(names.lines().any(|l| l == "greeting") && names.lines().any(|l| l == "bin/busybox"), "{names}");
    assert!(!names.lines().any(|l| l == "bin/vi"));

    // commit with changes, then run the new image.
    let id = d.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/greeting\"]",
        "-c",
        "ENV FROM=commit",
        "-m",
        "made by a test",
        "-a",
        "tester",
        "maker",
        "made:v1",
    ]);
    assert!(id.trim().starts_with("sha256:") && id.trim().len() == 71, "{id}");
    assert_eq!(d.ok(&["run", "--rm", "made:v1"]), "hello\n");
    assert_eq!(
        d.ok(&["run", "--rm", "made:v1", "sh", "-c", "echo $FROM; test -e /bin/vi || echo gone"]),
        "commit\ngone\n"
    );
    let fmt = "{{.Author}}|{{.Comment}}|{{json .Config.Cmd}}|{{len .RootFS.Layers}}";
    let base_layers =
        d.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "busybox"]).trim().parse::<usize>().unwrap();
    assert_eq!(
        d.ok(&["image", "inspect", "-f", fmt, "made:v1"]).trim(),
        format!("tester|made by a test|[\"cat\",\"/greeting\"]|{}", base_layers + 1)
    );
    let hist = d.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "made:v1"]);
    assert!(hist.lines().next().unwrap().ends_with("|made by a test"), "{hist}");
    assert_eq!(hist.lines().count(), base_layers + 1, "{hist}");
    // A bad change stores nothing.
    let o = d.docker(&["commit", "-c", "FROBNICATE x", "maker", "bad:v1"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(!d.ok(&["images", "--format", "{{.Repository}}"]).contains("bad"));

    // tag, save both names, remove, load again.
    d.ok(&["tag", "made:v1", "registry.test/made:v2"]);
    let saved = d.dir.join("saved.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "made:v1", "registry.test/made:v2"]);
    // rmi: the image is used by no container; names go one by one.
    assert!(d.ok(&["rmi", "registry.test/made:v2"]).contains("Untagged: registry.test/made:v2"));
    let gone = d.ok(&["rmi", "made:v1"]);
    assert!(gone.contains("Untagged: made:v1") && gone.contains(&format!("Deleted: {}", id.trim())), "{gone}");
    let loaded = d.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.contains("made:v1") && loaded.contains("registry.test/made:v2"), "{loaded}");
    assert_eq!(d.ok(&["run", "--rm", "registry.test/made:v2"]), "hello\n");

    // An image in use by a container is refused without force.
    let o = d.docker(&["rmi", "busybox"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is using its referenced image"), "{o:?}");
    // prune -a removes what no container uses, and keeps busybox (maker uses it).
    d.ok(&["image", "prune", "-af"]);
    let left = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(left.trim(), "busybox:latest", "{left}");
    d.ok(&["rm", "maker"]);
    assert_clean(&d);
}
