//! From the status the kubelet computed to the PATCH of pods/status (pkg/kubelet/status
//! status_manager.go mergePodStatus and needsUpdate; statusutil.PatchPodStatus): the
//! conditions other components own are kept, a condition whose status did not change keeps
//! the API's lastTransitionTime, a terminal phase is never left, and the patch carries only
//! the fields that differ from the API's copy, with the pod's UID as a precondition.
//!
//! The patch is a JSON merge patch (RFC 7386): each field it names is set whole, which is
//! what a status owner wants (a list sent is the list stored), and every conformant API
//! server applies it the same way. Pure: plain data in, JSON out.

use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use serde_json::{Map, Value};

/// The condition types kubelet owns (kubetypes.PodConditionsByKubelet); every other type
/// (readiness gates, DisruptionTarget, ...) belongs to someone else and is kept.
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
];

/// The status fields the kubelet writes. Anything else in the API's status (resize,
/// nominatedNodeName, ...) is never in a patch.
const OWNED: [&str; 12] = [
    "phase",
    "reason",
    "message",
    "conditions",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "qosClass",
    "initContainerStatuses",
    "containerStatuses",
];

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The status to store: `new` merged with what the API holds (`old`).
pub fn merge(old: Option<&PodStatus>, new: &PodStatus) -> PodStatus {
    let mut out = new.clone();
    let Some(old) = old else {
        return out;
    };
    let old_conds = old.conditions.clone().unwrap_or_default();
    let mut conds: Vec<PodCondition> = out.conditions.take().unwrap_or_default();
    for c in &mut conds {
        if let Some(o) = old_conds
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
            && o.last_transition_time.is_some()
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    let others: Vec<PodCondition> = old_conds
        .into_iter()
        .filter(|o| !KUBELET_CONDITIONS.contains(&o.type_.as_str()))
        .filter(|o| !conds.iter().any(|c| c.type_ == o.type_))
        .collect();
    conds.extend(others);
    out.conditions = Some(conds);
    // A pod that reached Succeeded or Failed in the API stays there.
    if is_terminal(old.phase.as_deref()) && !is_terminal(out.phase.as_deref()) {
        out.phase = old.phase.clone();
        out.reason = old.reason.clone();
        out.message = old.message.clone();
    }
    // The start time is set once.
    if old.start_time.is_some() {
        out.start_time = old.start_time.clone();
    }
    out
}

/// The merge patch that takes the API's status `old` to `new` (already merged), or None
/// when the kubelet's fields are equal. `uid` is the precondition: a patch of another pod
/// of the same name fails, as the UID cannot change.
pub fn patch(uid: &str, old: Option<&PodStatus>, new: &PodStatus) -> Option<Value> {
    if old.is_some_and(|o| same(o, new)) {
        return None;
    }
    let old = old.map_or(Value::Null, to_value);
    let new = to_value(new);
    let mut fields = Map::new();
    for key in OWNED {
        let (o, n) = (old.get(key), new.get(key));
        if o != n {
            fields.insert(key.to_string(), n.cloned().unwrap_or(Value::Null));
        }
    }
    if fields.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {"uid": uid},
        "status": Value::Object(fields),
    }))
}

/// Whether the kubelet's fields ([`OWNED`]) of two statuses are equal; no JSON is made
/// for the common case of a status that did not change.
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    a.phase == b.phase
        && a.reason == b.reason
        && a.message == b.message
        && a.conditions == b.conditions
        && a.host_ip == b.host_ip
        && a.host_ips == b.host_ips
        && a.pod_ip == b.pod_ip
        && a.pod_ips == b.pod_ips
        && a.start_time == b.start_time
        && a.qos_class == b.qos_class
        && a.init_container_statuses == b.init_container_statuses
        && a.container_statuses == b.container_statuses
}

fn to_value(s: &PodStatus) -> Value {
    // A PodStatus is plain data: serializing it into memory cannot fail.
    serde_json::to_value(s).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"))
    }

    fn cond(type_: &str, status: &str, at: i64) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(t(at)),
            ..Default::default()
        }
    }

    fn status(phase: &str, conds: Vec<PodCondition>) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conds),
            ..Default::default()
        }
    }

    #[test]
    fn conditions_of_others_are_kept_and_unchanged_ones_keep_their_time() {
        let old = status(
            "Pending",
            vec![
                cond("Ready", "False", 10),
                cond("DisruptionTarget", "True", 11),
            ],
        );
        let new = status(
            "Running",
            vec![cond("Ready", "False", 50), cond("Initialized", "True", 50)],
        );
        let m = merge(Some(&old), &new);
        let cs = m.conditions.clone().unwrap();
        assert_eq!(
            cs[0].last_transition_time,
            Some(t(10)),
            "Ready kept its time"
        );
        assert_eq!(cs[1].last_transition_time, Some(t(50)));
        assert_eq!(cs[2].type_, "DisruptionTarget");
        let p = patch("u1", Some(&old), &m).expect("a patch");
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["conditions"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let old = PodStatus {
            phase: Some("Failed".into()),
            reason: Some("OutOfcpu".into()),
            ..Default::default()
        };
        let m = merge(Some(&old), &status("Pending", vec![]));
        assert_eq!(m.phase.as_deref(), Some("Failed"));
        assert_eq!(m.reason.as_deref(), Some("OutOfcpu"));
    }

    #[test]
    fn only_changed_fields_are_sent_and_equal_statuses_send_nothing() {
        let mut old = status("Running", vec![cond("Ready", "True", 1)]);
        old.pod_ip = Some("10.0.0.2".into());
        old.nominated_node_name = Some("other".into());
        let mut new = old.clone();
        new.nominated_node_name = None;
        assert!(
            patch("u", Some(&old), &new).is_none(),
            "not a kubelet field"
        );
        new.pod_ip = None;
        let p = patch("u", Some(&old), &new).expect("a patch");
        let fields: Vec<&String> = p["status"].as_object().unwrap().keys().collect();
        assert_eq!(fields, ["podIP"]);
        assert!(p["status"]["podIP"].is_null(), "a cleared field is removed");
        assert!(same(&old, &old));
    }

    #[test]
    fn the_start_time_is_set_once() {
        let mut old = status("Running", vec![]);
        old.start_time = Some(t(5));
        let mut new = old.clone();
        new.start_time = Some(t(99));
        assert_eq!(merge(Some(&old), &new).start_time, Some(t(5)));
    }
}
