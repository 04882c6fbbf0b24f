//! The pod's namespaces: made by the holder for itself (net, ipc, uts) or for a small
//! pod init (pid), and bind-mounted to `<pod>/ns/<kind>` so that CNI gets a netns path and
//! containers join them by path. Released (unmounted, pod init killed) on shutdown.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use super::{HolderError, PodDir, PodOptions, Result};

/// The namespaces the holder holds.
#[derive(Debug)]
pub struct Namespaces {
    /// (kind, bind-mounted file).
    pub files: Vec<(String, PathBuf)>,
    /// pid 1 of the pod's pid namespace, a child of the holder.
    pub pod_init: Option<i32>,
}

fn sys(pod: &str, op: impl Into<String>) -> impl FnOnce(nix::Error) -> HolderError {
    let (pod, op) = (pod.to_string(), op.into());
    move |source| HolderError::Sys { pod, op, source }
}

impl Namespaces {
    /// Moves the calling (single-threaded) holder into new namespaces and binds them.
    pub fn setup(pod: &PodDir, opts: &PodOptions) -> Result<Self> {
        let id = pod.pod_id.as_str();
        if let Some(h) = &opts.hostname
            && (h.is_empty() || h.len() > 64)
        {
            return Err(HolderError::Invalid {
                pod: id.into(),
                field: "hostname",
                reason: format!("{h:?} must be 1-64 bytes"),
            });
        }
        let mut flags = CloneFlags::empty();
        if !opts.host_network {
            flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
        }
        if !opts.host_ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        let dir = pod.ns_dir();
        std::fs::create_dir_all(&dir).map_err(|source| HolderError::Io {
            pod: id.into(),
            op: "mkdir",
            path: dir.clone(),
            source,
        })?;
        let mut me = Namespaces {
            files: vec![],
            pod_init: None,
        };
        if !flags.is_empty() {
            unshare(flags).map_err(sys(id, format!("unshare {flags:?}")))?;
        }
        if flags.contains(CloneFlags::CLONE_NEWUTS)
            && let Some(h) = &opts.hostname
        {
            nix::unistd::sethostname(h).map_err(sys(id, format!("sethostname {h}")))?;
        }
        // /proc/sys/{net,kernel,fs/mqueue} act on the writer's own namespaces: set now,
        // after unshare, they are the pod's (as runc sets a pause container's).
        for (key, value) in &opts.sysctls {
            write_sysctl(id, key, value)?;
        }
        for (flag, kind) in [
            (CloneFlags::CLONE_NEWNET, "net"),
            (CloneFlags::CLONE_NEWIPC, "ipc"),
            (CloneFlags::CLONE_NEWUTS, "uts"),
        ] {
            if flags.contains(flag) {
                let res = bind(id, Path::new(&format!("/proc/self/ns/{kind}")), &dir, kind);
                me.keep(res)?;
            }
        }
        if opts.share_pid {
            let pid = match spawn_pod_init(id) {
                Ok(pid) => pid,
                Err(e) => {
                    me.release();
                    return Err(e);
                }
            };
            me.pod_init = Some(pid);
            let res = bind(id, Path::new(&format!("/proc/{pid}/ns/pid")), &dir, "pid");
            me.keep(res)?;
        }
        Ok(me)
    }

    fn keep(&mut self, res: Result<(String, PathBuf)>) -> Result<()> {
        match res {
            Ok(f) => {
                self.files.push(f);
                Ok(())
            }
            Err(e) => {
                self.release();
                Err(e)
            }
        }
    }

    /// Unmounts and removes the namespace files and stops the pod init; collects errors
    /// and carries on.
    pub fn release(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        for (_, f) in self.files.drain(..) {
            if let Err(e) = umount2(&f, MntFlags::MNT_DETACH) {
                errs.push(format!("umount {}: {e}", f.display()));
            }
            if let Err(e) = std::fs::remove_file(&f) {
                errs.push(format!("remove {}: {e}", f.display()));
            }
        }
        if let Some(pid) = self.pod_init.take() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        errs
    }
}

/// Writes `value` to the sysctl `key` (dotted form) of the caller's namespaces.
fn write_sysctl(pod: &str, key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(crate::sys::sysctl::proc_path(key));
    let invalid = |reason: String| HolderError::Invalid {
        pod: pod.into(),
        field: "sysctl",
        reason,
    };
    // The daemon checked the name; a link or a climb out of /proc/sys is still refused.
    if path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::RootDir
        )
    }) {
        return Err(invalid(format!("{key:?} is not a sysctl name")));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => invalid(format!(
                "sysctl {key:?}: this kernel has no {}",
                path.display()
            )),
            _ => invalid(format!(
                "sysctl {key:?}: write {value:?} to {}: {e}",
                path.display()
            )),
        })
}

/// Bind-mounts the namespace file `src` to `<dir>/<kind>`.
fn bind(pod: &str, src: &Path, dir: &Path, kind: &str) -> Result<(String, PathBuf)> {
    let target = dir.join(kind);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .map_err(|source| HolderError::Io {
            pod: pod.into(),
            op: "create namespace file",
            path: target.clone(),
            source,
        })?;
    if let Err(e) = mount(
        Some(src),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(&target);
        return Err(sys(
            pod,
            format!("bind {} to {}", src.display(), target.display()),
        )(e));
    }
    Ok((kind.to_string(), target))
}

/// Makes the pod's pid namespace and its pid 1: a forked copy of the holder that only
/// reaps the orphans the namespace hands it. The holder's own later children stay in the
/// holder's pid namespace.
fn spawn_pod_init(pod: &str) -> Result<i32> {
    let own = std::fs::File::open("/proc/self/ns/pid").map_err(|source| HolderError::Io {
        pod: pod.into(),
        op: "open",
        path: "/proc/self/ns/pid".into(),
        source,
    })?;
    unshare(CloneFlags::CLONE_NEWPID).map_err(sys(pod, "unshare pid namespace"))?;
    let pid = crate::sys::clone::fork();
    if pid == Ok(0) {
        pod_init();
    }
    // back to the holder's own namespace for whatever it forks next
    setns(own.as_fd(), CloneFlags::CLONE_NEWPID).map_err(sys(pod, "setns own pid namespace"))?;
    pid.map_err(sys(pod, "fork the pod's pid 1"))
}

/// pid 1 of the pod's pid namespace. Never returns.
fn pod_init() -> ! {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    // SAFETY: close_range only closes this (forked, single-threaded) process's fds: the
    // holder's socket and the readiness pipe must not be kept open by it.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    // Gone with the holder: nothing would collect the pod's exits any more.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let all = SigSet::all();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None);
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    loop {
        let _ = chld.wait();
        while let Ok(s) = nix::sys::wait::waitpid(
            None::<nix::unistd::Pid>,
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}
