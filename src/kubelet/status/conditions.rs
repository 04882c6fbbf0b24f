//! The pod's conditions, as kubelet sets them: PodReadyToStartContainers, Initialized,
//! ContainersReady, Ready (pkg/kubelet/status/generate.go) and PodScheduled (a static
//! pod is scheduled by being on this node). A condition keeps its lastTransitionTime while
//! its status does not change.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};

use super::Inputs;
use crate::kubelet::kuberuntime::actions::is_sidecar;

fn cond(
    inp: &Inputs<'_>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = inp
        .previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| inp.now.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(String::from),
        message,
        last_transition_time: Some(since),
        ..Default::default()
    }
}

fn names(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// The five conditions, in kubelet's order.
pub fn conditions(
    inp: &Inputs<'_>,
    phase: &str,
    inits: &[ContainerStatus],
    containers: &[ContainerStatus],
) -> Vec<PodCondition> {
    let spec = inp.pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let sandbox_ok = inp
        .runtime
        .sandboxes
        .first()
        .is_some_and(|s| s.ready && (host_network || !s.ips.is_empty()));
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let mut incomplete = vec![];
    for (c, st) in init_specs.iter().zip(inits) {
        let state = st.state.clone().unwrap_or_default();
        let done = if is_sidecar(c) {
            st.started == Some(true) || state.terminated.is_some()
        } else {
            state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
        };
        if !done {
            incomplete.push(c.name.clone());
        }
    }
    // Once a regular container ran, the pod was initialized, whatever init containers
    // show now (upstream keeps Initialized true after a sandbox restart too).
    let initialized = incomplete.is_empty()
        || containers
            .iter()
            .any(|c| c.container_id.is_some() || c.last_state.is_some());
    let mut unready: Vec<String> = init_specs
        .iter()
        .zip(inits)
        .filter(|(c, st)| is_sidecar(c) && !st.ready)
        .map(|(c, _)| c.name.clone())
        .collect();
    unready.extend(
        containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.clone()),
    );
    let completed = phase == "Succeeded";
    let (cready, creason, cmsg) = if completed {
        (false, Some("PodCompleted"), None)
    } else if !unready.is_empty() {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                names(&unready)
            )),
        )
    } else {
        (true, None, None)
    };
    let gates: Vec<String> = spec
        .readiness_gates
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.condition_type)
        .collect();
    let (ready, rreason, rmsg) = if cready && !gates.is_empty() {
        (
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate {} does not exist.",
                gates
                    .iter()
                    .map(|g| format!("\"{g}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        )
    } else {
        (cready, creason, cmsg.clone())
    };
    vec![
        cond(inp, "PodReadyToStartContainers", sandbox_ok, None, None),
        if initialized {
            cond(inp, "Initialized", true, None, None)
        } else {
            cond(
                inp,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: {}",
                    names(&incomplete)
                )),
            )
        },
        cond(inp, "Ready", ready, rreason, rmsg),
        cond(inp, "ContainersReady", cready, creason, cmsg),
        cond(inp, "PodScheduled", true, None, None),
    ]
}
