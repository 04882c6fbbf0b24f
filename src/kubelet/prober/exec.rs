//! The exec probe: the command runs in the container through the runtime's ExecSync
//! (upstream's pkg/probe/exec and kuberuntime's RunInContainer). Exit code 0 is success;
//! the runtime's DeadlineExceeded is a failure saying the command timed out.

use std::collections::HashMap;
use std::time::Duration;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Container;
use tonic::Code;

use super::probe::Probed;
use crate::cri::api::PodApi;
use crate::cri::error::CriError;

/// Upstream keeps the first 10 KiB of a probe's output.
pub(crate) const MAX_OUTPUT: usize = 10 * 1024;

/// How long past the probe's own timeout the call may take before the prober stops
/// waiting: upstream's remote runtime client allows timeout + its 2 minute request
/// timeout, leaving the runtime time to kill the command and clean up.
const RUNTIME_GRACE: Duration = Duration::from_secs(120);

/// Runs `cmd` in container `id` with `timeout`. `Err` is a call the runtime refused.
pub(crate) async fn probe(
    pods: &dyn PodApi,
    id: &str,
    cmd: Vec<String>,
    timeout: Duration,
) -> Result<Probed, CriError> {
    let joined = cmd.join(" ");
    let req = cri::ExecSyncRequest {
        container_id: id.to_string(),
        cmd,
        timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
    };
    let timed_out = || Probed::failure(format!("command {joined:?} timed out"));
    match tokio::time::timeout(timeout + RUNTIME_GRACE, pods.exec_sync(req)).await {
        Err(_) => Ok(timed_out()),
        Ok(Err(e)) if e.code() == Code::DeadlineExceeded => Ok(timed_out()),
        Ok(Err(e)) => Err(e),
        Ok(Ok(resp)) => {
            // stdout then stderr, as RunInContainer appends them.
            let mut data = resp.stdout;
            data.extend_from_slice(&resp.stderr);
            data.truncate(MAX_OUTPUT);
            let output = String::from_utf8_lossy(&data).into_owned();
            Ok(if resp.exit_code == 0 {
                Probed::success(output)
            } else {
                Probed::failure(output)
            })
        }
    }
}

/// The probe's command with `$(VAR)` replaced by the container's plain `env` values
/// (upstream's ExpandContainerCommandOnlyStatic): a variable from a ConfigMap, Secret or
/// field ref, or an unknown one, stays as written; `$$` is a literal `$`.
pub(crate) fn expand_static(command: &[String], container: &Container) -> Vec<String> {
    let env: HashMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.as_deref().map(|v| (e.name.as_str(), v)))
        .collect();
    command.iter().map(|arg| expand(arg, &env)).collect()
}

fn expand(input: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
