//! What `berth run` prints: the live table, or each changed pod's status object as JSON
//! lines or YAML documents (a pod that is gone is printed once more with its
//! deletionTimestamp, as a watch shows a deletion), or nothing but logs.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast;

use super::Output;
use super::view;
use crate::kubelet::events::Event;
use crate::kubelet::status::store::StatusStore;

/// Shows the pods until the task is aborted.
pub async fn show(output: Output, store: Arc<StatusStore>, mut events: broadcast::Receiver<Event>) {
    let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last_table = String::new();
    let mut changes = store.watch();
    let mut printed: BTreeMap<String, Pod> = BTreeMap::new();
    let mut last_event: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            ev = events.recv() => match ev {
                Ok(e) => {
                    last_event.insert(e.object.uid.clone(), format!("{}: {}", e.reason, e.message));
                    if output != Output::Table {
                        continue;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // Only a live table redraws by the clock (its AGE column).
            _ = tick.tick() => if output != Output::Table || !live { continue },
        }
        let pods = store.snapshot();
        match output {
            Output::Log => {}
            Output::Table if live => view::draw(&pods, &last_event),
            Output::Table => {
                // Not a terminal: a new table whenever the pods change, as `kubectl get
                // -w` prints, with nothing to erase.
                let table = view::format(&view::rows(&pods, &last_event));
                if table != last_table {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{table}");
                    let _ = out.flush();
                    last_table = table;
                }
            }
            Output::Json | Output::Yaml => {
                let mut out = std::io::stdout().lock();
                for (uid, v) in &pods {
                    if printed.get(uid) != Some(&v.pod) {
                        print_pod(&mut out, output, &v.pod);
                        printed.insert(uid.clone(), v.pod.clone());
                    }
                }
                let gone: Vec<String> = printed
                    .keys()
                    .filter(|u| !pods.contains_key(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(mut p) = printed.remove(&uid) {
                        p.metadata.deletion_timestamp = Some(crate::kubelet::status::now());
                        print_pod(&mut out, output, &p);
                    }
                }
                let _ = out.flush();
            }
        }
    }
}

fn print_pod(out: &mut impl Write, output: Output, pod: &Pod) {
    let r = match output {
        Output::Json => serde_json::to_string(pod)
            .map_err(|e| e.to_string())
            .and_then(|s| writeln!(out, "{s}").map_err(|e| e.to_string())),
        _ => serde_yaml_ng::to_string(pod)
            .map_err(|e| e.to_string())
            .and_then(|s| write!(out, "---\n{s}").map_err(|e| e.to_string())),
    };
    if let Err(e) = r {
        tracing::warn!("print a pod's status: {e}");
    }
}
