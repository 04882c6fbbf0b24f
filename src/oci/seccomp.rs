//! The OCI seccomp section compiled into a libseccomp filter.
//!
//! The filter is built in the parent, before any process exists, so that every error
//! names its field and nothing is left behind; the container's init only loads it.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use super::error::{OciError, Result};

fn action(id: &str, field: &str, a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    let errno = i32::try_from(errno.unwrap_or(libc::EPERM as u32))
        .map_err(|_| OciError::spec(id, field, "errnoRet out of range"))?;
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(OciError::spec(
                id,
                field,
                "SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which berth does not \
                 support",
            ));
        }
    })
}

fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Compiles `sc` into a filter ready to load.
pub fn compile(id: &str, sc: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let seccomp_err = |field: &str, e: libseccomp::error::SeccompError| {
        OciError::spec(id, field, format!("libseccomp: {e}"))
    };
    let default = action(
        id,
        "linux.seccomp.defaultAction",
        sc.default_action(),
        sc.default_errno_ret(),
    )?;
    let mut ctx = ScmpFilterContext::new(default)
        .map_err(|e| seccomp_err("linux.seccomp.defaultAction", e))?;
    // The runtime sets no_new_privs itself, when the spec asks for it.
    ctx.set_ctl_nnp(false)
        .map_err(|e| seccomp_err("linux.seccomp", e))?;
    for (i, arch) in sc.architectures().iter().flatten().enumerate() {
        let name = json_name(arch);
        let field = format!("linux.seccomp.architectures[{i}]");
        let a = ScmpArch::from_str(&name).map_err(|e| seccomp_err(&field, e))?;
        ctx.add_arch(a).map_err(|e| seccomp_err(&field, e))?;
    }
    for (i, flag) in sc.flags().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.flags[{i}]");
        match json_name(flag).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => {
                ctx.set_ctl_tsync(true)
                    .map_err(|e| seccomp_err(&field, e))?;
            }
            "SECCOMP_FILTER_FLAG_LOG" => {
                ctx.set_ctl_log(true).map_err(|e| seccomp_err(&field, e))?;
            }
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => {
                ctx.set_ctl_ssb(true).map_err(|e| seccomp_err(&field, e))?;
            }
            other => {
                return Err(OciError::spec(
                    id,
                    field,
                    format!("unsupported flag {other}"),
                ));
            }
        }
    }
    for (i, s) in sc.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(id, &format!("{field}.action"), s.action(), s.errno_ret())?;
        if act == default {
            continue;
        }
        let mut conds = Vec::new();
        let mut idx: Vec<usize> = Vec::new();
        for (j, a) in s.args().iter().flatten().enumerate() {
            let op = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value()),
            };
            let datum = if matches!(op, ScmpCompareOp::MaskedEqual(_)) {
                a.value_two().unwrap_or(0)
            } else {
                a.value()
            };
            if a.index() > 5 {
                return Err(OciError::spec(
                    id,
                    format!("{field}.args[{j}].index"),
                    format!("{} is above 5", a.index()),
                ));
            }
            idx.push(a.index());
            conds.push(ScmpArgCompare::new(a.index() as u32, op, datum));
        }
        // libseccomp ANDs conditions on different arguments but cannot AND two on the
        // same one; as runc does, those become one rule per condition (OR).
        idx.sort_unstable();
        let repeated = idx.windows(2).any(|w| w[0] == w[1]);
        for name in s.names() {
            // A name this libseccomp or architecture does not know is skipped, as runc
            // and crun do: profiles list syscalls of every architecture.
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                tracing::debug!(container = id, syscall = %name, "unknown syscall skipped");
                continue;
            };
            let res = if conds.is_empty() {
                ctx.add_rule(act, sys)
            } else if repeated {
                conds
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, sys, &[*c]).map(|_| ()))
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, sys, &conds)
            };
            res.map_err(|e| seccomp_err(&format!("{field} ({name})"), e))?;
        }
    }
    Ok(ctx)
}
