//! The API objects pods refer to by name: ConfigMaps and Secrets, and the service-account
//! tokens their projected volumes carry. In standalone mode ConfigMaps and Secrets come in
//! the same YAML streams as the pods; joined to a control plane, [`ObjectManager`] watches
//! the ones the pods reference (upstream's watch-based configmap and secret managers) and
//! the sync fills the tokens from [`crate::kubelet::token`] before it sets up volumes.
//!
//! A snapshot also says which referenced objects are not known yet (their first list is
//! still under way): a pod that needs one waits for it instead of taking it as missing.

#[cfg(test)]
pub(crate) mod fake_api;
pub mod refs;
mod watch;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

pub use refs::{ObjectKind, ObjectRef};
pub use watch::ObjectManager;

/// One serviceAccountToken projection's token request, as upstream's token manager keys
/// its cache: the service account, the audiences, the lifetime and the pod it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenKey {
    pub namespace: String,
    pub service_account: String,
    /// Empty: the API server's own audience.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

/// ConfigMaps and Secrets by (namespace, name); the tokens by request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
    /// Referenced objects whose first read has not finished: neither present nor missing.
    pub pending: BTreeSet<ObjectRef>,
    /// Why a pending object is still pending: the last error of its first list.
    pub pending_errors: BTreeMap<ObjectRef, String>,
    /// Service-account tokens fetched for this sync, by request.
    pub tokens: BTreeMap<TokenKey, String>,
}

impl Objects {
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }

    /// Whether the object is referenced but not read yet.
    pub fn is_pending(&self, kind: ObjectKind, namespace: &str, name: &str) -> bool {
        self.pending
            .contains(&ObjectRef::new(kind, namespace, name))
    }

    /// `self` with what `other` adds: on a clash `self`'s object stays (the static
    /// sources come first, as upstream's sources are merged first-come). An object
    /// present in either is not pending.
    pub fn merged(&self, other: &Objects) -> Objects {
        let mut out = self.clone();
        for (k, v) in &other.config_maps {
            out.config_maps
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        for (k, v) in &other.secrets {
            out.secrets.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.tokens {
            out.tokens.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let known = |r: &ObjectRef| match r.kind {
            ObjectKind::ConfigMap => out.config_map(&r.namespace, &r.name).is_some(),
            ObjectKind::Secret => out.secret(&r.namespace, &r.name).is_some(),
        };
        let pending: BTreeSet<ObjectRef> = self
            .pending
            .iter()
            .chain(&other.pending)
            .filter(|r| !known(r))
            .cloned()
            .collect();
        out.pending_errors = self
            .pending_errors
            .iter()
            .chain(&other.pending_errors)
            .filter(|(r, _)| pending.contains(*r))
            .map(|(r, e)| (r.clone(), e.clone()))
            .collect();
        out.pending = pending;
        out
    }
}
