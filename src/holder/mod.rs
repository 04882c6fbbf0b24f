//! The pod holder (`berth-holder`, its own binary): one small process per pod that holds
//! the pod's namespaces, is the parent and child subreaper of the pod's containers, writes
//! their CRI log files, records their exits on disk, and serves the daemon over a unix
//! socket. It replaces both the pause container and the per-pod shim, and outlives the
//! daemon.
//!
//! ```text
//! daemon (runtime::holder::client) --spawn--> berth-holder --state-dir S --pod-id P
//!                                 | unshare net/ipc/uts (+ pid init), bind to S/pods/P/ns/*
//!                                 | listen S/pods/P/holder.sock, report ready on a pipe
//!                                 '-> poll loop (server.rs): signalfd(SIGCHLD), socket,
//!                                     clients, container stdout/stderr pipes, exec pipes
//! ```
//!
//! This module is what the `berth-holder` binary runs, and nothing else: it reaches down
//! to `oci` (the in-process create path), `cgroups`, `store` and `sys`, never up into
//! `runtime`, and nothing in it needs an async runtime, gRPC, HTTP or TLS. What the daemon
//! shares with it is public: the wire protocol ([`proto`], [`fdpass`]), how a holder is
//! launched ([`launch`]), where a pod's files are ([`PodDir`]) and the error type. The
//! holder's own parts (its loop, containers, namespaces, logs, exec) are private: the
//! daemon's side of the protocol (`runtime::holder`) cannot reach them.
//!
//! It owns everything under `S/pods/P/` and the processes it forks; it never touches
//! another pod's files, cgroups it was not told to use, or the host's namespaces.

mod attach;
mod cli;
mod conn;
mod container;
mod exec;
mod exec_spawn;
pub mod fdpass;
pub mod launch;
mod log;
mod ns;
mod pod_cgroup;
pub mod proto;
mod pty;
mod server;
mod zygote;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use launch::PodOptions;
pub use proto::{
    AttachStart, ContainerEvent, ContainerInfo, ContainerState, ErrorCode, EventKind, ExecResult,
    ExecStart, ExitInfo, HolderInfo, WireError,
};

/// Runs the `berth-holder` binary with the process's own arguments; returns its exit
/// code. `berth-holder zygote ROOM` is the zygote that forks a daemon's holders
/// ([`launch`]); any other command line is one holder's (`--state-dir S --pod-id P ...`).
pub fn main() -> i32 {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == launch::ZYGOTE_ARG)
    {
        init_log(&std::env::var("BERTH_LOG").unwrap_or_else(|_| "info".into()));
        return zygote::main();
    }
    cli::main_from(std::env::args_os())
}

/// A holder's log: plain lines on stderr, which the holder points at its pod's
/// holder.log. The filter takes targets and levels (`info`, `berth=debug,warn`: tracing's
/// `Targets`), not the daemon's full env-filter syntax, whose span and field matching
/// needs a regex engine a holder has no use for; a filter it cannot read logs at info.
fn init_log(filter: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (targets, bad) = match filter.parse::<Targets>() {
        Ok(t) => (t, None),
        Err(e) => (
            Targets::new().with_default(tracing::Level::INFO),
            Some(e.to_string()),
        ),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        .init();
    if let Some(e) = bad {
        tracing::warn!(filter, error = %e, "log filter not understood; logging at info");
    }
}

/// Errors of the holder and of its client.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    #[error("pod {pod}: {op}: {source}")]
    Sys {
        pod: String,
        op: String,
        source: nix::Error,
    },
    #[error("pod {pod}: {op} {}: {source}", path.display())]
    Io {
        pod: String,
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pod {pod}: invalid {field}: {reason}")]
    Invalid {
        pod: String,
        field: &'static str,
        reason: String,
    },
    #[error("pod {pod}: holder protocol: {source}")]
    Frame {
        pod: String,
        source: proto::FrameError,
    },
    /// The holder refused a request.
    #[error("pod {pod}: {}", error.message)]
    Remote { pod: String, error: WireError },
    /// The holder reported a failed start; `invalid`: because of what it was asked to
    /// set up (a pod sysctl the kernel refused), not because of the host.
    #[error("pod {pod}: the holder failed to start: {message}")]
    Start {
        pod: String,
        message: String,
        invalid: bool,
    },
    #[error("pod {pod}: the holder closed the connection")]
    Closed { pod: String },
}

impl HolderError {
    /// The holder's error class, when the holder answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            HolderError::Remote { error, .. } => Some(error.code),
            HolderError::Start { invalid: true, .. } => Some(ErrorCode::InvalidArgument),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, HolderError>;

/// Where a pod's holder keeps its files: `<state_dir>/pods/<pod_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDir {
    pub pod_id: String,
    pub dir: PathBuf,
}

impl PodDir {
    /// Checks `pod_id` (it names a directory) and builds the paths.
    pub fn new(state_dir: &Path, pod_id: &str) -> Result<Self> {
        let ok = !pod_id.is_empty()
            && pod_id.len() <= 128
            && pod_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !pod_id.starts_with('.');
        if !ok {
            return Err(HolderError::Invalid {
                pod: pod_id.into(),
                field: "pod id",
                reason: "must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.'".into(),
            });
        }
        Ok(Self {
            pod_id: pod_id.into(),
            dir: state_dir.join("pods").join(pod_id),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("holder.sock")
    }

    /// Runs `f` (a bind or a connect) on a path to the holder's socket that fits in a
    /// `sockaddr_un` (108 bytes): the plain path when it is short enough, else the same
    /// file reached through `/proc/self/fd/<dirfd>`, so a long `--state-dir` works.
    pub fn with_socket_path<T>(
        &self,
        f: impl FnOnce(&Path) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let sock = self.socket();
        if sock.as_os_str().len() < 100 {
            return f(&sock);
        }
        let dir = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&self.dir)?;
        f(&PathBuf::from(format!(
            "/proc/self/fd/{}/holder.sock",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        )))
    }
    pub fn ns_dir(&self) -> PathBuf {
        self.dir.join("ns")
    }
    /// The netns path for CNI.
    pub fn netns(&self) -> PathBuf {
        self.ns_dir().join("net")
    }
    pub fn oci_root(&self) -> PathBuf {
        self.dir.join("oci")
    }
    /// Compiled seccomp filters, shared by the holders of one state dir.
    pub fn seccomp_cache(&self) -> PathBuf {
        // dir is <state dir>/pods/<id>
        let state_dir = self.dir.parent().and_then(Path::parent);
        state_dir.unwrap_or(&self.dir).join("seccomp")
    }
    pub fn records(&self) -> PathBuf {
        self.dir.join("containers")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("holder.pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("holder.log")
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Gives back to the kernel the memory a holder took for a burst of work and no longer
/// uses: its mappings of the binary's code, the free heap (`malloc_trim`), and the stack
/// pages below the caller's frame. Creating a container parses and applies a whole OCI
/// spec some frames deep; without this, the stack pages that took stayed private to the
/// holder, idle, for the pod's life, and the code it ran stayed mapped. The stack is
/// released only when called on the main thread (the holder's loop runs there), whose
/// stack has no other mapping near below it.
pub(crate) fn release_memory() {
    crate::sys::memory::release_code();
    crate::sys::memory::trim_heap();
    if nix::unistd::gettid() == nix::unistd::getpid() {
        release_stack_below_here();
    }
}

#[inline(never)]
fn release_stack_below_here() {
    const PAGE: usize = 4096;
    // Room below this frame for madvise's own, which is kept.
    const KEEP: usize = 8 << 10;
    // How far below that is released: deeper than any call of the holder goes. Nothing else
    // is mapped there: the kernel keeps the main thread's stack at least 128 MiB (or its
    // rlimit) above every other mapping.
    const DEPTH: usize = 1 << 20;
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    let end = (here - KEEP) & !(PAGE - 1);
    // SAFETY: the stack grows down and this runs on the main thread (checked by the
    // caller), so every live frame of its stack is above `end`; what lies below holds
    // only frames that have returned, and a page released there reads as zeros when a
    // later call reaches it. The unmapped part of the range is skipped by the kernel
    // (ENOMEM, which changes nothing).
    unsafe {
        libc::madvise(
            (end - DEPTH) as *mut libc::c_void,
            DEPTH,
            libc::MADV_DONTNEED,
        );
    }
}
