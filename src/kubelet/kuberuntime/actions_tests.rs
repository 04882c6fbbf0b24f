use super::*;
use crate::kubelet::kuberuntime::status::SandboxStatus;

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

fn sandbox(ready: bool, attempt: u32) -> SandboxStatus {
    SandboxStatus {
        id: format!("sb{attempt}"),
        ready,
        attempt,
        created_at: i64::from(attempt) + 1,
        ips: vec!["10.1.0.2".into()],
        host_network: false,
    }
}

fn ctr(name: &str, id: &str, state: State, exit: i32, created: i64) -> ContainerStatus {
    ContainerStatus {
        id: id.into(),
        name: name.into(),
        state,
        created_at: created,
        started_at: created,
        finished_at: created,
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        image: String::new(),
        image_ref: String::new(),
        image_id: String::new(),
        restart_count: 0,
        hash: String::new(),
        annotations: Default::default(),
        mounts: vec![],
    }
}

fn status(sandboxes: Vec<SandboxStatus>, mut containers: Vec<ContainerStatus>) -> PodStatus {
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    PodStatus {
        sandboxes,
        containers,
    }
}

fn two_containers(policy: &str) -> Pod {
    pod(serde_json::json!({"spec": {"restartPolicy": policy,
        "containers": [{"name": "a"}, {"name": "b"}]}}))
}

#[test]
fn a_new_pod_gets_a_sandbox_and_all_its_containers() {
    let a = compute(
        &two_containers("Always"),
        &PodStatus::default(),
        &Probes::new(),
    );
    assert!(a.create_sandbox);
    assert_eq!(a.attempt, 0);
    assert_eq!(a.containers_to_start, [0, 1]);
}

#[test]
fn a_running_pod_needs_nothing() {
    let st = status(
        vec![sandbox(true, 0)],
        vec![
            ctr("a", "1", State::Running, 0, 1),
            ctr("b", "2", State::Running, 0, 2),
        ],
    );
    let a = compute(&two_containers("Always"), &st, &Probes::new());
    assert_eq!(
        a,
        PodActions {
            sandbox_id: Some("sb0".into()),
            ..Default::default()
        }
    );
}

#[test]
fn exited_containers_restart_by_policy() {
    let st = status(
        vec![sandbox(true, 0)],
        vec![
            ctr("a", "1", State::Exited, 0, 1),
            ctr("b", "2", State::Exited, 3, 2),
        ],
    );
    assert_eq!(
        compute(&two_containers("Always"), &st, &Probes::new()).containers_to_start,
        [0, 1]
    );
    assert_eq!(
        compute(&two_containers("OnFailure"), &st, &Probes::new()).containers_to_start,
        [1]
    );
    let never = compute(&two_containers("Never"), &st, &Probes::new());
    assert!(never.containers_to_start.is_empty());
    assert!(never.kill_pod, "a pod with nothing left to run is stopped");
}

#[test]
fn a_dead_sandbox_is_replaced_with_the_next_attempt() {
    let st = status(
        vec![sandbox(false, 2)],
        vec![ctr("a", "1", State::Exited, 0, 1)],
    );
    let a = compute(&two_containers("Always"), &st, &Probes::new());
    assert!(a.create_sandbox && a.kill_pod);
    assert_eq!(a.attempt, 3);
    let never = compute(&two_containers("Never"), &st, &Probes::new());
    assert!(
        !never.create_sandbox,
        "a Never pod that ran gets no new sandbox"
    );
}

#[test]
fn init_containers_run_one_at_a_time_and_failures_follow_the_policy() {
    let p = |policy: &str| {
        pod(serde_json::json!({"spec": {"restartPolicy": policy,
            "initContainers": [{"name": "i1"}, {"name": "i2"}],
            "containers": [{"name": "a"}]}}))
    };
    let st = status(
        vec![sandbox(true, 0)],
        vec![ctr("i1", "1", State::Exited, 0, 1)],
    );
    let a = compute(&p("Always"), &st, &Probes::new());
    assert_eq!(
        (a.init_to_start.as_slice(), a.containers_to_start.as_slice()),
        (&[1usize][..], &[][..])
    );
    let running = status(
        vec![sandbox(true, 0)],
        vec![
            ctr("i1", "1", State::Exited, 0, 1),
            ctr("i2", "2", State::Running, 0, 2),
        ],
    );
    let a = compute(&p("Always"), &running, &Probes::new());
    assert!(a.init_to_start.is_empty() && a.containers_to_start.is_empty());
    let failed = status(
        vec![sandbox(true, 0)],
        vec![ctr("i1", "1", State::Exited, 1, 1)],
    );
    assert_eq!(
        compute(&p("Always"), &failed, &Probes::new()).init_to_start,
        [0]
    );
    let never = compute(&p("Never"), &failed, &Probes::new());
    assert!(never.init_failed && never.kill_pod);
    let done = status(
        vec![sandbox(true, 0)],
        vec![
            ctr("i1", "1", State::Exited, 0, 1),
            ctr("i2", "2", State::Exited, 0, 2),
        ],
    );
    assert_eq!(
        compute(&p("Always"), &done, &Probes::new()).containers_to_start,
        [0]
    );
}

#[test]
fn sidecars_start_in_order_each_once_started() {
    let p = pod(serde_json::json!({"spec": {
        "initContainers": [{"name": "s1", "restartPolicy": "Always", "startupProbe": {"exec": {"command": ["true"]}}},
                           {"name": "s2", "restartPolicy": "Always"}],
        "containers": [{"name": "a"}]}}));
    let st = status(
        vec![sandbox(true, 0)],
        vec![ctr("s1", "1", State::Running, 0, 1)],
    );
    let not_started = Probes::from([(
        "s1".to_string(),
        ProbeState {
            container_id: "1".into(),
            ..Default::default()
        },
    )]);
    let a = compute(&p, &st, &not_started);
    assert!(
        a.init_to_start.is_empty(),
        "s2 waits for s1's startup probe"
    );
    let started = Probes::from([(
        "s1".to_string(),
        ProbeState {
            container_id: "1".into(),
            started: true,
            ..Default::default()
        },
    )]);
    assert_eq!(compute(&p, &st, &started).init_to_start, [1]);
    let both = status(
        vec![sandbox(true, 0)],
        vec![
            ctr("s1", "1", State::Running, 0, 1),
            ctr("s2", "2", State::Running, 0, 2),
        ],
    );
    assert_eq!(compute(&p, &both, &started).containers_to_start, [0]);
    // A sidecar that exits is restarted even when the pod's policy is Never.
    let mut never = p.clone();
    never.spec.as_mut().expect("spec").restart_policy = Some("Never".into());
    let exited = status(
        vec![sandbox(true, 0)],
        vec![ctr("s1", "1", State::Exited, 1, 1)],
    );
    assert_eq!(compute(&never, &exited, &Probes::new()).init_to_start, [0]);
}

#[test]
fn a_liveness_failure_kills_and_restarts_the_same_container_only() {
    let st = status(
        vec![sandbox(true, 0)],
        vec![
            ctr("a", "1", State::Running, 0, 1),
            ctr("b", "2", State::Running, 0, 2),
        ],
    );
    let probes = Probes::from([
        (
            "a".to_string(),
            ProbeState {
                container_id: "1".into(),
                started: true,
                liveness_failed: Some(("HTTP probe failed with statuscode: 500".into(), Some(5))),
                ..Default::default()
            },
        ),
        (
            "b".to_string(),
            ProbeState {
                container_id: "old".into(),
                started: true,
                liveness_failed: Some(("stale".into(), None)),
                ..Default::default()
            },
        ),
    ]);
    let a = compute(&two_containers("Always"), &st, &probes);
    assert_eq!(a.containers_to_kill.len(), 1);
    assert_eq!(a.containers_to_kill[0].id, "1");
    assert_eq!(a.containers_to_kill[0].grace_period, Some(5));
    assert!(
        a.containers_to_kill[0]
            .message
            .starts_with("Container a failed liveness probe, will be restarted")
    );
    assert_eq!(a.containers_to_start, [0]);
    let never = compute(&two_containers("Never"), &st, &probes);
    assert!(never.containers_to_start.is_empty());
}
