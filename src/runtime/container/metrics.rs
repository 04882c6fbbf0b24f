//! ListPodSandboxMetrics' reading: every ready pod with its containers, each container's
//! cgroup read once ([`crate::runtime::stats::read_detail`]), its processes' descriptors,
//! its writable layer, and the pod's interfaces.

use std::collections::HashSet;
use std::path::PathBuf;

use cri_proto::v1::{PodSandboxFilter, PodSandboxState, PodSandboxStateValue};

use super::Containers;
use crate::runtime::holder::now_ns;
use crate::runtime::meta::ContainerRecord;
use crate::runtime::stats::{
    ContainerIdentity, ContainerSample, PodSample, Sources, read_container, read_net_dev,
};

impl Containers {
    /// A reading of every ready pod. A container whose files cannot be read is logged
    /// and left out; the others are still reported.
    pub fn pod_samples(&self, src: &Sources) -> Vec<PodSample> {
        let ready = PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        let all = self.all();
        let pods: Vec<PodSample> = self
            .inner
            .sandboxes
            .list(Some(ready))
            .into_iter()
            .filter_map(|p| {
                let sb = self.inner.sandboxes.get(&p.id).ok()?;
                let rec = sb.snapshot();
                let cfg = rec.config().ok()?;
                let meta = cfg.metadata.clone().unwrap_or_default();
                let mut pod = PodSample {
                    id: rec.id.clone(),
                    name: meta.name,
                    namespace: meta.namespace,
                    cgroup_path: cfg
                        .linux
                        .as_ref()
                        .map(|l| l.cgroup_parent.clone())
                        .unwrap_or_default(),
                    timestamp: now_ns(),
                    ..Default::default()
                };
                if rec.netns.is_some()
                    && rec.holder_pid > 0
                    && let Ok(ifaces) = read_net_dev(&src.proc_root, rec.holder_pid)
                {
                    pod.interfaces = ifaces.into_iter().filter(|i| i.name != "lo").collect();
                }
                pod.containers = all
                    .iter()
                    .filter(|c| c.sandbox_id == rec.id)
                    .filter_map(|c| self.sample_of(c, src))
                    .collect();
                Some(pod)
            })
            .collect();
        // Layers of removed containers are forgotten.
        let live: HashSet<PathBuf> = all
            .iter()
            .filter_map(|c| self.inner.images.rootfs_upper(&c.id).ok())
            .collect();
        self.inner.layers.retain(&live);
        pods
    }

    fn sample_of(&self, rec: &ContainerRecord, src: &Sources) -> Option<ContainerSample> {
        let cfg = rec.config().ok()?;
        let who = ContainerIdentity {
            id: rec.id.clone(),
            name: cfg.metadata.map(|m| m.name).unwrap_or_default(),
            image: rec.image.clone(),
            created_at: rec.created_at,
        };
        let state = self.oci_state_of(rec);
        // An exited container keeps its state but no longer its cgroup or processes.
        let running = state
            .as_ref()
            .is_some_and(|s| s.status() != crate::oci::state::Status::Stopped);
        let cgroup = state
            .as_ref()
            .and_then(|s| s.cgroup.clone())
            .filter(|_| running);
        let upper = self.inner.images.rootfs_upper(&rec.id).ok();
        match read_container(
            who,
            cgroup.as_ref(),
            state.as_ref().map(|s| s.pid),
            upper.as_deref(),
            src,
            &self.inner.layers,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(container = %rec.id, error = %e, "metrics");
                None
            }
        }
    }
}
