//! One status computation (setNodeStatus and updateNode), pure: the facts of this
//! update in, the Node as it should be, whether it changed and the events to record out.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{Pressure, StatusEvent, pressure_condition, ready_condition};
use super::host::PressureSignals;
use super::patch::node_status_has_changed;
use super::register::ensure_os_arch_labels;
use super::resources::Reservation;
use super::setters::{
    MachineInfo, RuntimeVersion, daemon_endpoints, go_runtime, machine_info, node_address,
    version_info,
};

/// Everything one status update reads.
#[derive(Debug, Clone)]
pub struct StatusInputs<'a> {
    pub hostname: &'a str,
    pub node_ips: &'a [IpAddr],
    pub max_pods: i64,
    pub reservation: &'a Reservation,
    pub kubelet_version: &'a str,
    pub kubelet_port: i32,
    pub machine: &'a MachineInfo,
    /// The CRI Version answer; `None` when the call failed.
    pub runtime_version: Option<&'a RuntimeVersion>,
    /// The runtime's name as last known, for `<name>://Unknown`.
    pub runtime_type: &'a str,
    /// The runtime and network errors ([`super::runtime_state::RuntimeState::errors`]).
    pub runtime_errors: &'a [String],
    pub pressure: PressureSignals,
    pub now: Time,
}

/// setNodeStatus: every setter in upstream's order; a failing setter is logged and the
/// others still run.
pub fn set_node_status(node: &mut Node, i: &StatusInputs<'_>) -> Vec<StatusEvent> {
    let mut events = vec![];
    if let Err(e) = node_address(node, i.node_ips, i.hostname) {
        tracing::error!(error = %e, "Failed to set some node status fields");
    }
    machine_info(node, i.machine, i.max_pods, i.reservation);
    version_info(
        node,
        i.machine,
        i.runtime_version,
        i.runtime_type,
        i.kubelet_version,
    );
    daemon_endpoints(node, i.kubelet_port);
    go_runtime(node);
    pressure_condition(
        node,
        Pressure::Memory,
        i.pressure.memory,
        &i.now,
        &mut events,
    );
    pressure_condition(node, Pressure::Disk, i.pressure.disk, &i.now, &mut events);
    pressure_condition(node, Pressure::Pid, i.pressure.pid, &i.now, &mut events);
    ready_condition(node, i.runtime_errors, &i.now, &mut events);
    events
}

/// updateNode: the Node as read with the os/arch labels enforced and the status set;
/// changed when the status moved beyond heartbeats, a label was fixed or the pod CIDR
/// changed.
pub fn update_node(
    original: &Node,
    i: &StatusInputs<'_>,
    pod_cidr_changed: bool,
) -> (Node, bool, Vec<StatusEvent>) {
    let mut node = original.clone();
    let labels_fixed = ensure_os_arch_labels(&mut node);
    let events = set_node_status(&mut node, i);
    let changed = pod_cidr_changed
        || labels_fixed
        || node_status_has_changed(original.status.as_ref(), node.status.as_ref());
    (node, changed, events)
}

/// The node's pod CIDRs as kubelet hands them to the runtime: spec.podCIDRs joined by
/// commas, or spec.podCIDR.
pub fn pod_cidrs(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    match spec.pod_cidrs.as_deref() {
        Some(v) if !v.is_empty() => Some(v.join(",")),
        _ => spec.pod_cidr.clone().filter(|c| !c.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + s).unwrap())
    }

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cores: 2,
            memory_capacity: 4 << 30,
            rootfs_capacity: Some(20 << 30),
            ..Default::default()
        }
    }

    fn inputs<'a>(
        m: &'a MachineInfo,
        r: &'a Reservation,
        ips: &'a [IpAddr],
        errs: &'a [String],
        now: i64,
    ) -> StatusInputs<'a> {
        StatusInputs {
            hostname: "n1",
            node_ips: ips,
            max_pods: 110,
            reservation: r,
            kubelet_version: "v1.35.0",
            kubelet_port: 10250,
            machine: m,
            runtime_version: None,
            runtime_type: "berth",
            runtime_errors: errs,
            pressure: PressureSignals::default(),
            now: at(now),
        }
    }

    #[test]
    fn a_fresh_node_gets_the_conditions_in_upstream_order_and_events() {
        let (m, r) = (machine(), Reservation::default());
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        let mut n = Node::default();
        let ev = set_node_status(&mut n, &inputs(&m, &r, &ips, &[], 0));
        let types: Vec<_> = n
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.clone())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        let reasons: Vec<_> = ev.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ]
        );
        assert_eq!(n.status.unwrap().conditions.unwrap()[3].status, "True");
    }

    #[test]
    fn only_heartbeats_is_unchanged_then_a_runtime_error_is_a_change() {
        let (m, r) = (machine(), Reservation::default());
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        let mut n = Node::default();
        set_node_status(&mut n, &inputs(&m, &r, &ips, &[], 0));
        ensure_os_arch_labels(&mut n);
        let (n2, changed, ev) = update_node(&n, &inputs(&m, &r, &ips, &[], 10), false);
        assert!(!changed);
        assert!(ev.is_empty());
        assert_ne!(n2, n, "heartbeats moved");
        assert!(
            update_node(&n, &inputs(&m, &r, &ips, &[], 10), true).1,
            "pod CIDR changed"
        );
        let errs = vec!["container runtime is down".to_string()];
        let (_, changed, ev) = update_node(&n, &inputs(&m, &r, &ips, &errs, 20), false);
        assert!(changed);
        assert_eq!(ev[0].reason, "NodeNotReady");
    }

    #[test]
    fn pod_cidrs_prefer_the_list() {
        let mut n = Node::default();
        assert_eq!(pod_cidrs(&n), None);
        n.spec = Some(NodeSpec {
            pod_cidr: Some("10.244.1.0/24".into()),
            ..Default::default()
        });
        assert_eq!(pod_cidrs(&n).as_deref(), Some("10.244.1.0/24"));
        n.spec.as_mut().unwrap().pod_cidrs =
            Some(vec!["10.244.1.0/24".into(), "fd00:1::/64".into()]);
        assert_eq!(pod_cidrs(&n).as_deref(), Some("10.244.1.0/24,fd00:1::/64"));
    }
}
