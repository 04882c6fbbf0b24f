//! Creating a container (and exec's new process): validate, plan, cgroup, fork, and
//! drive the child through the namespace protocol of [`super::init`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::error::{OciError, Result};
use super::init::{ChildFds, intermediate};
use super::plan::{self, Plan, PlanOptions};
use super::state::{Root, State, Status, now_rfc3339, proc_stat};
use crate::cgroups::{Cgroup, Layout};
use crate::store::{Durability, write_file};
use crate::sys::clone::{channel, fork, recv_msg, send_msg};

/// A runtime instance: where state lives and which cgroup layout the host has.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: Root,
    pub layout: Layout,
}

/// How to create one container.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle dir (holds config.json unless `spec` is given, and a relative rootfs).
    pub bundle: PathBuf,
    /// The spec, when the caller has it in memory (no config.json is read).
    pub spec: Option<Spec>,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// The socket that receives the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    pub plan: PlanOptions,
    /// The container process's stdin, stdout and stderr (the caller keeps them open until
    /// `create` returns); None: the caller's own.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// Kills and removes what a failed create made.
struct Cleanup<'a> {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    pids: Vec<i32>,
    armed: bool,
    _rt: &'a Runtime,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for pid in &self.pids {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*pid), None);
        }
        if let Some(cg) = &self.cgroup {
            match cg.remove(true) {
                Ok(()) => cg.remove_default_parent(),
                Err(e) => tracing::warn!(error = %e, "cleanup of a failed create: cgroup"),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cleanup of a failed create");
        }
    }
}

impl Runtime {
    /// A runtime keeping state under `root`, on the host's cgroup layout.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Root::new(root),
            layout: Layout::detect(),
        }
    }

    /// Creates container `id`: its namespaces, root filesystem and process, stopped just
    /// before exec until [`Runtime::start`].
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<State> {
        Root::check_id(id)?;
        self.root.ensure()?;
        let dir = self.root.dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(OciError::Exists { id: id.into() });
            }
            Err(source) => {
                return Err(OciError::Io {
                    id: id.into(),
                    op: "create state dir",
                    path: dir,
                    source,
                });
            }
        }
        let mut cleanup = Cleanup {
            dir: dir.clone(),
            cgroup: None,
            pids: vec![],
            armed: true,
            _rt: self,
        };
        let st = self.create_inner(id, opts, &dir, &mut cleanup)?;
        cleanup.armed = false;
        Ok(st)
    }

    fn create_inner(
        &self,
        id: &str,
        opts: &CreateOptions,
        dir: &Path,
        cleanup: &mut Cleanup<'_>,
    ) -> Result<State> {
        let bundle = opts.bundle.canonicalize().map_err(|source| OciError::Io {
            id: id.into(),
            op: "open bundle",
            path: opts.bundle.clone(),
            source,
        })?;
        // The bundle's own bytes are what is kept (they parse to this spec); an in-memory
        // spec is serialized.
        let (spec, spec_json) = match &opts.spec {
            Some(s) => (s.clone(), None),
            None => {
                let (s, b) = super::spec::load_with_bytes(id, &bundle)?;
                (s, Some(b))
            }
        };
        let linux = spec.linux().clone().unwrap_or_default();
        let cg_path = linux
            .cgroups_path()
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/{}/{id}", crate::cgroups::DEFAULT_PARENT)));
        let cgroup = Cgroup::at(&self.layout, &cg_path)
            .map_err(|e| OciError::spec(id, "linux.cgroupsPath", e.to_string()))?;
        let writes = match linux.resources() {
            Some(r) => {
                crate::cgroups::plan(&self.layout, r).map_err(|source| OciError::Cgroup {
                    id: id.into(),
                    source,
                })?
            }
            None => vec![],
        };
        let mut plan = plan::build(id, &spec, &bundle, Some(&cgroup), &opts.plan)?;
        let mut writes = writes;
        // The spec's own device nodes are usable too.
        let node_allows: Vec<String> = plan
            .devices
            .iter()
            .map(|d| {
                let t = if d.kind == libc::S_IFBLK { 'b' } else { 'c' };
                format!("{t} {}:{} rwm", d.major, d.minor)
            })
            .filter(|r| !crate::cgroups::plan::DEFAULT_DEVICE_ALLOWS.contains(&r.as_str()))
            .collect();
        if writes.iter().any(|w| w.controller == "devices") {
            for rule in &node_allows {
                writes.push(crate::cgroups::FileWrite {
                    controller: "devices".into(),
                    file: "devices.allow".into(),
                    value: rule.clone(),
                    field: "linux.devices".into(),
                });
            }
        }
        // On a pure v2 host device rules are a BPF program.
        let device_filter = match linux.resources() {
            Some(r)
                if self.layout.is_v2_only()
                    && r.devices().as_ref().is_some_and(|d| !d.is_empty()) =>
            {
                crate::cgroups::plan::device_rules(r, &node_allows)
            }
            _ => vec![],
        };
        let spec_json = match spec_json {
            Some(b) => b,
            None => serde_json::to_vec(&spec)
                .map_err(|e| OciError::spec(id, "config.json", e.to_string()))?,
        };
        write_file(&dir.join("config.json"), &spec_json, Durability::Replace).map_err(
            |source| OciError::Io {
                id: id.into(),
                op: "write",
                path: dir.join("config.json"),
                source,
            },
        )?;
        let mut st = State {
            oci_version: spec.version().clone(),
            id: id.into(),
            status: Status::Creating,
            pid: 0,
            pid_start: 0,
            bundle: bundle.clone(),
            rootfs: plan.rootfs.clone(),
            annotations: spec
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created: now_rfc3339(),
            cgroup: Some(cgroup.clone()),
            owner: String::new(),
            fifo: dir.join("exec.fifo"),
            poststart: spec
                .hooks()
                .as_ref()
                .is_some_and(|h| h.poststart().as_ref().is_some_and(|v| !v.is_empty())),
            poststop: spec
                .hooks()
                .as_ref()
                .is_some_and(|h| h.poststop().as_ref().is_some_and(|v| !v.is_empty())),
        };
        // Recorded before the cgroup exists: a runtime crash from here on leaves a state
        // that `delete --force` cleans. State is never fsynced (as runc's): a runtime crash
        // keeps the page cache, and after a machine crash the cgroup and processes it
        // points to are gone anyway (state roots live on tmpfs: /run).
        self.root.save(&st)?;
        cleanup.cgroup = Some(cgroup.clone());

        let fifo_path = dir.join("exec.fifo");
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
            |source| OciError::Sys {
                id: id.into(),
                op: format!("mkfifo {}", fifo_path.display()),
                source,
            },
        )?;
        let uid = plan::host_id(linux.uid_mappings().as_ref(), plan.process.uid);
        let gid = plan::host_id(linux.gid_mappings().as_ref(), plan.process.gid);
        nix::unistd::chown(&fifo_path, Some(uid.into()), Some(gid.into())).map_err(|source| {
            OciError::Sys {
                id: id.into(),
                op: "chown exec.fifo".into(),
                source,
            }
        })?;
        let fifo = open_path(&fifo_path).map_err(|source| OciError::Io {
            id: id.into(),
            op: "open",
            path: fifo_path.clone(),
            source,
        })?;
        let hooks = spec.hooks().clone().unwrap_or_default();
        let mut create_runtime = hooks.prestart().clone().unwrap_or_default();
        create_runtime.extend(hooks.create_runtime().clone().unwrap_or_default());
        plan.create_container_hooks = hooks.create_container().clone().unwrap_or_default();
        plan.start_container_hooks = hooks.start_container().clone().unwrap_or_default();
        let any_hooks = !create_runtime.is_empty()
            || !plan.create_container_hooks.is_empty()
            || !plan.start_container_hooks.is_empty();
        let console = console_for(id, plan.process.terminal, opts.console_socket.as_deref())?;
        let pid = spawn(
            id,
            &mut plan,
            &cgroup,
            Some((&writes, &device_filter)),
            ChildFds {
                sock: -1,
                fifo: Some(fifo.as_raw_fd()),
                hooks: any_hooks,
                console: console.as_ref().map(|c| c.as_raw_fd()),
                stdio: opts.stdio,
            },
            &mut cleanup.pids,
            |pid| {
                st.pid = pid;
                let state = st.hook_json(Status::Creating);
                super::hooks::run(id, "createRuntime", &create_runtime, &state)?;
                Ok(state)
            },
        )?;
        drop(fifo);
        st.pid = pid;
        st.pid_start = proc_stat(pid).map(|s| s.1).unwrap_or(0);
        st.status = Status::Created;
        self.root.save(&st)?;
        if let Some(pf) = &opts.pid_file {
            write_pid_file(id, pf, pid)?;
        }
        tracing::debug!(container = id, pid, "created");
        Ok(st)
    }
}

/// Writes a pid file atomically.
pub fn write_pid_file(id: &str, pf: &Path, pid: i32) -> Result<()> {
    write_file(pf, pid.to_string().as_bytes(), Durability::Replace).map_err(|source| {
        OciError::Io {
            id: id.into(),
            op: "write pid file",
            path: pf.to_path_buf(),
            source,
        }
    })?;
    // written 0600; a pid file is for everyone to read.
    let _ = std::fs::set_permissions(pf, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    Ok(())
}

/// Connects to the console socket of a terminal process.
pub(crate) fn console_for(
    id: &str,
    terminal: bool,
    socket: Option<&Path>,
) -> Result<Option<OwnedFd>> {
    match (terminal, socket) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(OciError::spec(
            id,
            "process.terminal",
            "a console socket was given but the process has no terminal",
        )),
        (true, None) => Err(OciError::spec(
            id,
            "process.terminal",
            "a terminal needs a console socket (--console-socket)",
        )),
        (true, Some(p)) => super::console::connect(p)
            .map(Some)
            .map_err(|source| OciError::Io {
                id: id.into(),
                op: "connect console socket",
                path: p.to_path_buf(),
                source,
            }),
    }
}

fn open_path(p: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(p)?;
    Ok(f.into())
}

/// Forks the intermediate (`io.sock` is filled in here), has it enter `cgroup` (made and
/// written when `make_cgroup` is given), answers
/// its requests and returns the pid of the process it made (a child of the caller).
/// `pids` collects every process to kill if this fails.
pub(crate) fn spawn(
    id: &str,
    plan: &mut Plan,
    cgroup: &Cgroup,
    make_cgroup: Option<(
        &[crate::cgroups::FileWrite],
        &[crate::cgroups::devices::DeviceRule],
    )>,
    io: ChildFds,
    pids: &mut Vec<i32>,
    mut on_hooks: impl FnMut(i32) -> Result<Vec<u8>>,
) -> Result<i32> {
    let sys = |op: &str| {
        let op = op.to_string();
        let id = id.to_string();
        move |source| OciError::Sys { id, op, source }
    };
    let (parent_end, child_end) = channel().map_err(sys("socketpair"))?;
    let fds = ChildFds {
        sock: child_end.as_raw_fd(),
        ..io
    };
    // The intermediate enters the cgroup itself, skipping the kernel's global lock,
    // unless it is in a user namespace by then (whose root may not write the cgroup
    // files) or sees the host's cgroup mounts through another mount or cgroup namespace.
    let self_entry = !(plan.new.contains(nix::sched::CloneFlags::CLONE_NEWUSER)
        || plan.join.iter().any(|(f, _)| {
            [
                nix::sched::CloneFlags::CLONE_NEWUSER,
                nix::sched::CloneFlags::CLONE_NEWNS,
                nix::sched::CloneFlags::CLONE_NEWCGROUP,
            ]
            .contains(f)
        }));
    let cgerr = |source| OciError::Cgroup {
        id: id.into(),
        source,
    };
    let make = |(writes, device_filter): (
        &[crate::cgroups::FileWrite],
        &[crate::cgroups::devices::DeviceRule],
    )|
     -> Result<()> {
        cgroup.create().map_err(cgerr)?;
        cgroup.apply(writes).map_err(cgerr)?;
        if !device_filter.is_empty() {
            cgroup.apply_devices(device_filter).map_err(cgerr)?;
        }
        Ok(())
    };
    // Entering itself, the intermediate needs the cgroup at once: it is made first, and
    // its files opened (the intermediate does not get a CPU of its own before the runtime
    // waits anyway, so making it meanwhile gained nothing). Else it is made while the
    // intermediate creates the namespaces, and the runtime moves it in.
    let entry = match self_entry {
        true => {
            if let Some(m) = make_cgroup {
                make(m)?;
            }
            let opened =
                crate::cgroups::Entry::of(cgroup)
                    .open()
                    .map_err(|reason| OciError::Init {
                        id: id.into(),
                        message: reason,
                    })?;
            Some(opened)
        }
        false => None,
    };
    // Without a pid namespace to join (setns only moves the children of the caller into
    // one), a user namespace to map or time offsets to set before anything else enters
    // the new time namespace, the init is cloned from here with its new namespaces, and
    // no intermediate process is needed. That clone skips libc's fork handlers, so the
    // caller must be single-threaded.
    let direct = entry.is_some()
        && plan.time_offsets.is_none()
        && plan.new.bits() & libc::CLONE_NEWTIME == 0
        && !plan
            .join
            .iter()
            .any(|(f, _)| *f == nix::sched::CloneFlags::CLONE_NEWPID)
        && single_threaded();
    let s1 = match (&entry, direct) {
        (Some(e), true) => {
            let new = plan.new.bits() & !nix::sched::CloneFlags::CLONE_NEWCGROUP.bits();
            e.clone_into(new as u64).map_err(|message| OciError::Init {
                id: id.into(),
                message,
            })?
        }
        _ => fork().map_err(sys("fork"))?,
    };
    if s1 == 0 {
        drop(parent_end);
        match (&entry, direct) {
            (Some(e), true) => super::init::direct(plan, fds, e),
            _ => intermediate(plan, fds, entry.as_ref()),
        }
    }
    drop(entry);
    drop(child_end);
    pids.push(s1);
    let sock = parent_end.as_raw_fd();
    let init_err = |message: String| OciError::Init {
        id: id.into(),
        message,
    };
    let exec_err = |message: String| OciError::Exec {
        id: id.into(),
        message,
    };
    // A failed send means the child is gone: its last message says why.
    let child_gone = |e: nix::Error, what: &str| -> OciError {
        match recv_msg(sock) {
            Ok(m) if m.first() == Some(&b'E') => {
                init_err(String::from_utf8_lossy(&m[1..]).into_owned())
            }
            Ok(m) if m.first() == Some(&b'X') => {
                exec_err(String::from_utf8_lossy(&m[1..]).into_owned())
            }
            _ => sys(what)(e),
        }
    };
    // With a new user namespace the intermediate first asks for its mappings (U); the
    // cgroup is joined after that, else at once.
    let mut in_cgroup = self_entry;
    let join_cgroup = |in_cgroup: &mut bool| -> Result<()> {
        if !*in_cgroup {
            if let Some(m) = make_cgroup {
                make(m)?;
            }
            cgroup.add(s1).map_err(cgerr)?;
            send_msg(sock, b"G").map_err(|e| child_gone(e, "signal the intermediate"))?;
            *in_cgroup = true;
        }
        Ok(())
    };
    if plan.uid_map.is_none() {
        join_cgroup(&mut in_cgroup)?;
    }
    // The intermediate reports the init's pid (P) after clone returns, while the init
    // already runs: its H and R can arrive before P. Both wait for the pid here.
    let mut init = if direct { s1 } else { 0 };
    // The intermediate exits right after sending P; it is reaped once the init is ready
    // (long gone by then), not at P, which would block the runtime once more for it.
    let reap = |pids: &mut Vec<i32>, init: i32| {
        if !direct {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s1), None);
            pids.retain(|p| *p != s1);
        }
        init
    };
    let mut hooks_waiting = false;
    let mut ready = false;
    let run_hooks = |init: i32, on_hooks: &mut dyn FnMut(i32) -> Result<Vec<u8>>| -> Result<()> {
        let mut state = on_hooks(init)?;
        state.insert(0, b'K');
        send_msg(sock, &state).map_err(|e| child_gone(e, "signal the init"))
    };
    loop {
        let msg = recv_msg(sock).map_err(sys("read from the container's init"))?;
        match msg.first() {
            Some(b'U') => {
                let write = |file: &str, text: &str| {
                    let p = format!("/proc/{s1}/{file}");
                    std::fs::write(&p, text).map_err(|e| {
                        OciError::spec(id, "linux.uidMappings", format!("write {p}: {e}"))
                    })
                };
                if let Some(m) = &plan.uid_map {
                    write("uid_map", m)?;
                }
                if let Some(m) = &plan.gid_map {
                    write("gid_map", m)?;
                }
                send_msg(sock, b"M").map_err(|e| child_gone(e, "signal the intermediate"))?;
                join_cgroup(&mut in_cgroup)?;
            }
            Some(b'P') => {
                init = String::from_utf8_lossy(&msg[1..])
                    .parse()
                    .map_err(|_| init_err("bad pid message".into()))?;
                pids.push(init);
                if hooks_waiting {
                    hooks_waiting = false;
                    run_hooks(init, &mut on_hooks)?;
                }
                if ready {
                    return Ok(reap(pids, init));
                }
            }
            Some(b'H') if init == 0 => hooks_waiting = true,
            Some(b'H') => run_hooks(init, &mut on_hooks)?,
            Some(b'R') if init == 0 => ready = true,
            Some(b'R') => return Ok(reap(pids, init)),
            Some(b'E') => return Err(init_err(String::from_utf8_lossy(&msg[1..]).into_owned())),
            Some(b'X') => return Err(exec_err(String::from_utf8_lossy(&msg[1..]).into_owned())),
            _ => {
                return Err(init_err(
                    "the container's init exited before it was ready".into(),
                ));
            }
        }
    }
}

/// Whether this process has one thread: procfs counts a process's threads in the link
/// count of its `task` directory (2 + threads), one statx and nothing to parse.
fn single_threaded() -> bool {
    std::fs::metadata("/proc/self/task")
        .is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) == 3)
}
