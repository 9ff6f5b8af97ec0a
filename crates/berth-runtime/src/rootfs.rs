//! The container's file system, built inside its mount namespace: mounts,
//! /dev, pivot_root, masked and read-only paths. Runs in the container's
//! init; errors are strings that travel back to the runtime.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_cgroups::Cgroup;
use berth_core::rootfs::{fd_path, open_or_create, openat_in_root, Create};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, fchdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::init::CgroupGate;
use crate::mounts::{self, MountOptions};

pub(crate) type Step<T = ()> = std::result::Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: impl FnOnce() -> String) -> Step<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

const NONE: Option<&str> = None;

/// Default device nodes (OCI runtime spec, "Default Devices").
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// What `prepare` needs besides the spec.
pub(crate) struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_userns: bool,
    pub cgroup: &'a Cgroup,
    /// Passed before the first step that needs the cgroup.
    pub gate: &'a CgroupGate<'a>,
}

/// Steps before pivot_root: propagation, the rootfs bind, every mount, /dev.
/// Returns the root propagation, which `enter_root` applies again to the
/// new `/`.
pub(crate) fn prepare(c: &RootfsContext<'_>) -> Step<MsFlags> {
    let linux = c.spec.linux().as_ref();
    // Keep host mount events from propagating in, and ours from leaking out;
    // runc's default is rslave.
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => mounts::propagation(p).ok_or_else(|| format!("invalid rootfsPropagation {p:?}"))?,
    };
    ctx(mount(NONE, "/", NONE, prop, NONE), || "set propagation of /".into())?;
    // A recursive slave or private leaves no shared mount behind; otherwise
    // the mount holding the rootfs may still be shared, which would make
    // pivot_root fail and carry the rootfs bind back to the host (runc's
    // rootfsParentMountPrivate).
    if !prop.contains(MsFlags::MS_REC) || prop.contains(MsFlags::MS_SHARED) {
        parent_mount_private(c.rootfs)?;
    }
    ctx(mount(Some(c.rootfs), c.rootfs, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE), || {
        format!("bind rootfs {}", c.rootfs.display())
    })?;
    let root = ctx(std::fs::File::open(c.rootfs), || format!("open rootfs {}", c.rootfs.display()))?;
    let root: OwnedFd = root.into();
    let mut dev_is_bind = false;
    for m in c.spec.mounts().iter().flatten() {
        let opts = mounts::parse(m.options().as_deref().unwrap_or(&[]));
        if m.destination() == Path::new("/dev") && (opts.is_bind() || m.typ().as_deref() == Some("bind")) {
            dev_is_bind = true;
        }
        mount_one(c, root.as_fd(), m, &opts)?;
    }
    // A missing cwd is created, as runc does (Docker's WorkingDir relies on
    // it); a cwd that is not a directory fails later, at chdir, with its cause.
    if let Some(cwd) = c.spec.process().as_ref().map(|p| p.cwd()) {
        match open_or_create(root.as_fd(), cwd, Create::Dir) {
            Err(e) if e.raw_os_error() != Some(libc::ENOTDIR) && e.raw_os_error() != Some(libc::EEXIST) => {
                return Err(format!("create cwd {}: {e}", cwd.display()))
            }
            _ => {}
        }
    }
    if !dev_is_bind {
        c.gate.pass()?;
        create_devices(root.as_fd(), linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]), c.in_userns)?;
        dev_links(root.as_fd())?;
    }
    Ok(prop)
}

/// Make the mount that holds `path` private if it is shared.
fn parent_mount_private(path: &Path) -> Step {
    let info = ctx(std::fs::read_to_string("/proc/self/mountinfo"), || "read mountinfo".into())?;
    let mut best: Option<(&str, bool)> = None;
    for line in info.lines() {
        // id parent major:minor root mountpoint options [optional...] - ...
        let (head, _) = line.split_once(" - ").unwrap_or((line, ""));
        let fields: Vec<&str> = head.split(' ').collect();
        let Some(mp) = fields.get(4).copied() else { continue };
        let shared = fields.iter().skip(6).any(|f| f.starts_with("shared:"));
        let mp_path = Path::new(mp);
        if path.starts_with(mp_path) && best.is_none_or(|(b, _)| mp.len() >= b.len()) {
            best = Some((mp, shared));
        }
    }
    match best {
        Some((mp, true)) => ctx(mount(NONE, mp, NONE, MsFlags::MS_PRIVATE, NONE), || format!("make {mp} private")),
        _ => Ok(()),
    }
}

fn mount_one(c: &RootfsContext<'_>, root: BorrowedFd<'_>, m: &Mount, opts: &MountOptions) -> Step {
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(format!("mount destination {} is not absolute", dest.display()));
    }
    let bind = opts.is_bind() || typ == "bind";
    let source = m.source().clone().map(|s| if s.is_absolute() || !bind { s } else { c.bundle.join(s) });
    if typ == "cgroup" || typ == "cgroup2" {
        c.gate.pass()?;
        return mount_cgroup(c, root, dest, opts);
    }
    if bind && source.as_deref().is_some_and(|s| !s.exists()) {
        // What is not there yet may be the container's cgroup directory,
        // made by the runtime meanwhile; other sources fail either way.
        c.gate.pass()?;
    }
    let kind = match &source {
        Some(s) if bind && !s.is_dir() => Create::File,
        _ => Create::Dir,
    };
    let target = ctx(open_or_create(root, dest, kind), || format!("create mount point {}", dest.display()))?;
    let target_path = fd_path(target.as_fd());
    let what = || format!("mount {} on {}", source.as_deref().unwrap_or(Path::new(typ)).display(), dest.display());
    if bind {
        let src = source.as_deref().ok_or_else(|| format!("bind mount on {} has no source", dest.display()))?;
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        ctx(mount(Some(src), &target_path, NONE, flags, NONE), what)?;
        if !opts.remount_flags().is_empty() {
            remount_bind(root, dest, opts.remount_flags(), c.in_userns)?;
        }
    } else {
        let fstype = if typ.is_empty() { None } else { Some(typ) };
        let data = opts.data_string();
        ctx(
            mount(source.as_deref().or(Some(Path::new(typ))), &target_path, fstype, opts.flags, data.as_deref()),
            what,
        )?;
    }
    for p in &opts.propagation {
        let again = ctx(openat_in_root(root, dest, libc::O_PATH), || format!("reopen {}", dest.display()))?;
        ctx(mount(NONE, &fd_path(again.as_fd()), NONE, *p, NONE), || format!("set propagation of {}", dest.display()))?;
    }
    Ok(())
}

/// Remount a bind with `flags`, keeping the flags the kernel locks on mounts
/// that came from a more privileged user namespace (else EPERM).
fn remount_bind(root: BorrowedFd<'_>, dest: &Path, flags: MsFlags, in_userns: bool) -> Step {
    let fd = ctx(openat_in_root(root, dest, libc::O_PATH), || format!("reopen {}", dest.display()))?;
    let p = fd_path(fd.as_fd());
    let locked = if in_userns { locked_flags(&p) } else { MsFlags::empty() };
    ctx(mount(NONE, &p, NONE, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked, NONE), || {
        format!("remount {} with {flags:?}", dest.display())
    })
}

fn locked_flags(p: &Path) -> MsFlags {
    let Ok(st) = statvfs(p) else { return MsFlags::empty() };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (s, m) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    out
}

/// cgroup mounts: with a new cgroup namespace on a pure v2 host a fresh
/// cgroup2; otherwise a tmpfs holding a bind of the container's own
/// directory of every hierarchy (v1 cannot be mounted in a user namespace).
fn mount_cgroup(c: &RootfsContext<'_>, root: BorrowedFd<'_>, dest: &Path, opts: &MountOptions) -> Step {
    let target = ctx(open_or_create(root, dest, Create::Dir), || format!("create {}", dest.display()))?;
    let tp = fd_path(target.as_fd());
    let flags = opts.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if c.cgroup.v1.is_empty() {
        let Some(v2) = &c.cgroup.v2 else { return Err("no cgroup hierarchy to mount".into()) };
        return if c.gate.new_cgroupns {
            ctx(mount(Some("cgroup2"), &tp, Some("cgroup2"), flags, NONE), || {
                format!("mount cgroup2 on {}", dest.display())
            })
        } else {
            ctx(mount(Some(v2), &tp, NONE, MsFlags::MS_BIND, NONE), || format!("bind {}", v2.display()))?;
            remount_bind(root, dest, flags, c.in_userns)
        };
    }
    ctx(
        mount(
            Some("tmpfs"),
            &tp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        ),
        || format!("mount tmpfs on {}", dest.display()),
    )?;
    let mut binds: Vec<(String, &PathBuf)> = Vec::new();
    for (ctrls, dir) in &c.cgroup.v1 {
        let name = ctrls.iter().map(|c| c.trim_start_matches("name=")).collect::<Vec<_>>().join(",");
        binds.push((name, dir));
    }
    if let Some(v2) = &c.cgroup.v2 {
        binds.push(("unified".into(), v2));
    }
    for (name, dir) in &binds {
        let sub = dest.join(name);
        let t = ctx(open_or_create(root, &sub, Create::Dir), || format!("create {}", sub.display()))?;
        ctx(mount(Some(dir.as_path()), &fd_path(t.as_fd()), NONE, MsFlags::MS_BIND, NONE), || {
            format!("bind {} on {}", dir.display(), sub.display())
        })?;
    }
    // The tmpfs and every bind get the mount's flags in one call; the
    // tmpfs has nosuid, nodev and noexec already, so only `ro` is new to it.
    // Opened again: `target` is the directory the tmpfs now covers.
    let top = ctx(openat_in_root(root, dest, libc::O_PATH), || format!("reopen {}", dest.display()))?;
    match set_tree_flags(top.as_fd(), flags) {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => return Err(format!("set the flags of {}: {e}", dest.display())),
    }
    for (name, _) in &binds {
        remount_bind(root, &dest.join(name), flags, c.in_userns)?;
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(
            root,
            dest,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            c.in_userns,
        )?;
    }
    Ok(())
}

/// mount_setattr(2)'s flags (linux/mount.h); Linux 5.12.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// Give the mount at `at` and every mount under it `flags` in one
/// mount_setattr(2), which only adds what is asked: flags locked by a user
/// namespace stay. Ok(false) when the kernel has no mount_setattr or
/// `flags` holds what it cannot set; the caller then remounts one by one.
fn set_tree_flags(at: BorrowedFd<'_>, flags: MsFlags) -> std::io::Result<bool> {
    let per_mount = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NOATIME
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_STRICTATIME;
    if !(flags - per_mount).is_empty() {
        return Ok(false);
    }
    let mut set = 0;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NOATIME, MOUNT_ATTR_NOATIME),
        (MsFlags::MS_STRICTATIME, MOUNT_ATTR_STRICTATIME),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(ms) {
            set |= attr;
        }
    }
    // An access-time mode replaces the one there (relatime is 0).
    let clear = if flags.intersects(MsFlags::MS_NOATIME | MsFlags::MS_STRICTATIME | MsFlags::MS_RELATIME) {
        MOUNT_ATTR_ATIME
    } else {
        0
    };
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 };
    // SAFETY: a valid fd, an empty C string and a struct of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            at.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) => Ok(false),
        _ => Err(e),
    }
}

/// path, kind, major, minor, mode, uid, gid
type DeviceNode = (PathBuf, SFlag, u64, u64, u32, Option<u32>, Option<u32>);

fn create_devices(root: BorrowedFd<'_>, devices: &[LinuxDevice], in_userns: bool) -> Step {
    let mut all: Vec<DeviceNode> = Vec::new();
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(format!("device {} has type a", d.path().display())),
        };
        all.push((
            d.path().clone(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid(),
            d.gid(),
        ));
    }
    for (p, maj, min) in DEFAULT_DEVICES {
        if !all.iter().any(|d| d.0 == Path::new(p)) {
            all.push((PathBuf::from(p), SFlag::S_IFCHR, *maj, *min, 0o666, Some(0), Some(0)));
        }
    }
    for (path, kind, major, minor, mode, uid, gid) in all {
        if !path.starts_with("/dev") {
            return Err(format!("device {} is not under /dev", path.display()));
        }
        if in_userns {
            // mknod is not allowed in a user namespace: bind the host's node.
            let t = ctx(open_or_create(root, &path, Create::File), || format!("create {}", path.display()))?;
            ctx(mount(Some(&path), &fd_path(t.as_fd()), NONE, MsFlags::MS_BIND, NONE), || {
                format!("bind device {}", path.display())
            })?;
            continue;
        }
        let parent = path.parent().unwrap_or(Path::new("/dev"));
        let name = path.file_name().ok_or_else(|| format!("bad device path {}", path.display()))?;
        let dir = ctx(open_or_create(root, parent, Create::Dir), || format!("create {}", parent.display()))?;
        let dir_path = fd_path(dir.as_fd()).join(name);
        let _ = std::fs::remove_file(&dir_path);
        let dev = nix::sys::stat::makedev(major, minor);
        ctx(mknod(&dir_path, kind, Mode::from_bits_truncate(mode & 0o7777), dev), || {
            format!("mknod {}", path.display())
        })?;
        ctx(nix::unistd::chown(&dir_path, uid.map(Into::into), gid.map(Into::into)), || {
            format!("chown {}", path.display())
        })?;
    }
    Ok(())
}

fn dev_links(root: BorrowedFd<'_>) -> Step {
    let dev = ctx(open_or_create(root, Path::new("/dev"), Create::Dir), || "create /dev".into())?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        let n = CString::new(name).map_err(|e| e.to_string())?;
        let t = CString::new(target).map_err(|e| e.to_string())?;
        if name == "ptmx" {
            // SAFETY: valid fd and NUL-terminated name; failure (absent) is fine.
            unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
        }
        // SAFETY: valid fd and NUL-terminated strings.
        let rc = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("symlink /dev/{name}: {e}"));
            }
        }
    }
    let _ = open_or_create(root, Path::new("/dev/shm"), Create::Dir);
    let _ = open_or_create(root, Path::new("/dev/pts"), Create::Dir);
    Ok(())
}

/// Make the rootfs `/`: pivot_root as runc does (pivot onto itself, then
/// detach the old root), or with `no_pivot` a move mount and chroot.
///
/// A shared root propagation is applied once more to the new `/` alone: the
/// rootfs bind was made private on the way (see `parent_mount_private`);
/// the spec asks for a shared rootfs, while mounts below it keep their own
/// propagation options. Debian's runc 1.1.5 leaves this root private.
pub(crate) fn enter_root(rootfs: &Path, no_pivot: bool, prop: MsFlags) -> Step {
    if no_pivot {
        ctx(chdir(rootfs), || format!("chdir {}", rootfs.display()))?;
        ctx(mount(Some(rootfs), "/", NONE, MsFlags::MS_MOVE, NONE), || "move rootfs to /".into())?;
        ctx(nix::unistd::chroot("."), || "chroot".into())?;
        ctx(chdir("/"), || "chdir /".into())?;
    } else {
        pivot_onto(rootfs)?;
    }
    if prop.contains(MsFlags::MS_SHARED) {
        ctx(mount(NONE, "/", NONE, MsFlags::MS_SHARED, NONE), || "make the new / shared".into())?;
    }
    Ok(())
}

/// Enter `rootfs` by chroot, for a container without a mount namespace of
/// its own.
pub(crate) fn chroot_into(rootfs: &Path) -> Step {
    ctx(chdir(rootfs), || format!("chdir {}", rootfs.display()))?;
    ctx(nix::unistd::chroot("."), || "chroot".into())?;
    ctx(chdir("/"), || "chdir /".into())
}

fn pivot_onto(rootfs: &Path) -> Step {
    let old = ctx(std::fs::File::open("/"), || "open /".into())?;
    let new = ctx(std::fs::File::open(rootfs), || format!("open {}", rootfs.display()))?;
    ctx(fchdir(new.as_raw_fd()), || "fchdir rootfs".into())?;
    ctx(pivot_root(".", "."), || format!("pivot_root {}", rootfs.display()))?;
    ctx(fchdir(old.as_raw_fd()), || "fchdir old root".into())?;
    // The old root must not propagate its unmount back to the host.
    ctx(mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE), || "make old root rslave".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || "detach old root".into())?;
    ctx(chdir("/"), || "chdir /".into())
}

/// Steps after pivot_root, in the container's `/`.
pub(crate) fn finish(spec: &Spec, in_userns: bool) -> Step {
    let linux = spec.linux().as_ref();
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        // Each name passed `berth_core::sysctl::check` in `load_spec`.
        for (k, v) in sysctl {
            let p = berth_core::sysctl::proc_path(k).ok_or_else(|| format!("invalid sysctl name {k:?}"))?;
            ctx(std::fs::write(&p, v), || format!("write sysctl {k}"))?;
        }
    }
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        readonly_path(p, in_userns)?;
    }
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        mask_path(p)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        let locked = if in_userns { locked_flags(Path::new("/")) } else { MsFlags::empty() };
        ctx(
            mount(NONE, "/", NONE, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked, NONE),
            || "remount / read-only".into(),
        )?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        ctx(nix::unistd::sethostname(h), || format!("set hostname {h}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: the pointer and length describe `d`'s bytes.
        let rc = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        if rc < 0 {
            return Err(format!("set domainname {d}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn readonly_path(p: &str, in_userns: bool) -> Step {
    let path = Path::new(p);
    match mount(Some(path), path, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE) {
        Err(nix::Error::ENOENT) => return Ok(()),
        r => ctx(r, || format!("bind read-only path {p}"))?,
    }
    let locked = if in_userns { locked_flags(path) } else { MsFlags::empty() };
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | locked;
    ctx(mount(NONE, path, NONE, flags, NONE), || format!("remount {p} read-only"))
}

fn mask_path(p: &str) -> Step {
    let path = Path::new(p);
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("stat masked path {p}: {e}")),
    };
    if meta.is_dir() {
        ctx(mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE), || format!("mask {p}"))
    } else {
        ctx(mount(Some("/dev/null"), path, NONE, MsFlags::MS_BIND, NONE), || format!("mask {p}"))
    }
}
