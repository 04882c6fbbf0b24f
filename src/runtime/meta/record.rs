//! The records kept per sandbox and per container: what the kubelet asked for (the CRI
//! config, kept as its protobuf encoding, which is stable across versions) and what berth
//! made for it. What changes while a container runs (pid, exit code, times) is recorded
//! by the pod's holder, not here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use serde::{Deserialize, Serialize};

use cri_proto::v1::{ContainerConfig, PodSandboxConfig};

/// How far creating an object got. A record is written `Creating` before the first side
/// effect, so a restart after a crash mid-way knows to undo what was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Creating,
    Ready,
    Stopped,
}

/// One pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// The CRI name (see [`super::sandbox_name`]).
    pub name: String,
    pub phase: Phase,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    pub runtime_handler: String,
    /// The network namespace file CNI was given; `None` for host-network pods.
    pub netns: Option<String>,
    /// Pod IPs from CNI, the primary first.
    pub ips: Vec<String>,
    /// The holder process, with its start time (clock ticks) so a reused pid is not taken
    /// for it.
    pub holder_pid: i32,
    pub holder_start: u64,
    /// `PodSandboxConfig`, protobuf-encoded, base64.
    config: String,
}

impl SandboxRecord {
    pub fn new(id: String, name: String, created_at: i64, config: &PodSandboxConfig) -> Self {
        Self {
            id,
            name,
            phase: Phase::Creating,
            created_at,
            runtime_handler: String::new(),
            netns: None,
            ips: vec![],
            holder_pid: 0,
            holder_start: 0,
            config: B64.encode(config.encode_to_vec()),
        }
    }

    /// The config the sandbox was created from.
    pub fn config(&self) -> Result<PodSandboxConfig, String> {
        decode(&self.config)
    }
}

/// One container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    /// The CRI name (see [`super::container_name`]).
    pub name: String,
    pub phase: Phase,
    pub created_at: i64,
    /// The image as the kubelet named it, and the image id it resolved to.
    pub image: String,
    pub image_id: String,
    /// Absolute path of the CRI log file ("" when the kubelet gave none).
    pub log_path: String,
    /// Who the process runs as, from the spec it was created with (ContainerStatus's
    /// user); `None` until the spec is built, and in records of older berth versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ProcessUser>,
    /// `ContainerConfig`, protobuf-encoded, base64.
    config: String,
}

/// The effective identity of a container's process: uid, primary gid and every
/// supplementary gid it holds (image group memberships merged with the requested ones,
/// or only the requested ones under the Strict policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl ContainerRecord {
    pub fn new(
        id: String,
        sandbox_id: String,
        name: String,
        created_at: i64,
        config: &ContainerConfig,
    ) -> Self {
        Self {
            id,
            sandbox_id,
            name,
            phase: Phase::Creating,
            created_at,
            image: config
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_id: String::new(),
            log_path: String::new(),
            user: None,
            config: B64.encode(config.encode_to_vec()),
        }
    }

    /// The config the container was created from (with later resource updates).
    pub fn config(&self) -> Result<ContainerConfig, String> {
        decode(&self.config)
    }

    /// Replaces the recorded config (UpdateContainerResources keeps the new limits here).
    pub fn set_config(&mut self, config: &ContainerConfig) {
        self.config = B64.encode(config.encode_to_vec());
    }
}

fn decode<M: Message + Default>(b64: &str) -> Result<M, String> {
    let bytes = B64
        .decode(b64)
        .map_err(|e| format!("config is not base64: {e}"))?;
    M::decode(bytes.as_slice()).map_err(|e| format!("config does not decode: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cri_proto::v1::{ContainerMetadata, ImageSpec, PodSandboxMetadata};

    #[test]
    fn configs_round_trip_through_json() {
        let cfg = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                ..Default::default()
            }),
            hostname: "web".into(),
            ..Default::default()
        };
        let r = SandboxRecord::new("s1".into(), "web___0".into(), 5, &cfg);
        let back: SandboxRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.config().unwrap(), cfg);
        assert_eq!(back.phase, Phase::Creating);

        let cc = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            }),
            image: Some(ImageSpec {
                image: "busybox:latest".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = ContainerRecord::new("c1".into(), "s1".into(), "app_web___1".into(), 6, &cc);
        assert_eq!(c.image, "busybox:latest");
        assert_eq!(c.config().unwrap(), cc);
    }

    // ContainerStatus.user survives a restart; a record written before it was kept reads
    // back without one.
    #[test]
    fn process_user_round_trips_and_may_be_absent() {
        let mut c = ContainerRecord::new(
            "c1".into(),
            "s1".into(),
            "n".into(),
            1,
            &ContainerConfig::default(),
        );
        let old = serde_json::to_value(&c).unwrap();
        assert!(old.get("user").is_none(), "{old}");
        let back: ContainerRecord = serde_json::from_value(old).unwrap();
        assert_eq!(back.user, None);
        c.user = Some(ProcessUser {
            uid: 1000,
            gid: 3000,
            groups: vec![3000, 4000, 50000],
        });
        let back: ContainerRecord =
            serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_damaged_config_is_an_error_not_a_panic() {
        let mut r = SandboxRecord::new("s1".into(), "n".into(), 1, &PodSandboxConfig::default());
        r.config = "!!!".into();
        assert!(r.config().is_err());
        r.config = B64.encode([0xff, 0xff, 0xff]);
        assert!(r.config().is_err());
    }
}
