//! The exec handler against the recording PodApi fake.

use std::time::Duration;

use k8s_openapi::api::core::v1::EnvVar;
use tonic::Code;

use super::fake::{Answer, FakePods, exit, output};
use super::{container, exec_probe, probe_once};
use crate::kubelet::Recorder;
use crate::kubelet::prober::exec::{MAX_OUTPUT, expand_static, probe};
use crate::kubelet::prober::probe::{ProbeResult, Probed};
use crate::kubelet::prober::results::Verdict;

fn cmd(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

#[tokio::test]
async fn exit_zero_is_success_with_output() {
    let pods = FakePods::default();
    pods.script("cat /tmp/ok", &[output(0, "fine\n", "")]);
    let got = probe(&pods, "cid", cmd("cat /tmp/ok"), Duration::from_secs(3)).await;
    assert_eq!(got.ok(), Some(Probed::success("fine\n".into())));
    let calls = pods.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1.container_id, "cid");
    assert_eq!(calls[0].1.cmd, cmd("cat /tmp/ok"));
    assert_eq!(calls[0].1.timeout, 3, "ExecSync timeout is timeoutSeconds");
}

#[tokio::test]
async fn nonzero_exit_is_failure_with_stdout_then_stderr() {
    let pods = FakePods::default();
    pods.script(
        "check",
        &[output(2, "out ", "cat: can't open '/tmp/healthy'")],
    );
    let got = probe(&pods, "cid", cmd("check"), Duration::from_secs(1)).await;
    assert_eq!(
        got.ok(),
        Some(Probed::failure("out cat: can't open '/tmp/healthy'".into()))
    );
}

#[tokio::test]
async fn deadline_exceeded_is_a_timed_out_failure() {
    let pods = FakePods::default();
    pods.script("sleep 10", &[Answer::Error(Code::DeadlineExceeded)]);
    let got = probe(&pods, "cid", cmd("sleep 10"), Duration::from_secs(1)).await;
    assert_eq!(
        got.ok(),
        Some(Probed::failure("command \"sleep 10\" timed out".into()))
    );
}

#[tokio::test]
async fn other_runtime_errors_are_errors() {
    let pods = FakePods::default();
    pods.script("x", &[Answer::Error(Code::NotFound)]);
    let got = probe(&pods, "cid", cmd("x"), Duration::from_secs(1)).await;
    assert!(got.is_err());
}

#[tokio::test]
async fn output_is_cut_at_10_kib() {
    let pods = FakePods::default();
    let big = "a".repeat(MAX_OUTPUT + 500);
    pods.script("big", &[output(1, &big, "tail")]);
    let got = probe(&pods, "cid", cmd("big"), Duration::from_secs(1))
        .await
        .ok();
    let got = got.map(|p| (p.result, p.output.len()));
    assert_eq!(got, Some((ProbeResult::Failure, MAX_OUTPUT)));
}

#[test]
fn command_expands_plain_env_only() {
    let mut c = container("app");
    c.env = Some(vec![
        EnvVar {
            name: "FILE".into(),
            value: Some("/tmp/healthy".into()),
            ..Default::default()
        },
        EnvVar {
            name: "FROM_SECRET".into(),
            value: None,
            value_from: Some(Default::default()),
        },
    ]);
    let got = expand_static(
        &cmd("cat $(FILE) $(FROM_SECRET) $(NOPE) $$(FILE) cost$5 $(open"),
        &c,
    );
    assert_eq!(
        got,
        cmd("cat /tmp/healthy $(FROM_SECRET) $(NOPE) $(FILE) cost$5 $(open")
    );
}

#[tokio::test]
async fn failure_records_unhealthy_event_with_output() {
    let pods = FakePods::default();
    pods.script("check", &[output(1, "", "no such file")]);
    let recorder = Recorder::new();
    let mut events = recorder.subscribe();
    let got = probe_once(
        &pods,
        &recorder,
        &container("app"),
        &exec_probe("check", 10, 1, 3),
    )
    .await;
    assert_eq!(
        got.ok(),
        Some((Verdict::Failure, "no such file".to_string()))
    );
    let e = events.try_recv().ok();
    let e = e.map(|e| {
        let c = e.object.container().map(String::from);
        (e.reason, e.message, c, e.object.uid)
    });
    assert_eq!(
        e,
        Some((
            "Unhealthy".to_string(),
            "Liveness probe failed: no such file".to_string(),
            Some("app".to_string()),
            "uid-1".to_string()
        ))
    );
}

#[tokio::test]
async fn errored_probe_is_retried_three_times_then_reported() {
    let pods = FakePods::default();
    pods.script("check", &[Answer::Error(Code::Unavailable)]);
    let recorder = Recorder::new();
    let mut events = recorder.subscribe();
    let got = probe_once(
        &pods,
        &recorder,
        &container("app"),
        &exec_probe("check", 10, 1, 3),
    )
    .await;
    assert!(got.is_err());
    assert_eq!(pods.calls().len(), 3);
    let e = events
        .try_recv()
        .ok()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(
        e.starts_with("Liveness probe errored and resulted in unknown state: pod default/web container app: livenessProbe.exec:"),
        "{e}"
    );
}

#[tokio::test]
async fn error_then_success_uses_the_success() {
    let pods = FakePods::default();
    pods.script("check", &[Answer::Error(Code::Unavailable), exit(0)]);
    let recorder = Recorder::new();
    let got = probe_once(
        &pods,
        &recorder,
        &container("app"),
        &exec_probe("check", 10, 1, 3),
    )
    .await;
    assert_eq!(got.ok(), Some((Verdict::Success, String::new())));
    assert_eq!(pods.calls().len(), 2);
}
