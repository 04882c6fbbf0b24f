//! Reading the node's kubeconfig (--kubeconfig, --bootstrap-kubeconfig) with kube's
//! Kubeconfig types, and writing the one bootstrap leaves behind.
//!
//! The node accepts what it can use without running anything: a server, its CA (data or
//! file), and a client certificate and key (data or files), a bearer token or tokenFile,
//! or basic auth. Credential plugins (exec, auth-provider) are refused by field name:
//! a node agent must not depend on a binary or a cloud helper to reach its API server.

use std::path::{Path, PathBuf};

use base64::Engine;
use kube::config::{AuthInfo, Cluster, Kubeconfig};

use super::error::CertError;

/// The selected context of a kubeconfig, validated for the node's use.
#[derive(Debug, Clone)]
pub struct NodeKubeconfig {
    /// The file it came from (relative paths inside it are already resolved).
    pub path: PathBuf,
    /// kube's form, handed to kube's Config for the CA, timeouts and token handling.
    pub raw: Kubeconfig,
    /// The user name of the current context (its AuthInfo in `raw`).
    pub user: Option<String>,
    pub server: String,
    /// The CA bundle PEM, from certificate-authority-data or certificate-authority.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_tls_verify: bool,
    pub credential: Credential,
}

/// How the node proves who it is with this kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate and key, read from data or files; the files are named so
    /// the certificate store can fall back to them as upstream's store does.
    ClientCert {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    },
    /// token, tokenFile or username/password: an Authorization header kube adds.
    Header,
    /// Nothing: anonymous requests.
    Anonymous,
}

/// Reads `path` (relative paths inside resolved against its directory) and selects
/// its current context.
pub fn read(path: &Path) -> Result<NodeKubeconfig, CertError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(CertError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    let raw = Kubeconfig::read_from(path).map_err(|source| CertError::ReadKubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    select(path, raw)
}

/// Selects the current context of `raw` and checks what the node can use.
pub fn select(path: &Path, raw: Kubeconfig) -> Result<NodeKubeconfig, CertError> {
    let bad = |field: &str, reason: &str| CertError::Kubeconfig {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    };
    let ctx_name = raw
        .current_context
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("current-context", "not set"))?;
    let ctx = raw
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| bad("current-context", &format!("no context named {ctx_name:?}")))?;
    let cluster: Cluster = raw
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| {
            bad(
                &format!("contexts[{ctx_name}].cluster"),
                &format!("no cluster named {:?}", ctx.cluster),
            )
        })?;
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(&format!("clusters[{}].server", ctx.cluster), "not set"))?;
    let auth: AuthInfo = match &ctx.user {
        Some(user) => raw
            .auth_infos
            .iter()
            .find(|a| &a.name == user)
            .and_then(|a| a.auth_info.clone())
            .ok_or_else(|| {
                bad(
                    &format!("contexts[{ctx_name}].user"),
                    &format!("no user named {user:?}"),
                )
            })?,
        None => AuthInfo::default(),
    };
    let user_field = |f: &str| format!("users[{}].{f}", ctx.user.as_deref().unwrap_or(""));
    if auth.exec.is_some() {
        return Err(CertError::PluginRefused {
            path: path.to_path_buf(),
            field: user_field("exec"),
        });
    }
    if auth.auth_provider.is_some() {
        return Err(CertError::PluginRefused {
            path: path.to_path_buf(),
            field: user_field("auth-provider"),
        });
    }
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) if !data.is_empty() => Some(decode_data(data).map_err(|e| {
            bad(
                &format!("clusters[{}].certificate-authority-data", ctx.cluster),
                &e,
            )
        })?),
        (_, Some(file)) if !file.is_empty() => Some(read_file(Path::new(file))?),
        _ => None,
    };
    let credential = credential(&auth, &user_field, &bad)?;
    Ok(NodeKubeconfig {
        path: path.to_path_buf(),
        user: ctx.user.clone(),
        server,
        ca_pem,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
        credential,
        raw,
    })
}

fn credential(
    auth: &AuthInfo,
    user_field: &dyn Fn(&str) -> String,
    bad: &dyn Fn(&str, &str) -> CertError,
) -> Result<Credential, CertError> {
    let cert = pem_source(
        auth.client_certificate_data.as_deref(),
        auth.client_certificate.as_deref(),
    );
    let key_data = auth
        .client_key_data
        .as_ref()
        .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string());
    let key = pem_source(key_data.as_deref(), auth.client_key.as_deref());
    match (cert, key) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(bad(
                &user_field("client-key"),
                "client certificate given without a key",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                &user_field("client-certificate"),
                "client key given without a certificate",
            ));
        }
        (Some(cert), Some(key)) => {
            let load = |src: PemSource<'_>,
                        field: &str|
             -> Result<(Vec<u8>, Option<PathBuf>), CertError> {
                match src {
                    PemSource::Data(d) => Ok((
                        decode_data(d).map_err(|e| bad(&user_field(field), &e))?,
                        None,
                    )),
                    PemSource::File(f) => Ok((read_file(Path::new(f))?, Some(PathBuf::from(f)))),
                }
            };
            let (cert_pem, cert_file) = load(cert, "client-certificate-data")?;
            let (key_pem, key_file) = load(key, "client-key-data")?;
            return Ok(Credential::ClientCert {
                cert_pem,
                key_pem,
                cert_file,
                key_file,
            });
        }
    }
    let has = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if auth.token.is_some() || has(&auth.token_file) || has(&auth.username) {
        return Ok(Credential::Header);
    }
    Ok(Credential::Anonymous)
}

enum PemSource<'a> {
    Data(&'a str),
    File(&'a str),
}

/// Data wins over a file, as in client-go.
fn pem_source<'a>(data: Option<&'a str>, file: Option<&'a str>) -> Option<PemSource<'a>> {
    match (data, file) {
        (Some(d), _) if !d.is_empty() => Some(PemSource::Data(d)),
        (_, Some(f)) if !f.is_empty() => Some(PemSource::File(f)),
        _ => None,
    }
}

fn decode_data(data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("not base64: {e}"))
}

fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The kubeconfig bootstrap writes (upstream writeKubeconfigFromBootstrapping): the
/// bootstrap kubeconfig's server and CA, and the rotated pair file as both the client
/// certificate and key, so the file never needs rewriting after a rotation.
pub fn render_for_cert_dir(bootstrap: &NodeKubeconfig, pem_path: &Path) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut cluster = serde_json::json!({ "server": bootstrap.server });
    if bootstrap.insecure_skip_tls_verify {
        cluster["insecure-skip-tls-verify"] = true.into();
    }
    if let Some(ca) = &bootstrap.ca_pem {
        cluster["certificate-authority-data"] = b64(ca).into();
    }
    let pem = pem_path.to_string_lossy();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "default-cluster", "cluster": cluster }],
        "users": [{ "name": "default-auth", "user": {
            "client-certificate": pem, "client-key": pem } }],
        "contexts": [{ "name": "default-context", "context": {
            "cluster": "default-cluster", "user": "default-auth", "namespace": "default" } }],
        "current-context": "default-context",
    });
    // JSON is YAML; serde_yaml_ng gives the familiar form for people reading the file.
    serde_yaml_ng::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

#[cfg(test)]
#[path = "kubeconfig_tests.rs"]
mod tests;
