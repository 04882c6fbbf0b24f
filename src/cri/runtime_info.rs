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
                // One handler, the default (""), as kubelet reads it: berth's runtime does
                // not make recursive read-only mounts or user-namespaced pods (both are
                // refused at CreateContainer/RunPodSandbox), and applies the Strict
                // supplemental groups policy.
                runtime_handlers: vec![cri::RuntimeHandler {
                    name: String::new(),
                    features: Some(cri::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: false,
                        user_namespaces: false,
                    }),
                }],
                features: Some(cri::RuntimeFeatures {
                    supplemental_groups_policy: true,
                    user_namespaces_host_network: false,
                }),
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

    fn update_runtime_config(
        &self,
        req: cri::UpdateRuntimeConfigRequest,
    ) -> CriFuture<'_, cri::UpdateRuntimeConfigResponse> {
        Box::pin(async move {
            let cidrs = req
                .runtime_config
                .and_then(|c| c.network_config)
                .map(|n| n.pod_cidr)
                .unwrap_or_default();
            let parsed = pod_cidrs(&cidrs).map_err(|reason| {
                super::error::CriError::invalid(
                    "UpdateRuntimeConfig",
                    "runtime_config.network_config.pod_cidr",
                    reason,
                )
            })?;
            if !parsed.is_empty() {
                tracing::info!(
                    pod_cidr = %cidrs,
                    "node pod CIDRs received; berth writes no CNI config from them, the \
                     network config in the CNI conf dir is used as it is"
                );
            }
            Ok(cri::UpdateRuntimeConfigResponse {})
        })
    }
}

/// Parses kubelet's comma-separated pod CIDRs (`10.244.1.0/24,fd00:1::/64`); empty: none.
fn pod_cidrs(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .map_err(|e| format!("{c:?} is not a CIDR: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs_parse_as_kubelet_sends_them() {
        assert!(pod_cidrs("").unwrap().is_empty());
        let v = pod_cidrs("10.244.1.0/24, fd00:1::/64").unwrap();
        assert_eq!(v.len(), 2);
        let e = pod_cidrs("10.244.1.0/24,10.244.300.0/24").unwrap_err();
        assert!(e.contains("10.244.300.0/24"), "{e}");
        assert!(pod_cidrs("10.0.0.1").is_err());
    }

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
