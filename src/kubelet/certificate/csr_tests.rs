#![allow(clippy::unwrap_used)]

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use x509_parser::prelude::FromDer;

use super::*;

fn parse(pem: &str) -> (String, Vec<String>, Vec<u8>, usize) {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert_eq!(block.label, "CERTIFICATE REQUEST");
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .unwrap();
    let info = &req.certification_request_info;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let orgs = info
        .subject
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    // id-ecPublicKey with the prime256v1 curve.
    assert_eq!(
        info.subject_pki.algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    let curve = info
        .subject_pki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    (
        cn,
        orgs,
        info.subject_pki.raw.to_vec(),
        req.requested_extensions().map_or(0, |e| e.count()),
    )
}

#[test]
fn a_new_key_and_request_for_the_node() {
    let req = generate("worker-1").unwrap();
    assert!(req.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let (cn, orgs, spki, exts) = parse(&req.csr_pem);
    assert_eq!(cn, "system:node:worker-1");
    assert_eq!(orgs, ["system:nodes"]);
    assert_eq!(spki, req.public_key_der);
    assert_eq!(exts, 0, "no SANs or other extensions are requested");

    let again = request_for_key("worker-1", req.key_pem.as_bytes()).unwrap();
    assert_eq!(again.public_key_der, req.public_key_der);
    assert_ne!(
        generate("worker-1").unwrap().public_key_der,
        req.public_key_der
    );
}

#[test]
fn the_api_object_uses_the_kubelet_signer() {
    let req = generate("n").unwrap();
    let obj = csr_object(None, &req.csr_pem);
    assert_eq!(obj.metadata.generate_name.as_deref(), Some("csr-"));
    assert_eq!(obj.metadata.name, None);
    assert_eq!(
        obj.spec.signer_name,
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        obj.spec.usages.as_deref().unwrap(),
        ["digital signature", "client auth"]
    );
    assert_eq!(obj.spec.request.0, req.csr_pem.as_bytes());
    assert_eq!(obj.spec.expiration_seconds, None);
    let json = serde_json::to_value(&obj).unwrap();
    // spec.request is base64 on the wire, as the API server expects []byte.
    assert_eq!(
        json["spec"]["request"],
        base64::engine::general_purpose::STANDARD.encode(req.csr_pem.as_bytes())
    );
    let named = csr_object(Some("node-csr-x"), &req.csr_pem);
    assert_eq!(named.metadata.name.as_deref(), Some("node-csr-x"));
    assert_eq!(named.metadata.generate_name, None);
}

#[test]
fn bootstrap_names_are_stable_digests() {
    let a = digested_name(b"key-a", "system:node:n", &["system:nodes"], &USAGES);
    assert_eq!(
        a,
        digested_name(b"key-a", "system:node:n", &["system:nodes"], &USAGES)
    );
    assert_ne!(
        a,
        digested_name(b"key-b", "system:node:n", &["system:nodes"], &USAGES)
    );
    // The delimiter keeps 'CN:foo,O:bar' and 'CN:foob,O:ar' apart.
    assert_ne!(
        digested_name(b"k", "foo", &["bar"], &[]),
        digested_name(b"k", "foob", &["ar"], &[])
    );
    assert!(a.starts_with("node-csr-"));
    // SHA-512/256 in unpadded base64url: 43 characters.
    assert_eq!(a.len(), "node-csr-".len() + 43);
}

fn with_conditions(
    uid: &str,
    conds: &[(&str, &str, &str)],
    cert: Option<&[u8]>,
) -> CertificateSigningRequest {
    let mut obj = csr_object(Some("csr-abc"), "x");
    obj.metadata.uid = Some(uid.to_string());
    obj.status = Some(CertificateSigningRequestStatus {
        certificate: cert.map(|c| ByteString(c.to_vec())),
        conditions: Some(
            conds
                .iter()
                .map(|(t, r, m)| CertificateSigningRequestCondition {
                    type_: t.to_string(),
                    status: "True".into(),
                    reason: Some(r.to_string()),
                    message: Some(m.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
    });
    obj
}

#[test]
fn issued_only_when_approved_with_a_certificate() {
    let mut pending = csr_object(Some("csr-abc"), "x");
    pending.metadata.uid = Some("u1".into());
    assert_eq!(issued_certificate(&pending, "u1"), Ok(None));
    let approved = with_conditions("u1", &[("Approved", "AutoApproved", "")], None);
    assert_eq!(issued_certificate(&approved, "u1"), Ok(None));
    let issued = with_conditions("u1", &[("Approved", "AutoApproved", "")], Some(b"PEM"));
    assert_eq!(issued_certificate(&issued, "u1"), Ok(Some(b"PEM".to_vec())));
    let unapproved_cert = with_conditions("u1", &[], Some(b"PEM"));
    assert_eq!(issued_certificate(&unapproved_cert, "u1"), Ok(None));
}

#[test]
fn denied_failed_and_replaced_requests_are_errors() {
    let denied = with_conditions("u1", &[("Denied", "NotANode", "no such node")], None);
    assert_eq!(
        issued_certificate(&denied, "u1"),
        Err(
            "certificate signing request is denied, reason: NotANode, message: no such node".into()
        )
    );
    let failed = with_conditions(
        "u1",
        &[("Approved", "", ""), ("Failed", "SignerFailure", "bad key")],
        None,
    );
    assert_eq!(
        issued_certificate(&failed, "u1"),
        Err("certificate signing request failed, reason: SignerFailure, message: bad key".into())
    );
    let pending = with_conditions("u2", &[], None);
    assert_eq!(
        issued_certificate(&pending, "u1"),
        Err("csr \"csr-abc\" changed UIDs".into())
    );
}

#[test]
fn an_existing_request_must_carry_our_key() {
    let ours = generate("n").unwrap();
    let existing = csr_object(
        Some("node-csr-x"),
        &request_for_key("n", ours.key_pem.as_bytes())
            .unwrap()
            .csr_pem,
    );
    assert_eq!(same_key(&existing, &ours), Ok(()));
    let other = csr_object(Some("node-csr-x"), &generate("n").unwrap().csr_pem);
    assert!(same_key(&other, &ours).unwrap_err().contains("another key"));
    let other_node = csr_object(
        Some("node-csr-x"),
        &request_for_key("m", ours.key_pem.as_bytes())
            .unwrap()
            .csr_pem,
    );
    assert!(
        same_key(&other_node, &ours)
            .unwrap_err()
            .contains("subjects differ")
    );
}
