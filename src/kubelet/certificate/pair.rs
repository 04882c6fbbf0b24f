//! A certificate and its private key as the client presents them: the PEM bytes as
//! stored, the parsed chain and key for rustls, and the leaf's validity and subject
//! (client-go's tls.Certificate with its Leaf).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A parsed client certificate (leaf first) and its key.
#[derive(Debug)]
pub struct CertPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    certified: Arc<CertifiedKey>,
}

impl CertPair {
    /// Parses the certificate blocks of `cert_pem` and the private key of `key_pem`
    /// (both may be the same combined file); the key must match the leaf.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate PEM: {e}"))?;
        let leaf = chain
            .first()
            .ok_or_else(|| "no CERTIFICATE block".to_string())?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key PEM: {e}"))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("private key: {e}"))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("certificate: {e}"))?;
        let validity = parsed.validity();
        let time = |t: &x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                UNIX_EPOCH
            }
        };
        let subject = parsed.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string);
        let organizations = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect();
        let (not_before, not_after) = (time(&validity.not_before), time(&validity.not_after));
        let certified = CertifiedKey::new(chain, signing);
        // A key that does not belong to the certificate would fail every handshake;
        // refuse it here, where the file can still be named.
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => return Err(format!("private key does not match the certificate: {e}")),
        }
        Ok(Self {
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
            not_before,
            not_after,
            common_name,
            organizations,
            certified: Arc::new(certified),
        })
    }

    /// The chain and signing key handed to rustls at a handshake.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// Whether the leaf's validity has ended at `now` (client-go: now.After(NotAfter)).
    pub fn expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after
    }
}
