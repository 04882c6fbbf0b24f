//! A container's oom_score_adj (pkg/kubelet/qos/policy.go GetContainerOOMScoreAdjust):
//! Guaranteed and node-critical pods -997, BestEffort 1000, Burstable in between by the
//! share of the node's memory the container requests.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::qos::{QosClass, container_requests, get, is_restartable_init, pod_level, qos_class};
use super::quantity::{Amount, list};

pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
pub const BESTEFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// The priority at and above which a pod is critical (scheduling.SystemCriticalPriority).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The annotation kubelet marks a pod's source with; anything but `api` is a static pod.
const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// IsStaticPod.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s != "api")
}

/// IsNodeCriticalPod: a critical pod (static, or at system-critical priority) of priority
/// class `system-node-critical`.
fn is_node_critical(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let critical = is_static(pod) || spec.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY);
    critical && spec.priority_class_name.as_deref() == Some("system-node-critical")
}

fn memory_request(c: &Container) -> i64 {
    get(
        &list(c.resources.as_ref().and_then(|r| r.requests.as_ref())),
        "memory",
    )
    .value()
}

/// The pod-level memory request the containers do not claim, shared out equally
/// (remainingPodMemReqPerContainer).
fn remaining_pod_memory_per_container(pod: &Pod) -> i64 {
    let Some(pr) = pod_level(pod) else { return 0 };
    let pod_mem = get(&list(pr.requests.as_ref()), "memory");
    if pod_mem.is_zero() {
        return 0;
    }
    let n = pod.spec.as_ref().map_or(0, |s| {
        s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
    });
    if n == 0 {
        return 0;
    }
    let claimed: Amount = get(&container_requests(pod), "memory");
    (pod_mem.value() - claimed.value()) / n as i64
}

/// GetContainerOOMScoreAdjust for `container` of `pod` on a node with `memory_capacity`
/// bytes.
pub fn container_oom_score_adj(pod: &Pod, container: &Container, memory_capacity: u64) -> i64 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let cap = i64::try_from(memory_capacity).unwrap_or(i64::MAX).max(1);
    let share = |req: i64| {
        let adj = 1000 - 1000i128 * i128::from(req) / i128::from(cap);
        i64::try_from(adj).unwrap_or(i64::MIN)
    };
    let remaining = remaining_pod_memory_per_container(pod);
    let mut adj = share(memory_request(container) + remaining);
    // A sidecar is killed no later than the regular container with the least memory
    // request would be.
    let is_sidecar = pod.spec.as_ref().is_some_and(|s| {
        s.init_containers
            .iter()
            .flatten()
            .any(|c| c.name == container.name && is_restartable_init(c))
    });
    if is_sidecar {
        let min_regular = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().map(memory_request).min())
            .unwrap_or(0);
        adj = adj.min(share(min_regular + remaining));
    }
    // A guaranteed pod using all of memory scores 3 (1000 - 997): burstable stays above.
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    // Burstable survives before best effort.
    if adj == BESTEFFORT_OOM_SCORE_ADJ {
        return adj - 1;
    }
    adj
}

#[cfg(test)]
mod tests {
    use super::super::qos::tests::{ctr, pod};
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    const CAP: u64 = 4_000_000_000;

    /// upstream policy_test.go TestGetContainerOOMScoreAdjust (memory capacity 4000000000).
    #[test]
    fn scores_as_upstream() {
        let c = |p: &Pod| container_oom_score_adj(p, &p.spec.as_ref().unwrap().containers[0], CAP);
        // best effort
        assert_eq!(c(&pod(vec![ctr("a", &[], &[])], vec![])), 1000);
        // guaranteed
        let g = pod(
            vec![ctr(
                "a",
                &[("cpu", "1"), ("memory", "2G")],
                &[("cpu", "1"), ("memory", "2G")],
            )],
            vec![],
        );
        assert_eq!(c(&g), -997);
        // burstable: half the memory
        assert_eq!(
            c(&pod(
                vec![ctr("a", &[("memory", "2G")], &[("memory", "4G")])],
                vec![]
            )),
            500
        );
        // burstable: all of it and more
        assert_eq!(c(&pod(vec![ctr("a", &[("memory", "4G")], &[])], vec![])), 3);
        assert_eq!(c(&pod(vec![ctr("a", &[("memory", "8G")], &[])], vec![])), 3);
        // burstable without a memory request: 1000 - 0 = 1000 -> 999
        assert_eq!(c(&pod(vec![ctr("a", &[("cpu", "1")], &[])], vec![])), 999);
        // a tiny request
        assert_eq!(
            c(&pod(vec![ctr("a", &[("memory", "1")], &[])], vec![])),
            999
        );
    }

    #[test]
    fn node_critical_static_pod() {
        let mut p = pod(vec![ctr("a", &[], &[])], vec![]);
        p.metadata.annotations = Some([(CONFIG_SOURCE.to_string(), "file".to_string())].into());
        assert_eq!(
            container_oom_score_adj(&p, &p.spec.as_ref().unwrap().containers[0], CAP),
            1000
        );
        p.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
        assert_eq!(
            container_oom_score_adj(&p, &p.spec.as_ref().unwrap().containers[0], CAP),
            -997
        );
        // from the API it is critical only at system-critical priority
        p.metadata.annotations = Some([(CONFIG_SOURCE.to_string(), "api".to_string())].into());
        assert_eq!(
            container_oom_score_adj(&p, &p.spec.as_ref().unwrap().containers[0], CAP),
            1000
        );
        p.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert_eq!(
            container_oom_score_adj(&p, &p.spec.as_ref().unwrap().containers[0], CAP),
            -997
        );
    }

    /// upstream's sidecar cases: the sidecar's score is capped by the smallest regular
    /// container's.
    #[test]
    fn sidecars_follow_the_smallest_regular_container() {
        let mut side = ctr("side", &[("memory", "1G")], &[]);
        side.restart_policy = Some("Always".into());
        let p = pod(
            vec![
                ctr("a", &[("memory", "2G")], &[]),
                ctr("b", &[("memory", "3G")], &[]),
            ],
            vec![side.clone()],
        );
        // own request 1G -> 750; smallest regular 2G -> 500
        assert_eq!(container_oom_score_adj(&p, &side, CAP), 500);
        // a sidecar with more memory than the regular containers keeps its own
        let mut big = ctr("side", &[("memory", "3G")], &[]);
        big.restart_policy = Some("Always".into());
        let p = pod(vec![ctr("a", &[("memory", "1G")], &[])], vec![big.clone()]);
        assert_eq!(container_oom_score_adj(&p, &big, CAP), 250);
        // a classic init container is not a sidecar
        let init = ctr("side", &[("memory", "1G")], &[]);
        let p = pod(vec![ctr("a", &[("memory", "2G")], &[])], vec![init.clone()]);
        assert_eq!(container_oom_score_adj(&p, &init, CAP), 750);
    }

    /// Pod-level requests the containers leave unclaimed are shared out.
    #[test]
    fn pod_level_memory_request_is_shared() {
        let mut p = pod(
            vec![ctr("a", &[("memory", "1G")], &[]), ctr("b", &[], &[])],
            vec![],
        );
        p.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
            requests: super::super::qos::tests::rl(&[("memory", "3G")]),
            ..Default::default()
        });
        // (3G - 1G) / 2 = 1G each: a -> 2G -> 500, b -> 1G -> 750
        let s = p.spec.as_ref().unwrap();
        assert_eq!(container_oom_score_adj(&p, &s.containers[0], CAP), 500);
        assert_eq!(container_oom_score_adj(&p, &s.containers[1], CAP), 750);
    }
}
