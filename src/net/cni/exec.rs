//! Running one plugin: the spec's environment and stdin, a deadline, and its output
//! parsed as a result or as the spec's error JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::error::CniError;

/// One plugin invocation.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub plugin: &'a str,
    pub bin_dirs: &'a [PathBuf],
    pub verb: &'static str,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    /// `CNI_ARGS`, already joined as `K=V;K=V`.
    pub args: &'a str,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
}

/// The executable for `plugin`: the first match in `dirs`.
pub fn find(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: dirs.to_vec(),
        })
}

/// Runs the call; ADD (and any verb that prints one) returns the parsed result.
pub async fn run(call: Call<'_>) -> Result<Option<Value>, CniError> {
    let bin = find(call.plugin, call.bin_dirs)?;
    let path = std::env::join_paths(call.bin_dirs).unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.env("CNI_COMMAND", call.verb)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match call.netns {
        Some(ns) => cmd.env("CNI_NETNS", ns),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let mut child = cmd.spawn().map_err(|source| CniError::Spawn {
        plugin: call.plugin.to_string(),
        source,
    })?;
    let stdin = child.stdin.take();
    let io = async move {
        if let Some(mut s) = stdin {
            // A plugin that exits without reading its stdin is judged by its output.
            let _ = s.write_all(&call.stdin).await;
            drop(s);
        }
        child.wait_with_output().await
    };
    // On timeout the future (and with it the child) is dropped: kill_on_drop kills it.
    let out = match tokio::time::timeout(call.timeout, io).await {
        Ok(r) => r.map_err(|source| CniError::Spawn {
            plugin: call.plugin.to_string(),
            source,
        })?,
        Err(_) => {
            return Err(CniError::Timeout {
                plugin: call.plugin.to_string(),
                verb: call.verb,
                container: call.container_id.to_string(),
                secs: call.timeout.as_secs(),
            });
        }
    };
    let bad = |reason: String| CniError::BadOutput {
        plugin: call.plugin.to_string(),
        verb: call.verb,
        container: call.container_id.to_string(),
        reason,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let v: Value = serde_json::from_str(stdout.trim()).map_err(|_| {
            bad(format!(
                "failed ({}) without the spec's error JSON: stdout {:?}, stderr {:?}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        return Err(CniError::Plugin {
            plugin: call.plugin.to_string(),
            verb: call.verb,
            container: call.container_id.to_string(),
            code: v.get("code").and_then(Value::as_u64).unwrap_or(0),
            msg: v
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            details: v
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_str(stdout.trim()).map_err(|e| bad(format!("result is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("result is not a JSON object".into()));
    }
    Ok(Some(v))
}
