//! The handle a test holds: start, restart, compaction, kubeconfigs and clients, direct
//! store access, CSR and token helpers, and the request log.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::kubeconfig::{self, Credentials};
use super::status::ApiError;
use super::tls::{Ca, CertKey, TlsError};
use super::{
    LoggedRequest, Options, Shared, auth_admin, csr, http, meta, resources, store, token, verbs,
};

/// Why the fixture could not start or serve a helper.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("test CA: {0}")]
    Tls(#[from] TlsError),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    #[error("{resource} {name}: {source}")]
    Api {
        resource: String,
        name: String,
        source: ApiError,
    },
    #[error("unknown resource {0:?}")]
    UnknownResource(String),
}

/// A running test API server. Dropping it stops serving.
pub struct ApiServer {
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    stop: watch::Sender<u64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.send_modify(|g| *g += 1);
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

fn resource_by_id(id: &str) -> Result<&'static resources::Resource, ApiServerError> {
    resources::RESOURCES
        .iter()
        .find(|r| r.id() == id)
        .ok_or_else(|| ApiServerError::UnknownResource(id.to_string()))
}

impl ApiServer {
    /// Makes the CA, binds, seeds the namespaces and starts serving.
    pub async fn start(opts: Options) -> Result<ApiServer, ApiServerError> {
        let ca = Ca::new()?;
        let acceptor = TlsAcceptor::from(Arc::new(ca.server_config()?));
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| ApiServerError::Bind {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Bind {
                addr: opts.listen,
                source,
            })?;
        let admin_token = opts.admin_token.clone().unwrap_or_else(|| {
            meta::random_bytes::<24>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(opts.history_limit)),
            ca,
            signer: token::TokenSigner::new(),
            admin_token,
            addr,
            log: Mutex::new(Vec::new()),
            next_ip: AtomicU32::new(1),
            opts,
        });
        shared.seed();
        let (stop, rx) = watch::channel(0u64);
        let task = tokio::spawn(http::serve(listener, acceptor.clone(), shared.clone(), rx));
        Ok(ApiServer {
            shared,
            acceptor,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca.cert_pem
    }

    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// Drops every connection and watch, compacts the history (watches from an older
    /// resourceVersion get 410), keeps the objects, and serves again on the same port
    /// after `downtime`.
    pub async fn restart_after(&self, downtime: Duration) -> Result<(), ApiServerError> {
        self.stop.send_modify(|g| *g += 1);
        let old = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = old {
            let _ = t.await;
        }
        {
            let mut st = self.shared.lock_store();
            st.drop_watchers();
            st.compact();
        }
        tokio::time::sleep(downtime).await;
        let addr = self.shared.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ApiServerError::Bind { addr, source })?;
        let task = tokio::spawn(http::serve(
            listener,
            self.acceptor.clone(),
            self.shared.clone(),
            self.stop.subscribe(),
        ));
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    /// [`ApiServer::restart_after`] with no downtime.
    pub async fn restart(&self) -> Result<(), ApiServerError> {
        self.restart_after(Duration::ZERO).await
    }

    /// Drops the event history: the next watch from an older resourceVersion gets 410.
    pub fn compact(&self) {
        self.shared.lock_store().compact();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock_store().current_rv()
    }

    /// A kubeconfig for the admin (bearer token).
    pub fn admin_kubeconfig(&self) -> String {
        kubeconfig::render(
            &self.url(),
            self.ca_pem(),
            "admin",
            &Credentials::Token(self.shared.admin_token.clone()),
        )
    }

    /// A kubeconfig with a client certificate for `user` in `groups`.
    pub fn cert_kubeconfig(
        &self,
        user: &str,
        groups: &[&str],
        valid: Duration,
    ) -> Result<String, ApiServerError> {
        let ck = self.issue_client_cert(user, groups, valid)?;
        Ok(kubeconfig::render(
            &self.url(),
            self.ca_pem(),
            user,
            &Credentials::Cert {
                cert_pem: ck.cert_pem,
                key_pem: ck.key_pem,
            },
        ))
    }

    /// A node's kubeconfig: `system:node:<node>` in `system:nodes`, valid for a year.
    pub fn node_kubeconfig(&self, node: &str) -> Result<String, ApiServerError> {
        self.cert_kubeconfig(
            &format!("system:node:{node}"),
            &["system:nodes"],
            Duration::from_secs(365 * 86400),
        )
    }

    /// A bootstrap kubeconfig with a fresh bootstrap token (see [`Self::create_bootstrap_token`]).
    pub fn bootstrap_kubeconfig(&self) -> Result<String, ApiServerError> {
        let token = self.create_bootstrap_token()?;
        Ok(kubeconfig::render(
            &self.url(),
            self.ca_pem(),
            "kubelet-bootstrap",
            &Credentials::Token(token),
        ))
    }

    /// A kubeconfig with any credentials.
    pub fn kubeconfig(&self, user: &str, creds: &Credentials) -> String {
        kubeconfig::render(&self.url(), self.ca_pem(), user, creds)
    }

    /// Writes `text` to `path` (mode 0600, as kubeconfigs hold credentials).
    pub fn write_file(path: &Path, text: &str) -> Result<(), ApiServerError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| ApiServerError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)
    }

    /// A client certificate signed by the CA: CN `user`, O `groups`.
    pub fn issue_client_cert(
        &self,
        user: &str,
        groups: &[&str],
        valid: Duration,
    ) -> Result<CertKey, ApiServerError> {
        Ok(self.shared.ca.issue(user, groups, &[], false, valid)?)
    }

    /// A bootstrap token `<id>.<secret>` stored as kubeadm stores it: Secret
    /// kube-system/bootstrap-token-<id> of type bootstrap.kubernetes.io/token.
    pub fn create_bootstrap_token(&self) -> Result<String, ApiServerError> {
        let (id, secret) = (
            meta::random_suffix(6),
            format!("{}{}", meta::random_suffix(8), meta::random_suffix(8)),
        );
        let data = |s: &str| json!(B64.encode(s));
        self.create("secrets", "kube-system", json!({
            "metadata": {"name": format!("bootstrap-token-{id}")},
            "type": "bootstrap.kubernetes.io/token",
            "data": {"token-id": data(&id), "token-secret": data(&secret),
                "usage-bootstrap-authentication": data("true"), "usage-bootstrap-signing": data("true"),
                "auth-extra-groups": data("system:bootstrappers:kubeadm:default-node-token")},
        }))?;
        Ok(format!("{id}.{secret}"))
    }

    /// An admin kube client.
    pub async fn client(&self) -> Result<kube::Client, ApiServerError> {
        Self::client_from(&self.admin_kubeconfig()).await
    }

    /// A kube client from kubeconfig text.
    pub async fn client_from(kubeconfig_text: &str) -> Result<kube::Client, ApiServerError> {
        let kc = kube::config::Kubeconfig::from_yaml(kubeconfig_text)
            .map_err(|e| ApiServerError::Kubeconfig(e.to_string()))?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ApiServerError::Kubeconfig(e.to_string()))?;
        Ok(kube::Client::try_from(cfg)?)
    }

    /// The object stored under `resource` (`pods`, `leases.coordination.k8s.io`, ...).
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.shared.lock_store().get(resource, ns, name).cloned()
    }

    /// Every object of `resource`, in one namespace or all.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<Value> {
        self.shared.lock_store().list(resource, ns)
    }

    /// Creates as a POST by an admin would (defaults, admission, 409 on a duplicate).
    pub fn create(&self, resource: &str, ns: &str, obj: Value) -> Result<Value, ApiServerError> {
        let res = resource_by_id(resource)?;
        let name = meta::name(&obj).to_string();
        let mut st = self.shared.lock_store();
        verbs::create(&self.shared, &mut st, res, ns, obj, &auth_admin())
            .map(|(_, v)| v)
            .map_err(|source| ApiServerError::Api {
                resource: resource.into(),
                name,
                source,
            })
    }

    /// Stores `obj` as it is (a new resourceVersion, a watch event), bypassing every rule:
    /// for tests that need an object a real server might still hold.
    pub fn put_raw(&self, resource: &str, ns: &str, name: &str, obj: Value) -> Value {
        self.shared.lock_store().put(resource, ns, name, obj)
    }

    /// Removes an object at once, whatever its grace period or finalizers.
    pub fn remove(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.shared.lock_store().remove(resource, ns, name)
    }

    /// Makes sure `ns` holds ServiceAccount "default" and ConfigMap kube-root-ca.crt (done
    /// automatically when a Namespace is created through the API).
    pub fn ensure_namespace_defaults(&self, ns: &str) {
        self.shared.ensure_namespace_defaults(ns);
    }

    /// Approves CSR `name` (as `kubectl certificate approve`) and lets the signer issue it.
    pub fn approve_csr(&self, name: &str) -> Result<Value, ApiServerError> {
        let mut st = self.shared.lock_store();
        let wrap = |source| ApiServerError::Api {
            resource: csr::RESOURCE.into(),
            name: name.into(),
            source,
        };
        csr::approve(
            &mut st,
            name,
            "KubectlApprove",
            "This CSR was approved by kubectl certificate approve.",
        )
        .map_err(wrap)?;
        csr::sign(
            &mut st,
            &self.shared.ca,
            name,
            self.shared.opts.cert_validity,
        );
        st.get(csr::RESOURCE, "", name).cloned().ok_or_else(|| {
            wrap(ApiError::not_found(
                "certificatesigningrequests",
                "certificates.k8s.io",
                name,
            ))
        })
    }

    /// The claims of a service-account token this server issued, if it is valid now.
    pub fn verify_token(&self, token: &str) -> Option<Value> {
        self.shared.signer.verify(token)
    }

    /// True when a PEM client certificate (chain) verifies to the CA now.
    pub fn verify_client_cert(&self, cert_pem: &str) -> bool {
        self.shared.ca.verifies_client_cert(cert_pem)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
