//! Starting one container (kuberuntime_container.go startContainer): back-off for a
//! container that exited before, the image by its pull policy, the environment and the
//! mounts, then CreateContainer, StartContainer and the postStart hook. A failure becomes
//! the container's waiting reason, as upstream names them.

use std::time::Instant;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Outcome, Syncer, instant_of, pod_desc};
use crate::kubelet::envvars::{self, EnvContext};
use crate::kubelet::events::EventKind;
use crate::kubelet::kuberuntime::container::{self, ContainerInputs};
use crate::kubelet::kuberuntime::labels;
use crate::kubelet::kuberuntime::status::{PodStatus, State};
use crate::kubelet::objects::Objects;
use crate::kubelet::status::Waiting;
use crate::kubelet::volumes::{MountContext, PodVolumes};

/// The sandbox a container starts in and what the pod already has.
pub(super) struct StartContext<'a> {
    pub sandbox_id: &'a str,
    pub sandbox_config: &'a cri::PodSandboxConfig,
    pub status: &'a PodStatus,
    pub objects: &'a Objects,
    pub volumes: &'a PodVolumes,
}

fn waiting(reason: &str, message: impl Into<String>) -> Waiting {
    Waiting {
        reason: reason.into(),
        message: message.into(),
    }
}

impl Syncer {
    /// Starts one container; Err is why it waits.
    pub(super) async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        ctx: &StartContext<'_>,
        out: &mut Outcome,
    ) -> Result<(), Waiting> {
        let latest = ctx.status.latest(&c.name);
        let key = format!("{}/{}", labels::uid(pod), c.name);
        if let Some(prev) = latest.filter(|p| p.state == State::Exited) {
            let since = instant_of(prev.finished_at);
            let now = Instant::now();
            if let Some(left) = self.crash_backoff.remaining(&key, since, now) {
                let d = self.crash_backoff.current(&key);
                self.event(
                    pod,
                    Some(&c.name),
                    EventKind::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        pod_desc(pod)
                    ),
                );
                out.requeue = Some(out.requeue.map_or(left, |r| r.min(left)));
                return Err(waiting(
                    "CrashLoopBackOff",
                    format!(
                        "back-off {}s restarting failed container={} pod={}",
                        d.as_secs(),
                        c.name,
                        pod_desc(pod)
                    ),
                ));
            }
            self.crash_backoff.next(&key, since, now);
        }
        let image = self
            .ensure_image(pod, c, ctx.sandbox_config, ctx.objects, out)
            .await?;
        let restart_count = latest.map_or(0, |p| p.restart_count + 1);
        let pod_ips = ctx.status.ips();
        let env = envvars::make_environment(
            pod,
            c,
            &EnvContext {
                pod_ips: &pod_ips,
                host_ip: self.settings.host_ips.first().map(String::as_str),
                node_name: &self.settings.node_name,
                objects: ctx.objects,
                node_allocatable_cpu_millis: self.settings.node.cpu_capacity_millis,
                node_allocatable_memory: i64::try_from(self.settings.node.memory_capacity)
                    .unwrap_or(i64::MAX),
            },
        )
        .map_err(|e| self.start_failed(pod, c, "CreateContainerConfigError", e.to_string()))?;
        let (command, args) = envvars::expand_command(c, &env);
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let mounts = self
            .volumes
            .container_mounts_with_env(
                pod,
                c,
                ctx.volumes,
                &MountContext {
                    pod_ips: pod_ips.clone(),
                    host_network,
                },
                &env,
            )
            .map_err(|e| self.start_failed(pod, c, "CreateContainerConfigError", e.to_string()))?;
        let resources = crate::kubelet::cm::container_resources(pod, c, &self.settings.node);
        let cfg = container::config(
            pod,
            c,
            ContainerInputs {
                restart_count,
                image,
                command,
                args,
                envs: env,
                mounts,
                resources: Some(resources),
                seccomp_default: self.settings.seccomp_default,
            },
        );
        let id = match self
            .runtime
            .pods
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: ctx.sandbox_id.to_string(),
                config: Some(cfg),
                sandbox_config: Some(ctx.sandbox_config.clone()),
            })
            .await
        {
            Ok(r) => r.container_id,
            Err(e) => return Err(self.start_failed(pod, c, "CreateContainerError", e.to_string())),
        };
        self.event(
            pod,
            Some(&c.name),
            EventKind::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = self
            .runtime
            .pods
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            return Err(self.start_failed(pod, c, "RunContainerError", e.to_string()));
        }
        self.event(
            pod,
            Some(&c.name),
            EventKind::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(msg) = self.run_hook(pod, c, &id, h, &pod_ips, None).await
        {
            self.event(
                pod,
                Some(&c.name),
                EventKind::Warning,
                "FailedPostStartHook",
                msg.clone(),
            );
            if let Ok(st) = self.runtime_status(pod).await
                && let Some(cs) = st.containers.iter().find(|x| x.id == id)
            {
                let _ = self.kill_container(pod, cs, None, &pod_ips).await;
            }
            return Err(waiting("PostStartHookError", msg));
        }
        Ok(())
    }

    /// A start that failed: the Failed event, and the reason the container waits with.
    fn start_failed(&self, pod: &Pod, c: &Container, reason: &str, msg: String) -> Waiting {
        self.event(
            pod,
            Some(&c.name),
            EventKind::Warning,
            "Failed",
            format!("Error: {msg}"),
        );
        waiting(reason, msg)
    }
}

/// The image of a container spec, for messages.
pub(super) fn image_of(c: &Container) -> &str {
    c.image.as_deref().unwrap_or_default()
}
