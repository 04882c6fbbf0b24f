//! The test CA: made at start, it signs the server's certificate, client certificates
//! (CN = user, O = groups) and approved CSRs; the rustls server config asks for (but does
//! not require) a client certificate, so bearer tokens work on the same port.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime,
};

/// A CA, certificate or TLS setup that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate for {subject}: {source}")]
    Cert {
        subject: String,
        source: rcgen::Error,
    },
    #[error("certificate signing request: {0}")]
    Csr(rcgen::Error),
    #[error("TLS server config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// A certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn serial() -> SerialNumber {
    let mut b = super::meta::random_bytes::<16>();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

fn validity(params: &mut CertificateParams, d: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + d;
}

impl Ca {
    pub fn new() -> Result<Ca, TlsError> {
        let err = |source| TlsError::Cert {
            subject: "CA".into(),
            source,
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "berth-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial());
        validity(&mut params, Duration::from_secs(10 * 365 * 86400));
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// A fresh key and a certificate for it: `cn`/`orgs` as subject, `sans` as DNS names or
    /// IPs, client and/or server auth.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        server: bool,
        valid: Duration,
    ) -> Result<CertKey, TlsError> {
        let err = |source| TlsError::Cert {
            subject: cn.to_string(),
            source,
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        for s in sans {
            params.subject_alt_names.push(match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().map_err(err)?),
            });
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.serial_number = Some(serial());
        validity(&mut params, valid);
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM CSR as the csrsigning controller does: the CSR's subject and SANs, the
    /// usages the CSR object asks for, valid for `valid` from now.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        usages: &[String],
        valid: Duration,
    ) -> Result<String, TlsError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(TlsError::Csr)?;
        let p = &mut csr.params;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages.clear();
        p.extended_key_usages.clear();
        for u in usages {
            match u.as_str() {
                "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                _ => {}
            }
        }
        p.serial_number = Some(serial());
        validity(p, valid);
        Ok(csr.signed_by(&self.issuer).map_err(TlsError::Csr)?.pem())
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        Ok(roots)
    }

    /// The server side: its own certificate for 127.0.0.1/localhost, client certs optional.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let sk = self.issue(
            "berth-test-apiserver",
            &[],
            &["127.0.0.1", "::1", "localhost", "kubernetes.default.svc"],
            true,
            Duration::from_secs(365 * 86400),
        )?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let certs = pem_certs(&sk.cert_pem);
        let key = pem_key(&sk.key_pem).ok_or_else(|| TlsError::Verifier("server key".into()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// True when `cert_pem` (leaf first, then intermediates) chains to this CA as a client
    /// certificate valid now.
    pub fn verifies_client_cert(&self, cert_pem: &str) -> bool {
        let certs = pem_certs(cert_pem);
        let Some((leaf, rest)) = certs.split_first() else {
            return false;
        };
        let Ok(roots) = self.roots() else {
            return false;
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let Ok(v) =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
        else {
            return false;
        };
        v.verify_client_cert(leaf, rest, UnixTime::now()).is_ok()
    }
}

pub fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn pem_key(pem: &str) -> Option<PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(PrivateKeyDer::Pkcs8)
}

/// The user a verified client certificate names: CN and every O.
pub fn cert_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

/// Subject CN and O of a PEM CSR (parsing also checks its signature).
pub fn csr_identity(csr_pem: &str) -> Option<(String, Vec<String>)> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).ok()?;
    let dn = &csr.params.distinguished_name;
    let cn = dn.get(&DnType::CommonName).map(dn_text)?;
    let orgs = dn
        .iter()
        .filter(|(t, _)| **t == DnType::OrganizationName)
        .map(|(_, v)| dn_text(v))
        .collect();
    Some((cn, orgs))
}

fn dn_text(v: &rcgen::DnValue) -> String {
    match v {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_string(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_string(),
        rcgen::DnValue::TeletexString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}
