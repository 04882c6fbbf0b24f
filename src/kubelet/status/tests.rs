use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::kubelet::kuberuntime::status::{ContainerStatus, SandboxStatus, State};

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

fn ctr(
    name: &str,
    id: &str,
    state: State,
    exit: i32,
    created: i64,
    restarts: i32,
) -> ContainerStatus {
    ContainerStatus {
        id: id.into(),
        name: name.into(),
        state,
        created_at: created,
        started_at: created + 1,
        finished_at: if state == State::Exited {
            created + 2
        } else {
            0
        },
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        image: "img".into(),
        image_ref: "sha256:abc".into(),
        image_id: String::new(),
        restart_count: restarts,
        hash: String::new(),
        annotations: Default::default(),
        mounts: vec![],
    }
}

fn sandbox() -> SandboxStatus {
    SandboxStatus {
        id: "sb".into(),
        ready: true,
        attempt: 0,
        created_at: 1,
        ips: vec!["10.1.0.5".into()],
        host_network: false,
    }
}

fn status_of(
    p: &Pod,
    rt: &PodStatus,
    waiting: &BTreeMap<String, Waiting>,
    probes: &BTreeMap<String, ProbeView>,
) -> ApiStatus {
    generate(&Inputs {
        pod: p,
        runtime: rt,
        probes,
        waiting,
        previous: None,
        host_ips: &["192.168.1.2".to_string()],
        runtime_name: "berth",
        terminal: None,
        start_time: now(),
        qos_class: "BestEffort",
        now: now(),
    })
}

fn cond<'a>(s: &'a ApiStatus, t: &str) -> &'a k8s_openapi::api::core::v1::PodCondition {
    s.conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == t))
        .expect("condition")
}

#[test]
fn a_running_pod_without_probes_is_ready() {
    let p = pod(serde_json::json!({"spec": {"containers": [{"name": "a", "image": "img"}]}}));
    let rt = PodStatus {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("a", "c1", State::Running, 0, 10_000_000_000, 0)],
    };
    let s = status_of(&p, &rt, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.1.0.5"));
    assert_eq!(cond(&s, "Ready").status, "True");
    let c = &s.container_statuses.as_ref().expect("statuses")[0];
    assert!(c.ready);
    assert_eq!(c.container_id.as_deref(), Some("berth://c1"));
}

#[test]
fn a_crash_looping_container_waits_with_its_exit_as_last_state() {
    let p = pod(serde_json::json!({"spec": {"containers": [{"name": "a", "image": "img"}]}}));
    let rt = PodStatus {
        sandboxes: vec![sandbox()],
        containers: vec![
            ctr("a", "c2", State::Exited, 1, 20_000_000_000, 1),
            ctr("a", "c1", State::Exited, 1, 10_000_000_000, 0),
        ],
    };
    let waiting = BTreeMap::from([(
        "a".to_string(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting failed container=a pod=p_default(u)".into(),
        },
    )]);
    let s = status_of(&p, &rt, &waiting, &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let c = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(c.restart_count, 1);
    let w = c
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .expect("waiting");
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(
        cond(&s, "Ready").reason.as_deref(),
        Some("ContainersNotReady")
    );
    assert_eq!(
        cond(&s, "ContainersReady").message.as_deref(),
        Some("containers with unready status: [a]")
    );
}

#[test]
fn completed_pods_succeed_or_fail_by_policy() {
    let mut p = pod(
        serde_json::json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "img"}]}}),
    );
    let ok = PodStatus {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("a", "c1", State::Exited, 0, 1, 0)],
    };
    let s = status_of(&p, &ok, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    let t = s.container_statuses.as_ref().expect("st")[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    let bad = PodStatus {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("a", "c1", State::Exited, 2, 1, 0)],
    };
    assert_eq!(
        status_of(&p, &bad, &BTreeMap::new(), &BTreeMap::new())
            .phase
            .as_deref(),
        Some("Failed")
    );
    p.spec.as_mut().expect("spec").restart_policy = Some("OnFailure".into());
    assert_eq!(
        status_of(&p, &bad, &BTreeMap::new(), &BTreeMap::new())
            .phase
            .as_deref(),
        Some("Running")
    );
}

#[test]
fn init_containers_hold_the_pod_pending_and_uninitialized() {
    let p = pod(serde_json::json!({"spec": {
        "initContainers": [{"name": "i", "image": "img"}],
        "containers": [{"name": "a", "image": "img"}]}}));
    let rt = PodStatus {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("i", "c1", State::Running, 0, 1, 0)],
    };
    let s = status_of(&p, &rt, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(
        cond(&s, "Initialized").message.as_deref(),
        Some("containers with incomplete status: [i]")
    );
    let a = &s.container_statuses.as_ref().expect("st")[0];
    assert_eq!(
        a.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref()),
        Some("PodInitializing")
    );
}

#[test]
fn readiness_comes_from_the_probe_of_the_same_container() {
    let p = pod(
        serde_json::json!({"spec": {"containers": [{"name": "a", "image": "img",
        "readinessProbe": {"exec": {"command": ["true"]}}}]}}),
    );
    let rt = PodStatus {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("a", "c1", State::Running, 0, 1, 0)],
    };
    let none = status_of(&p, &rt, &BTreeMap::new(), &BTreeMap::new());
    assert!(!none.container_statuses.as_ref().expect("st")[0].ready);
    let stale = BTreeMap::from([(
        "a".to_string(),
        ProbeView {
            container_id: "old".into(),
            ready: true,
            started: true,
        },
    )]);
    assert!(
        !status_of(&p, &rt, &BTreeMap::new(), &stale)
            .container_statuses
            .as_ref()
            .expect("st")[0]
            .ready
    );
    let fresh = BTreeMap::from([(
        "a".to_string(),
        ProbeView {
            container_id: "c1".into(),
            ready: true,
            started: true,
        },
    )]);
    let s = status_of(&p, &rt, &BTreeMap::new(), &fresh);
    assert!(s.container_statuses.as_ref().expect("st")[0].ready);
    assert_eq!(cond(&s, "Ready").status, "True");
}
