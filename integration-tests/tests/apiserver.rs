//! The test API server driven by kube-rs exactly as berth drives a real one: REST verbs,
//! selectors, the three patch types, conflicts, graceful deletion, authentication and
//! authorization, CSR approval and signing, TokenRequest. No root needed.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::time::Duration;

use berth_integration_tests::apiserver::{ApiServer, Credentials, Options};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn create_get_list_with_selectors_and_defaults() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client().await.unwrap(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", "n2"))
        .await
        .unwrap();
    assert_eq!(
        api_code(
            pods.create(&PostParams::default(), &pod("a", "n1"))
                .await
                .unwrap_err()
        ),
        409
    );

    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        mount.mount_path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert!(mount.name.starts_with("kube-api-access-") && mount.name.len() == 21);
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 1);
    assert_eq!(on_n1.items[0].metadata.name.as_deref(), Some("a"));
    assert!(on_n1.metadata.resource_version.is_some());
    let by_label = pods
        .list(&ListParams::default().labels("app in (b,c)"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    let all: Api<Pod> = Api::all(api.client().await.unwrap());
    assert_eq!(
        all.list(&ListParams::default().fields("metadata.name!=a"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(api_code(pods.get("nope").await.unwrap_err()), 404);

    // Namespace defaults, as the controllers of a real cluster make them.
    assert!(
        api.get("serviceaccounts", "kube-system", "default")
            .is_some()
    );
    let cm = api
        .get("configmaps", "default", "kube-root-ca.crt")
        .unwrap();
    assert_eq!(cm["data"]["ca.crt"], api.ca_pem());
}

#[tokio::test]
async fn status_patches_updates_and_conflicts() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client().await.unwrap(), "default");
    let p = pods
        .create(&PostParams::default(), &pod("p", "n1"))
        .await
        .unwrap();
    let pp = PatchParams::default();

    let merge = json!({"status": {"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}});
    let p1 = pods
        .patch_status("p", &pp, &Patch::Merge(&merge))
        .await
        .unwrap();
    assert_eq!(
        p1.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );

    let strategic = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}],
        "podIPs": [{"ip": "10.0.0.5"}]}});
    let p2 = pods
        .patch_status("p", &pp, &Patch::Strategic(&strategic))
        .await
        .unwrap();
    let conds = p2.status.as_ref().unwrap().conditions.clone().unwrap();
    let got: Vec<_> = conds
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(got, [("PodScheduled", "True"), ("Ready", "True")]);
    assert!(p2.metadata.resource_version > p1.metadata.resource_version);

    // A patch that changes nothing writes nothing.
    let p3 = pods
        .patch_status("p", &pp, &Patch::Strategic(&strategic))
        .await
        .unwrap();
    assert_eq!(p3.metadata.resource_version, p2.metadata.resource_version);

    // JSON patch, guarded by a test op.
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/status/phase", "value": "Running"},
        {"op": "add", "path": "/metadata/labels/x", "value": "y"}]))
    .unwrap();
    let p4 = pods.patch("p", &pp, &Patch::<()>::Json(ok)).await.unwrap();
    assert_eq!(p4.metadata.labels.as_ref().unwrap()["x"], "y");
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/status/phase", "value": "Pending"}]))
    .unwrap();
    assert_eq!(
        api_code(
            pods.patch("p", &pp, &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        ),
        422
    );

    // Update on a stale resourceVersion: 409. A main-resource update keeps the status.
    let mut stale = p.clone();
    stale.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    assert_eq!(
        api_code(
            pods.replace("p", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    let mut fresh = pods.get("p").await.unwrap();
    fresh.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    fresh.status = None;
    let p5 = pods
        .replace("p", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(
        p5.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    // A pod's spec is immutable but for images and a few fields.
    let mut changed = p5.clone();
    changed.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    assert_eq!(
        api_code(
            pods.replace("p", &PostParams::default(), &changed)
                .await
                .unwrap_err()
        ),
        422
    );

    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path
                    .starts_with("/api/v1/namespaces/default/pods/p/status")
        })
        .map(|r| r.content_type)
        .collect();
    assert_eq!(
        patches,
        [
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/strategic-merge-patch+json"
        ]
    );
}

#[tokio::test]
async fn graceful_deletion_then_uid_precondition() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client().await.unwrap(), "default");
    let p = pods
        .create(&PostParams::default(), &pod("g", "n1"))
        .await
        .unwrap();
    let marked = pods
        .delete("g", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    assert!(pods.get("g").await.is_ok());

    let wrong = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_code(pods.delete("g", &wrong).await.unwrap_err()), 409);
    let right = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: p.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    pods.delete("g", &right).await.unwrap();
    assert_eq!(api_code(pods.get("g").await.unwrap_err()), 404);

    // Never bound to a node: gone at once.
    let mut unbound = pod("u", "");
    unbound.spec.as_mut().unwrap().node_name = None;
    pods.create(&PostParams::default(), &unbound).await.unwrap();
    pods.delete("u", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(pods.get("u").await.unwrap_err()), 404);
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
