//! `berth image`: pull, import, list, inspect, remove and prune images, and mount a
//! container rootfs from one, against a store root.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::gc::Policy;
use super::progress::Progress;
use super::pull::{PullOptions, pull};
use super::registry::{RegistryHosts, auth};
use super::store::{DEFAULT_ROOT, ImageStore};
use super::unpack::UnpackOptions;
use crate::sys::overlay::LinuxOverlay;

/// Where berth reads per-registry settings (mirrors, TLS, plain HTTP) by default.
pub const DEFAULT_REGISTRY_CONFIG: &str = "/etc/berth/registries.yaml";

/// Manage images: pull from registries, import archives, list, inspect, remove, prune.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image store root.
    #[arg(long, global = true, env = "BERTH_IMAGE_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,

    /// Per-registry settings (YAML): mirrors, plainHttp, insecureSkipVerify, caFiles.
    /// Default: /etc/berth/registries.yaml when it exists.
    #[arg(long, global = true, env = "BERTH_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,

    /// Allow character and block device nodes in layers (refused by default).
    #[arg(long, global = true)]
    pub allow_device_nodes: bool,

    /// Refuse an image that unpacks to more than this (bytes, or with a K, M, G or T
    /// suffix, powers of 1024): a guard against decompression bombs. Default: no cap.
    #[arg(long, global = true, env = "BERTH_MAX_UNPACKED_SIZE", value_parser = parse_size)]
    pub max_unpacked_size: Option<u64>,

    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry: `[registry/]repo[:tag][@sha256:...]`.
    Pull(PullArgs),
    /// Import an OCI image layout (directory or tar) or a `docker save` tarball.
    Import {
        /// The layout directory or archive (tar, optionally gzipped).
        path: PathBuf,
        /// Repository to name images whose layout gives only a tag (e.g. `example.com/app`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    Ls {
        /// Print image IDs only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show an image's record (tags, digests, config, layers) as JSON.
    Inspect {
        /// A tag, repo digest, image ID or unique ID prefix.
        image: String,
    },
    /// Remove images (an image a container uses is refused).
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images and unreferenced content. Without flags: untagged images.
    Prune {
        /// Remove every image no container uses.
        #[arg(long, conflicts_with = "high")]
        all: bool,
        /// Apply the kubelet's policy instead: act when disk use is at or above this percent.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        high: Option<u8>,
        /// With --high: remove least recently used images until use is below this percent.
        #[arg(long, requires = "high", default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
        low: u8,
        /// With --high: never remove images stored less than this long ago (e.g. 2m, 1h, 30s).
        #[arg(long, requires = "high", default_value = "2m", value_parser = parse_duration)]
        min_age: Duration,
    },
    /// Re-hash every stored blob and report any that does not match its digest.
    Verify,
    /// Make a container rootfs: an overlay of the image's layers plus a writable upper dir.
    Mount {
        /// The container ID the rootfs belongs to.
        container: String,
        image: String,
        /// Mount point (default: <root>/rootfs/<container>/merged).
        #[arg(long)]
        target: Option<PathBuf>,
    },
    /// Unmount and delete a container rootfs.
    Unmount { container: String },
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `[registry/]repo[:tag][@sha256:...]`, e.g. `busybox` or
    /// `10.0.0.5:5000/app:v1`.
    pub reference: String,
    /// Registry credentials as USER:PASSWORD.
    #[arg(long, env = "BERTH_REGISTRY_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// A docker-config-style credentials file (`{"auths": {...}}`).
    /// Default: $DOCKER_CONFIG/config.json or ~/.docker/config.json when present.
    #[arg(long)]
    pub auth_file: Option<PathBuf>,
    /// Platform to select from a multi-platform image, as os/arch.
    #[arg(long)]
    pub platform: Option<String>,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = super::pull::DEFAULT_MAX_CONCURRENT, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_downloads: u16,
}

/// A byte size: a number with an optional K, M, G or T suffix (powers of 1024, an
/// optional trailing `i` and `B` accepted: `512M`, `10Gi`, `1GB`). Zero is refused: leave
/// the flag out for no cap.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: the unit must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (such as 512M or 10G)"))?;
    match n.checked_shl(shift).filter(|v| v >> shift == n) {
        Some(0) => Err("a cap of 0 would refuse every image; leave the flag out for no cap".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h)"))?;
    let mul = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(n * mul))
}

/// Runs `berth image ...`.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: ImageArgs) -> anyhow::Result<()> {
    let store = ImageStore::open(
        &args.root,
        Arc::new(LinuxOverlay),
        UnpackOptions {
            allow_devices: args.allow_device_nodes,
            max_image_bytes: args.max_unpacked_size,
        },
    )
    .with_context(|| format!("open the image store at {}", args.root.display()))?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ImageCommand::Pull(p) => {
            let hosts = load_hosts(args.registry_config.as_ref())?;
            let r = super::Reference::parse(&p.reference)?;
            let credentials = match (&p.creds, &p.auth_file) {
                (Some(c), _) => Some(auth::parse_user_pass(c)?),
                (None, Some(f)) => auth::from_docker_config(f, &r.registry)?,
                (None, None) => default_auth_file()
                    .map(|f| auth::from_docker_config(&f, &r.registry))
                    .transpose()?
                    .flatten(),
            };
            let mut opts = PullOptions {
                credentials,
                max_concurrent: p.max_concurrent_downloads.into(),
                ..PullOptions::default()
            };
            if let Some(pl) = &p.platform {
                let (os, arch) = pl
                    .split_once('/')
                    .context("--platform: expected os/arch, e.g. linux/amd64")?;
                opts.platform = (os.to_string(), arch.to_string());
            }
            let progress = progress_for(&r.to_string());
            let t = Instant::now();
            let rec = pull(&store, &hosts, &p.reference, &opts, &progress).await;
            progress.finish();
            let rec = rec?;
            progress.step(&format!("pulled {r} in {:.2}s", t.elapsed().as_secs_f64()));
            writeln!(out, "{}", rec.id)?;
        }
        ImageCommand::Import { path, name } => {
            let progress = progress_for(&path.display().to_string());
            let recs = super::import::import(&store, &path, name.as_deref(), &progress).await;
            progress.finish();
            let recs = recs?;
            for r in recs {
                writeln!(out, "{} {}", r.id, r.repo_tags.join(" "))?;
            }
        }
        ImageCommand::Ls { quiet } => {
            let images = store.images()?;
            if quiet {
                for i in images {
                    writeln!(out, "{}", i.id)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<50} {:<20} {:<14} {:>10}",
                    "IMAGE", "TAG", "IMAGE ID", "SIZE"
                )?;
                for i in images {
                    let names: Vec<(String, String)> = if i.repo_tags.is_empty() {
                        vec![("<none>".into(), "<none>".into())]
                    } else {
                        i.repo_tags
                            .iter()
                            .map(|t| {
                                t.rsplit_once(':')
                                    .map(|(a, b)| (a.into(), b.into()))
                                    .unwrap_or((t.clone(), String::new()))
                            })
                            .collect()
                    };
                    for (repo, tag) in names {
                        writeln!(
                            out,
                            "{repo:<50} {tag:<20} {:<14} {:>10}",
                            i.id.short(),
                            human(i.size)
                        )?;
                    }
                }
            }
        }
        ImageCommand::Inspect { image } => {
            let rec = store.find(&image)?;
            serde_json::to_writer_pretty(&mut out, &rec)?;
            writeln!(out)?;
        }
        ImageCommand::Rm { images } => {
            let mut failed = 0;
            for i in images {
                match store.remove(&i).await {
                    Ok(c) if c.images.is_empty() => writeln!(out, "Untagged: {i}")?,
                    Ok(c) => writeln!(
                        out,
                        "Deleted: {} ({} blobs, {} snapshots, {})",
                        i,
                        c.blobs.len(),
                        c.snapshots.len(),
                        human(c.bytes)
                    )?,
                    Err(e) => {
                        tracing::error!("remove {i}: {e}");
                        failed += 1;
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} image(s) not removed");
        }
        ImageCommand::Prune {
            all,
            high,
            low,
            min_age,
        } => {
            let c = match high {
                Some(high) => {
                    store
                        .gc(&Policy {
                            high_threshold_percent: high,
                            low_threshold_percent: low,
                            min_age,
                        })
                        .await?
                }
                None => store.prune(all).await?,
            };
            for i in &c.images {
                writeln!(out, "Deleted: {i}")?;
            }
            writeln!(
                out,
                "removed {} images, {} blobs, {} snapshots, {} interrupted downloads; freed {}",
                c.images.len(),
                c.blobs.len(),
                c.snapshots.len(),
                c.ingests,
                human(c.bytes)
            )?;
        }
        ImageCommand::Verify => {
            let bad = store.verify()?;
            for d in &bad {
                writeln!(out, "corrupt: {d}")?;
            }
            anyhow::ensure!(
                bad.is_empty(),
                "{} blob(s) do not match their digest",
                bad.len()
            );
            writeln!(out, "ok: {} blobs verified", store.content.list()?.len())?;
        }
        ImageCommand::Mount {
            container,
            image,
            target,
        } => {
            let t = store
                .create_rootfs(&container, &image, target.as_deref())
                .await?;
            writeln!(out, "{}", t.display())?;
        }
        ImageCommand::Unmount { container } => store.remove_rootfs(&container)?,
    }
    Ok(())
}

fn load_hosts(path: Option<&PathBuf>) -> anyhow::Result<RegistryHosts> {
    match path {
        Some(p) => Ok(RegistryHosts::load(p)?),
        None if std::path::Path::new(DEFAULT_REGISTRY_CONFIG).exists() => Ok(RegistryHosts::load(
            std::path::Path::new(DEFAULT_REGISTRY_CONFIG),
        )?),
        None => Ok(RegistryHosts::default()),
    }
}

fn default_auth_file() -> Option<PathBuf> {
    let p = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".docker/config.json"),
    };
    p.is_file().then_some(p)
}

fn progress_for(what: &str) -> Progress {
    if std::io::stderr().is_terminal() {
        Progress::bar(what)
    } else {
        Progress::lines(Box::new(std::io::stderr()))
    }
}

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_nonsense() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        for bad in ["", "0", "M", "12X", "-1", "99999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
