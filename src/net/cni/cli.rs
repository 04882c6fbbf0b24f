//! `berth cni`: the node's CNI network by hand, for operators and scripts: attach or detach
//! a network namespace, check it, collect garbage, ask the plugins' status, or print the
//! default network list for a pod CIDR.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::default::default_conflist;
use super::error::CniError;
use super::invoker::{Attachment, Invoker, InvokerConfig};

/// Where the network is configured; shared by every verb.
#[derive(Debug, clap::Args)]
pub struct CniArgs {
    /// Network configuration directory (the lexically first list in it is used).
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub conf_dir: PathBuf,
    /// Plugin directories, ':'-separated, searched in order.
    #[arg(
        long,
        value_delimiter = ':',
        default_value = "/usr/lib/berth/cni:/opt/cni/bin"
    )]
    pub bin_dir: Vec<PathBuf>,
    /// Where each attachment's configuration and result are cached.
    #[arg(long, default_value = "/var/lib/berth/cni/results")]
    pub cache_dir: PathBuf,
    /// Seconds one plugin may run before it is killed.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Attach a network namespace (CNI ADD); prints the result.
    Add {
        #[command(flatten)]
        att: AttArgs,
        /// A host port, HOST:CONTAINER[/tcp|/udp]; may be repeated.
        #[arg(long = "port")]
        ports: Vec<String>,
    },
    /// Detach (CNI DEL), with the configuration cached at ADD time when there is one.
    Del {
        #[command(flatten)]
        att: AttArgs,
    },
    /// Check an attachment against its cached result (CNI CHECK).
    Check {
        #[command(flatten)]
        att: AttArgs,
    },
    /// Remove every attachment except the ones kept (CNI GC).
    Gc {
        /// An attachment to keep, CONTAINER_ID/IFNAME; may be repeated.
        #[arg(long = "keep")]
        keep: Vec<String>,
    },
    /// Ask every plugin whether it can serve ADD (CNI STATUS).
    Status,
    /// Print the default network list for the node's pod CIDR(s).
    DefaultConflist {
        /// A pod CIDR (one IPv4 and/or one IPv6), e.g. 10.244.1.0/24.
        #[arg(long = "pod-cidr", required = true)]
        pod_cidrs: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AttArgs {
    /// The sandbox (container) id.
    #[arg(long)]
    pub id: String,
    /// The sandbox's network namespace, e.g. /run/netns/NAME or /proc/PID/ns/net.
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// The interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
}

impl AttArgs {
    fn attachment(&self) -> Attachment {
        Attachment::new(&self.id, self.netns.as_deref(), &self.ifname)
    }
}

/// Runs the verb, writing its output (a result, the default list) to `out`.
pub fn run(args: CniArgs, out: &mut dyn Write) -> Result<(), CniError> {
    let inv = Invoker::new(InvokerConfig {
        conf_dir: args.conf_dir,
        bin_dirs: args.bin_dir,
        cache_dir: args.cache_dir,
        timeout: Duration::from_secs(args.timeout),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CniError::Output)?;
    let print = |out: &mut dyn Write, v: &Value| -> Result<(), CniError> {
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        writeln!(out, "{text}").map_err(CniError::Output)
    };
    match args.verb {
        Verb::Add { att, ports } => {
            let mut a = att.attachment();
            let maps = ports
                .iter()
                .map(|p| port_mapping(p))
                .collect::<Result<Vec<_>, _>>()?;
            if !maps.is_empty() {
                a.capability_args
                    .insert("portMappings".into(), Value::Array(maps));
            }
            let result = rt.block_on(inv.add(&a))?;
            print(out, &result)
        }
        Verb::Del { att } => rt.block_on(inv.del(&att.attachment())),
        Verb::Check { att } => rt.block_on(inv.check(&att.attachment())),
        Verb::Gc { keep } => {
            let valid = keep
                .iter()
                .map(|k| {
                    k.split_once('/')
                        .map(|(id, ifname)| (id.to_string(), ifname.to_string()))
                        .ok_or_else(|| {
                            CniError::BadArgument(format!("--keep {k:?}: expected ID/IFNAME"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            rt.block_on(inv.gc(&valid))
        }
        Verb::Status => rt.block_on(inv.status()),
        Verb::DefaultConflist { pod_cidrs } => {
            for c in &pod_cidrs {
                validate_cidr(c)?;
            }
            let refs: Vec<&str> = pod_cidrs.iter().map(String::as_str).collect();
            print(out, &default_conflist(&refs))
        }
    }
}

/// `HOST:CONTAINER[/proto]` as a CNI portMappings entry.
fn port_mapping(spec: &str) -> Result<Value, CniError> {
    let bad = || {
        CniError::BadArgument(format!(
            "--port {spec:?}: expected HOST:CONTAINER[/tcp|/udp]"
        ))
    };
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let (host, container) = ports.split_once(':').ok_or_else(bad)?;
    let host: u16 = host.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let container: u16 = container.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if !matches!(proto, "tcp" | "udp") {
        return Err(bad());
    }
    Ok(json!({"hostPort": host, "containerPort": container, "protocol": proto}))
}

fn validate_cidr(c: &str) -> Result<(), CniError> {
    let bad = || CniError::BadArgument(format!("--pod-cidr {c:?}: expected ADDRESS/PREFIX"));
    let (addr, len) = c.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max - 2 {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_cidrs() {
        assert_eq!(
            port_mapping("8080:80/udp").expect("ok"),
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "udp"})
        );
        assert_eq!(port_mapping("8080:80").expect("ok")["protocol"], "tcp");
        for bad in ["8080", "0:80", "8080:80/sctp", "x:80"] {
            assert!(port_mapping(bad).is_err(), "{bad}");
        }
        assert!(validate_cidr("10.244.1.0/24").is_ok());
        assert!(validate_cidr("fd00::/64").is_ok());
        assert!(validate_cidr("10.244.1.0/32").is_err());
        assert!(validate_cidr("nope").is_err());
    }
}
