//! The Node object kubelet registers (initialNode) and what it reconciles when a Node of
//! its name already exists (tryRegisterWithAPIServer): the default labels, the
//! controller-managed attach/detach annotation and the huge page resources. As upstream,
//! --node-labels and --register-with-taints apply only when the Node is created; an
//! existing Node keeps what its owners set since.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::setters::{GOOS, go_arch};

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_BETA_OS: &str = "beta.kubernetes.io/os";
pub const LABEL_BETA_ARCH: &str = "beta.kubernetes.io/arch";
/// Tells the attach/detach controller that it, not this kubelet, attaches volumes.
pub const ANNOTATION_CONTROLLER_MANAGED_ATTACH: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";

/// The labels kubelet reconciles on an existing Node (updateDefaultLabels); the zone,
/// region and instance-type ones come from a cloud provider, which berth has none of.
const DEFAULT_LABELS: [&str; 5] = [
    LABEL_HOSTNAME,
    LABEL_OS,
    LABEL_ARCH,
    LABEL_BETA_OS,
    LABEL_BETA_ARCH,
];

/// What registration needs beyond the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registration {
    pub node_name: String,
    pub hostname: String,
    /// --node-labels: they override the defaults of the same key.
    pub node_labels: BTreeMap<String, String>,
    /// --register-with-taints.
    pub taints: Vec<Taint>,
    /// --register-schedulable=false registers the node cordoned.
    pub unschedulable: bool,
}

/// initialNode without its status: labels, taints (with the unschedulable taint when
/// registering cordoned, to close the race of #63897) and the attach/detach annotation.
pub fn initial_node(r: &Registration) -> Node {
    let arch = go_arch();
    let mut labels = BTreeMap::from([
        (LABEL_HOSTNAME.to_string(), r.hostname.clone()),
        (LABEL_OS.to_string(), GOOS.to_string()),
        (LABEL_ARCH.to_string(), arch.to_string()),
        (LABEL_BETA_OS.to_string(), GOOS.to_string()),
        (LABEL_BETA_ARCH.to_string(), arch.to_string()),
    ]);
    for (k, v) in &r.node_labels {
        if let Some(old) = labels.get(k) {
            tracing::info!(label = %k, value = %v, default = %old, "the node label will overwrite default setting");
        }
        labels.insert(k.clone(), v.clone());
    }
    let mut taints = r.taints.clone();
    if r.unschedulable
        && !taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unschedulable" && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    let mut node = Node::default();
    node.metadata.name = Some(r.node_name.clone());
    node.metadata.labels = Some(labels);
    node.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_CONTROLLER_MANAGED_ATTACH.to_string(),
        "true".to_string(),
    )]));
    node.spec = Some(NodeSpec {
        unschedulable: r.unschedulable.then_some(true),
        taints: (!taints.is_empty()).then_some(taints),
        ..Default::default()
    });
    node
}

/// Brings `existing` in line with `initial` where kubelet owns the field; true when
/// anything changed and the Node must be patched.
pub fn reconcile_existing(initial: &Node, existing: &mut Node) -> bool {
    let mut changed = reconcile_cmad_annotation(initial, existing);
    changed |= update_default_labels(initial, existing);
    changed |= reconcile_hugepages(initial, existing);
    changed
}

fn reconcile_cmad_annotation(initial: &Node, existing: &mut Node) -> bool {
    let want = initial
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CONTROLLER_MANAGED_ATTACH));
    let have = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CONTROLLER_MANAGED_ATTACH));
    if want == have {
        return false;
    }
    let ann = existing
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match want {
        Some(v) => {
            ann.insert(ANNOTATION_CONTROLLER_MANAGED_ATTACH.into(), v.clone());
        }
        None => {
            ann.remove(ANNOTATION_CONTROLLER_MANAGED_ATTACH);
        }
    }
    true
}

/// updateDefaultLabels: each default label the initial node has is set to its value;
/// an empty value removes the label.
fn update_default_labels(initial: &Node, existing: &mut Node) -> bool {
    let empty = BTreeMap::new();
    let init = initial.metadata.labels.as_ref().unwrap_or(&empty);
    let labels = existing.metadata.labels.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for key in DEFAULT_LABELS {
        let Some(v) = init.get(key) else { continue };
        if labels.get(key) != Some(v) {
            labels.insert(key.into(), v.clone());
            changed = true;
        }
        if labels.get(key).is_some_and(String::is_empty) {
            labels.remove(key);
        }
    }
    changed
}

/// reconcileHugePageResource: the huge page sizes of the initial node are added or
/// updated in capacity and allocatable, those no longer supported removed.
fn reconcile_hugepages(initial: &Node, existing: &mut Node) -> bool {
    let is_hp = |k: &String| k.starts_with("hugepages-");
    let empty = BTreeMap::new();
    let ist = initial.status.as_ref();
    let icap = ist.and_then(|s| s.capacity.as_ref()).unwrap_or(&empty);
    let ialloc = ist.and_then(|s| s.allocatable.as_ref()).unwrap_or(&empty);
    let st = existing.status.get_or_insert_with(Default::default);
    // updateDefaultResources: a Node without capacity or allocatable takes the initial's.
    let mut changed = false;
    for (have, init) in [(&mut st.capacity, icap), (&mut st.allocatable, ialloc)] {
        if have.is_none() {
            changed |= !init.is_empty();
            *have = Some(init.clone());
        }
    }
    let cap = st.capacity.get_or_insert_with(BTreeMap::new);
    let alloc = st.allocatable.get_or_insert_with(BTreeMap::new);
    let same = |a: Option<&Quantity>, b: Option<&Quantity>| {
        let v =
            |q: Option<&Quantity>| q.map(|q| crate::kubelet::cm::quantity::Amount::of(q).value());
        v(a) == v(b)
    };
    for (k, ic) in icap.iter().filter(|(k, _)| is_hp(k)) {
        let ia = ialloc.get(k);
        if !same(cap.get(k), Some(ic)) {
            cap.insert(k.clone(), ic.clone());
            changed = true;
        }
        if !same(alloc.get(k), ia) {
            match ia {
                Some(q) => alloc.insert(k.clone(), q.clone()),
                None => alloc.remove(k),
            };
            changed = true;
        }
    }
    let gone: Vec<String> = cap
        .keys()
        .filter(|k| is_hp(k) && !icap.contains_key(*k))
        .cloned()
        .collect();
    for k in gone {
        tracing::info!(resource = %k, "Removing huge page resource which is no longer supported");
        cap.remove(&k);
        alloc.remove(&k);
        changed = true;
    }
    changed
}

/// updateNode's label check: kubernetes.io/os and arch must be this kubelet's; true when
/// one was missing or wrong and is now set.
pub fn ensure_os_arch_labels(node: &mut Node) -> bool {
    let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(LABEL_OS, GOOS), (LABEL_ARCH, go_arch())] {
        if labels.get(k).map(String::as_str) != Some(v) {
            labels.insert(k.into(), v.into());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
