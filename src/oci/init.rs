//! The child side of container creation: the intermediate process that enters the
//! namespaces, and the container's init that builds the root and becomes the process.
//!
//! Messages to the runtime (one per SOCK_SEQPACKET send):
//! `U` user namespace made, map it; `P<pid>` the init's pid; `H` run createRuntime
//! hooks now; `R` ready (created); `E<text>` failed. From the runtime: `M` mapped, `G`
//! go (the intermediate is in the cgroup; not sent to one that enters it itself), `K`
//! hooks done.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};

use super::plan::{Plan, ProcessPlan};
use super::rootfs;
use crate::cgroups::Opened;
use crate::sys::clone::{clone_parent, exit_now, join_ns, recv_msg, send_msg};

/// What the child needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct ChildFds {
    pub sock: RawFd,
    /// O_PATH fd of exec.fifo (create), or None (exec: run at once).
    pub fifo: Option<RawFd>,
    /// Stop for createRuntime hooks.
    pub hooks: bool,
    /// Connected console socket, for a terminal process.
    pub console: Option<RawFd>,
    /// The process's stdin, stdout and stderr, when not the caller's own.
    pub stdio: Option<[RawFd; 3]>,
}

/// Reports a failure to the runtime and exits: `X` when the process's program cannot be
/// executed ([`EXEC_ERROR`]), `E` for anything else.
fn fail(sock: RawFd, msg: &str) -> ! {
    let kind = if msg.starts_with(EXEC_ERROR) {
        'X'
    } else {
        'E'
    };
    let _ = send_msg(sock, format!("{kind}{msg}").as_bytes());
    exit_now(1)
}

fn expect(sock: RawFd, want: u8) -> Result<Vec<u8>, String> {
    match recv_msg(sock) {
        Ok(m) if m.first() == Some(&want) => Ok(m[1..].to_vec()),
        Ok(m) => Err(format!(
            "runtime sent {:?}, expected {:?}",
            String::from_utf8_lossy(&m),
            want as char
        )),
        Err(e) => Err(format!("wait for runtime: {e}")),
    }
}

/// The intermediate process (just forked from the runtime). Never returns. With `entry`,
/// it enters the container's cgroup (made before the fork) itself (see
/// [`crate::cgroups::Entry`]); without, the runtime moves it in and says `G`.
pub fn intermediate(plan: &Plan, fds: ChildFds, entry: Option<&Opened>) -> ! {
    match intermediate_inner(plan, fds, entry) {
        Ok(()) => exit_now(0),
        Err(m) => fail(fds.sock, &m),
    }
}

fn intermediate_inner(plan: &Plan, fds: ChildFds, entry: Option<&Opened>) -> Result<(), String> {
    if let Some(stdio) = fds.stdio {
        set_stdio(stdio)?;
    }
    let mut in_userns = join_paths(plan)?;
    if plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare user namespace: {e}"))?;
        send_msg(fds.sock, b"U").map_err(|e| e.to_string())?;
        expect(fds.sock, b'M')?;
        in_userns = true;
    }
    if in_userns {
        // Become the namespace's root, so that what follows is done with its caps.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(|e| format!("setresgid 0 in the user namespace: {e}"))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .map_err(|e| format!("setresuid 0 in the user namespace: {e}"))?;
    }
    // The init is cloned once this process is in the cgroup.
    // In raw bits: bitflags' `!` would drop CLONE_NEWTIME, which nix does not name.
    let rest = CloneFlags::from_bits_retain(
        plan.new.bits() & !(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWCGROUP).bits(),
    );
    if !rest.is_empty() {
        unshare(rest).map_err(|e| format!("unshare namespaces {rest:?}: {e}"))?;
    }
    // Offsets can only be set before anything else is done with the new time namespace.
    if let Some(off) = &plan.time_offsets {
        std::fs::write("/proc/self/timens_offsets", off)
            .map_err(|e| format!("linux.timeOffsets: {e}"))?;
    }
    let pid = match entry {
        Some(entry) => {
            entry.join_v1()?;
            entry
                .clone_into(libc::CLONE_PARENT as u64)
                .map_err(|e| format!("clone init: {e}"))?
        }
        None => {
            expect(fds.sock, b'G')?;
            clone_parent().map_err(|e| format!("clone init: {e}"))?
        }
    };
    if pid == 0 {
        init(plan, fds, in_userns);
    }
    send_msg(fds.sock, format!("P{pid}").as_bytes()).map_err(|e| e.to_string())
}

/// The container's init cloned straight from the runtime, already in its new namespaces
/// and the unified cgroup: joins the namespaces given by path and the v1 hierarchies,
/// then goes on as [`init`]. Never returns.
pub fn direct(plan: &Plan, fds: ChildFds, entry: &Opened) -> ! {
    let joined = (|| -> Result<(), String> {
        if let Some(stdio) = fds.stdio {
            set_stdio(stdio)?;
        }
        join_paths(plan)?;
        entry.join_v1()
    })();
    if let Err(m) = joined {
        fail(fds.sock, &m);
    }
    init(plan, fds, false)
}

/// Joins the namespaces the plan gives by path (the user namespace first); returns
/// whether one of them is a user namespace.
fn join_paths(plan: &Plan) -> Result<bool, String> {
    let mut userns = false;
    for (flag, path) in &plan.join {
        join_ns(path, *flag).map_err(|e| {
            format!(
                "join {} namespace {}: {e}",
                super::plan::ns_proc_name(*flag),
                path.display()
            )
        })?;
        userns |= *flag == CloneFlags::CLONE_NEWUSER;
    }
    Ok(userns)
}

/// Makes `stdio` this process's fds 0, 1 and 2 (copied above 2 first, so that a source
/// that is itself 0, 1 or 2 is not closed before it is used).
pub(crate) fn set_stdio(stdio: [RawFd; 3]) -> Result<(), String> {
    let mut high = [-1; 3];
    for (i, fd) in stdio.iter().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC only makes a new fd; a bad `fd` is an error, not UB.
        let r = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
        if r < 0 {
            return Err(format!("stdio {i}: {}", std::io::Error::last_os_error()));
        }
        high[i] = r;
    }
    for (i, fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto 0..=2 of this (forked, single-threaded) process; the copy made
        // by dup2 has no close-on-exec flag, so the program gets it.
        if unsafe { libc::dup2(*fd, i as RawFd) } < 0 {
            return Err(format!(
                "dup2 stdio {i}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let _ = nix::unistd::close(*fd);
    }
    Ok(())
}

/// The container's init. Never returns: it execs the process or exits.
fn init(plan: &Plan, fds: ChildFds, in_userns: bool) -> ! {
    let mut state = Vec::new();
    let exe = match init_inner(plan, fds, in_userns, &mut state) {
        Ok(exe) => exe,
        Err(m) => fail(fds.sock, &m),
    };
    let _ = send_msg(fds.sock, b"R");
    // From here on the runtime no longer listens: failures go to stderr.
    if let Some(fifo) = fds.fifo
        && let Err(e) = wait_start(fifo)
    {
        eprintln!("berth init: wait for start: {e}");
        exit_now(1);
    }
    if !plan.start_container_hooks.is_empty() {
        let st = String::from_utf8_lossy(&state).replace("\"creating\"", "\"running\"");
        if let Err(e) = super::hooks::run(
            &plan.id,
            "startContainer",
            &plan.start_container_hooks,
            st.as_bytes(),
        ) {
            eprintln!("berth init: {e}");
            exit_now(1);
        }
    }
    // Only stdio crosses into the program: whatever else the runtime's process holds
    // (an in-process caller's sockets and files) is closed on exec.
    crate::sys::fds::cloexec_above_stdio();
    let p = &plan.process;
    if p.no_new_privs {
        if let Err(e) = nix::sys::prctl::set_no_new_privs() {
            eprintln!("berth init: no_new_privs: {e}");
            exit_now(1);
        }
        if let Some(sc) = &p.seccomp
            && let Err(e) = sc.load()
        {
            eprintln!("berth init: load seccomp filter: {e}");
            exit_now(1);
        }
    }
    if let Some(pers) = plan.personality {
        // SAFETY: personality(2) only changes this process's execution domain.
        if unsafe { libc::personality(pers) } < 0 {
            eprintln!(
                "berth init: linux.personality: {}",
                std::io::Error::last_os_error()
            );
            exit_now(1);
        }
    }
    reset_signals();
    let err = nix::unistd::execve(&exe, &p.args, &p.env).unwrap_err();
    eprintln!("berth init: exec {}: {err}", exe.to_string_lossy());
    exit_now(127)
}

/// Opens exec.fifo for writing: blocks until `start` opens it for reading.
fn wait_start(fifo: RawFd) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fifo}"))?;
    f.write_all(b"0")
}

fn init_inner(
    plan: &Plan,
    fds: ChildFds,
    in_userns: bool,
    state: &mut Vec<u8>,
) -> Result<CString, String> {
    // Rooted at the container's cgroup, which this process was born in (or inherited).
    if plan.new.contains(CloneFlags::CLONE_NEWCGROUP) {
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| format!("unshare cgroup namespace: {e}"))?;
    }
    let p = &plan.process;
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("process.oomScoreAdj {adj}: {e}"))?;
    }
    if plan.setup_rootfs {
        if fds.hooks {
            send_msg(fds.sock, b"H").map_err(|e| e.to_string())?;
            *state = expect(fds.sock, b'K')?;
        }
        let kernel = rootfs::Kernel::LINUX;
        rootfs::prepare(kernel, plan, in_userns)?;
        // in the container's namespaces, before pivot_root: paths resolve on the host
        super::hooks::run(
            &plan.id,
            "createContainer",
            &plan.create_container_hooks,
            state,
        )
        .map_err(|e| e.to_string())?;
        rootfs::enter(kernel, plan)?;
        if let Some(h) = &plan.hostname {
            nix::unistd::sethostname(h).map_err(|e| format!("hostname {h}: {e}"))?;
        }
        if let Some(d) = &plan.domainname {
            std::fs::write("/proc/sys/kernel/domainname", d)
                .map_err(|e| format!("domainname {d}: {e}"))?;
        }
        rootfs::finish(kernel, plan)?;
    }
    if let Some(sock) = fds.console {
        super::console::setup(sock, p.uid, p.gid, p.console_size)?;
        let _ = nix::unistd::close(sock);
    }
    // runc creates a missing cwd, as root, before switching user.
    if !p.cwd.exists() {
        let _ = std::fs::create_dir_all(&p.cwd);
    }
    setup_process(p, in_userns)
}

/// Limits, user, capabilities, umask, cwd; returns the program to exec.
pub fn setup_process(p: &ProcessPlan, in_userns: bool) -> Result<CString, String> {
    if let Some(prio) = p.io_priority {
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, value) takes plain integers.
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) };
        if r < 0 {
            return Err(format!(
                "process.ioPriority: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    for (t, soft, hard) in &p.rlimits {
        super::plan::set_rlimit(*t, *soft, *hard)
            .map_err(|e| format!("process.rlimits {t:?} {soft}/{hard}: {e}"))?;
    }
    if !p.no_new_privs {
        // Without no_new_privs a filter can only be loaded while CAP_SYS_ADMIN is held.
        if let Some(sc) = &p.seccomp {
            sc.load().map_err(|e| format!("linux.seccomp: load: {e}"))?;
        }
    }
    if let Some([bounding, ..]) = &p.caps {
        for c in caps::all() {
            if !bounding.contains(&c) {
                match caps::drop(None, caps::CapSet::Bounding, c) {
                    Ok(()) => {}
                    // a capability the kernel does not have
                    Err(_) if !caps::runtime::thread_all_supported().contains(&c) => {}
                    Err(e) => return Err(format!("process.capabilities.bounding: drop {c}: {e}")),
                }
            }
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keepcaps: {e}"))?;
    let setgroups_allowed = !in_userns
        || std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "allow");
    if setgroups_allowed {
        let gids: Vec<nix::unistd::Gid> = p.groups.iter().map(|g| (*g).into()).collect();
        nix::unistd::setgroups(&gids).map_err(|e| format!("process.user.additionalGids: {e}"))?;
    } else if !p.groups.is_empty() {
        return Err(
            "process.user.additionalGids: setgroups is denied in this user namespace".into(),
        );
    }
    nix::unistd::setresgid(p.gid.into(), p.gid.into(), p.gid.into())
        .map_err(|e| format!("process.user.gid {}: {e}", p.gid))?;
    nix::unistd::setresuid(p.uid.into(), p.uid.into(), p.uid.into())
        .map_err(|e| format!("process.user.uid {}: {e}", p.uid))?;
    if let Some([_, eff, perm, inh, amb]) = &p.caps {
        let set = |which, s: &caps::CapsHashSet, field: &str| {
            caps::set(None, which, s).map_err(|e| format!("process.capabilities.{field}: {e}"))
        };
        // Inheritable while CAP_SETPCAP is still effective, then effective, then
        // permitted: each capset must keep effective within permitted.
        set(caps::CapSet::Inheritable, inh, "inheritable")?;
        set(caps::CapSet::Effective, eff, "effective")?;
        set(caps::CapSet::Permitted, perm, "permitted")?;
        caps::clear(None, caps::CapSet::Ambient).map_err(|e| format!("ambient: {e}"))?;
        // The kernel raises an ambient capability only when it is both permitted and
        // inheritable; runc skips the others, and so does berth.
        for c in amb.iter().filter(|c| perm.contains(c) && inh.contains(c)) {
            caps::raise(None, caps::CapSet::Ambient, *c)
                .map_err(|e| format!("process.capabilities.ambient {c}: {e}"))?;
        }
    }
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("keepcaps: {e}"))?;
    if let Some(m) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    nix::unistd::chdir(&p.cwd).map_err(|e| format!("process.cwd {}: {e}", p.cwd.display()))?;
    find_program(p)
}

/// How the message of a process that cannot be executed begins (runc's words). The
/// init reports such a failure apart from the others (see [`fail`]), so that a caller can
/// tell "the program cannot run" from "the container could not be made".
pub const EXEC_ERROR: &str = "exec: ";

/// The program execve will run, checked as runc checks it before it reports the
/// container created: found (on `PATH` for a bare name), executable, and with arguments
/// and environment the kernel will take.
fn find_program(p: &ProcessPlan) -> Result<CString, String> {
    let arg0 = p.args[0].to_string_lossy().into_owned();
    let denied = || format!("{EXEC_ERROR}{arg0:?}: permission denied");
    let exe = if arg0.contains('/') {
        let path = PathBuf::from(&arg0);
        match std::fs::metadata(&path) {
            Err(e) => {
                let why = e
                    .raw_os_error()
                    .map_or_else(|| e.to_string(), |n| Errno::from_raw(n).desc().to_string());
                return Err(format!("{EXEC_ERROR}{arg0:?}: stat {arg0}: {why}"));
            }
            Ok(m) if m.is_dir() => return Err(format!("{EXEC_ERROR}{arg0:?}: is a directory")),
            Ok(m) if !m.is_file() => return Err(denied()),
            Ok(_) => {}
        }
        if nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() {
            return Err(denied());
        }
        path
    } else {
        p.path_env
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(&arg0))
            .find(|c| nix::unistd::access(c, nix::unistd::AccessFlags::X_OK).is_ok() && c.is_file())
            .ok_or_else(|| {
                format!(
                    "{EXEC_ERROR}{arg0:?}: executable file not found in $PATH (PATH={})",
                    p.path_env
                )
            })?
    };
    let exe = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| "process.args[0]: NUL byte".to_string())?;
    if too_big_for_exec(&exe, &p.args, &p.env) {
        return Err(format!("{EXEC_ERROR}{arg0:?}: argument list too long"));
    }
    Ok(exe)
}

/// Whether execve would fail with E2BIG (fs/exec.c, `bprm_stack_limits` and
/// `copy_strings`): one string (argument or `KEY=value`, with its NUL) longer than
/// MAX_ARG_STRLEN (32 pages), or the file name, strings and their pointers together
/// over a quarter of the stack limit (at least 32 pages, at most 6 MiB). Only a sure
/// refusal counts: near the limit, execve itself decides.
fn too_big_for_exec(exe: &CString, args: &[CString], env: &[CString]) -> bool {
    // SAFETY: sysconf only reads a system value.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let max_strlen = 32 * page;
    let strings = || {
        args.iter()
            .chain(env)
            .map(|s| s.as_bytes().len() as u64 + 1)
    };
    if strings().any(|n| n > max_strlen) {
        return true;
    }
    let stack = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
        .map_or(8 << 20, |(soft, _)| soft);
    let limit = (6u64 << 20).min(stack / 4).max(max_strlen);
    let pointers = (args.len().max(1) + env.len()) as u64 * std::mem::size_of::<usize>() as u64;
    let total = exe.as_bytes().len() as u64 + 1 + strings().sum::<u64>();
    // a page of slack: the kernel's own accounting of the first page is not mirrored
    pointers >= limit || total > limit - pointers + page
}

/// The runtime's signal dispositions and mask are not the container's: exec keeps ignored
/// signals ignored and the mask as it is (a Rust runtime ignores SIGPIPE, an async one may
/// block signals), so both are reset to the defaults first.
pub(crate) fn reset_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    // The kernel's struct sigaction: handler, flags, restorer, mask.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // Through the raw syscall: the C library refuses to touch the real-time signals it
    // reserves for itself (32, 33), which an ignoring parent passes on all the same.
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads a valid struct; SIG_DFL runs no code, and this
        // process is about to exec.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The kernel's limits, as this process has them (8 MiB stack by default: 2 MiB of
    /// strings; 128 KiB per string on 4 KiB pages).
    #[test]
    fn argument_lists_execve_refuses() {
        let exe = c("/bin/echo");
        let env = vec![c("PATH=/bin")];
        assert!(!too_big_for_exec(&exe, &[c("echo"), c("hi")], &env));
        let long = "x".repeat(200_000);
        assert!(
            too_big_for_exec(&exe, &[c("echo"), c(&long)], &env),
            "one string over 32 pages"
        );
        let fits = "x".repeat(100_000);
        assert!(!too_big_for_exec(&exe, &[c("echo"), c(&fits)], &env));
        let many: Vec<CString> = (0..200).map(|_| c(&fits)).collect();
        assert!(too_big_for_exec(&exe, &many, &env), "20 MB in all");
    }
}
