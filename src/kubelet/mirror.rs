//! Mirror pods (pkg/kubelet/pod/mirror_client.go and their upkeep in syncPod and
//! HandlePodCleanups): the API server's read-only copy of each static pod, so that the
//! cluster sees what runs on the node. A mirror pod carries the annotation
//! `kubernetes.io/config.mirror` with its static pod's config hash and is owned by the
//! Node. A missing one is created; one that someone deletes, or that mirrors an older
//! version of its static pod, is deleted at once and made again (the static pod itself
//! keeps running); one whose static pod is gone is deleted. Deletes carry the mirror pod's UID as a precondition and grace 0.
//!
//! [`plan`] is the pure desired-state diff; [`run`] applies it whenever the static pods,
//! the API's pods or the Node change, and every 10 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::sync::watch;

use super::config::apiserver::{ApiView, MIRROR_ANNOTATION, is_mirror};
use super::config::{Desired, HASH_ANNOTATION, SOURCE_ANNOTATION};

const RESYNC: Duration = Duration::from_secs(10);

/// One change to the API's mirror pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(Box<Pod>),
    /// namespace, name, UID.
    Delete(String, String, String),
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a String> {
    pod.metadata.annotations.as_ref()?.get(key)
}

/// Whether the pod came from a file or URL (a static pod), not from the API.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, SOURCE_ANNOTATION).is_some_and(|s| s == "file" || s == "http")
}

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// The mirror pod of `static_pod` on `node` (upstream's CreateMirrorPod copy).
pub fn mirror_of(static_pod: &Pod, node: &Node) -> Pod {
    let hash = annotation(static_pod, HASH_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let mut annotations = static_pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(MIRROR_ANNOTATION.to_string(), hash);
    Pod {
        metadata: ObjectMeta {
            name: static_pod.metadata.name.clone(),
            namespace: static_pod.metadata.namespace.clone(),
            labels: static_pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.metadata.name.clone().unwrap_or_default(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: static_pod.spec.clone(),
        status: None,
    }
}

/// What to change so that every static pod has exactly one current mirror pod. Pure.
pub fn plan<'a>(
    static_pods: impl IntoIterator<Item = &'a Pod>,
    api_pods: impl IntoIterator<Item = &'a Pod>,
    node: &Node,
) -> Vec<Action> {
    let mut mirrors: BTreeMap<(String, String), &Pod> = api_pods
        .into_iter()
        .filter(|p| is_mirror(p))
        .map(|p| (key(p), p))
        .collect();
    let mut actions = Vec::new();
    let delete = |p: &Pod| {
        let (ns, name) = key(p);
        Action::Delete(ns, name, p.metadata.uid.clone().unwrap_or_default())
    };
    for sp in static_pods.into_iter().filter(|p| is_static(p)) {
        match mirrors.remove(&key(sp)) {
            None => actions.push(Action::Create(Box::new(mirror_of(sp, node)))),
            Some(m) => {
                let current = annotation(m, MIRROR_ANNOTATION) == annotation(sp, HASH_ANNOTATION);
                // One being deleted (gracefully, by someone) or of an older version of
                // its static pod is deleted at once, and made again once it is gone.
                if m.metadata.deletion_timestamp.is_some() || !current {
                    actions.push(delete(m));
                }
            }
        }
    }
    // Mirror pods of static pods that are gone.
    for m in mirrors.values() {
        actions.push(delete(m));
    }
    actions
}

/// Keeps the mirror pods in line until the inputs are gone.
pub async fn run(
    client: kube::Client,
    mut desired: watch::Receiver<Arc<Desired>>,
    mut api: watch::Receiver<Arc<ApiView>>,
    mut node: watch::Receiver<Option<Arc<Node>>>,
) {
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            r = desired.changed() => if r.is_err() { return },
            r = api.changed() => if r.is_err() { return },
            r = node.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        // Upstream makes mirror pods only for a registered node: they are owned by it.
        let Some(n) = node.borrow().clone() else {
            continue;
        };
        let statics = desired.borrow().clone();
        let view = api.borrow().clone();
        for action in plan(
            statics.pods.values().map(|p| &**p),
            view.pods.values().map(|p| &**p),
            &n,
        ) {
            apply(&client, action).await;
        }
    }
}

async fn apply(client: &kube::Client, action: Action) {
    match action {
        Action::Create(pod) => {
            let (ns, name) = key(&pod);
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match api.create(&PostParams::default(), &pod).await {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "mirror pod created"),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), "create the mirror pod: {e}")
                }
            }
        }
        Action::Delete(ns, name, uid) => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "mirror pod deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), "delete the mirror pod: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn node() -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                uid: Some("node-uid".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pod(name: &str, ann: &[(&str, &str)], uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                annotations: Some(
                    ann.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<Map<_, _>>(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn static_pod(name: &str, hash: &str) -> Pod {
        pod(
            name,
            &[(SOURCE_ANNOTATION, "file"), (HASH_ANNOTATION, hash)],
            hash,
        )
    }

    #[test]
    fn a_missing_mirror_is_created_owned_by_the_node() {
        let sp = static_pod("web-n1", "h1");
        let acts = plan([&sp], [], &node());
        let [Action::Create(m)] = acts.as_slice() else {
            panic!("{acts:?}")
        };
        assert_eq!(
            annotation(m, MIRROR_ANNOTATION).map(String::as_str),
            Some("h1")
        );
        assert_eq!(m.metadata.uid, None, "the server gives the UID");
        let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", "node-uid")
        );
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn a_current_mirror_is_left_alone_and_an_outdated_one_replaced() {
        let sp = static_pod("web-n1", "h2");
        let same = pod("web-n1", &[(MIRROR_ANNOTATION, "h2")], "m1");
        assert!(plan([&sp], [&same], &node()).is_empty());
        let old = pod("web-n1", &[(MIRROR_ANNOTATION, "h1")], "m1");
        assert_eq!(
            plan([&sp], [&old], &node()),
            [Action::Delete(
                "default".into(),
                "web-n1".into(),
                "m1".into()
            )]
        );
    }

    #[test]
    fn orphans_are_deleted_and_api_pods_are_not_mirrored() {
        let orphan = pod("gone-n1", &[(MIRROR_ANNOTATION, "h")], "m9");
        let api_pod = pod("api", &[(SOURCE_ANNOTATION, "api")], "a1");
        let acts = plan([&api_pod], [&orphan, &api_pod], &node());
        assert_eq!(
            acts,
            [Action::Delete(
                "default".into(),
                "gone-n1".into(),
                "m9".into()
            )]
        );
    }

    #[test]
    fn a_mirror_being_deleted_is_deleted_at_once_to_be_made_again() {
        let sp = static_pod("web-n1", "h2");
        let mut m = pod("web-n1", &[(MIRROR_ANNOTATION, "h2")], "m1");
        m.metadata.deletion_timestamp = Some(crate::kubelet::status::now());
        assert_eq!(
            plan([&sp], [&m], &node()),
            [Action::Delete(
                "default".into(),
                "web-n1".into(),
                "m1".into()
            )]
        );
    }
}
