//! The berth CLI against a berthd of the test's own: Docker's verbs and
//! flags, exit codes, formats and terminals, checked against what the
//! container and the daemon report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_clean, berth_bin, can_run, stderr, stdout, Daemon};

/// The busybox fixture, loaded with `berth load`.
fn load(d: &Daemon) {
    let tar = d.fixture();
    let loaded = d.bok(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(loaded, "Loaded image: busybox:latest\n");
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn script_available(what: &str) -> bool {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{what}: needs script (bsdutils)");
        return false;
    }
    true
}

#[test]
fn run_exit_codes_streams_and_errors() {
    if !can_run("berth run") {
        return;
    }
    let d = Daemon::start("cli-run");
    load(&d);
    assert_eq!(d.bok(&["run", "--rm", "busybox", "echo", "hello", "-n"]), "hello -n\n");
    // Exit codes: the command's own, 127 not found, 126 not executable,
    // 125 for what the daemon or the flags refuse.
    assert_eq!(d.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]).status.code(), Some(3));
    let o = d.berth(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("executable file not found"), "{}", stderr(&o));
    assert_eq!(d.berth(&["run", "--rm", "busybox", "/etc/passwd"]).status.code(), Some(126));
    let o = d.berth(&["run", "--rm", "nosuchimage"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("Unable to find image 'nosuchimage' locally"), "{}", stderr(&o));
    let o = d.berth(&["run", "-m", "lots", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("invalid size"), "{}", stderr(&o));
    assert_eq!(d.berth(&["run", "--no-such-flag", "busybox"]).status.code(), Some(125));
    assert_eq!(d.berth(&["run", "--rm", "--restart", "always", "busybox"]).status.code(), Some(125));
    // stdin, stdout and stderr apart.
    let o = d.berth_in(&["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo err >&2; exit 4"], Some(b"piped\n"));
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str(), o.status.code()), ("piped\n", "err\n", Some(4)));
    // Flags reach the container.
    let out = d.bok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "-h",
        "boxhost",
        "--add-host",
        "db:10.1.2.3",
        "--label",
        "k=v",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u):$(id -g) $(hostname); grep db /etc/hosts",
    ]);
    assert!(out.starts_with("1 /tmp 1000:1000 boxhost\n10.1.2.3"), "{out}");
    let out = d.bok(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "--cap-drop",
        "ALL",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>/dev/null && echo rw || echo ro; touch /scratch/y && echo tmpfs; grep CapEff /proc/self/status",
    ]);
    assert!(out.contains("ro\ntmpfs\nCapEff:\t0000000000000000"), "{out}");
    // -d, logs -f to the end, and --tail and -t.
    let id = d.bok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo t$i; sleep 0.2; done",
    ]);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(d.bok(&["logs", "-f", "ticker"]), "t1\nt2\nt3\n");
    assert_eq!(d.bok(&["logs", "--tail", "1", "ticker"]), "t3\n");
    let stamped = d.bok(&["logs", "-t", "ticker"]);
    for l in stamped.lines() {
        let (ts, rest) = l.split_once(' ').unwrap();
        assert!(ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && rest.starts_with('t'), "{l}");
    }
    assert_eq!(d.bok(&["wait", "ticker"]), "0\n");
    // Errors name what is missing, and exit 1.
    let o = d.berth(&["stop", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Error response from daemon: No such container: nosuch"), "{}", stderr(&o));
    let o = d.berth(&["inspect", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such object: nosuch"));
    d.bok(&["rm", "ticker"]);
    assert_clean(&d);
}

#[test]
fn lifecycle_ps_inspect_exec() {
    if !can_run("berth lifecycle") {
        return;
    }
    let d = Daemon::start("cli-life");
    load(&d);
    d.bok(&["run", "-d", "--init", "--name", "one", "-l", "tier=web", "busybox", "sleep", "600"]);
    d.bok(&["create", "--name", "two", "-l", "tier=db", "busybox", "sh", "-c", "exit 9"]);
    d.bok(&["start", "two"]);
    assert_eq!(d.bok(&["wait", "two"]), "9\n");
    // ps: running only by default, -a, filters, formats.
    let ps = d.bok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE     COMMAND"), "{ps}");
    assert!(ps.contains(" one\n") && !ps.contains("two"), "{ps}");
    assert_eq!(d.bok(&["ps", "-a", "--format", "{{.Names}}"]), "two\none\n");
    assert_eq!(d.bok(&["ps", "-a", "--filter", "label=tier=db", "--format", "{{.Names}} {{.State}}"]), "two exited\n");
    assert_eq!(d.bok(&["ps", "-a", "--filter", "exited=9", "--format", "{{.Names}}"]), "two\n");
    assert_eq!(d.bok(&["ps", "--filter", "status=running", "-q"]).trim().len(), 12);
    assert_eq!(d.bok(&["ps", "-a", "-n", "1", "--format", "{{.Names}}"]), "two\n");
    assert_eq!(d.bok(&["ps", "-aq", "--no-trunc", "--filter", "name=one"]).trim().len(), 64);
    let table = d.bok(&["ps", "-a", "--format", "table {{.Names}}\\t{{.Labels}}"]);
    assert_eq!(table, "NAMES     LABELS\ntwo       tier=db\none       tier=web\n");
    let json: serde_json::Value = serde_json::from_str(d.bok(&["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Names"], "one");
    assert_eq!(d.bok(&["ps", "--format", "{{.Networks}}|{{.Mounts}}", "--filter", "name=one"]), "bridge|\n");
    // inspect with Go templates.
    let pid: i32 = d.bok(&["inspect", "-f", "{{.State.Pid}}", "one"]).trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&d.bok(&["inspect", "--format", "{{json .Config}}", "one"])).unwrap();
    assert_eq!(cfg["Cmd"], serde_json::json!(["sleep", "600"]));
    let out = d.bok(&[
        "inspect", "-f", "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{end}} {{len .Config.Cmd}} {{index .Config.Cmd 0}} {{.State.Status}}",
        "one", "two",
    ]);
    assert_eq!(out, "tier=web 2 sleep running\ntier=db 3 sh exited\n");
    let all: serde_json::Value = serde_json::from_str(&d.bok(&["inspect", "one", "busybox"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert!(all[1]["RepoTags"].to_string().contains("busybox:latest"));
    // exec: exit code, env, workdir, user; -d; top.
    let o = d.berth(&[
        "exec",
        "-e",
        "X=7",
        "-w",
        "/etc",
        "-u",
        "nobody",
        "one",
        "sh",
        "-c",
        "echo $X $(pwd) $(id -un); exit 5",
    ]);
    assert_eq!((stdout(&o).as_str(), o.status.code()), ("7 /etc nobody\n", Some(5)));
    let o = d.berth_in(&["exec", "-i", "one", "sh", "-c", "cat; echo end"], Some(b"in\n"));
    assert_eq!(stdout(&o), "in\nend\n");
    d.bok(&["exec", "-d", "one", "sh", "-c", "echo bg > /tmp/bg"]);
    wait_for("exec -d", || d.berth(&["exec", "one", "cat", "/tmp/bg"]).stdout == b"bg\n");
    let top = d.bok(&["top", "one"]);
    assert!(top.starts_with("UID") && top.contains("sleep 600"), "{top}");
    // pause, unpause, stop, start, restart, kill, rename.
    let state = |n: &str| d.bok(&["inspect", "-f", "{{.State.Status}}", n]).trim().to_owned();
    assert_eq!(d.bok(&["pause", "one"]), "one\n");
    assert_eq!(state("one"), "paused");
    assert_eq!(d.berth(&["exec", "one", "true"]).status.code(), Some(1));
    d.bok(&["unpause", "one"]);
    assert_eq!(state("one"), "running");
    let before = pid;
    d.bok(&["restart", "-t", "1", "one"]);
    let after: i32 = d.bok(&["inspect", "-f", "{{.State.Pid}}", "one"]).trim().parse().unwrap();
    assert_ne!(before, after);
    d.bok(&["kill", "-s", "TERM", "one"]);
    wait_for("kill -s TERM", || state("one") == "exited");
    assert_eq!(d.bok(&["inspect", "-f", "{{.State.ExitCode}}", "one"]), "143\n");
    d.bok(&["start", "one"]);
    d.bok(&["stop", "-s", "KILL", "one"]);
    assert_eq!(d.bok(&["inspect", "-f", "{{.State.ExitCode}}", "one"]), "137\n");
    d.bok(&["rename", "one", "uno"]);
    assert_eq!(d.bok(&["ps", "-a", "--filter", "name=uno", "--format", "{{.Names}}"]), "uno\n");
    // rm of a running container needs -f; rm of many reports each.
    d.bok(&["start", "uno"]);
    assert_eq!(d.berth(&["rm", "uno"]).status.code(), Some(1));
    let o = d.berth(&["rm", "-f", "uno", "nosuch", "two"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "uno\ntwo\n");
    assert!(stderr(&o).contains("nosuch"));
    assert_eq!(d.bok(&["ps", "-aq"]), "");
    assert_clean(&d);
}

/// Run `cmd` on a terminal (script), type `line` into it, then `keys`; its
/// output.
fn typed_into(cmd: &str, line: &[u8], keys: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    input.write_all(line).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    input.write_all(keys).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(input);
    stdout(&child.wait_with_output().unwrap())
}

#[test]
fn terminals_attach_and_detach() {
    if !can_run("berth terminals") || !script_available("berth terminals") {
        return;
    }
    let d = Daemon::start("cli-tty");
    load(&d);
    let env = format!("BERTH_HOST=unix://{}", d.socket().display());
    let berth = berth_bin();
    let berth = berth.display();
    // -it: a pty inside with the client's size, and the exit code back.
    let cmd = format!("stty rows 31 cols 97; {env} {berth} run -it --rm busybox sh -c 'tty; stty size; exit 6'");
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    assert!(stdout(&o).contains("/dev/pts/0") && stdout(&o).contains("31 97"), "{}", stdout(&o));
    assert_eq!(o.status.code(), Some(6));
    // exec -it the same way.
    d.bok(&["run", "-dit", "--name", "shell", "busybox", "sh"]);
    let cmd = format!("stty rows 20 cols 70; {env} {berth} exec -it shell sh -c 'stty size; exit 2'");
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    assert!(stdout(&o).contains("20 70"), "{}", stdout(&o));
    assert_eq!(o.status.code(), Some(2));
    // attach, type a command, detach with custom keys: the container runs on.
    let cmd = format!("{env} {berth} attach --detach-keys ctrl-x,x shell; echo attach-exit=$?");
    let out = typed_into(&cmd, b"echo marker-$((6*7))\n", b"\x18x");
    assert!(out.contains("marker-42") && out.contains("attach-exit=0"), "{out}");
    assert_eq!(d.bok(&["inspect", "-f", "{{.State.Running}}", "shell"]), "true\n");
    assert!(d.bok(&["logs", "shell"]).contains("marker-42"));
    // The CLI config's detachKeys, when no flag is given; the daemon is
    // told them too, so ctrl-p ctrl-q is plain input then.
    let conf = d.dir.join("cli-config");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("config.json"), r#"{"detachKeys":"ctrl-e,e"}"#).unwrap();
    let cmd = format!("DOCKER_CONFIG={} {env} {berth} attach shell; echo attach-exit=$?", conf.display());
    let out = typed_into(&cmd, b"\x10\x11echo configured-$((6*8))\n", b"\x05e");
    assert!(out.contains("configured-48") && out.contains("attach-exit=0"), "{out}");
    assert_eq!(d.bok(&["inspect", "-f", "{{.State.Running}}", "shell"]), "true\n");
    // attach to a stopped container is refused.
    d.bok(&["create", "--name", "later", "-i", "busybox", "sh", "-c", "read x; echo got $x; exit 3"]);
    assert_eq!(d.berth(&["attach", "later"]).status.code(), Some(1));
    // start -a -i: stdin in, output out, the exit code back.
    let o = d.berth_in(&["start", "-a", "-i", "later"], Some(b"word\n"));
    assert_eq!((stdout(&o).as_str(), o.status.code()), ("got word\n", Some(3)));
    d.bok(&["rm", "-f", "shell", "later"]);
    assert_clean(&d);
}

#[test]
fn images_commit_save_load_import_events() {
    if !can_run("berth images") {
        return;
    }
    let d = Daemon::start("cli-img");
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    load(&d);
    let images = d.bok(&["images"]);
    assert!(images.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"), "{images}");
    assert!(images.contains("busybox      latest"), "{images}");
    // commit with changes, then run it.
    d.bok(&["run", "--name", "src", "busybox", "sh", "-c", "echo data > /made"]);
    assert_eq!(d.bok(&["diff", "src"]), "A /made\n");
    let id =
        d.bok(&["commit", "-c", "ENV COLOR=blue", "-c", "CMD cat /made", "-m", "a note", "-a", "me", "src", "made:v1"]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(d.bok(&["run", "--rm", "made:v1"]), "data\n");
    assert_eq!(d.bok(&["run", "--rm", "made:v1", "sh", "-c", "echo $COLOR"]), "blue\n");
    assert_eq!(d.bok(&["inspect", "-f", "{{.Author}} {{.Comment}}", "made:v1"]), "me a note\n");
    let hist = d.bok(&["history", "made:v1"]);
    assert!(hist.starts_with("IMAGE") && hist.contains("a note"), "{hist}");
    assert_eq!(d.bok(&["history", "-q", "made:v1"]).lines().next().unwrap(), &id.trim()[7..19]);
    // tag, filters, formats.
    d.bok(&["tag", "made:v1", "made:v2"]);
    assert_eq!(d.bok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "made"]), "made:v1\nmade:v2\n");
    assert_eq!(d.bok(&["images", "-q", "made"]), format!("{}\n", &id.trim()[7..19]));
    assert_eq!(d.bok(&["images", "--filter", "reference=busy*", "--format", "{{.Repository}}"]), "busybox\n");
    // export and import.
    let tar = d.dir.join("fs.tar");
    d.bok(&["export", "-o", tar.to_str().unwrap(), "src"]);
    let imported = d.bok(&["import", "-c", "CMD [\"cat\", \"/made\"]", tar.to_str().unwrap(), "flat:1"]);
    assert!(imported.starts_with("sha256:"), "{imported}");
    assert_eq!(d.bok(&["run", "--rm", "flat:1"]), "data\n");
    // save, rmi, load back.
    let saved = d.dir.join("saved.tar");
    d.bok(&["save", "-o", saved.to_str().unwrap(), "made:v1", "made:v2"]);
    d.bok(&["rm", "src"]);
    let rmi = d.bok(&["rmi", "made:v1", "made:v2"]);
    assert!(rmi.contains("Untagged: made:v1") && rmi.contains("Deleted: sha256:"), "{rmi}");
    let loaded = d.berth_in(&["load"], Some(&std::fs::read(&saved).unwrap()));
    assert_eq!(stdout(&loaded), "Loaded image: made:v1\nLoaded image: made:v2\n", "{}", stderr(&loaded));
    // A truncated archive is refused and stores nothing.
    let bytes = std::fs::read(&saved).unwrap();
    let o = d.berth_in(&["load"], Some(&bytes[..bytes.len() / 2]));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(d.bok(&["images", "-q"]).lines().count(), 3);
    // prune: unused images go with -a.
    let pruned = d.bok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("deleted: sha256:") && pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(d.bok(&["images", "-q"]), "");
    // events between two times, filtered.
    let t1 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let ev = d.bok(&["events", "--since", &t0.to_string(), "--until", &t1.to_string(), "--filter", "type=container"]);
    assert!(ev.contains(" container create ") && ev.contains(" container die ") && ev.contains("name=src"), "{ev}");
    assert!(!ev.contains(" image "), "{ev}");
    let ev = d.bok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &t1.to_string(),
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert!(ev.lines().all(|l| l == "0") && ev.lines().count() >= 2, "{ev}");
    assert_clean(&d);
}

#[test]
fn hosts_system_and_bad_input() {
    if !can_run("berth system") {
        return;
    }
    let d = Daemon::start("cli-sys");
    // -H wins over BERTH_HOST; an unreachable daemon is a clear error.
    let o = d.berth(&["-H", "unix:///nonexistent/berth.sock", "version"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Cannot connect to the berth daemon at unix:///nonexistent/berth.sock"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["-H", "ftp://x", "ps"]);
    assert!(stderr(&o).contains("invalid daemon address"), "{}", stderr(&o));
    let o = Command::new(berth_bin())
        .args([
            "--host",
            &format!("unix://{}", d.socket().display()),
            "info",
            "--format",
            "{{.Driver}} {{.Containers}}",
        ])
        .env("BERTH_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "overlay2 0\n", "{}", stderr(&o));
    // DOCKER_HOST is read when BERTH_HOST is not set.
    let o = Command::new(berth_bin())
        .args(["version", "--format", "{{.Server.ApiVersion}}"])
        .env_remove("BERTH_HOST")
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "1.50\n", "{}", stderr(&o));
    assert!(d.bok(&["info"]).contains("Storage Driver: overlay2"));
    assert!(d.bok(&["version"]).contains("Server: berth"));
    // Bad templates and filters are refused before anything happens.
    let o = d.berth(&["ps", "--format", "{{.Names"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("template"), "{}", stderr(&o));
    assert_eq!(d.berth(&["ps", "--filter", "nonsense"]).status.code(), Some(1));
    assert_eq!(d.berth(&["save", "nosuch:image", "-o", d.dir.join("x.tar").to_str().unwrap()]).status.code(), Some(1));
    assert!(!d.dir.join("x.tar").exists());
    assert_eq!(d.bok(&["system", "prune", "-f"]), "Total reclaimed space: 0B\nTotal reclaimed space: 0B\n");
    assert_clean(&d);
}

#[test]
fn cp_both_ways_stays_inside_the_container() {
    if !can_run("berth cp") {
        return;
    }
    let d = Daemon::start("cli-cp");
    load(&d);
    let local = d.dir.join("local");
    std::fs::create_dir_all(local.join("tree/sub")).unwrap();
    std::fs::write(local.join("tree/sub/a"), "deep\n").unwrap();
    std::fs::write(local.join("file"), "flat\n").unwrap();
    let l = |p: &str| local.join(p).to_str().unwrap().to_owned();
    d.bok(&[
        "run",
        "-d",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "ln -s /etc /tmp/etclink; ln -s / /tmp/up; sleep 600",
    ]);
    wait_for("links", || d.berth(&["exec", "box", "test", "-L", "/tmp/up"]).status.success());
    // Into the container: a file into a directory, under a new name, a tree.
    d.bok(&["cp", &l("file"), "box:/tmp/"]);
    d.bok(&["cp", &l("file"), "box:/tmp/renamed"]);
    d.bok(&["cp", &l("tree"), "box:/tmp/tree"]);
    let seen = d.bok(&["exec", "box", "cat", "/tmp/file", "/tmp/renamed", "/tmp/tree/sub/a"]);
    assert_eq!(seen, "flat\nflat\ndeep\n");
    // The stock docker CLI against the same API.
    d.ok(&["cp", &l("file"), "box:/tmp/by-docker"]);
    d.ok(&["cp", "box:/tmp/tree", &l("back-docker")]);
    assert_eq!(std::fs::read_to_string(local.join("back-docker/sub/a")).unwrap(), "deep\n");
    // Out of it: a tree, its contents with /., a file to stdout as a tar.
    d.bok(&["cp", "box:/tmp/tree", &l("back")]);
    assert_eq!(std::fs::read_to_string(local.join("back/sub/a")).unwrap(), "deep\n");
    d.bok(&["cp", "box:/tmp/tree/.", &l("contents")]);
    assert_eq!(std::fs::read_to_string(local.join("contents/sub/a")).unwrap(), "deep\n");
    let tar = d.berth(&["cp", "box:/tmp/file", "-"]);
    let names: Vec<String> = tar::Archive::new(&tar.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["file"]);
    // Symlinks in the container resolve inside it (CVE-2018-15664): reading
    // /tmp/etclink/passwd gives the container's passwd, writing through
    // /tmp/up/etc lands in the container's /etc, never the host's.
    d.bok(&["cp", "box:/tmp/etclink/passwd", &l("passwd")]);
    let theirs = d.bok(&["exec", "box", "cat", "/etc/passwd"]);
    assert_eq!(std::fs::read_to_string(local.join("passwd")).unwrap(), theirs);
    let marker = format!("berth-cp-test-{}", std::process::id());
    std::fs::write(local.join(&marker), "x").unwrap();
    d.bok(&["cp", &l(&marker), "box:/tmp/up/etc/"]);
    assert!(!std::path::Path::new("/etc").join(&marker).exists());
    assert_eq!(d.bok(&["exec", "box", "cat", &format!("/etc/{marker}")]), "x");
    // Errors: missing paths and containers, a file as a directory, and a
    // stopped container still reads.
    let o = d.berth(&["cp", "box:/nope", &l("x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Could not find the file /nope"), "{}", stderr(&o));
    assert_eq!(d.berth(&["cp", &l("file"), "box:/tmp/file/"]).status.code(), Some(1));
    assert_eq!(d.berth(&["cp", &l("file"), "nosuch:/tmp"]).status.code(), Some(1));
    d.bok(&["stop", "-s", "KILL", "box"]);
    d.bok(&["cp", "box:/tmp/renamed", &l("from-stopped")]);
    assert_eq!(std::fs::read_to_string(local.join("from-stopped")).unwrap(), "flat\n");
    d.bok(&["cp", &l("file"), "box:/tmp/while-stopped"]);
    d.bok(&["start", "box"]);
    assert_eq!(d.bok(&["exec", "box", "cat", "/tmp/while-stopped"]), "flat\n");
    d.bok(&["rm", "-f", "box"]);
    assert_clean(&d);
}
