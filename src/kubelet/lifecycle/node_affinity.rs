//! A pod's required node affinity (component-helpers nodeaffinity GetRequiredNodeAffinity
//! and LazyErrorNodeSelector): `spec.nodeSelector` must match the node's labels, and
//! `requiredDuringSchedulingIgnoredDuringExecution` must match through one of its terms.
//!
//! A term matches when all its label expressions (In, NotIn, Exists, DoesNotExist, Gt,
//! Lt) and field expressions (`metadata.name`, In and NotIn with one value) hold. A term
//! with no expression, or one that does not parse (an unknown operator, a wrong number
//! of values, a Gt/Lt value that is not an integer), matches nothing, as upstream's lazy
//! parse makes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
};

/// Whether `node` satisfies the pod's nodeSelector and required node affinity.
pub fn matches(pod: &Pod, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = spec.node_selector.as_ref() {
        // SelectorFromSet: every key present with the same value.
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(ns) => selector_matches(ns, labels, node.metadata.name.as_deref().unwrap_or("")),
        None => true,
    }
}

/// NodeSelector.Match: the terms are ORed.
pub fn selector_matches(
    ns: &NodeSelector,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    ns.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, node_name))
}

fn term_matches(t: &NodeSelectorTerm, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    // Parse everything first: an invalid requirement spoils the whole term even when an
    // earlier one already fails.
    let Some(exprs) = exprs
        .iter()
        .map(label_requirement)
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let Some(fields) = fields
        .iter()
        .map(field_requirement)
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    exprs.iter().all(|r| r.matches(labels)) && fields.iter().all(|r| r.matches(node_name))
}

/// A parsed label requirement (labels.Requirement).
enum LabelReq<'a> {
    In(&'a str, &'a [String]),
    NotIn(&'a str, &'a [String]),
    Exists(&'a str),
    DoesNotExist(&'a str),
    Gt(&'a str, i64),
    Lt(&'a str, i64),
}

/// nodeSelectorRequirementsAsSelector for one requirement, with labels.NewRequirement's
/// checks on the number of values.
fn label_requirement(r: &NodeSelectorRequirement) -> Option<LabelReq<'_>> {
    let key = r.key.as_str();
    if key.is_empty() {
        return None;
    }
    let values = r.values.as_deref().unwrap_or_default();
    let one_int = || match values {
        [v] => v.parse::<i64>().ok(),
        _ => None,
    };
    Some(match r.operator.as_str() {
        "In" if !values.is_empty() => LabelReq::In(key, values),
        "NotIn" if !values.is_empty() => LabelReq::NotIn(key, values),
        "Exists" if values.is_empty() => LabelReq::Exists(key),
        "DoesNotExist" if values.is_empty() => LabelReq::DoesNotExist(key),
        "Gt" => LabelReq::Gt(key, one_int()?),
        "Lt" => LabelReq::Lt(key, one_int()?),
        _ => return None,
    })
}

impl LabelReq<'_> {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelReq::In(k, vs) => labels.get(*k).is_some_and(|v| vs.contains(v)),
            // NotIn holds for a node without the label.
            LabelReq::NotIn(k, vs) => labels.get(*k).is_none_or(|v| !vs.contains(v)),
            LabelReq::Exists(k) => labels.contains_key(*k),
            LabelReq::DoesNotExist(k) => !labels.contains_key(*k),
            LabelReq::Gt(k, n) => int_label(labels, k).is_some_and(|v| v > *n),
            LabelReq::Lt(k, n) => int_label(labels, k).is_some_and(|v| v < *n),
        }
    }
}

/// A label read as a base-10 int64; a label that is absent or not a number never
/// compares.
fn int_label(labels: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    labels.get(key)?.parse().ok()
}

/// A field requirement: the node's fields are only `metadata.name`; any other key reads
/// as empty, as fields.Set does.
struct FieldReq<'a> {
    key: &'a str,
    value: &'a str,
    equal: bool,
}

/// nodeSelectorRequirementsAsFieldSelector: In and NotIn with exactly one value.
fn field_requirement(r: &NodeSelectorRequirement) -> Option<FieldReq<'_>> {
    let [value] = r.values.as_deref().unwrap_or_default() else {
        return None;
    };
    let equal = match r.operator.as_str() {
        "In" => true,
        "NotIn" => false,
        _ => return None,
    };
    Some(FieldReq {
        key: &r.key,
        value,
        equal,
    })
}

impl FieldReq<'_> {
    fn matches(&self, node_name: &str) -> bool {
        let got = if self.key == "metadata.name" {
            node_name
        } else {
            ""
        };
        (got == self.value) == self.equal
    }
}
