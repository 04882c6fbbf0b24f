//! The node status setters of upstream pkg/kubelet/nodestatus/setters.go that fill in
//! facts: NodeAddress, MachineInfo, VersionInfo, DaemonEndpoints and GoRuntime. Each takes
//! the node and plain facts and writes only its own fields; the conditions are
//! [`super::conditions`]. No IO: the facts are read by [`super::host`] and the runtime.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeStatus, NodeSwapStatus,
    NodeSystemInfo,
};

use super::resources::{Reservation, allocatable_milli, to_quantities};

/// What the machine is, as cAdvisor's MachineInfo and VersionInfo tell kubelet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    pub num_cores: u32,
    /// Bytes of memory.
    pub memory_capacity: u64,
    /// Bytes of swap.
    pub swap_capacity: u64,
    /// The huge page sizes the kernel offers, with how many pages of each are reserved.
    pub hugepages: Vec<HugePages>,
    /// Bytes of the filesystem holding the kubelet's root dir; `None` when it could not
    /// be read (capacity then has no ephemeral-storage, and the node is not Ready).
    pub rootfs_capacity: Option<u64>,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    /// PRETTY_NAME of os-release.
    pub os_image: String,
}

/// One huge page size and the pages of it the kernel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugePages {
    pub page_size_kib: u64,
    pub num_pages: u64,
}

/// The runtime's name and version from the CRI Version call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
}

/// Why a setter could not fill in its fields; the others still run (setNodeStatus logs
/// and goes on).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetterError {
    /// No --node-ip and no address found on the host.
    #[error("can't get ip address of node {node}. error: no usable address on the host")]
    NoAddress { node: String },
}

fn status(node: &mut Node) -> &mut NodeStatus {
    node.status.get_or_insert_with(Default::default)
}

fn node_info(node: &mut Node) -> &mut NodeSystemInfo {
    status(node).node_info.get_or_insert_with(Default::default)
}

/// NodeAddress without a cloud provider: the node IP (the first of --node-ip, a second of
/// the other family with dual-stack --node-ip) as InternalIP, then the hostname.
pub fn node_address(
    node: &mut Node,
    node_ips: &[IpAddr],
    hostname: &str,
) -> Result<(), SetterError> {
    let Some(primary) = node_ips.first() else {
        return Err(SetterError::NoAddress {
            node: node.metadata.name.clone().unwrap_or_default(),
        });
    };
    let mut addrs = vec![NodeAddress {
        type_: "InternalIP".into(),
        address: primary.to_string(),
    }];
    if let Some(secondary) = node_ips.get(1).filter(|s| s.is_ipv4() != primary.is_ipv4()) {
        addrs.push(NodeAddress {
            type_: "InternalIP".into(),
            address: secondary.to_string(),
        });
    }
    addrs.push(NodeAddress {
        type_: "Hostname".into(),
        address: hostname.to_string(),
    });
    status(node).addresses = Some(addrs);
    Ok(())
}

/// The huge page resource name of a page size: `hugepages-2Mi`, `hugepages-1Gi`.
pub fn hugepage_resource(page_size_kib: u64) -> String {
    format!(
        "hugepages-{}",
        super::resources::bytes(page_size_kib.saturating_mul(1024)).0
    )
}

/// The node's capacity in thousandths of a unit: cpu, memory, pods, huge pages of every
/// size (0 when none are reserved), and ephemeral-storage when the root fs is known.
pub fn capacity_milli(info: &MachineInfo, max_pods: i64) -> BTreeMap<String, i64> {
    let bytes = |n: u64| {
        i64::try_from(n)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000)
    };
    let mut c = BTreeMap::from([
        (
            "cpu".to_string(),
            i64::from(info.num_cores).saturating_mul(1000),
        ),
        ("memory".to_string(), bytes(info.memory_capacity)),
        ("pods".to_string(), max_pods.saturating_mul(1000)),
    ]);
    for hp in &info.hugepages {
        c.insert(
            hugepage_resource(hp.page_size_kib),
            bytes(
                hp.page_size_kib
                    .saturating_mul(1024)
                    .saturating_mul(hp.num_pages),
            ),
        );
    }
    if let Some(fs) = info.rootfs_capacity {
        c.insert("ephemeral-storage".into(), bytes(fs));
    }
    c
}

/// MachineInfo: machine and system IDs, capacity and allocatable, and the swap capacity
/// (NodeSwap is on by default).
pub fn machine_info(node: &mut Node, info: &MachineInfo, max_pods: i64, reservation: &Reservation) {
    let ni = node_info(node);
    ni.machine_id = info.machine_id.clone();
    ni.system_uuid = info.system_uuid.clone();
    ni.boot_id = info.boot_id.clone();
    ni.swap = Some(NodeSwapStatus {
        capacity: Some(i64::try_from(info.swap_capacity).unwrap_or(i64::MAX)),
    });
    let cap = capacity_milli(info, max_pods);
    let alloc = allocatable_milli(&cap, reservation);
    let st = status(node);
    st.capacity = Some(to_quantities(&cap));
    st.allocatable = Some(to_quantities(&alloc));
}

/// VersionInfo: kernel, OS image, `<runtime name>://<version>` ("Unknown" when the
/// Version call failed) and the kubelet version.
pub fn version_info(
    node: &mut Node,
    info: &MachineInfo,
    runtime: Option<&RuntimeVersion>,
    runtime_type: &str,
    kubelet_version: &str,
) {
    let ni = node_info(node);
    ni.kernel_version = info.kernel_version.clone();
    ni.os_image = info.os_image.clone();
    let (name, version) = match runtime {
        Some(r) => (r.name.as_str(), r.version.as_str()),
        None => (runtime_type, "Unknown"),
    };
    ni.container_runtime_version = format!("{name}://{version}");
    ni.kubelet_version = kubelet_version.to_string();
    // Deprecated upstream and left empty since 1.31.
    ni.kube_proxy_version = String::new();
}

/// DaemonEndpoints: the port the kubelet API listens on.
pub fn daemon_endpoints(node: &mut Node, kubelet_port: i32) {
    status(node).daemon_endpoints = Some(NodeDaemonEndpoints {
        kubelet_endpoint: Some(DaemonEndpoint { port: kubelet_port }),
    });
}

/// GoRuntime: the OS and architecture, in Go's names.
pub fn go_runtime(node: &mut Node) {
    let ni = node_info(node);
    ni.operating_system = GOOS.to_string();
    ni.architecture = go_arch().to_string();
}

/// The OS as Go's GOOS names it.
pub const GOOS: &str = "linux";

/// This build's architecture as Go's GOARCH names it (the `kubernetes.io/arch` label).
pub fn go_arch() -> &'static str {
    go_arch_of(std::env::consts::ARCH)
}

fn go_arch_of(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> MachineInfo {
        MachineInfo {
            num_cores: 2,
            memory_capacity: 8_148_312_064,
            swap_capacity: 0,
            hugepages: vec![
                HugePages {
                    page_size_kib: 2048,
                    num_pages: 0,
                },
                HugePages {
                    page_size_kib: 1024 * 1024,
                    num_pages: 1,
                },
            ],
            rootfs_capacity: Some(100 * 1024 * 1024 * 1024),
            machine_id: "m1".into(),
            system_uuid: "u1".into(),
            boot_id: "b1".into(),
            kernel_version: "6.1.0-18-amd64".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        }
    }

    #[test]
    fn addresses_are_the_node_ip_then_the_hostname() {
        let mut n = Node::default();
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        node_address(&mut n, &ips, "n1").unwrap();
        let a = n.status.unwrap().addresses.unwrap();
        let got: Vec<_> = a
            .iter()
            .map(|a| (a.type_.as_str(), a.address.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("InternalIP", "10.0.0.5"),
                ("InternalIP", "fd00::5"),
                ("Hostname", "n1")
            ]
        );
    }

    #[test]
    fn a_second_ip_of_the_same_family_is_not_an_address() {
        let mut n = Node::default();
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()];
        node_address(&mut n, &ips, "n1").unwrap();
        assert_eq!(n.status.unwrap().addresses.unwrap().len(), 2);
    }

    #[test]
    fn no_address_is_an_error_naming_the_node() {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        let e = node_address(&mut n, &[], "n1").unwrap_err();
        assert!(e.to_string().starts_with("can't get ip address of node n1"));
    }

    #[test]
    fn capacity_and_allocatable() {
        let mut n = Node::default();
        machine_info(&mut n, &info(), 110, &Reservation::default());
        let st = n.status.unwrap();
        let cap = st.capacity.unwrap();
        let q = |m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                 k: &str| m[k].0.clone();
        assert_eq!(q(&cap, "cpu"), "2");
        assert_eq!(q(&cap, "memory"), "7957336Ki");
        assert_eq!(q(&cap, "pods"), "110");
        assert_eq!(q(&cap, "ephemeral-storage"), "100Gi");
        assert_eq!(q(&cap, "hugepages-2Mi"), "0");
        assert_eq!(q(&cap, "hugepages-1Gi"), "1Gi");
        let alloc = st.allocatable.unwrap();
        // memory - 100Mi - 1Gi of huge pages
        assert_eq!(
            q(&alloc, "memory"),
            format!("{}Ki", 7_957_336 - 102_400 - 1_048_576)
        );
        let ni = st.node_info.unwrap();
        assert_eq!(
            (
                ni.machine_id.as_str(),
                ni.system_uuid.as_str(),
                ni.boot_id.as_str()
            ),
            ("m1", "u1", "b1")
        );
        assert_eq!(ni.swap.unwrap().capacity, Some(0));
    }

    #[test]
    fn no_root_fs_means_no_ephemeral_storage() {
        let mut i = info();
        i.rootfs_capacity = None;
        assert!(!capacity_milli(&i, 110).contains_key("ephemeral-storage"));
    }

    #[test]
    fn runtime_version_as_name_scheme() {
        let mut n = Node::default();
        let rv = RuntimeVersion {
            name: "containerd".into(),
            version: "1.6.20".into(),
        };
        version_info(&mut n, &info(), Some(&rv), "containerd", "v1.35.0");
        let ni = n.status.as_ref().unwrap().node_info.as_ref().unwrap();
        assert_eq!(ni.container_runtime_version, "containerd://1.6.20");
        assert_eq!(ni.kubelet_version, "v1.35.0");
        assert_eq!(ni.os_image, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(ni.kernel_version, "6.1.0-18-amd64");
        version_info(&mut n, &info(), None, "berth", "v1.35.0");
        let ni = n.status.as_ref().unwrap().node_info.as_ref().unwrap();
        assert_eq!(ni.container_runtime_version, "berth://Unknown");
    }

    #[test]
    fn endpoints_and_go_names() {
        let mut n = Node::default();
        daemon_endpoints(&mut n, 10250);
        go_runtime(&mut n);
        let st = n.status.unwrap();
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
        assert_eq!(st.node_info.as_ref().unwrap().operating_system, "linux");
        assert_eq!(go_arch_of("x86_64"), "amd64");
        assert_eq!(go_arch_of("aarch64"), "arm64");
        assert_eq!(go_arch_of("s390x"), "s390x");
    }
}
