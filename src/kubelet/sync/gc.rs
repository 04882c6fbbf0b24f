//! Removing what a pod no longer needs: older exited containers (the newest two of each
//! name stay: the current one and the one its last state and previous logs come from,
//! as kubelet's MaxPerPodContainer = 1 dead container besides the current one), old
//! sandboxes, and at the end everything of a pod that is gone.

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::{SyncError, Syncer};
use crate::kubelet::kuberuntime::labels;
use crate::kubelet::kuberuntime::status::{PodStatus, State};

impl Syncer {
    /// Keeps the newest exited container of each name (besides running ones) and the
    /// newest sandbox; removes the rest. Errors are logged: the next sync tries again.
    pub(super) async fn collect_garbage(&self, pod: &Pod, status: &PodStatus) {
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for c in &status.containers {
            // Newest first: the newest two of a name stay (the current one and the last
            // state), older dead ones go.
            let n = seen.entry(c.name.as_str()).or_default();
            *n += 1;
            if c.state != State::Exited || *n <= 2 {
                continue;
            }
            if let Err(e) = self.remove_container(&c.id).await {
                tracing::warn!(pod = %labels::full_name(pod), container = %c.name, "remove an old container: {e}");
            }
        }
        for sb in status.sandboxes.iter().skip(1).filter(|s| !s.ready) {
            if let Err(e) = self
                .runtime
                .pods
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await
            {
                tracing::warn!(pod = %labels::full_name(pod), "remove an old sandbox: {e}");
            }
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), crate::cri::CriError> {
        match self
            .runtime
            .pods
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes every container and sandbox of a terminated pod, its volumes and cgroup;
    /// collects every error and keeps going.
    pub async fn remove_pod(&self, pod: &Pod) -> Result<(), SyncError> {
        let uid = labels::uid(pod).to_string();
        let status = self.runtime_status(pod).await?;
        let mut errors = vec![];
        for c in &status.containers {
            if let Err(e) = self.remove_container(&c.id).await {
                errors.push(format!("remove container {}: {e}", c.name));
            }
        }
        for sb in &status.sandboxes {
            if let Err(e) = self
                .runtime
                .pods
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await
                && !e.is_not_found()
            {
                errors.push(format!("remove sandbox {}: {e}", sb.id));
            }
        }
        if let Err(e) = self.volumes.teardown_pod(&uid) {
            errors.push(format!("tear down volumes: {e}"));
        }
        if let Err(e) = self.cgroups.destroy_pod(&uid) {
            errors.push(format!("remove the pod cgroup: {e}"));
        }
        self.probes.remove_pod(&uid);
        self.crash_backoff.forget_prefix(&format!("{uid}/"));
        self.pull_backoff.forget_prefix(&format!("{uid}_"));
        if let Some(t) = &self.tokens {
            t.delete_pod_tokens(&uid);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SyncError::Setup {
                pod: labels::full_name(pod),
                message: errors.join("; "),
            })
        }
    }
}
