//! Identities on the test API server, through kube-rs: client certificates, bootstrap and
//! service-account tokens, 401 and 403, CSR approval and signing, TokenRequest. No root
//! needed.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::time::Duration;

use berth_integration_tests::apiserver::{ApiServer, Credentials, Options};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn authentication_and_bootstrap_authorization() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let anonymous =
        ApiServer::client_from(&api.kubeconfig("nobody", &Credentials::Token(String::new())))
            .await
            .unwrap();
    let pods: Api<Pod> = Api::namespaced(anonymous, "default");
    assert_eq!(
        api_code(pods.list(&ListParams::default()).await.unwrap_err()),
        401
    );
    let bogus = ApiServer::client_from(&api.kubeconfig(
        "bogus",
        &Credentials::Token("abcdef.0123456789abcdef".into()),
    ))
    .await
    .unwrap();
    assert_eq!(
        api_code(
            Api::<Pod>::all(bogus)
                .list(&ListParams::default())
                .await
                .unwrap_err()
        ),
        401
    );

    let node = ApiServer::client_from(&api.node_kubeconfig("n1").unwrap())
        .await
        .unwrap();
    Api::<Pod>::all(node)
        .list(&ListParams::default())
        .await
        .unwrap();
    let who = api.requests().last().unwrap().user.clone();
    assert_eq!(who.as_deref(), Some("system:node:n1"));

    let boot = ApiServer::client_from(&api.bootstrap_kubeconfig().unwrap())
        .await
        .unwrap();
    assert_eq!(
        api_code(
            Api::<Pod>::all(boot.clone())
                .list(&ListParams::default())
                .await
                .unwrap_err()
        ),
        403
    );
    Api::<CertificateSigningRequest>::all(boot)
        .list(&ListParams::default())
        .await
        .unwrap();
}

fn node_csr(node: &str) -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    (p.serialize_request(&key).unwrap().pem().unwrap(), key)
}

#[tokio::test]
async fn csr_approval_signing_and_the_new_identity() {
    let api = ApiServer::start(Options {
        cert_validity: Duration::from_secs(20),
        ..Options::default()
    })
    .await
    .unwrap();
    let boot = ApiServer::client_from(&api.bootstrap_kubeconfig().unwrap())
        .await
        .unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(boot);
    let (pem, key) = node_csr("n1");
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = csrs.create(&PostParams::default(), &csr).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(
        created
            .spec
            .username
            .as_deref()
            .unwrap()
            .starts_with("system:bootstrap:")
    );
    assert!(created.status.and_then(|s| s.certificate).is_none());
    api.approve_csr(&name).unwrap();

    let signed = csrs.get(&name).await.unwrap();
    let status = signed.status.unwrap();
    assert_eq!(status.conditions.unwrap()[0].type_, "Approved");
    let cert = String::from_utf8(status.certificate.unwrap().0).unwrap();
    assert!(api.verify_client_cert(&cert));
    let (_, x509) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
    let x509 = x509.parse_x509().unwrap();
    let life = x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp();
    assert!((19..=21).contains(&life), "validity {life}s");

    let kc = api.kubeconfig(
        "n1",
        &Credentials::Cert {
            cert_pem: cert,
            key_pem: key.serialize_pem(),
        },
    );
    Api::<Pod>::all(ApiServer::client_from(&kc).await.unwrap())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        api.requests().last().unwrap().user.as_deref(),
        Some("system:node:n1")
    );
}

#[tokio::test]
async fn auto_approval_signs_on_create() {
    let api = ApiServer::start(Options {
        auto_approve_csrs: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(api.client().await.unwrap());
    let (pem, _) = node_csr("n2");
    let csr: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "c"}, "spec": {
        "request": k8s_openapi::ByteString(pem.into_bytes()), "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
        "usages": ["client auth"]}})).unwrap();
    csrs.create(&PostParams::default(), &csr).await.unwrap();
    let got = csrs.get("c").await.unwrap();
    assert!(got.status.unwrap().certificate.is_some());
}

#[tokio::test]
async fn token_request_honours_expiration_and_audiences() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let client = api.client().await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let req = |secs: i64| TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["berth".into()],
            expiration_seconds: Some(secs),
            ..Default::default()
        },
        ..Default::default()
    };
    let tr = sas
        .create_token_request("default", &PostParams::default(), &req(3607))
        .await
        .unwrap();
    let status = tr.status.unwrap();
    let claims = api.verify_token(&status.token).unwrap();
    assert_eq!(claims["aud"], json!(["berth"]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    let left = status.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
    assert!((3600..=3607).contains(&left), "{left}");
    assert_eq!(
        api_code(
            sas.create_token_request("default", &PostParams::default(), &req(599))
                .await
                .unwrap_err()
        ),
        422
    );
    assert_eq!(
        api_code(
            sas.create_token_request("ghost", &PostParams::default(), &req(3607))
                .await
                .unwrap_err()
        ),
        404
    );

    // The token authenticates as its service account.
    let sa_client =
        ApiServer::client_from(&api.kubeconfig("sa", &Credentials::Token(status.token)))
            .await
            .unwrap();
    Api::<Pod>::all(sa_client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        api.requests().last().unwrap().user.as_deref(),
        Some("system:serviceaccount:default:default")
    );
}
