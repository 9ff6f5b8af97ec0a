//! linux.seccomp compiled with libseccomp. The filter is built only when the
//! spec has one, and loaded as the last step before execve.

use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use crate::rootfs::Step;

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

/// Build the filter (not loaded yet).
pub(crate) fn compile(s: &LinuxSeccomp) -> Step<ScmpFilterContext> {
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

pub(crate) fn load(f: &ScmpFilterContext) -> Step {
    f.load().map_err(|e| format!("load seccomp filter: {e}"))
}
