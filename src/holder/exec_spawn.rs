//! The cheap path into a running container for ExecSync: one fork of the (small) holder,
//! no intermediate process, nothing read from disk, the seccomp filter compiled once per
//! container and loaded as raw BPF.
//!
//! Everything that does not change between execs of one container (the process plan, the
//! BPF program, the namespace fds, the cgroup's files) is built at its first exec. The
//! pid namespace is entered the way `setns(2)` allows for it: the holder sets the namespace
//! its next child is born in, forks, and switches back. Containers this path does not cover
//! (user or time namespace, seccomp flags, personality) use the OCI runtime's exec.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sched::{CloneFlags, setns};
use oci_spec::runtime::{Linux, LinuxNamespaceType, Process};

use super::container::werr;
use super::proto::{ErrorCode, WireError};
use crate::cgroups::{Cgroup, Entry, Opened};
use crate::oci::plan::{PlanOptions, ProcessPlan, process_plan};

/// Whether the exec'd process starts a process group or session of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setsid {
    /// It stays in the holder's group (ExecSync: it is killed by pid).
    No,
    /// It leads a new process group, so that everything it starts can be killed with it.
    Group,
    /// It leads a new session with its stdin (a pty slave) as controlling terminal.
    Terminal,
}

/// What every exec into one container shares.
#[derive(Debug)]
pub struct ExecTemplate {
    plan: ProcessPlan,
    /// The compiled seccomp filter (struct sock_filter array).
    bpf: Option<crate::oci::seccomp::Filter>,
    /// Namespaces to join in the child, mount last.
    ns: Vec<(CloneFlags, OwnedFd)>,
    /// The container's pid namespace, when not the holder's.
    pid_ns: Option<OwnedFd>,
    /// The holder's own pid namespace, to switch back to.
    own_pid_ns: OwnedFd,
    /// The container's cgroup, entered without the kernel's global lock (see
    /// [`Entry`]): v1 by the child itself, the unified one by being born in it.
    entry: Option<Entry>,
}

fn internal(id: &str, what: &str, e: impl std::fmt::Display) -> WireError {
    werr(
        ErrorCode::Internal,
        format!("container {id}: exec: {what}: {e}"),
    )
}

impl ExecTemplate {
    /// Builds the template for container `id` whose init is `pid`; None when the
    /// container needs the OCI runtime's exec.
    pub fn new(
        id: &str,
        process: &Process,
        linux: &Linux,
        pid: i32,
        cgroup: Option<&Cgroup>,
    ) -> Result<Option<ExecTemplate>, WireError> {
        let has = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
        if has(LinuxNamespaceType::User)
            || has(LinuxNamespaceType::Time)
            || linux.personality().is_some()
            || linux
                .seccomp()
                .as_ref()
                .is_some_and(|s| s.flags().as_ref().is_some_and(|f| !f.is_empty()))
        {
            return Ok(None);
        }
        let mut process = process.clone();
        process.set_terminal(Some(false));
        process.set_args(Some(vec!["/bin/true".into()]));
        let mut plan = process_plan(id, &process, linux, &PlanOptions::default(), false)
            .map_err(|e| werr(ErrorCode::Internal, e.to_string()))?;
        // loaded here, before setup_process (which would load a filter it still has)
        let bpf = plan.seccomp.take();
        let open = |p: String| -> Result<OwnedFd, WireError> {
            std::fs::File::open(&p)
                .map(OwnedFd::from)
                .map_err(|e| internal(id, &p, e))
        };
        let ino = |p: &str| {
            std::fs::metadata(p)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        };
        let mut ns = Vec::new();
        for (flag, name) in [
            (CloneFlags::CLONE_NEWIPC, "ipc"),
            (CloneFlags::CLONE_NEWUTS, "uts"),
            (CloneFlags::CLONE_NEWNET, "net"),
            (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
            (CloneFlags::CLONE_NEWNS, "mnt"),
        ] {
            let theirs = format!("/proc/{pid}/ns/{name}");
            if ino(&theirs).is_some() && ino(&theirs) != ino(&format!("/proc/self/ns/{name}")) {
                ns.push((flag, open(theirs)?));
            }
        }
        let theirs = format!("/proc/{pid}/ns/pid");
        let pid_ns = if ino(&theirs) != ino("/proc/self/ns/pid") {
            Some(open(theirs)?)
        } else {
            None
        };
        let own_pid_ns = open("/proc/self/ns/pid".into())?;
        let entry = cgroup.map(Entry::of);
        Ok(Some(ExecTemplate {
            plan,
            bpf,
            ns,
            pid_ns,
            own_pid_ns,
            entry,
        }))
    }

    /// Starts `args` in the container with `stdio`; returns its pid (the holder's child).
    pub fn spawn(
        &mut self,
        id: &str,
        args: &[String],
        stdio: [RawFd; 3],
        setsid: Setsid,
    ) -> Result<i32, WireError> {
        self.plan.args = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                werr(
                    ErrorCode::InvalidArgument,
                    format!("container {id}: exec: cmd holds a NUL byte"),
                )
            })?;
        // Closed by a successful execve (close-on-exec); a child that cannot start its
        // program writes why into it first, so a failed start is an error of the call,
        // as runc exec's is, not an exit code of a program that never ran.
        let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| internal(id, "pipe", e))?;
        let cgroup = self
            .entry
            .as_ref()
            .map(Entry::open)
            .transpose()
            .map_err(|e| internal(id, "cgroup", e))?;
        // Last before the fork: nothing may fail while the holder's next child would be
        // born in the container's pid namespace.
        if let Some(ns) = &self.pid_ns {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWPID)
                .map_err(|e| internal(id, "setns pid", e))?;
        }
        // The holder is single-threaded: the child may be cloned without libc's fork.
        let pid = match &cgroup {
            Some(c) => c.clone_into(0),
            None => crate::sys::clone::fork().map_err(|e| e.to_string()),
        };
        if pid == Ok(0) {
            drop(status_r);
            let err = self.child(stdio, setsid, cgroup.as_ref());
            let _ = nix::unistd::write(&status_w, err.as_bytes());
            crate::sys::clone::exit_now(127);
        }
        drop(status_w);
        if self.pid_ns.is_some() {
            // the holder's next children are born in its own pid namespace again
            if let Err(e) = setns(self.own_pid_ns.as_fd(), CloneFlags::CLONE_NEWPID) {
                tracing::error!(error = %e, "setns back to the holder's pid namespace");
            }
        }
        let pid = pid.map_err(|e| internal(id, "fork", e))?;
        let mut why = String::new();
        let _ = std::fs::File::from(status_r).read_to_string(&mut why);
        if !why.is_empty() {
            // It has exited (or is about to): reap it here, it was never an exec.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(werr(
                ErrorCode::Internal,
                format!("container {id}: exec: {why}"),
            ));
        }
        Ok(pid)
    }

    /// In the forked child: becomes the process. Returns only on failure.
    fn child(&self, stdio: [RawFd; 3], setsid: Setsid, cgroup: Option<&Opened>) -> String {
        if let Err(e) = crate::oci::init::set_stdio(stdio) {
            return e;
        }
        match setsid {
            Setsid::No => {}
            Setsid::Group => {
                if let Err(e) = nix::unistd::setpgid(
                    nix::unistd::Pid::from_raw(0),
                    nix::unistd::Pid::from_raw(0),
                ) {
                    return format!("setpgid: {e}");
                }
            }
            Setsid::Terminal => {
                if let Err(e) = nix::unistd::setsid() {
                    return format!("setsid: {e}");
                }
                // SAFETY: TIOCSCTTY on fd 0, the pty slave just made stdin; 0: do not steal.
                if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
                    return format!(
                        "set the controlling terminal: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        if let Some(e) = cgroup
            && let Err(e) = e.join_v1()
        {
            return e;
        }
        for (flag, fd) in &self.ns {
            if let Err(e) = setns(fd.as_fd(), *flag) {
                return format!("join namespace {flag:?}: {e}");
            }
        }
        let p = &self.plan;
        if let Some(adj) = p.oom_score_adj
            && let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        {
            return format!("process.oomScoreAdj: {e}");
        }
        // Without no_new_privs the filter can only be loaded while CAP_SYS_ADMIN is held.
        if !p.no_new_privs
            && let Err(e) = self.load_bpf()
        {
            return e;
        }
        let exe = match crate::oci::init::setup_process(p, false) {
            Ok(exe) => exe,
            Err(e) => return e,
        };
        crate::sys::fds::cloexec_above_stdio();
        if p.no_new_privs {
            if let Err(e) = nix::sys::prctl::set_no_new_privs() {
                return format!("no_new_privs: {e}");
            }
            if let Err(e) = self.load_bpf() {
                return e;
            }
        }
        crate::oci::init::reset_signals();
        let err = nix::unistd::execve(&exe, &p.args, &p.env).unwrap_err();
        format!("exec {}: {err}", exe.to_string_lossy())
    }

    fn load_bpf(&self) -> Result<(), String> {
        match &self.bpf {
            Some(f) => f.load().map_err(|e| format!("load seccomp filter: {e}")),
            None => Ok(()),
        }
    }
}
