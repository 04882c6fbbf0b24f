//! The process part of a plan: args, env, user, limits, capabilities and seccomp, checked
//! against what this host can grant (used by create and exec).

use std::ffi::CString;
use std::path::PathBuf;

use oci_spec::runtime::{PosixRlimitType, Process};

use super::error::{OciError, Result};
use super::plan::PlanOptions;

/// The container process's attributes, ready for the syscalls.
#[derive(Debug)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub path_env: String,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<(PosixRlimitType, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    /// (bounding, effective, permitted, inheritable, ambient); None keeps them all.
    pub caps: Option<[caps::CapsHashSet; 5]>,
    pub no_new_privs: bool,
    pub seccomp: Option<super::seccomp::Filter>,
    pub terminal: bool,
    /// (rows, columns) of the terminal.
    pub console_size: Option<(u16, u16)>,
    /// ioprio_set(2) value: class << 13 | level.
    pub io_priority: Option<i32>,
}

fn has_sys_resource() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false)
}

fn rlimit_resource(t: PosixRlimitType) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    match t {
        PosixRlimitType::RlimitCpu => R::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => R::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => R::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => R::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => R::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => R::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => R::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => R::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => R::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => R::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => R::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => R::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => R::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => R::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => R::RLIMIT_RTTIME,
    }
}

/// Applies one planned rlimit.
pub fn set_rlimit(t: PosixRlimitType, soft: u64, hard: u64) -> nix::Result<()> {
    nix::sys::resource::setrlimit(rlimit_resource(t), soft, hard)
}

fn cap_set(names: Option<&oci_spec::runtime::Capabilities>) -> caps::CapsHashSet {
    names
        .into_iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
        .collect()
}

/// The process part of the plan (also used by exec).
pub fn process_plan(
    id: &str,
    p: &Process,
    linux: &oci_spec::runtime::Linux,
    opts: &PlanOptions,
    userns: bool,
) -> Result<ProcessPlan> {
    let err = |f: &str, r: String| OciError::spec(id, f, r);
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(err("process.args", "must name a program".into()));
    }
    let cstr =
        |f: &str, s: &str| CString::new(s).map_err(|_| err(f, format!("{s:?} holds a NUL byte")));
    let args = args
        .iter()
        .map(|a| cstr("process.args", a))
        .collect::<Result<Vec<_>>>()?;
    let env_list = p.env().clone().unwrap_or_default();
    let mut path_env = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string();
    for (i, e) in env_list.iter().enumerate() {
        if !e.contains('=') {
            return Err(err(
                &format!("process.env[{i}]"),
                format!("{e:?} is not NAME=value"),
            ));
        }
        if let Some(v) = e.strip_prefix("PATH=") {
            path_env = v.to_string();
        }
    }
    let env = env_list
        .iter()
        .map(|e| cstr("process.env", e))
        .collect::<Result<Vec<_>>>()?;
    if !p.cwd().is_absolute() {
        return Err(err(
            "process.cwd",
            format!("{} is not absolute", p.cwd().display()),
        ));
    }
    // Raising a hard rlimit or lowering oom_score_adj needs CAP_SYS_RESOURCE in the
    // init user namespace; a host whose bounding set lacks it refuses with EPERM.
    let privileged = has_sys_resource() && !userns;
    let mut rlimits = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let field = format!("process.rlimits[{i}]");
        if r.soft() > r.hard() {
            return Err(err(
                &field,
                format!("soft {} is above hard {}", r.soft(), r.hard()),
            ));
        }
        let (_, cur_hard) = nix::sys::resource::getrlimit(rlimit_resource(r.typ()))
            .map_err(|e| err(&field, e.to_string()))?;
        let (mut soft, mut hard) = (r.soft(), r.hard());
        if hard > cur_hard && !privileged {
            if opts.clamp_unprivileged {
                tracing::warn!(container = id, field = %field, requested = hard, allowed = cur_hard,
                    "rlimit above this host's hard limit clamped (no CAP_SYS_RESOURCE)");
                hard = cur_hard;
                soft = soft.min(hard);
            } else {
                return Err(err(
                    &format!("{field}.hard"),
                    format!(
                        "{hard} is above this host's hard limit {cur_hard} and raising it needs \
                         CAP_SYS_RESOURCE, which this host's processes lack (EPERM)"
                    ),
                ));
            }
        }
        rlimits.push((r.typ(), soft, hard));
    }
    let mut oom = p.oom_score_adj();
    if let Some(adj) = oom {
        if !(-1000..=1000).contains(&adj) {
            return Err(err(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
        let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if adj < cur && !has_sys_resource() {
            if opts.clamp_unprivileged {
                tracing::warn!(
                    container = id,
                    requested = adj,
                    allowed = cur,
                    "negative oom_score_adj clamped (no CAP_SYS_RESOURCE)"
                );
                oom = Some(cur);
            } else {
                return Err(err(
                    "process.oomScoreAdj",
                    format!(
                        "{adj} is below the current {cur} and lowering it needs CAP_SYS_RESOURCE, \
                         which this host's processes lack (EPERM)"
                    ),
                ));
            }
        }
    }
    if p.apparmor_profile().as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(err(
            "process.apparmorProfile",
            "this host has no AppArmor".into(),
        ));
    }
    if p.selinux_label().as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(err(
            "process.selinuxLabel",
            "this host has no SELinux".into(),
        ));
    }
    let caps = p.capabilities().as_ref().map(|c| {
        [
            cap_set(c.bounding().as_ref()),
            cap_set(c.effective().as_ref()),
            cap_set(c.permitted().as_ref()),
            cap_set(c.inheritable().as_ref()),
            cap_set(c.ambient().as_ref()),
        ]
    });
    let seccomp = match linux.seccomp() {
        Some(sc) => Some(super::seccomp::filter(
            id,
            sc,
            opts.seccomp_cache.as_deref(),
        )?),
        None => None,
    };
    let io_priority = match p.io_priority() {
        Some(io) => {
            use oci_spec::runtime::IOPriorityClass as C;
            let class = match io.class() {
                C::IoprioClassRt => 1,
                C::IoprioClassBe => 2,
                C::IoprioClassIdle => 3,
            };
            if !(0..=7).contains(&io.priority()) {
                return Err(err(
                    "process.ioPriority.priority",
                    format!("{} is outside 0..7", io.priority()),
                ));
            }
            Some((class << 13) | io.priority() as i32)
        }
        None => None,
    };
    if p.scheduler().is_some() {
        return Err(err(
            "process.scheduler",
            "scheduling policies are not supported by berth yet".into(),
        ));
    }
    if p.exec_cpu_affinity().is_some() {
        return Err(err(
            "process.execCPUAffinity",
            "is not supported by berth yet (use linux.resources.cpu.cpus)".into(),
        ));
    }
    let user = p.user();
    let mut groups = user.additional_gids().clone().unwrap_or_default();
    groups.dedup();
    Ok(ProcessPlan {
        args,
        env,
        path_env,
        cwd: p.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        groups,
        umask: user.umask(),
        rlimits,
        oom_score_adj: oom,
        caps,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        seccomp,
        terminal: p.terminal().unwrap_or(false),
        io_priority,
        console_size: p.console_size().map(|b| {
            (
                b.height().min(u16::MAX as u64) as u16,
                b.width().min(u16::MAX as u64) as u16,
            )
        }),
    })
}
