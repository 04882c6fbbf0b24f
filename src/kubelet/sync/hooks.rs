//! Container lifecycle hooks (pkg/kubelet/lifecycle/handlers.go): exec through
//! ExecSync, httpGet to the pod's IP, sleep. A hook's failure is reported with
//! upstream's message; the caller decides what it means (a postStart failure kills the
//! container, a preStop failure only logs).

use std::time::Duration;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Syncer;

/// A hook without a deadline of its own gets this long (an exec hook upstream has none;
/// berth bounds it so a stuck hook cannot hold a sync forever).
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

fn port_of(c: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

impl Syncer {
    /// Runs a hook; Err is the message of the failure event.
    pub(super) async fn run_hook(
        &self,
        _pod: &Pod,
        c: &Container,
        id: &str,
        h: &LifecycleHandler,
        pod_ips: &[String],
        grace: Option<i64>,
    ) -> Result<(), String> {
        let limit = grace
            .and_then(|g| u64::try_from(g).ok())
            .map_or(HOOK_TIMEOUT, Duration::from_secs);
        if let Some(e) = &h.exec {
            let cmd = e.command.clone().unwrap_or_default();
            let r = self
                .runtime
                .pods
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id.to_string(),
                    cmd: cmd.clone(),
                    timeout: i64::try_from(limit.as_secs()).unwrap_or(0),
                })
                .await
                .map_err(|e| {
                    format!(
                        "Exec lifecycle hook ({cmd:?}) for Container \"{}\" failed - error: {e}",
                        c.name
                    )
                })?;
            if r.exit_code != 0 {
                let out = String::from_utf8_lossy(&r.stdout).to_string()
                    + &String::from_utf8_lossy(&r.stderr);
                return Err(format!(
                    "Exec lifecycle hook ({cmd:?}) for Container \"{}\" failed - error: command '{}' exited with {}: {}, message: {:?}",
                    c.name,
                    cmd.join(" "),
                    r.exit_code,
                    out.trim(),
                    out
                ));
            }
            return Ok(());
        }
        if let Some(g) = &h.http_get {
            let host = g
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .or_else(|| pod_ips.first().cloned())
                .unwrap_or_else(|| "127.0.0.1".into());
            let port = port_of(c, &g.port).ok_or_else(|| {
                format!(
                    "HTTP lifecycle hook for Container \"{}\": invalid port {:?}",
                    c.name, g.port
                )
            })?;
            let scheme = g.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let path = g.path.clone().unwrap_or_else(|| "/".into());
            let url = format!("{scheme}://{host}:{port}{path}");
            let client = reqwest::Client::builder()
                .timeout(limit)
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(|e| e.to_string())?;
            let mut req = client.get(&url);
            for hd in g.http_headers.iter().flatten() {
                req = req.header(hd.name.as_str(), hd.value.as_str());
            }
            req.send().await.map_err(|e| {
                format!(
                    "HTTP lifecycle hook ({path}) for Container \"{}\" failed - error: {e}",
                    c.name
                )
            })?;
            return Ok(());
        }
        if let Some(s) = &h.sleep {
            let d = Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)).min(limit);
            tokio::time::sleep(d).await;
            return Ok(());
        }
        Err(format!(
            "container {}: a lifecycle hook with no handler",
            c.name
        ))
    }
}
