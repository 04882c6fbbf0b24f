//! The live table: `kubectl get pods -o wide` columns (STATUS computed as kubectl's
//! printPod computes it), plus each container's probe state and the pod's last event.

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::api::core::v1::Pod;

use crate::kubelet::status::store::PodView;

/// kubectl's STATUS column.
pub fn status_column(pod: &Pod) -> String {
    let st = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut reason = st.reason.clone().or(st.phase.clone()).unwrap_or_default();
    let inits = spec.init_containers.unwrap_or_default();
    let mut initializing = false;
    for (i, cs) in st.init_container_statuses.iter().flatten().enumerate() {
        let state = cs.state.clone().unwrap_or_default();
        let sidecar = inits
            .get(i)
            .is_some_and(|c| c.restart_policy.as_deref() == Some("Always"));
        if let Some(t) = &state.terminated
            && t.exit_code == 0
        {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match &t.reason {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for cs in st.container_statuses.iter().flatten().rev() {
            let state = cs.state.clone().unwrap_or_default();
            if let Some(r) = state.waiting.as_ref().and_then(|w| w.reason.clone()) {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match &t.reason {
                    Some(r) if !r.is_empty() => r.clone(),
                    _ => format!("ExitCode:{}", t.exit_code),
                };
            } else if state.running.is_some() && cs.ready {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = st
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    reason
}

fn ready_column(pod: &Pod) -> String {
    let st = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let sidecars: Vec<String> = spec
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name)
        .collect();
    let mut total = spec.containers.len() + sidecars.len();
    let mut ready = st
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| c.ready)
        .count();
    ready += st
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name) && c.ready)
        .count();
    total = total.max(ready);
    format!("{ready}/{total}")
}

fn restarts(pod: &Pod) -> i32 {
    let st = pod.status.clone().unwrap_or_default();
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum()
}

fn age(pod: &Pod) -> String {
    let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.clone()) else {
        return "-".into();
    };
    let now = crate::kubelet::status::now();
    let secs = (now.0.as_second() - start.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The table's rows (a header first).
pub fn rows(
    pods: &BTreeMap<String, PodView>,
    events: &BTreeMap<String, String>,
) -> Vec<Vec<String>> {
    let mut out = vec![
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "PROBES",
            "LAST EVENT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    let mut list: Vec<&PodView> = pods.values().collect();
    list.sort_by(|a, b| {
        (&a.pod.metadata.namespace, &a.pod.metadata.name)
            .cmp(&(&b.pod.metadata.namespace, &b.pod.metadata.name))
    });
    for v in list {
        let p = &v.pod;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let probes = if v.probes.is_empty() {
            "-".to_string()
        } else {
            v.probes
                .iter()
                .map(|(c, w)| format!("{c}:{w}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut ev = events.get(&uid).cloned().unwrap_or_else(|| "-".into());
        if ev.chars().count() > 60 {
            ev = ev.chars().take(57).collect::<String>() + "...";
        }
        out.push(vec![
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
            ready_column(p),
            status_column(p),
            restarts(p).to_string(),
            age(p),
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_else(|| "<none>".into()),
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<none>".into()),
            probes,
            ev,
        ]);
    }
    out
}

/// Formats rows into aligned columns, kubectl style.
pub fn format(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        s.push_str(line.join("   ").trim_end());
        s.push('\n');
    }
    s
}

/// Redraws the table from the top of the screen.
pub fn draw(pods: &BTreeMap<String, PodView>, events: &BTreeMap<String, String>) {
    let table = format(&rows(pods, events));
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\x1b[H\x1b[2J{table}");
    let _ = out.flush();
}

/// Leaves the table on screen as it last was.
pub fn leave() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out);
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn status_column_reads_as_kubectl() {
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "image": "", "imageID": "",
                "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        }));
        assert_eq!(status_column(&p), "CrashLoopBackOff");
        assert_eq!(restarts(&p), 3);
        let p = pod(serde_json::json!({
            "spec": {"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "j", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"running": {}}}]}
        }));
        assert_eq!(status_column(&p), "Init:1/2");
        assert_eq!(ready_column(&p), "0/1");
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "image": "", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        }));
        assert_eq!(status_column(&p), "Completed");
    }

    #[test]
    fn columns_align() {
        let s = format(&[
            vec!["NAME".into(), "READY".into()],
            vec!["web-node".into(), "1/1".into()],
        ]);
        assert_eq!(s, "NAME       READY\nweb-node   1/1\n");
    }
}
