//! The pod cgroups, named as kubelet's cgroupfs driver names them, below
//! `<cgroup-root>/kubepods`:
//!
//! ```text
//! <root>/kubepods                      node allocatable (cpu shares, memory limit)
//! <root>/kubepods/pod<uid>             Guaranteed pods
//! <root>/kubepods/burstable            shares = the burstable pods' cpu requests
//! <root>/kubepods/burstable/pod<uid>
//! <root>/kubepods/besteffort           2 shares
//! <root>/kubepods/besteffort/pod<uid>
//! ```
//!
//! Each pod cgroup carries the pod-level limits of ResourceConfigForPod; the runtime makes
//! the containers' cgroups below it (the CRI `cgroup_parent`). Writes go through
//! [`crate::cgroups`] (a plan of file writes, then apply), so v1 and v2 share this code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxPids, LinuxResources};

use super::CmError;
use super::helpers::{
    MIN_SHARES, ResourceConfig, burstable_shares, milli_cpu_to_shares, resource_config_for_pod,
};
use super::qos::{QosClass, pod_requests, qos_class};
use super::quantity::Amount;
use crate::cgroups::{Cgroup, Layout, plan};

const KUBEPODS: &str = "kubepods";
const BURSTABLE: &str = "burstable";
const BESTEFFORT: &str = "besteffort";
/// kubelet's prefix of a pod cgroup's name (GetPodCgroupNameSuffix).
const POD_PREFIX: &str = "pod";

/// The kubelet's cgroups on one host (cgroupfs driver).
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: Layout,
    /// `--cgroup-root`, relative to each hierarchy's root.
    root: PathBuf,
    /// `--pod-max-pids` (kubelet's podPidsLimit); 0 and below set none.
    pod_pids_limit: i64,
    /// Node allocatable cpu (millis) and memory (bytes) for the kubepods cgroup.
    allocatable: Option<(i64, i64)>,
    /// The huge page sizes the host offers (`2MB`, ...): the pod cgroup limits each to
    /// what the pod requests, 0 when none.
    hugepage_sizes: Vec<String>,
}

impl CgroupManager {
    /// A manager for the hierarchies of `layout`, with kubepods below `cgroup_root`
    /// (`/` on a node).
    pub fn new(layout: Layout, cgroup_root: PathBuf) -> Self {
        Self {
            layout,
            root: cgroup_root,
            pod_pids_limit: -1,
            allocatable: None,
            hugepage_sizes: vec![],
        }
    }

    /// Every pod cgroup limited to `limit` processes (kubelet's `--pod-max-pids`).
    pub fn with_pod_pids_limit(mut self, limit: i64) -> Self {
        self.pod_pids_limit = limit;
        self
    }

    /// The kubepods cgroup given the node's allocatable cpu (millis) and memory (bytes),
    /// as kubelet enforces node allocatable for pods.
    pub fn with_node_allocatable(mut self, cpu_millis: i64, memory: i64) -> Self {
        self.allocatable = Some((cpu_millis, memory));
        self
    }

    /// The host's huge page sizes ([`super::hugepage_sizes`]).
    pub fn with_hugepage_sizes(mut self, sizes: Vec<String>) -> Self {
        self.hugepage_sizes = sizes;
        self
    }

    /// `<root>/kubepods` as a cgroupfs path (leading `/`).
    fn kubepods(&self) -> PathBuf {
        Path::new("/")
            .join(self.root.strip_prefix("/").unwrap_or(&self.root))
            .join(KUBEPODS)
    }

    /// The QoS tier's cgroup a pod of `class` goes below.
    fn tier(&self, class: QosClass) -> PathBuf {
        match class {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => self.kubepods().join(BURSTABLE),
            QosClass::BestEffort => self.kubepods().join(BESTEFFORT),
        }
    }

    /// The pod's cgroup as the CRI `cgroup_parent` names it, e.g.
    /// `/kubepods/burstable/pod<uid>`.
    pub fn pod_cgroup_name(&self, pod: &Pod) -> String {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.tier(qos_class(pod))
            .join(format!("{POD_PREFIX}{uid}"))
            .to_string_lossy()
            .into_owned()
    }

    fn write(&self, path: &Path, r: &LinuxResources) -> Result<(), crate::cgroups::CgroupError> {
        let cg = Cgroup::at(&self.layout, path)?;
        cg.create()?;
        cg.apply(&plan(&self.layout, r)?)
    }

    /// Creates kubepods, burstable and besteffort (idempotent): kubepods with the node's
    /// allocatable when given, besteffort with 2 cpu shares.
    pub fn ensure_qos_hierarchy(&self) -> Result<(), CmError> {
        let qos = |path: PathBuf| {
            move |source| CmError::Qos {
                cgroup: path.to_string_lossy().into_owned(),
                source,
            }
        };
        let mut top = ResourceConfig::default();
        if let Some((cpu, memory)) = self.allocatable {
            top.cpu_shares = Some(milli_cpu_to_shares(cpu));
            top.memory = Some(memory);
        }
        let kubepods = self.kubepods();
        self.write(&kubepods, &to_oci(&top, &[]))
            .map_err(qos(kubepods))?;
        let burstable = self.tier(QosClass::Burstable);
        self.write(&burstable, &LinuxResources::default())
            .map_err(qos(burstable))?;
        self.set_besteffort()
    }

    fn set_besteffort(&self) -> Result<(), CmError> {
        let besteffort = self.tier(QosClass::BestEffort);
        let cfg = ResourceConfig {
            cpu_shares: Some(MIN_SHARES),
            ..Default::default()
        };
        self.write(&besteffort, &to_oci(&cfg, &[]))
            .map_err(|source| CmError::Qos {
                cgroup: besteffort.to_string_lossy().into_owned(),
                source,
            })
    }

    /// UpdateQOSCgroups: the burstable tier's shares from the cpu requests of the
    /// Burstable pods among `active` (every pod that may still run); besteffort stays at 2.
    pub fn update_qos_cgroups(&self, active: &[&Pod]) -> Result<(), CmError> {
        let burstable = self.tier(QosClass::Burstable);
        let cfg = ResourceConfig {
            cpu_shares: Some(burstable_shares(active)),
            ..Default::default()
        };
        self.write(&burstable, &to_oci(&cfg, &[]))
            .map_err(|source| CmError::Qos {
                cgroup: burstable.to_string_lossy().into_owned(),
                source,
            })?;
        self.set_besteffort()
    }

    /// Creates the pod's cgroup with its pod-level limits (applied again when it exists,
    /// which changes nothing unless the pod's resources did); answers the CRI
    /// `cgroup_parent` for its sandbox.
    pub fn ensure_pod(&self, pod: &Pod) -> Result<String, CmError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        check_uid(uid).map_err(|reason| CmError::Uid {
            pod: pod_name(pod),
            reason,
        })?;
        let name = self.pod_cgroup_name(pod);
        let mut cfg = resource_config_for_pod(pod);
        if self.pod_pids_limit > 0 {
            cfg.pids_limit = Some(self.pod_pids_limit);
        }
        let reqs = pod_requests(pod, true);
        let huge: Vec<(String, i64)> = self
            .hugepage_sizes
            .iter()
            .map(|size| {
                let want = reqs
                    .iter()
                    .find(|(k, _)| hugepage_resource_size(k).as_deref() == Some(size.as_str()))
                    .map_or(0, |(_, v)| v.value());
                (size.clone(), want)
            })
            .collect();
        self.write(Path::new(&name), &to_oci(&cfg, &huge))
            .map_err(|source| CmError::Pod {
                pod: pod_name(pod),
                cgroup: name.clone(),
                source,
            })?;
        Ok(name)
    }

    /// The pod's cgroup in whichever tier it is, processes still in it killed, and its
    /// sub-cgroups (containers the runtime left) removed with it. Every tier is tried;
    /// the first error is answered.
    pub fn destroy_pod(&self, uid: &str) -> Result<(), CmError> {
        check_uid(uid).map_err(|reason| CmError::Uid {
            pod: format!("uid {uid:?}"),
            reason,
        })?;
        let mut first = None;
        for class in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = self.tier(class).join(format!("{POD_PREFIX}{uid}"));
            let r = Cgroup::at(&self.layout, &path).and_then(|cg| {
                if cg.unique_dirs().iter().any(|d| d.exists()) {
                    cg.remove(true)
                } else {
                    Ok(())
                }
            });
            if let Err(source) = r {
                tracing::warn!(pod_uid = uid, cgroup = %path.display(), error = %source,
                    "remove pod cgroup");
                first.get_or_insert(CmError::Pod {
                    pod: format!("uid {uid}"),
                    cgroup: path.to_string_lossy().into_owned(),
                    source,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The UIDs of the pod cgroups that exist in any hierarchy (for orphan cleanup).
    pub fn pod_uids(&self) -> Result<Vec<String>, CmError> {
        let mut uids = BTreeSet::new();
        let tiers = [
            self.tier(QosClass::Guaranteed),
            self.tier(QosClass::Burstable),
            self.tier(QosClass::BestEffort),
        ];
        for h in &self.layout.hierarchies {
            for t in &tiers {
                let dir = h.mount.join(t.strip_prefix("/").unwrap_or(t));
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(CmError::List { dir, source }),
                };
                for e in rd.flatten() {
                    if !e.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    if let Some(uid) = e
                        .file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix(POD_PREFIX))
                        && !uid.is_empty()
                    {
                        uids.insert(uid.to_string());
                    }
                }
            }
        }
        Ok(uids.into_iter().collect())
    }
}

/// A UID names one directory: not empty, no `/`, not `.` or `..`.
fn check_uid(uid: &str) -> Result<(), &'static str> {
    if uid.is_empty() {
        return Err("metadata.uid is empty");
    }
    if uid.contains('/') || uid == "." || uid == ".." {
        return Err("metadata.uid is not a single path component");
    }
    Ok(())
}

/// `namespace/name` of a pod, for errors.
fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The page size name of a `hugepages-<size>` resource (`hugepages-2Mi` -> `2MB`).
fn hugepage_resource_size(resource: &str) -> Option<String> {
    let bytes = Amount::parse(resource.strip_prefix("hugepages-")?)?.value();
    super::container::unit_size(u64::try_from(bytes).ok()?)
}

/// kubelet's ResourceConfig as the OCI resources [`plan`] takes (what libcontainer is
/// given for a cgroup it manages).
fn to_oci(cfg: &ResourceConfig, hugepages: &[(String, i64)]) -> LinuxResources {
    let mut r = LinuxResources::default();
    if cfg.cpu_shares.is_some() || cfg.cpu_quota.is_some() || cfg.cpu_period.is_some() {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(cfg.cpu_shares);
        cpu.set_quota(cfg.cpu_quota);
        cpu.set_period(cfg.cpu_period);
        r.set_cpu(Some(cpu));
    }
    if let Some(m) = cfg.memory {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(m));
        r.set_memory(Some(mem));
    }
    if let Some(p) = cfg.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    if !hugepages.is_empty() {
        r.set_hugepage_limits(Some(
            hugepages
                .iter()
                .map(|(size, limit)| {
                    let mut h = LinuxHugepageLimit::default();
                    h.set_page_size(size.clone());
                    h.set_limit(*limit);
                    h
                })
                .collect(),
        ));
    }
    r
}

#[cfg(test)]
#[path = "cgroup_manager_tests.rs"]
mod tests;
