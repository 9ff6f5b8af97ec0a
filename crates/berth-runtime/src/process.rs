//! The process side of init: rlimits, user and groups, capabilities,
//! no_new_privs, the executable's lookup and execve.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, Process};

use crate::rootfs::Step;

/// rlimit names of the spec to resource numbers.
const RLIMITS: &[(&str, libc::__rlimit_resource_t)] = &[
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
];

pub(crate) fn set_rlimits(limits: &[PosixRlimit]) -> Step {
    for l in limits {
        let name = serde_json::to_value(l.typ()).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let res = RLIMITS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .ok_or_else(|| format!("unknown rlimit {name}"))?;
        let lim = libc::rlimit { rlim_cur: l.soft(), rlim_max: l.hard() };
        // SAFETY: `lim` is a valid rlimit the kernel only reads.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            return Err(format!("setrlimit {name}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The caller's /proc, held by the init of a container without a mount
/// namespace of its own: its root has no /proc mounted, and none may be.
/// Closed at execve.
static HOST_PROC: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// Hold the caller's /proc before entering a root without one.
pub(crate) fn hold_proc() -> Step {
    let fd = nix::fcntl::open(
        "/proc",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open /proc: {e}"))?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let _ = HOST_PROC.set(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(())
}

/// Open `/proc/<rel>` for writing: through the held /proc when there is one.
pub(crate) fn open_proc_for_write(rel: &str) -> std::io::Result<std::fs::File> {
    let Some(proc_fd) = HOST_PROC.get() else {
        return std::fs::OpenOptions::new().write(true).open(format!("/proc/{rel}"));
    };
    let fd = nix::fcntl::openat(
        Some(std::os::fd::AsRawFd::as_raw_fd(proc_fd)),
        rel,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

pub(crate) fn set_oom_score_adj(v: i32) -> Step {
    open_proc_for_write("self/oom_score_adj")
        .and_then(|mut f| std::io::Write::write_all(&mut f, v.to_string().as_bytes()))
        .map_err(|e| format!("set oom_score_adj {v}: {e}"))
}

fn to_caps(set: Option<&Capabilities>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        // Capabilities the kernel does not know are skipped, as runc does.
        if let Ok(cap) = name.parse::<caps::Capability>() {
            out.insert(cap);
        }
    }
    out
}

/// Drop the bounding set to what is listed (needs CAP_SETPCAP, so before
/// the switch of user).
pub(crate) fn drop_bounding(c: Option<&LinuxCapabilities>) -> Step {
    let Some(c) = c else { return Ok(()) };
    let keep = to_caps(c.bounding().as_ref());
    for cap in caps::all() {
        if !keep.contains(&cap) {
            // EINVAL: the kernel does not have this capability.
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                Err(e) if e.to_string().contains("Invalid argument") => {}
                Err(e) => return Err(format!("drop bounding capability {cap}: {e}")),
            }
        }
    }
    Ok(())
}

/// Set the effective, permitted, inheritable and ambient sets.
pub(crate) fn set_caps(c: Option<&LinuxCapabilities>) -> Step {
    let empty = LinuxCapabilities::default();
    let c = c.unwrap_or(&empty);
    let permitted = to_caps(c.permitted().as_ref());
    let effective = to_caps(c.effective().as_ref());
    let inheritable = to_caps(c.inheritable().as_ref());
    let ambient = to_caps(c.ambient().as_ref());
    // Permitted first: effective and inheritable must be subsets of it.
    caps::set(None, CapSet::Effective, &permitted.union(&effective).cloned().collect())
        .map_err(|e| format!("set capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| format!("set permitted capabilities: {e}"))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| format!("set effective capabilities: {e}"))?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| format!("set inheritable capabilities: {e}"))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clear ambient capabilities: {e}"))?;
    for cap in ambient {
        // Ambient must also be permitted and inheritable; others are skipped as runc does.
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap).map_err(|e| format!("raise ambient {cap}: {e}"))?;
        }
    }
    Ok(())
}

/// Switch to the process's user, keeping capabilities for `set_caps`.
pub(crate) fn set_user(p: &Process) -> Step {
    let u = p.user();
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
        return Err(format!("keep capabilities: {}", std::io::Error::last_os_error()));
    }
    let groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
    // setgroups is refused in a user namespace whose setgroups is "deny";
    // only fail when groups were asked for.
    // SAFETY: `groups` is a valid array of its length.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 && !groups.is_empty() {
        return Err(format!("setgroups {groups:?}: {}", std::io::Error::last_os_error()));
    }
    // Raw syscalls: glibc's wrappers would broadcast to threads, and the
    // whole thread group here is this one thread.
    // SAFETY: integer arguments only.
    if unsafe { libc::syscall(libc::SYS_setresgid, u.gid(), u.gid(), u.gid()) } < 0 {
        return Err(format!("setgid {}: {}", u.gid(), std::io::Error::last_os_error()));
    }
    // SAFETY: integer arguments only.
    if unsafe { libc::syscall(libc::SYS_setresuid, u.uid(), u.uid(), u.uid()) } < 0 {
        return Err(format!("setuid {}: {}", u.uid(), std::io::Error::last_os_error()));
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

pub(crate) fn set_no_new_privs() -> Step {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(format!("set no_new_privs: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// PATH from the process's environment, or the default runc uses.
fn path_var(env: &[String]) -> String {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH=").map(str::to_owned))
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned())
}

/// Why an executable cannot be run, as runc words it; the exit code is the
/// one Docker gives such a failure (127 not found, 126 not executable).
#[derive(Debug)]
pub(crate) struct ExecError {
    pub message: String,
    pub code: i32,
}

/// Find args[0] in the container (after pivot_root), as execvp would.
pub(crate) fn lookup(arg0: &str, env: &[String]) -> Result<PathBuf, ExecError> {
    let check = |p: &Path| -> Result<PathBuf, ExecError> {
        let meta = std::fs::metadata(p).map_err(|e| ExecError {
            message: format!("exec: {:?}: stat {}: {}", arg0, p.display(), strip_os(&e)),
            code: if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 },
        })?;
        if meta.is_dir() {
            return Err(ExecError { message: format!("exec: {arg0:?}: is a directory"), code: 126 });
        }
        Ok(p.to_owned())
    };
    if arg0.contains('/') {
        return check(Path::new(arg0));
    }
    for dir in path_var(env).split(':') {
        let cand = Path::new(if dir.is_empty() { "." } else { dir }).join(arg0);
        if let Ok(meta) = std::fs::metadata(&cand) {
            if meta.is_file() && nix::unistd::access(&cand, nix::unistd::AccessFlags::X_OK).is_ok() {
                return Ok(cand);
            }
        }
    }
    Err(ExecError { message: format!("exec: {arg0:?}: executable file not found in $PATH"), code: 127 })
}

fn strip_os(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_lowercase()
}

/// Whether the kernel runs AppArmor (the LSM is loaded and enabled).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

/// Ask AppArmor to confine the process in `profile` from its execve on, as
/// runc does (`exec <profile>` to the thread's exec attribute). `load_spec`
/// has refused a profile on a kernel without AppArmor.
fn apparmor_on_exec(profile: &str) -> Step {
    let value = format!("exec {profile}");
    let write = |p: &str| open_proc_for_write(p).and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()));
    write("thread-self/attr/apparmor/exec")
        .or_else(|_| write("thread-self/attr/exec"))
        .map_err(|e| format!("apply AppArmor profile {profile}: {e}"))
}

/// execve; returns only on failure.
pub(crate) fn execve(path: &Path, args: &[String], env: &[String]) -> ExecError {
    let c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let cpath = c(path.as_os_str().as_bytes());
    let cargs: Vec<CString> = args.iter().map(|a| c(a.as_bytes())).collect();
    let cenv: Vec<CString> = env.iter().map(|a| c(a.as_bytes())).collect();
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = cenv.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into
    // CStrings that outlive the call.
    unsafe { libc::execve(cpath.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = std::io::Error::last_os_error();
    let code = if e.raw_os_error() == Some(libc::ENOENT) { 127 } else { 126 };
    ExecError { message: format!("exec {}: {}", path.display(), strip_os(&e)), code }
}

/// Mark every fd from `from` on close-on-exec, so nothing of the runtime
/// reaches the container (CVE-2024-21626 leaked a host directory fd).
pub(crate) fn cloexec_from(from: u32) -> Step {
    // SAFETY: close_range with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return Ok(());
    }
    // Narrow fallback for kernels before 5.11: walk /proc/self/fd.
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("list fds: {e}"))?;
    let fds: Vec<i32> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    for fd in fds.into_iter().filter(|fd| *fd >= from as i32) {
        // SAFETY: fcntl on an integer fd; a closed one just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Make this process non-dumpable: other processes of the container can
/// then not open /proc/<pid>/exe of the runtime while it works inside the
/// container's namespaces (CVE-2019-5736). execve resets it.
pub(crate) fn set_non_dumpable() -> Step {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        return Err(format!("set non-dumpable: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A blocked mask and an ignored SIGPIPE survive execve. A caller that
/// waits for SIGCHLD on a signalfd (berth-shim) blocks it and writes to
/// pipes with SIGPIPE ignored; the container's process starts with neither.
fn reset_signals() -> Step {
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(|e| format!("reset signal mask: {e}"))?;
    // SAFETY: restores the default disposition; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    Ok(())
}

/// What is left to do after `prepare`: the seccomp filter to load last (with
/// no_new_privs) and the execve.
pub(crate) struct Prepared {
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub late_filter: Option<crate::seccomp::Program>,
}

/// The process steps shared by a container's init and `exec`, in runc's
/// order: rlimits, oom_score_adj, cwd, the executable's lookup (so a missing
/// binary fails `create`, not `start`), seccomp (early without
/// no_new_privs, as it then needs CAP_SYS_ADMIN), bounding set, user,
/// capabilities, umask, no_new_privs, and close-on-exec for every fd past
/// stdio and the preserved ones.
pub(crate) fn prepare(p: &Process, filter: Option<crate::seccomp::Program>, preserve_fds: u32) -> Step<Prepared> {
    reset_signals()?;
    set_rlimits(p.rlimits().as_deref().unwrap_or(&[]))?;
    if let Some(adj) = p.oom_score_adj() {
        set_oom_score_adj(adj)?;
    }
    let cwd = p.cwd();
    nix::unistd::chdir(cwd).map_err(|e| {
        format!("chdir to cwd ({:?}) set in config.json failed: {}", cwd.display().to_string(), e.desc().to_lowercase())
    })?;
    let args = p.args().clone().unwrap_or_default();
    let env = p.env().clone().unwrap_or_default();
    let exe = lookup(args.first().ok_or("process.args is empty")?, &env).map_err(|e| e.message)?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        apparmor_on_exec(profile)?;
    }
    if let (Some(f), false) = (&filter, nnp) {
        crate::seccomp::load(f)?;
    }
    let caps = p.capabilities().as_ref();
    drop_bounding(caps)?;
    set_user(p)?;
    // Changing uid may make us dumpable again; stay non-dumpable until execve.
    set_non_dumpable()?;
    set_caps(caps)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(p.user().umask().unwrap_or(0o022) as libc::mode_t));
    if nnp {
        set_no_new_privs()?;
    }
    cloexec_from(3 + preserve_fds)?;
    Ok(Prepared { exe, args, env, late_filter: if nnp { filter } else { None } })
}
