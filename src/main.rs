//! The berth command line: builds the parts with their real kernel seams and runs them.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// berth turns a Linux machine into a Kubernetes worker node.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `berth=debug`.
    #[arg(long, global = true, env = "BERTH_LOG", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print berth's version.
    Version,
    /// Run pods from manifests, as a kubelet in standalone mode (no API server).
    ///
    /// Pods (with the ConfigMaps and Secrets they use) come from YAML files, directories
    /// and URLs, and from a static pod directory (--manifests); files are watched, URLs
    /// polled. Served today: pod workers with restartPolicy, CrashLoopBackOff and
    /// imagePullPolicy back-off; init containers and sidecars; postStart and preStop
    /// hooks; graceful termination and activeDeadlineSeconds; liveness, readiness and
    /// startup probes (exec, httpGet, tcpSocket, grpc); emptyDir, hostPath, configMap,
    /// secret, downwardAPI and projected volumes; env with $(VAR) expansion; requests and
    /// limits in the kubepods cgroups with QoS classes; host ports, DNS and security
    /// contexts; the pod status as the API shows it.
    ///
    /// The runtime is berth's own, in-process, or any CRI endpoint
    /// (--container-runtime-endpoint). On a terminal a live table shows the pods; `-o
    /// json` or `-o yaml` prints each pod's status object when it changes. SIGTERM or
    /// Ctrl-C terminates every pod gracefully; after a kill -9 the next `berth run`
    /// adopts the running pods without restarting them. See docs/kubelet.md.
    Run(Box<berth::kubelet::standalone::RunArgs>),
    /// Join a cluster as a node: the kubelet with an API server.
    ///
    /// Registers the Node and keeps its status and Lease up to date, runs the pods bound
    /// to it (and the static pods of --pod-manifest-path, mirrored in the API), reports
    /// their status, and deletes their objects once their graceful deletion is done.
    /// Credentials come from --kubeconfig, or through a CertificateSigningRequest made with
    /// --bootstrap-kubeconfig. The runtime is berth's own, in-process, or any CRI endpoint.
    /// SIGTERM stops berth and leaves the pods running: the next start adopts them.
    Node(Box<berth::kubelet::node::NodeArgs>),
    /// Serve the CRI (runtime.v1) on a root-only unix socket.
    ///
    /// Served: the ImageService (pull, list, status, remove, image fs info) and the
    /// RuntimeService: pod sandboxes and containers (lifecycle, status, lists and their
    /// streaming forms, resource updates, log reopen, ExecSync), Exec, Attach and
    /// PortForward through a streaming server, stats and cAdvisor-named metrics,
    /// container events, image volumes, Version, Status and RuntimeConfig. Not served:
    /// CheckpointContainer (answers UNIMPLEMENTED). Messages up to 16 MiB each way.
    ///
    /// The socket is root-only (0600, in a 0700 directory when berth creates it). SIGTERM
    /// or SIGINT stops the server: running calls finish (up to --shutdown-grace) and the
    /// socket is removed. See docs/cri.md.
    Cri(berth::cri::cli::CriArgs),
    /// Manage images: pull, import, ls, inspect, rm, prune.
    Image(berth::image::cli::ImageArgs),
    /// Run the node's CNI network by hand: add, del, check, gc, status, default-conflist.
    Cni(berth::net::cni::cli::CniArgs),
    /// Run OCI containers with runc's command line.
    Oci(Box<berth::oci::cli::OciArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Oci(args) => std::process::exit(berth::oci::cli::main(*args)),
        Command::Version => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", berth::version::Info::current())?;
        }
        Command::Image(args) => berth::image::cli::run(args)?,
        Command::Cni(args) => berth::net::cni::cli::run(args, &mut std::io::stdout().lock())?,
        Command::Cri(args) => berth::cri::cli::run(args)?,
        Command::Run(args) => berth::kubelet::standalone::run(*args)?,
        Command::Node(args) => berth::kubelet::node::run(*args)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    // `berth cri --help` tells an operator what the socket serves and what it does not.
    #[test]
    fn cri_help_names_what_is_served() {
        let mut cli = super::Cli::command();
        let help = cli
            .find_subcommand_mut("cri")
            .expect("cri subcommand")
            .render_long_help()
            .to_string();
        for want in [
            "ImageService",
            "RuntimeService",
            "pod sandboxes and containers",
            "ExecSync",
            "Exec, Attach and",
            "PortForward",
            "metrics",
            "container events",
            "Not served:",
            "CheckpointContainer (answers UNIMPLEMENTED)",
            "16 MiB",
        ] {
            assert!(help.contains(want), "no {want:?} in:\n{help}");
        }
        assert!(!help.contains("every other RuntimeService call"), "{help}");
    }

    // `berth run --help` says what the kubelet serves today and how to stop it.
    #[test]
    fn run_help_names_what_is_served() {
        let mut cli = super::Cli::command();
        let help = cli
            .find_subcommand_mut("run")
            .expect("run subcommand")
            .render_long_help()
            .to_string();
        for want in [
            "standalone mode",
            "static pod directory",
            "CrashLoopBackOff",
            "init containers and sidecars",
            "liveness, readiness and",
            "grpc",
            "projected volumes",
            "--container-runtime-endpoint",
            "kill -9",
            "--manifests",
            "--output",
        ] {
            assert!(help.contains(want), "no {want:?} in:\n{help}");
        }
    }
}
