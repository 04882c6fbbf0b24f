//! `berth-test-apiserver`: the test API server as a process, for benchmarks and manual
//! runs. Writes ca.crt, admin.kubeconfig, node.kubeconfig (for --node-name) and
//! bootstrap.kubeconfig into --dir, prints `ready <url>` on stdout, and serves until
//! SIGTERM or SIGINT.
//!
//! usage: berth-test-apiserver [--listen ADDR] --dir DIR [--node-name NAME]
//!        [--auto-approve-csrs] [--cert-validity-seconds N] [--bookmark-interval-ms N]

#![allow(clippy::print_stdout)] // the readiness line is this program's interface

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_integration_tests::apiserver::{ApiServer, Options};

struct Args {
    opts: Options,
    dir: PathBuf,
    node: String,
}

fn parse() -> anyhow::Result<Args> {
    let mut opts = Options::default();
    let (mut dir, mut node) = (None, "node-1".to_string());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => opts.listen = val()?.parse().context("--listen")?,
            "--dir" => dir = Some(PathBuf::from(val()?)),
            "--node-name" => node = val()?,
            "--auto-approve-csrs" => opts.auto_approve_csrs = true,
            "--cert-validity-seconds" => {
                opts.cert_validity =
                    Duration::from_secs(val()?.parse().context("--cert-validity-seconds")?)
            }
            "--bookmark-interval-ms" => {
                opts.bookmark_interval =
                    Duration::from_millis(val()?.parse().context("--bookmark-interval-ms")?)
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let dir = dir.context("--dir is required")?;
    Ok(Args { opts, dir, node })
}

async fn run() -> anyhow::Result<()> {
    let args = parse()?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let api = ApiServer::start(args.opts).await?;
    std::fs::write(args.dir.join("ca.crt"), api.ca_pem()).context("write ca.crt")?;
    ApiServer::write_file(&args.dir.join("admin.kubeconfig"), &api.admin_kubeconfig())?;
    ApiServer::write_file(
        &args.dir.join("node.kubeconfig"),
        &api.node_kubeconfig(&args.node)?,
    )?;
    ApiServer::write_file(
        &args.dir.join("bootstrap.kubeconfig"),
        &api.bootstrap_kubeconfig()?,
    )?;
    println!("ready {}", api.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-test-apiserver: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-test-apiserver: {e:#}");
            ExitCode::FAILURE
        }
    }
}
