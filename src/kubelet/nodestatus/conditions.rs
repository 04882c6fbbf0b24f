//! The node conditions as upstream's setters write them: MemoryPressure, DiskPressure,
//! PIDPressure and Ready, with upstream's reasons and messages. The heartbeat time moves
//! at every update; the transition time only when the status changes. Each change of
//! status yields the node event upstream records (NodeReady, NodeHasSufficientMemory, ...).

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::kubelet::EventKind;

/// A node event reason a setter asked to record (recordNodeStatusEvent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusEvent {
    pub kind: EventKind,
    pub reason: &'static str,
}

/// The three pressure conditions, each with upstream's reasons, messages and events for
/// (under pressure, not under pressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    Memory,
    Disk,
    Pid,
}

struct PressureText {
    type_: &'static str,
    on: (&'static str, &'static str, &'static str),
    off: (&'static str, &'static str, &'static str),
}

impl Pressure {
    fn text(self) -> PressureText {
        match self {
            Pressure::Memory => PressureText {
                type_: "MemoryPressure",
                on: (
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                    "NodeHasInsufficientMemory",
                ),
                off: (
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    "NodeHasSufficientMemory",
                ),
            },
            Pressure::Disk => PressureText {
                type_: "DiskPressure",
                on: (
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure",
                    "NodeHasDiskPressure",
                ),
                off: (
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    "NodeHasNoDiskPressure",
                ),
            },
            Pressure::Pid => PressureText {
                type_: "PIDPressure",
                on: (
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available",
                    "NodeHasInsufficientPID",
                ),
                off: (
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    "NodeHasSufficientPID",
                ),
            },
        }
    }
}

fn conditions(node: &mut Node) -> &mut Vec<NodeCondition> {
    node.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
}

/// MemoryPressureCondition, DiskPressureCondition, PIDPressureCondition: a missing
/// condition starts Unknown, so its first update always transitions.
pub fn pressure_condition(
    node: &mut Node,
    which: Pressure,
    under_pressure: bool,
    now: &Time,
    events: &mut Vec<StatusEvent>,
) {
    let t = which.text();
    let conds = conditions(node);
    let idx = match conds.iter().position(|c| c.type_ == t.type_) {
        Some(i) => i,
        None => {
            conds.push(NodeCondition {
                type_: t.type_.into(),
                status: "Unknown".into(),
                ..Default::default()
            });
            conds.len() - 1
        }
    };
    let c = &mut conds[idx];
    c.last_heartbeat_time = Some(now.clone());
    let (want, (reason, message, event)) = if under_pressure {
        ("True", t.on)
    } else {
        ("False", t.off)
    };
    if c.status != want {
        c.status = want.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_transition_time = Some(now.clone());
        events.push(StatusEvent {
            kind: EventKind::Normal,
            reason: event,
        });
    }
}

/// errors.NewAggregate(...).Error(): the messages deduplicated in order, one as is,
/// several in brackets joined by ", "; none is no error.
pub fn aggregate(errs: &[String]) -> Option<String> {
    let mut seen: Vec<&str> = vec![];
    for e in errs {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => Some(seen[0].to_string()),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// The capacities a node must report to be Ready (ephemeral-storage: with local
/// storage capacity isolation, on by default).
const REQUIRED_CAPACITIES: [&str; 4] = ["cpu", "memory", "pods", "ephemeral-storage"];

/// ReadyCondition: True with KubeletReady unless `errors` (runtime, network, ...) or a
/// missing required capacity make it False with KubeletNotReady and their aggregate.
pub fn ready_condition(
    node: &mut Node,
    errors: &[String],
    now: &Time,
    events: &mut Vec<StatusEvent>,
) {
    let mut errs = errors.to_vec();
    let cap = node.status.as_ref().and_then(|s| s.capacity.as_ref());
    let missing: Vec<&str> = REQUIRED_CAPACITIES
        .into_iter()
        .filter(|r| !cap.is_some_and(|c| c.contains_key(*r)))
        .collect();
    if !missing.is_empty() {
        errs.push(format!(
            "missing node capacity for resources: {}",
            missing.join(", ")
        ));
    }
    let (status, reason, message) = match aggregate(&errs) {
        None => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Some(m) => ("False", "KubeletNotReady", m),
    };
    let mut new = NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let conds = conditions(node);
    match conds.iter_mut().find(|c| c.type_ == "Ready") {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            } else {
                events.push(StatusEvent {
                    kind: EventKind::Normal,
                    reason: if status == "True" {
                        "NodeReady"
                    } else {
                        "NodeNotReady"
                    },
                });
            }
            *old = new;
        }
        // A first Ready condition records no event, as upstream.
        None => conds.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + s).unwrap())
    }

    fn cond<'a>(n: &'a Node, t: &str) -> &'a NodeCondition {
        n.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    fn with_capacity() -> Node {
        let mut n = Node::default();
        let cap = REQUIRED_CAPACITIES
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
                )
            })
            .collect();
        n.status.get_or_insert_with(Default::default).capacity = Some(cap);
        n
    }

    #[test]
    fn a_new_pressure_condition_transitions_from_unknown() {
        let mut n = Node::default();
        let mut ev = vec![];
        pressure_condition(&mut n, Pressure::Memory, false, &at(0), &mut ev);
        let c = cond(&n, "MemoryPressure");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("KubeletHasSufficientMemory"));
        assert_eq!(
            c.message.as_deref(),
            Some("kubelet has sufficient memory available")
        );
        assert_eq!(c.last_transition_time, Some(at(0)));
        assert_eq!(
            ev,
            [StatusEvent {
                kind: EventKind::Normal,
                reason: "NodeHasSufficientMemory"
            }]
        );
    }

    #[test]
    fn heartbeat_moves_transition_stays_until_the_status_changes() {
        let mut n = Node::default();
        let mut ev = vec![];
        pressure_condition(&mut n, Pressure::Disk, false, &at(0), &mut ev);
        pressure_condition(&mut n, Pressure::Disk, false, &at(10), &mut ev);
        let c = cond(&n, "DiskPressure");
        assert_eq!(
            (
                c.last_heartbeat_time.clone(),
                c.last_transition_time.clone()
            ),
            (Some(at(10)), Some(at(0)))
        );
        assert_eq!(ev.len(), 1);
        pressure_condition(&mut n, Pressure::Disk, true, &at(20), &mut ev);
        let c = cond(&n, "DiskPressure");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("KubeletHasDiskPressure"));
        assert_eq!(c.message.as_deref(), Some("kubelet has disk pressure"));
        assert_eq!(c.last_transition_time, Some(at(20)));
        assert_eq!(ev[1].reason, "NodeHasDiskPressure");
    }

    #[test]
    fn pid_pressure_texts() {
        let mut n = Node::default();
        let mut ev = vec![];
        pressure_condition(&mut n, Pressure::Pid, true, &at(0), &mut ev);
        let c = cond(&n, "PIDPressure");
        assert_eq!(c.reason.as_deref(), Some("KubeletHasInsufficientPID"));
        assert_eq!(
            c.message.as_deref(),
            Some("kubelet has insufficient PID available")
        );
        pressure_condition(&mut n, Pressure::Pid, false, &at(1), &mut ev);
        assert_eq!(
            cond(&n, "PIDPressure").reason.as_deref(),
            Some("KubeletHasSufficientPID")
        );
        assert_eq!(ev[1].reason, "NodeHasSufficientPID");
    }

    #[test]
    fn ready_when_no_errors_and_capacity_is_complete() {
        let mut n = with_capacity();
        let mut ev = vec![];
        ready_condition(&mut n, &[], &at(0), &mut ev);
        let c = cond(&n, "Ready");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            c.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert!(ev.is_empty(), "a first Ready condition records no event");
    }

    #[test]
    fn not_ready_carries_the_errors_and_records_the_transition() {
        let mut n = with_capacity();
        let mut ev = vec![];
        ready_condition(&mut n, &[], &at(0), &mut ev);
        let net = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:no CNI config".to_string();
        ready_condition(&mut n, std::slice::from_ref(&net), &at(10), &mut ev);
        let c = cond(&n, "Ready");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(c.message.as_deref(), Some(net.as_str()));
        assert_eq!(c.last_transition_time, Some(at(10)));
        assert_eq!(
            ev,
            [StatusEvent {
                kind: EventKind::Normal,
                reason: "NodeNotReady"
            }]
        );
        ready_condition(&mut n, std::slice::from_ref(&net), &at(20), &mut ev);
        assert_eq!(cond(&n, "Ready").last_transition_time, Some(at(10)));
        assert_eq!(cond(&n, "Ready").last_heartbeat_time, Some(at(20)));
        ready_condition(&mut n, &[], &at(30), &mut ev);
        assert_eq!(ev[1].reason, "NodeReady");
    }

    #[test]
    fn missing_capacity_is_not_ready() {
        let mut n = Node::default();
        let mut ev = vec![];
        ready_condition(
            &mut n,
            &["a".into(), "a".into(), "b".into()],
            &at(0),
            &mut ev,
        );
        assert_eq!(
            cond(&n, "Ready").message.as_deref(),
            Some(
                "[a, b, missing node capacity for resources: cpu, memory, pods, ephemeral-storage]"
            )
        );
    }

    #[test]
    fn aggregate_formats_as_apimachinery() {
        assert_eq!(aggregate(&[]), None);
        assert_eq!(aggregate(&["x".into()]).as_deref(), Some("x"));
        assert_eq!(aggregate(&["x".into(), "x".into()]).as_deref(), Some("x"));
        assert_eq!(
            aggregate(&["x".into(), "y".into()]).as_deref(),
            Some("[x, y]")
        );
    }
}
