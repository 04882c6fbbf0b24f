//! A pod as `berth run -o json` prints it: the API's JSON, read through the few accessors
//! the tests ask with.

use serde_json::Value;

/// A pod as the kubelet printed it (the API's JSON), with accessors for what tests ask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod(pub Value);

impl Pod {
    pub fn phase(&self) -> &str {
        self.0["status"]["phase"].as_str().unwrap_or("")
    }

    pub fn uid(&self) -> &str {
        self.0["metadata"]["uid"].as_str().unwrap_or("")
    }

    /// The status of condition `kind` (`Ready`, `ContainersReady`, `Initialized`,
    /// `PodScheduled`, `PodReadyToStartContainers`): "True", "False" or "" when absent.
    pub fn condition(&self, kind: &str) -> &str {
        self.0["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("")
    }

    pub fn ready(&self) -> bool {
        self.condition("Ready") == "True"
    }

    /// The status of container `name` (containers, then init containers).
    pub fn container(&self, name: &str) -> Option<&Value> {
        ["containerStatuses", "initContainerStatuses"]
            .iter()
            .filter_map(|k| self.0["status"][k].as_array())
            .flatten()
            .find(|c| c["name"] == name)
    }

    pub fn restarts(&self, name: &str) -> i64 {
        self.container(name)
            .and_then(|c| c["restartCount"].as_i64())
            .unwrap_or(0)
    }

    pub fn container_id(&self, name: &str) -> &str {
        self.container(name)
            .and_then(|c| c["containerID"].as_str())
            .unwrap_or("")
    }

    /// `state.waiting.reason` of container `name`, e.g. `CrashLoopBackOff`.
    pub fn waiting_reason(&self, name: &str) -> &str {
        self.container(name)
            .and_then(|c| c["state"]["waiting"]["reason"].as_str())
            .unwrap_or("")
    }

    /// `state.terminated` of container `name`.
    pub fn terminated(&self, name: &str) -> Option<&Value> {
        self.container(name)
            .map(|c| &c["state"]["terminated"])
            .filter(|t| t.is_object())
    }

    pub fn running(&self, name: &str) -> bool {
        self.container(name)
            .is_some_and(|c| c["state"]["running"].is_object())
    }

    /// Printed once more after the pod is gone, with `metadata.deletionTimestamp` set (as a
    /// watch shows a deletion).
    pub fn deleted(&self) -> bool {
        self.0["metadata"]["deletionTimestamp"].is_string()
    }

    /// `status.podIP`.
    pub fn ip(&self) -> &str {
        self.0["status"]["podIP"].as_str().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_accessors_read_the_api_shape() {
        let p = Pod(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-node1", "uid": "u1"},
            "status": {
                "phase": "Running", "podIP": "10.244.50.2",
                "conditions": [{"type": "Ready", "status": "False"},
                               {"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "init", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                "containerStatuses": [{"name": "c", "restartCount": 2,
                    "containerID": "containerd://abc",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
            },
        }));
        assert_eq!(p.phase(), "Running");
        assert_eq!(p.uid(), "u1");
        assert!(!p.ready());
        assert_eq!(p.condition("Initialized"), "True");
        assert_eq!(p.condition("ContainersReady"), "");
        assert_eq!(p.restarts("c"), 2);
        assert_eq!(p.container_id("c"), "containerd://abc");
        assert_eq!(p.waiting_reason("c"), "CrashLoopBackOff");
        assert!(p.terminated("c").is_none() && !p.running("c"));
        assert_eq!(
            p.terminated("init").map(|t| &t["reason"]),
            Some(&serde_json::json!("Completed"))
        );
        assert_eq!(p.ip(), "10.244.50.2");
        assert!(!p.deleted());
    }
}
