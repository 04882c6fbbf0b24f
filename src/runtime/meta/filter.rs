//! The CRI list filters, with containerd's semantics (`filterCRISandboxes`,
//! `filterCRIContainers`): every set field must match (AND); ids are compared after the
//! caller has expanded a unique prefix to the full id; a label selector matches when
//! every key is present with an equal value.

use std::collections::HashMap;

use cri_proto::v1::{
    Container, ContainerFilter, ContainerStatsFilter, PodSandbox, PodSandboxFilter,
};

/// Whether every key of `selector` is in `labels` with an equal value.
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `s` passes `f` (ids in `f` already expanded).
pub fn sandbox_matches(f: &PodSandboxFilter, s: &PodSandbox) -> bool {
    (f.id.is_empty() || f.id == s.id)
        && f.state.as_ref().is_none_or(|st| st.state == s.state)
        && labels_match(&f.label_selector, &s.labels)
}

/// Whether `c` passes `f` (ids in `f` already expanded).
pub fn container_matches(f: &ContainerFilter, c: &Container) -> bool {
    (f.id.is_empty() || f.id == c.id)
        && (f.pod_sandbox_id.is_empty() || f.pod_sandbox_id == c.pod_sandbox_id)
        && f.state.as_ref().is_none_or(|st| st.state == c.state)
        && labels_match(&f.label_selector, &c.labels)
}

/// Whether a container (id, sandbox id, labels) passes a stats filter.
pub fn stats_matches(
    f: &ContainerStatsFilter,
    id: &str,
    sandbox_id: &str,
    labels: &HashMap<String, String>,
) -> bool {
    (f.id.is_empty() || f.id == id)
        && (f.pod_sandbox_id.is_empty() || f.pod_sandbox_id == sandbox_id)
        && labels_match(&f.label_selector, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_proto::v1::{
        ContainerState, ContainerStateValue, PodSandboxState, PodSandboxStateValue,
    };

    fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sandbox_filter_fields_are_anded() {
        let s = PodSandbox {
            id: "a1".into(),
            state: PodSandboxState::SandboxReady as i32,
            labels: labels(&[("app", "web"), ("tier", "fe")]),
            ..Default::default()
        };
        let ready = Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        });
        let not_ready = Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxNotready as i32,
        });
        let cases = [
            (PodSandboxFilter::default(), true),
            (
                PodSandboxFilter {
                    id: "a1".into(),
                    ..Default::default()
                },
                true,
            ),
            (
                PodSandboxFilter {
                    id: "a2".into(),
                    ..Default::default()
                },
                false,
            ),
            (
                PodSandboxFilter {
                    state: ready,
                    ..Default::default()
                },
                true,
            ),
            (
                PodSandboxFilter {
                    state: not_ready,
                    ..Default::default()
                },
                false,
            ),
            (
                PodSandboxFilter {
                    label_selector: labels(&[("app", "web")]),
                    ..Default::default()
                },
                true,
            ),
            (
                PodSandboxFilter {
                    label_selector: labels(&[("app", "db")]),
                    ..Default::default()
                },
                false,
            ),
            (
                PodSandboxFilter {
                    label_selector: labels(&[("missing", "")]),
                    ..Default::default()
                },
                false,
            ),
            (
                PodSandboxFilter {
                    id: "a1".into(),
                    state: ready,
                    label_selector: labels(&[("tier", "fe")]),
                },
                true,
            ),
        ];
        for (f, want) in cases {
            assert_eq!(sandbox_matches(&f, &s), want, "{f:?}");
        }
    }

    #[test]
    fn container_filter_checks_the_sandbox_and_state() {
        let c = Container {
            id: "c1".into(),
            pod_sandbox_id: "p1".into(),
            state: ContainerState::ContainerRunning as i32,
            labels: labels(&[("io.kubernetes.container.name", "app")]),
            ..Default::default()
        };
        let running = Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        });
        let exited = Some(ContainerStateValue {
            state: ContainerState::ContainerExited as i32,
        });
        assert!(container_matches(&ContainerFilter::default(), &c));
        assert!(container_matches(
            &ContainerFilter {
                pod_sandbox_id: "p1".into(),
                state: running,
                ..Default::default()
            },
            &c
        ));
        assert!(!container_matches(
            &ContainerFilter {
                pod_sandbox_id: "p2".into(),
                ..Default::default()
            },
            &c
        ));
        assert!(!container_matches(
            &ContainerFilter {
                state: exited,
                ..Default::default()
            },
            &c
        ));
        assert!(stats_matches(
            &ContainerStatsFilter {
                pod_sandbox_id: "p1".into(),
                ..Default::default()
            },
            "c1",
            "p1",
            &c.labels
        ));
        assert!(!stats_matches(
            &ContainerStatsFilter {
                id: "c2".into(),
                ..Default::default()
            },
            "c1",
            "p1",
            &c.labels
        ));
    }
}
