//! The CRI requests that the streaming server turns into single-use URLs, and their
//! validation (the same rules and messages as kubelet's streaming server).

use super::error::StreamingError;

/// CRI `ExecRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// CRI `AttachRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttachRequest {
    pub container_id: String,
    pub stdin: bool,
    pub tty: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// CRI `PortForwardRequest`. The ports are informational: over SPDY each forwarded
/// connection names its port in its stream headers, as with kubelet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortForwardRequest {
    pub pod_sandbox_id: String,
    pub port: Vec<i32>,
}

/// A request waiting in the cache for its URL to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedRequest {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

fn invalid(request: &'static str, field: &'static str, reason: &'static str) -> StreamingError {
    StreamingError::InvalidRequest {
        request,
        field,
        reason,
    }
}

fn check_session(
    request: &'static str,
    container_id: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    none_msg: &'static str,
) -> Result<(), StreamingError> {
    if container_id.is_empty() {
        return Err(invalid(
            request,
            "container_id",
            "missing required container_id",
        ));
    }
    // With a terminal, stdout and stderr are one stream; kubelet refuses to pretend otherwise.
    if tty && stderr {
        return Err(invalid(
            request,
            "stderr",
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(invalid(request, "stdin", none_msg));
    }
    Ok(())
}

impl ExecRequest {
    pub fn validate(&self) -> Result<(), StreamingError> {
        check_session(
            "ExecRequest",
            &self.container_id,
            self.tty,
            self.stdin,
            self.stdout,
            self.stderr,
            "one of stdin, stdout, or stderr must be set",
        )?;
        if self.cmd.is_empty() {
            return Err(invalid("ExecRequest", "cmd", "missing required cmd"));
        }
        Ok(())
    }
}

impl AttachRequest {
    pub fn validate(&self) -> Result<(), StreamingError> {
        check_session(
            "AttachRequest",
            &self.container_id,
            self.tty,
            self.stdin,
            self.stdout,
            self.stderr,
            "one of stdin, stdout, and stderr must be set",
        )
    }
}

impl PortForwardRequest {
    pub fn validate(&self) -> Result<(), StreamingError> {
        if self.pod_sandbox_id.is_empty() {
            return Err(invalid(
                "PortForwardRequest",
                "pod_sandbox_id",
                "missing required pod_sandbox_id",
            ));
        }
        if self.port.iter().any(|p| !(1..=65535).contains(p)) {
            return Err(invalid(
                "PortForwardRequest",
                "port",
                "ports must be between 1 and 65535",
            ));
        }
        Ok(())
    }
}
