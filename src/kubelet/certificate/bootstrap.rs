//! TLS bootstrap (kubelet pkg/kubelet/certificate/bootstrap/bootstrap.go LoadClientCert):
//! when --kubeconfig is missing or its client certificate is unusable and a
//! --bootstrap-kubeconfig is given, the bootstrap credentials (a bootstrap token) ask
//! for the node's certificate through a CSR; the issued pair goes into the certificate
//! store and --kubeconfig is written to point at `<cert-dir>/kubelet-client-current.pem`
//! with the bootstrap kubeconfig's server and CA.
//!
//! The key is made once and kept in `kubelet-client.key.tmp` until the certificate is
//! stored, and the CSR is named from it, so a restart while waiting for approval finds
//! and keeps waiting on the same request instead of filing a new one.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tracing::{Instrument, info, info_span, warn};

use super::csr::{self, KeyAndRequest, NODES_GROUP, USAGES};
use super::error::CertError;
use super::kubeconfig::{self, Credential};
use super::pair::CertPair;
use super::store::CertStore;
use crate::store::{Durability, write_file};

/// How long bootstrap waits for its CSR to be issued (requestNodeCertificate).
pub const BOOTSTRAP_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// isClientConfigStillValid: the file exists, loads, and every certificate in its
/// client certificate is unexpired at `now`. A kubeconfig without a client certificate
/// (a token) does not count: bootstrap replaces it.
pub fn kubeconfig_still_valid(path: &Path, now: SystemTime) -> Result<bool, CertError> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(CertError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let kc = match kubeconfig::read(path) {
        Ok(kc) => kc,
        Err(e) => {
            warn!(error = %e, "unable to read existing bootstrap client config");
            return Ok(false);
        }
    };
    let Credential::ClientCert {
        cert_pem, key_pem, ..
    } = &kc.credential
    else {
        warn!(path = %path.display(), "no valid client certificate in the existing kubeconfig");
        return Ok(false);
    };
    let pair = match CertPair::from_pem(cert_pem, key_pem) {
        Ok(p) => p,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "unable to read the client certificate of the existing kubeconfig");
            return Ok(false);
        }
    };
    if pair.expired_at(now) {
        warn!(path = %path.display(), not_after = ?pair.not_after, "the existing bootstrap client certificate is expired");
        return Ok(false);
    }
    Ok(true)
}

/// LoadClientCert: makes sure `kubeconfig_path` holds a usable client certificate,
/// bootstrapping one through `bootstrap_path` when it does not.
pub async fn load_client_cert(
    kubeconfig_path: &Path,
    bootstrap_path: &Path,
    store: &CertStore,
    node: &str,
    timeout: Duration,
) -> Result<(), CertError> {
    if kubeconfig_still_valid(kubeconfig_path, SystemTime::now())? {
        info!(path = %kubeconfig_path.display(), "kubeconfig exists and is valid, skipping bootstrap");
        return Ok(());
    }
    info!("using bootstrap kubeconfig to generate TLS client cert, key and kubeconfig file");
    let bootstrap = kubeconfig::read(bootstrap_path)?;
    let client = super::client::build(&bootstrap, None).await?;
    let req = pending_request(store, node)?;
    let name = csr::digested_name(
        &req.public_key_der,
        &csr::node_common_name(node),
        &[NODES_GROUP],
        &USAGES,
    );
    let cert = async {
        let (name, uid) = csr::request_certificate(&client, Some(&name), &req).await?;
        info!("waiting for client certificate to be issued");
        csr::wait_for_certificate(&client, &name, &uid, timeout).await
    }
    .instrument(info_span!("csr", name = %name))
    .await?;
    store.update(&cert, req.key_pem.as_bytes(), SystemTime::now())?;
    if let Err(e) = std::fs::remove_file(store.pending_key_path())
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %store.pending_key_path().display(), error = %e, "failed cleaning up private key file");
    }
    let text = kubeconfig::render_for_cert_dir(&bootstrap, &store.current_path());
    write_file(kubeconfig_path, text.as_bytes(), Durability::Durable).map_err(|source| {
        CertError::Io {
            path: kubeconfig_path.to_path_buf(),
            source,
        }
    })
}

/// The key to request with: the current pair's (even if its certificate expired), else
/// the pending key file, else a new key written there first.
fn pending_request(store: &CertStore, node: &str) -> Result<KeyAndRequest, CertError> {
    if let Ok(Some(pair)) = store.current()
        && let Ok(req) = csr::request_for_key(node, &pair.key_pem)
    {
        return Ok(req);
    }
    let path = store.pending_key_path();
    match std::fs::read(&path) {
        Ok(key) => match csr::request_for_key(node, &key) {
            Ok(req) => return Ok(req),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "pending key unusable, making a new one")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(CertError::Io { path, source }),
    }
    info!("no valid private key and/or certificate found, creating a new one");
    let req = csr::generate(node)?;
    write_file(&path, req.key_pem.as_bytes(), Durability::Durable)
        .map_err(|source| CertError::Io { path, source })?;
    Ok(req)
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
