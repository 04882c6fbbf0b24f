//! The probe workers' timing and thresholds. Every exec probe answers at once from the
//! fake, so each probe lands on its period's tick; the tests run on tokio's clock with
//! one-second periods and look at the times rounded to whole seconds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::{Instant, sleep};

use super::fake::{exit, output};
use super::{container, exec_probe, pod, rig, target};
use crate::kubelet::prober::{ContainerProbes, ProbeFailure};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The probe times rounded to whole seconds.
fn whole(times: Vec<u128>) -> Vec<u128> {
    times.into_iter().map(|ms| (ms + 500) / 1000).collect()
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_after_threshold_once_then_holds_until_new_container() {
    let mut r = rig();
    r.pods.script(
        "live",
        &[
            output(1, "down", ""),
            output(1, "down", ""),
            output(1, "still down", ""),
        ],
    );
    let mut c = container("app");
    let mut spec = exec_probe("live", 1, 1, 3);
    spec.termination_grace_period_seconds = Some(7);
    c.liveness_probe = Some(spec);
    let p = pod(vec![c]);
    let t0 = Instant::now();
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );

    sleep(secs(1.5)).await;
    assert_eq!(whole(r.pods.times("live", t0)), [0, 1]);
    assert_eq!(
        r.manager.results("uid-1")["app"].liveness,
        None,
        "2 failures < 3"
    );
    assert_eq!(r.wakes(), 0);

    sleep(secs(1.0)).await; // t = 2.5
    let got = r.manager.results("uid-1")["app"].clone();
    assert_eq!(
        got.liveness,
        Some(ProbeFailure {
            message: "still down".into(),
            grace_period: Some(7)
        })
    );
    assert!(got.ready && got.started, "liveness does not gate readiness");
    assert_eq!(r.wakes(), 1);
    assert_eq!(
        r.events(),
        [
            "Unhealthy: Liveness probe failed: down",
            "Unhealthy: Liveness probe failed: down",
            "Unhealthy: Liveness probe failed: still down"
        ]
    );

    // On hold: the failed container is not probed again, and reported once.
    sleep(secs(3.0)).await; // t = 5.5
    assert_eq!(r.pods.times("live", t0).len(), 3);
    assert_eq!(r.wakes(), 0);

    // The restarted container: results reset, probing resumes at the next tick.
    r.pods.script("live", &[exit(0)]);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c2", SystemTime::now(), true)],
    );
    let got = r.manager.results("uid-1")["app"].clone();
    assert_eq!((got.liveness, got.container_id.as_str()), (None, "c2"));
    sleep(secs(1.0)).await; // t = 6.5
    assert_eq!(whole(r.pods.times("live", t0)), [0, 1, 2, 6]);
    let last = r
        .pods
        .calls()
        .last()
        .map(|(_, req)| req.container_id.clone());
    assert_eq!(last.as_deref(), Some("c2"));
}

#[tokio::test(start_paused = true)]
async fn readiness_false_until_success_threshold() {
    let mut r = rig();
    r.pods.script(
        "ready",
        &[
            output(1, "not yet", ""),
            exit(0),
            exit(0),
            output(1, "flaky", ""),
            exit(0),
        ],
    );
    let mut c = container("app");
    c.readiness_probe = Some(exec_probe("ready", 1, 2, 1));
    let p = pod(vec![c]);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    assert_eq!(
        r.manager.results("uid-1")["app"],
        ContainerProbes {
            container_id: "c1".into(),
            ready: false,
            started: true,
            liveness: None,
            startup: None,
            readiness_last: None,
        }
    );

    sleep(secs(0.5)).await;
    let got = r.manager.results("uid-1")["app"].clone();
    assert!(!got.ready);
    assert_eq!(got.readiness_last.as_deref(), Some("not yet"));
    sleep(secs(1.0)).await; // t = 1.5: one success, threshold 2
    assert!(!r.manager.results("uid-1")["app"].ready);
    assert_eq!(r.wakes(), 0);
    sleep(secs(1.0)).await; // t = 2.5: second success
    let got = r.manager.results("uid-1")["app"].clone();
    assert!(got.ready);
    assert_eq!(got.readiness_last, None);
    assert_eq!(r.wakes(), 1);
    sleep(secs(1.0)).await; // t = 3.5: one failure, threshold 1
    let got = r.manager.results("uid-1")["app"].clone();
    assert!(!got.ready);
    assert_eq!(got.readiness_last.as_deref(), Some("flaky"));
    assert_eq!(r.wakes(), 1);
    // Readiness never holds: it keeps probing, and needs two successes again.
    sleep(secs(1.0)).await; // t = 4.5
    assert_eq!(r.pods.calls().len(), 5);
    assert!(!r.manager.results("uid-1")["app"].ready);
    sleep(secs(1.0)).await; // t = 5.5
    assert!(r.manager.results("uid-1")["app"].ready);
}

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness() {
    let mut r = rig();
    r.pods.script("start", &[exit(1), exit(1), exit(0)]);
    let mut c = container("app");
    c.startup_probe = Some(exec_probe("start", 1, 1, 10));
    c.liveness_probe = Some(exec_probe("live", 3, 1, 3));
    c.readiness_probe = Some(exec_probe("ready", 30, 1, 3));
    let p = pod(vec![c]);
    let t0 = Instant::now();
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );

    sleep(secs(1.5)).await;
    let got = r.manager.results("uid-1")["app"].clone();
    assert!(!got.started && !got.ready);
    assert!(r.pods.times("live", t0).is_empty() && r.pods.times("ready", t0).is_empty());
    assert_eq!(r.wakes(), 0);

    sleep(secs(1.0)).await; // t = 2.5: startup succeeded at 2
    assert_eq!(whole(r.pods.times("start", t0)), [0, 1, 2]);
    // Readiness runs at once, not at its next tick (30 s).
    assert_eq!(whole(r.pods.times("ready", t0)), [2]);
    let got = r.manager.results("uid-1")["app"].clone();
    assert!(got.started && got.ready);

    sleep(secs(4.0)).await; // t = 6.5
    // Startup is done for this container; liveness runs on its own period.
    assert_eq!(r.pods.times("start", t0).len(), 3);
    assert_eq!(whole(r.pods.times("live", t0)), [3, 6]);
}

#[tokio::test(start_paused = true)]
async fn startup_gives_up_after_failure_threshold() {
    let mut r = rig();
    r.pods.script("start", &[output(1, "booting", "")]);
    let mut c = container("app");
    let mut spec = exec_probe("start", 1, 1, 3);
    spec.termination_grace_period_seconds = Some(1);
    c.startup_probe = Some(spec);
    c.liveness_probe = Some(exec_probe("live", 1, 1, 3));
    let p = pod(vec![c]);
    let t0 = Instant::now();
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    sleep(secs(4.5)).await;
    let got = r.manager.results("uid-1")["app"].clone();
    assert_eq!(
        got.startup,
        Some(ProbeFailure {
            message: "booting".into(),
            grace_period: Some(1)
        })
    );
    assert!(!got.started && !got.ready);
    assert_eq!(whole(r.pods.times("start", t0)), [0, 1, 2], "then on hold");
    assert!(r.pods.times("live", t0).is_empty());
    assert_eq!(r.wakes(), 1);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_counts_from_started_at() {
    let r = rig();
    let mut c = container("app");
    let mut spec = exec_probe("live", 2, 1, 3);
    spec.initial_delay_seconds = Some(4);
    c.liveness_probe = Some(spec);
    let p = pod(vec![c]);
    let t0 = Instant::now();
    // Started 1 s ago: due 3 s from now, so the tick at 4 s is the first probe.
    let started = SystemTime::now() - Duration::from_secs(1);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", started, true)],
    );
    sleep(secs(6.5)).await;
    assert_eq!(whole(r.pods.times("live", t0)), [4, 6]);
}

#[tokio::test(start_paused = true)]
async fn old_container_gets_a_random_start_within_one_period() {
    let r = rig();
    let mut c = container("app");
    c.liveness_probe = Some(exec_probe("live", 2, 1, 3));
    let p = pod(vec![c]);
    let t0 = Instant::now();
    let started = SystemTime::now() - Duration::from_secs(3600);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", started, true)],
    );
    sleep(secs(4.5)).await;
    let times = r.pods.times("live", t0);
    assert!(times.len() >= 2, "{times:?}");
    assert!(times[0] < 2000, "{times:?}");
    let step = times[1] - times[0];
    assert!(
        (1800..2200).contains(&step),
        "the period keeps its phase: {times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn not_running_container_is_not_probed() {
    let r = rig();
    let mut c = container("app");
    c.liveness_probe = Some(exec_probe("live", 1, 1, 1));
    c.readiness_probe = Some(exec_probe("ready", 1, 1, 1));
    let p = pod(vec![c]);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), false)],
    );
    sleep(secs(2.5)).await;
    assert!(r.pods.calls().is_empty());
    let got = r.manager.results("uid-1")["app"].clone();
    assert!(!got.ready && !got.started && got.liveness.is_none());
}

#[tokio::test(start_paused = true)]
async fn remove_pod_stops_its_workers() {
    let r = rig();
    let mut c = container("app");
    c.liveness_probe = Some(exec_probe("live", 1, 1, 3));
    let p = pod(vec![c]);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    sleep(secs(1.5)).await;
    assert_eq!(r.pods.calls().len(), 2);
    r.manager.remove_pod("uid-1");
    sleep(secs(2.0)).await;
    assert_eq!(r.pods.calls().len(), 2);
    assert!(r.manager.results("uid-1").is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_stops_every_worker() {
    let r = rig();
    let mut c = container("app");
    c.liveness_probe = Some(exec_probe("live", 1, 1, 3));
    let p = pod(vec![c]);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    sleep(secs(0.5)).await;
    let pods = r.pods.clone();
    drop(r);
    sleep(secs(2.0)).await;
    assert_eq!(pods.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn container_without_probes_is_ready_and_started() {
    let r = rig();
    let p = pod(vec![container("app"), container("side")]);
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    let got = r.manager.results("uid-1");
    assert_eq!(got.len(), 1, "only listed containers");
    assert!(got["app"].ready && got["app"].started);
}

#[tokio::test(start_paused = true)]
async fn deleted_pod_stops_liveness_quietly() {
    let mut r = rig();
    r.pods.script("live", &[exit(1)]);
    let mut c = container("app");
    c.liveness_probe = Some(exec_probe("live", 1, 1, 1));
    c.readiness_probe = Some(exec_probe("ready", 1, 1, 1));
    let mut p = pod(vec![c]);
    p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::constant(
        1_700_000_000,
        0,
    )));
    let t0 = Instant::now();
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    sleep(secs(2.5)).await;
    assert!(r.pods.times("live", t0).is_empty());
    assert_eq!(
        r.pods.times("ready", t0).len(),
        3,
        "readiness keeps probing"
    );
    assert_eq!(r.manager.results("uid-1")["app"].liveness, None);
    assert!(r.events().is_empty());
}

#[tokio::test(start_paused = true)]
async fn changed_probe_spec_restarts_its_worker() {
    let r = rig();
    let mut c = container("app");
    c.liveness_probe = Some(exec_probe("live", 2, 1, 3));
    let p = pod(vec![c.clone()]);
    let t0 = Instant::now();
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    sleep(secs(1.0)).await;
    c.liveness_probe = Some(exec_probe("live2", 2, 1, 3));
    r.manager.update_pod(
        &Arc::new(pod(vec![c])),
        None,
        &[target("app", "c1", SystemTime::now(), true)],
    );
    sleep(secs(2.5)).await;
    assert_eq!(whole(r.pods.times("live", t0)), [0]);
    assert_eq!(whole(r.pods.times("live2", t0)), [1, 3]);
}

#[tokio::test(start_paused = true)]
async fn sidecar_probes_run_and_unlisted_containers_are_dropped() {
    let r = rig();
    let mut side = container("proxy");
    side.restart_policy = Some("Always".into());
    side.readiness_probe = Some(exec_probe("side-ready", 1, 1, 1));
    let mut app = container("app");
    app.liveness_probe = Some(exec_probe("live", 1, 1, 3));
    let mut p = pod(vec![app]);
    if let Some(spec) = p.spec.as_mut() {
        spec.init_containers = Some(vec![side]);
    }
    let t0 = Instant::now();
    let now = SystemTime::now();
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[
            target("proxy", "s1", now, true),
            target("app", "c1", now, true),
        ],
    );
    sleep(secs(0.5)).await;
    assert_eq!(whole(r.pods.times("side-ready", t0)), [0]);
    assert!(r.manager.results("uid-1")["proxy"].ready);

    // The app container is no longer listed: its worker stops, its results go.
    r.manager.update_pod(
        &Arc::new(p.clone()),
        None,
        &[target("proxy", "s1", now, true)],
    );
    sleep(secs(2.0)).await; // t = 2.5
    assert_eq!(whole(r.pods.times("live", t0)), [0]);
    assert_eq!(whole(r.pods.times("side-ready", t0)), [0, 1, 2]);
    let got = r.manager.results("uid-1");
    assert_eq!(got.keys().collect::<Vec<_>>(), ["proxy"]);
}

/// A status update of a running container that is not yet ready probes readiness at
/// once, not at the next tick; a ready one waits for its tick (upstream's manual trigger
/// in UpdatePodStatus).
#[tokio::test(start_paused = true)]
async fn a_status_update_probes_a_not_yet_ready_container_at_once() {
    let r = rig();
    r.pods.script("ready", &[exit(1), exit(0), exit(0)]);
    let mut c = container("app");
    c.readiness_probe = Some(exec_probe("ready", 10, 1, 3));
    let p = Arc::new(pod(vec![c]));
    let t = [target("app", "c1", SystemTime::now(), true)];
    let t0 = Instant::now();
    r.manager.update_pod(&p, None, &t);
    sleep(secs(2.5)).await;
    assert_eq!(
        whole(r.pods.times("ready", t0)),
        [0],
        "the first probe, at the start"
    );
    r.manager.update_pod(&p, None, &t);
    sleep(secs(0.5)).await;
    assert_eq!(
        whole(r.pods.times("ready", t0)),
        [0, 3],
        "at the update, not at 10"
    );
    assert!(r.manager.results("uid-1")["app"].ready);
    r.manager.update_pod(&p, None, &t);
    sleep(secs(1.0)).await;
    assert_eq!(
        whole(r.pods.times("ready", t0)),
        [0, 3],
        "ready: no probe before the tick"
    );
}
