//! Which ConfigMaps and Secrets a pod references (upstream podutil.VisitPodConfigmapNames
//! and VisitPodSecretNames over all containers: init, regular and ephemeral): volumes,
//! projected sources, env valueFrom, envFrom, and for Secrets also imagePullSecrets and
//! the secret references of the volume plugins. Plain data in, plain data out.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, Pod, PodSpec};

use super::Objects;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

/// A namespaced object a pod names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// Every ConfigMap and Secret the pod references, in its namespace. Empty names (an
/// invalid spec) are left out.
pub fn pod_refs(pod: &Pod) -> BTreeSet<ObjectRef> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let mut add = |kind: ObjectKind, name: Option<&str>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.insert(ObjectRef::new(kind, ns, n));
        }
    };
    for s in spec.image_pull_secrets.iter().flatten() {
        add(ObjectKind::Secret, Some(&s.name));
    }
    for (env, env_from) in containers_env(spec) {
        for e in env_from {
            if let Some(c) = &e.config_map_ref {
                add(ObjectKind::ConfigMap, Some(&c.name));
            }
            if let Some(s) = &e.secret_ref {
                add(ObjectKind::Secret, Some(&s.name));
            }
        }
        for v in env {
            let Some(from) = &v.value_from else { continue };
            if let Some(c) = &from.config_map_key_ref {
                add(ObjectKind::ConfigMap, Some(&c.name));
            }
            if let Some(s) = &from.secret_key_ref {
                add(ObjectKind::Secret, Some(&s.name));
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            add(ObjectKind::ConfigMap, Some(&c.name));
        }
        if let Some(s) = &v.secret {
            add(ObjectKind::Secret, s.secret_name.as_deref());
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                add(ObjectKind::ConfigMap, Some(&c.name));
            }
            if let Some(s) = &p.secret {
                add(ObjectKind::Secret, Some(&s.name));
            }
        }
        // The volume plugins' credentials, as upstream visits them (berth mounts none of
        // these plugins, but a pod that names them still references the Secret).
        let plugin_secrets = [
            v.azure_file.as_ref().map(|a| a.secret_name.as_str()),
            v.cephfs
                .as_ref()
                .and_then(|c| c.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
            v.cinder
                .as_ref()
                .and_then(|c| c.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
            v.flex_volume
                .as_ref()
                .and_then(|f| f.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
            v.rbd
                .as_ref()
                .and_then(|r| r.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
            v.scale_io.as_ref().map(|s| s.secret_ref.name.as_str()),
            v.iscsi
                .as_ref()
                .and_then(|i| i.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
            v.storageos
                .as_ref()
                .and_then(|s| s.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
            v.csi
                .as_ref()
                .and_then(|c| c.node_publish_secret_ref.as_ref())
                .map(|r| r.name.as_str()),
        ];
        for name in plugin_secrets {
            add(ObjectKind::Secret, name);
        }
    }
    out
}

type EnvLists<'a> = (&'a [EnvVar], &'a [EnvFromSource]);

/// The env and envFrom lists of every container kind.
fn containers_env(spec: &PodSpec) -> Vec<EnvLists<'_>> {
    let mut out: Vec<EnvLists<'_>> = Vec::new();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        out.push((
            c.env.as_deref().unwrap_or_default(),
            c.env_from.as_deref().unwrap_or_default(),
        ));
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        out.push((
            c.env.as_deref().unwrap_or_default(),
            c.env_from.as_deref().unwrap_or_default(),
        ));
    }
    out
}

/// The pod's references whose first read is still under way.
pub fn pending_refs(pod: &Pod, objects: &Objects) -> Vec<ObjectRef> {
    if objects.pending.is_empty() {
        return Vec::new();
    }
    pod_refs(pod)
        .into_iter()
        .filter(|r| objects.pending.contains(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn names(refs: &BTreeSet<ObjectRef>, kind: ObjectKind) -> Vec<&str> {
        refs.iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn every_place_a_pod_names_an_object() {
        let p = pod(serde_json::json!({
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
            "containers": [{
                "name": "c",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                    {"name": "C", "value": "plain"}
                ],
                "envFrom": [{"secretRef": {"name": "s-from"}}]
            }],
            "ephemeralContainers": [{"name": "e", "env": [
                {"name": "D", "valueFrom": {"secretKeyRef": {"name": "s-eph", "key": "k"}}}
            ]}],
            "volumes": [
                {"name": "v1", "configMap": {"name": "cm-vol"}},
                {"name": "v2", "secret": {"secretName": "s-vol"}},
                {"name": "v3", "projected": {"sources": [
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"secret": {"name": "s-proj"}},
                    {"serviceAccountToken": {"path": "token"}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                ]}},
                {"name": "v4", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s-csi"}}},
                {"name": "v5", "emptyDir": {}}
            ]
        }));
        let refs = pod_refs(&p);
        assert_eq!(
            names(&refs, ObjectKind::ConfigMap),
            ["cm-env", "cm-init", "cm-vol", "kube-root-ca.crt"]
        );
        assert_eq!(
            names(&refs, ObjectKind::Secret),
            [
                "pull", "s-csi", "s-env", "s-eph", "s-from", "s-proj", "s-vol"
            ]
        );
        assert!(refs.iter().all(|r| r.namespace == "ns"));
    }

    #[test]
    fn a_pod_without_references_names_nothing() {
        let p = pod(serde_json::json!({"containers": [{"name": "c", "image": "i"}]}));
        assert!(pod_refs(&p).is_empty());
    }

    #[test]
    fn only_the_pods_own_pending_references_hold_it() {
        let p = pod(serde_json::json!({
            "containers": [{"name": "c"}],
            "volumes": [{"name": "v", "configMap": {"name": "mine"}}]
        }));
        let mut objects = Objects::default();
        objects
            .pending
            .insert(ObjectRef::new(ObjectKind::ConfigMap, "ns", "other"));
        assert!(pending_refs(&p, &objects).is_empty());
        objects
            .pending
            .insert(ObjectRef::new(ObjectKind::ConfigMap, "ns", "mine"));
        assert_eq!(
            pending_refs(&p, &objects),
            [ObjectRef::new(ObjectKind::ConfigMap, "ns", "mine")]
        );
        assert_eq!(
            pending_refs(&p, &objects)[0].to_string(),
            "configmap ns/mine"
        );
    }

    #[test]
    fn a_merge_keeps_the_first_object_and_clears_what_became_known() {
        let cm = |v: &str| k8s_openapi::api::core::v1::ConfigMap {
            data: Some([("v".to_string(), v.to_string())].into()),
            ..Default::default()
        };
        let mut a = Objects::default();
        a.config_maps
            .insert(("ns".into(), "x".into()), cm("static"));
        let mut b = Objects::default();
        b.config_maps.insert(("ns".into(), "x".into()), cm("api"));
        b.pending
            .insert(ObjectRef::new(ObjectKind::ConfigMap, "ns", "x"));
        b.pending
            .insert(ObjectRef::new(ObjectKind::Secret, "ns", "y"));
        let m = a.merged(&b);
        let data = m.config_map("ns", "x").and_then(|c| c.data.clone());
        assert_eq!(data.unwrap()["v"], "static");
        assert!(!m.is_pending(ObjectKind::ConfigMap, "ns", "x"));
        assert!(m.is_pending(ObjectKind::Secret, "ns", "y"));
    }
}
