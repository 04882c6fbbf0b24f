//! The container view computed from stored verdicts.

use std::time::SystemTime;

use super::{container, exec_probe, target};
use crate::kubelet::prober::ProbeFailure;
use crate::kubelet::prober::results::{ContainerResults, Slot, Verdict};

fn failed(message: &str) -> Slot {
    Slot {
        verdict: Verdict::Failure,
        failure: Some(ProbeFailure {
            message: message.into(),
            grace_period: None,
        }),
    }
}

#[test]
fn verdicts_of_an_older_container_do_not_answer_for_a_new_one() {
    let mut c = container("app");
    c.startup_probe = Some(exec_probe("start", 1, 1, 3));
    c.readiness_probe = Some(exec_probe("ready", 1, 1, 3));
    c.liveness_probe = Some(exec_probe("live", 1, 1, 3));
    let mut r = ContainerResults::for_id("old");
    r.startup = Some(Slot::plain(Verdict::Success));
    r.readiness = Some(Slot::plain(Verdict::Success));
    r.liveness = Some(failed("dead"));

    let old = r.view(&c, &target("app", "old", SystemTime::now(), true));
    assert!(old.started && old.ready);
    assert_eq!(old.liveness.map(|f| f.message), Some("dead".to_string()));

    let new = r.view(&c, &target("app", "new", SystemTime::now(), true));
    assert!(!new.started && !new.ready && new.liveness.is_none());
    assert_eq!(new.container_id, "new");
}

#[test]
fn not_running_is_neither_started_nor_ready() {
    let c = container("app");
    let r = ContainerResults::for_id("c1");
    let v = r.view(&c, &target("app", "c1", SystemTime::now(), false));
    assert!(!v.started && !v.ready);
    let v = r.view(&c, &target("app", "c1", SystemTime::now(), true));
    assert!(
        v.started && v.ready,
        "no probes: started and ready once running"
    );
}

#[test]
fn readiness_waits_for_startup() {
    let mut c = container("app");
    c.startup_probe = Some(exec_probe("start", 1, 1, 3));
    c.readiness_probe = Some(exec_probe("ready", 1, 1, 3));
    let mut r = ContainerResults::for_id("c1");
    r.readiness = Some(Slot::plain(Verdict::Success));
    let v = r.view(&c, &target("app", "c1", SystemTime::now(), true));
    assert!(!v.started && !v.ready);
    r.startup = Some(failed("slow"));
    let v = r.view(&c, &target("app", "c1", SystemTime::now(), true));
    assert_eq!(v.startup.map(|f| f.message), Some("slow".to_string()));
}
