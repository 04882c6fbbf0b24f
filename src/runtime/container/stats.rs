//! ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats: read from
//! the cgroup files the moment they are asked for (see [`crate::runtime::stats`]).

use std::path::Path;

use cri_proto::v1::{
    ContainerAttributes, ContainerStats, ContainerStatsFilter, LinuxPodSandboxStats,
    PodSandboxAttributes, PodSandboxStats, PodSandboxStatsFilter,
};

use super::Containers;
use crate::cgroups::{Cgroup, Layout};
use crate::runtime::error::{Result, RuntimeError};
use crate::runtime::holder::{PodDir, now_ns};
use crate::runtime::meta::{ContainerRecord, stats_matches};
use crate::runtime::stats::{
    CpuSampler, memory_usage, network_usage, process_usage, read_cgroup, read_net_dev, swap_usage,
};

impl Containers {
    /// The container's cgroup, as its OCI state (kept by the pod's holder) records it.
    pub(super) fn cgroup_of(&self, rec: &ContainerRecord) -> Option<Cgroup> {
        self.oci_state_of(rec)?.cgroup
    }

    /// The container's OCI state (its init's pid, its cgroup), kept by the pod's holder.
    pub(super) fn oci_state_of(&self, rec: &ContainerRecord) -> Option<crate::oci::state::State> {
        let pod = PodDir::new(self.inner.sandboxes.state_dir(), &rec.sandbox_id).ok()?;
        crate::oci::state::Root::new(pod.oci_root())
            .load(&rec.id)
            .ok()
    }

    fn stats_of(&self, rec: &ContainerRecord, sampler: &CpuSampler) -> Result<ContainerStats> {
        let cfg = rec.config().map_err(RuntimeError::Internal)?;
        let attributes = Some(ContainerAttributes {
            id: rec.id.clone(),
            metadata: cfg.metadata.clone(),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
        });
        let mut out = ContainerStats {
            attributes,
            ..Default::default()
        };
        // A container that has exited has no cgroup left: it reports no usage.
        let Some(cg) = self.cgroup_of(rec) else {
            return Ok(out);
        };
        let raw = read_cgroup(&cg).map_err(|e| RuntimeError::Internal(e.to_string()))?;
        let t = now_ns();
        out.cpu = raw.cpu_usage_ns.map(|u| sampler.sample(&rec.id, t, u));
        out.memory = raw.memory.as_ref().map(|m| memory_usage(t, m));
        out.swap = raw.memory.as_ref().and_then(|m| swap_usage(t, m));
        Ok(out)
    }

    /// ContainerStats.
    pub fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let rec = self.get(id)?;
        self.stats_of(&rec, &self.inner.sampler)
    }

    /// ListContainerStats.
    pub fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Vec<ContainerStats> {
        let mut f = filter.unwrap_or_default();
        if !f.id.is_empty()
            && let Ok(r) = self.get(&f.id)
        {
            f.id = r.id;
        }
        if !f.pod_sandbox_id.is_empty()
            && let Ok(full) = self.inner.sandboxes.resolve(&f.pod_sandbox_id)
        {
            f.pod_sandbox_id = full;
        }
        self.all()
            .iter()
            .filter(|r| {
                let labels = r.config().map(|c| c.labels).unwrap_or_default();
                stats_matches(&f, &r.id, &r.sandbox_id, &labels)
            })
            .filter_map(|r| self.stats_of(r, &self.inner.sampler).ok())
            .collect()
    }

    /// PodSandboxStats: the pod's cgroup (the kubelet's cgroup parent), its network
    /// namespace's interfaces, and its containers.
    pub fn pod_sandbox_stats(&self, id: &str) -> Result<PodSandboxStats> {
        let sb = self.inner.sandboxes.get(id)?;
        let rec = sb.snapshot();
        let cfg = rec.config().map_err(RuntimeError::Internal)?;
        let t = now_ns();
        let mut linux = LinuxPodSandboxStats::default();
        let parent = cfg
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        if !parent.is_empty()
            && let Ok(cg) = Cgroup::at(&Layout::detect(), Path::new(&parent))
        {
            let raw = read_cgroup(&cg).map_err(|e| RuntimeError::Internal(e.to_string()))?;
            linux.cpu = raw
                .cpu_usage_ns
                .map(|u| self.inner.sampler.sample(&rec.id, t, u));
            linux.memory = raw.memory.as_ref().map(|m| memory_usage(t, m));
            linux.process = raw.pids.map(|n| process_usage(t, n));
        }
        if rec.netns.is_some()
            && rec.holder_pid > 0
            && let Ok(ifaces) = read_net_dev(Path::new("/proc"), rec.holder_pid)
        {
            linux.network = Some(network_usage(t, &ifaces));
        }
        linux.containers = self
            .all()
            .iter()
            .filter(|c| c.sandbox_id == rec.id)
            .filter_map(|c| self.stats_of(c, &self.inner.sampler).ok())
            .collect();
        Ok(PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: rec.id.clone(),
                metadata: cfg.metadata,
                labels: cfg.labels,
                annotations: cfg.annotations,
            }),
            linux: Some(linux),
            windows: None,
        })
    }

    /// ListPodSandboxStats.
    pub fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Vec<PodSandboxStats> {
        let f = filter.unwrap_or_default();
        let id =
            (!f.id.is_empty()).then(|| self.inner.sandboxes.resolve(&f.id).unwrap_or(f.id.clone()));
        self.inner
            .sandboxes
            .list(None)
            .into_iter()
            .filter(|s| id.as_ref().is_none_or(|i| *i == s.id))
            .filter(|s| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| s.labels.get(k) == Some(v))
            })
            .filter_map(|s| self.pod_sandbox_stats(&s.id).ok())
            .collect()
    }
}
