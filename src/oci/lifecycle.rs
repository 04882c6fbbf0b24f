//! The OCI operations on an existing container: start, kill, delete, pause, resume,
//! update, exec, ps, list, and waiting for a process berth started.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Process, Spec};

use super::create::{Runtime, write_pid_file};
use super::error::{OciError, Result};
use super::plan::{self, Plan, PlanOptions};
use super::state::{State, Status};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Waits for `pid`, a child of the calling process (an init or exec process berth made).
pub fn wait(pid: i32) -> nix::Result<Exit> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(Exit::Code(c)),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(Exit::Signal(s as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Parses a signal as runc does: a name with or without SIG, or a number.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

/// How to run an extra process in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub pid_file: Option<std::path::PathBuf>,
    /// The socket that receives the pty master when the process has a terminal.
    pub console_socket: Option<std::path::PathBuf>,
    /// The process's stdin, stdout and stderr (kept open by the caller until `exec`
    /// returns); None: the caller's own.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

impl Runtime {
    /// The container's state.
    pub fn state(&self, id: &str) -> Result<State> {
        self.root.load(id)
    }

    fn guard(&self, id: &str, op: &'static str, ok: impl Fn(Status) -> bool) -> Result<State> {
        let st = self.root.load(id)?;
        let s = st.status();
        if !ok(s) {
            tracing::debug!(?st, stat = ?super::state::proc_stat(st.pid), "state guard");
            return Err(OciError::State {
                id: id.into(),
                status: s.to_string(),
                op,
            });
        }
        Ok(st)
    }

    fn saved_spec(&self, id: &str) -> Result<Spec> {
        let p = self.root.dir(id).join("config.json");
        let b = std::fs::read(&p).map_err(|source| OciError::Io {
            id: id.into(),
            op: "read",
            path: p,
            source,
        })?;
        super::spec::parse(id, &b)
    }

    /// Lets the created container's process run (it execs the spec's program).
    pub fn start(&self, id: &str) -> Result<()> {
        let st = self.guard(id, "start", Status::can_start)?;
        let fifo = self.root.dir(id).join("exec.fifo");
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|source| OciError::Io {
                id: id.into(),
                op: "open",
                path: fifo.clone(),
                source,
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 1];
        loop {
            match f.read(&mut buf) {
                Ok(1) => break,
                Ok(_) | Err(_) => {
                    if !st.init_alive() || Instant::now() > deadline {
                        return Err(OciError::Init {
                            id: id.into(),
                            message: "the init process is gone; it cannot be started".into(),
                        });
                    }
                    // woken by the init's write (or its exit closing the fifo)
                    let fd = std::os::fd::AsFd::as_fd(&f);
                    let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                    let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10u8));
                }
            }
        }
        // Removing the fifo is what records "running" (see State::fifo).
        let _ = std::fs::remove_file(&fifo);
        if !st.poststart {
            return Ok(());
        }
        let spec = self.saved_spec(id)?;
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().clone())
            && let Err(e) = super::hooks::run(id, "poststart", &h, &st.hook_json(Status::Running))
        {
            tracing::warn!(container = id, error = %e, "poststart hook failed");
        }
        Ok(())
    }

    /// Sends `sig` to the init, or (`all`) to every process of the container.
    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let st = self.guard(id, "kill", |s| s.can_kill() || all)?;
        let send = |pid: i32| nix::sys::signal::kill(Pid::from_raw(pid), sig);
        if all && let Some(cg) = &st.cgroup {
            // a frozen process gets the signal only once thawed
            for pid in cg.pids().map_err(|source| OciError::Cgroup {
                id: id.into(),
                source,
            })? {
                let _ = send(pid);
            }
            if sig == Signal::SIGKILL && cg.is_frozen() {
                let _ = cg.freeze(false);
            }
            return Ok(());
        }
        send(st.pid).map_err(|source| OciError::Sys {
            id: id.into(),
            op: format!("kill {sig}"),
            source,
        })
    }

    /// Deletes the container: its processes (with `force`, or while only created), its
    /// cgroup and its state; runs poststop hooks.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        // Idempotent: a crash part-way leaves a stopped container that delete finishes.
        let st = self.root.load(id)?;
        let s = st.status();
        if !(s.can_delete() || force) {
            return Err(OciError::State {
                id: id.into(),
                status: s.to_string(),
                op: "delete",
            });
        }
        if st.init_alive() {
            let _ = nix::sys::signal::kill(Pid::from_raw(st.pid), Signal::SIGKILL);
        }
        if let Some(cg) = &st.cgroup {
            cg.remove(true).map_err(|source| OciError::Cgroup {
                id: id.into(),
                source,
            })?;
            cg.remove_default_parent();
        }
        // An in-process caller reaps its own child (the init) with `wait`: not done here,
        // so that its exit status is not taken from it.
        if st.poststop
            && let Ok(spec) = self.saved_spec(id)
            && let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().clone())
            && let Err(e) = super::hooks::run(id, "poststop", &h, &st.hook_json(Status::Stopped))
        {
            tracing::warn!(container = id, error = %e, "poststop hook failed");
        }
        let dir = self.root.dir(id);
        std::fs::remove_dir_all(&dir).map_err(|source| OciError::Io {
            id: id.into(),
            op: "remove",
            path: dir,
            source,
        })
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let st = self.guard(id, "pause", Status::can_pause)?;
        let cg = st
            .cgroup
            .as_ref()
            .ok_or_else(|| OciError::spec(id, "linux.cgroupsPath", "no cgroup"))?;
        cg.freeze(true).map_err(|source| OciError::Cgroup {
            id: id.into(),
            source,
        })
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let st = self.guard(id, "resume", |s| s == Status::Paused)?;
        let cg = st
            .cgroup
            .as_ref()
            .ok_or_else(|| OciError::spec(id, "linux.cgroupsPath", "no cgroup"))?;
        cg.freeze(false).map_err(|source| OciError::Cgroup {
            id: id.into(),
            source,
        })
    }

    /// Changes the resources of a live container.
    pub fn update(&self, id: &str, r: &LinuxResources) -> Result<()> {
        let st = self.guard(id, "update", |s| s != Status::Stopped)?;
        let cg = st
            .cgroup
            .as_ref()
            .ok_or_else(|| OciError::spec(id, "linux.cgroupsPath", "no cgroup"))?;
        let cgerr = |source| OciError::Cgroup {
            id: id.into(),
            source,
        };
        if self.layout.is_v2_only() && r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(OciError::spec(
                id,
                "linux.resources.devices",
                "device rules of a running container cannot be changed on cgroup v2",
            ));
        }
        let writes = crate::cgroups::plan(&self.layout, r).map_err(cgerr)?;
        cg.apply(&writes).map_err(cgerr)
    }

    /// The pids of every process in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let st = self.root.load(id)?;
        match &st.cgroup {
            Some(cg) => cg.pids().map_err(|source| OciError::Cgroup {
                id: id.into(),
                source,
            }),
            None => Ok(vec![st.pid]),
        }
    }

    /// Every container under the root.
    pub fn list(&self) -> Vec<State> {
        self.root
            .ids()
            .iter()
            .filter_map(|id| self.root.load(id).ok())
            .collect()
    }

    /// Starts `process` inside the running container; returns its pid (a child of the
    /// caller).
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
        let st = self.guard(id, "exec", Status::can_exec)?;
        let spec = self.saved_spec(id)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let userns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User);
        let pplan = plan::process_plan(id, process, &linux, &PlanOptions::default(), userns)?;
        let mut join = Vec::new();
        for f in [
            nix::sched::CloneFlags::CLONE_NEWUSER,
            nix::sched::CloneFlags::CLONE_NEWIPC,
            nix::sched::CloneFlags::CLONE_NEWUTS,
            nix::sched::CloneFlags::CLONE_NEWNET,
            nix::sched::CloneFlags::CLONE_NEWPID,
            nix::sched::CloneFlags::CLONE_NEWCGROUP,
            nix::sched::CloneFlags::from_bits_retain(0x80),
            nix::sched::CloneFlags::CLONE_NEWNS,
        ] {
            let name = plan::ns_proc_name(f);
            let theirs = format!("/proc/{}/ns/{name}", st.pid);
            let ours = format!("/proc/self/ns/{name}");
            let ino = |p: &str| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            };
            if ino(&theirs).is_some() && ino(&theirs) != ino(&ours) {
                join.push((f, Path::new(&theirs).to_path_buf()));
            }
        }
        let mut p = Plan {
            id: id.into(),
            rootfs: st.rootfs.clone(),
            readonly_root: false,
            join,
            new: nix::sched::CloneFlags::empty(),
            uid_map: None,
            gid_map: None,
            time_offsets: None,
            rootfs_propagation: nix::mount::MsFlags::empty(),
            mounts: vec![],
            devices: vec![],
            masked: vec![],
            readonly: vec![],
            hostname: None,
            domainname: None,
            sysctl: vec![],
            process: pplan,
            no_pivot: false,
            cgroup_binds: vec![],
            setup_rootfs: false,
            create_container_hooks: vec![],
            start_container_hooks: vec![],
            personality: None,
        };
        let cg = st.cgroup.clone().unwrap_or(crate::cgroups::Cgroup {
            dirs: Default::default(),
            v2_only: false,
            path: Default::default(),
        });
        let mut pids = vec![];
        let console =
            super::create::console_for(id, p.process.terminal, opts.console_socket.as_deref())?;
        let res = super::create::spawn(
            id,
            &mut p,
            &cg,
            None,
            super::init::ChildFds {
                sock: -1,
                fifo: None,
                hooks: false,
                console: console.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
                stdio: opts.stdio,
            },
            &mut pids,
            |_| Ok(vec![]),
        );
        let pid = match res {
            Ok(pid) => pid,
            Err(e) => {
                for pid in pids {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
                }
                return Err(e);
            }
        };
        if let Some(pf) = &opts.pid_file {
            write_pid_file(id, pf, pid)?;
        }
        Ok(pid)
    }
}
