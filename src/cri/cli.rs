//! `berth cri`: the CRI runtime and image services on a root-only unix socket, for
//! crictl, critest or an upstream kubelet (`--container-runtime-endpoint`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::inprocess::{InProcess, RuntimeArgs};
use super::server::{BoundSocket, DEFAULT_LISTEN, serve, socket_path};
use crate::image::registry::RegistryHosts;

/// berth's state root by default.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/berth";
/// Per-registry settings, as `berth image` reads them.
pub const DEFAULT_REGISTRY_CONFIG: &str = "/etc/berth/registries.yaml";

/// `berth cri`'s flags (the command's help text is on its subcommand in main.rs).
#[derive(Debug, Args)]
pub struct CriArgs {
    /// The endpoint to serve: unix:///path/to/socket (or an absolute path).
    #[arg(long, env = "BERTH_CRI_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Seconds running calls may take to finish after SIGTERM before berth exits anyway.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
}

/// Runs `berth cri` until SIGTERM or SIGINT.
pub fn run(args: CriArgs) -> anyhow::Result<()> {
    let path = socket_path(&args.listen)?;
    let prepared = InProcess::prepare(&args.runtime)?;
    // Bound before the async runtime starts any thread: see BoundSocket::bind.
    let socket = BoundSocket::bind(&path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let stop = stop_signal().context("install SIGTERM/SIGINT handlers")?;
        let r = InProcess::open(&args.runtime, prepared).await?;
        serve(
            socket,
            Arc::new(r.images),
            Arc::new(r.info),
            Arc::new(r.pods),
            Arc::new(r.streams),
            stop,
            Duration::from_secs(args.shutdown_grace),
        )
        .await?;
        Ok(())
    })
}

/// Completes at the first SIGTERM or SIGINT. The handlers are installed now, so a signal
/// that arrives before the server runs is not lost.
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

pub(crate) fn load_hosts(path: Option<&Path>) -> anyhow::Result<RegistryHosts> {
    let default = Path::new(DEFAULT_REGISTRY_CONFIG);
    match path {
        Some(p) => Ok(RegistryHosts::load(p)?),
        None if default.exists() => Ok(RegistryHosts::load(default)?),
        None => Ok(RegistryHosts::default()),
    }
}
