//! The pod's phase from its container statuses: kubelet's getPhase.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::kubelet::kuberuntime::actions::is_sidecar;

/// Pending, Running, Succeeded or Failed.
pub fn phase(pod: &Pod, inits: &[ContainerStatus], containers: &[ContainerStatus]) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_specs = spec.init_containers.unwrap_or_default();
    let (mut pending_init, mut failed_init) = (0, 0);
    for (c, st) in init_specs.iter().zip(inits) {
        let state = st.state.clone().unwrap_or_default();
        if is_sidecar(c) {
            if state.running.is_some() && st.started == Some(true) {
                continue;
            }
            // A sidecar that is not (yet) started holds initialization.
            if state.running.is_none() {
                pending_init += 1;
            }
            continue;
        }
        match (&state.terminated, &state.waiting, &st.last_state) {
            (Some(t), _, _) if t.exit_code == 0 => {}
            (Some(_), _, _) => failed_init += 1,
            (None, Some(_), Some(last))
                if last.terminated.as_ref().is_some_and(|t| t.exit_code != 0) =>
            {
                failed_init += 1
            }
            _ => pending_init += 1,
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for st in containers {
        let state = st.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            match st.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                None => waiting += 1,
            }
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed".into();
    }
    if pending_init > 0 || (failed_init > 0 && running == 0 && stopped == 0) {
        return "Pending".into();
    }
    if waiting > 0 {
        return "Pending".into();
    }
    if running > 0 {
        return "Running".into();
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running".into();
        }
        if stopped == succeeded {
            return "Succeeded".into();
        }
        if policy == "Never" {
            return "Failed".into();
        }
        return "Running".into();
    }
    "Pending".into()
}
