//! What the runtime holds of one pod, read through the CRI: its sandboxes and containers
//! (kubelet's kubecontainer.PodStatus). Every sync starts from this, never from memory.

use std::collections::HashMap;

use cri_proto::v1 as cri;

use super::labels;
use crate::cri::CriError;
use crate::kubelet::Runtime;

/// One container as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub state: State,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    pub image_id: String,
    pub restart_count: i32,
    pub hash: String,
    pub annotations: HashMap<String, String>,
    pub mounts: Vec<cri::Mount>,
}

/// A container's state, as the CRI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

impl State {
    fn from_cri(s: i32) -> State {
        match cri::ContainerState::try_from(s) {
            Ok(cri::ContainerState::ContainerCreated) => State::Created,
            Ok(cri::ContainerState::ContainerRunning) => State::Running,
            Ok(cri::ContainerState::ContainerExited) => State::Exited,
            _ => State::Unknown,
        }
    }
}

/// One sandbox of the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxStatus {
    pub id: String,
    pub ready: bool,
    pub attempt: u32,
    pub created_at: i64,
    pub ips: Vec<String>,
    pub host_network: bool,
}

/// Everything the runtime holds of one pod; sandboxes and containers newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodStatus {
    pub sandboxes: Vec<SandboxStatus>,
    pub containers: Vec<ContainerStatus>,
}

impl PodStatus {
    /// The newest container of that name.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Every container of that name, newest first.
    pub fn all_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContainerStatus> {
        self.containers.iter().filter(move |c| c.name == name)
    }

    /// The pod's IPs: those of its newest ready sandbox.
    pub fn ips(&self) -> Vec<String> {
        self.sandboxes
            .iter()
            .find(|s| s.ready)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    }
}

fn by_uid(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}

/// Reads one pod's sandboxes and containers from the runtime.
pub async fn pod_status(rt: &Runtime, uid: &str) -> Result<PodStatus, CriError> {
    let sandboxes = rt
        .pods
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: by_uid(uid),
                ..Default::default()
            }),
        })
        .await?
        .items;
    let mut out = PodStatus::default();
    for sb in sandboxes {
        let st = match rt
            .pods
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sb.id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.status.unwrap_or_default(),
            // Gone between the list and the status: it is simply not there.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let net = st.network.clone().unwrap_or_default();
        let mut ips = vec![];
        if !net.ip.is_empty() {
            ips.push(net.ip.clone());
        }
        ips.extend(net.additional_ips.iter().map(|i| i.ip.clone()));
        let host_network = st
            .linux
            .as_ref()
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.as_ref())
            .is_some_and(|o| o.network == cri::NamespaceMode::Node as i32);
        out.sandboxes.push(SandboxStatus {
            id: st.id,
            ready: st.state == cri::PodSandboxState::SandboxReady as i32,
            attempt: st.metadata.map(|m| m.attempt).unwrap_or(0),
            created_at: st.created_at,
            ips,
            host_network,
        });
    }
    out.sandboxes
        .sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let containers = rt
        .pods
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: by_uid(uid),
                ..Default::default()
            }),
        })
        .await?
        .containers;
    for c in containers {
        let st = match rt
            .pods
            .container_status(cri::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.status.unwrap_or_default(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let log_path = st.log_path.clone();
        let mut c = from_cri(st);
        if c.state == State::Exited && c.message.is_empty() {
            c.message = termination_message(&c, &log_path);
        }
        out.containers.push(c);
    }
    out.containers
        .sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(out)
}

/// A CRI container status as the kubelet reads it.
pub fn from_cri(st: cri::ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: st
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .or_else(|| st.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default(),
        restart_count: labels::restart_count(&st.annotations),
        hash: st
            .annotations
            .get(labels::CONTAINER_HASH)
            .cloned()
            .unwrap_or_default(),
        state: State::from_cri(st.state),
        id: st.id,
        created_at: st.created_at,
        started_at: st.started_at,
        finished_at: st.finished_at,
        exit_code: st.exit_code,
        reason: st.reason,
        message: st.message,
        image: st.image.map(|i| i.image).unwrap_or_default(),
        image_ref: st.image_ref,
        image_id: st.image_id,
        annotations: st.annotations,
        mounts: st.mounts,
    }
}

/// kubelet's limits on a termination message: 4096 bytes from the file, the last 80
/// lines (at most 2048 bytes) of the log.
const MAX_MESSAGE_FILE: usize = 4096;
const MAX_LOG_LINES: usize = 80;
const MAX_LOG_BYTES: usize = 2048;

/// An exited container's termination message, as kubelet reads it: the file mounted at
/// its terminationMessagePath, or with FallbackToLogsOnError and a failure, its log's end.
fn termination_message(c: &ContainerStatus, log_path: &str) -> String {
    let path = c
        .annotations
        .get(labels::TERMINATION_MESSAGE_PATH)
        .map(String::as_str)
        .unwrap_or("/dev/termination-log");
    let from_file = c
        .mounts
        .iter()
        .find(|m| m.container_path == path)
        .and_then(|m| std::fs::read(&m.host_path).ok())
        .map(|mut b| {
            b.truncate(MAX_MESSAGE_FILE);
            String::from_utf8_lossy(&b).into_owned()
        })
        .unwrap_or_default();
    let fallback = c
        .annotations
        .get(labels::TERMINATION_MESSAGE_POLICY)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if !from_file.is_empty() || !fallback || c.exit_code == 0 || log_path.is_empty() {
        return from_file;
    }
    let Ok(log) = std::fs::read_to_string(log_path) else {
        return String::new();
    };
    // CRI log lines are `<time> <stream> <tag> <text>`.
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default())
        .collect();
    let tail = lines[lines.len().saturating_sub(MAX_LOG_LINES)..].join("\n");
    let start = tail.len().saturating_sub(MAX_LOG_BYTES);
    let start = (start..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(0);
    tail[start..].to_string()
}
