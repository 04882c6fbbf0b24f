//! The container runtime as the kubelet sees it: the CRI services behind `dyn` traits,
//! either berth's in-process runtime or a remote CRI endpoint.

use std::sync::Arc;

use crate::cri::api::{ImageApi, PodApi, RuntimeApi};

/// The runtime the kubelet drives. Cloning shares the services.
#[derive(Clone)]
pub struct Runtime {
    pub images: Arc<dyn ImageApi>,
    pub info: Arc<dyn RuntimeApi>,
    pub pods: Arc<dyn PodApi>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}
