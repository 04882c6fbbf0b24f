//! The grpc handler against tonic-health servers on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{GRPCAction, Probe};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use super::fake::FakePods;
use super::{SECOND, container, probe_once};
use crate::kubelet::Recorder;
use crate::kubelet::prober::grpc::{go_duration, probe};
use crate::kubelet::prober::probe::{ProbeResult, Probed};
use crate::kubelet::prober::results::Verdict;

/// A health server where "" and "db" serve and "cache" does not.
async fn health_server() -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("db", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("cache", ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        // The reporter lives as long as the server.
        let _reporter = reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    addr
}

#[tokio::test]
async fn serving_is_success() {
    let addr = health_server().await.to_string();
    assert_eq!(
        probe(&addr, "", SECOND).await,
        Probed::success("service is running".into())
    );
    assert_eq!(
        probe(&addr, "db", SECOND).await.result,
        ProbeResult::Success
    );
}

#[tokio::test]
async fn not_serving_is_failure() {
    let addr = health_server().await.to_string();
    assert_eq!(
        probe(&addr, "cache", SECOND).await,
        Probed::failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
}

#[tokio::test]
async fn unknown_service_is_an_rpc_failure() {
    let addr = health_server().await.to_string();
    let got = probe(&addr, "nope", SECOND).await;
    assert_eq!(got.result, ProbeResult::Failure);
    assert!(
        got.output
            .starts_with("error: health rpc probe failed: rpc error: code = NotFound"),
        "{}",
        got.output
    );
}

#[tokio::test]
async fn nothing_listening_fails_to_connect() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let got = probe(&addr, "", SECOND).await;
    assert_eq!(got.result, ProbeResult::Failure);
    assert!(
        got.output
            .starts_with(&format!("error: failed to connect service at \"{addr}\": ")),
        "{}",
        got.output
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let started = std::time::Instant::now();
    let got = probe(&addr, "", SECOND).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(got.result, ProbeResult::Failure);
    assert!(got.output.starts_with("timeout: "), "{}", got.output);
    assert!(got.output.contains("within 1s"), "{}", got.output);
}

#[tokio::test]
async fn grpc_probe_uses_pod_ip_port_and_service() {
    let addr = health_server().await;
    let spec = Probe {
        grpc: Some(GRPCAction {
            port: i32::from(addr.port()),
            service: Some("cache".into()),
        }),
        ..Default::default()
    };
    let got = probe_once(
        &FakePods::default(),
        &Recorder::new(),
        &container("app"),
        &spec,
    )
    .await;
    assert_eq!(
        got.ok(),
        Some((
            Verdict::Failure,
            "service unhealthy (responded with \"NOT_SERVING\")".to_string()
        ))
    );
}

#[test]
fn durations_print_as_go_does() {
    assert_eq!(go_duration(Duration::from_secs(1)), "1s");
    assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
}
