//! The tcpSocket handler against listeners on 127.0.0.1.

use k8s_openapi::api::core::v1::{ContainerPort, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpListener;

use super::fake::FakePods;
use super::{SECOND, container, probe_once};
use crate::kubelet::Recorder;
use crate::kubelet::prober::probe::Probed;
use crate::kubelet::prober::results::Verdict;
use crate::kubelet::prober::tcp::probe;

#[tokio::test]
async fn open_port_is_success() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    assert_eq!(probe(&addr, SECOND).await, Probed::success(String::new()));
    // The probe really connected.
    let accepted = tokio::time::timeout(SECOND, l.accept()).await;
    assert!(matches!(accepted, Ok(Ok(_))));
}

#[tokio::test]
async fn closed_port_is_refused() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    assert_eq!(
        probe(&addr, SECOND).await,
        Probed::failure(format!("dial tcp {addr}: connect: connection refused"))
    );
}

#[tokio::test]
async fn named_port_and_pod_ip_are_used() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let mut c = container("db");
    c.ports = Some(vec![ContainerPort {
        name: Some("sql".into()),
        container_port: i32::from(port),
        ..Default::default()
    }]);
    let spec = Probe {
        tcp_socket: Some(TCPSocketAction {
            host: None,
            port: IntOrString::String("sql".into()),
        }),
        ..Default::default()
    };
    let got = probe_once(&FakePods::default(), &Recorder::new(), &c, &spec).await;
    assert_eq!(got.ok(), Some((Verdict::Success, String::new())));
}
