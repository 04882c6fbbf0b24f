//! The OCI seccomp section compiled into a libseccomp filter, and that filter as the BPF
//! program the kernel takes.
//!
//! The filter is built in the parent, before any process exists, so that every error
//! names its field and nothing is left behind; the container's init only loads it.
//!
//! Turning libseccomp's rules into BPF costs about 7 ms for the RuntimeDefault profile
//! (three architectures, some 400 syscalls), more than the rest of a container's start.
//! Nearly every container of a node has the same profile, so programs are kept by the
//! digest of what they were made from (the section, the architecture, the libseccomp
//! version): in the process, and in a cache directory the caller names, which the holders
//! of one node share.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

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
    // Checked here for their names; loading sets them (see `Filter::load`).
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

/// A compiled filter: the BPF program and the seccomp(2) flags it is loaded with.
#[derive(Debug, Clone)]
pub struct Filter {
    bpf: Arc<[u8]>,
    flags: libc::c_ulong,
}

impl Filter {
    /// Installs the filter on the calling thread (with no_new_privs set, or CAP_SYS_ADMIN
    /// held). Allocates nothing: it runs in forked children.
    pub fn load(&self) -> std::io::Result<()> {
        let prog = libc::sock_fprog {
            len: (self.bpf.len() / INSN) as u16,
            filter: self.bpf.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points to a whole BPF program that outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

const INSN: usize = std::mem::size_of::<libc::sock_filter>();
/// The kernel's limit on one filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// The filter for `sc`: kept from an earlier container with the same section, or
/// compiled (and kept, in this process and under `cache_dir` when given).
pub fn filter(id: &str, sc: &LinuxSeccomp, cache_dir: Option<&Path>) -> Result<Filter> {
    let mut flags = 0;
    for f in sc.flags().iter().flatten() {
        flags |= match json_name(f).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // compile names the field
            _ => 0,
        };
    }
    let key = digest(sc);
    if let Some(bpf) = memory().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(Filter { bpf, flags });
    }
    let file = cache_dir.map(|d| d.join(hex(&key)));
    let bpf: Arc<[u8]> = match file.as_deref().and_then(read_cached) {
        Some(bpf) => bpf.into(),
        None => {
            let ctx = compile(id, sc)?;
            let bpf = export_bpf(&ctx)
                .map_err(|e| OciError::spec(id, "linux.seccomp", format!("libseccomp: {e}")))?;
            if let Some(f) = &file
                && let Err(e) = write_cached(f, &bpf)
            {
                tracing::warn!(container = id, path = %f.display(), error = %e,
                    "seccomp filter not cached");
            }
            bpf.into()
        }
    };
    if let Ok(mut m) = memory().lock() {
        // a handful of profiles per node; a bound against a caller that makes many
        if m.len() >= 64 {
            m.clear();
        }
        m.insert(key, bpf.clone());
    }
    Ok(Filter { bpf, flags })
}

/// Programs by the digest of what they were made from.
type Programs = HashMap<[u8; 32], Arc<[u8]>>;

fn memory() -> &'static Mutex<Programs> {
    static M: std::sync::OnceLock<Mutex<Programs>> = std::sync::OnceLock::new();
    M.get_or_init(Default::default)
}

/// What the program depends on: the section, the architecture the filter is made on,
/// and the libseccomp that makes it.
fn digest(sc: &LinuxSeccomp) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"berth seccomp filter 1\0");
    h.update(std::env::consts::ARCH.as_bytes());
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        h.update(format!("\0{}.{}.{}\0", v.major, v.minor, v.micro).as_bytes());
    }
    h.update(serde_json::to_vec(sc).unwrap_or_default());
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A cache file holds the program, then the SHA-256 of it: a torn or damaged file is
/// not used (and is made again).
fn read_cached(path: &Path) -> Option<Vec<u8>> {
    use sha2::Digest;
    let mut v = std::fs::read(path).ok()?;
    let body = v.len().checked_sub(32)?;
    let ok = body > 0
        && body % INSN == 0
        && body / INSN <= MAX_INSNS
        && sha2::Sha256::digest(&v[..body]).as_slice() == &v[body..];
    if !ok {
        tracing::warn!(path = %path.display(), "damaged seccomp cache file ignored");
        return None;
    }
    v.truncate(body);
    Some(v)
}

fn write_cached(path: &Path, bpf: &[u8]) -> std::io::Result<()> {
    use sha2::Digest;
    if let Some(dir) = path.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)?;
    }
    let mut v = bpf.to_vec();
    v.extend_from_slice(&sha2::Sha256::digest(bpf));
    // Not fsynced: a file torn by a crash fails its digest and is made again.
    crate::store::write_file(path, &v, crate::store::Durability::Replace)
}

/// The filter as the kernel takes it (libseccomp 2.5 exports only to an fd).
fn export_bpf(ctx: &ScmpFilterContext) -> std::io::Result<Vec<u8>> {
    let name = c"berth-seccomp";
    // SAFETY: a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just made and is owned by nobody else.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(f.as_fd()).map_err(std::io::Error::other)?;
    f.rewind()?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    if v.is_empty() || v.len() % INSN != 0 || v.len() / INSN > MAX_INSNS {
        return Err(std::io::Error::other(format!(
            "libseccomp exported no loadable program ({} bytes)",
            v.len()
        )));
    }
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A filter is written to the cache directory as compiled, a damaged copy is not
    /// used, and the program loads and is enforced (mkdir answers the configured errno).
    #[test]
    fn cached_filter_is_the_compiled_one_and_is_enforced() {
        let dir = std::env::temp_dir().join(format!("berth-seccomp-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sc: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 18}]
        }))
        .unwrap();
        let f = filter("unit", &sc, Some(&dir)).unwrap();
        let file = dir.join(hex(&digest(&sc)));
        assert_eq!(read_cached(&file).unwrap(), f.bpf.to_vec());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read_cached(&file).is_none(), "a damaged file is used");
        std::fs::remove_dir_all(&dir).unwrap();

        // SAFETY: the child makes only system calls, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain system calls on a valid NUL-terminated path.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || f.load().is_err() {
                    libc::_exit(100);
                }
                let r = libc::mkdir(c"/berth-seccomp-unit-never".as_ptr(), 0o700);
                let errno = *libc::__errno_location();
                libc::_exit(if r < 0 && errno == libc::EXDEV { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "mkdir was not refused with EXDEV"
        );
    }
}
