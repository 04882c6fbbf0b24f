//! Container statuses (kubelet's convertToAPIContainerStatuses): the newest runtime
//! container of each name gives the state, the one before it the last state; a waiting
//! reason from the last sync (CrashLoopBackOff, ErrImagePull, ...) replaces the state of
//! a container that is not running, and its exited self becomes the last state.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus,
};

use super::{Inputs, time};
use crate::kubelet::kuberuntime::actions::is_sidecar;
use crate::kubelet::kuberuntime::status::{ContainerStatus as Rt, State};

fn terminated(inp: &Inputs<'_>, c: &Rt) -> ContainerStateTerminated {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(reason),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: time(c.started_at),
        finished_at: time(c.finished_at),
        container_id: Some(container_id(inp, c)),
        signal: None,
    }
}

fn container_id(inp: &Inputs<'_>, c: &Rt) -> String {
    format!("{}://{}", inp.runtime_name, c.id)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// The statuses of `specs` (the pod's init containers when `init`).
pub fn statuses(inp: &Inputs<'_>, specs: &[Container], init: bool) -> Vec<ContainerStatus> {
    let initialized = init || all_inits_done(inp);
    specs
        .iter()
        .map(|spec| one(inp, spec, init, initialized))
        .collect()
}

/// Whether every regular init container succeeded (the regular containers may have run).
fn all_inits_done(inp: &Inputs<'_>) -> bool {
    let spec = inp.pod.spec.clone().unwrap_or_default();
    spec.init_containers.unwrap_or_default().iter().all(|c| {
        let latest = inp.runtime.latest(&c.name);
        if is_sidecar(c) {
            latest.is_some()
        } else {
            latest.is_some_and(|s| s.state == State::Exited && s.exit_code == 0)
        }
    }) || spec
        .containers
        .iter()
        .any(|c| inp.runtime.latest(&c.name).is_some())
}

fn one(inp: &Inputs<'_>, spec: &Container, init: bool, initialized: bool) -> ContainerStatus {
    let mut all = inp.runtime.all_named(&spec.name);
    let latest = all.next();
    let before = all.next();
    let default_reason = if init || initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut st = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting(default_reason, None)),
        ..Default::default()
    };
    if let Some(c) = latest {
        st.container_id = Some(container_id(inp, c));
        st.image_id = if c.image_ref.is_empty() {
            c.image_id.clone()
        } else {
            c.image_ref.clone()
        };
        st.restart_count = c.restart_count;
        let probe = inp
            .probes
            .get(&spec.name)
            .filter(|p| p.container_id == c.id);
        match c.state {
            State::Running => {
                st.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time(c.started_at),
                    }),
                    ..Default::default()
                });
                let has_startup = spec.startup_probe.is_some();
                let has_readiness = spec.readiness_probe.is_some();
                let started = probe.map_or(!has_startup, |p| p.started);
                st.started = Some(started);
                // A regular init container is never "ready" while it runs.
                st.ready = if init && !is_sidecar(spec) {
                    false
                } else {
                    probe.map_or(started && !has_readiness, |p| p.ready)
                };
            }
            State::Exited => {
                st.state = Some(ContainerState {
                    terminated: Some(terminated(inp, c)),
                    ..Default::default()
                });
                // A regular init container that succeeded counts as ready, as upstream.
                st.ready = init && !is_sidecar(spec) && c.exit_code == 0;
            }
            State::Created => st.state = Some(waiting("ContainerCreating", None)),
            State::Unknown => {
                st.state = Some(waiting("ContainerStatusUnknown", None));
            }
        }
        if let Some(b) = before.filter(|b| b.state == State::Exited) {
            st.last_state = Some(ContainerState {
                terminated: Some(terminated(inp, b)),
                ..Default::default()
            });
        }
        if c.state != State::Running
            && let Some(w) = inp.waiting.get(&spec.name)
        {
            if c.state == State::Exited {
                st.last_state = Some(ContainerState {
                    terminated: Some(terminated(inp, c)),
                    ..Default::default()
                });
            }
            st.state = Some(waiting(&w.reason, Some(w.message.clone())));
        }
    } else if let Some(w) = inp.waiting.get(&spec.name) {
        st.state = Some(waiting(&w.reason, Some(w.message.clone())));
    }
    st
}
