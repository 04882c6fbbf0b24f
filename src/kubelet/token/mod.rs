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
