//! `berth-holder`: starts a pod's holder. It detaches (own session, parent exits at once),
//! makes the pod's namespaces, listens on `<pod>/holder.sock`, reports readiness on
//! `--ready-fd` (`ok <pid>`, `error: <why>`, or `invalid error: <why>` when what it was
//! asked to set up was refused), then serves until Shutdown.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::PodOptions;
use super::container::Pod;
use super::launch::INVALID_PREFIX;
use super::ns::{Kernel, Namespaces};
use super::server::Server;
use super::{HolderError, PodDir, Result};
use crate::store::{Durability, write_file};

/// `berth-holder`'s whole command line, as an exec'd holder and the zygote's children
/// (`zygote.rs`) parse it.
#[derive(Debug, clap::Parser)]
#[command(name = "berth-holder", version)]
pub struct HolderCli {
    /// Log filter (tracing's env-filter syntax).
    #[arg(long, env = "BERTH_LOG", default_value = "info")]
    pub log_level: String,
    #[command(flatten)]
    pub args: HolderArgs,
}

/// The command line of `berth-holder` (one pod's holder). The daemon builds it from
/// [`super::PodOptions::args`].
#[derive(Debug, Clone, clap::Args)]
pub struct HolderArgs {
    /// berth's state dir; the holder keeps its files in `<state-dir>/pods/<pod-id>`.
    #[arg(long)]
    pub state_dir: PathBuf,
    #[arg(long)]
    pub pod_id: String,
    /// The pod's hostname (in its own uts namespace).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Use the host's network and uts namespaces.
    #[arg(long)]
    pub host_network: bool,
    /// Use the host's ipc namespace.
    #[arg(long)]
    pub host_ipc: bool,
    /// Make one pid namespace for all the pod's containers.
    #[arg(long)]
    pub share_pid: bool,
    /// A sysctl set in the pod's namespaces, `NAME=VALUE` with NAME in dotted form
    /// (repeatable).
    #[arg(long = "sysctl", value_parser = parse_sysctl)]
    pub sysctls: Vec<(String, String)>,
    /// The holder's cgroup, relative to each hierarchy's root.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// cpu.shares of the holder's cgroup.
    #[arg(long, requires = "cgroup")]
    pub cpu_shares: Option<u64>,
    /// An inherited fd to report readiness on (then closed).
    #[arg(long)]
    pub ready_fd: Option<i32>,
    /// Do not detach (for debugging).
    #[arg(long)]
    pub foreground: bool,
}

fn parse_sysctl(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Runs an exec'd `berth-holder` with the command line `argv`; returns the process's exit
/// code.
pub fn main_from(argv: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    use clap::Parser;
    let cli = HolderCli::parse_from(argv);
    super::init_log(&cli.log_level);
    main(cli.args)
}

/// Runs one pod's holder; returns the process's exit code.
pub fn main(args: HolderArgs) -> i32 {
    // SAFETY: the fd was handed to this process for it alone (the spawner's pipe).
    let mut ready = args
        .ready_fd
        .map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    // Only stdio and the ready pipe are the holder's: whatever else the spawner left open
    // would be kept open as long as the pod lives.
    let keep = args.ready_fd.unwrap_or(2).max(2) as u32;
    // SAFETY: none of these fds is in use in this process yet (the ready fd is kept).
    unsafe {
        if keep > 2 {
            crate::sys::fds::close_range(3, keep - 1);
        }
        crate::sys::fds::close_range(keep + 1, u32::MAX);
    }
    // In the pod's cgroup before anything is forked: the pod init and every container
    // start from there. The v1 hierarchies are joined here, the unified one by being
    // born in it (see `cgroups::Entry`).
    let entry = match &args.cgroup {
        Some(path) => match super::pod_cgroup::prepare(&args.pod_id, path, args.cpu_shares) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!("{e}");
                report(&mut ready, &format!("error: {e}"));
                return 1;
            }
        },
        None => None,
    };
    let forked = match (&entry, args.foreground) {
        (Some(e), false) => e.clone_into(0),
        (None, false) => crate::sys::clone::fork().map_err(|e| format!("fork: {e}")),
        (Some(e), true) => e.join_unified().map(|()| 0),
        (None, true) => Ok(0),
    };
    match forked {
        Ok(0) if !args.foreground => {
            let _ = nix::unistd::setsid();
        }
        Ok(0) => {}
        Ok(_) => crate::sys::clone::exit_now(0),
        Err(e) => {
            report(&mut ready, &format!("error: {e}"));
            return 1;
        }
    }
    let server = match setup(&args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            let class = match &e {
                HolderError::Invalid {
                    field: "sysctl", ..
                } => INVALID_PREFIX,
                _ => "",
            };
            report(&mut ready, &format!("{class}error: {e}"));
            return 1;
        }
    };
    report(&mut ready, &format!("ok {}", std::process::id()));
    drop(ready);
    // what setup allocated and freed goes back to the kernel
    super::release_memory();
    server.run();
    tracing::info!("shut down");
    0
}

fn report(ready: &mut Option<std::fs::File>, msg: &str) {
    if let Some(f) = ready {
        let _ = writeln!(f, "{msg}");
    }
}

fn setup(args: &HolderArgs) -> Result<Server> {
    let pod = PodDir::new(&args.state_dir, &args.pod_id)?;
    let id = pod.pod_id.clone();
    let io = |op: &'static str, path: PathBuf| {
        let pod = id.clone();
        move |source| HolderError::Io {
            pod,
            op,
            path,
            source,
        }
    };
    let pods = args.state_dir.join("pods");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&pods)
        .map_err(io("mkdir", pods.clone()))?;
    match std::fs::DirBuilder::new().mode(0o700).create(&pod.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(HolderError::Invalid {
                pod: id.clone(),
                field: "pod id",
                reason: format!(
                    "{} exists: the pod has (or had) a holder; remove it first",
                    pod.dir.display()
                ),
            });
        }
        Err(e) => return Err(io("mkdir", pod.dir.clone())(e)),
    }
    let res = setup_in(args, &pod);
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&pod.dir);
    }
    res
}

fn setup_in(args: &HolderArgs, pod: &PodDir) -> Result<Server> {
    let id = pod.pod_id.clone();
    let sys = |op: &str| {
        let (pod, op) = (id.clone(), op.to_string());
        move |source| HolderError::Sys { pod, op, source }
    };
    // Its own output goes to the pod's holder.log; nothing keeps the spawner's terminal.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pod.log_file())
        .map_err(|source| HolderError::Io {
            pod: id.clone(),
            op: "open",
            path: pod.log_file(),
            source,
        })?;
    let null = std::fs::File::open("/dev/null").map_err(|source| HolderError::Io {
        pod: id.clone(),
        op: "open",
        path: "/dev/null".into(),
        source,
    })?;
    nix::unistd::dup2_stdin(&null).map_err(sys("dup2 stdin"))?;
    nix::unistd::dup2_stdout(&log).map_err(sys("dup2 stdout"))?;
    nix::unistd::dup2_stderr(&log).map_err(sys("dup2 stderr"))?;
    let _ = std::env::set_current_dir("/");
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("PR_SET_CHILD_SUBREAPER"))?;
    // Signals arrive through the signalfd; children get an empty mask back before exec.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(sys("sigprocmask"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(sys("signalfd"))?;
    let opts = PodOptions {
        hostname: args.hostname.clone(),
        host_network: args.host_network,
        host_ipc: args.host_ipc,
        share_pid: args.share_pid,
        sysctls: args.sysctls.clone(),
        cgroup: args.cgroup.clone(),
        cpu_shares: args.cpu_shares,
    };
    let records = pod.records();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&records)
        .map_err(|source| HolderError::Io {
            pod: id.clone(),
            op: "mkdir",
            path: records.clone(),
            source,
        })?;
    let mut ns = Namespaces::setup(Kernel::LINUX, pod, &opts)?;
    let sock = pod.socket();
    let listener = match pod.with_socket_path(|p| UnixListener::bind(p)) {
        Ok(l) => l,
        Err(source) => {
            ns.release();
            return Err(HolderError::Io {
                pod: id,
                op: "listen",
                path: sock,
                source,
            });
        }
    };
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    let _ = listener.set_nonblocking(true);
    let pid = std::process::id().to_string();
    if let Err(source) = write_file(&pod.pid_file(), pid.as_bytes(), Durability::Replace) {
        ns.release();
        return Err(HolderError::Io {
            pod: id,
            op: "write",
            path: pod.pid_file(),
            source,
        });
    }
    tracing::info!(pod = %pod.pod_id, pid = std::process::id(), "holder ready");
    Ok(Server::new(Pod::new(pod.clone()), ns, listener, sigfd))
}
