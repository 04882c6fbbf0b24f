//! Liveness, readiness and startup probes, as kubelet's pkg/kubelet/prober.
//!
//! The pod worker tells the [`ProbeManager`] after every sync which containers a pod has
//! ([`ProbeManager::update_pod`]); the manager keeps one worker task per container and
//! probe kind ([`worker`]), each probing on its own period through [`probe`] (exec
//! through the runtime's ExecSync, httpGet, tcpSocket, grpc), counting thresholds and
//! storing the outcome per container ID ([`results`]). The pod worker reads them back with
//! [`ProbeManager::results`] and is woken (its pod UID sent on `wake`) whenever one
//! changes.
//!
//! This module owns the probe workers and their results only. It never kills or restarts
//! a container and never writes a pod status: a failed liveness or startup probe is
//! reported, and the pod worker acts on it.
//!
//! A container's probes over its life:
//!
//! ```text
//! new container ID -> results reset (readiness false, startup unknown, liveness ok)
//!   -> initialDelaySeconds from startedAt -> startup probe every periodSeconds
//!   -> startup success (successThreshold)  -> liveness and readiness start probing
//!   -> liveness/startup failure (failureThreshold) -> reported once, worker on hold
//!   -> next container ID -> reset, probing resumes
//! ```

mod error;
mod exec;
mod grpc;
mod http;
mod manager;
mod port;
mod probe;
mod results;
mod tcp;
mod worker;

#[cfg(test)]
mod tests;

pub use error::ProbeError;
pub use manager::ProbeManager;
pub use results::{ContainerProbes, ProbeFailure, ProbeTarget};

use k8s_openapi::api::core::v1::{Container, Probe};

/// The three probes a container can have (upstream's probeType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Liveness,
        ProbeKind::Readiness,
        ProbeKind::Startup,
    ];

    /// The container's probe of this kind.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
            ProbeKind::Startup => container.startup_probe.as_ref(),
        }
    }

    /// The container field the probe is read from, for error messages.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    /// As upstream's events write it: "Liveness probe failed: ...".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}
