//! What one sync must do to a pod: kubelet's computePodActions
//! (pkg/kubelet/kuberuntime/kuberuntime_manager.go), as plain data from the desired spec,
//! what the runtime holds and the probes' results. Because it starts from what is, a sync
//! after a restart or crash of berth carries on where the last one stopped.
//!
//! Order, as upstream: a pod whose sandbox is gone or changed gets a new sandbox and
//! starts over from its first init container (restart counts carry on); init containers
//! run one at a time in order, each to success; sidecars (restartable init containers)
//! start in order, each waiting for the previous one to be started; regular containers
//! start together once every init container is done; a running container whose liveness
//! or startup probe failed is killed and, as its restartPolicy allows, started again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::status::{ContainerStatus, PodStatus, State};

/// A container to kill and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    /// The message of the Killing event.
    pub message: String,
    /// A probe-level terminationGracePeriodSeconds, when a probe asked for the kill.
    pub grace_period: Option<i64>,
}

/// What a sync does, in this order: kill the pod (everything), or kill single
/// containers; then create the sandbox; then start the next init container or sidecars;
/// then start regular containers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodActions {
    /// Stop every container and the sandbox (a new sandbox follows if `create_sandbox`).
    pub kill_pod: bool,
    pub create_sandbox: bool,
    /// The sandbox to use (when it is kept).
    pub sandbox_id: Option<String>,
    /// The new sandbox's attempt number.
    pub attempt: u32,
    /// Init containers to start (by index in spec.initContainers): the next regular one,
    /// or sidecars that are not running.
    pub init_to_start: Vec<usize>,
    /// Regular containers to start (by index in spec.containers).
    pub containers_to_start: Vec<usize>,
    pub containers_to_kill: Vec<Kill>,
    /// A regular init container failed and the policy is Never: the pod has failed.
    pub init_failed: bool,
}

/// A container's probe results, as far as the actions care.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeState {
    pub container_id: String,
    pub started: bool,
    pub liveness_failed: Option<(String, Option<i64>)>,
    pub startup_failed: Option<(String, Option<i64>)>,
}

pub type Probes = BTreeMap<String, ProbeState>;

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// A restartable init container: a sidecar.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Whether a container that is not running should be started (again), by the pod's
/// restartPolicy (kubecontainer.ShouldContainerBeRestarted).
pub fn should_restart(policy: &str, latest: Option<&ContainerStatus>) -> bool {
    match latest {
        None => true,
        Some(c) if c.state == State::Running => false,
        Some(c) if c.state == State::Created => false,
        Some(c) => match policy {
            "Never" => false,
            "OnFailure" => c.exit_code != 0,
            _ => true,
        },
    }
}

/// The sandbox to keep, or why a new one is needed (podSandboxChanged).
fn sandbox_changed(pod: &Pod, status: &PodStatus) -> (bool, u32, Option<String>) {
    let Some(sb) = status.sandboxes.first() else {
        return (true, 0, None);
    };
    let ready_count = status.sandboxes.iter().filter(|s| s.ready).count();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let next = sb.attempt + 1;
    if ready_count > 1 || !sb.ready {
        return (true, next, Some(sb.id.clone()));
    }
    if sb.host_network != host_network {
        return (true, next, Some(sb.id.clone()));
    }
    if !host_network && sb.ips.is_empty() {
        return (true, next, Some(sb.id.clone()));
    }
    (false, sb.attempt, Some(sb.id.clone()))
}

fn probe_kill(c: &ContainerStatus, probes: &Probes) -> Option<Kill> {
    let p = probes.get(&c.name).filter(|p| p.container_id == c.id)?;
    let (message, grace) = if let Some((msg, g)) = &p.liveness_failed {
        (
            format!(
                "Container {} failed liveness probe, will be restarted: {msg}",
                c.name
            ),
            *g,
        )
    } else if let Some((msg, g)) = &p.startup_failed {
        (
            format!(
                "Container {} failed startup probe, will be restarted: {msg}",
                c.name
            ),
            *g,
        )
    } else {
        return None;
    };
    Some(Kill {
        id: c.id.clone(),
        name: c.name.clone(),
        message,
        grace_period: grace,
    })
}

/// Computes the actions of one sync.
pub fn compute(pod: &Pod, status: &PodStatus, probes: &Probes) -> PodActions {
    let policy = restart_policy(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let (create, attempt, sandbox_id) = sandbox_changed(pod, status);
    let mut a = PodActions {
        create_sandbox: create,
        attempt,
        sandbox_id: if create { None } else { sandbox_id.clone() },
        kill_pod: create,
        ..Default::default()
    };
    if create {
        // A pod that must not restart and already ran stays down (upstream: no new
        // sandbox for a restartPolicy Never pod that had containers).
        if policy == "Never" && attempt != 0 && !status.containers.is_empty() {
            a.create_sandbox = false;
            return a;
        }
        // OnFailure pods whose regular containers all succeeded stay down too.
        if policy == "OnFailure"
            && attempt != 0
            && !spec.containers.is_empty()
            && spec.containers.iter().all(|c| {
                status
                    .latest(&c.name)
                    .is_some_and(|s| s.state == State::Exited && s.exit_code == 0)
            })
        {
            a.create_sandbox = false;
            return a;
        }
        if !inits.is_empty() {
            a.init_to_start = vec![0];
            return a;
        }
        a.containers_to_start = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                // Containers that completed under OnFailure / Never are not run again.
                let latest = status.latest(&c.name);
                latest.is_none() || should_restart(policy, latest)
            })
            .map(|(i, _)| i)
            .collect();
        return a;
    }

    let initialized = init_actions(&inits, status, probes, policy, &mut a);
    if a.init_failed {
        a.kill_pod = true;
        return a;
    }
    if !initialized {
        return a;
    }
    let mut keep = 0;
    for (i, c) in spec.containers.iter().enumerate() {
        let latest = status.latest(&c.name);
        match latest {
            Some(s) if s.state == State::Running => {
                if let Some(k) = probe_kill(s, probes) {
                    if should_restart(policy, Some(&exited(s))) {
                        a.containers_to_start.push(i);
                    }
                    a.containers_to_kill.push(k);
                } else {
                    keep += 1;
                }
            }
            Some(s) if s.state == State::Created => {
                // Created but never started (a crash between create and start): start it
                // over, as a new container.
                a.containers_to_kill.push(not_started(s));
                a.containers_to_start.push(i);
            }
            _ => {
                if should_restart(policy, latest) {
                    a.containers_to_start.push(i);
                }
            }
        }
    }
    if keep == 0 && a.containers_to_start.is_empty() && a.init_to_start.is_empty() {
        // Nothing runs and nothing will: the pod is done; its sandbox (and sidecars) go.
        a.kill_pod = true;
    }
    a
}

/// A container created but never started (berth stopped between the two): it is removed
/// and started over as a new container.
fn not_started(s: &ContainerStatus) -> Kill {
    Kill {
        id: s.id.clone(),
        name: s.name.clone(),
        message: format!("Container {} was created but not started", s.name),
        grace_period: None,
    }
}

/// A running container seen as if it had just exited by a kill (exit code 137), for the
/// restart decision of a probe kill.
fn exited(s: &ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        state: State::Exited,
        exit_code: 137,
        ..s.clone()
    }
}

/// The init containers' actions (computeInitContainerActions); true when every regular
/// init container has succeeded and every sidecar is started.
fn init_actions(
    inits: &[Container],
    status: &PodStatus,
    probes: &Probes,
    policy: &str,
    a: &mut PodActions,
) -> bool {
    for (i, c) in inits.iter().enumerate() {
        let latest = status.latest(&c.name);
        if is_sidecar(c) {
            match latest {
                Some(s) if s.state == State::Running => {
                    if let Some(k) = probe_kill(s, probes) {
                        a.containers_to_kill.push(k);
                        a.init_to_start.push(i);
                        return false;
                    }
                    let started = probes
                        .get(&c.name)
                        .filter(|p| p.container_id == s.id)
                        .is_none_or(|p| p.started);
                    if !started {
                        return false;
                    }
                }
                Some(s) if s.state == State::Created => {
                    a.containers_to_kill.push(not_started(s));
                    a.init_to_start.push(i);
                    return false;
                }
                _ => {
                    // A sidecar always restarts, whatever the pod's policy.
                    a.init_to_start.push(i);
                    return false;
                }
            }
            continue;
        }
        match latest {
            None => {
                a.init_to_start.push(i);
                return false;
            }
            Some(s) if s.state == State::Running => return false,
            Some(s) if s.state == State::Created => {
                a.containers_to_kill.push(not_started(s));
                a.init_to_start.push(i);
                return false;
            }
            Some(s) if s.exit_code == 0 && s.state == State::Exited => continue,
            Some(_) => {
                if policy == "Never" {
                    a.init_failed = true;
                } else {
                    a.init_to_start.push(i);
                }
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
