//! linux.seccomp compiled with libseccomp into a classic BPF program, and
//! that program loaded with seccomp(2) as the last step before execve.
//!
//! Compiling a profile the size of Docker's default takes libseccomp about
//! as long as the rest of a container's start, so the runtime compiles in
//! the parent, before fork, and keeps each program in a cache under its
//! state root, named by the hash of the profile and of the libseccomp that
//! compiled it. A cache entry carries the hash of its own bytes; one that
//! does not match is compiled again, never loaded.

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use sha2::{Digest, Sha256};

use crate::rootfs::Step;

/// Name of the cache directory under the state root; `@` cannot start a
/// container id, so it never clashes with one.
pub(crate) const CACHE_DIR: &str = "@seccomp";
const MAGIC: &[u8; 8] = b"BSECCMP1";
/// BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;

/// A compiled filter and the seccomp(2) flags to load it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    code: Vec<u8>,
    flags: libc::c_ulong,
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        // runc's default errno is EPERM.
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.map_or(libc::EPERM, |e| e as i32)),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.map_or(libc::EPERM as u16, |e| e as u16)),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    }
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The spec puts the mask in `value` and the expected value in `valueTwo`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Build the libseccomp filter.
fn filter(s: &LinuxSeccomp) -> Step<ScmpFilterContext> {
    let default = action(s.default_action(), s.default_errno_ret());
    let mut f = ScmpFilterContext::new(default).map_err(|e| format!("seccomp: {e}"))?;
    // no_new_privs is the spec's process.noNewPrivileges, not libseccomp's call.
    f.set_ctl_nnp(false).map_err(|e| format!("seccomp: {e}"))?;
    for a in s.architectures().iter().flatten() {
        let name = serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let arch = ScmpArch::from_str(&name).map_err(|e| format!("seccomp architecture {name}: {e}"))?;
        f.add_arch(arch).map_err(|e| format!("seccomp architecture {name}: {e}"))?;
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue; // libseccomp refuses rules equal to the default
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let cmp = op(a.op(), a.value_two());
                let datum = if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                    a.value_two().unwrap_or(0)
                } else {
                    a.value()
                };
                let cmp =
                    if let ScmpCompareOp::MaskedEqual(_) = cmp { ScmpCompareOp::MaskedEqual(a.value()) } else { cmp };
                ScmpArgCompare::new(a.index() as u32, cmp, datum)
            })
            .collect();
        for name in rule.names() {
            // Syscalls this kernel or libseccomp does not know are skipped,
            // as runc does, so one profile serves many kernels.
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            let r = if conds.is_empty() { f.add_rule(act, sc) } else { f.add_rule_conditional(act, sc, &conds) };
            r.map_err(|e| format!("seccomp rule for {name}: {e}"))?;
        }
    }
    Ok(f)
}

fn flags(s: &LinuxSeccomp) -> libc::c_ulong {
    s.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        }
    })
}

/// The cache key: the profile as JSON, the libseccomp version and API level
/// (which decide the code it emits) and the machine.
fn key(s: &LinuxSeccomp) -> Step<String> {
    let json = serde_json::to_vec(s).map_err(|e| format!("seccomp: {e}"))?;
    let v = libseccomp::ScmpVersion::current().map_err(|e| format!("seccomp: {e}"))?;
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(format!("{}.{}.{} api{} {}\0", v.major, v.minor, v.micro, libseccomp::get_api(), std::env::consts::ARCH));
    h.update(&json);
    Ok(berth_core::id::hex(&h.finalize()))
}

/// A cache entry: magic, sha256 of the code, code.
fn decode(entry: &[u8]) -> Option<Vec<u8>> {
    let rest = entry.strip_prefix(MAGIC.as_slice())?;
    let (sum, code) = rest.split_at_checked(32)?;
    let valid = !code.is_empty() && code.len() % 8 == 0 && code.len() / 8 <= MAX_INSNS;
    (valid && Sha256::digest(code).as_slice() == sum).then(|| code.to_vec())
}

fn encode(code: &[u8]) -> Vec<u8> {
    [MAGIC.as_slice(), Sha256::digest(code).as_slice(), code].concat()
}

/// Compile with libseccomp and take the BPF it would load.
fn compile(s: &LinuxSeccomp) -> Step<Vec<u8>> {
    let f = filter(s)?;
    // SAFETY: a NUL-terminated name and no flags beyond CLOEXEC.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("seccomp: memfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.export_bpf(&file).map_err(|e| format!("seccomp: export filter: {e}"))?;
    let mut code = Vec::new();
    file.rewind().and_then(|_| file.read_to_end(&mut code)).map_err(|e| format!("seccomp: read filter: {e}"))?;
    if code.is_empty() || code.len() % 8 != 0 || code.len() / 8 > MAX_INSNS {
        return Err(format!("seccomp: the compiled filter has {} bytes, not a program the kernel takes", code.len()));
    }
    Ok(code)
}

/// The program for `s`, from the cache in `root` when there, else compiled
/// and stored there. A cache that cannot be written only costs speed.
pub(crate) fn program(s: &LinuxSeccomp, root: Option<&Path>) -> Step<Program> {
    if s.syscalls().iter().flatten().any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
        || s.default_action() == LinuxSeccompAction::ScmpActNotify
    {
        return Err("seccomp: SCMP_ACT_NOTIFY needs a listenerPath, which berth does not support".into());
    }
    let flags = flags(s);
    let Some(root) = root else { return Ok(Program { code: compile(s)?, flags }) };
    let dir = root.join(CACHE_DIR);
    let path = dir.join(key(s)?);
    if let Some(code) = std::fs::read(&path).ok().as_deref().and_then(decode) {
        return Ok(Program { code, flags });
    }
    let code = compile(s)?;
    let _ = std::fs::create_dir_all(&dir).and_then(|_| {
        berth_core::atomic::replace(&path, &encode(&code), 0o600, berth_core::atomic::Durability::Volatile)
    });
    Ok(Program { code, flags })
}

/// Load the program for this process (and its future children).
pub(crate) fn load(p: &Program) -> Step {
    let filter: Vec<libc::sock_filter> = p
        .code
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| "seccomp: filter too long".to_owned())?,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prog points at `filter`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, p.flags, &prog) };
    if rc < 0 {
        return Err(format!("load seccomp filter: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{ "names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95 }]
        }))
        .unwrap_or_default()
    }

    #[test]
    fn cached_program_is_reused_and_a_bad_entry_recompiled() -> Step {
        let root = std::env::temp_dir().join(format!("berth-seccomp-cache-{}", std::process::id()));
        let s = profile();
        let first = program(&s, Some(&root))?;
        let entries: Vec<_> = std::fs::read_dir(root.join(CACHE_DIR)).map_err(|e| e.to_string())?.flatten().collect();
        assert_eq!(entries.len(), 1);
        let path = entries[0].path();
        assert_eq!(program(&s, Some(&root))?, first, "a hit gives the same program");
        assert_eq!(first, program(&s, None)?, "and so does compiling without a cache");
        // Flip one instruction byte: the entry no longer matches its hash.
        let mut bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        assert_eq!(program(&s, Some(&root))?, first);
        assert_eq!(decode(&std::fs::read(&path).map_err(|e| e.to_string())?), Some(first.code.clone()));
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }

    #[test]
    fn another_profile_gets_another_entry() -> Step {
        let mut other = profile();
        other.set_default_errno_ret(Some(5));
        assert_ne!(key(&profile())?, key(&other)?);
        Ok(())
    }

    #[test]
    fn truncated_or_foreign_entries_are_refused() {
        let code = vec![0u8; 16];
        let good = encode(&code);
        assert_eq!(decode(&good), Some(code));
        assert_eq!(decode(&good[..good.len() - 3]), None);
        assert_eq!(decode(b"BSECCMP1"), None);
        assert_eq!(decode(&[]), None);
    }
}
