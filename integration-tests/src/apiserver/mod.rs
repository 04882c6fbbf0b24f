//! The test API server: HTTPS on loopback with a test CA, the Kubernetes REST and watch
//! protocol for the resources a node agent uses, with the real server's semantics
//! (resourceVersions, 409s, 410s, selectors, patches, graceful deletion, defaults,
//! TokenRequest, CSR approval and signing). A test fixture, never product code: berth must
//! equally work against a real kube-apiserver, so nothing here may be a shortcut.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use berth_integration_tests::apiserver::{ApiServer, Options};
//! let api = ApiServer::start(Options::default()).await?;
//! let client = api.client().await?;
//! let node_kubeconfig = api.node_kubeconfig("node-1")?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod csr;
pub mod defaults;
pub mod delete;
pub mod discovery;
mod handle;
pub mod http;
pub mod kubeconfig;
pub mod meta;
pub mod patch;
pub mod resources;
pub mod routes;
pub mod selectors;
pub mod status;
pub mod store;
pub mod tls;
pub mod token;
pub mod verbs;
pub mod watch;

pub use handle::{ApiServer, ApiServerError};
pub use kubeconfig::Credentials;
pub use status::ApiError;
pub use tls::CertKey;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

/// How the fixture runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free one (kept across restarts).
    pub listen: SocketAddr,
    /// Events kept for watches to resume from; older resourceVersions get 410.
    pub history_limit: usize,
    /// How often a watch with allowWatchBookmarks gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Approve kubelet client CSRs on creation, as kube-controller-manager's csrapproving.
    pub auto_approve_csrs: bool,
    /// The longest validity the signer gives (its --cluster-signing-duration); a CSR's
    /// spec.expirationSeconds can only shorten it.
    pub cert_validity: Duration,
    /// The shortest TokenRequest expirationSeconds accepted (600 on a real server).
    pub min_token_expiration_seconds: i64,
    /// The admin bearer token; random when None.
    pub admin_token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(1),
            auto_approve_csrs: false,
            cert_validity: Duration::from_secs(365 * 86400),
            min_token_expiration_seconds: 600,
            admin_token: None,
        }
    }
}

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub content_type: String,
    pub body: String,
    /// The authenticated user; None when authentication failed.
    pub user: Option<String>,
}

/// What the connections share.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<store::Store>,
    ca: tls::Ca,
    signer: token::TokenSigner,
    opts: Options,
    admin_token: String,
    addr: SocketAddr,
    log: Mutex<Vec<LoggedRequest>>,
    next_ip: AtomicU32,
}

impl Shared {
    fn lock_store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, r: LoggedRequest) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }

    /// The next ClusterIP from 10.96.0.0/12, starting at 10.96.0.1 (the kubernetes Service).
    fn next_service_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + n).to_string()
    }

    /// What a real cluster's controllers put in every namespace: ServiceAccount "default"
    /// and ConfigMap kube-root-ca.crt with the CA.
    fn ensure_namespace_defaults(&self, ns: &str) {
        let admin = auth_admin();
        let mut st = self.lock_store();
        let Some(sa) = resources::core("serviceaccounts") else {
            return;
        };
        let Some(cm) = resources::core("configmaps") else {
            return;
        };
        let _ = verbs::create(
            self,
            &mut st,
            sa,
            ns,
            json!({"metadata": {"name": "default"}}),
            &admin,
        );
        let _ = verbs::create(
            self,
            &mut st,
            cm,
            ns,
            json!({
                "metadata": {"name": "kube-root-ca.crt", "annotations": {
                    "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": self.ca.cert_pem},
            }),
            &admin,
        );
    }

    /// Namespaces and objects every cluster starts with.
    fn seed(&self) {
        let admin = auth_admin();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if let Some(r) = resources::core("namespaces") {
                let _ = verbs::create(
                    self,
                    &mut self.lock_store(),
                    r,
                    "",
                    json!({"metadata": {"name": ns}}),
                    &admin,
                );
            }
            self.ensure_namespace_defaults(ns);
        }
        if let Some(svc) = resources::core("services") {
            let _ = verbs::create(
                self,
                &mut self.lock_store(),
                svc,
                "default",
                json!({
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"ports": [{"name": "https", "port": 443, "targetPort": self.addr.port()}]},
                }),
                &admin,
            );
        }
    }
}

fn auth_admin() -> auth::User {
    auth::User {
        name: "system:apiserver".into(),
        groups: vec!["system:masters".into()],
    }
}

/// The value of `obj` at a JSON pointer as a string ("" when absent).
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}
