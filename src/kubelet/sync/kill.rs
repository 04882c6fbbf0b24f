//! Killing containers and pods (kuberuntime_container.go killContainer,
//! killPodWithSyncResult): the grace period as upstream sets it (deletion grace, else
//! terminationGracePeriodSeconds, a probe's own on a probe kill, a shorter override),
//! the preStop hook within it, at least 2 s left for the stop itself; regular containers
//! together, then sidecars in reverse order, then the sandbox.

use std::time::Instant;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use super::{SyncError, Syncer};
use crate::kubelet::events::EventKind;
use crate::kubelet::kuberuntime::actions::is_sidecar;
use crate::kubelet::kuberuntime::labels;
use crate::kubelet::kuberuntime::status::{ContainerStatus, PodStatus, State};

/// kubelet's minimumGracePeriodInSeconds.
const MIN_GRACE: i64 = 2;

fn spec_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// The grace period of a kill, before the preStop hook takes its share.
pub fn grace_period(
    pod: &Pod,
    c: &ContainerStatus,
    probe_grace: Option<i64>,
    over: Option<i64>,
) -> i64 {
    let from_annotation = |k: &str| c.annotations.get(k).and_then(|v| v.parse::<i64>().ok());
    let mut g = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .or_else(|| from_annotation(labels::POD_DELETION_GRACE))
        .or_else(|| from_annotation(labels::POD_TERMINATION_GRACE))
        .unwrap_or(30);
    if let Some(p) = probe_grace {
        g = p;
    }
    if let Some(o) = over {
        g = g.min(o);
    }
    g
}

impl Syncer {
    /// Stops one container: preStop, then StopContainer with what is left of the grace.
    pub(crate) async fn kill_container(
        &self,
        pod: &Pod,
        c: &ContainerStatus,
        probe_grace: Option<i64>,
        pod_ips: &[String],
    ) -> Result<(), SyncError> {
        let mut grace = grace_period(pod, c, probe_grace, None);
        self.stop_with_grace(pod, c, &mut grace, pod_ips).await
    }

    /// `pod_ips` are for an httpGet preStop hook (the caller has read them already).
    async fn stop_with_grace(
        &self,
        pod: &Pod,
        c: &ContainerStatus,
        grace: &mut i64,
        pod_ips: &[String],
    ) -> Result<(), SyncError> {
        if c.state == State::Running {
            let pre_stop: Option<LifecycleHandler> = spec_of(pod, &c.name)
                .and_then(|s| s.lifecycle.as_ref())
                .and_then(|l| l.pre_stop.clone())
                .or_else(|| {
                    c.annotations
                        .get(labels::PRE_STOP_HANDLER)
                        .and_then(|j| serde_json::from_str(j).ok())
                });
            if let Some(h) = pre_stop.filter(|_| *grace > 0) {
                let started = Instant::now();
                let spec = spec_of(pod, &c.name).cloned().unwrap_or_default();
                if let Err(msg) = self
                    .run_hook(pod, &spec, &c.id, &h, pod_ips, Some(*grace))
                    .await
                {
                    self.event(
                        pod,
                        Some(&c.name),
                        EventKind::Warning,
                        "FailedPreStopHook",
                        msg,
                    );
                }
                *grace -= i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX);
            }
        }
        let timeout = (*grace).max(MIN_GRACE);
        match self
            .runtime
            .pods
            .stop_container(cri::StopContainerRequest {
                container_id: c.id.clone(),
                timeout,
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(SyncError::runtime(pod, "stop a container")(e)),
        }
    }

    /// Stops every running container (regular ones together, then sidecars newest
    /// first) and every sandbox of the pod. `over` shortens the grace period.
    pub async fn kill_pod(
        &self,
        pod: &Pod,
        status: &PodStatus,
        over: Option<i64>,
    ) -> Result<(), SyncError> {
        let running: Vec<&ContainerStatus> = status
            .containers
            .iter()
            .filter(|c| c.state == State::Running || c.state == State::Created)
            .collect();
        let sidecar_names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(is_sidecar)
            .map(|c| c.name)
            .collect();
        let (sidecars, regular): (Vec<_>, Vec<_>) = running
            .into_iter()
            .partition(|c| sidecar_names.contains(&c.name));
        let started = Instant::now();
        let ips = status.ips();
        let kill = |c: &ContainerStatus, over: Option<i64>| {
            let ips = &ips;
            let c = c.clone();
            async move {
                self.event(
                    pod,
                    Some(&c.name),
                    EventKind::Normal,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
                let mut grace = grace_period(pod, &c, None, over);
                self.stop_with_grace(pod, &c, &mut grace, ips).await
            }
        };
        let results = futures_util::future::join_all(regular.iter().map(|c| kill(c, over))).await;
        let mut first_err = results.into_iter().find_map(Result::err);
        // Sidecars stop after the regular containers, in reverse order of start.
        let mut sidecars = sidecars;
        sidecars
            .sort_by_key(|c| std::cmp::Reverse(sidecar_names.iter().position(|n| *n == c.name)));
        // They share the pod's grace period: each gets what is left of it (upstream's
        // sidecar termination), still at least the minimum.
        for c in sidecars {
            let total = grace_period(pod, c, None, over);
            let spent = i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX);
            let left = (total - spent).max(MIN_GRACE);
            if let Err(e) = kill(c, Some(left)).await {
                first_err.get_or_insert(e);
            }
        }
        for sb in &status.sandboxes {
            if let Err(e) = self
                .runtime
                .pods
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await
                && !e.is_not_found()
            {
                first_err.get_or_insert(SyncError::runtime(pod, "stop the pod sandbox")(e));
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
