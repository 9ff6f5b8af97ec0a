//! Volumes, binds and tmpfs mounts through the stock docker CLI and the
//! berth CLI: named volumes that outlive their containers, anonymous ones
//! from `-v /path` and the image's VOLUME, filling a new volume from the
//! image, binds both ways, tmpfs sizes, `--volumes-from`, volumes of the
//! local driver's tmpfs type, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_clean, can_run, stderr, stdout, Daemon};

/// The names of the daemon's volumes.
fn volumes(d: &Daemon) -> Vec<String> {
    d.ok(&["volume", "ls", "-q"]).lines().map(str::to_owned).collect()
}

/// A docker command that must fail; its stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let o = d.docker(args);
    assert!(!o.status.success(), "docker {args:?} succeeded: {}", stdout(&o));
    stderr(&o)
}

/// An image `voltest` whose VOLUME /data has content: a file, and a
/// directory with its own owner and mode.
fn volume_image(d: &Daemon) {
    d.ok(&[
        "run",
        "--name",
        "seed",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo image > /data/f && chown 1234:5678 /data/sub && chmod 750 /data/sub",
    ]);
    d.ok(&["commit", "-c", "VOLUME /data", "seed", "voltest"]);
    d.ok(&["rm", "seed"]);
}

#[test]
fn named_volumes_outlive_containers_and_are_shared() {
    if !can_run("named volumes") {
        return;
    }
    let mut d = Daemon::start("vol-named");
    d.load_busybox();
    assert_eq!(d.ok(&["volume", "create", "--label", "team=a", "data1"]).trim(), "data1");
    // Created again: the same volume, no error.
    d.ok(&["volume", "create", "data1"]);
    let inspect = d.ok(&["volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels.team}}", "data1"]);
    assert_eq!(inspect.trim(), "data1 local local a");
    let mp = d.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data1"]).trim().to_owned();
    assert_eq!(mp, d.dir.join("data/volumes/data1/_data").display().to_string());

    // Written by one container, read by the next after the first is gone.
    d.ok(&["run", "--rm", "-v", "data1:/d", "busybox", "sh", "-c", "echo kept > /d/f"]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "data1:/d", "busybox", "cat", "/d/f"]).trim(), "kept");
    // A volume `-v` names that does not exist yet is made.
    d.ok(&["run", "--rm", "-v", "made:/m", "busybox", "touch", "/m/x"]);
    assert!(volumes(&d).contains(&"made".to_owned()));

    // Two running containers share one volume.
    d.ok(&["run", "-d", "--name", "va", "-v", "data1:/d", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "vb", "-v", "data1:/shared", "busybox", "sleep", "300"]);
    // The container list names the volume, in berth's ps as in Docker's.
    assert_eq!(d.bok(&["ps", "--filter", "name=vb", "--format", "{{.Mounts}}"]).trim(), "data1");
    assert_eq!(d.ok(&["ps", "--filter", "name=vb", "--format", "{{.Mounts}}"]).trim(), "data1");
    d.ok(&["exec", "va", "sh", "-c", "echo from-a > /d/g"]);
    assert_eq!(d.ok(&["exec", "vb", "cat", "/shared/g"]).trim(), "from-a");
    let mounts = d.ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}} {{.Driver}}{{end}}",
        "va",
    ]);
    assert_eq!(mounts.trim(), "volume data1 /d true local");
    let users = d.ok(&["ps", "--filter", "volume=data1", "--format", "{{.Names}}"]);
    assert_eq!(users.lines().count(), 2, "{users}");
    assert_eq!(d.ok(&["ps", "--filter", "volume=/shared", "--format", "{{.Names}}"]).trim(), "vb");
    // docker cp reaches the volume's files, not the root under the mount.
    let host_file = d.dir.join("to-copy");
    std::fs::write(&host_file, "copied in\n").unwrap();
    d.ok(&["cp", host_file.to_str().unwrap(), "vb:/shared/copied"]);
    assert_eq!(d.ok(&["exec", "va", "cat", "/d/copied"]), "copied in\n");
    let out_dir = d.dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    d.ok(&["cp", "va:/d", out_dir.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out_dir.join("d/copied")).unwrap(), "copied in\n");
    d.ok(&["exec", "va", "rm", "/d/copied"]);
    d.ok(&["create", "--name", "ro", "-v", "data1:/r:ro", "busybox", "true"]);
    let e = fails(&d, &["cp", host_file.to_str().unwrap(), "ro:/r/x"]);
    assert!(e.contains("read-only"), "{e}");
    d.ok(&["rm", "ro"]);
    // `:ro` refuses writes, and reads.
    let e = fails(&d, &["run", "--rm", "-v", "data1:/d:ro", "busybox", "sh", "-c", "cat /d/f && echo x > /d/h"]);
    assert!(e.contains("Read-only file system"), "{e}");

    // In use: refused, with or without -f, and nothing is lost.
    for args in [&["volume", "rm", "data1"][..], &["volume", "rm", "-f", "data1"]] {
        let e = fails(&d, args);
        assert!(e.contains("volume is in use"), "{e}");
    }
    assert_eq!(d.ok(&["exec", "vb", "cat", "/shared/f"]).trim(), "kept");

    // Filters, sizes and reference counts.
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "label=team=a"]).trim(), "data1");
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "name=ade"]).trim(), "made");
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]).trim(), "made");
    let ls = d.ok(&["volume", "ls", "--format", "{{.Name}} {{.Links}} {{.Size}}", "--filter", "name=data1"]);
    // As Docker: `volume ls` has no sizes; `system df` has them.
    assert_eq!(ls.trim(), "data1 N/A N/A", "{ls}");
    let df = d.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}}"]);
    assert!(df.contains("Local Volumes 2 1 12B"), "{df}");
    let dfv = d.ok(&["system", "df", "-v"]);
    assert!(dfv.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["data1", "2", "12B"]), "{dfv}");

    // A crash of the daemon loses nothing.
    d.crash();
    d.spawn();
    assert_eq!(volumes(&d), ["data1", "made"]);
    assert_eq!(d.ok(&["exec", "vb", "cat", "/shared/g"]).trim(), "from-a");
    d.ok(&["rm", "-f", "va", "vb"]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "data1:/d", "busybox", "cat", "/d/f"]).trim(), "kept");

    // Unused now: removed, data and all.
    assert_eq!(d.ok(&["volume", "rm", "data1"]).trim(), "data1");
    assert!(!std::path::Path::new(&mp).exists());
    let e = fails(&d, &["volume", "inspect", "data1"]);
    assert!(e.contains("no such volume"), "{e}");
    // -f: a missing volume is not an error.
    d.ok(&["volume", "rm", "-f", "data1"]);
    // Prune: anonymous volumes only, unless -a; never one a container uses.
    d.ok(&["create", "--name", "user", "-v", "inuse:/u", "busybox", "true"]);
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(!out.contains("made"), "{out}");
    let out = d.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Volumes:\nmade\n"), "{out}");
    assert_eq!(volumes(&d), ["inuse"]);
    d.ok(&["rm", "user"]);
    assert_clean(&d);
}

#[test]
fn anonymous_volumes_are_filled_from_the_image_and_go_with_their_container() {
    if !can_run("anonymous volumes") {
        return;
    }
    let d = Daemon::start("vol-anon");
    d.load_busybox();
    volume_image(&d);
    assert!(volumes(&d).is_empty());

    // The image's VOLUME: an anonymous volume filled with what the image has there.
    let ls = d.ok(&["run", "--name", "keep", "voltest", "sh", "-c", "cat /data/f; stat -c '%u:%g %a' /data/sub"]);
    assert_eq!(ls, "image\n1234:5678 750\n");
    let anon = d.ok(&["inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}", "keep"]);
    let parts: Vec<&str> = anon.split_whitespace().collect();
    assert_eq!((parts[0], parts[2], parts[1].len()), ("volume", "/data", 64), "{anon}");
    let name = parts[1].to_owned();
    let labels = d.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &name]);
    assert!(labels.contains("com.docker.volume.anonymous"), "{labels}");
    // Kept without -v, and what the container wrote is kept in it.
    d.ok(&["rm", "keep"]);
    assert_eq!(volumes(&d), std::slice::from_ref(&name));

    // --rm removes the container's anonymous volumes.
    d.ok(&["run", "--rm", "voltest", "sh", "-c", "echo more > /data/g"]);
    d.ok(&["run", "--rm", "-v", "/scratch", "busybox", "touch", "/scratch/x"]);
    assert_eq!(volumes(&d), std::slice::from_ref(&name));
    // rm -v does too; named volumes stay.
    d.ok(&["create", "--name", "rmv", "-v", "/scratch", "-v", "named:/n", "voltest", "true"]);
    assert_eq!(volumes(&d).len(), 4);
    d.ok(&["rm", "-v", "rmv"]);
    let mut left = volumes(&d);
    left.sort();
    let mut want = vec![name.clone(), "named".to_owned()];
    want.sort();
    assert_eq!(left, want);

    // A new named volume over the image's content gets it, owner and mode kept.
    let out =
        d.ok(&["run", "--rm", "-v", "fresh:/data", "voltest", "sh", "-c", "cat /data/f; stat -c '%u:%g %a' /data/sub"]);
    assert_eq!(out, "image\n1234:5678 750\n");
    // A volume with content is not filled again.
    d.ok(&["run", "--rm", "-v", "fresh:/data", "voltest", "sh", "-c", "echo changed > /data/f; rm -r /data/sub"]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "fresh:/data", "voltest", "ls", "/data"]).trim(), "f");
    assert_eq!(d.ok(&["run", "--rm", "-v", "fresh:/data", "voltest", "cat", "/data/f"]).trim(), "changed");
    // nocopy, from -v and from --mount: left empty.
    assert_eq!(d.ok(&["run", "--rm", "-v", "empty:/data:nocopy", "voltest", "ls", "-A", "/data"]), "");
    let m = "type=volume,source=empty2,target=/data,volume-nocopy";
    assert_eq!(d.ok(&["run", "--rm", "--mount", m, "voltest", "ls", "-A", "/data"]), "");
    // --mount of a volume without a source: anonymous, filled, and gone with --rm.
    let before = volumes(&d).len();
    assert_eq!(
        d.ok(&["run", "--rm", "--mount", "type=volume,target=/data", "voltest", "cat", "/data/f"]).trim(),
        "image"
    );
    assert_eq!(volumes(&d).len(), before);
    assert_clean(&d);
}

#[test]
fn binds_tmpfs_and_volumes_from() {
    if !can_run("binds and tmpfs") {
        return;
    }
    let d = Daemon::start("vol-bind");
    d.load_busybox();
    let host = d.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let h = host.display().to_string();

    // Both ways: the host's file read inside, the container's written out.
    let out =
        d.ok(&["run", "--rm", "-v", &format!("{h}:/h"), "busybox", "sh", "-c", "cat /h/in; echo from ctr > /h/out"]);
    assert_eq!(out, "from host\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "from ctr\n");
    let e = fails(&d, &["run", "--rm", "-v", &format!("{h}:/h:ro"), "busybox", "touch", "/h/no"]);
    assert!(e.contains("Read-only file system"), "{e}");
    let m = format!("type=bind,source={h},target=/h,readonly");
    let e = fails(&d, &["run", "--rm", "--mount", &m, "busybox", "touch", "/h/no"]);
    assert!(e.contains("Read-only file system"), "{e}");
    assert!(!host.join("no").exists());
    // -v makes a missing host path; --mount refuses it.
    let made = d.dir.join("made/deep");
    d.ok(&["run", "--rm", "-v", &format!("{}:/n", made.display()), "busybox", "true"]);
    assert!(made.is_dir());
    let missing = d.dir.join("missing");
    let m = format!("type=bind,source={},target=/m", missing.display());
    let o = d.docker(&["run", "--rm", "--mount", &m, "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("bind source path does not exist"), "{}", stderr(&o));
    assert!(!missing.exists());
    // Propagation as asked, shown by inspect.
    let m = format!("type=bind,source={h},target=/h,bind-propagation=rslave");
    d.ok(&["create", "--name", "prop", "--mount", &m, "busybox", "true"]);
    let p = d.ok(&["inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Source}} {{.Propagation}} {{.RW}}{{end}}", "prop"]);
    assert_eq!(p.trim(), format!("bind {h} rslave true"));
    d.ok(&["rm", "prop"]);
    // On a private mount nothing would propagate: refused, as moby does.
    let o = d.docker(&["run", "--rm", "--mount", &m, "busybox", "true"]);
    assert!(stderr(&o).contains("is not a shared or slave mount"), "{}", stderr(&o));
    // rslave for real: a mount made on the host under a shared source
    // after the start shows inside; with the default rprivate it does not.
    let shared = d.dir.join("shared");
    std::fs::create_dir_all(shared.join("sub")).unwrap();
    let sh = shared.display().to_string();
    let run = |args: &[&str]| assert!(std::process::Command::new("mount").args(args).status().unwrap().success());
    run(&["--bind", &sh, &sh]);
    run(&["--make-shared", &sh]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "slave",
        "--mount",
        &format!("type=bind,source={sh},target=/p,bind-propagation=rslave"),
        "busybox",
        "sleep",
        "300",
    ]);
    d.ok(&["run", "-d", "--name", "private", "-v", &format!("{sh}:/p"), "busybox", "sleep", "300"]);
    run(&["-t", "tmpfs", "tmpfs", &format!("{sh}/sub")]);
    std::fs::write(shared.join("sub/late"), "late\n").unwrap();
    assert_eq!(d.ok(&["exec", "slave", "cat", "/p/sub/late"]), "late\n");
    assert!(!d.docker(&["exec", "private", "cat", "/p/sub/late"]).status.success());
    d.ok(&["rm", "-f", "slave", "private"]);
    assert!(std::process::Command::new("umount").args(["-R", &sh]).status().unwrap().success());

    // tmpfs: sized, with its mode, and empty again after a stop.
    let t = "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770";
    let out = d.ok(&[
        "run",
        "--rm",
        "--mount",
        t,
        "--tmpfs",
        "/t2:size=2m",
        "busybox",
        "sh",
        "-c",
        "stat -c %a /t; df -k /t /t2 | awk 'NR>1 {print $2}'",
    ]);
    assert_eq!(out, "1770\n1024\n2048\n");
    d.ok(&["run", "-d", "--name", "tm", "--mount", t, "busybox", "sh", "-c", "ls /t; touch /t/x; sleep 300"]);
    d.ok(&["stop", "-t", "0", "tm"]);
    d.ok(&["start", "tm"]);
    d.ok(&["stop", "-t", "0", "tm"]);
    let logs = d.ok(&["logs", "tm"]);
    assert_eq!(logs, "", "the tmpfs kept x across a stop: {logs}");
    d.ok(&["rm", "tm"]);

    // --volumes-from: every volume and bind of the other, at the same paths.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "-v",
        "shared:/s",
        "-v",
        &format!("{h}:/h"),
        "busybox",
        "sh",
        "-c",
        "echo vol > /s/x; sleep 300",
    ]);
    let out = d.ok(&["run", "--rm", "--volumes-from", "src", "busybox", "sh", "-c", "sleep 0.2; cat /s/x /h/in"]);
    assert_eq!(out, "vol\nfrom host\n");
    let e = fails(&d, &["run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/s/y"]);
    assert!(e.contains("Read-only file system"), "{e}");
    let e = fails(&d, &["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert!(e.contains("No such container: nosuch"), "{e}");
    d.ok(&["rm", "-f", "src"]);
    assert_clean(&d);
}

/// The actions of the events of volume `name` so far.
fn volume_events(d: &Daemon, name: &str) -> String {
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap()
        + std::time::Duration::from_millis(200);
    let until = format!("{}.{:09}", soon.as_secs(), soon.subsec_nanos());
    let filter = format!("volume={name}");
    d.ok(&["events", "--since", "0", "--until", &until, "--filter", &filter, "--format", "{{.Action}}"])
}

#[test]
fn a_tmpfs_volume_of_the_local_driver_is_mounted_while_used() {
    if !can_run("tmpfs volumes") {
        return;
    }
    let mut d = Daemon::start("vol-tmpfs");
    d.load_busybox();
    d.ok(&["volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m,mode=1777", "tv"]);
    let mp = d.ok(&["volume", "inspect", "-f", "{{.Mountpoint}} {{.Options.type}}", "tv"]);
    let (mp, kind) = mp.trim().split_once(' ').unwrap();
    assert_eq!(kind, "tmpfs");
    let mounted = |p: &str| {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(p))
    };
    assert!(!mounted(mp));
    d.ok(&["run", "-d", "--name", "one", "-v", "tv:/v", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "two", "-v", "tv:/v", "busybox", "sleep", "300"]);
    assert!(mounted(mp));
    d.ok(&["exec", "one", "sh", "-c", "echo shared > /v/f"]);
    assert_eq!(d.ok(&["exec", "two", "cat", "/v/f"]).trim(), "shared");
    assert_eq!(d.ok(&["exec", "two", "sh", "-c", "df -k /v | awk 'NR>1 {print $2}'"]).trim(), "2048");
    assert_eq!(volume_events(&d, "tv"), "create\nmount\nmount\n");
    // A restarted daemon finds its users again: still mounted, still shared.
    d.crash();
    d.spawn();
    assert!(mounted(mp));
    assert_eq!(std::fs::read_to_string(format!("{mp}/f")).unwrap(), "shared\n");
    d.ok(&["rm", "-f", "one"]);
    assert!(mounted(mp), "unmounted while still used");
    d.ok(&["rm", "-f", "two"]);
    assert!(!mounted(mp), "still mounted with no user");
    d.ok(&["volume", "rm", "tv"]);
    // The events of before the restart went with the daemon that had them.
    assert_eq!(volume_events(&d, "tv"), "unmount\nunmount\ndestroy\n");
    // Its only user gone while the daemon was down: unmounted at restart.
    d.ok(&["volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "tv2"]);
    d.ok(&["run", "-d", "--name", "lone", "-v", "tv2:/v", "busybox", "sleep", "300"]);
    let mp2 = d.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "tv2"]).trim().to_owned();
    let pid: i32 = d.ok(&["inspect", "-f", "{{.State.Pid}}", "lone"]).trim().parse().unwrap();
    assert!(mounted(&mp2));
    d.crash();
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    d.spawn();
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "lone"]).trim(), "exited");
    assert!(!mounted(&mp2), "a volume no container uses is still mounted");
    d.ok(&["rm", "-v", "lone"]);
    d.ok(&["volume", "rm", "tv2"]);
    assert_clean(&d);
}

#[test]
fn bad_volume_input_gets_clear_errors_and_touches_nothing() {
    if !can_run("bad volume input") {
        return;
    }
    let d = Daemon::start("vol-bad");
    d.load_busybox();
    d.ok(&["volume", "create", "precious"]);
    d.ok(&["run", "--rm", "-v", "precious:/p", "busybox", "sh", "-c", "echo safe > /p/f"]);

    // A relative host path is taken for a volume name, which it cannot be.
    let o = d.docker(&["run", "--rm", "-v", "rel/dir:/x", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert!(
        e.contains("includes invalid characters for a local volume name") && e.contains("use absolute path"),
        "{e}"
    );
    let e = fails(&d, &["volume", "create", "a/b"]);
    assert!(e.contains("includes invalid characters for a local volume name"), "{e}");
    let e = fails(&d, &["volume", "create", "-d", "nope", "x1"]);
    assert!(e.contains("plugin \"nope\" not found"), "{e}");
    let e =
        fails(&d, &["run", "--rm", "--mount", "type=volume,source=x2,target=/x,volume-driver=nope", "busybox", "true"]);
    assert!(e.contains("plugin \"nope\" not found"), "{e}");
    let e = fails(&d, &["volume", "create", "-o", "bogus=1", "x3"]);
    assert!(e.contains("invalid option"), "{e}");
    let e = fails(&d, &["run", "--rm", "-v", "/a:/b:bogus", "busybox", "true"]);
    assert!(e.contains("invalid mode: bogus"), "{e}");
    let e = fails(&d, &["run", "--rm", "-v", "/scratch", "-v", "v9:/x", "-v", "/tmp:/x", "busybox", "true"]);
    assert!(e.contains("Duplicate mount point: /x"), "{e}");
    let e = fails(&d, &["run", "--rm", "--mount", "type=tmpfs,source=x,target=/t", "busybox", "true"]);
    assert!(e.contains("field Source must not be specified"), "{e}");
    let e = fails(&d, &["run", "--rm", "--volumes-from", "x:rx", "busybox", "true"]);
    assert!(e.contains("invalid mode: rx"), "{e}");
    // In use by a stopped container: refused.
    d.ok(&["create", "--name", "holder", "-v", "precious:/p", "busybox", "true"]);
    let e = fails(&d, &["volume", "rm", "precious"]);
    assert!(e.contains("volume is in use"), "{e}");
    d.ok(&["rm", "holder"]);
    // Nothing was made by the failures; the volume's data is whole.
    assert_eq!(volumes(&d), ["precious"]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "precious:/p", "busybox", "cat", "/p/f"]).trim(), "safe");

    // The API's statuses.
    assert_eq!(d.http("POST", "/volumes/create", b"{\"Name\": 5}").0, 400);
    assert_eq!(d.http("POST", "/volumes/create", b"{\"Name\": \"a/b\"}").0, 400);
    assert_eq!(d.http("POST", "/volumes/create", b"{\"Name\": \"v\", \"Driver\": \"nope\"}").0, 404);
    assert_eq!(d.http("GET", "/volumes/nosuch", b"").0, 404);
    assert_eq!(d.http("DELETE", "/volumes/nosuch", b"").0, 404);
    assert_eq!(d.http("DELETE", "/volumes/nosuch?force=1", b"").0, 204);
    assert_eq!(d.http("GET", "/volumes?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D", b"").0, 400);
    assert_eq!(d.http("GET", "/volumes?filters=notjson", b"").0, 400);
    let (code, body) = d.http("POST", "/v1.50/volumes/create", b"");
    assert_eq!(code, 201, "{body}");
    let anon: serde_json::Value = serde_json::from_str(&body).unwrap();
    // API 1.42 on, prune takes anonymous volumes only unless all=true.
    let (code, body) = d.http("POST", "/v1.50/volumes/prune", b"");
    assert_eq!(code, 200, "{body}");
    let pruned: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pruned["VolumesDeleted"], serde_json::json!([anon["Name"]]));
    assert_eq!(volumes(&d), ["precious"]);
    // Before 1.42, every unused volume; one in use stays.
    d.ok(&["create", "--name", "holder", "-v", "precious:/p", "busybox", "true"]);
    d.ok(&["volume", "create", "oldapi"]);
    let (code, body) = d.http("POST", "/v1.41/volumes/prune", b"");
    assert_eq!(code, 200, "{body}");
    let pruned: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pruned["VolumesDeleted"], serde_json::json!(["oldapi"]));
    d.ok(&["rm", "holder"]);
    assert_eq!(volumes(&d), ["precious"]);
    assert_clean(&d);
}

#[test]
fn berth_cli_manages_volumes() {
    if !can_run("berth volume") {
        return;
    }
    let d = Daemon::start("vol-cli");
    d.load_busybox();
    assert_eq!(d.bok(&["volume", "create", "--label", "k=v", "bv"]).trim(), "bv");
    let anon = d.bok(&["volume", "create"]).trim().to_owned();
    assert_eq!(anon.len(), 64);
    let ls = d.bok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER") && ls.contains("local") && ls.contains("bv"), "{ls}");
    assert_eq!(d.bok(&["volume", "ls", "-q", "--filter", "label=k=v"]).trim(), "bv");
    assert_eq!(d.bok(&["volume", "inspect", "-f", "{{.Labels.k}}", "bv"]).trim(), "v");
    assert_eq!(d.bok(&["inspect", "--type", "volume", "-f", "{{.Driver}}", "bv"]).trim(), "local");
    d.bok(&["run", "--rm", "-v", "bv:/d", "busybox", "sh", "-c", "echo x > /d/f"]);
    let m = "type=volume,source=bv,target=/d,readonly";
    assert_eq!(d.bok(&["run", "--rm", "--mount", m, "busybox", "cat", "/d/f"]).trim(), "x");
    d.bok(&["create", "--name", "c1", "-v", "bv:/d", "busybox", "true"]);
    let o = d.berth(&["volume", "rm", "bv"]);
    assert!(!o.status.success() && stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    d.bok(&["rm", "c1"]);
    // Anonymous only by default; -a takes the named ones too.
    let out = d.bok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains(&format!("Deleted Volumes:\n{anon}\n")) && !out.contains("bv\n"), "{out}");
    let anon = d.bok(&["volume", "create"]).trim().to_owned();
    let out = d.bok(&["volume", "prune", "-f"]);
    assert!(out.contains(&anon) && !out.contains("bv\n"), "{out}");
    let out = d.bok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("bv"), "{out}");
    assert!(d.bok(&["volume", "ls", "-q"]).is_empty());
    assert_clean(&d);
}

#[test]
fn volume_subpaths_mount_what_is_inside_the_volume_only() {
    if !can_run("volume subpaths") {
        return;
    }
    let d = Daemon::start("subpath");
    d.load_busybox();
    d.ok(&["volume", "create", "sv"]);
    let fill = "mkdir -p /data/sub/dir && echo in-sub > /data/sub/dir/f && ln -s / /data/escape && ln -s ../../.. /data/sub/root";
    d.ok(&["run", "--rm", "--network", "none", "-v", "sv:/data", "busybox", "sh", "-c", fill]);
    let run = |sub: &str, dst: &str, cmd: &[&str]| {
        let m = format!("type=volume,src=sv,dst={dst},volume-subpath={sub}");
        let mut a = vec!["run", "--rm", "--network", "none", "--mount", &m, "busybox"];
        a.extend_from_slice(cmd);
        d.docker(&a)
    };
    let o = run("sub/dir", "/m", &["cat", "/m/f"]);
    assert_eq!(stdout(&o), "in-sub\n", "{}", stderr(&o));
    // A file alone.
    let o = run("sub/dir/f", "/one", &["cat", "/one"]);
    assert_eq!(stdout(&o), "in-sub\n", "{}", stderr(&o));
    // Symlinks resolve inside the volume: `/` is its root, not the host's.
    for sub in ["escape", "sub/root"] {
        let o = run(sub, "/m", &["ls", "/m"]);
        let out = stdout(&o);
        let listed: Vec<&str> = out.split_whitespace().map(|s| s.trim_end_matches('/')).collect();
        assert!(listed.contains(&"sub") && !listed.contains(&"proc"), "{sub}: {listed:?} {}", stderr(&o));
    }
    // What is not in the volume, or climbs out of it, is refused.
    let o = run("nothing/here", "/m", &["true"]);
    assert!(!o.status.success() && stderr(&o).contains("subpath nothing/here"), "{}", stderr(&o));
    let body = br#"{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"volume","Source":"sv","Target":"/m","VolumeOptions":{"Subpath":"../x"}}]}}"#;
    let (s, b) = d.http("POST", "/containers/create", body);
    assert!(s == 400 && b.contains("subpath must be a relative path within the volume"), "{s} {b}");
    // Nothing of the staging is left, and the volume keeps its files.
    assert!(!d.dir.join("run/subpaths").exists(), "staged subpaths left");
    assert_eq!(
        d.ok(&["run", "--rm", "--network", "none", "-v", "sv:/v", "busybox", "cat", "/v/sub/dir/f"]),
        "in-sub\n"
    );
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    d.ok(&["volume", "rm", "sv"]);
    assert_clean(&d);
}
