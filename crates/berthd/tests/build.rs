//! `docker build` (the classic builder, `DOCKER_BUILDKIT=0`) against
//! berthd, with the stock docker CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Output};

use common::*;

/// The docker CLI with the classic builder, in `dir`.
fn docker_build(d: &Daemon, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut c = Command::new(DOCKER);
    c.env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .env("DOCKER_BUILDKIT", "0");
    run_with(c, args, input)
}

/// `h` for a root-owned file of `size` bytes, mode 0644.
fn root_header(mut h: tar::Header, size: usize) -> tar::Header {
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn a_dockerfile_builds_step_by_step_into_an_image_that_runs() {
    if !can_run("build") {
        return;
    }
    let d = Daemon::start("build");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG WHO=world\nENV GREETING=\"hello there\"\nRUN echo \"$GREETING $WHO\" > /greeting && echo built-output\nCOPY file.txt /app/\nCOPY dir /app/dir\nWORKDIR /app\nLABEL purpose=test\nEXPOSE 8080\nCMD [\"cat\", \"/greeting\"]\n",
            ),
            ("file.txt", "a file\n"),
            ("dir/a", "A\n"),
            ("dir/sub/b", "B\n"),
        ],
    );
    let o = docker_build(&d, &["build", "-t", "built:1", "--build-arg", "WHO=berth", ctx.to_str().unwrap()], None);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("Step 1/10 : FROM busybox"), "{out}");
    assert!(out.contains("Step 4/10 : RUN echo \"$GREETING $WHO\" > /greeting && echo built-output"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("built-output"), "the RUN's output streams: {out}");
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "built:1"]), "hello there berth\n");
    assert_eq!(d.ok(&["run", "--rm", "built:1", "cat", "/app/file.txt", "dir/a", "dir/sub/b"]), "a file\nA\nB\n");
    assert_eq!(d.ok(&["run", "--rm", "built:1", "pwd"]), "/app\n");
    let cfg = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Env}} {{.Config.Labels.purpose}} {{json .Config.ExposedPorts}}",
        "built:1",
    ]);
    assert!(cfg.contains("\"GREETING=hello there\""), "{cfg}");
    assert!(!cfg.contains("WHO="), "an ARG is not in the image's env: {cfg}");
    assert!(cfg.contains(" test {\"8080/tcp\":{}}"), "{cfg}");
    // One history entry per instruction, metadata ones empty.
    let hist = d.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "built:1"]);
    assert!(hist.contains("/bin/sh -c #(nop)  CMD [\"cat\",\"/greeting\"]"), "{hist}");
    assert!(hist.contains("|1 WHO=berth /bin/sh -c echo \"$GREETING $WHO\""), "{hist}");
    // No intermediate container is left.
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    // A failing RUN: its code in the stream, no container, no new image.
    write(&ctx, &[("Dockerfile", "FROM busybox\nRUN echo about to fail; exit 3\n")]);
    let images = d.ok(&["images", "-aq"]);
    let o = docker_build(&d, &["build", "-t", "broken", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("about to fail"), "{said}");
    assert!(said.contains("The command '/bin/sh -c echo about to fail; exit 3' returned a non-zero code: 3"), "{said}");
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(d.ok(&["images", "-aq"]), images);
    // A Dockerfile's mistake names its line.
    write(&ctx, &[("Dockerfile", "FROM busybox\nRUNN true\n")]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Dockerfile:2: unknown instruction: RUNN"), "{}", stderr(&o));
    // -q prints the id alone; -f - reads the Dockerfile from stdin.
    let o = docker_build(
        &d,
        &["build", "-q", "-t", "quiet", "-f", "-", ctx.to_str().unwrap()],
        Some(b"FROM busybox\nENV Q=1\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "quiet"]);
    assert_eq!(stdout(&o).trim(), id.trim());
    d.ok(&["rmi", "built:1", "quiet"]);
    assert_clean(&d);
}

#[test]
fn stages_copy_from_each_other_heredocs_run_and_dockerignore_leaves_files_out() {
    if !can_run("build stages") {
        return;
    }
    let d = Daemon::start("buildstages");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                r#"FROM busybox AS maker
RUN <<EOF
mkdir -p /out
echo made > /out/made.txt
EOF
RUN cat > /out/fed.txt <<'BODY'
fed $NOT_EXPANDED
BODY

FROM busybox AS unused
RUN exit 9

FROM scratch AS final
COPY --from=maker /out/ /data/
COPY --from=busybox /bin/busybox /bin/busybox
ARG NAME=berth
COPY <<EOF /hello.txt
hello ${NAME}
EOF
COPY --from=busybox /etc/passwd /etc/group /etc/
COPY --chown=nobody:nogroup . /ctx/
ADD archive.tar.gz /unpacked/
ADD archive.tar.bz2 /unpacked-bz2/
ADD archive.tar.xz /unpacked-xz/
CMD ["/bin/busybox", "cat", "/data/made.txt"]
"#,
            ),
            (".dockerignore", "*.log\n!keep.log\nsecret\n"),
            ("a.log", "left out\n"),
            ("keep.log", "kept\n"),
            ("secret/key", "never\n"),
            ("src/main.c", "int main;\n"),
        ],
    );
    // A gzip'd tar for ADD to unpack.
    let staging = d.dir.join("staging");
    write(&staging, &[("inside/file", "from the archive\n")]);
    for (flag, name) in [("-czf", "archive.tar.gz"), ("-cjf", "archive.tar.bz2"), ("-cJf", "archive.tar.xz")] {
        let o =
            Command::new("tar").arg(flag).arg(ctx.join(name)).arg("-C").arg(&staging).arg("inside").output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = docker_build(&d, &["build", "-t", "staged", ctx.to_str().unwrap()], None);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(!out.contains("exit 9"), "a stage the target does not need is skipped: {out}");
    assert_eq!(d.ok(&["run", "--rm", "staged"]), "made\n");
    let cat = |p: &str| d.ok(&["run", "--rm", "--entrypoint", "/bin/busybox", "staged", "cat", p]);
    assert_eq!(cat("/data/fed.txt"), "fed $NOT_EXPANDED\n");
    assert_eq!(cat("/hello.txt"), "hello berth\n");
    assert_eq!(cat("/unpacked/inside/file"), "from the archive\n");
    assert_eq!(cat("/unpacked-bz2/inside/file"), "from the archive\n");
    assert_eq!(cat("/unpacked-xz/inside/file"), "from the archive\n");
    assert_eq!(cat("/ctx/keep.log"), "kept\n");
    let ls = d.ok(&["run", "--rm", "--entrypoint", "/bin/busybox", "staged", "ls", "-ln", "/ctx"]);
    assert!(!ls.contains("a.log") && !ls.contains("secret"), ".dockerignore: {ls}");
    assert!(ls.contains(" 65534 "), "--chown by name: {ls}");
    // --target stops at the stage named.
    let o = docker_build(&d, &["build", "--target", "maker", "-t", "maker-only", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.ok(&["run", "--rm", "maker-only", "cat", "/out/made.txt"]), "made\n");
    // An archive whose entry climbs out of where ADD unpacks it is refused.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = root_header(tar::Header::new_gnu(), 4);
    h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    h.set_cksum();
    evil.append(&h, &b"evil"[..]).unwrap();
    std::fs::write(ctx.join("evil.tar"), evil.into_inner().unwrap()).unwrap();
    write(&ctx, &[("Dockerfile", "FROM busybox\nADD evil.tar /x/\n")]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("leads out of it"), "{}", stderr(&o));
    d.ok(&["rmi", "staged", "maker-only"]);
    assert_clean(&d);
}

#[test]
fn hostile_contexts_reach_nothing_outside_the_build() {
    if !can_run("build hostile") {
        return;
    }
    let d = Daemon::start("buildhostile");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", ctx.join("shadow")).unwrap();
    std::os::unix::fs::symlink("/etc", ctx.join("etc")).unwrap();
    // A path that climbs out of the context.
    write(&ctx, &[("Dockerfile", "FROM busybox\nCOPY ../outside /x\n")]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside the build context"), "{}", stderr(&o));
    // Through a symlink: the link resolves inside the context, where
    // there is no /etc/shadow.
    write(&ctx, &[("Dockerfile", "FROM busybox\nCOPY etc/shadow /x\n")]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success(), "{}", stdout(&o));
    // The link itself is copied as a link, not what it names.
    write(&ctx, &[("Dockerfile", "FROM busybox\nCOPY shadow /x\n")]);
    let o = docker_build(&d, &["build", "-t", "linked", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.ok(&["run", "--rm", "linked", "readlink", "/x"]), "/etc/shadow\n");
    let o = d.docker(&["run", "--rm", "linked", "cat", "/x"]);
    assert!(!o.status.success(), "the image has no host shadow file");
    // A context tar whose entries climb out is refused, and writes nothing.
    let escape = d.dir.join("escaped");
    let mut body = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut body);
        let df = b"FROM busybox\n";
        tar.append_data(&mut root_header(tar::Header::new_gnu(), df.len()), "Dockerfile", &df[..]).unwrap();
        let mut h = root_header(tar::Header::new_old(), 1);
        let name = format!("../../../../../../../..{}", escape.display());
        // The tar crate refuses to write such a name; it is set raw.
        let raw = h.as_old_mut();
        let n = name.len().min(99);
        raw.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        h.set_cksum();
        tar.append(&h, &b"x"[..]).unwrap();
        tar.finish().unwrap();
    }
    let (s, b) = d.http("POST", "/build?t=escape", &body);
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("the build context"), "refused for the climbing entry: {b}");
    assert!(!escape.exists(), "nothing written outside the build");
    let builds = std::fs::read_dir(d.dir.join("data/builds")).map_or(0, |r| r.count());
    assert_eq!(builds, 0, "the build's directory is gone");
    d.ok(&["rmi", "linked"]);
    assert_clean(&d);
}

#[test]
fn rebuilds_hit_the_cache_and_miss_it_exactly_when_content_args_or_instructions_change() {
    if !can_run("build cache") {
        return;
    }
    let d = Daemon::start("buildcache");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[("Dockerfile", "FROM busybox\nARG V=1\nRUN echo run-$V > /r\nCOPY f /f\nCMD cat /r /f\n"), ("f", "one\n")],
    );
    let build = |args: &[&str]| {
        let mut all = vec!["build", "-t", "cached"];
        all.extend_from_slice(args);
        all.push(ctx.to_str().unwrap());
        let o = docker_build(&d, &all, None);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "cached"]);
        (stdout(&o), id)
    };
    let (first, id) = build(&[]);
    assert!(!first.contains("Using cache"), "{first}");
    let (again, id2) = build(&[]);
    assert_eq!(again.matches("Using cache").count(), 4, "{again}");
    assert!(!again.contains("Running in"), "a cached rebuild starts no container: {again}");
    assert_eq!(id2, id);
    // A new mtime alone is still a hit.
    let f = std::fs::File::options().write(true).open(ctx.join("f")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60)).unwrap();
    drop(f);
    let (_, id3) = build(&[]);
    assert_eq!(id3, id);
    // New bytes: the COPY and what follows run again, the RUN before not.
    std::fs::write(ctx.join("f"), "two\n").unwrap();
    let (out, id4) = build(&[]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert_ne!(id4, id);
    assert_eq!(d.ok(&["run", "--rm", "cached"]), "run-1\ntwo\n");
    // Another arg: the RUN runs again.
    let (out, _) = build(&["--build-arg", "V=2"]);
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
    assert!(out.contains("Running in"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "cached"]), "run-2\ntwo\n");
    // Another instruction: a miss from there.
    write(&ctx, &[("Dockerfile", "FROM busybox\nARG V=1\nRUN echo run-$V > /r\nCOPY f /g\nCMD cat /r /g\n")]);
    let (out, _) = build(&[]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    // --no-cache runs everything.
    let (out, _) = build(&["--no-cache"]);
    assert!(!out.contains("Using cache"), "{out}");
    d.ok(&["rmi", "cached"]);
    assert_clean(&d);
}

#[test]
fn cache_from_takes_steps_from_a_loaded_images_history() {
    if !can_run("build cache-from") {
        return;
    }
    let d = Daemon::start("buildcachefrom");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    // The RUN writes what differs each time it runs.
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /r\nCOPY f /f\nARG V=1\nENV E=$V\nCMD cat /r /f\n",
            ),
            ("f", "one\n"),
        ],
    );
    let build = |args: &[&str]| {
        let mut all = vec!["build", "-t", "cf:new"];
        all.extend_from_slice(args);
        all.push(ctx.to_str().unwrap());
        let o = docker_build(&d, &all, None);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        (stdout(&o), d.ok(&["image", "inspect", "-f", "{{.Id}}", "cf:new"]))
    };
    let (_, id) = build(&[]);
    d.ok(&["tag", "cf:new", "cf:old"]);
    let made = d.ok(&["run", "--rm", "cf:old"]);
    // As after a pull: the image alone, with no build cache and no
    // intermediate image.
    let tar = d.dir.join("cf.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "cf:old"]);
    d.ok(&["rmi", "cf:old", "cf:new"]);
    d.ok(&["builder", "prune", "-af"]);
    d.ok(&["load", "-i", tar.to_str().unwrap()]);
    let (out, id2) = build(&["--cache-from", "cf:old", "--cache-from", "absent:1"]);
    assert_eq!(out.matches("Using cache").count(), 5, "{out}");
    assert!(!out.contains("Running in"), "{out}");
    assert_eq!(id2, id, "the last step is the cache image itself");
    assert_eq!(d.ok(&["run", "--rm", "cf:new"]), made, "the RUN's layer was taken, not run again");
    // Another arg: the steps before it still come from the image's
    // history (restored images of their own), the ENV and after not.
    let (out, id3) = build(&["--cache-from", "cf:old", "--build-arg", "V=2"]);
    assert_eq!(out.matches("Using cache").count(), 3, "{out}");
    assert_ne!(id3, id);
    assert_eq!(d.ok(&["run", "--rm", "cf:new"]), made);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{index .Config.Env 1}}", "cf:new"]), "E=2\n");
    // New bytes in the COPY's source: it and what follows miss.
    std::fs::write(ctx.join("f"), "two\n").unwrap();
    let (out, _) = build(&["--cache-from", "cf:old"]);
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
    assert!(d.ok(&["run", "--rm", "cf:new"]).ends_with("two\n"));
    // Without --cache-from, with the build cache cleared, the RUN runs.
    d.ok(&["builder", "prune", "-af"]);
    let (out, _) = build(&[]);
    assert!(out.contains("Running in"), "{out}");
    assert_ne!(d.ok(&["run", "--rm", "cf:new"]).lines().next(), made.lines().next());
    d.ok(&["rmi", "cf:old", "cf:new"]);
    assert_clean(&d);
}

#[test]
fn stages_that_need_nothing_of_each_other_are_built_at_once() {
    if !can_run("build parallel") {
        return;
    }
    let d = Daemon::start("buildpar");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox AS a\nRUN cut -d' ' -f1 /proc/uptime > /t && sleep 1 && cut -d' ' -f1 /proc/uptime >> /t\n\
             FROM busybox AS b\nRUN cut -d' ' -f1 /proc/uptime > /t && sleep 1 && cut -d' ' -f1 /proc/uptime >> /t\n\
             FROM busybox\nCOPY --from=a /t /a\nCOPY --from=b /t /b\n",
        )],
    );
    let o = docker_build(&d, &["build", "-t", "par", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let span = |f: &str| -> (f64, f64) {
        let t = d.ok(&["run", "--rm", "par", "cat", f]);
        let v: Vec<f64> = t.lines().map(|l| l.trim().parse().unwrap()).collect();
        (v[0], v[1])
    };
    let (a, b) = (span("/a"), span("/b"));
    assert!(a.0 < b.1 && b.0 < a.1, "the two RUNs overlap in time: {a:?} {b:?}");
    d.ok(&["rmi", "par"]);
    assert_clean(&d);
}

#[test]
fn the_berth_cli_builds_with_docker_build_s_flags() {
    if !can_run("berth build") {
        return;
    }
    let d = Daemon::start("berthbuild");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            ("Dockerfile", "FROM busybox\nARG MSG\nCOPY . /ctx/\nRUN echo \"$MSG\" > /msg\nLABEL from=dockerfile\n"),
            (".dockerignore", "*.tmp\n"),
            ("kept.txt", "kept\n"),
            ("left.tmp", "left out\n"),
        ],
    );
    let iid = d.dir.join("iid");
    let out = d.bok(&[
        "build",
        "-t",
        "cli:1",
        "--build-arg",
        "MSG=from the cli",
        "--label",
        "extra=yes",
        "--iidfile",
        iid.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert!(out.contains("Step 1/5 : FROM busybox"), "{out}");
    assert!(out.contains("Successfully tagged cli:1"), "{out}");
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "cli:1"]);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id.trim());
    assert_eq!(d.ok(&["run", "--rm", "cli:1", "cat", "/msg"]), "from the cli\n");
    assert_eq!(d.ok(&["run", "--rm", "cli:1", "ls", "/ctx"]), "Dockerfile\nkept.txt\n");
    let labels = d.ok(&["image", "inspect", "-f", "{{.Config.Labels.from}} {{.Config.Labels.extra}}", "cli:1"]);
    assert_eq!(labels.trim(), "dockerfile yes");
    // -q prints the id alone; a Dockerfile from stdin.
    let o = d.berth_in(&["build", "-q", "-f", "-", ctx.to_str().unwrap()], Some(b"FROM busybox\nENV FROM_STDIN=1\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let quiet_id = stdout(&o).trim().to_owned();
    assert!(quiet_id.starts_with("sha256:"), "{quiet_id}");
    let env = d.ok(&["image", "inspect", "-f", "{{json .Config.Env}}", &quiet_id]);
    assert!(env.contains("FROM_STDIN=1"), "{env}");
    // `-` : a Dockerfile alone on stdin, or a context tar.
    let o = d.berth_in(&["build", "-q", "-"], Some(b"FROM busybox\nENV ALONE=1\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let alone = stdout(&o).trim().to_owned();
    assert!(d.ok(&["image", "inspect", "-f", "{{json .Config.Env}}", &alone]).contains("ALONE=1"));
    let tar =
        Command::new("tar").arg("-czf").arg("-").arg("-C").arg(&ctx).args(["Dockerfile", "kept.txt"]).output().unwrap();
    let o = d.berth_in(&["build", "-q", "-"], Some(&tar.stdout));
    assert!(o.status.success(), "{}", stderr(&o));
    let from_tar = stdout(&o).trim().to_owned();
    assert_eq!(d.ok(&["run", "--rm", &from_tar, "cat", "/ctx/kept.txt"]), "kept\n");
    // A failure is the command's failure, with the daemon's words.
    let o = d.berth_in(&["build", "-f", "-", ctx.to_str().unwrap()], Some(b"FROM busybox\nRUN exit 4\n"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("returned a non-zero code: 4"), "{}", stderr(&o));
    d.ok(&["rmi", "cli:1", &quiet_id, &alone, &from_tar]);
    assert_clean(&d);
}

/// `POST /build` of a context holding `dockerfile` alone, read until its
/// RUN says `started`: the open stream and what it said so far.
fn build_until_started(d: &Daemon, dockerfile: &[u8]) -> (std::io::BufReader<std::os::unix::net::UnixStream>, String) {
    use std::io::{BufRead, Write};
    let mut body = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut body);
        tar.append_data(&mut root_header(tar::Header::new_gnu(), dockerfile.len()), "Dockerfile", dockerfile).unwrap();
        tar.finish().unwrap();
    }
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    write!(
        s,
        "POST /build?t=never HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 && !line.contains("\"started\\n\"") {}
    (r, line)
}

#[test]
fn a_client_that_goes_away_cancels_the_build_and_its_running_step() {
    if !can_run("build cancel") {
        return;
    }
    let d = Daemon::start("buildcancel");
    d.load_busybox();
    let (r, line) = build_until_started(&d, b"FROM busybox\nRUN echo started && sleep 300\n");
    assert!(line.contains("\"started\\n\""), "{line}");
    drop(r);
    // The step's container is killed and removed, and no image is tagged.
    let t = std::time::Instant::now();
    while !d.ok(&["ps", "-aq"]).trim().is_empty() {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "the step's container is still there");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = d.docker(&["image", "inspect", "never"]);
    assert!(!o.status.success());
    assert_clean(&d);
}

#[test]
fn a_daemon_killed_mid_build_strands_no_step_container() {
    if !can_run("build crash") {
        return;
    }
    let mut d = Daemon::start("buildcrash");
    d.load_busybox();
    let (r, line) = build_until_started(
        &d,
        b"FROM busybox\nRUN --mount=type=bind,from=busybox,target=/bb,rw echo started && sleep 300\n",
    );
    assert!(line.contains("started"), "{line}");
    assert_eq!(d.ok(&["ps", "-q"]).lines().count(), 1, "the step runs");
    d.crash();
    drop(r);
    d.spawn();
    // The step's container, still running under its shim, is killed and
    // removed as the daemon comes back: its build is gone.
    assert_eq!(d.ok(&["ps", "-aq"]), "", "a build step's container outlived its build");
    // Its bind's overlay, mounted in the build's directory, is gone too.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(d.dir.to_str().unwrap()), "{mounts}");
    assert!(!d.docker(&["image", "inspect", "never"]).status.success());
    assert_clean(&d);
}

#[test]
fn run_mounts_a_cache_kept_across_builds_a_context_bind_and_a_tmpfs() {
    if !can_run("build mounts") {
        return;
    }
    let d = Daemon::start("buildmounts");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN --mount=type=cache,target=/cache,id=counter,uid=1000,mode=0700 echo run >> /cache/log && wc -l < /cache/log > /count && stat -c %u:%a /cache > /owner\n\
                 RUN --mount=type=bind,source=data,target=/in cat /in/file > /copied\n\
                 RUN --mount=type=tmpfs,target=/scratch grep ' /scratch tmpfs ' /proc/mounts > /tmpfs && echo x > /scratch/gone\n",
            ),
            ("data/file", "bound in\n"),
        ],
    );
    for expected in ["1", "2"] {
        let o = docker_build(&d, &["build", "--no-cache", "-t", "mounted", ctx.to_str().unwrap()], None);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        // The cache keeps what the last build left in it.
        assert_eq!(d.ok(&["run", "--rm", "mounted", "cat", "/count"]).trim(), expected);
    }
    assert_eq!(d.ok(&["run", "--rm", "mounted", "cat", "/owner"]).trim(), "1000:700");
    assert_eq!(d.ok(&["run", "--rm", "mounted", "cat", "/copied"]), "bound in\n");
    assert!(d.ok(&["run", "--rm", "mounted", "cat", "/tmpfs"]).contains("tmpfs"));
    // What the mounts held is not in the image.
    let o = d.docker(&["run", "--rm", "mounted", "sh", "-c", "find /cache /in /scratch -type f 2>/dev/null | wc -l"]);
    assert_eq!(stdout(&o).trim(), "0", "{}", stdout(&o));
    // The cache mount is in `system df`, and `builder prune` removes it:
    // the next build counts from 1 again.
    let (s, b) = d.http("GET", "/system/df?type=build-cache", b"");
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let mounts: Vec<&serde_json::Value> =
        v["BuildCache"].as_array().unwrap().iter().filter(|e| e["Type"] == "exec.cachemount").collect();
    assert_eq!(mounts.len(), 1, "{b}");
    assert!(mounts[0]["Size"].as_u64().unwrap() > 0, "{b}");
    let pruned = d.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Total"), "{pruned}");
    let (_, b) = d.http("GET", "/system/df?type=build-cache", b"");
    assert!(!b.contains("exec.cachemount"), "{b}");
    let o = docker_build(&d, &["build", "--no-cache", "-t", "mounted", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.ok(&["run", "--rm", "mounted", "cat", "/count"]).trim(), "1");
    let (s, b) = d.http("POST", "/build/prune?keep-storage=1000", b"");
    assert_eq!(s, 400, "{b}");
    // A secret the client did not give: an error when it is required.
    write(&ctx, &[("Dockerfile", "FROM busybox\nRUN --mount=type=secret,id=x,required cat /run/secrets/x\n")]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("secret x not found"), "{}", stderr(&o));
    d.ok(&["rmi", "mounted"]);
    assert_clean(&d);
}

#[test]
fn run_binds_a_stage_an_image_or_the_context_written_to_and_keeps_none_of_it() {
    if !can_run("build bind from") {
        return;
    }
    let d = Daemon::start("buildbindfrom");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox AS tools\nRUN mkdir /d && echo deep > /d/f\n\
                 FROM busybox\n\
                 RUN --mount=type=bind,from=tools,source=/d,target=/t cat /t/f > /from-stage\n\
                 RUN --mount=type=bind,from=busybox,target=/bb test -x /bb/bin/busybox && echo ok > /from-image\n\
                 RUN --mount=type=bind,source=data,target=/w,rw echo scribble > /w/file && cat /w/file > /rw-seen\n\
                 RUN --mount=type=bind,from=tools,target=/t2 (echo no > /t2/d/f) 2>/dev/null || echo refused > /ro\n",
            ),
            ("data/file", "bound in\n"),
        ],
    );
    let o = docker_build(&d, &["build", "-t", "bound", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        d.ok(&["run", "--rm", "bound", "cat", "/from-stage", "/from-image", "/rw-seen", "/ro"]),
        "deep\nok\nscribble\nrefused\n"
    );
    // A written bind's writes went with its step: the context is as it was.
    assert_eq!(std::fs::read_to_string(ctx.join("data/file")).unwrap(), "bound in\n");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(d.dir.to_str().unwrap()), "a bind's overlay is still mounted");
    // A source that leads out of the stage is refused.
    write(&ctx, &[("Dockerfile", "FROM busybox AS s\nRUN ln -s /etc /out\nFROM busybox\nRUN --mount=type=bind,from=s,source=out,target=/x true\n")]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("passes through a symlink of s"), "{}", stderr(&o));
    d.ok(&["rmi", "bound"]);
    let _ = d.ok(&["image", "prune", "-f"]);
    assert_clean(&d);
}

#[test]
fn secrets_and_an_ssh_agent_reach_the_steps_that_mount_them_and_stay_out_of_the_image() {
    if !can_run("build secrets") {
        return;
    }
    let d = Daemon::start("buildsecrets");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /seen && stat -c '%a %u' /run/secrets/tok >> /seen\n\
             RUN --mount=type=secret,id=tok,env=TOK,uid=1000,mode=0440,target=/s/t echo ${#TOK} > /env && stat -c '%a %u' /s/t >> /env\n\
             RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo skipped > /absent\n\
             RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /ssh\n",
        )],
    );
    let secret = d.dir.join("tok.txt");
    std::fs::write(&secret, "hunter2-zq").unwrap();
    let sock = d.dir.join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let tok = format!("id=tok,src={}", secret.display());
    let ssh = format!("default={}", sock.display());
    let o = d.berth(&["build", "--secret", &tok, "--ssh", &ssh, "-t", "sec", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let sh = |c: &str| d.ok(&["run", "--rm", "sec", "sh", "-c", c]);
    assert_eq!(sh("cat /seen /env /absent /ssh"), "10\n400 0\n10\n440 1000\nskipped\n/run/buildkit/ssh_agent.0\n");
    // The mounts' stubs are not in the layers, nor the secret in the history.
    assert_eq!(sh("find /run/secrets /s /run/buildkit ! -type d 2>/dev/null | wc -l"), "0\n");
    let hist = d.ok(&["history", "--no-trunc", "sec"]);
    assert!(!hist.contains("hunter2"), "{hist}");
    // Nothing of the secret is left in the daemon's data.
    let o = std::process::Command::new("grep").args(["-rl", "hunter2-zq"]).arg(d.dir.join("data")).output().unwrap();
    assert_eq!(stdout(&o), "", "the secret outlived its step");
    // An ssh mount without an agent forwarded is an error, as in BuildKit.
    let o = d.berth(&["build", "--no-cache", "--secret", &tok, "-t", "sec", ctx.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(format!("{}{}", stdout(&o), stderr(&o)).contains("no SSH key default forwarded"), "{}", stderr(&o));
    d.ok(&["rmi", "sec"]);
    assert_clean(&d);
}

#[test]
fn berth_build_outputs_the_image_s_files_to_a_directory_or_a_tar() {
    if !can_run("build output") {
        return;
    }
    let d = Daemon::start("buildoutput");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[("Dockerfile", "FROM busybox AS b\nRUN mkdir /o && echo made > /o/made && ln -s made /o/link\nFROM scratch\nCOPY --from=b /o /out\n")],
    );
    let dir = d.dir.join("outdir");
    let spec = format!("type=local,dest={}", dir.display());
    let o = d.berth(&["build", "-q", "-o", &spec, "-t", "outs", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::read_to_string(dir.join("out/made")).unwrap(), "made\n");
    assert_eq!(std::fs::read_link(dir.join("out/link")).unwrap(), std::path::Path::new("made"));
    let tarfile = d.dir.join("out.tar");
    let spec = format!("type=tar,dest={}", tarfile.display());
    let o = d.berth(&["build", "-q", "--output", &spec, ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names = |bytes: &[u8]| -> Vec<String> {
        tar::Archive::new(bytes).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
    };
    assert!(names(&std::fs::read(&tarfile).unwrap()).contains(&"out/made".to_owned()));
    let o = d.berth(&["build", "-q", "-o", "-", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(names(&o.stdout).contains(&"out/made".to_owned()));
    // The container the files were read through is gone.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    let o = d.berth(&["build", "-o", "type=registry", ctx.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("type registry is not supported"), "{}", stderr(&o));
    d.ok(&["rmi", "outs"]);
    let _ = d.ok(&["image", "prune", "-f"]);
    assert_clean(&d);
}

#[test]
fn a_context_comes_plain_or_compressed_with_gzip_bzip2_xz_or_zstd() {
    if !can_run("build compressed") {
        return;
    }
    let d = Daemon::start("buildzip");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(&ctx, &[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "compressed context\n")]);
    for (flag, tag) in [("", "plain"), ("-z", "gzip"), ("-j", "bzip2"), ("-J", "xz"), ("--zstd", "zstd")] {
        let mut c = Command::new("tar");
        c.arg("-c");
        if !flag.is_empty() {
            c.arg(flag);
        }
        let o = c.args(["-f", "-", "-C"]).arg(&ctx).args(["Dockerfile", "f"]).output().unwrap();
        assert!(o.status.success(), "tar {flag}: {}", String::from_utf8_lossy(&o.stderr));
        let (s, b) = d.http("POST", &format!("/build?t=ctx:{tag}"), &o.stdout);
        assert_eq!(s, 200, "{tag}: {b}");
        assert!(b.contains("Successfully tagged ctx:"), "{tag}: {b}");
        assert_eq!(d.ok(&["run", "--rm", &format!("ctx:{tag}"), "cat", "/f"]), "compressed context\n", "{tag}");
        d.ok(&["rmi", &format!("ctx:{tag}")]);
    }
    assert_clean(&d);
}

/// An HTTP server on 127.0.0.1 that answers every request with `body`,
/// for as long as the test keeps it; its port.
fn serve_file(body: &'static [u8]) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    std::thread::spawn(move || {
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            let _ = c.set_nonblocking(false);
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(body);
        }
    });
    (port, stop)
}

#[test]
fn add_fetches_a_url_and_checks_its_checksum() {
    if !can_run("build add url") {
        return;
    }
    let d = Daemon::start("buildurl");
    d.load_busybox();
    let (port, stop) = serve_file(b"fetched by the daemon\n");
    let ctx = d.dir.join("ctx");
    let sum = {
        use sha2::Digest as _;
        format!("sha256:{:x}", sha2::Sha256::digest(b"fetched by the daemon\n"))
    };
    let url = format!("http://127.0.0.1:{port}/files/hello.txt");
    write(&ctx, &[("Dockerfile", &format!("FROM busybox\nADD {url} /srv/\nADD --checksum={sum} {url} /checked\n"))]);
    let o = docker_build(&d, &["build", "-t", "fetched", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        d.ok(&["run", "--rm", "fetched", "cat", "/srv/hello.txt", "/checked"]),
        "fetched by the daemon\n".repeat(2)
    );
    let st = d.ok(&["run", "--rm", "fetched", "stat", "-c", "%a %Y", "/srv/hello.txt"]);
    assert_eq!(st.trim(), "600 784111777", "mode 0600, mtime from Last-Modified");
    let wrong = format!("sha256:{}", "0".repeat(64));
    write(&ctx, &[("Dockerfile", &format!("FROM busybox\nADD --checksum={wrong} {url} /x\n"))]);
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    d.ok(&["rmi", "fetched"]);
    assert_clean(&d);
}

#[test]
fn every_instruction_lands_in_the_image_as_docker_s_builder_puts_it() {
    if !can_run("build instructions") {
        return;
    }
    let d = Daemon::start("buildinstr");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            r#"FROM busybox
MAINTAINER berth tests <tests@berth>
SHELL ["/bin/sh", "-ec"]
ENV OLD legacy form
ENV A=1 B="two words"
LABEL one=1 "two"="2"
EXPOSE 80 53/udp
WORKDIR /made/here
RUN pwd > /pwd && id -u > /uid-before
USER 1000:1000
RUN id -u > /tmp/uid-after
USER root
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --timeout=2s --retries=2 CMD ["true"]
ONBUILD RUN echo triggered > /onbuild
ENTRYPOINT ["/bin/echo"]
CMD ["default", "args"]
"#,
        )],
    );
    let o = docker_build(&d, &["build", "-t", "instr", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let f = |t: &str| d.ok(&["image", "inspect", "-f", t, "instr"]).trim().to_owned();
    assert_eq!(f("{{.Author}}"), "berth tests <tests@berth>");
    assert_eq!(f("{{json .Config.Shell}}"), r#"["/bin/sh","-ec"]"#);
    let env = f("{{json .Config.Env}}");
    assert!(
        env.contains(r#""OLD=legacy form""#) && env.contains(r#""A=1""#) && env.contains(r#""B=two words""#),
        "{env}"
    );
    assert_eq!(f("{{.Config.Labels.one}} {{.Config.Labels.two}}"), "1 2");
    assert_eq!(f("{{json .Config.ExposedPorts}}"), r#"{"53/udp":{},"80/tcp":{}}"#);
    assert_eq!(f("{{.Config.WorkingDir}}"), "/made/here");
    let made = d.ok(&["run", "--rm", "--entrypoint", "stat", "instr", "-c", "%a %U", "/made", "/made/here"]);
    assert_eq!(made, "755 root\n755 root\n", "WORKDIR makes what is missing");
    assert_eq!(f("{{.Config.User}}"), "root");
    assert_eq!(f("{{json .Config.Volumes}}"), r#"{"/data":{}}"#);
    assert_eq!(f("{{.Config.StopSignal}}"), "SIGUSR1");
    assert_eq!(
        f("{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD","true"],"Interval":5000000000,"Timeout":2000000000,"Retries":2}"#
    );
    assert_eq!(f("{{json .Config.OnBuild}}"), r#"["RUN echo triggered > /onbuild"]"#);
    assert_eq!(f("{{json .Config.Entrypoint}} {{json .Config.Cmd}}"), r#"["/bin/echo"] ["default","args"]"#);
    assert_ne!(f("{{.Parent}}"), "", "the previous step's image is the parent");
    assert_eq!(d.ok(&["run", "--rm", "instr"]), "default args\n");
    assert_eq!(
        d.ok(&["run", "--rm", "--entrypoint", "cat", "instr", "/pwd", "/uid-before", "/tmp/uid-after"]),
        "/made/here\n0\n1000\n"
    );
    // One history entry per instruction; metadata ones without a layer.
    let hist = d.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", "instr"]);
    let ours: Vec<&str> = hist.lines().take(17).collect();
    assert_eq!(ours.len(), 17, "{hist}");
    assert!(ours.iter().any(|l| l.starts_with("/bin/sh -c #(nop)  ENTRYPOINT [\"/bin/echo\"]|0B")), "{hist}");
    assert!(ours.iter().any(|l| l.starts_with("/bin/sh -ec id -u > /tmp/uid-after")), "{hist}");
    // The image's files, exported.
    let cid = d.ok(&["create", "instr"]);
    let o = d.docker(&["export", cid.trim()]);
    let mut a = tar::Archive::new(o.stdout.as_slice());
    let names: Vec<String> = a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    for want in ["made/here", "pwd", "tmp/uid-after"] {
        assert!(names.iter().any(|n| n.trim_end_matches('/') == want), "{want} in {names:?}");
    }
    d.ok(&["rm", cid.trim()]);
    // An ENTRYPOINT resets the CMD a base image had; the ONBUILD trigger
    // runs in a build from this image.
    write(&ctx, &[("Dockerfile", "FROM instr\nENTRYPOINT [\"/bin/cat\"]\n")]);
    let o = docker_build(&d, &["build", "-t", "child", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("# Executing 1 build trigger"), "{}", stdout(&o));
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{json .Config.Cmd}}", "child"]).trim(), "null");
    assert_eq!(d.ok(&["run", "--rm", "child", "/onbuild"]), "triggered\n");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{json .Config.OnBuild}}", "child"]).trim(), "null");
    d.ok(&["rmi", "child", "instr"]);
    assert_clean(&d);
}

#[test]
fn copy_excludes_what_it_is_told_and_keeps_parents_when_asked() {
    if !can_run("build exclude parents") {
        return;
    }
    let d = Daemon::start("buildexcl");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 COPY --exclude=*.md --exclude=sub src/ /ex/\n\
                 COPY --parents other/x/y.txt src/sub/c.txt /par/\n\
                 COPY --parents ./other/./x/y.txt /pivot/\n",
            ),
            ("src/a.txt", "a\n"),
            ("src/b.md", "b\n"),
            ("src/sub/c.txt", "c\n"),
            ("other/x/y.txt", "y\n"),
        ],
    );
    let o = docker_build(&d, &["build", "-t", "excl", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let find = d.ok(&["run", "--rm", "excl", "sh", "-c", "find /ex /par /pivot -type f | sort"]);
    assert_eq!(find, "/ex/a.txt\n/par/other/x/y.txt\n/par/src/sub/c.txt\n/pivot/x/y.txt\n");
    d.ok(&["rmi", "excl"]);
    assert_clean(&d);
}

#[test]
fn copy_lands_through_the_image_s_symlinks_and_keeps_its_directories_while_link_lands_on_nothing() {
    if !can_run("build copy landing") {
        return;
    }
    let d = Daemon::start("buildland");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch AS s\nCOPY f /deep/er/f\n\
                 FROM busybox\n\
                 RUN mkdir -m 0750 /private && chown 7:8 /private && mkdir /real /real2 && ln -s /real /via && ln -s /real2 /via2\n\
                 COPY f /private/f\nCOPY f /via/\nCOPY --link f /via2/\nCOPY --link --chown=nobody f /linked/f\n\
                 COPY --from=s /deep /deep\n",
            ),
            ("f", "data\n"),
        ],
    );
    let o = docker_build(&d, &["build", "-t", "land", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let sh = |c: &str| d.ok(&["run", "--rm", "land", "sh", "-c", c]);
    // The directory the file went into keeps its mode and owner.
    assert_eq!(sh("stat -c '%a %u:%g' /private; cat /private/f"), "750 7:8\ndata\n");
    // A symlink on the way is followed inside the image; it stays a link.
    assert_eq!(sh("cat /real/f; readlink /via"), "data\n/real\n");
    // --link does not look below: the path is made as on nothing.
    assert_eq!(sh("test -d /via2 && ! test -L /via2 && cat /via2/f; ls /real2 | wc -l"), "data\n0\n");
    assert_eq!(sh("stat -c '%U %a' /linked/f /linked"), "nobody 644\nroot 755\n");
    assert_eq!(sh("stat -c '%a %u' /deep /deep/er; cat /deep/er/f"), "755 0\n755 0\ndata\n");
    // No layer can hold a file named as a whiteout.
    write(&ctx, &[("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"), (".wh.etc", "x")]);
    let o = docker_build(&d, &["build", "-t", "wh", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(format!("{}{}", stdout(&o), stderr(&o))
        .contains(".wh.etc: a file whose name begins with .wh. cannot be stored"));
    d.ok(&["rmi", "land"]);
    assert_clean(&d);
}

#[test]
fn a_copy_staged_while_earlier_steps_run_is_taken_only_where_it_lands_the_same_way() {
    if !can_run("build ahead") {
        return;
    }
    let d = Daemon::start("buildahead");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    // With --no-cache the COPYs are staged from the image as it is before
    // the first RUN: the one into /app finds it made by then (another
    // mode and owner), the other lands as staged.
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN mkdir -m 0700 /app && chown 5:6 /app\nCOPY f /app/f\nRUN echo two > /two\nCOPY --chown=7:8 g /g\n",
            ),
            ("f", "eff\n"),
            ("g", "gee\n"),
        ],
    );
    for _ in 0..2 {
        let o = docker_build(&d, &["build", "--no-cache", "-t", "ahead", ctx.to_str().unwrap()], None);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let sh = |c: &str| d.ok(&["run", "--rm", "ahead", "sh", "-c", c]);
        assert_eq!(
            sh("stat -c '%a %u:%g' /app /app/f /g; cat /app/f /g /two"),
            "700 5:6\n644 0:0\n644 7:8\neff\ngee\ntwo\n"
        );
    }
    // A file changed between two builds is read again, not taken from
    // what was staged for the build before.
    std::fs::write(ctx.join("g"), "new\n").unwrap();
    let o = docker_build(&d, &["build", "--no-cache", "-t", "ahead", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.ok(&["run", "--rm", "ahead", "cat", "/g"]), "new\n");
    d.ok(&["rmi", "ahead"]);
    let _ = d.ok(&["image", "prune", "-f"]);
    assert_clean(&d);
}

#[test]
fn a_heredoc_script_with_an_interpreter_runs_as_a_file() {
    if !can_run("build heredoc script") {
        return;
    }
    let d = Daemon::start("buildshebang");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(&ctx, &[("Dockerfile", "FROM busybox\nRUN <<EOF\n#!/bin/sh\necho \"ran as $0\" > /script-out\nEOF\n")]);
    let o = docker_build(&d, &["build", "-t", "shebang", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(d.ok(&["run", "--rm", "shebang", "cat", "/script-out"]), "ran as /dev/pipes/EOF\n");
    let o = d.docker(&["run", "--rm", "shebang", "ls", "/dev/pipes"]);
    assert!(!o.status.success(), "the script is not left in the image");
    d.ok(&["rmi", "shebang"]);
    assert_clean(&d);
}

#[test]
fn berth_build_reads_a_local_context_where_it_is() {
    if !can_run("berth build local") {
        return;
    }
    let d = Daemon::start("buildlocal");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(
        &ctx,
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\nCOPY sub/ /sub/\n"),
            (".dockerignore", "*.secret\nsub/skip\n"),
            ("a.txt", "a\n"),
            ("key.secret", "never in the image\n"),
            ("sub/keep", "keep\n"),
            ("sub/skip", "skip\n"),
        ],
    );
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "-t", "local"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let out = d.bok(&args);
        (out, d.ok(&["image", "inspect", "-f", "{{.Id}}", "local"]))
    };
    let (out, id) = build(&[]);
    assert!(!out.contains("Sending build context"), "nothing is sent to a daemon on this machine: {out}");
    let files = d.ok(&["run", "--rm", "local", "sh", "-c", "find /ctx /sub -type f | sort"]);
    assert_eq!(files, "/ctx/.dockerignore\n/ctx/Dockerfile\n/ctx/a.txt\n/ctx/sub/keep\n/sub/keep\n");
    // What .dockerignore leaves out stays in the user's directory.
    assert!(ctx.join("key.secret").exists() && ctx.join("sub/skip").exists());
    // A new mtime is a hit; new bytes a miss.
    let f = std::fs::File::options().write(true).open(ctx.join("a.txt")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60)).unwrap();
    drop(f);
    let (out, id2) = build(&[]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert_eq!(id2, id);
    // A file whose size, mtime and inode did not change is not read again:
    // bytes rewritten in place with the old mtime put back go unseen.
    let md = std::fs::metadata(ctx.join("a.txt")).unwrap();
    {
        use std::io::Write as _;
        let mut f = std::fs::File::options().write(true).open(ctx.join("a.txt")).unwrap();
        f.write_all(b"b\n").unwrap();
        f.set_modified(md.modified().unwrap()).unwrap();
    }
    let (out, id_same) = build(&[]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert_eq!(id_same, id, "the file was not read again");
    // Sent as a tar, it builds too (and sees the new bytes).
    let (out, _) = build(&["--send-context"]);
    assert!(out.contains("Successfully tagged local:latest"), "{out}");
    std::fs::write(ctx.join("a.txt"), "changed\n").unwrap();
    let (out, id4) = build(&[]);
    assert_eq!(out.matches("Using cache").count(), 0, "{out}");
    assert_ne!(id4, id);
    d.ok(&["rmi", "local"]);
    assert_clean(&d);
}

#[test]
fn berth_build_on_a_terminal_draws_its_steps_live() {
    if !can_run("berth build tty") {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs script (bsdutils)");
        return;
    }
    let d = Daemon::start("buildtty");
    d.load_busybox();
    let ctx = d.dir.join("ctx");
    write(&ctx, &[("Dockerfile", "FROM busybox\nRUN echo line-one && echo line-two\nENV X=1\n")]);
    let cmd = format!(
        "stty cols 100; BERTH_HOST=unix://{} {} build -t tty {}",
        d.socket().display(),
        berth_bin().display(),
        ctx.display()
    );
    let o =
        Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(std::process::Stdio::null()).output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("[+] Building"), "{out}");
    assert!(out.contains(" => [2/3] RUN echo line-one && echo line-two"), "{out}");
    assert!(out.contains(" => => line-two"), "the running step's output under it: {out}");
    assert!(out.contains("\x1b[J"), "drawn again in place: {out}");
    assert!(out.contains("Successfully tagged tty:latest"), "{out}");
    // Cached steps say so.
    let o =
        Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(stdout(&o).contains("CACHED"), "{}", stdout(&o));
    d.ok(&["rmi", "tty"]);
    assert_clean(&d);
}

#[test]
fn a_build_pulls_its_base_with_the_credentials_the_cli_sends_and_refuses_what_it_does_not_do() {
    if !can_run("build credentials") || !common::registry::have_registry_tools("build credentials") {
        return;
    }
    let reg = common::registry::Registry::start("buildauth", Some(("builder", "bpw")));
    let d = Daemon::start("buildauth");
    reg.push_archive(&d.fixture(), "private/bb:1");
    let ctx = d.dir.join("ctx");
    write(&ctx, &[("Dockerfile", &format!("FROM {}/private/bb:1\nRUN echo pulled\n", reg.addr))]);
    // X-Registry-Config carries the login to the FROM's pull.
    let o = docker_build(&d, &["build", "-t", "from-private", ctx.to_str().unwrap()], None);
    assert!(!o.status.success(), "no credentials yet");
    let o = d.docker_in(&["login", "-u", "builder", "--password-stdin", &reg.addr], Some(b"bpw\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = docker_build(&d, &["build", "-t", "from-private", ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // RUN --security=insecure is refused, not run sandboxed.
    write(&ctx, &[("Dockerfile", "FROM busybox\nRUN --security=insecure true\n")]);
    d.load_busybox();
    let o = docker_build(&d, &["build", ctx.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("security.insecure"), "{}", stderr(&o));
    // A context directory and a context tar at once are refused.
    let (s, b) = d.http("POST", &format!("/build?contextdir={}", ctx.display()), b"not a tar");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("contextdir"), "{b}");
    d.ok(&["rmi", "from-private", &format!("{}/private/bb:1", reg.addr), "busybox"]);
    assert_clean(&d);
}
