//! The seam in front of the pods' holders: start one, talk to it, tell whether it still
//! runs, and finish what a dead one left. The sandbox and container logic reach holders
//! only through [`Holders`], so their roll-back, stop, remove and recovery paths are
//! unit-tested against a recording fake (`crate::runtime::fakes`); [`LinuxHolders`] is
//! the real one, over [`Client`], the zygote and `/proc`.
//!
//! Calls are blocking (the holder protocol is short socket exchanges): callers on tokio
//! run them inside `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::oci::state::proc_stat;
use crate::runtime::holder::proto::CreateContainer;
use crate::runtime::holder::{
    Client, ContainerEvent, ContainerInfo, Events, ExecResult, HolderInfo, Result, SpawnOptions,
    Zygote, dead,
};

/// A holder just started: who it is, and its process's start time (with the pid, what
/// tells it from a later process that reuses the pid).
#[derive(Debug, Clone)]
pub struct Spawned {
    pub info: HolderInfo,
    pub start: u64,
}

/// The pods' holders.
pub trait Holders: Send + Sync + std::fmt::Debug {
    /// Starts the holder of `opts.pod_id` and waits until it answers.
    fn spawn(&self, opts: &SpawnOptions) -> Result<Spawned>;
    /// A call connection to the running holder of `pod`.
    fn connect(&self, pod: &str) -> Result<Box<dyn HolderConn>>;
    /// Whether the holder process `pid`, started at `start`, still runs (not a zombie,
    /// not another process with its pid).
    fn alive(&self, pid: i32, start: u64) -> bool;
    /// SIGKILLs every holder process of `pod`: the one recorded (`pid`, `start`) if it
    /// still runs, and any other a crash left unrecorded.
    fn kill(&self, pod: &str, pid: i32, start: u64);
    /// Finishes the containers of `pod`'s dead holder (see [`dead::finish`]); returns
    /// their records as they now are.
    fn finish_dead(&self, pod: &str) -> Vec<ContainerInfo>;
    /// Removes container `id` of `pod`'s dead holder (see [`dead::remove_container`]).
    fn remove_dead(&self, pod: &str, id: &str) -> std::io::Result<()>;
}

/// One connection to a pod's holder (see [`Client`] for what each call does).
pub trait HolderConn: Send + std::fmt::Debug {
    fn hello(&mut self) -> Result<HolderInfo>;
    fn create_container(&mut self, req: CreateContainer) -> Result<ContainerInfo>;
    fn start_container(&mut self, id: &str) -> Result<ContainerInfo>;
    fn signal(&mut self, id: &str, signal: i32, all: bool) -> Result<()>;
    fn container_state(&mut self, id: &str) -> Result<ContainerInfo>;
    fn list_containers(&mut self) -> Result<Vec<ContainerInfo>>;
    fn exec_sync(&mut self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult>;
    fn reopen_log(&mut self, id: &str) -> Result<()>;
    fn remove_container(&mut self, id: &str) -> Result<()>;
    /// This connection turned into the pod's event stream: the containers as they are
    /// now, then every later event.
    fn subscribe(self: Box<Self>) -> Result<(Vec<ContainerInfo>, Box<dyn HolderEvents>)>;
    /// Kills and removes every container, releases the pod; the holder exits.
    fn shutdown(self: Box<Self>) -> Result<()>;
}

/// A pod's container events, in order.
pub trait HolderEvents: Send {
    /// The next event; blocks up to the timeout (an `Io` error of kind `WouldBlock` or
    /// `TimedOut` when it passes).
    fn next_event(&mut self) -> Result<ContainerEvent>;
    fn set_timeout(&mut self, t: Option<Duration>) -> Result<()>;
    /// The next event, waited for without a thread (on tokio's reactor); the stream
    /// stays asynchronous from then on.
    fn next_event_async(&mut self) -> EventFuture<'_>;
}

/// What [`HolderEvents::next_event_async`] returns.
pub type EventFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ContainerEvent>> + Send + 'a>>;

/// The holders of this node: `berth-holder` processes forked by the zygote, their
/// sockets and files under the state dir.
#[derive(Debug)]
pub struct LinuxHolders {
    state_dir: PathBuf,
    zygote: Zygote,
}

impl LinuxHolders {
    /// Holders with their files under `state_dir`, started from `binary` (a
    /// `berth-holder`) with `env` added to the environment the zygote inherits.
    pub fn new(state_dir: &Path, binary: PathBuf, env: Vec<(String, String)>) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            zygote: Zygote::new(binary, env),
        }
    }
}

impl Holders for LinuxHolders {
    fn spawn(&self, opts: &SpawnOptions) -> Result<Spawned> {
        let info = Client::spawn(&self.zygote, opts)?.hello()?;
        let start = proc_stat(info.pid).map(|s| s.1).unwrap_or(0);
        Ok(Spawned { info, start })
    }

    fn connect(&self, pod: &str) -> Result<Box<dyn HolderConn>> {
        Ok(Box::new(Client::connect(&self.state_dir, pod)?))
    }

    fn alive(&self, pid: i32, start: u64) -> bool {
        pid > 0 && proc_stat(pid).is_some_and(|(state, s)| state != 'Z' && s == start)
    }

    fn kill(&self, pod: &str, pid: i32, start: u64) {
        let mut pids = holders_of(&self.state_dir, pod);
        if self.alive(pid, start) {
            pids.push(pid);
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn finish_dead(&self, pod: &str) -> Vec<ContainerInfo> {
        dead::finish(&self.state_dir, pod)
    }

    fn remove_dead(&self, pod: &str, id: &str) -> std::io::Result<()> {
        dead::remove_container(&self.state_dir, pod, id)
    }
}

/// The holder processes of pod `id`, found by their command line: a daemon killed while
/// a holder was starting never learnt its pid, and the holder may not be listening yet
/// when the restarted daemon rolls the sandbox back.
fn holders_of(state_dir: &Path, id: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            crate::runtime::holder::launch::is_holder_of(&cmd, state_dir, id)
        })
        .collect()
}

impl HolderConn for Client {
    fn hello(&mut self) -> Result<HolderInfo> {
        Client::hello(self)
    }
    fn create_container(&mut self, req: CreateContainer) -> Result<ContainerInfo> {
        Client::create_container(self, req)
    }
    fn start_container(&mut self, id: &str) -> Result<ContainerInfo> {
        Client::start_container(self, id)
    }
    fn signal(&mut self, id: &str, signal: i32, all: bool) -> Result<()> {
        Client::signal(self, id, signal, all)
    }
    fn container_state(&mut self, id: &str) -> Result<ContainerInfo> {
        Client::container_state(self, id)
    }
    fn list_containers(&mut self) -> Result<Vec<ContainerInfo>> {
        Client::list_containers(self)
    }
    fn exec_sync(&mut self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        Client::exec_sync(self, id, cmd, timeout)
    }
    fn reopen_log(&mut self, id: &str) -> Result<()> {
        Client::reopen_log(self, id)
    }
    fn remove_container(&mut self, id: &str) -> Result<()> {
        Client::remove_container(self, id)
    }
    fn subscribe(self: Box<Self>) -> Result<(Vec<ContainerInfo>, Box<dyn HolderEvents>)> {
        let (now, events) = Client::subscribe(*self)?;
        Ok((now, Box::new(events)))
    }
    fn shutdown(self: Box<Self>) -> Result<()> {
        Client::shutdown(*self)
    }
}

impl HolderEvents for Events {
    fn next_event(&mut self) -> Result<ContainerEvent> {
        Events::next_event(self)
    }
    fn set_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        Events::set_timeout(self, t)
    }
    fn next_event_async(&mut self) -> EventFuture<'_> {
        Box::pin(Events::next_event_async(self))
    }
}
