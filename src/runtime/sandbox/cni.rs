//! The seam in front of the pod network: what the sandbox logic asks of CNI, so its
//! roll-back and teardown are unit-tested against a recording fake
//! (`crate::runtime::fakes`). The real one is [`Invoker`], with `lo` brought up first as
//! go-cni's loopback network does before containerd's pod networks.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde_json::Value;

use crate::net::cni::{Attachment, CniError, Invoker};

/// A future a [`PodNetwork`] call returns (boxed: the seam is used as a trait object).
pub type CniFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CniError>> + Send + 'a>>;

/// A pod's network, as RunPodSandbox and StopPodSandbox set it up and tear it down.
pub trait PodNetwork: Send + Sync + std::fmt::Debug {
    /// Brings up `lo` in the pod's network namespace at `netns`.
    fn loopback_up(&self, netns: &Path) -> std::io::Result<()>;
    /// CNI ADD: the pod's attachment made; the result of the last plugin.
    fn add<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, Value>;
    /// CNI DEL: the attachment released (idempotent).
    fn del<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, ()>;
}

impl PodNetwork for Invoker {
    fn loopback_up(&self, netns: &Path) -> std::io::Result<()> {
        super::network::loopback_up(&crate::sys::ns::Linux, &crate::sys::link::Linux, netns)
    }

    fn add<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, Value> {
        Box::pin(Invoker::add(self, att))
    }

    fn del<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, ()> {
        Box::pin(Invoker::del(self, att))
    }
}
