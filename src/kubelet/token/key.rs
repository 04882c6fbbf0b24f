//! Which token requests a pod's serviceAccountToken projections make (upstream's
//! projected volume plugin): the pod's service account, the projection's audience (none:
//! the API server's own), its expirationSeconds (the API's default 3600 when unset), and a
//! binding to the pod. Plain data.

use k8s_openapi::api::core::v1::{Pod, ServiceAccountTokenProjection};

use crate::kubelet::objects::TokenKey;

/// The API's default for a projection's expirationSeconds.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The account a pod without serviceAccountName runs as (the API server's
/// ServiceAccount admission sets it; a pod from a manifest may lack it).
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The token request of one projection of `pod`.
pub fn token_key(pod: &Pod, p: &ServiceAccountTokenProjection) -> TokenKey {
    let spec = pod.spec.as_ref();
    let service_account = spec
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT);
    TokenKey {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        service_account: service_account.to_string(),
        audiences: p
            .audience
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect(),
        expiration_seconds: p.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// Every token request the pod's projected volumes make, in volume order, once each.
pub fn pod_token_keys(pod: &Pod) -> Vec<TokenKey> {
    let mut out: Vec<TokenKey> = Vec::new();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let sources = volumes.flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()));
    for t in sources.filter_map(|s| s.service_account_token.as_ref()) {
        let k = token_key(pod, t);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kube_api_access_volume_asks_for_the_default_audience_bound_to_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "serviceAccountName": "builder",
                "containers": [{"name": "c"}],
                "volumes": [
                    {"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
                    ]}},
                    {"name": "vault", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "t", "audience": "vault"}},
                        {"serviceAccountToken": {"path": "t2", "audience": "vault"}}
                    ]}}
                ]
            }
        }))
        .unwrap();
        let keys = pod_token_keys(&pod);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].service_account, "builder");
        assert!(keys[0].audiences.is_empty());
        assert_eq!(keys[0].expiration_seconds, 3607);
        assert_eq!(
            (keys[0].pod_name.as_str(), keys[0].pod_uid.as_str()),
            ("web", "u-1")
        );
        assert_eq!(keys[1].audiences, ["vault"]);
        assert_eq!(keys[1].expiration_seconds, DEFAULT_EXPIRATION_SECONDS);
    }

    #[test]
    fn a_pod_without_a_service_account_name_runs_as_default() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap();
        let k = token_key(&pod, &ServiceAccountTokenProjection::default());
        assert_eq!(k.service_account, "default");
    }
}
