//! The node's key and CertificateSigningRequest (client-go util/certificate/csr and
//! kubelet's client certificate template): a new ECDSA P-256 key, a PKCS#10 request for
//! CN=system:node:<node>, O=system:nodes, submitted to the
//! kubernetes.io/kube-apiserver-client-kubelet signer and watched by name until it is
//! issued, denied or failed.

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use sha2::Digest;
use tracing::{debug, info};

use super::error::CertError;

/// The signer that issues kubelet API client certificates.
pub const SIGNER_NAME: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// client-go DefaultKubeletClientGetUsages for a non-RSA key: key encipherment is
/// only requested for RSA keys.
pub const USAGES: [&str; 2] = ["digital signature", "client auth"];
/// The group every node's certificate carries.
pub const NODES_GROUP: &str = "system:nodes";

/// The identity a node certificate must carry.
pub fn node_common_name(node: &str) -> String {
    format!("system:node:{node}")
}

/// A private key and a CSR signed with it.
#[derive(Debug, Clone)]
pub struct KeyAndRequest {
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// "CERTIFICATE REQUEST" PEM.
    pub csr_pem: String,
    /// The SubjectPublicKeyInfo DER, which names bootstrap's CSR.
    pub public_key_der: Vec<u8>,
}

/// A new ECDSA P-256 key and its request.
pub fn generate(node: &str) -> Result<KeyAndRequest, CertError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
        CertError::CsrBuild {
            node: node.to_string(),
            reason: format!("generating the key: {e}"),
        }
    })?;
    request_for(node, &key)
}

/// A request for an existing key: the first private key block of `pem`, which may
/// also hold certificates (a stored pair file). Bootstrap reuses its key this way.
pub fn request_for_key(node: &str, pem: &[u8]) -> Result<KeyAndRequest, CertError> {
    use rustls::pki_types::pem::PemObject;
    let err = |reason: String| CertError::CsrBuild {
        node: node.to_string(),
        reason: format!("reading the existing key: {reason}"),
    };
    let der =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|e| err(e.to_string()))?;
    let key = rcgen::KeyPair::try_from(&der).map_err(|e| err(e.to_string()))?;
    request_for(node, &key)
}

fn request_for(node: &str, key: &rcgen::KeyPair) -> Result<KeyAndRequest, CertError> {
    let err = |e: rcgen::Error| CertError::CsrBuild {
        node: node.to_string(),
        reason: e.to_string(),
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, NODES_GROUP);
    dn.push(rcgen::DnType::CommonName, node_common_name(node));
    params.distinguished_name = dn;
    let csr = params.serialize_request(key).map_err(err)?;
    Ok(KeyAndRequest {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(err)?,
        public_key_der: rcgen::PublicKeyData::subject_public_key_info(key),
    })
}

/// Bootstrap's CSR name (kubelet digestedName): "node-csr-" and a hash of the public
/// key, subject and usages, so a restart with the same pending key finds its request.
pub fn digested_name(
    public_key_der: &[u8],
    common_name: &str,
    orgs: &[&str],
    usages: &[&str],
) -> String {
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut hash = sha2::Sha512_256::new();
    // The delimiter is outside the base64url alphabet, so no two inputs share a stream.
    let mut write = |data: &[u8]| {
        hash.update(enc(data).as_bytes());
        hash.update(b"|");
    };
    write(public_key_der);
    write(common_name.as_bytes());
    for o in orgs {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", enc(&hash.finalize()))
}

/// The API object: a fixed name, or generateName "csr-" as csr.RequestCertificate sets.
pub fn csr_object(name: Option<&str>, csr_pem: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: name.map(str::to_string),
            generate_name: name.is_none().then(|| "csr-".to_string()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: SIGNER_NAME.to_string(),
            usages: Some(USAGES.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    }
}

/// What a watched CSR says: issued (the certificate PEM), still pending, or refused.
pub fn issued_certificate(
    csr: &CertificateSigningRequest,
    uid: &str,
) -> Result<Option<Vec<u8>>, String> {
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    if csr.metadata.uid.as_deref().unwrap_or_default() != uid {
        return Err(format!("csr {name:?} changed UIDs"));
    }
    let Some(status) = &csr.status else {
        return Ok(None);
    };
    let mut approved = false;
    for c in status.conditions.iter().flatten() {
        let (reason, message) = (
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or(""),
        );
        match c.type_.as_str() {
            "Denied" => {
                return Err(format!(
                    "certificate signing request is denied, reason: {reason}, message: {message}"
                ));
            }
            "Failed" => {
                return Err(format!(
                    "certificate signing request failed, reason: {reason}, message: {message}"
                ));
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    match &status.certificate {
        Some(cert) if approved && !cert.0.is_empty() => Ok(Some(cert.0.clone())),
        _ => Ok(None),
    }
}

/// Submits the request (csr.RequestCertificate); a fixed name that already exists is
/// reused when its subject and key match ours. Returns the object's name and UID.
pub async fn request_certificate(
    client: &kube::Client,
    name: Option<&str>,
    req: &KeyAndRequest,
) -> Result<(String, String), CertError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let shown = name.unwrap_or("csr-*").to_string();
    let api_err = |source| CertError::CsrApi {
        name: shown.clone(),
        source,
    };
    let named = |obj: CertificateSigningRequest| -> Result<(String, String), CertError> {
        match (obj.metadata.name, obj.metadata.uid) {
            (Some(n), Some(u)) => Ok((n, u)),
            _ => Err(CertError::Csr {
                name: shown.clone(),
                reason: "the API server returned it without a name or UID".into(),
            }),
        }
    };
    match api
        .create(&PostParams::default(), &csr_object(name, &req.csr_pem))
        .await
    {
        Ok(obj) => named(obj),
        Err(kube::Error::Api(status)) if status.is_already_exists() && name.is_some() => {
            info!(csr = %shown, "csr for this node already exists, reusing");
            let existing = api.get(&shown).await.map_err(api_err)?;
            same_key(&existing, req).map_err(|reason| CertError::Csr {
                name: shown.clone(),
                reason: format!("retrieved csr is not compatible: {reason}"),
            })?;
            named(existing)
        }
        Err(e) => Err(api_err(e)),
    }
}

/// ensureCompatible: the existing request carries our public key and subject.
fn same_key(existing: &CertificateSigningRequest, ours: &KeyAndRequest) -> Result<(), String> {
    let parse = |pem: &[u8]| -> Result<(Vec<u8>, String), String> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("request PEM: {e}"))?;
        if block.label != "CERTIFICATE REQUEST" {
            return Err("PEM block type must be CERTIFICATE REQUEST".into());
        }
        let (_, csr) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<'_, _>>::from_der(&block.contents)
            .map_err(|e| format!("request: {e}"))?;
        let info = &csr.certification_request_info;
        Ok((info.subject_pki.raw.to_vec(), info.subject.to_string()))
    };
    let (theirs_key, theirs_subject) = parse(&existing.spec.request.0)?;
    let (our_key, our_subject) = parse(ours.csr_pem.as_bytes())?;
    if theirs_subject != our_subject {
        return Err(format!(
            "csr subjects differ: new: {theirs_subject}, orig: {our_subject}"
        ));
    }
    if existing.spec.signer_name != SIGNER_NAME {
        return Err(format!(
            "csr signerNames differ: new {:?}, orig: {SIGNER_NAME:?}",
            existing.spec.signer_name
        ));
    }
    if theirs_key != our_key {
        return Err("the request was made with another key".into());
    }
    Ok(())
}

/// Watches the CSR by name until it is issued (csr.WaitForCertificate).
pub async fn wait_for_certificate(
    client: &kube::Client,
    name: &str,
    uid: &str,
    timeout: Duration,
) -> Result<Vec<u8>, CertError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let watch = async {
        let mut stream =
            std::pin::pin!(kube::runtime::watcher::watch_object(api, name).default_backoff());
        while let Some(item) = stream.next().await {
            match item {
                Ok(Some(csr)) => match issued_certificate(&csr, uid) {
                    Ok(Some(cert)) => {
                        debug!(csr = name, "certificate signing request is issued");
                        return Ok(cert);
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        return Err(CertError::Csr {
                            name: name.to_string(),
                            reason,
                        });
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    debug!(csr = name, error = %e, "watching the certificate signing request")
                }
            }
        }
        Err(CertError::Csr {
            name: name.to_string(),
            reason: "the watch ended".into(),
        })
    };
    tokio::time::timeout(timeout, watch)
        .await
        .map_err(|_| CertError::CsrTimeout {
            name: name.to_string(),
            timeout,
        })?
}

#[cfg(test)]
#[path = "csr_tests.rs"]
mod tests;
