//! The API server pod source (pkg/kubelet/config/apiserver.go): every pod bound to this
//! node (`spec.nodeName=<node>`), listed and watched with kube-rs's watcher, which resumes
//! from the last resourceVersion, relists on 410 Gone and backs off on errors.
//!
//! Each watch event gives a full SET to the merge, as upstream's source does. Pods are
//! read as untyped JSON and decoded one by one, so one pod the kubelet cannot decode (a
//! field of the wrong type, that a newer or broken server might still hold) is reported on
//! that pod and never stops the others. Unknown fields are ignored, as client-go ignores
//! them. Mirror pods (the API's copies of static pods) are never run: they are published
//! with every other pod bound here in [`ApiPods`], for the status and mirror managers.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};

use super::SOURCE_ANNOTATION;
use super::error::ManifestError;
use super::parse::{Entry, SourceSet};
use super::validate;

/// The value of `kubernetes.io/config.source` for pods from the API server.
pub const API_SOURCE: &str = "api";
/// The annotation that marks a mirror pod (kubelet's ConfigMirrorAnnotationKey); its value
/// is the static pod's config hash.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Every pod bound to this node as the API server holds it (mirror pods included), by UID.
pub type ApiPods = BTreeMap<String, Arc<Pod>>;

/// A pod of the API the kubelet will not run, with why (invalid fields, or not decodable).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The pod as far as it could be read: at least its metadata.
    pub pod: Pod,
    pub message: String,
}

/// Whether `pod` is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// One pod of the API, read and sorted once per watch event.
#[derive(Debug, Clone)]
pub(crate) struct One {
    /// The pod as the API holds it (only its metadata when it did not decode).
    api: Arc<Pod>,
    what: What,
}

#[derive(Debug, Clone)]
enum What {
    Run(Box<Entry<Arc<Pod>>>),
    Mirror,
    Invalid(ManifestError, Box<Invalid>),
}

/// Reads one watched object: decoded, validated, and what the kubelet does with it. Pure.
pub(crate) fn read(obj: &DynamicObject) -> One {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let label = format!("Pod \"{ns}/{name}\"");
    let invalid = |pod: Pod, message: String| One {
        api: Arc::new(pod.clone()),
        what: What::Invalid(
            ManifestError::new(API_SOURCE, &label, message.clone()),
            Box::new(Invalid { pod, message }),
        ),
    };
    let mut pod = match decode(obj) {
        Ok(p) => p,
        Err(message) => {
            // Its metadata is enough for the status manager to report on it.
            let pod = Pod {
                metadata: obj.metadata.clone(),
                ..Default::default()
            };
            return invalid(pod, format!("the pod could not be decoded: {message}"));
        }
    };
    if is_mirror(&pod) {
        return One {
            api: Arc::new(pod),
            what: What::Mirror,
        };
    }
    let errs: Vec<String> = validate::quantities(&pod)
        .into_iter()
        .chain(validate::pod(&pod))
        .collect();
    if !errs.is_empty() {
        return invalid(pod, errs.join("; "));
    }
    let api = Arc::new(pod.clone());
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SOURCE_ANNOTATION.to_string(), API_SOURCE.to_string());
    // What the kubelet runs is the spec: a write of the status (the kubelet's own,
    // echoed by the watch) or of bookkeeping is no update of the pod (upstream's
    // RECONCILE, not UPDATE). A terminal phase is kept: it says not to start again.
    pod.metadata.resource_version = None;
    pod.metadata.managed_fields = None;
    if !pod
        .status
        .as_ref()
        .is_some_and(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
    {
        pod.status = None;
    }
    One {
        api,
        what: What::Run(Box::new(Entry::new(API_SOURCE, label, Arc::new(pod)))),
    }
}

/// The pods of one watch snapshot, as what the merge gets, what the status and mirror
/// managers see, and what is reported as invalid. Pure.
pub(crate) fn assemble(
    pods: &BTreeMap<String, One>,
) -> (SourceSet, ApiPods, BTreeMap<String, Invalid>) {
    let mut set = SourceSet::default();
    let mut all = ApiPods::new();
    let mut invalid = BTreeMap::new();
    for (uid, one) in pods {
        all.insert(uid.clone(), one.api.clone());
        match &one.what {
            What::Run(e) => set.pods.push((**e).clone()),
            What::Mirror => {}
            What::Invalid(err, inv) => {
                set.errors.push(err.clone());
                invalid.insert(uid.clone(), (**inv).clone());
            }
        }
    }
    (set, all, invalid)
}

/// A pod from its JSON; the error says which field did not decode.
fn decode(obj: &DynamicObject) -> Result<Pod, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_json::from_value::<Pod>(value).map_err(|e| e.to_string())
}

/// What the API source publishes besides the merge's SET.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiView {
    pub pods: ApiPods,
    pub invalid: BTreeMap<String, Invalid>,
}

/// The source task: watches the pods bound to `node_name` until the merge is gone.
pub(crate) async fn run(
    client: kube::Client,
    node_name: String,
    id: usize,
    tx: mpsc::UnboundedSender<(usize, SourceSet)>,
    view: watch::Sender<Arc<ApiView>>,
) {
    let resource = ApiResource::erase::<Pod>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    // Each object is decoded and validated once, when its event arrives.
    let mut current: BTreeMap<String, One> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, One>> = None;
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Init) => {
                listing = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(obj)) => {
                if let (Some(l), Some(uid)) = (listing.as_mut(), obj.metadata.uid.clone()) {
                    l.insert(uid, read(&obj));
                }
                false
            }
            Ok(Event::InitDone) => {
                current = listing.take().unwrap_or_default();
                tracing::info!(pods = current.len(), "listed the pods bound to this node");
                true
            }
            Ok(Event::Apply(obj)) => obj
                .metadata
                .uid
                .clone()
                .map(|uid| current.insert(uid, read(&obj)))
                .is_some(),
            Ok(Event::Delete(obj)) => obj
                .metadata
                .uid
                .as_ref()
                .is_some_and(|uid| current.remove(uid).is_some()),
            Err(e) => {
                tracing::warn!("watch pods bound to {node_name}: {e}; retrying");
                false
            }
        };
        if !changed {
            continue;
        }
        let (set, pods, invalid) = assemble(&current);
        view.send_if_modified(|v| {
            let next = ApiView { pods, invalid };
            if **v == next {
                return false;
            }
            *v = Arc::new(next);
            true
        });
        if tx.send((id, set)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify(
        objects: &BTreeMap<String, DynamicObject>,
    ) -> (SourceSet, ApiPods, BTreeMap<String, Invalid>) {
        assemble(&objects.iter().map(|(u, o)| (u.clone(), read(o))).collect())
    }

    fn obj(v: serde_json::Value) -> (String, DynamicObject) {
        let o: DynamicObject = serde_json::from_value(v).expect("object");
        (o.metadata.uid.clone().expect("uid"), o)
    }

    fn pod(name: &str, uid: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "containers": [{"name": "c", "image": "busybox",
                                     "imagePullPolicy": "IfNotPresent",
                                     "terminationMessagePath": "/dev/termination-log",
                                     "terminationMessagePolicy": "File"}]}
        })
    }

    #[test]
    fn api_pods_get_the_source_annotation_and_go_to_the_merge() {
        let objects = BTreeMap::from([obj(pod("web", "u1"))]);
        let (set, all, invalid) = classify(&objects);
        assert!(invalid.is_empty(), "{invalid:?}");
        assert_eq!(set.pods.len(), 1);
        let ann = set.pods[0].object.metadata.annotations.clone().unwrap();
        assert_eq!(ann.get(SOURCE_ANNOTATION).map(String::as_str), Some("api"));
        assert!(all.contains_key("u1"));
    }

    #[test]
    fn a_status_write_is_no_update_of_the_pod_but_a_terminal_phase_is() {
        let mut p = pod("web", "u1");
        p["metadata"]["resourceVersion"] = json!("7");
        p["status"] = json!({"phase": "Running"});
        let (set, all, _) = classify(&BTreeMap::from([obj(p.clone())]));
        let run = &set.pods[0].object;
        assert!(run.status.is_none() && run.metadata.resource_version.is_none());
        assert!(all["u1"].status.is_some(), "the view keeps the API's copy");
        p["metadata"]["resourceVersion"] = json!("8");
        p["status"] = json!({"phase": "Running", "podIP": "10.0.0.9"});
        let (again, _, _) = classify(&BTreeMap::from([obj(p.clone())]));
        assert_eq!(again.pods[0].object, *run);
        p["status"] = json!({"phase": "Succeeded"});
        let (done, _, _) = classify(&BTreeMap::from([obj(p)]));
        let phase = done.pods[0]
            .object
            .status
            .as_ref()
            .and_then(|s| s.phase.clone());
        assert_eq!(phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn mirror_pods_are_seen_but_never_run() {
        let mut m = pod("static-n1", "m1");
        m["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "abc"});
        let (set, all, _) = classify(&BTreeMap::from([obj(m)]));
        assert!(set.pods.is_empty());
        assert!(is_mirror(&all["m1"]));
    }

    #[test]
    fn a_pod_that_does_not_decode_is_reported_and_the_others_still_run() {
        let mut bad = pod("bad", "u2");
        bad["spec"]["containers"] = json!("not a list");
        let objects = BTreeMap::from([obj(pod("web", "u1")), obj(bad)]);
        let (set, all, invalid) = classify(&objects);
        assert_eq!(set.pods.len(), 1);
        assert!(all["u2"].spec.is_none(), "only its metadata is known");
        let inv = &invalid["u2"];
        assert_eq!(inv.pod.metadata.name.as_deref(), Some("bad"));
        assert!(
            inv.message.contains("could not be decoded"),
            "{}",
            inv.message
        );
        assert!(set.errors[0].to_string().contains("Pod \"default/bad\""));
    }

    #[test]
    fn an_invalid_spec_is_reported_with_its_field_and_unknown_fields_are_ignored() {
        let mut bad = pod("bad", "u2");
        bad["spec"]["containers"][0]["name"] = json!("Not_A_Label");
        let mut newer = pod("newer", "u3");
        newer["spec"]["someFutureField"] = json!({"x": 1});
        let (set, _, invalid) = classify(&BTreeMap::from([obj(bad), obj(newer)]));
        assert_eq!(set.pods.len(), 1);
        assert_eq!(set.pods[0].object.metadata.name.as_deref(), Some("newer"));
        assert!(
            invalid["u2"].message.contains("spec.containers[0].name"),
            "{}",
            invalid["u2"].message
        );
    }
}
