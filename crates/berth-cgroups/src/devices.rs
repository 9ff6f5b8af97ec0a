//! Device rules on cgroup v2: the v1 rule list folded into a policy, and that
//! policy compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! the cgroup.
//!
//! v2 has no devices controller; the kernel runs every device program
//! attached to the cgroup and its ancestors on each open and mknod of a
//! device node (`devcgroup_check_permission`). The rules are first replayed
//! through the v1 controller's own semantics (security/device_cgroup.c), so a
//! rule list means the same on both versions, as runc's emulator does.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::{io_err, DeviceRule, Error, Result};

const MKNOD: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;

/// One exception of the policy: a device class (`b` or `c`), numbers
/// (`None` = any) and access bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exception {
    block: bool,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

/// The state a v1 devices cgroup reaches after a list of writes: a default
/// and the exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) default_allow: bool,
    pub(crate) exceptions: Vec<Exception>,
}

fn access_bits(s: &str) -> Result<u8> {
    s.chars().try_fold(0u8, |acc, c| match c {
        'm' => Ok(acc | MKNOD),
        'r' => Ok(acc | READ),
        'w' => Ok(acc | WRITE),
        _ => Err(Error::Invalid { what: "device access", value: s.to_owned() }),
    })
}

fn number(n: Option<i64>) -> Result<Option<u32>> {
    match n {
        None => Ok(None),
        // The program compares against 32-bit immediates; device numbers are
        // far below that (12-bit major, 20-bit minor).
        Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(u32::try_from(v).ok()),
        Some(v) => Err(Error::Invalid { what: "device number", value: v.to_string() }),
    }
}

impl Policy {
    /// Replay `rules` on a cgroup that starts by allowing everything (a new
    /// cgroup under an unrestricted parent).
    pub(crate) fn from_rules(rules: &[DeviceRule]) -> Result<Policy> {
        let mut p = Policy { default_allow: true, exceptions: Vec::new() };
        for r in rules {
            let block = match r.kind {
                'a' => {
                    // "a" switches the default and drops every exception.
                    p.default_allow = r.allow;
                    p.exceptions.clear();
                    continue;
                }
                'b' => true,
                'c' => false,
                _ => return Err(Error::Invalid { what: "device type", value: r.kind.to_string() }),
            };
            let ex =
                Exception { block, major: number(r.major)?, minor: number(r.minor)?, access: access_bits(&r.access)? };
            if ex.access == 0 {
                continue;
            }
            if r.allow == p.default_allow {
                // A rule agreeing with the default removes access from the
                // exceptions with exactly its numbers (dev_exception_rm).
                p.exceptions.retain_mut(|e| {
                    if (e.block, e.major, e.minor) == (ex.block, ex.major, ex.minor) {
                        e.access &= !ex.access;
                    }
                    e.access != 0
                });
            } else if let Some(e) =
                p.exceptions.iter_mut().find(|e| (e.block, e.major, e.minor) == (ex.block, ex.major, ex.minor))
            {
                e.access |= ex.access;
            } else {
                p.exceptions.push(ex);
            }
        }
        Ok(p)
    }

    /// Whether the policy restricts nothing, so no program is needed.
    pub(crate) fn allows_all(&self) -> bool {
        self.default_allow && self.exceptions.is_empty()
    }

    /// The program. Registers: r2 device type, r3 access, r4 major, r5 minor,
    /// r1 scratch once the context is read.
    ///
    /// In deny mode an exception allows a request whose access bits it all
    /// covers (match_exception); in allow mode an exception denies a request
    /// sharing any access bit with it (match_exception_partial).
    pub(crate) fn program(&self) -> Vec<Insn> {
        let mut out = vec![
            // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
            // with access_type = access << 16 | type.
            Insn::ldx_w(2, 1, 0),
            Insn::alu64_k(op::AND, 2, 0xffff),
            Insn::ldx_w(3, 1, 0),
            Insn::alu64_k(op::RSH, 3, 16),
            Insn::ldx_w(4, 1, 4),
            Insn::ldx_w(5, 1, 8),
        ];
        let verdict = i32::from(!self.default_allow);
        for e in &self.exceptions {
            // Each test jumps to the end of this exception's block on a miss;
            // the offset is filled in once the block's length is known.
            let mut block: Vec<(Insn, bool)> = Vec::new();
            block.push((Insn::jmp_k(op::JNE, 2, if e.block { 1 } else { 2 }), true));
            if e.access != MKNOD | READ | WRITE || self.default_allow {
                block.push((Insn::mov64_x(1, 3), false));
                if self.default_allow {
                    block.push((Insn::alu64_k(op::AND, 1, i32::from(e.access)), false));
                    block.push((Insn::jmp_k(op::JEQ, 1, 0), true));
                } else {
                    block.push((Insn::alu64_k(op::AND, 1, i32::from(!e.access & 7)), false));
                    block.push((Insn::jmp_k(op::JNE, 1, 0), true));
                }
            }
            for (reg, num) in [(4, e.major), (5, e.minor)] {
                if let Some(n) = num {
                    // number() keeps n within i32.
                    block.push((Insn::jmp_k(op::JNE, reg, i32::try_from(n).unwrap_or(i32::MAX)), true));
                }
            }
            block.push((Insn::mov64_k(0, verdict), false));
            block.push((Insn::exit(), false));
            let len = block.len();
            for (i, (mut insn, jumps)) in block.into_iter().enumerate() {
                if jumps {
                    insn.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
                }
                out.push(insn);
            }
        }
        out.push(Insn::mov64_k(0, i32::from(self.default_allow)));
        out.push(Insn::exit());
        out
    }
}

mod op {
    pub const AND: u8 = 0x50;
    pub const RSH: u8 = 0x70;
    pub const JEQ: u8 = 0x10;
    pub const JNE: u8 = 0x50;
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one (little-endian bitfields).
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const ALU64: u8 = 0x07;
    const JMP: u8 = 0x05;
    const K: u8 = 0x00;
    const X: u8 = 0x08;

    fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        // BPF_LDX | BPF_MEM | BPF_W
        Insn { code: 0x61, regs: dst | src << 4, off, imm: 0 }
    }
    fn alu64_k(op: u8, dst: u8, imm: i32) -> Insn {
        Insn { code: Self::ALU64 | op | Self::K, regs: dst, off: 0, imm }
    }
    fn mov64_k(dst: u8, imm: i32) -> Insn {
        Insn { code: Self::ALU64 | 0xb0 | Self::K, regs: dst, off: 0, imm }
    }
    fn mov64_x(dst: u8, src: u8) -> Insn {
        Insn { code: Self::ALU64 | 0xb0 | Self::X, regs: dst | src << 4, off: 0, imm: 0 }
    }
    fn jmp_k(op: u8, dst: u8, imm: i32) -> Insn {
        Insn { code: Self::JMP | op | Self::K, regs: dst, off: 0, imm }
    }
    fn exit() -> Insn {
        Insn { code: Self::JMP | 0x90, regs: 0, off: 0, imm: 0 }
    }
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// BPF_PROG_ATTACH and BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised repr(C) prefix of union bpf_attr
    // for `cmd`, and its exact size is passed, so the kernel reads and writes
    // only within it; pointers inside it are checked by the callers.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(r: libc::c_long) -> std::io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the bpf syscall returned a new file descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: &impl AsRawFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = b"Apache-2.0\0";
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..9].copy_from_slice(b"berth_dev");
    match bpf(BPF_PROG_LOAD, &mut attr).and_then(owned) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Load again with the verifier's log, for the error message.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = u32::try_from(log.len()).unwrap_or(0);
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr).and_then(owned);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_owned();
            Err(Error::Bpf { what: "loading the device program", detail: text, source: e })
        }
    }
}

/// Ids of the device programs attached to `cgroup` itself.
fn attached(cgroup: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: u32::try_from(ids.len()).unwrap_or(0),
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(usize::try_from(attr.prog_cnt).unwrap_or(0));
    Ok(ids)
}

/// Enforce `rules` on the v2 cgroup `dir`, replacing the device programs
/// attached there before (a later update must not add to an earlier one).
/// The new program is attached before the old ones go, so the cgroup is
/// never left unrestricted in between.
pub(crate) fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let policy = Policy::from_rules(rules)?;
    let cgroup: OwnedFd = std::fs::File::open(dir).map_err(io_err(dir))?.into();
    let bpf_err = |what| move |source| Error::Bpf { what, detail: String::new(), source };
    let old = attached(&cgroup).map_err(bpf_err("listing the cgroup's device programs"))?;
    if policy.allows_all() && old.is_empty() {
        return Ok(());
    }
    if !policy.allows_all() {
        let prog = load(&policy.program())?;
        let mut attr = AttachAttr {
            target_fd: fd_u32(&cgroup),
            attach_bpf_fd: fd_u32(&prog),
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
        };
        bpf(BPF_PROG_ATTACH, &mut attr).map_err(bpf_err("attaching the device program"))?;
    }
    for id in old {
        let mut get = GetFdAttr { prog_id: id, ..Default::default() };
        let prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get).and_then(owned) {
            Ok(fd) => fd,
            // Detached by someone else meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(bpf_err("opening an old device program")(e)),
        };
        let mut attr = AttachAttr {
            target_fd: fd_u32(&cgroup),
            attach_bpf_fd: fd_u32(&prog),
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(bpf_err("detaching an old device program")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind, major, minor, access: access.into() }
    }

    #[test]
    fn deny_all_then_allow_list() -> Result<()> {
        let p = Policy::from_rules(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rw"),
            rule(true, 'c', Some(1), Some(3), "m"),
            rule(true, 'b', None, None, "m"),
        ])?;
        assert!(!p.default_allow);
        assert_eq!(
            p.exceptions,
            vec![
                Exception { block: false, major: Some(1), minor: Some(3), access: 7 },
                Exception { block: true, major: None, minor: None, access: MKNOD },
            ]
        );
        Ok(())
    }

    #[test]
    fn rules_agreeing_with_the_default_remove_exceptions() -> Result<()> {
        // Allow mode: a deny adds an exception, an allow with the same
        // numbers takes bits away again.
        let p = Policy::from_rules(&[
            rule(false, 'c', Some(1), Some(5), "rw"),
            rule(true, 'c', Some(1), Some(5), "w"),
            rule(true, 'c', Some(1), Some(9), "rwm"),
        ])?;
        assert!(p.default_allow);
        assert_eq!(p.exceptions, vec![Exception { block: false, major: Some(1), minor: Some(5), access: READ }]);
        // A later "a" starts over.
        let p = Policy::from_rules(&[rule(false, 'c', Some(1), Some(5), "rw"), rule(true, 'a', None, None, "rwm")])?;
        assert!(p.allows_all());
        Ok(())
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(Policy::from_rules(&[rule(true, 'c', Some(1), Some(3), "rx")]).is_err());
        assert!(Policy::from_rules(&[rule(true, 'c', Some(-1), Some(3), "r")]).is_err());
        assert!(Policy::from_rules(&[rule(true, 'c', Some(1 << 40), Some(3), "r")]).is_err());
        assert!(Policy::from_rules(&[rule(true, 'p', None, None, "r")]).is_err());
    }

    #[test]
    fn program_layout() -> Result<()> {
        let p = Policy::from_rules(&[rule(false, 'a', None, None, "rwm"), rule(true, 'c', Some(1), None, "r")])?;
        let prog = p.program();
        // 6 context loads; the block: type, mov, and, access, major, verdict,
        // exit; then the default.
        assert_eq!(prog.len(), 6 + 7 + 2);
        let block = &prog[6..13];
        assert_eq!(block[0], Insn { code: 0x55, regs: 2, off: 6, imm: 2 });
        assert_eq!(block[3], Insn { code: 0x55, regs: 1, off: 3, imm: 0 });
        assert_eq!(block[2].imm, i32::from(MKNOD | WRITE));
        assert_eq!(block[4], Insn { code: 0x55, regs: 4, off: 2, imm: 1 });
        assert_eq!(block[5], Insn { code: 0xb7, regs: 0, off: 0, imm: 1 });
        assert_eq!(prog[13], Insn { code: 0xb7, regs: 0, off: 0, imm: 0 });
        assert_eq!(prog[14].code, 0x95);
        Ok(())
    }
}
