//! The one error type of the node's API client and TLS identity.

use std::path::PathBuf;
use std::time::Duration;

/// What failed while building the node's API client, bootstrapping or rotating its
/// certificate; each variant names the file, field or API object it failed on.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path}: {field}: {reason}")]
    Kubeconfig {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error(
        "kubeconfig {path}: {field} is set: credential plugins are not supported for the node's \
         client; give client-certificate(-data) and client-key(-data), token or tokenFile"
    )]
    PluginRefused { path: PathBuf, field: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("certificate store {dir}: {reason}")]
    Store { dir: PathBuf, reason: String },
    #[error("certificate signing request for node {node}: {reason}")]
    CsrBuild { node: String, reason: String },
    #[error("CertificateSigningRequest {name}: {reason}")]
    Csr { name: String, reason: String },
    #[error("CertificateSigningRequest {name}: {source}")]
    CsrApi {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("CertificateSigningRequest {name}: not issued within {timeout:?}")]
    CsrTimeout { name: String, timeout: Duration },
    #[error("API client for {server}: {reason}")]
    Client { server: String, reason: String },
}
