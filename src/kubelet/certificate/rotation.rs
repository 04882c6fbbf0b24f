//! Client certificate rotation (client-go util/certificate/certificate_manager.go): a
//! task that sleeps until a jittered 70-90% of the certificate's validity, makes a new
//! key and CSR with the node's current client, waits for it to be issued, stores it,
//! swaps it in and closes the open connections. Failures are logged and retried with
//! upstream's backoff: 2 s doubling with 10% jitter for 5 attempts, then every 32 s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{Instrument, error, info, info_span};

use super::csr::{self, NODES_GROUP};
use super::error::CertError;
use super::pair::CertPair;
use super::store::CertStore;
use super::transport::CertSource;

/// How long one CSR may wait for approval and issuance (certificateWaitTimeout).
pub const CERTIFICATE_WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// After the backoff is spent, retries come this often (PollInfinite).
pub const RETRY_PERIOD: Duration = Duration::from_secs(32);
const BACKOFF_STEPS: u32 = 5;

/// When to rotate a certificate valid from `not_before` to `not_after`: at
/// 70% + jitter*20% of its life, `jitter` in [0, 1) (wait.Jitter(total, 0.2) - 0.3*total).
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let total = not_after.duration_since(not_before).unwrap_or_default();
    not_before + total.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// Whether `pair` carries the identity the node asks for (certSatisfiesTemplate):
/// the CN and, among possibly more, the system:nodes organisation.
pub fn satisfies_template(pair: &CertPair, node: &str) -> bool {
    pair.common_name.as_deref() == Some(csr::node_common_name(node).as_str())
        && pair.organizations.iter().any(|o| o == NODES_GROUP)
}

/// The deadline for the current pair: now when it is missing, forced or wrong.
pub fn next_deadline(
    pair: Option<&CertPair>,
    node: &str,
    force: bool,
    now: SystemTime,
    jitter: f64,
) -> SystemTime {
    match pair {
        Some(p) if !force && satisfies_template(p, node) => {
            rotation_deadline(p.not_before, p.not_after, jitter)
        }
        _ => now,
    }
}

/// The wait before attempt `attempt + 1` after `attempt` failed (0-based): 2 s * 2^n
/// with up to 10% jitter for the 5 backoff attempts, then the 32 s poll period.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    if attempt < BACKOFF_STEPS - 1 {
        Duration::from_secs(2u64 << attempt).mul_f64(1.0 + 0.1 * jitter.clamp(0.0, 1.0))
    } else {
        RETRY_PERIOD
    }
}

/// A uniform number in [0, 1) from the OS; 0.5 when the OS has none to give.
pub fn random_unit() -> f64 {
    getrandom::u64()
        .map(|r| (r >> 11) as f64 / (1u64 << 53) as f64)
        .unwrap_or(0.5)
}

/// Everything the rotation task needs.
#[derive(Debug)]
pub struct Manager {
    pub node: String,
    pub store: CertStore,
    pub source: Arc<CertSource>,
    /// Rotate at once: the first pair came from the kubeconfig's inline data
    /// (kubeadm's high-powered bootstrap certificate, rotated out immediately).
    pub force_first: bool,
}

impl Manager {
    /// Runs until aborted; `client` is the node's own client (its certificate is
    /// read at each handshake, so it always uses the newest one).
    pub async fn run(self: Arc<Self>, client: kube::Client) {
        let mut force = self.force_first;
        loop {
            let pair = self.source.pair();
            let deadline = next_deadline(
                pair.as_deref(),
                &self.node,
                force,
                SystemTime::now(),
                random_unit(),
            );
            force = false;
            if let Some(p) = &pair {
                info!(expiration = ?p.not_after, rotation_deadline = ?deadline, "certificate rotation deadline determined");
            }
            if let Ok(sleep) = deadline.duration_since(SystemTime::now()) {
                info!(?sleep, "waiting for next certificate rotation");
                tokio::time::sleep(sleep).await;
            }
            let mut attempt = 0;
            while let Err(e) = self.rotate_once(&client).await {
                if attempt == BACKOFF_STEPS - 1 {
                    error!(error = %e, "reached backoff limit, still unable to rotate certs");
                } else {
                    error!(error = %e, attempt, "unable to rotate the client certificate");
                }
                tokio::time::sleep(retry_delay(attempt, random_unit())).await;
                attempt = attempt.saturating_add(1);
            }
            // wait.Until's period between rounds.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One rotation: new key, CSR, wait, store, swap (rotateCerts).
    pub async fn rotate_once(&self, client: &kube::Client) -> Result<(), CertError> {
        info!("rotating certificates");
        let req = csr::generate(&self.node)?;
        let (name, uid) = csr::request_certificate(client, None, &req).await?;
        let cert = csr::wait_for_certificate(client, &name, &uid, CERTIFICATE_WAIT_TIMEOUT)
            .instrument(info_span!("csr", name = %name))
            .await?;
        let pair = self
            .store
            .update(&cert, req.key_pem.as_bytes(), SystemTime::now())?;
        info!(csr = %name, expiration = ?pair.not_after, "client certificate rotated");
        self.source.rotate(pair);
        Ok(())
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
