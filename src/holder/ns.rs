//! The pod's namespaces: made by the holder for itself (net, ipc, uts) or for a small
//! pod init (pid), and bind-mounted to `<pod>/ns/<kind>` so that CNI gets a netns path and
//! containers join them by path. Released (unmounted, pod init killed) on shutdown.
//!
//! Every unshare, hostname, sysctl, mount and the pod init's fork go through [`Kernel`],
//! so the order of the steps and the roll-back of a half-made set are unit-tested against
//! the recording fake; the namespace files are made directly under the pod's dir.

use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::sys;

use super::{HolderError, PodDir, PodOptions, Result};

/// The kernel interfaces the pod's namespaces are made and released through.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)] // trait objects; nothing to show
pub struct Kernel<'k> {
    pub ns: &'k dyn sys::ns::Namespaces,
    pub mount: &'k dyn sys::mount::Mounter,
    pub sysctl: &'k dyn sys::sysctl::Sysctl,
}

impl Kernel<'static> {
    pub const LINUX: Self = Kernel {
        ns: &sys::ns::Linux,
        mount: &sys::mount::Linux,
        sysctl: &sys::sysctl::Linux,
    };
}

/// The namespaces the holder holds.
pub struct Namespaces<'k> {
    /// (kind, bind-mounted file).
    pub files: Vec<(String, PathBuf)>,
    /// pid 1 of the pod's pid namespace, a child of the holder.
    pub pod_init: Option<i32>,
    kernel: Kernel<'k>,
}

impl std::fmt::Debug for Namespaces<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaces")
            .field("files", &self.files)
            .field("pod_init", &self.pod_init)
            .finish_non_exhaustive()
    }
}

fn sys_error(pod: &str, op: impl Into<String>) -> impl FnOnce(nix::Error) -> HolderError {
    let (pod, op) = (pod.to_string(), op.into());
    move |source| HolderError::Sys { pod, op, source }
}

impl<'k> Namespaces<'k> {
    /// Moves the calling (single-threaded) holder into new namespaces and binds them.
    pub fn setup(kernel: Kernel<'k>, pod: &PodDir, opts: &PodOptions) -> Result<Self> {
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
            kernel,
        };
        if !flags.is_empty() {
            kernel
                .ns
                .unshare(flags)
                .map_err(sys_error(id, format!("unshare {flags:?}")))?;
        }
        if flags.contains(CloneFlags::CLONE_NEWUTS)
            && let Some(h) = &opts.hostname
        {
            kernel
                .ns
                .sethostname(h)
                .map_err(sys_error(id, format!("sethostname {h}")))?;
        }
        // /proc/sys/{net,kernel,fs/mqueue} act on the writer's own namespaces: set now,
        // after unshare, they are the pod's (as runc sets a pause container's).
        for (key, value) in &opts.sysctls {
            write_sysctl(kernel.sysctl, id, key, value)?;
        }
        for (flag, kind) in [
            (CloneFlags::CLONE_NEWNET, "net"),
            (CloneFlags::CLONE_NEWIPC, "ipc"),
            (CloneFlags::CLONE_NEWUTS, "uts"),
        ] {
            if flags.contains(flag) {
                let src = PathBuf::from(format!("/proc/self/ns/{kind}"));
                let res = bind(kernel.mount, id, &src, &dir, kind);
                me.keep(res)?;
            }
        }
        if opts.share_pid {
            let pid = match kernel.ns.spawn_pid_init(pod_init) {
                Ok(pid) => pid,
                Err(e) => {
                    me.release();
                    return Err(sys_error(id, "make the pod's pid namespace and its pid 1")(
                        e,
                    ));
                }
            };
            me.pod_init = Some(pid);
            let src = PathBuf::from(format!("/proc/{pid}/ns/pid"));
            let res = bind(kernel.mount, id, &src, &dir, "pid");
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
            if let Err(e) = self.kernel.mount.umount(&f, MntFlags::MNT_DETACH) {
                errs.push(format!("umount {}: {e}", f.display()));
            }
            if let Err(e) = std::fs::remove_file(&f) {
                errs.push(format!("remove {}: {e}", f.display()));
            }
        }
        if let Some(pid) = self.pod_init.take() {
            self.kernel.ns.kill_pid_init(pid);
        }
        errs
    }
}

/// Writes `value` to the sysctl `key` (dotted form) of the caller's namespaces.
fn write_sysctl(sysctl: &dyn sys::sysctl::Sysctl, pod: &str, key: &str, value: &str) -> Result<()> {
    let rel = PathBuf::from(sys::sysctl::proc_path(key));
    let path = Path::new("/proc/sys").join(&rel);
    let invalid = |reason: String| HolderError::Invalid {
        pod: pod.into(),
        field: "sysctl",
        reason,
    };
    // The daemon checked the name; a link or a climb out of /proc/sys is still refused.
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(invalid(format!("{key:?} is not a sysctl name")));
    }
    sysctl.write(&rel, value).map_err(|e| match e.kind() {
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
fn bind(
    mnt: &dyn sys::mount::Mounter,
    pod: &str,
    src: &Path,
    dir: &Path,
    kind: &str,
) -> Result<(String, PathBuf)> {
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
    if let Err(e) = mnt.mount(Some(src), &target, None, MsFlags::MS_BIND, None) {
        let _ = std::fs::remove_file(&target);
        return Err(sys_error(
            pod,
            format!("bind {} to {}", src.display(), target.display()),
        )(e));
    }
    Ok((kind.to_string(), target))
}
/// pid 1 of the pod's pid namespace. Never returns.
fn pod_init() -> ! {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    // SAFETY: this (forked, single-threaded) process uses no fd above stdio: the
    // holder's socket and the readiness pipe must not be kept open by it.
    unsafe {
        crate::sys::fds::close_range(3, u32::MAX);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::{Call, Recorder};
    use nix::errno::Errno;

    /// A pod dir under a temp state dir, removed on drop.
    struct TempPod {
        state: PathBuf,
        pod: PodDir,
    }

    impl TempPod {
        fn new(name: &str) -> Self {
            let state =
                std::env::temp_dir().join(format!("berth-holder-ns-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&state);
            std::fs::create_dir_all(&state).expect("mkdir");
            let pod = PodDir::new(&state, "p1").expect("pod dir");
            TempPod { state, pod }
        }

        fn ns(&self, kind: &str) -> PathBuf {
            self.pod.ns_dir().join(kind)
        }
    }

    impl Drop for TempPod {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }

    fn kernel(rec: &Recorder) -> Kernel<'_> {
        Kernel {
            ns: rec,
            mount: rec,
            sysctl: rec,
        }
    }

    fn bind_call(src: &str, target: PathBuf) -> Call {
        Call::Mount {
            source: Some(src.into()),
            target,
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
        }
    }

    fn detach(target: PathBuf) -> Call {
        Call::Umount {
            target,
            flags: MntFlags::MNT_DETACH,
        }
    }

    /// A pod of its own: unshare, then the hostname and sysctls in the new namespaces,
    /// then each namespace bound to its file.
    #[test]
    fn pod_namespaces_in_order() {
        let t = TempPod::new("order");
        let rec = Recorder::default();
        let opts = PodOptions {
            hostname: Some("web-0".into()),
            sysctls: vec![("net.ipv4.conf.eth0/100.forwarding".into(), "1".into())],
            ..Default::default()
        };
        let ns = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect("setup");
        assert_eq!(
            rec.calls(),
            [
                Call::Unshare(
                    CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC
                ),
                Call::SetHostname("web-0".into()),
                Call::Sysctl {
                    path: "net/ipv4/conf/eth0.100/forwarding".into(),
                    value: "1".into()
                },
                bind_call("/proc/self/ns/net", t.ns("net")),
                bind_call("/proc/self/ns/ipc", t.ns("ipc")),
                bind_call("/proc/self/ns/uts", t.ns("uts")),
            ]
        );
        let kinds: Vec<_> = ns.files.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["net", "ipc", "uts"]);
        assert!(t.ns("net").exists() && ns.pod_init.is_none());
    }

    /// The host's network (and with it its uts) and ipc: nothing to unshare or bind, and
    /// the hostname is not the pod's to set.
    #[test]
    fn host_namespaces_are_left_alone() {
        let t = TempPod::new("host");
        let rec = Recorder::default();
        let opts = PodOptions {
            hostname: Some("node".into()),
            host_network: true,
            ..Default::default()
        };
        let ns = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect("setup");
        assert_eq!(
            rec.calls(),
            [
                Call::Unshare(CloneFlags::CLONE_NEWIPC),
                bind_call("/proc/self/ns/ipc", t.ns("ipc")),
            ]
        );
        assert_eq!(ns.files.len(), 1);

        let rec = Recorder::default();
        let opts = PodOptions {
            host_network: true,
            host_ipc: true,
            ..Default::default()
        };
        let ns = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect("setup");
        assert!(rec.calls().is_empty() && ns.files.is_empty());
    }

    /// A shared pid namespace: its pid 1 is forked after the other namespaces are bound,
    /// and its namespace bound through /proc/<pid>.
    #[test]
    fn shared_pid_namespace_binds_the_pod_init() {
        let t = TempPod::new("pid");
        let rec = Recorder::default();
        let pid = rec.answers.pid_init;
        let opts = PodOptions {
            host_network: true,
            host_ipc: true,
            share_pid: true,
            ..Default::default()
        };
        let mut ns = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect("setup");
        assert_eq!(
            rec.calls(),
            [
                Call::SpawnPidInit,
                bind_call(&format!("/proc/{pid}/ns/pid"), t.ns("pid")),
            ]
        );
        assert_eq!(ns.pod_init, Some(pid));
        assert!(ns.release().is_empty());
        assert_eq!(
            rec.calls()[2..],
            [detach(t.ns("pid")), Call::KillPidInit(pid)]
        );
        assert!(!t.ns("pid").exists());
    }

    /// A bind that fails undoes what was bound before it, removes its own file, and
    /// names the step.
    #[test]
    fn failed_bind_rolls_back() {
        let t = TempPod::new("rollback");
        let uts = t.ns("uts");
        let rec = Recorder::default().fail_on(
            move |c| matches!(c, Call::Mount { target, .. } if *target == uts),
            Errno::EPERM,
        );
        let err = Namespaces::setup(kernel(&rec), &t.pod, &PodOptions::default())
            .expect_err("bind fails");
        assert!(
            err.to_string().contains("bind /proc/self/ns/uts to"),
            "{err}"
        );
        assert_eq!(rec.calls()[4..], [detach(t.ns("net")), detach(t.ns("ipc"))]);
        for kind in ["net", "ipc", "uts"] {
            assert!(!t.ns(kind).exists(), "{kind} left");
        }

        // the pod's pid 1 that cannot be made: the namespaces already bound are released
        let rec = Recorder::default().fail_on(|c| *c == Call::SpawnPidInit, Errno::EAGAIN);
        let opts = PodOptions {
            share_pid: true,
            ..Default::default()
        };
        let err = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect_err("no pid 1");
        assert!(err.to_string().contains("pid 1"), "{err}");
        let calls = rec.calls();
        assert_eq!(
            calls[calls.len() - 3..],
            [
                detach(t.ns("net")),
                detach(t.ns("ipc")),
                detach(t.ns("uts"))
            ]
        );
    }

    /// Release collects every error and carries on: a namespace that cannot be unmounted
    /// does not keep the others mounted or the pod init alive.
    #[test]
    fn release_keeps_going() {
        let t = TempPod::new("release");
        let net = t.ns("net");
        let rec = Recorder::default().fail_on(
            move |c| matches!(c, Call::Umount { target, .. } if *target == net),
            Errno::EBUSY,
        );
        let opts = PodOptions {
            share_pid: true,
            ..Default::default()
        };
        let mut ns = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect("setup");
        let errs = ns.release();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("umount ") && errs[0].contains("EBUSY"));
        let pid = rec.answers.pid_init;
        assert_eq!(
            rec.calls()[6..],
            [
                detach(t.ns("net")),
                detach(t.ns("ipc")),
                detach(t.ns("uts")),
                detach(t.ns("pid")),
                Call::KillPidInit(pid)
            ]
        );
        assert!(ns.files.is_empty() && ns.pod_init.is_none());
    }

    /// Refusals before any change: a bad hostname; a sysctl the kernel does not have
    /// or a name that climbs out of /proc/sys is an invalid request, named.
    #[test]
    fn refusals_name_the_field() {
        let t = TempPod::new("refuse");
        let rec = Recorder::default();
        let opts = PodOptions {
            hostname: Some("x".repeat(65)),
            ..Default::default()
        };
        let err = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect_err("too long");
        assert!(matches!(
            err,
            HolderError::Invalid {
                field: "hostname",
                ..
            }
        ));
        assert!(rec.calls().is_empty());

        for (key, errno, says) in [
            (
                "net.core.nothere",
                Errno::ENOENT,
                "this kernel has no /proc/sys/net/core/nothere",
            ),
            (
                "net.core.somaxconn",
                Errno::EACCES,
                "write \"1\" to /proc/sys/net/core/somaxconn",
            ),
            ("net.//.x", Errno::UnknownErrno, "is not a sysctl name"),
        ] {
            let rec = Recorder::default().fail_on(|c| matches!(c, Call::Sysctl { .. }), errno);
            let opts = PodOptions {
                sysctls: vec![(key.into(), "1".into())],
                ..Default::default()
            };
            let err = Namespaces::setup(kernel(&rec), &t.pod, &opts).expect_err(key);
            assert!(
                matches!(&err, HolderError::Invalid { field: "sysctl", reason, .. } if reason.contains(says)),
                "{key}: {err}"
            );
            assert!(
                !rec.calls().iter().any(|c| matches!(c, Call::Mount { .. })),
                "nothing bound after a refused sysctl"
            );
        }
    }
}
