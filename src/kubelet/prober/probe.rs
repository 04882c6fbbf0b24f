//! One probe of one container (upstream's prober.go): picks the handler, retries a probe
//! that could not run, records the Unhealthy / ProbeWarning events and turns the outcome
//! into a verdict.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::results::Verdict;
use super::{ProbeError, ProbeKind, exec, grpc, http, port, tcp};
use crate::cri::api::PodApi;
use crate::kubelet::{Event, EventKind, Recorder};

/// A probe that could not run is tried this many times before it counts as errored.
const MAX_PROBE_RETRIES: usize = 3;

/// A handler's answer (upstream's probe.Result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    Success,
    Warning,
    Failure,
    Unknown,
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeResult::Success => "success",
            ProbeResult::Warning => "warning",
            ProbeResult::Failure => "failure",
            ProbeResult::Unknown => "unknown",
        })
    }
}

/// A handler's answer and its output (the event message's tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probed {
    pub result: ProbeResult,
    pub output: String,
}

impl Probed {
    pub fn success(output: String) -> Self {
        Probed {
            result: ProbeResult::Success,
            output,
        }
    }
    pub fn warning(output: String) -> Self {
        Probed {
            result: ProbeResult::Warning,
            output,
        }
    }
    pub fn failure(output: String) -> Self {
        Probed {
            result: ProbeResult::Failure,
            output,
        }
    }
}

/// What a probe needs from the kubelet.
pub(crate) struct Env<'a> {
    pub pods: &'a dyn PodApi,
    pub http: &'a Result<reqwest::Client, String>,
    pub recorder: &'a Recorder,
}

/// The container a probe runs against.
pub(crate) struct Target<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub container_id: &'a str,
    pub pod_ip: Option<IpAddr>,
}

impl Target<'_> {
    fn pod_name(&self) -> String {
        let meta = &self.pod.metadata;
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or("")
        )
    }

    fn event(&self, env: &Env<'_>, reason: &str, message: String) {
        env.recorder.record(Event::pod(
            self.pod,
            Some(&self.container.name),
            EventKind::Warning,
            reason,
            message,
        ));
    }
}

/// The timeout a probe runs with (timeoutSeconds, default 1).
pub(crate) fn timeout_of(spec: &Probe) -> Duration {
    Duration::from_secs(
        u64::try_from(spec.timeout_seconds.unwrap_or(1))
            .unwrap_or(1)
            .max(1),
    )
}

/// Probes once. `Ok` is the verdict and the handler's output; `Err` is a probe that could
/// not run, which the worker throws away (upstream records it as an Unhealthy event).
pub(crate) async fn probe(
    env: &Env<'_>,
    kind: ProbeKind,
    spec: &Probe,
    target: &Target<'_>,
) -> Result<(Verdict, String), ProbeError> {
    let mut attempt = run(env, kind, spec, target).await;
    for _ in 1..MAX_PROBE_RETRIES {
        if attempt.is_ok() {
            break;
        }
        attempt = run(env, kind, spec, target).await;
    }
    let probed = match attempt {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(pod = %target.pod_name(), container = %target.container.name, probe = %kind, error = %e, "probe errored");
            target.event(
                env,
                "Unhealthy",
                format!(
                    "{kind} probe errored and resulted in {} state: {e}",
                    ProbeResult::Unknown
                ),
            );
            return Err(e);
        }
    };
    let verdict = match probed.result {
        ProbeResult::Success => Verdict::Success,
        ProbeResult::Warning => {
            target.event(
                env,
                "ProbeWarning",
                format!("{kind} probe warning: {}", probed.output),
            );
            Verdict::Success
        }
        ProbeResult::Failure => {
            tracing::debug!(pod = %target.pod_name(), container = %target.container.name, probe = %kind, output = %probed.output, "probe failed");
            target.event(
                env,
                "Unhealthy",
                format!("{kind} probe failed: {}", probed.output),
            );
            Verdict::Failure
        }
        ProbeResult::Unknown => Verdict::Failure,
    };
    Ok((verdict, probed.output))
}

/// Runs the probe's handler once.
async fn run(
    env: &Env<'_>,
    kind: ProbeKind,
    spec: &Probe,
    t: &Target<'_>,
) -> Result<Probed, ProbeError> {
    let timeout = timeout_of(spec);
    let spec_error = |handler: &str, reason: String| ProbeError::Spec {
        pod: t.pod_name(),
        container: t.container.name.clone(),
        field: format!("{}.{handler}", kind.field()),
        reason,
    };
    if let Some(action) = &spec.exec {
        let command = exec::expand_static(action.command.as_deref().unwrap_or(&[]), t.container);
        return exec::probe(env.pods, t.container_id, command, timeout)
            .await
            .map_err(|source| ProbeError::Exec {
                pod: t.pod_name(),
                container: t.container.name.clone(),
                field: format!("{}.exec", kind.field()),
                source,
            });
    }
    if let Some(action) = &spec.http_get {
        let req = http::request(action, t.container, t.pod_ip)
            .map_err(|reason| spec_error("httpGet.port", reason))?;
        let client = env.http.as_ref().map_err(|reason| ProbeError::HttpClient {
            pod: t.pod_name(),
            container: t.container.name.clone(),
            field: format!("{}.httpGet", kind.field()),
            reason: reason.clone(),
        })?;
        return Ok(http::probe(client, req, timeout).await);
    }
    if let Some(action) = &spec.tcp_socket {
        let port = port::resolve(&action.port, t.container)
            .map_err(|reason| spec_error("tcpSocket.port", reason))?;
        let host = match action.host.as_deref() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => t.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        return Ok(tcp::probe(&port::join_host_port(&host, port), timeout).await);
    }
    if let Some(action) = &spec.grpc {
        let port = u16::try_from(action.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                spec_error("grpc.port", format!("invalid port number: {}", action.port))
            })?;
        let host = t.pod_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let service = action.service.as_deref().unwrap_or("");
        return Ok(grpc::probe(&port::join_host_port(&host, port), service, timeout).await);
    }
    Err(ProbeError::Spec {
        pod: t.pod_name(),
        container: t.container.name.clone(),
        field: kind.field().to_string(),
        reason: "missing probe handler".to_string(),
    })
}
