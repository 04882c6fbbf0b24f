//! What is left of a pod whose holder died (SIGKILL, the OOM killer, a crash) without a
//! Shutdown: the containers' records it wrote under `<state dir>/pods/<id>/containers`,
//! their OCI state, cgroups and, possibly, processes that outlived it.
//!
//! The daemon finishes them as containerd 1.6 finishes the containers of a pod whose shim
//! died (the shim's `delete` runs `runc delete --force`; the CRI plugin, whose wait on the
//! task failed, records exit code 255 at the time it noticed): whatever still runs of a
//! container is killed, and a container not yet recorded as exited is recorded exited
//! with 255 now. A container whose exit the holder recorded before it died keeps that
//! exit. The record stays, so the exit code and time read the same on every later call
//! and after a daemon restart.
//!
//! Callers check first that the holder is dead (its pid and start time no longer match a
//! live process): nothing here may run beside a live holder, which owns these files.

use std::path::Path;
use std::sync::Mutex;

use nix::sys::signal::Signal;

use super::{ContainerInfo, ContainerState, ExitInfo, PodDir, now_ns};
use crate::store::{Durability, write_file};

/// The exit a container is given when its holder died before recording one: unknown,
/// 255, as containerd's CRI plugin records a container whose task it lost.
pub const LOST_EXIT: ExitInfo = ExitInfo {
    code: 255,
    signal: None,
    oom_killed: false,
};

/// Two requests finishing the same dead pod at once would record two exit times.
static FINISHING: Mutex<()> = Mutex::new(());

/// The containers' records the holder of `pod_id` left; none when its pod directory is
/// gone (a holder that shut down removes it).
pub fn records(state_dir: &Path, pod_id: &str) -> Vec<ContainerInfo> {
    let Ok(pod) = PodDir::new(state_dir, pod_id) else {
        return vec![];
    };
    let Ok(rd) = std::fs::read_dir(pod.records()) else {
        return vec![];
    };
    let mut out: Vec<ContainerInfo> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            match serde_json::from_slice(&bytes) {
                Ok(info) => Some(info),
                Err(err) => {
                    tracing::warn!(sandbox = pod_id, path = %e.path().display(), error = %err,
                        "unreadable container record of a dead holder");
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Finishes every container of the dead holder of `pod_id` (see the module doc); returns
/// their records as they now are.
pub fn finish(state_dir: &Path, pod_id: &str) -> Vec<ContainerInfo> {
    let _one = FINISHING.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(pod) = PodDir::new(state_dir, pod_id) else {
        return vec![];
    };
    let mut infos = records(state_dir, pod_id);
    if infos.iter().all(|i| i.state == ContainerState::Exited) {
        return infos;
    }
    let rt = crate::oci::Runtime::new(pod.oci_root());
    for info in infos
        .iter_mut()
        .filter(|i| i.state != ContainerState::Exited)
    {
        kill_leftovers(&rt, pod_id, &info.id);
        info.state = ContainerState::Exited;
        info.pid = 0;
        info.finished_at = now_ns();
        info.exit = Some(LOST_EXIT);
        let path = pod.records().join(format!("{}.json", info.id));
        let written = serde_json::to_vec(&*info)
            .map_err(std::io::Error::other)
            .and_then(|b| write_file(&path, &b, Durability::Replace));
        if let Err(e) = written {
            tracing::warn!(sandbox = pod_id, container = %info.id, error = %e,
                "record the exit of a container whose holder died");
        }
        tracing::info!(sandbox = pod_id, container = %info.id,
            "container finished: its holder is gone");
    }
    infos
}

/// SIGKILLs what is left of container `id`: every process of its cgroup, or its init when
/// it has none (and only while the recorded pid is still that process).
fn kill_leftovers(rt: &crate::oci::Runtime, pod_id: &str, id: &str) {
    let Ok(st) = rt.state(id) else {
        return;
    };
    if st.cgroup.is_none() && !st.init_alive() {
        return;
    }
    if let Err(e) = rt.kill(id, Signal::SIGKILL, true) {
        tracing::warn!(sandbox = pod_id, container = id, error = %e,
            "kill what is left of a container whose holder died");
    }
}

/// Removes container `id` of the dead holder of `pod_id`: its processes, cgroup and OCI
/// state (as `runc delete --force`), then its record. A container already gone is no error.
pub fn remove_container(state_dir: &Path, pod_id: &str, id: &str) -> std::io::Result<()> {
    let Ok(pod) = PodDir::new(state_dir, pod_id) else {
        return Ok(());
    };
    let rt = crate::oci::Runtime::new(pod.oci_root());
    if rt.state(id).is_ok() {
        rt.delete(id, true).map_err(std::io::Error::other)?;
    }
    match std::fs::remove_file(pod.records().join(format!("{id}.json"))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, state: ContainerState, exit: Option<ExitInfo>) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            state,
            pid: 0,
            created_at: 1,
            started_at: if state == ContainerState::Created {
                0
            } else {
                2
            },
            finished_at: if exit.is_some() { 3 } else { 0 },
            exit,
            log_path: None,
            start_error: None,
        }
    }

    /// A dead holder's records: the exited one keeps its exit, the others are finished
    /// once with 255 (their OCI state is gone here, so there is nothing to kill), and a
    /// second pass changes nothing.
    #[test]
    fn finishes_what_a_dead_holder_left_once() {
        let state = std::env::temp_dir().join(format!("berth-dead-unit-{}", std::process::id()));
        let pod = PodDir::new(&state, "p1").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(pod.records()).unwrap_or_else(|e| panic!("{e}"));
        let three = ExitInfo {
            code: 3,
            signal: None,
            oom_killed: false,
        };
        for i in [
            info("a", ContainerState::Exited, Some(three)),
            info("b", ContainerState::Running, None),
            info("c", ContainerState::Created, None),
        ] {
            let b = serde_json::to_vec(&i).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(pod.records().join(format!("{}.json", i.id)), b)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let first = finish(&state, "p1");
        let by_id = |v: &[ContainerInfo], id: &str| {
            v.iter()
                .find(|i| i.id == id)
                .cloned()
                .unwrap_or_else(|| panic!("{id} missing"))
        };
        assert_eq!(by_id(&first, "a").exit, Some(three));
        assert_eq!(by_id(&first, "a").finished_at, 3);
        for id in ["b", "c"] {
            let i = by_id(&first, id);
            assert_eq!(
                (i.state, i.exit, i.pid),
                (ContainerState::Exited, Some(LOST_EXIT), 0)
            );
            assert!(i.finished_at > 3, "{i:?}");
        }
        let second = finish(&state, "p1");
        assert_eq!(first, second, "recorded, not made up per call");
        assert_eq!(records(&state, "p1"), second);
        remove_container(&state, "p1", "b").unwrap_or_else(|e| panic!("{e}"));
        remove_container(&state, "p1", "b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(records(&state, "p1").len(), 2);
        assert!(finish(&state, "gone").is_empty(), "no pod dir: nothing");
        let _ = std::fs::remove_dir_all(&state);
    }
}
