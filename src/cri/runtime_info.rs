//! The RuntimeService calls that describe the runtime rather than act on pods: Version,
//! Status (RuntimeReady, and NetworkReady from the CNI configuration) and RuntimeConfig
//! (the cgroup driver). Answers are shaped as containerd's CRI plugin gives them.

use std::collections::HashMap;
use std::path::PathBuf;

use cri_proto::v1 as cri;

use super::api::{CriFuture, RuntimeApi};
use crate::net::cni::NetworkList;

/// The runtime's name on the CRI.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The `version` field of VersionResponse: the kubelet runtime API version, "0.1.0" for
/// every CRI v1 runtime.
pub const KUBE_API_VERSION: &str = "0.1.0";
/// The condition reason when no usable CNI configuration exists (containerd's word).
pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// Answers Version, Status and RuntimeConfig.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// The CNI configuration directory whose first valid list is the pod network.
    pub cni_conf_dir: PathBuf,
}

impl RuntimeInfo {
    fn network_condition(&self) -> (cri::RuntimeCondition, Result<NetworkList, String>) {
        let loaded = NetworkList::load_dir(&self.cni_conf_dir).map_err(|e| e.to_string());
        let cond = match &loaded {
            Ok(_) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: NETWORK_NOT_READY_REASON.into(),
                message: format!("Network plugin returns error: {e}"),
            },
        };
        (cond, loaded)
    }
}

impl RuntimeApi for RuntimeInfo {
    fn version(&self, _req: cri::VersionRequest) -> CriFuture<'_, cri::VersionResponse> {
        Box::pin(async move {
            Ok(cri::VersionResponse {
                version: KUBE_API_VERSION.into(),
                runtime_name: RUNTIME_NAME.into(),
                runtime_version: crate::version::VERSION.into(),
                runtime_api_version: RUNTIME_API_VERSION.into(),
            })
        })
    }

    fn status(&self, req: cri::StatusRequest) -> CriFuture<'_, cri::StatusResponse> {
        Box::pin(async move {
            let this = self.clone();
            // Reading the conf dir is file IO: off the async threads.
            let (network, loaded) = tokio::task::spawn_blocking(move || this.network_condition())
                .await
                .map_err(|e| super::error::CriError::Internal {
                    rpc: "Status",
                    what: "read the CNI configuration".into(),
                    reason: e.to_string(),
                })?;
            let runtime = cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                ..Default::default()
            };
            let mut info = HashMap::new();
            if req.verbose {
                let cni = match &loaded {
                    Ok(l) => serde_json::json!({
                        "confDir": self.cni_conf_dir,
                        "path": l.path,
                        "name": l.name,
                        "cniVersion": l.cni_version,
                        "plugins": l.plugins,
                    }),
                    Err(e) => serde_json::json!({
                        "confDir": self.cni_conf_dir,
                        "error": e,
                    }),
                };
                info.insert("cniconfig".to_string(), cni.to_string());
                info.insert(
                    "lastCNILoadStatus".to_string(),
                    match &loaded {
                        Ok(_) => "OK".to_string(),
                        Err(e) => e.clone(),
                    },
                );
            }
            Ok(cri::StatusResponse {
                status: Some(cri::RuntimeStatus {
                    conditions: vec![runtime, network],
                }),
                info,
                runtime_handlers: Vec::new(),
                features: None,
            })
        })
    }

    fn runtime_config(
        &self,
        _req: cri::RuntimeConfigRequest,
    ) -> CriFuture<'_, cri::RuntimeConfigResponse> {
        Box::pin(async move {
            Ok(cri::RuntimeConfigResponse {
                linux: Some(cri::LinuxRuntimeConfiguration {
                    cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
                }),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn network_ready_follows_the_cni_conf_dir() {
        let dir = std::env::temp_dir().join(format!("berth-unit-cristatus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let info = RuntimeInfo {
            cni_conf_dir: dir.clone(),
        };
        let net = |s: &cri::StatusResponse| {
            s.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.r#type == "NetworkReady"))
                .cloned()
                .expect("NetworkReady condition")
        };
        let s = info
            .status(cri::StatusRequest { verbose: false })
            .await
            .expect("status");
        let c = net(&s);
        assert!(!c.status);
        assert_eq!(c.reason, NETWORK_NOT_READY_REASON);
        assert!(
            c.message.starts_with("Network plugin returns error: "),
            "{}",
            c.message
        );
        std::fs::write(
            dir.join("10-x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"berth-bridge"}]}"#,
        )
        .expect("conflist");
        let s = info
            .status(cri::StatusRequest { verbose: true })
            .await
            .expect("status");
        assert!(net(&s).status);
        assert_eq!(s.info["lastCNILoadStatus"], "OK");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
