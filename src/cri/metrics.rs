//! The CRI metrics calls (`ListMetricDescriptors`, `ListPodSandboxMetrics`): a reading of
//! the pods ([`PodSample`]) as the `container_*` series kubelet serves on
//! `/metrics/cadvisor`, with cAdvisor's names, help texts and types. kubelet serves them
//! from here when its `PodAndContainerStatsFromCRI` gate is on.
//!
//! Labels: every series carries the label set kubelet's cAdvisor series carry
//! (`container`, `id` = the cgroup path, `image`, `name` = the runtime's id, `namespace`,
//! `pod`), then the metric's own keys (`device`, `interface`, `failure_type` and
//! `scope`, `ulimit`). Each metric's label values match its descriptor's keys one for one:
//! kubelet builds a Prometheus constant metric from the pair and drops one whose counts
//! differ. The pod's network series are the sandbox's (`container="POD"`), as cAdvisor
//! reports them on the pause container.
//!
//! The CRI carries integers: seconds are whole seconds (as containerd reports them). A
//! value the host cannot provide is left out, never reported as 0.

use cri_proto::v1 as cri;

use crate::runtime::stats::{ContainerSample, PodSample};

/// Label keys every series starts with.
const BASE: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

use cri::MetricType::{Counter, Gauge};

/// (name, help, type, label keys after [`BASE`]) of every metric berth reports.
const METRICS: &[(&str, &str, cri::MetricType, &[&str])] = &[
    (
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        Counter,
        &[],
    ),
    (
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        Counter,
        &[],
    ),
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        Counter,
        &[],
    ),
    (
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        Counter,
        &[],
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        Counter,
        &[],
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        Counter,
        &[],
    ),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        Gauge,
        &[],
    ),
    ("container_memory_rss", "Size of RSS in bytes.", Gauge, &[]),
    (
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        Gauge,
        &[],
    ),
    (
        "container_memory_swap",
        "Container swap usage in bytes.",
        Gauge,
        &[],
    ),
    (
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        Counter,
        &[],
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        Gauge,
        &[],
    ),
    (
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        Gauge,
        &[],
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        Gauge,
        &[],
    ),
    (
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        Counter,
        &["failure_type", "scope"],
    ),
    (
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        Counter,
        &[],
    ),
    (
        "container_fs_inodes_free",
        "Number of available Inodes",
        Gauge,
        &["device"],
    ),
    (
        "container_fs_inodes_total",
        "Number of Inodes",
        Gauge,
        &["device"],
    ),
    (
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        Gauge,
        &["device"],
    ),
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        Gauge,
        &["device"],
    ),
    (
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        Counter,
        &["device"],
    ),
    (
        "container_fs_reads_total",
        "Cumulative count of reads completed",
        Counter,
        &["device"],
    ),
    (
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        Counter,
        &["device"],
    ),
    (
        "container_fs_writes_total",
        "Cumulative count of writes completed",
        Counter,
        &["device"],
    ),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        Counter,
        &["interface"],
    ),
    (
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        Counter,
        &["interface"],
    ),
    (
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        Counter,
        &["interface"],
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        Counter,
        &["interface"],
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        Counter,
        &["interface"],
    ),
    (
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        Counter,
        &["interface"],
    ),
    (
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        Counter,
        &["interface"],
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        Counter,
        &["interface"],
    ),
    (
        "container_processes",
        "Number of processes running inside the container.",
        Gauge,
        &[],
    ),
    (
        "container_threads",
        "Number of threads running inside the container",
        Gauge,
        &[],
    ),
    (
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        Gauge,
        &[],
    ),
    (
        "container_sockets",
        "Number of open sockets for the container.",
        Gauge,
        &[],
    ),
    (
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
        Gauge,
        &[],
    ),
    (
        "container_ulimits_soft",
        "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice",
        Gauge,
        &["ulimit"],
    ),
    (
        "container_spec_cpu_period",
        "CPU period of the container.",
        Gauge,
        &[],
    ),
    (
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        Gauge,
        &[],
    ),
    (
        "container_spec_cpu_shares",
        "CPU share of the container.",
        Gauge,
        &[],
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        Gauge,
        &[],
    ),
    (
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation limit for the container.",
        Gauge,
        &[],
    ),
    (
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        Gauge,
        &[],
    ),
    (
        "container_last_seen",
        "Last time a container was seen by the exporter",
        Gauge,
        &[],
    ),
    (
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        Gauge,
        &[],
    ),
];

/// ListMetricDescriptors' answer.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    METRICS
        .iter()
        .map(|(name, help, _, extra)| cri::MetricDescriptor {
            name: (*name).into(),
            help: (*help).into(),
            label_keys: BASE
                .iter()
                .chain(extra.iter())
                .map(|k| (*k).to_string())
                .collect(),
        })
        .collect()
}

/// Above this a limit means "none" (the kernel rounds "unlimited" to a page multiple
/// below i64::MAX); cAdvisor reports such a spec limit as 0.
const UNLIMITED: u64 = 1 << 62;

fn limit(v: u64) -> u64 {
    if v > UNLIMITED { 0 } else { v }
}

const NS: u64 = 1_000_000_000;

/// Collects the metrics of one object (a container, or the pod's sandbox).
struct Out<'a> {
    base: [String; 6],
    timestamp: i64,
    metrics: &'a mut Vec<cri::Metric>,
}

impl Out<'_> {
    fn push(&mut self, name: &'static str, extra: &[&str], value: u64) {
        let kind = METRICS.iter().find(|m| m.0 == name).map_or(Gauge, |m| m.2);
        let mut labels = self.base.to_vec();
        labels.extend(extra.iter().map(|s| (*s).to_owned()));
        self.metrics.push(cri::Metric {
            name: name.into(),
            timestamp: self.timestamp,
            metric_type: kind as i32,
            label_values: labels,
            value: Some(cri::UInt64Value { value }),
        });
    }

    fn opt(&mut self, name: &'static str, value: Option<u64>) {
        if let Some(v) = value {
            self.push(name, &[], v);
        }
    }
}

fn container_metrics(pod: &PodSample, c: &ContainerSample) -> cri::ContainerMetrics {
    let mut metrics = Vec::new();
    let mut o = Out {
        base: [
            c.who.name.clone(),
            c.cgroup_path.clone(),
            c.who.image.clone(),
            c.who.id.clone(),
            pod.namespace.clone(),
            pod.name.clone(),
        ],
        timestamp: pod.timestamp,
        metrics: &mut metrics,
    };
    o.push(
        "container_last_seen",
        &[],
        (pod.timestamp.max(0) as u64) / NS,
    );
    if c.who.created_at > 0 {
        o.push(
            "container_start_time_seconds",
            &[],
            c.who.created_at as u64 / NS,
        );
    }
    if let Some(d) = &c.cgroup {
        o.opt(
            "container_cpu_usage_seconds_total",
            d.base.cpu_usage_ns.map(|v| v / NS),
        );
        o.opt(
            "container_cpu_user_seconds_total",
            d.cpu_user_ns.map(|v| v / NS),
        );
        o.opt(
            "container_cpu_system_seconds_total",
            d.cpu_system_ns.map(|v| v / NS),
        );
        if let Some(t) = d.throttling {
            o.push("container_cpu_cfs_periods_total", &[], t.periods);
            o.push(
                "container_cpu_cfs_throttled_periods_total",
                &[],
                t.throttled_periods,
            );
            o.push(
                "container_cpu_cfs_throttled_seconds_total",
                &[],
                t.throttled_ns / NS,
            );
        }
        o.opt("container_spec_cpu_period", d.cpu_spec.period_us);
        o.opt("container_spec_cpu_quota", d.cpu_spec.quota_us);
        o.opt("container_spec_cpu_shares", d.cpu_spec.shares);
        if let Some(m) = &d.base.memory {
            o.push("container_memory_usage_bytes", &[], m.usage);
            o.push(
                "container_memory_working_set_bytes",
                &[],
                m.usage.saturating_sub(m.inactive_file),
            );
            o.push("container_memory_rss", &[], m.rss);
            o.opt("container_memory_swap", m.swap_usage);
            o.push(
                "container_spec_memory_limit_bytes",
                &[],
                m.limit.map_or(0, limit),
            );
            o.opt(
                "container_spec_memory_swap_limit_bytes",
                m.swap_limit.map(limit),
            );
            // Faults of the whole hierarchy, then of the cgroup's own tasks.
            for (kind, scope, v) in [
                ("pgfault", "hierarchy", m.page_faults),
                ("pgmajfault", "hierarchy", m.major_page_faults),
            ] {
                o.push("container_memory_failures_total", &[kind, scope], v);
            }
        }
        if let Some(m) = &d.memory {
            o.push("container_memory_cache", &[], m.cache);
            o.push("container_memory_mapped_file", &[], m.mapped_file);
            o.opt("container_memory_max_usage_bytes", m.max_usage);
            o.opt("container_memory_failcnt", m.failcnt);
            o.opt("container_oom_events_total", m.oom_kills);
            o.opt(
                "container_spec_memory_reservation_limit_bytes",
                m.reservation.map(limit),
            );
            for (kind, v) in [("pgfault", m.pgfault), ("pgmajfault", m.pgmajfault)] {
                o.push("container_memory_failures_total", &[kind, "container"], v);
            }
        }
        // cgroup.procs lists processes; pids.current counts threads too.
        o.opt(
            "container_processes",
            d.pids.as_ref().map(|p| p.len() as u64),
        );
        o.opt("container_threads", d.threads);
        o.opt("container_threads_max", d.pids_max.map(|m| m.unwrap_or(0)));
        for (dev, io) in &c.io {
            o.push("container_fs_reads_bytes_total", &[dev], io.read_bytes);
            o.push("container_fs_reads_total", &[dev], io.reads);
            o.push("container_fs_writes_bytes_total", &[dev], io.write_bytes);
            o.push("container_fs_writes_total", &[dev], io.writes);
        }
    }
    if let Some(f) = c.fds {
        o.push("container_file_descriptors", &[], f.fds);
        o.push("container_sockets", &[], f.sockets);
    }
    // The CRI value is unsigned: "unlimited" (-1) cannot be carried and is left out.
    if let Some(n) = c.max_open_files.and_then(|n| u64::try_from(n).ok()) {
        o.push("container_ulimits_soft", &["max_open_files"], n);
    }
    if let Some(f) = &c.fs {
        let dev = f.device.as_str();
        o.push("container_fs_usage_bytes", &[dev], f.usage_bytes);
        o.push("container_fs_limit_bytes", &[dev], f.limit_bytes);
        o.push("container_fs_inodes_total", &[dev], f.inodes_total);
        o.push("container_fs_inodes_free", &[dev], f.inodes_free);
    }
    cri::ContainerMetrics {
        container_id: c.who.id.clone(),
        metrics,
    }
}

/// ListPodSandboxMetrics' answer.
pub fn pod_metrics(pods: &[PodSample]) -> Vec<cri::PodSandboxMetrics> {
    pods.iter()
        .map(|p| {
            let mut metrics = Vec::new();
            let mut o = Out {
                base: [
                    "POD".into(),
                    p.cgroup_path.clone(),
                    String::new(),
                    p.id.clone(),
                    p.namespace.clone(),
                    p.name.clone(),
                ],
                timestamp: p.timestamp,
                metrics: &mut metrics,
            };
            for i in &p.interfaces {
                let n = [i.name.as_str()];
                o.push("container_network_receive_bytes_total", &n, i.rx_bytes);
                o.push("container_network_receive_packets_total", &n, i.rx_packets);
                o.push(
                    "container_network_receive_packets_dropped_total",
                    &n,
                    i.rx_dropped,
                );
                o.push("container_network_receive_errors_total", &n, i.rx_errors);
                o.push("container_network_transmit_bytes_total", &n, i.tx_bytes);
                o.push("container_network_transmit_packets_total", &n, i.tx_packets);
                o.push(
                    "container_network_transmit_packets_dropped_total",
                    &n,
                    i.tx_dropped,
                );
                o.push("container_network_transmit_errors_total", &n, i.tx_errors);
            }
            cri::PodSandboxMetrics {
                pod_sandbox_id: p.id.clone(),
                metrics,
                container_metrics: p
                    .containers
                    .iter()
                    .map(|c| container_metrics(p, c))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::stats::{
        ContainerIdentity, Detail, DeviceIo, FdCounts, FsUsage, InterfaceCounters, MemoryDetail,
        RawMemory, RawStats, Throttling,
    };

    fn sample() -> PodSample {
        let detail = Detail {
            base: RawStats {
                cpu_usage_ns: Some(2_600_000_000),
                memory: Some(RawMemory {
                    usage: 1000,
                    limit: Some(9_223_372_036_854_771_712),
                    inactive_file: 300,
                    rss: 500,
                    page_faults: 9,
                    major_page_faults: 1,
                    swap_usage: Some(0),
                    swap_limit: Some(9_223_372_036_854_771_712),
                }),
                pids: Some(3),
            },
            cpu_user_ns: Some(2_100_000_000),
            cpu_system_ns: Some(500_000_000),
            throttling: Some(Throttling {
                periods: 40,
                throttled_periods: 38,
                throttled_ns: 1_900_000_000,
            }),
            memory: Some(MemoryDetail {
                oom_kills: Some(1),
                failcnt: Some(4),
                ..Default::default()
            }),
            pids_max: Some(None),
            pids: Some(vec![7, 8]),
            threads: Some(5),
            ..Default::default()
        };
        PodSample {
            id: "sb1".into(),
            name: "web".into(),
            namespace: "default".into(),
            cgroup_path: "/kubepods/podu1".into(),
            interfaces: vec![InterfaceCounters {
                name: "eth0".into(),
                tx_packets: 5,
                tx_bytes: 5210,
                ..Default::default()
            }],
            containers: vec![ContainerSample {
                who: ContainerIdentity {
                    id: "c1".into(),
                    name: "app".into(),
                    image: "busybox:1".into(),
                    created_at: 1_700_000_000_500_000_000,
                },
                cgroup_path: "/kubepods/podu1/c1".into(),
                cgroup: Some(detail),
                fds: Some(FdCounts { fds: 4, sockets: 1 }),
                max_open_files: Some(1024),
                fs: Some(FsUsage {
                    device: "/dev/vda".into(),
                    usage_bytes: 4096,
                    ..Default::default()
                }),
                io: vec![(
                    "/dev/vda".into(),
                    DeviceIo {
                        major: 254,
                        write_bytes: 1 << 20,
                        writes: 8,
                        ..Default::default()
                    },
                )],
            }],
            timestamp: 1_700_000_100_000_000_000,
        }
    }

    fn find<'a>(all: &'a [&cri::Metric], name: &str) -> &'a cri::Metric {
        all.iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn every_metric_matches_its_descriptor() {
        let descs = descriptors();
        let out = pod_metrics(&[sample()]);
        let all: Vec<&cri::Metric> = out[0]
            .metrics
            .iter()
            .chain(out[0].container_metrics.iter().flat_map(|c| &c.metrics))
            .collect();
        for m in &all {
            let d = descs.iter().find(|d| d.name == m.name).unwrap();
            assert_eq!(d.label_keys.len(), m.label_values.len(), "{}", m.name);
            let kind = METRICS.iter().find(|x| x.0 == m.name).unwrap().2;
            assert_eq!(m.metric_type, kind as i32, "{}", m.name);
        }
        let cpu = find(&all, "container_cpu_usage_seconds_total");
        assert_eq!(
            cpu.label_values,
            [
                "app",
                "/kubepods/podu1/c1",
                "busybox:1",
                "c1",
                "default",
                "web"
            ]
        );
        assert_eq!(cpu.value.as_ref().unwrap().value, 2);
        let thr = find(&all, "container_cpu_cfs_throttled_seconds_total");
        assert_eq!(thr.value.as_ref().unwrap().value, 1);
        assert_eq!(
            find(&all, "container_start_time_seconds")
                .value
                .unwrap()
                .value,
            1_700_000_000
        );
        assert_eq!(
            find(&all, "container_last_seen").value.unwrap().value,
            1_700_000_100
        );
        // "unlimited" limits read as 0, as cAdvisor reports them.
        assert_eq!(
            find(&all, "container_spec_memory_limit_bytes")
                .value
                .unwrap()
                .value,
            0
        );
        assert_eq!(find(&all, "container_threads_max").value.unwrap().value, 0);
        assert_eq!(find(&all, "container_processes").value.unwrap().value, 2);
        assert_eq!(
            find(&all, "container_oom_events_total")
                .value
                .unwrap()
                .value,
            1
        );
        let w = find(&all, "container_fs_writes_bytes_total");
        assert_eq!(w.label_values.last().unwrap(), "/dev/vda");
        let u = find(&all, "container_ulimits_soft");
        assert_eq!(u.label_values.last().unwrap(), "max_open_files");
        let tx = find(&all, "container_network_transmit_packets_total");
        assert_eq!(
            tx.label_values,
            [
                "POD",
                "/kubepods/podu1",
                "",
                "sb1",
                "default",
                "web",
                "eth0"
            ]
        );
        assert_eq!(tx.value.unwrap().value, 5);
        let faults: Vec<_> = all
            .iter()
            .filter(|m| m.name == "container_memory_failures_total")
            .map(|m| (m.label_values[6].as_str(), m.label_values[7].as_str()))
            .collect();
        assert_eq!(faults.len(), 4, "{faults:?}");
        // Every descriptor is served but those whose source this reading lacks.
        let served: std::collections::BTreeSet<&str> =
            all.iter().map(|m| m.name.as_str()).collect();
        let missing: Vec<&str> = descs
            .iter()
            .map(|d| d.name.as_str())
            .filter(|n| !served.contains(n))
            .collect();
        assert_eq!(
            missing,
            [
                "container_memory_max_usage_bytes",
                "container_spec_cpu_period",
                "container_spec_cpu_quota",
                "container_spec_cpu_shares",
                "container_spec_memory_reservation_limit_bytes",
            ]
        );
    }

    #[test]
    fn what_was_not_read_is_left_out() {
        let mut p = sample();
        let c = &mut p.containers[0];
        c.cgroup = None;
        c.fds = None;
        c.fs = None;
        c.max_open_files = Some(-1);
        p.interfaces.clear();
        let out = pod_metrics(&[p]);
        assert!(out[0].metrics.is_empty());
        let names: Vec<&str> = out[0].container_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["container_last_seen", "container_start_time_seconds"]
        );
    }
}
