//! QoS classes and pod resource sums against upstream's cases, and the pod and
//! container builders the other tests of the module use.
use super::*;
use k8s_openapi::api::core::v1::{PodSpec, PodStatus, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// A resource list from `("cpu", "100m")` pairs.
pub fn rl(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    if pairs.is_empty() {
        return None;
    }
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Quantity((*v).to_string())))
            .collect(),
    )
}

pub fn ctr(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        resources: Some(ResourceRequirements {
            requests: rl(req),
            limits: rl(lim),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
    Pod {
        spec: Some(PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sidecar(c: Container) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..c
    }
}

use QosClass::*;

/// The cases of upstream's qos_test.go TestComputePodQOS.
#[test]
fn classes_as_upstream() {
    let cases: Vec<(Pod, QosClass)> = vec![
        (pod(vec![ctr("a", &[], &[])], vec![]), BestEffort),
        (
            pod(vec![ctr("a", &[], &[]), ctr("b", &[], &[])], vec![]),
            BestEffort,
        ),
        (
            pod(
                vec![ctr(
                    "a",
                    &[("cpu", "100m"), ("memory", "100Mi")],
                    &[("cpu", "100m"), ("memory", "100Mi")],
                )],
                vec![],
            ),
            Guaranteed,
        ),
        (
            pod(
                vec![
                    ctr(
                        "a",
                        &[("cpu", "100m"), ("memory", "100Mi")],
                        &[("cpu", "100m"), ("memory", "100Mi")],
                    ),
                    ctr(
                        "b",
                        &[("cpu", "100m"), ("memory", "100Mi")],
                        &[("cpu", "100m"), ("memory", "100Mi")],
                    ),
                ],
                vec![],
            ),
            Guaranteed,
        ),
        // only limits: requests default to them (as the API server defaults)
        (
            pod(
                vec![ctr("a", &[], &[("cpu", "100m"), ("memory", "100Mi")])],
                vec![],
            ),
            Burstable,
        ),
        // extended resources do not count
        (
            pod(
                vec![ctr(
                    "a",
                    &[
                        ("cpu", "100m"),
                        ("memory", "100Mi"),
                        ("nvidia.com/gpu", "2"),
                    ],
                    &[
                        ("cpu", "100m"),
                        ("memory", "100Mi"),
                        ("nvidia.com/gpu", "2"),
                    ],
                )],
                vec![],
            ),
            Guaranteed,
        ),
        (
            pod(
                vec![ctr(
                    "a",
                    &[("nvidia.com/gpu", "2")],
                    &[("nvidia.com/gpu", "2")],
                )],
                vec![],
            ),
            BestEffort,
        ),
        (
            pod(
                vec![
                    ctr(
                        "a",
                        &[("cpu", "100m"), ("memory", "100Mi")],
                        &[("cpu", "100m"), ("memory", "100Mi")],
                    ),
                    ctr("b", &[], &[]),
                ],
                vec![],
            ),
            Burstable,
        ),
        (
            pod(
                vec![ctr(
                    "a",
                    &[("cpu", "100m"), ("memory", "100Mi")],
                    &[("cpu", "200m"), ("memory", "100Mi")],
                )],
                vec![],
            ),
            Burstable,
        ),
        (
            pod(
                vec![ctr("a", &[("cpu", "100m")], &[("cpu", "100m")])],
                vec![],
            ),
            Burstable,
        ),
        // zero requests are ignored
        (
            pod(
                vec![ctr("a", &[("cpu", "0"), ("memory", "0")], &[])],
                vec![],
            ),
            BestEffort,
        ),
        // an init container without limits makes a guaranteed pod burstable
        (
            pod(
                vec![ctr(
                    "a",
                    &[("cpu", "100m"), ("memory", "100Mi")],
                    &[("cpu", "100m"), ("memory", "100Mi")],
                )],
                vec![ctr("i", &[("cpu", "10m")], &[])],
            ),
            Burstable,
        ),
        (
            pod(
                vec![ctr("a", &[], &[])],
                vec![ctr("i", &[("memory", "10Mi")], &[])],
            ),
            Burstable,
        ),
        (
            pod(
                vec![ctr(
                    "a",
                    &[("cpu", "1"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")],
                )],
                vec![sidecar(ctr(
                    "s",
                    &[("cpu", "1"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")],
                ))],
            ),
            Guaranteed,
        ),
    ];
    for (i, (p, want)) in cases.iter().enumerate() {
        assert_eq!(qos_class(p), *want, "case {i}");
    }
}

#[test]
fn pod_level_resources_decide_when_set() {
    let mut p = pod(vec![ctr("a", &[], &[])], vec![]);
    if let Some(s) = p.spec.as_mut() {
        s.resources = Some(ResourceRequirements {
            requests: rl(&[("cpu", "1"), ("memory", "1Gi")]),
            limits: rl(&[("cpu", "1"), ("memory", "1Gi")]),
            ..Default::default()
        });
    }
    assert_eq!(qos_class(&p), Guaranteed);
    if let Some(s) = p.spec.as_mut() {
        s.resources = Some(ResourceRequirements {
            limits: rl(&[("cpu", "1")]),
            requests: rl(&[("cpu", "1")]),
            ..Default::default()
        });
    }
    assert_eq!(qos_class(&p), Burstable);
}

#[test]
fn status_class_wins() {
    let mut p = pod(vec![ctr("a", &[], &[])], vec![]);
    p.status = Some(PodStatus {
        qos_class: Some("Burstable".into()),
        ..Default::default()
    });
    assert_eq!(qos_class(&p), Burstable);
    assert_eq!(Burstable.as_str(), "Burstable");
}

/// The init container arithmetic of upstream's TestPodResourceRequests.
#[test]
fn requests_with_init_containers_and_sidecars() {
    // regular 100m; init 200m: the larger wins
    let p = pod(
        vec![ctr("a", &[("cpu", "100m")], &[])],
        vec![ctr("i", &[("cpu", "200m")], &[])],
    );
    assert_eq!(get(&pod_requests(&p, false), "cpu").milli_value(), 200);
    // sidecar 50m before init 200m: init needs 250m; regular 100m + sidecar 50m = 150m
    let p = pod(
        vec![ctr("a", &[("cpu", "100m")], &[])],
        vec![
            sidecar(ctr("s", &[("cpu", "50m")], &[])),
            ctr("i", &[("cpu", "200m")], &[]),
        ],
    );
    assert_eq!(get(&pod_requests(&p, false), "cpu").milli_value(), 250);
    // init first, then the sidecar: 200m vs 150m
    let p = pod(
        vec![ctr("a", &[("cpu", "100m")], &[])],
        vec![
            ctr("i", &[("cpu", "200m")], &[]),
            sidecar(ctr("s", &[("cpu", "50m")], &[])),
        ],
    );
    assert_eq!(get(&pod_requests(&p, false), "cpu").milli_value(), 200);
    // overhead adds to requests
    let mut p = pod(vec![ctr("a", &[("cpu", "100m")], &[])], vec![]);
    if let Some(s) = p.spec.as_mut() {
        s.overhead = rl(&[("cpu", "10m"), ("memory", "5Mi")]);
    }
    let r = pod_requests(&p, true);
    assert_eq!(get(&r, "cpu").milli_value(), 110);
    assert_eq!(get(&r, "memory").value(), 5 << 20);
}

#[test]
fn limits_declared_only_when_every_container_has_one() {
    let p = pod(
        vec![
            ctr("a", &[], &[("cpu", "1"), ("memory", "1Gi")]),
            ctr("b", &[], &[("cpu", "500m")]),
        ],
        vec![],
    );
    let (l, cpu, mem) = pod_limits(&p, false);
    assert_eq!(get(&l, "cpu").milli_value(), 1500);
    assert!(cpu);
    assert!(!mem);
    // an init container without a cpu limit counts too
    let p = pod(
        vec![ctr("a", &[], &[("cpu", "1")])],
        vec![ctr("i", &[], &[])],
    );
    assert!(!pod_limits(&p, false).1);
}
