//! The node's Lease in kube-node-lease, renewed as upstream's lease controller
//! (component-helpers/apimachinery/lease/controller.go) and pkg/kubelet/nodelease do it:
//! every 10 s (a quarter of the 40 s duration) the Lease is updated from the last one
//! written, without a GET; when that fails it is read (or created) again with a backoff
//! from 100 ms doubling to 7 s. Its owner is the Node, set as soon as the Node can be
//! read. It owns only this Lease; failures are logged and retried, never fatal.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::PostParams;
use tracing::Instrument;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// nodeLeaseDurationSeconds' default.
pub const DEFAULT_LEASE_DURATION_SECONDS: i32 = 40;
/// The renew interval as a share of the duration (nodeLeaseRenewIntervalFraction).
pub const RENEW_INTERVAL_FRACTION: f64 = 0.25;
const MAX_UPDATE_RETRIES: usize = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(7);

/// What went wrong with the Lease; logged, then retried.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {LEASE_NAMESPACE}/{name}: {verb}: {source}")]
    Api {
        name: String,
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("lease {LEASE_NAMESPACE}/{name}: {verb}: no answer within {after:?}")]
    Timeout {
        name: String,
        verb: &'static str,
        after: Duration,
    },
    #[error("lease {LEASE_NAMESPACE}/{name}: failed {MAX_UPDATE_RETRIES} attempts to update lease")]
    Retries { name: String },
}

impl LeaseError {
    fn is(&self, f: fn(&kube::core::Status) -> bool) -> bool {
        matches!(self, LeaseError::Api { source: kube::Error::Api(s), .. } if f(s))
    }
}

/// newLease: a copy of `base` (or a new Lease held by `holder` for `duration_secs`)
/// renewed at `now`, owned by `owner` when it has no owner yet.
pub fn new_lease(
    base: Option<&Lease>,
    name: &str,
    holder: &str,
    duration_secs: i32,
    now: MicroTime,
    owner: Option<OwnerReference>,
) -> Lease {
    let mut lease = base.cloned().unwrap_or_else(|| {
        let mut l = Lease::default();
        l.metadata.name = Some(name.into());
        l.metadata.namespace = Some(LEASE_NAMESPACE.into());
        l.spec = Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration_secs),
            ..Default::default()
        });
        l
    });
    lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
    if lease
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(Vec::is_empty)
        && let Some(o) = owner
    {
        lease.metadata.owner_references = Some(vec![o]);
    }
    lease
}

/// The Node as the Lease's owner (apiVersion v1, kind Node, its name and UID).
pub fn node_owner(node: &Node) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone()?,
        uid: node.metadata.uid.clone()?,
        ..Default::default()
    })
}

fn now() -> MicroTime {
    let t = k8s_openapi::jiff::Timestamp::now();
    // The API keeps microseconds.
    let micros = t.as_microsecond();
    MicroTime(k8s_openapi::jiff::Timestamp::from_microsecond(micros).unwrap_or(t))
}

/// The Lease heartbeat of one node; [`NodeLease::run`] never returns.
pub struct NodeLease {
    name: String,
    duration_secs: i32,
    renew_interval: Duration,
    leases: kube::Api<Lease>,
    nodes: kube::Api<Node>,
    latest: Option<Lease>,
}

impl std::fmt::Debug for NodeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLease")
            .field("name", &self.name)
            .field("renew_interval", &self.renew_interval)
            .finish_non_exhaustive()
    }
}

impl NodeLease {
    /// The Lease of `node_name`, held by it, of `duration_secs` (40 by default).
    pub fn new(client: kube::Client, node_name: &str, duration_secs: i32) -> Self {
        let renew_interval = Duration::from_secs(u64::try_from(duration_secs.max(1)).unwrap_or(40))
            .mul_f64(RENEW_INTERVAL_FRACTION);
        NodeLease {
            name: node_name.into(),
            duration_secs,
            renew_interval,
            leases: kube::Api::namespaced(client.clone(), LEASE_NAMESPACE),
            nodes: kube::Api::all(client),
            latest: None,
        }
    }

    /// Renews every renew interval (plus up to 4% jitter), the first right away.
    pub async fn run(mut self) {
        let span = tracing::info_span!("node_lease", node = %self.name);
        async move {
            loop {
                self.sync().await;
                tokio::time::sleep(crate::kubelet::nodestatus::jittered(self.renew_interval)).await;
            }
        }
        .instrument(span)
        .await
    }

    async fn call<T>(
        &self,
        verb: &'static str,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaseError> {
        let name = self.name.clone();
        let after = self.renew_interval;
        match tokio::time::timeout(after, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(LeaseError::Api { name, verb, source }),
            Err(_) => Err(LeaseError::Timeout { name, verb, after }),
        }
    }

    /// One renewal: update from the last Lease written; failing that, ensure it exists
    /// and update that (a Lease just created needs no update).
    pub async fn sync(&mut self) {
        if let Some(latest) = self.latest.clone() {
            match self.retry_update(latest).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::info!(error = %e, "failed to update lease using latest lease, fallback to ensure lease")
                }
            }
        }
        let (lease, created) = self.backoff_ensure().await;
        self.latest = lease.clone();
        if let (Some(lease), false) = (lease, created)
            && let Err(e) = self.retry_update(lease).await
        {
            tracing::error!(error = %e, interval = ?self.renew_interval, "Will retry updating lease");
        }
    }

    /// backoffEnsureLease: tries until the Lease is read or created.
    async fn backoff_ensure(&self) -> (Option<Lease>, bool) {
        let mut sleep = FIRST_BACKOFF;
        loop {
            match self.ensure().await {
                Ok(r) => return r,
                Err(e) => {
                    sleep = (sleep * 2).min(MAX_BACKOFF);
                    tracing::error!(error = %e, interval = ?sleep, "Failed to ensure lease exists, will retry");
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }

    /// The owner for a Lease that has none: the Node, read now.
    async fn owner(&self, base: Option<&Lease>) -> Result<Option<OwnerReference>, LeaseError> {
        if base.is_some_and(|l| {
            l.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| !o.is_empty())
        }) {
            return Ok(None);
        }
        let node = self.call("get node", self.nodes.get(&self.name)).await;
        match node {
            Ok(n) => Ok(node_owner(&n)),
            Err(e) => {
                tracing::error!(error = %e, "Failed to get node when trying to set owner ref to the node lease");
                Err(e)
            }
        }
    }

    /// ensureLease: the Lease, created when missing (true), or `None` when its owner
    /// could not be read yet (the create waits for the next round).
    async fn ensure(&self) -> Result<(Option<Lease>, bool), LeaseError> {
        match self.call("get", self.leases.get(&self.name)).await {
            Ok(l) => Ok((Some(l), false)),
            Err(e) if e.is(kube::core::Status::is_not_found) => {
                let Ok(owner) = self.owner(None).await else {
                    return Ok((None, false));
                };
                let lease = new_lease(
                    None,
                    &self.name,
                    &self.name,
                    self.duration_secs,
                    now(),
                    owner,
                );
                let created = self
                    .call("create", self.leases.create(&PostParams::default(), &lease))
                    .await?;
                Ok((Some(created), true))
            }
            Err(e) => Err(e),
        }
    }

    /// retryUpdateLease: up to five updates; a conflict reads the Lease again first.
    async fn retry_update(&mut self, mut base: Lease) -> Result<(), LeaseError> {
        for _ in 0..MAX_UPDATE_RETRIES {
            // An owner that cannot be read does not hold up the renewal.
            let owner = self.owner(Some(&base)).await.unwrap_or(None);
            let lease = new_lease(
                Some(&base),
                &self.name,
                &self.name,
                self.duration_secs,
                now(),
                owner,
            );
            match self
                .call(
                    "update",
                    self.leases
                        .replace(&self.name, &PostParams::default(), &lease),
                )
                .await
            {
                Ok(l) => {
                    self.latest = Some(l);
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(error = %e, "Failed to update lease");
                    // A conflict needs the newer Lease before the next try.
                    if e.is(kube::core::Status::is_conflict)
                        && let (Some(l), _) = self.backoff_ensure().await
                    {
                        base = l;
                    }
                }
            }
        }
        Err(LeaseError::Retries {
            name: self.name.clone(),
        })
    }
}

#[cfg(test)]
#[path = "nodelease_tests.rs"]
mod tests;
