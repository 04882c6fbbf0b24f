//! Pod admission (pkg/kubelet/lifecycle/predicate.go, predicateAdmitHandler): whether a
//! pod the sources hand the kubelet may run on this node, judged before it reaches a pod
//! worker, with upstream's reasons and messages when it may not.
//!
//! Pure: a pod, the pods already admitted and the Node object in; a [`Rejection`] or
//! nothing out. It owns no state, starts nothing and never touches the runtime; the
//! caller records the rejection (status and event) and keeps the pod from its worker.

pub mod admission;
pub mod node;
pub mod node_affinity;
pub mod node_ports;
pub mod resources;
pub mod taints;

pub use admission::{Rejection, admit, rejected_event, rejected_status};
pub use node::{DEFAULT_MAX_PODS, standalone_node};

#[cfg(test)]
mod tests;
