//! Service-account tokens for serviceAccountToken projections (upstream
//! pkg/kubelet/token/token_manager.go): asked of the API server through the TokenRequest
//! subresource (`POST /api/v1/namespaces/<ns>/serviceaccounts/<sa>/token`) bound to the
//! pod, cached by request, renewed by [`refresh::requires_refresh`] when a pod syncs (its
//! worker resyncs every 60 s, so a token is renewed within a minute of its time), and
//! forgotten when the pod is removed or the token has expired. When a renewal fails the
//! cached token serves until it expires.
//!
//! Owns the token cache; writes nothing to disk (the projected volume does).

pub mod key;
pub mod refresh;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::Instrument;

use crate::kubelet::objects::TokenKey;

pub use key::{pod_token_keys, token_key};

/// Why a token could not be had; names the service account and the pod it is for.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "failed to fetch token for service account {namespace}/{service_account} (pod {pod}): {source}"
    )]
    Request {
        namespace: String,
        service_account: String,
        pod: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "token request for service account {namespace}/{service_account} (pod {pod}): the API server returned no token"
    )]
    NoToken {
        namespace: String,
        service_account: String,
        pod: String,
    },
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    expires: SystemTime,
    /// The lifetime the server granted (it may extend what was asked).
    expiration_seconds: i64,
}

/// The token cache and the client it asks.
pub struct TokenManager {
    client: Client,
    cache: Mutex<HashMap<TokenKey, Cached>>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("cached", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    pub fn new(client: Client) -> Self {
        TokenManager {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokens of every serviceAccountToken projection of the pod, cached or asked
    /// for now; the first failure stops.
    pub async fn tokens_for(&self, pod: &Pod) -> Result<BTreeMap<TokenKey, String>, TokenError> {
        let mut out = BTreeMap::new();
        for k in pod_token_keys(pod) {
            let t = self.get(&k).await?;
            out.insert(k, t);
        }
        Ok(out)
    }

    /// One token: the cached one while it needs no renewal, else a new one.
    pub async fn get(&self, key: &TokenKey) -> Result<String, TokenError> {
        let now = SystemTime::now();
        let cached = {
            let mut cache = self.lock();
            // Upstream's cleanup runs every minute; here each look-up does it.
            cache.retain(|_, c| !refresh::expired(now, c.expires));
            cache.get(key).cloned()
        };
        if let Some(c) = &cached
            && !refresh::requires_refresh(now, c.expires, c.expiration_seconds, refresh::jitter())
        {
            return Ok(c.token.clone());
        }
        let span = tracing::info_span!(
            "token_request",
            namespace = %key.namespace,
            service_account = %key.service_account,
            pod = %key.pod_name,
        );
        match self.request(key).instrument(span).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                self.lock().insert(key.clone(), fresh);
                Ok(token)
            }
            Err(e) => match cached {
                Some(c) if !refresh::expired(SystemTime::now(), c.expires) => {
                    tracing::warn!("renew the token, using the cached one meanwhile: {e}");
                    Ok(c.token)
                }
                _ => Err(e),
            },
        }
    }

    async fn request(&self, key: &TokenKey) -> Result<Cached, TokenError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.namespace);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: key.audiences.clone(),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(key.pod_name.clone()),
                    uid: Some(key.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let resp: TokenRequest = api
            .create_subresource("token", &key.service_account, &PostParams::default(), &req)
            .await
            .map_err(|e| TokenError::Request {
                namespace: key.namespace.clone(),
                service_account: key.service_account.clone(),
                pod: key.pod_name.clone(),
                source: Box::new(e),
            })?;
        let status =
            resp.status
                .filter(|s| !s.token.is_empty())
                .ok_or_else(|| TokenError::NoToken {
                    namespace: key.namespace.clone(),
                    service_account: key.service_account.clone(),
                    pod: key.pod_name.clone(),
                })?;
        tracing::debug!("token issued");
        Ok(Cached {
            token: status.token,
            expires: SystemTime::from(status.expiration_timestamp.0),
            expiration_seconds: resp
                .spec
                .expiration_seconds
                .unwrap_or(key.expiration_seconds),
        })
    }

    /// Forgets the tokens bound to a pod (upstream DeleteServiceAccountToken), once the
    /// pod is gone.
    pub fn delete_pod_tokens(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;
    use crate::kubelet::objects::fake_api::{self, Reply};

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "c"}],
                "volumes": [{"name": "kube-api-access-x", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]}
        }))
        .unwrap()
    }

    /// Answers token requests with `tok-<n>`, valid for `valid_for` seconds; with
    /// `fail` set, answers 500.
    fn server(
        valid_for: i64,
        fail: Arc<std::sync::atomic::AtomicBool>,
    ) -> (TokenManager, Arc<std::sync::Mutex<Vec<fake_api::Seen>>>) {
        let n = AtomicU32::new(0);
        let (client, seen) = fake_api::client(move |s| {
            if fail.load(Ordering::SeqCst) {
                return Reply::Json(
                    500,
                    json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "message": "down", "reason": "InternalError", "code": 500}),
                );
            }
            let req: Json = serde_json::from_slice(&s.body).unwrap();
            let exp = k8s_openapi::jiff::Timestamp::now()
                + k8s_openapi::jiff::SignedDuration::from_secs(valid_for);
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            let mut resp = req.clone();
            resp["status"] = json!({
                "token": format!("tok-{i}"),
                "expirationTimestamp": serde_json::to_value(Time(exp)).unwrap(),
            });
            Reply::Json(201, resp)
        });
        (TokenManager::new(client), seen)
    }

    type Json = serde_json::Value;

    #[tokio::test]
    async fn a_token_is_requested_bound_to_the_pod_and_cached() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, seen) = server(3607, fail);
        let t = m.tokens_for(&pod()).await.unwrap();
        assert_eq!(t.values().collect::<Vec<_>>(), ["tok-1"]);
        assert_eq!(m.tokens_for(&pod()).await.unwrap(), t);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "the second sync used the cache");
        assert_eq!(seen[0].method, "POST");
        assert!(
            seen[0]
                .uri
                .starts_with("/api/v1/namespaces/ns/serviceaccounts/builder/token"),
            "{}",
            seen[0].uri
        );
        let body: Json = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body["kind"], "TokenRequest");
        assert_eq!(body["spec"]["expirationSeconds"], 3607);
        assert_eq!(
            body["spec"]["boundObjectRef"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u-1"})
        );
        assert!(
            body["spec"]["audiences"]
                .as_array()
                .is_none_or(|a| a.is_empty())
        );
        m.delete_pod_tokens("u-1");
        assert_eq!(m.lock().len(), 0);
    }

    #[tokio::test]
    async fn a_token_past_eighty_percent_is_renewed_and_a_failed_renewal_keeps_it() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Granted for 3607 s but expiring in 300 s: well past 80% of its life.
        let (m, seen) = server(300, fail.clone());
        let first = m.tokens_for(&pod()).await.unwrap();
        let second = m.tokens_for(&pod()).await.unwrap();
        assert_ne!(first, second);
        assert_eq!(seen.lock().unwrap().len(), 2);
        fail.store(true, Ordering::SeqCst);
        assert_eq!(m.tokens_for(&pod()).await.unwrap(), second);
        m.delete_pod_tokens("u-1");
        let e = m.tokens_for(&pod()).await.unwrap_err().to_string();
        assert!(
            e.starts_with("failed to fetch token for service account ns/builder (pod web)"),
            "{e}"
        );
    }
}
