//! The node's API client and its TLS identity: reading --kubeconfig, TLS bootstrap
//! through --bootstrap-kubeconfig, the certificate store under --cert-dir, and client
//! certificate rotation at 70-90% of validity without a restart (kubelet
//! pkg/kubelet/certificate and client-go util/certificate).
//!
//! ```text
//! connect(opts)
//!   bootstrap (if --bootstrap-kubeconfig and --kubeconfig has no valid client cert):
//!     bootstrap creds -> CSR (kube-apiserver-client-kubelet) -> approved -> store -> write --kubeconfig
//!   read --kubeconfig
//!   client cert + rotate: CertSource (current pair) -> kube::Client (cert read per handshake)
//!                         + rotation task: deadline -> new key + CSR -> store -> swap -> close conns
//!   otherwise (token, tokenFile, no rotation): kube's own client for the kubeconfig
//! ```
//!
//! This module owns the files `kubelet-client-*` in the cert dir and the --kubeconfig
//! file when it bootstraps; it touches nothing else.

pub mod bootstrap;
pub mod client;
pub mod csr;
pub mod error;
pub mod kubeconfig;
pub mod pair;
pub mod rotation;
pub mod store;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{Instrument, info, info_span, warn};

pub use error::CertError;
use kubeconfig::Credential;
use pair::CertPair;
use store::{CLIENT_PAIR_PREFIX, CertStore};
use transport::CertSource;

/// What `berth node` passes from its flags.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// --kubeconfig
    pub kubeconfig: PathBuf,
    /// --bootstrap-kubeconfig
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// --cert-dir (kubelet's default: <root-dir>/pki)
    pub cert_dir: PathBuf,
    /// The node's name (--hostname-override or the hostname, lowercased).
    pub node_name: String,
    /// rotateCertificates (default true).
    pub rotate: bool,
    /// How long bootstrap waits for its CSR to be issued.
    pub bootstrap_timeout: Duration,
}

impl ClientOptions {
    /// kubelet's defaults for `root_dir` (--root-dir): cert dir <root-dir>/pki,
    /// rotation on, bootstrap waits an hour.
    pub fn new(kubeconfig: &Path, root_dir: &Path, node_name: &str) -> Self {
        Self {
            kubeconfig: kubeconfig.to_path_buf(),
            bootstrap_kubeconfig: None,
            cert_dir: root_dir.join("pki"),
            node_name: node_name.to_string(),
            rotate: true,
            bootstrap_timeout: bootstrap::BOOTSTRAP_WAIT_TIMEOUT,
        }
    }
}

/// The node's API client, with its rotation task while it lives.
pub struct NodeClient {
    client: kube::Client,
    source: Option<Arc<CertSource>>,
    fixed: Option<CertPair>,
    rotation: Option<RotationTask>,
}

impl NodeClient {
    /// The client; clones share the connection pool and the rotating certificate.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The end of validity of the client certificate in use; None for token or
    /// anonymous credentials.
    pub fn certificate_not_after(&self) -> Option<SystemTime> {
        match &self.source {
            Some(s) => s.pair().map(|p| p.not_after),
            None => self.fixed.as_ref().map(|p| p.not_after),
        }
    }

    /// The PEM of the client certificate in use (for tests and diagnostics).
    pub fn certificate_pem(&self) -> Option<Vec<u8>> {
        match &self.source {
            Some(s) => s.pair().map(|p| p.cert_pem.clone()),
            None => self.fixed.as_ref().map(|p| p.cert_pem.clone()),
        }
    }

    /// Whether a rotation task runs.
    pub fn rotating(&self) -> bool {
        self.rotation.is_some()
    }
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("certificate_not_after", &self.certificate_not_after())
            .field("rotating", &self.rotating())
            .finish_non_exhaustive()
    }
}

/// The rotation task; aborted when dropped with its NodeClient.
#[derive(Debug)]
pub struct RotationTask(tokio::task::JoinHandle<()>);

impl Drop for RotationTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Bootstraps if needed, reads the kubeconfig and builds the node's client, starting
/// rotation when the kubeconfig holds a client certificate and `opts.rotate` is set.
pub async fn connect(opts: &ClientOptions) -> Result<NodeClient, CertError> {
    let span = info_span!("node_client", node = %opts.node_name);
    async {
        if let Some(bootstrap_path) = &opts.bootstrap_kubeconfig {
            let store = CertStore::open(&opts.cert_dir, CLIENT_PAIR_PREFIX)?;
            bootstrap::load_client_cert(
                &opts.kubeconfig,
                bootstrap_path,
                &store,
                &opts.node_name,
                opts.bootstrap_timeout,
            )
            .await?;
        }
        let kc = kubeconfig::read(&opts.kubeconfig)?;
        let Credential::ClientCert {
            cert_pem,
            key_pem,
            cert_file,
            ..
        } = &kc.credential
        else {
            let client = client::build(&kc, None).await?;
            return Ok(NodeClient {
                client,
                source: None,
                fixed: None,
                rotation: None,
            });
        };
        let pem_err = |reason| CertError::Pem {
            what: "client certificate of kubeconfig",
            path: kc.path.clone(),
            reason,
        };
        if !opts.rotate {
            let fixed = CertPair::from_pem(cert_pem, key_pem).map_err(pem_err)?;
            let client = client::build(&kc, None).await?;
            return Ok(NodeClient {
                client,
                source: None,
                fixed: Some(fixed),
                rotation: None,
            });
        }
        let store = CertStore::open(&opts.cert_dir, CLIENT_PAIR_PREFIX)?;
        let now = SystemTime::now();
        // getCurrentCertificateOrBootstrap: the store's pair, else the kubeconfig's;
        // inline data is stored and rotated out at once, as kubelet does for kubeadm.
        let (pair, force) = match store.current()? {
            Some(p) if !p.expired_at(now) => (p, false),
            _ if cert_file.is_some() => (CertPair::from_pem(cert_pem, key_pem).map_err(pem_err)?, false),
            _ => match store.update(cert_pem, key_pem, now) {
                Ok(p) => (p, true),
                Err(e) => {
                    warn!(error = %e, "unable to set the cert/key pair to the bootstrap certificate");
                    (CertPair::from_pem(cert_pem, key_pem).map_err(pem_err)?, true)
                }
            },
        };
        info!(expiration = ?pair.not_after, "client certificate loaded, rotation is enabled");
        let source = Arc::new(CertSource::new(Some(pair)));
        let client = client::build(&kc, Some(source.clone())).await?;
        let manager = Arc::new(rotation::Manager {
            node: opts.node_name.clone(),
            store,
            source: source.clone(),
            force_first: force,
        });
        let task = tokio::spawn(
            manager
                .run(client.clone())
                .instrument(info_span!("certificate_manager", node = %opts.node_name)),
        );
        Ok(NodeClient {
            client,
            source: Some(source),
            fixed: None,
            rotation: Some(RotationTask(task)),
        })
    }
    .instrument(span)
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod testutil;

#[cfg(test)]
#[path = "connect_tests.rs"]
mod connect_tests;
