//! The grpc probe (upstream's pkg/probe/grpc): grpc.health.v1 Health/Check over plain
//! HTTP/2 with the probe's service name; SERVING is success. Connecting and the call
//! share the one timeout.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::http::PROBE_USER_AGENT;
use super::probe::Probed;

/// Checks `service` at `addr` (`host:port`) within `timeout`.
pub(crate) async fn probe(addr: &str, service: &str, timeout: Duration) -> Probed {
    let deadline = Instant::now() + timeout;
    let within = go_duration(timeout);
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e,
        Err(e) => {
            return Probed::failure(format!("error: failed to connect service at {addr:?}: {e}"));
        }
    };
    let endpoint = match endpoint.user_agent(PROBE_USER_AGENT) {
        Ok(e) => e,
        Err(e) => {
            return Probed::failure(format!("error: failed to connect service at {addr:?}: {e}"));
        }
    };
    let channel = match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Err(_) => {
            return Probed::failure(format!(
                "timeout: failed to connect service {addr:?} within {within}: context deadline exceeded"
            ));
        }
        Ok(Err(e)) => {
            return Probed::failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            ));
        }
        Ok(Ok(channel)) => channel,
    };
    let mut client = HealthClient::new(channel);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    req.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let rpc_timeout = || format!("timeout: health rpc did not complete within {within}");
    let answer = match tokio::time::timeout_at(deadline, client.check(req)).await {
        Err(_) => return Probed::failure(rpc_timeout()),
        Ok(answer) => answer,
    };
    match answer {
        Ok(resp) => {
            let status = resp.into_inner().status();
            if status == ServingStatus::Serving {
                Probed::success("service is running".to_string())
            } else {
                Probed::failure(format!(
                    "service unhealthy (responded with {:?})",
                    status.as_str_name()
                ))
            }
        }
        Err(s) if s.code() == Code::Unimplemented => Probed::failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        // tonic's own deadline ends the call as Cancelled ("Timeout expired").
        Err(s) if s.code() == Code::DeadlineExceeded || Instant::now() >= deadline => {
            Probed::failure(rpc_timeout())
        }
        Err(s) => Probed::failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        )),
    }
}

/// A duration as Go's %v prints whole seconds: "1s", "1m30s", "1h0m0s".
pub(crate) fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}
