//! Tests of the prober: each handler against real servers on 127.0.0.1 (HTTP, TCP,
//! gRPC health) or the recording PodApi fake (exec); the workers' timing and thresholds
//! on tokio's paused clock.

mod exec;
mod fake;
mod grpc;
mod http;
mod results;
mod tcp;
mod worker;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, ExecAction, Pod, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::{broadcast, mpsc};

use super::probe::{Env, Target};
use super::{ProbeManager, ProbeTarget};
use crate::kubelet::{Event, Recorder};
use fake::FakePods;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An exec probe running `cmd` (split on spaces) with the given timings.
pub fn exec_probe(cmd: &str, period: i32, success: i32, failure: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(cmd.split(' ').map(str::to_string).collect()),
        }),
        period_seconds: Some(period),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

pub fn container(name: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some("busybox".to_string()),
        ..Default::default()
    }
}

pub fn pod(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".to_string()),
            namespace: Some("default".to_string()),
            uid: Some("uid-1".to_string()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn target(name: &str, id: &str, started_at: SystemTime, running: bool) -> ProbeTarget {
    ProbeTarget {
        name: name.to_string(),
        id: id.to_string(),
        started_at,
        running,
    }
}

/// A manager over the fake runtime, with its wake channel and an event subscription.
pub struct Rig {
    pub manager: ProbeManager,
    pub pods: Arc<FakePods>,
    pub wake: mpsc::UnboundedReceiver<String>,
    pub events: broadcast::Receiver<Event>,
}

pub fn rig() -> Rig {
    let pods = Arc::new(FakePods::default());
    let recorder = Recorder::new();
    let events = recorder.subscribe();
    let (tx, wake) = mpsc::unbounded_channel();
    Rig {
        manager: ProbeManager::new(pods.clone(), recorder, tx),
        pods,
        wake,
        events,
    }
}

impl Rig {
    /// The wakes sent so far.
    pub fn wakes(&mut self) -> usize {
        let mut n = 0;
        while self.wake.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    /// The events recorded so far, as "reason: message".
    pub fn events(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(format!("{}: {}", e.reason, e.message));
        }
        out
    }
}

/// Runs one probe of `spec` against container `c` of a one-container pod.
pub async fn probe_once(
    pods: &FakePods,
    recorder: &Recorder,
    c: &Container,
    spec: &Probe,
) -> Result<(super::results::Verdict, String), super::ProbeError> {
    let p = pod(vec![c.clone()]);
    let http = super::http::client().map_err(|e| e.to_string());
    let env = Env {
        pods,
        http: &http,
        recorder,
    };
    let t = Target {
        pod: &p,
        container: c,
        container_id: "cid",
        pod_ip: Some(LOCALHOST),
    };
    super::probe::probe(&env, super::ProbeKind::Liveness, spec, &t).await
}

pub const SECOND: Duration = Duration::from_secs(1);

/// The pod workers share the manager across tasks and threads.
#[test]
fn manager_is_send_and_sync() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<ProbeManager>();
}
