//! RemoveImage through the CRI: berth against containerd (CRI plugin, overlayfs
//! snapshotter) in the same run, through the same Rust client, on the same images.
//!
//! Two cases, `-n` images each, imported before the clock starts:
//! - `shared`: images that differ only in their config (the fixture's exit-code images):
//!   their one layer stays, shared with a busybox image kept in the store, so a removal
//!   drops the record, the config and the manifest (kubelet's GC of a tag whose layers
//!   another image still uses).
//! - `unique`: images of one layer of 1 MiB of random data each: a removal also drops
//!   the layer blob and its unpacked snapshot.
//!
//! Prints the median and the quartiles of each case per runtime and the ratio
//! berth/containerd. Never pass/fail. Run as root:
//! `cargo build --release -p berth -p berth-cni-plugins --bins -p berth-bench-cri &&
//! sudo ./target/release/berth-bench-remove-image`.

#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "../target.rs"]
mod target;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_integration_tests::TestEnv;
use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::{CriNetwork, CriPeer};
use berth_integration_tests::cri::CriClient;
use berth_integration_tests::fixtures::Image;
use clap::Parser;

use target::Kind;

/// RemoveImage through CRI: berth against containerd.
#[derive(Debug, Parser)]
struct Args {
    /// Runtimes to measure, in this order (default: containerd, then berth).
    #[arg(long = "target", value_enum)]
    targets: Vec<Kind>,
    /// Images removed per case and runtime.
    #[arg(short = 'n', long, default_value_t = 20)]
    images: u8,
    /// The berth binary (default: the workspace's build, same profile as the bench).
    #[arg(long)]
    berth: Option<std::path::PathBuf>,
}

const CASES: [&str; 2] = ["shared", "unique"];

fn fixtures(case: &str, n: u8) -> Vec<Image> {
    (0..n)
        .map(|i| match case {
            "shared" => Image::Exit {
                code: i,
                after_ms: 0,
            },
            _ => Image::RandomLayers { count: 1, mib: 1 },
        })
        .collect()
}

/// A runtime with the images of every case imported; each case's references in order.
struct Loaded<'a> {
    endpoint: String,
    refs: Vec<Vec<String>>,
    _peer: Option<Box<CriPeer<'a>>>,
    _berth: Option<Box<BerthCri<'a>>>,
}

fn load<'a>(
    kind: Kind,
    env: &'a TestEnv,
    berth: &std::path::Path,
    n: u8,
) -> anyhow::Result<Loaded<'a>> {
    // Every image under a name of its own (the fixtures of one kind share theirs).
    let mut refs = Vec::new();
    match kind {
        Kind::Containerd => {
            let dir = env.subdir("containerd")?;
            let net = CriNetwork::reference("10.244.42.0/24", &env.subdir("ipam")?);
            let peer = CriPeer::start(env, &dir, &net)?;
            peer.import(&Image::Busybox)?;
            for case in CASES {
                let mut r = Vec::new();
                for (i, img) in fixtures(case, n).iter().enumerate() {
                    let sub = env.subdir(&format!("ctrd-{case}-{i}"))?;
                    let layout = berth_integration_tests::fixtures::build(img, &sub)?;
                    let tar = sub.join("image.tar");
                    berth_integration_tests::util::run(
                        std::process::Command::new("tar")
                            .arg("-C")
                            .arg(&layout.dir)
                            .arg("-cf")
                            .arg(&tar)
                            .arg("."),
                    )?;
                    let name = format!("berth.test/{case}-{i}");
                    berth_integration_tests::util::run(
                        peer.containerd()
                            .ctr_in("k8s.io")
                            .args(["images", "import", "--base-name", &name])
                            .arg(&tar),
                    )
                    .with_context(|| format!("import {case} {i}"))?;
                    r.push(format!("{name}:latest"));
                }
                refs.push(r);
            }
            Ok(Loaded {
                endpoint: peer.endpoint.clone(),
                refs,
                _peer: Some(Box::new(peer)),
                _berth: None,
            })
        }
        Kind::Berth => {
            let dir = env.subdir("berth")?;
            let built = berth.parent().context("berth's dir")?.to_path_buf();
            let net = CriNetwork::berth(
                &built,
                &dir.join("cni-bin"),
                "10.244.43.0/24",
                &env.subdir("ipam-berth")?,
            )?;
            let b = BerthCri::start_binary(env, &dir, &net, berth)?;
            b.import(&Image::Busybox)?;
            for case in CASES {
                let mut r = Vec::new();
                for (i, img) in fixtures(case, n).iter().enumerate() {
                    let sub = env.subdir(&format!("berth-{case}-{i}"))?;
                    let layout = berth_integration_tests::fixtures::build(img, &sub)?;
                    let name = format!("berth.test/{case}-{i}");
                    berth_integration_tests::util::run(
                        std::process::Command::new(berth)
                            .arg("image")
                            .arg("--root")
                            .arg(b.root.join("images"))
                            .args(["import", "--name", &name])
                            .arg(&layout.dir),
                    )?;
                    r.push(format!("{name}:latest"));
                }
                refs.push(r);
            }
            Ok(Loaded {
                endpoint: b.endpoint.clone(),
                refs,
                _peer: None,
                _berth: Some(Box::new(b)),
            })
        }
    }
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "run as root");
    let berth = target::berth_binary(args.berth.clone());
    let targets = if args.targets.is_empty() {
        vec![Kind::Containerd, Kind::Berth]
    } else {
        args.targets.clone()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut out = std::io::stdout().lock();
    let mut medians: Vec<(Kind, Vec<f64>)> = Vec::new();
    for kind in targets {
        let env = TestEnv::new()?;
        let loaded = load(kind, &env, &berth, args.images)?;
        // containerd removes the image (a record per repo tag and digest) by name, as
        // kubelet asks, with the ID it reported: resolve names to IDs first, untimed.
        let per_case = rt.block_on(async {
            let mut c = CriClient::connect(&loaded.endpoint).await?;
            let mut out = Vec::new();
            for refs in &loaded.refs {
                let mut ids = Vec::new();
                for r in refs {
                    let st = c.image_status(r, false).await?;
                    ids.push(st.image.with_context(|| format!("{r} not stored"))?.id);
                }
                let mut times = Vec::new();
                for id in &ids {
                    let t = Instant::now();
                    c.remove_image(id)
                        .await
                        .with_context(|| format!("remove {id}"))?;
                    times.push(t.elapsed());
                    anyhow::ensure!(c.image_status(id, false).await?.image.is_none());
                }
                times.sort_unstable();
                out.push(times);
            }
            Ok::<_, anyhow::Error>(out)
        })?;
        let mut m = Vec::new();
        for (case, times) in CASES.iter().zip(&per_case) {
            writeln!(
                out,
                "{kind:?} RemoveImage {case}: median {:.2} ms (p25 {:.2}, p75 {:.2}, n={})",
                quantile_ms(times, 0.5),
                quantile_ms(times, 0.25),
                quantile_ms(times, 0.75),
                times.len()
            )?;
            m.push(quantile_ms(times, 0.5));
        }
        medians.push((kind, m));
    }
    if let (Some((_, c)), Some((_, b))) = (
        medians.iter().find(|(k, _)| *k == Kind::Containerd),
        medians.iter().find(|(k, _)| *k == Kind::Berth),
    ) {
        for (i, case) in CASES.iter().enumerate() {
            writeln!(
                out,
                "ratio berth/containerd, {case}: {:.2}x",
                b[i] / c[i].max(f64::EPSILON)
            )?;
        }
    }
    Ok(())
}
