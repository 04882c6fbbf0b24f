//! Recording fakes of the runtime's collaborators, for unit tests of the sandbox and
//! container logic: pods' holders ([`FakeHolders`]), the pod network ([`FakeCni`]) and
//! the image store ([`FakeImages`]). Each records the calls it gets, in order, as short
//! strings (`"spawn <pod>"`, `"del <pod>"`, ...), keeps the state a real one would
//! (which holders run, which containers they hold, which rootfs exist), and can be told
//! to fail one kind of call.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use super::container::{ContainerImages, ImageFuture};
use super::holder::proto::CreateContainer;
use super::holder::{
    ContainerEvent, ContainerInfo, ContainerState, ErrorCode, EventKind, ExecResult, ExitInfo,
    HolderError, HolderInfo, Result, SpawnOptions, WireError,
};
use super::sandbox::{CniFuture, HolderConn, HolderEvents, Holders, PodNetwork, Spawned};
use crate::image::Digest;
use crate::image::metadata::{ImageRecord, RuntimeConfig};
use crate::net::cni::{Attachment, CniError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "berth-unit-{name}-{}-{}",
            std::process::id(),
            super::meta::generate_id().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
                c.exit = Some(super::holder::dead::LOST_EXIT);
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
}

/// What the network's fake knows and was asked.
#[derive(Debug, Default)]
pub struct CniWorld {
    pub calls: Vec<String>,
    pub fail_add: bool,
    pub fail_del: bool,
    /// The pods attached now.
    pub attached: BTreeSet<String>,
}

/// A pod network in memory; each ADD gives the next 10.88.0.x.
#[derive(Debug, Clone, Default)]
pub struct FakeCni(pub Arc<Mutex<CniWorld>>);

impl FakeCni {
    pub fn world(&self) -> MutexGuard<'_, CniWorld> {
        lock(&self.0)
    }

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }
}

fn plugin_error(verb: &'static str, container: &str) -> CniError {
    CniError::Plugin {
        plugin: "fake".into(),
        verb,
        container: container.into(),
        code: 11,
        msg: format!("{verb} refused by the test"),
        details: String::new(),
    }
}

impl PodNetwork for FakeCni {
    fn loopback_up(&self, netns: &Path) -> std::io::Result<()> {
        self.world().calls.push(format!("lo {}", netns.display()));
        Ok(())
    }

    fn add<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, Value> {
        let mut w = self.world();
        w.calls.push(format!("add {}", att.container_id));
        let r = if w.fail_add {
            Err(plugin_error("ADD", &att.container_id))
        } else {
            w.attached.insert(att.container_id.clone());
            let n = w.calls.len();
            Ok(json!({"ips": [{"address": format!("10.88.0.{n}/16")}]}))
        };
        Box::pin(std::future::ready(r))
    }

    fn del<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, ()> {
        let mut w = self.world();
        w.calls.push(format!("del {}", att.container_id));
        let r = if w.fail_del {
            Err(plugin_error("DEL", &att.container_id))
        } else {
            w.attached.remove(&att.container_id);
            Ok(())
        };
        Box::pin(std::future::ready(r))
    }
}

/// What the image store's fake knows and was asked.
#[derive(Debug, Default)]
pub struct ImageWorld {
    /// The images by name.
    pub images: BTreeMap<String, ImageRecord>,
    /// Where rootfs dirs are made (`<root>/<container>`).
    pub root: PathBuf,
    pub rootfs: BTreeSet<String>,
    /// View owners and their view names.
    pub views: BTreeMap<String, BTreeSet<String>>,
    pub calls: Vec<String>,
}

/// An image store in memory; a rootfs is an empty dir under `root`.
#[derive(Debug, Clone, Default)]
pub struct FakeImages(pub Arc<Mutex<ImageWorld>>);

impl FakeImages {
    /// A store holding `names` (each its own image) with rootfs dirs under `root`.
    pub fn new(root: &Path, names: &[&str]) -> Self {
        let images = names
            .iter()
            .map(|n| {
                let id = Digest::of(n.as_bytes());
                let rec = ImageRecord {
                    id: id.clone(),
                    manifest: id,
                    repo_tags: vec![(*n).into()],
                    repo_digests: vec![],
                    layers: vec![],
                    diff_ids: vec![],
                    chain_ids: vec![],
                    size: 0,
                    created: None,
                    platform: "linux/amd64".into(),
                    config: RuntimeConfig {
                        cmd: vec!["/bin/sh".into()],
                        ..Default::default()
                    },
                    stored_at: 0,
                    last_used: 0,
                };
                ((*n).to_string(), rec)
            })
            .collect();
        Self(Arc::new(Mutex::new(ImageWorld {
            images,
            root: root.to_path_buf(),
            ..Default::default()
        })))
    }

    pub fn world(&self) -> MutexGuard<'_, ImageWorld> {
        lock(&self.0)
    }

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }
}

fn find_in(w: &ImageWorld, query: &str) -> crate::image::Result<ImageRecord> {
    w.images
        .iter()
        .find(|(name, rec)| *name == query || rec.id.to_string() == query)
        .map(|(_, rec)| rec.clone())
        .ok_or_else(|| crate::image::Error::NotFound {
            what: format!("image {query}"),
        })
}

impl ContainerImages for FakeImages {
    fn find(&self, query: &str) -> crate::image::Result<ImageRecord> {
        find_in(&self.world(), query)
    }

    fn create_rootfs<'a>(&'a self, container: &'a str, image: &'a str) -> ImageFuture<'a, PathBuf> {
        let mut w = self.world();
        w.calls.push(format!("create_rootfs {container}"));
        let r = find_in(&w, image).and_then(|_| {
            let dir = w.root.join(container);
            std::fs::create_dir_all(&dir).map_err(crate::image::Error::io("create", &dir))?;
            w.rootfs.insert(container.into());
            Ok(dir)
        });
        Box::pin(std::future::ready(r))
    }

    fn rootfs_upper(&self, container: &str) -> crate::image::Result<PathBuf> {
        Ok(self.world().root.join(container).join("upper"))
    }

    fn remove_rootfs(&self, container: &str) -> crate::image::Result<()> {
        let mut w = self.world();
        w.calls.push(format!("remove_rootfs {container}"));
        w.rootfs.remove(container);
        let dir = w.root.join(container);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::image::Error::io("remove", &dir)(e))
            }
            _ => Ok(()),
        }
    }

    fn create_view<'a>(
        &'a self,
        owner: &'a str,
        name: &'a str,
        image: &'a str,
    ) -> ImageFuture<'a, (ImageRecord, PathBuf)> {
        let mut w = self.world();
        w.calls.push(format!("create_view {owner}/{name}"));
        let r = find_in(&w, image).and_then(|img| {
            let dir = w.root.join("views").join(owner).join(name);
            std::fs::create_dir_all(&dir).map_err(crate::image::Error::io("create", &dir))?;
            w.views.entry(owner.into()).or_default().insert(name.into());
            Ok((img, dir))
        });
        Box::pin(std::future::ready(r))
    }

    fn remove_views(&self, owner: &str) -> crate::image::Result<()> {
        let mut w = self.world();
        w.calls.push(format!("remove_views {owner}"));
        w.views.remove(owner);
        Ok(())
    }

    fn view_owners(&self) -> crate::image::Result<Vec<String>> {
        Ok(self.world().views.keys().cloned().collect())
    }
}
