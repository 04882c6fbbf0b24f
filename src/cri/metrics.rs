//! The CRI metrics calls (`ListMetricDescriptors`, `ListPodSandboxMetrics`): the pod and
//! container stats as cAdvisor-named Prometheus metrics, which kubelet serves on
//! `/metrics/cadvisor` when its `PodAndContainerStatsFromCRI` gate is on.
//!
//! Each metric's label values match its descriptor's keys one for one (kubelet builds a
//! Prometheus constant metric from the pair and drops a metric whose counts differ).
//! The values are what the stats calls read from the cgroups and the pod's interfaces;
//! nothing here measures on its own.

use cri_proto::v1 as cri;

/// Label keys of a container's metrics.
const CONTAINER_LABELS: [&str; 4] = ["container", "pod", "namespace", "id"];
/// Label keys of a pod's network metrics (`id` is the sandbox's).
const NETWORK_LABELS: [&str; 4] = ["pod", "namespace", "id", "interface"];

/// (name, help, type, label keys) of every metric berth reports.
const METRICS: [(&str, &str, cri::MetricType, &[&str]); 8] = [
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        cri::MetricType::Counter,
        &CONTAINER_LABELS,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        cri::MetricType::Gauge,
        &CONTAINER_LABELS,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        cri::MetricType::Gauge,
        &CONTAINER_LABELS,
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes.",
        cri::MetricType::Gauge,
        &CONTAINER_LABELS,
    ),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        cri::MetricType::Counter,
        &NETWORK_LABELS,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        cri::MetricType::Counter,
        &NETWORK_LABELS,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        cri::MetricType::Counter,
        &NETWORK_LABELS,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        cri::MetricType::Counter,
        &NETWORK_LABELS,
    ),
];

/// ListMetricDescriptors' answer.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    METRICS
        .iter()
        .map(|(name, help, _, keys)| cri::MetricDescriptor {
            name: (*name).into(),
            help: (*help).into(),
            label_keys: keys.iter().map(|k| (*k).to_string()).collect(),
        })
        .collect()
}

fn metric(name: &'static str, timestamp: i64, labels: &[String], value: u64) -> cri::Metric {
    let kind = METRICS
        .iter()
        .find(|m| m.0 == name)
        .map_or(cri::MetricType::Gauge, |m| m.2);
    cri::Metric {
        name: name.into(),
        timestamp,
        metric_type: kind as i32,
        label_values: labels.to_vec(),
        value: Some(cri::UInt64Value { value }),
    }
}

fn val(v: Option<&cri::UInt64Value>) -> Option<u64> {
    v.map(|v| v.value)
}

/// A container's metrics from its stats; those the stats lack are left out.
fn container_metrics(
    c: &cri::ContainerStats,
    pod: &cri::PodSandboxMetadata,
) -> cri::ContainerMetrics {
    let attrs = c.attributes.clone().unwrap_or_default();
    let name = attrs.metadata.map(|m| m.name).unwrap_or_default();
    let labels = [
        name,
        pod.name.clone(),
        pod.namespace.clone(),
        attrs.id.clone(),
    ];
    let mut metrics = Vec::new();
    if let Some(cpu) = &c.cpu
        && let Some(ns) = val(cpu.usage_core_nano_seconds.as_ref())
    {
        // The CRI carries integers: whole seconds, as containerd reports them.
        metrics.push(metric(
            "container_cpu_usage_seconds_total",
            cpu.timestamp,
            &labels,
            ns / 1_000_000_000,
        ));
    }
    if let Some(m) = &c.memory {
        for (name, v) in [
            ("container_memory_usage_bytes", &m.usage_bytes),
            ("container_memory_working_set_bytes", &m.working_set_bytes),
            ("container_memory_rss", &m.rss_bytes),
        ] {
            if let Some(v) = val(v.as_ref()) {
                metrics.push(metric(name, m.timestamp, &labels, v));
            }
        }
    }
    cri::ContainerMetrics {
        container_id: attrs.id,
        metrics,
    }
}

/// ListPodSandboxMetrics' answer from ListPodSandboxStats' one.
pub fn pod_metrics(stats: &[cri::PodSandboxStats]) -> Vec<cri::PodSandboxMetrics> {
    stats
        .iter()
        .map(|s| {
            let attrs = s.attributes.clone().unwrap_or_default();
            let meta = attrs.metadata.clone().unwrap_or_default();
            let linux = s.linux.clone().unwrap_or_default();
            let mut metrics = Vec::new();
            if let Some(net) = &linux.network {
                // The stats name the default interface (eth0) apart from the others.
                for i in net.default_interface.iter().chain(&net.interfaces) {
                    let labels = [
                        meta.name.clone(),
                        meta.namespace.clone(),
                        attrs.id.clone(),
                        i.name.clone(),
                    ];
                    for (name, v) in [
                        ("container_network_receive_bytes_total", &i.rx_bytes),
                        ("container_network_receive_errors_total", &i.rx_errors),
                        ("container_network_transmit_bytes_total", &i.tx_bytes),
                        ("container_network_transmit_errors_total", &i.tx_errors),
                    ] {
                        if let Some(v) = val(v.as_ref()) {
                            metrics.push(metric(name, net.timestamp, &labels, v));
                        }
                    }
                }
            }
            cri::PodSandboxMetrics {
                pod_sandbox_id: attrs.id.clone(),
                metrics,
                container_metrics: linux
                    .containers
                    .iter()
                    .map(|c| container_metrics(c, &meta))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn u(v: u64) -> Option<cri::UInt64Value> {
        Some(cri::UInt64Value { value: v })
    }

    #[test]
    fn every_metric_has_as_many_labels_as_its_descriptor() {
        let pod = cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: "sb1".into(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                network: Some(cri::NetworkUsage {
                    timestamp: 5,
                    default_interface: Some(cri::NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: u(100),
                        rx_errors: u(0),
                        tx_bytes: u(200),
                        tx_errors: u(1),
                    }),
                    interfaces: vec![cri::NetworkInterfaceUsage {
                        name: "net1".into(),
                        ..Default::default()
                    }],
                }),
                containers: vec![cri::ContainerStats {
                    attributes: Some(cri::ContainerAttributes {
                        id: "c1".into(),
                        metadata: Some(cri::ContainerMetadata {
                            name: "app".into(),
                            attempt: 0,
                        }),
                        ..Default::default()
                    }),
                    cpu: Some(cri::CpuUsage {
                        timestamp: 7,
                        usage_core_nano_seconds: u(3_500_000_000),
                        ..Default::default()
                    }),
                    memory: Some(cri::MemoryUsage {
                        timestamp: 7,
                        working_set_bytes: u(10),
                        usage_bytes: u(20),
                        rss_bytes: u(5),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let descs = descriptors();
        let out = pod_metrics(&[pod]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pod_sandbox_id, "sb1");
        let all: Vec<&cri::Metric> = out[0]
            .metrics
            .iter()
            .chain(out[0].container_metrics.iter().flat_map(|c| &c.metrics))
            .collect();
        assert_eq!(all.len(), 8);
        for m in &all {
            let d = descs.iter().find(|d| d.name == m.name).unwrap();
            assert_eq!(d.label_keys.len(), m.label_values.len(), "{}", m.name);
        }
        let cpu = all
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.value.as_ref().unwrap().value, 3);
        assert_eq!(cpu.label_values, ["app", "web", "default", "c1"]);
        assert_eq!(cpu.metric_type, cri::MetricType::Counter as i32);
        let tx = all
            .iter()
            .find(|m| m.name == "container_network_transmit_bytes_total")
            .unwrap();
        assert_eq!(tx.label_values, ["web", "default", "sb1", "eth0"]);
        assert_eq!(tx.value.as_ref().unwrap().value, 200);
    }
}
