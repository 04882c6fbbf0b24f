//! Pods' holders in memory: which run, the containers each holds and its events.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::lock;
use crate::runtime::holder::proto::CreateContainer;
use crate::runtime::holder::{
    ContainerEvent, ContainerInfo, ContainerState, ErrorCode, EventKind, ExecResult, ExitInfo,
    HolderError, HolderInfo, Result, SpawnOptions, WireError,
};
use crate::runtime::sandbox::{EventFuture, HolderConn, HolderEvents, Holders, Spawned};

/// One pod's holder as the fake keeps it.
#[derive(Debug, Clone, Default)]
pub struct FakePod {
    pub pid: i32,
    pub alive: bool,
    pub namespaces: Vec<(String, PathBuf)>,
    pub containers: BTreeMap<String, ContainerInfo>,
    /// Every event so far; a subscriber reads from where it subscribed.
    pub events: Vec<ContainerEvent>,
}

/// What the holders' fake knows and was asked.
#[derive(Debug, Default)]
pub struct HolderWorld {
    pub pods: BTreeMap<String, FakePod>,
    pub calls: Vec<String>,
    /// The calls that fail (by name: "spawn", "create_container", "signal",
    /// "shutdown", ...), as a holder that refuses them.
    pub fail: HashSet<&'static str>,
    next_pid: i32,
}

/// Pods' holders in memory.
#[derive(Debug, Clone, Default)]
pub struct FakeHolders(pub Arc<Mutex<HolderWorld>>);

/// The start time the fake gives holder `pid`.
fn start_of(pid: i32) -> u64 {
    1_000 + pid as u64
}

fn refused(pod: &str, op: &str) -> HolderError {
    HolderError::Remote {
        pod: pod.into(),
        error: WireError {
            code: ErrorCode::Internal,
            message: format!("{op} refused by the test"),
        },
    }
}

fn gone(pod: &str) -> HolderError {
    HolderError::Io {
        pod: pod.into(),
        op: "connect",
        path: PathBuf::from(format!("/fake/{pod}/holder.sock")),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    }
}

impl FakeHolders {
    pub fn world(&self) -> MutexGuard<'_, HolderWorld> {
        lock(&self.0)
    }

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    pub fn fail(&self, op: &'static str) {
        self.world().fail.insert(op);
    }

    /// A holder that runs as if an earlier daemon had started it, holding `containers`;
    /// returns its pid and start time.
    pub fn running(&self, pod: &str, containers: Vec<ContainerInfo>) -> (i32, u64) {
        let mut w = self.world();
        w.next_pid += 1;
        let pid = 100 + w.next_pid;
        w.pods.insert(
            pod.into(),
            FakePod {
                pid,
                alive: true,
                containers: containers.into_iter().map(|c| (c.id.clone(), c)).collect(),
                ..Default::default()
            },
        );
        (pid, start_of(pid))
    }

    /// The holder of `pod` dies (killed from outside), leaving its containers' records.
    pub fn die(&self, pod: &str) {
        if let Some(p) = self.world().pods.get_mut(pod) {
            p.alive = false;
        }
    }

    /// Whether `pod` has a running holder.
    pub fn is_running(&self, pod: &str) -> bool {
        self.world().pods.get(pod).is_some_and(|p| p.alive)
    }
}

/// A container as the holder reports it.
pub fn container_info(id: &str, state: ContainerState) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        state,
        pid: if state == ContainerState::Running {
            7
        } else {
            0
        },
        created_at: 1,
        started_at: if state == ContainerState::Created {
            0
        } else {
            2
        },
        finished_at: 0,
        exit: None,
        log_path: None,
        start_error: None,
    }
}

impl Holders for FakeHolders {
    fn spawn(&self, opts: &SpawnOptions) -> Result<Spawned> {
        let pod = &opts.pod_id;
        self.world().calls.push(format!("spawn {pod}"));
        if self.world().fail.contains("spawn") {
            return Err(HolderError::Start {
                pod: pod.clone(),
                message: "spawn refused by the test".into(),
                invalid: false,
            });
        }
        let (pid, start) = self.running(pod, vec![]);
        let mut namespaces = vec![];
        for (kind, own) in [
            ("net", !opts.pod.host_network),
            ("ipc", !opts.pod.host_ipc),
            ("uts", true),
            ("pid", opts.pod.share_pid),
        ] {
            if own {
                namespaces.push((kind.into(), PathBuf::from(format!("/fake/{pod}/ns/{kind}"))));
            }
        }
        if let Some(p) = self.world().pods.get_mut(pod) {
            p.namespaces = namespaces.clone();
        }
        Ok(Spawned {
            info: HolderInfo {
                version: 1,
                pod_id: pod.clone(),
                pid,
                namespaces,
            },
            start,
        })
    }

    fn connect(&self, pod: &str) -> Result<Box<dyn HolderConn>> {
        if !self.is_running(pod) {
            return Err(gone(pod));
        }
        Ok(Box::new(FakeConn {
            holders: self.clone(),
            pod: pod.into(),
        }))
    }

    fn alive(&self, pid: i32, start: u64) -> bool {
        pid > 0
            && start == start_of(pid)
            && self.world().pods.values().any(|p| p.alive && p.pid == pid)
    }

    fn kill(&self, pod: &str, _pid: i32, _start: u64) {
        let mut w = self.world();
        w.calls.push(format!("kill {pod}"));
        if let Some(p) = w.pods.get_mut(pod) {
            p.alive = false;
        }
    }

    fn finish_dead(&self, pod: &str) -> Vec<ContainerInfo> {
        let mut w = self.world();
        w.calls.push(format!("finish_dead {pod}"));
        let Some(p) = w.pods.get_mut(pod) else {
            return vec![];
        };
        for c in p.containers.values_mut() {
            if c.state != ContainerState::Exited {
                c.state = ContainerState::Exited;
                c.pid = 0;
                c.finished_at = 3;
                c.exit = Some(crate::runtime::holder::dead::LOST_EXIT);
            }
        }
        p.containers.values().cloned().collect()
    }

    fn remove_dead(&self, pod: &str, id: &str) -> std::io::Result<()> {
        let mut w = self.world();
        w.calls.push(format!("remove_dead {pod}/{id}"));
        if let Some(p) = w.pods.get_mut(pod) {
            p.containers.remove(id);
        }
        Ok(())
    }
}

/// A call connection to a fake holder.
#[derive(Debug)]
struct FakeConn {
    holders: FakeHolders,
    pod: String,
}

impl FakeConn {
    /// Records `op`, then runs `f` on the pod if its holder runs and `op` is not told to
    /// fail.
    fn call<T>(
        &self,
        op: &'static str,
        arg: &str,
        f: impl FnOnce(&mut FakePod) -> Result<T>,
    ) -> Result<T> {
        let mut w = self.holders.world();
        w.calls.push(if arg.is_empty() {
            format!("{op} {}", self.pod)
        } else {
            format!("{op} {}/{arg}", self.pod)
        });
        if w.fail.contains(op) {
            return Err(refused(&self.pod, op));
        }
        match w.pods.get_mut(&self.pod) {
            Some(p) if p.alive => f(p),
            _ => Err(HolderError::Closed {
                pod: self.pod.clone(),
            }),
        }
    }

    fn container<'a>(pod: &'a mut FakePod, name: &str, id: &str) -> Result<&'a mut ContainerInfo> {
        pod.containers
            .get_mut(id)
            .ok_or_else(|| HolderError::Remote {
                pod: name.into(),
                error: WireError {
                    code: ErrorCode::NotFound,
                    message: format!("no container {id}"),
                },
            })
    }
}

fn event(kind: EventKind, c: &ContainerInfo) -> ContainerEvent {
    ContainerEvent {
        id: c.id.clone(),
        kind,
        time: 5,
        container: c.clone(),
    }
}

impl HolderConn for FakeConn {
    fn hello(&mut self) -> Result<HolderInfo> {
        let pod = self.pod.clone();
        self.call("hello", "", |p| {
            Ok(HolderInfo {
                version: 1,
                pod_id: pod,
                pid: p.pid,
                namespaces: p.namespaces.clone(),
            })
        })
    }

    fn create_container(&mut self, req: CreateContainer) -> Result<ContainerInfo> {
        let pod = self.pod.clone();
        self.call("create_container", &req.id.clone(), |p| {
            if p.containers.contains_key(&req.id) {
                return Err(HolderError::Remote {
                    pod,
                    error: WireError {
                        code: ErrorCode::AlreadyExists,
                        message: format!("container {} exists", req.id),
                    },
                });
            }
            let c = container_info(&req.id, ContainerState::Created);
            p.containers.insert(req.id.clone(), c.clone());
            p.events.push(event(EventKind::Created, &c));
            Ok(c)
        })
    }

    fn start_container(&mut self, id: &str) -> Result<ContainerInfo> {
        let pod = self.pod.clone();
        self.call("start_container", id, |p| {
            let c = Self::container(p, &pod, id)?;
            *c = container_info(id, ContainerState::Running);
            let c = c.clone();
            p.events.push(event(EventKind::Started, &c));
            Ok(c)
        })
    }

    /// Every signal ends a running container (with 128 + the signal), as a program that
    /// does not catch it.
    fn signal(&mut self, id: &str, signal: i32, _all: bool) -> Result<()> {
        let pod = self.pod.clone();
        self.call("signal", &format!("{id} {signal}"), |p| {
            let c = Self::container(p, &pod, id)?;
            if c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.pid = 0;
                c.finished_at = 4;
                c.exit = Some(ExitInfo {
                    code: 128 + signal,
                    signal: Some(signal),
                    oom_killed: false,
                });
                let c = c.clone();
                p.events.push(event(EventKind::Stopped, &c));
            }
            Ok(())
        })
    }

    fn container_state(&mut self, id: &str) -> Result<ContainerInfo> {
        let pod = self.pod.clone();
        self.call("container_state", id, |p| {
            Self::container(p, &pod, id).map(|c| c.clone())
        })
    }

    fn list_containers(&mut self) -> Result<Vec<ContainerInfo>> {
        self.call("list_containers", "", |p| {
            Ok(p.containers.values().cloned().collect())
        })
    }

    fn exec_sync(&mut self, id: &str, _cmd: &[String], _timeout: Duration) -> Result<ExecResult> {
        let pod = self.pod.clone();
        self.call("exec_sync", id, |p| {
            Self::container(p, &pod, id)?;
            Ok(ExecResult {
                stdout: vec![],
                stderr: vec![],
                exit_code: 0,
            })
        })
    }

    fn reopen_log(&mut self, id: &str) -> Result<()> {
        let pod = self.pod.clone();
        self.call("reopen_log", id, |p| {
            Self::container(p, &pod, id).map(|_| ())
        })
    }

    fn remove_container(&mut self, id: &str) -> Result<()> {
        let pod = self.pod.clone();
        self.call("remove_container", id, |p| {
            let c = p.containers.remove(id).ok_or_else(|| HolderError::Remote {
                pod,
                error: WireError {
                    code: ErrorCode::NotFound,
                    message: format!("no container {id}"),
                },
            })?;
            p.events.push(event(EventKind::Deleted, &c));
            Ok(())
        })
    }

    fn subscribe(self: Box<Self>) -> Result<(Vec<ContainerInfo>, Box<dyn HolderEvents>)> {
        let (now, seen) = self.call("subscribe", "", |p| {
            Ok((p.containers.values().cloned().collect(), p.events.len()))
        })?;
        Ok((
            now,
            Box::new(FakeEvents {
                holders: self.holders.clone(),
                pod: self.pod.clone(),
                seen,
                timeout: None,
            }),
        ))
    }

    fn shutdown(self: Box<Self>) -> Result<()> {
        self.call("shutdown", "", |p| {
            p.alive = false;
            p.containers.clear();
            Ok(())
        })
    }
}

/// A subscribed stream: the pod's events after the subscription. With no event left it
/// times out if a timeout is set, else it ends as a holder that closed the stream (so
/// an event-forwarding thread ends with the test).
#[derive(Debug)]
struct FakeEvents {
    holders: FakeHolders,
    pod: String,
    seen: usize,
    timeout: Option<Duration>,
}

impl HolderEvents for FakeEvents {
    fn next_event(&mut self) -> Result<ContainerEvent> {
        let w = self.holders.world();
        if let Some(ev) = w.pods.get(&self.pod).and_then(|p| p.events.get(self.seen)) {
            self.seen += 1;
            return Ok(ev.clone());
        }
        match self.timeout {
            Some(_) => Err(HolderError::Io {
                pod: self.pod.clone(),
                op: "read",
                path: PathBuf::new(),
                source: std::io::ErrorKind::WouldBlock.into(),
            }),
            None => Err(HolderError::Closed {
                pod: self.pod.clone(),
            }),
        }
    }

    fn set_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.timeout = t;
        Ok(())
    }

    fn next_event_async(&mut self) -> EventFuture<'_> {
        Box::pin(std::future::ready(self.next_event()))
    }
}
