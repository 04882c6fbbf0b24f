//! ContainerStatus and ListContainers: the record (what was asked for) joined with the
//! holder's view (what happened).

use std::collections::HashMap;

use cri_proto::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState as CriState,
    ContainerStatus, ContainerUser, ImageSpec, LinuxContainerUser,
};

use super::Containers;
use crate::runtime::error::{Result, RuntimeError};
use crate::runtime::holder::{ContainerInfo, ContainerState, dead};
use crate::runtime::meta::{ContainerRecord, ProcessUser, container_matches, labels_match};

fn cri_state(info: Option<&ContainerInfo>) -> CriState {
    match info.map(|i| i.state) {
        Some(ContainerState::Created) => CriState::ContainerCreated,
        Some(ContainerState::Running) => CriState::ContainerRunning,
        Some(ContainerState::Exited) => CriState::ContainerExited,
        None => CriState::ContainerUnknown,
    }
}

/// A container whose holder is gone and left no record of it (the pod was removed
/// under it): exited, with the exit code containerd gives a container whose task it
/// lost (255); when is not known, so its creation time stands for it.
fn lost(rec: &ContainerRecord) -> ContainerInfo {
    ContainerInfo {
        id: rec.id.clone(),
        state: ContainerState::Exited,
        pid: 0,
        created_at: rec.created_at,
        started_at: 0,
        finished_at: rec.created_at,
        exit: Some(dead::LOST_EXIT),
        log_path: None,
        start_error: None,
    }
}

/// containerd's reasons: StartError (its program could not run), OOMKilled, Completed
/// (exit 0) or Error.
fn reason(info: &ContainerInfo) -> &'static str {
    if info.start_error.is_some() && info.state == ContainerState::Exited {
        return "StartError";
    }
    match info.exit {
        Some(e) if e.oom_killed => "OOMKilled",
        Some(e) if e.code == 0 => "Completed",
        Some(_) => "Error",
        None => "",
    }
}

/// containerd 2.x's toCRIContainerUser: the spec's process user.
fn cri_user(u: &ProcessUser) -> ContainerUser {
    ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: u.uid.into(),
            gid: u.gid.into(),
            supplemental_groups: u.groups.iter().map(|&g| g.into()).collect(),
        }),
    }
}

impl Containers {
    /// The holder's view of one container; `None` when the holder cannot tell. A
    /// container whose holder is gone reads as exited ([`Containers::dead_infos`]).
    async fn info(&self, rec: &ContainerRecord) -> Option<ContainerInfo> {
        if self.inner.sandboxes.holder_gone(&rec.sandbox_id) {
            let mut dead = self.dead_infos(&rec.sandbox_id).await;
            return Some(dead.remove(&rec.id).unwrap_or_else(|| lost(rec)));
        }
        let sb = self.inner.sandboxes.get(&rec.sandbox_id).ok()?;
        let id = rec.id.clone();
        self.inner
            .sandboxes
            .with_holder(&sb, move |c| c.container_state(&id))
            .await
            .ok()
    }

    /// The holder's view of every container of one sandbox.
    async fn infos(&self, sandbox_id: &str) -> HashMap<String, ContainerInfo> {
        if self.inner.sandboxes.holder_gone(sandbox_id) {
            return self.dead_infos(sandbox_id).await;
        }
        let Ok(sb) = self.inner.sandboxes.get(sandbox_id) else {
            return HashMap::new();
        };
        self.inner
            .sandboxes
            .with_holder(&sb, |c| c.list_containers())
            .await
            .map(|v| v.into_iter().map(|i| (i.id.clone(), i)).collect())
            .unwrap_or_default()
    }

    /// The containers of a sandbox whose holder is gone, finished from what it left
    /// (what still runs of them is killed; see [`crate::runtime::holder::dead`]).
    pub(super) async fn dead_infos(&self, sandbox_id: &str) -> HashMap<String, ContainerInfo> {
        let holders = self.inner.sandboxes.holders().clone();
        let sid = sandbox_id.to_string();
        tokio::task::spawn_blocking(move || holders.finish_dead(&sid))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect()
    }

    /// ContainerStatus.
    pub async fn status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(ContainerStatus, HashMap<String, String>)> {
        let rec = self.get(id)?;
        let cfg = rec.config().map_err(RuntimeError::Internal)?;
        let info = self.info(&rec).await;
        let mut st = ContainerStatus {
            id: rec.id.clone(),
            metadata: cfg.metadata.clone(),
            state: cri_state(info.as_ref()) as i32,
            created_at: rec.created_at,
            image: cfg.image.clone(),
            image_ref: rec.image_id.clone(),
            image_id: rec.image_id.clone(),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
            mounts: cfg.mounts.clone(),
            log_path: rec.log_path.clone(),
            stop_signal: cfg.stop_signal,
            user: rec.user.as_ref().map(cri_user),
            resources: cfg
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|r| cri_proto::v1::ContainerResources {
                    linux: Some(r),
                    windows: None,
                }),
            ..Default::default()
        };
        if let Some(i) = &info {
            st.started_at = i.started_at;
            st.finished_at = i.finished_at;
            st.exit_code = i.exit.map_or(0, |e| e.code);
            st.reason = reason(i).into();
            if i.state == ContainerState::Exited {
                st.message = i.start_error.clone().unwrap_or_default();
            }
        }
        let mut out = HashMap::new();
        if verbose {
            let v = serde_json::json!({
                "sandboxID": rec.sandbox_id,
                "pid": info.as_ref().map_or(0, |i| i.pid),
                "name": rec.name,
            });
            out.insert("info".into(), v.to_string());
        }
        Ok((st, out))
    }

    /// ListContainers.
    pub async fn list(&self, filter: Option<ContainerFilter>) -> Vec<Container> {
        let mut f = filter.unwrap_or_default();
        if !f.id.is_empty()
            && let Ok(r) = self.get(&f.id)
        {
            f.id = r.id;
        }
        if !f.pod_sandbox_id.is_empty()
            && let Ok(full) = self.inner.sandboxes.resolve(&f.pod_sandbox_id)
        {
            f.pod_sandbox_id = full;
        }
        // What the records alone decide goes first: the holders are asked only about the
        // sandboxes of the containers that pass it (a kubelet lists one pod's containers
        // by label on every sync, and each holder asked is a round trip).
        let recs: Vec<(ContainerRecord, ContainerConfig)> = self
            .all()
            .into_iter()
            .filter(|r| f.id.is_empty() || r.id == f.id)
            .filter(|r| f.pod_sandbox_id.is_empty() || r.sandbox_id == f.pod_sandbox_id)
            .filter_map(|r| {
                let cfg = r.config().ok()?;
                labels_match(&f.label_selector, &cfg.labels).then_some((r, cfg))
            })
            .collect();
        let mut by_sandbox: HashMap<String, (bool, HashMap<String, ContainerInfo>)> =
            HashMap::new();
        let mut out = vec![];
        for (rec, cfg) in recs {
            if !by_sandbox.contains_key(&rec.sandbox_id) {
                let gone = self.inner.sandboxes.holder_gone(&rec.sandbox_id);
                let infos = self.infos(&rec.sandbox_id).await;
                by_sandbox.insert(rec.sandbox_id.clone(), (gone, infos));
            }
            let lost_info;
            let info = match by_sandbox.get(&rec.sandbox_id) {
                Some((_, m)) if m.contains_key(&rec.id) => m.get(&rec.id),
                Some((true, _)) => {
                    lost_info = lost(&rec);
                    Some(&lost_info)
                }
                _ => None,
            };
            let c = Container {
                id: rec.id.clone(),
                pod_sandbox_id: rec.sandbox_id.clone(),
                metadata: Some(cfg.metadata.unwrap_or(ContainerMetadata::default())),
                image: Some(cfg.image.unwrap_or(ImageSpec::default())),
                image_ref: rec.image_id.clone(),
                state: cri_state(info) as i32,
                created_at: rec.created_at,
                labels: cfg.labels,
                annotations: cfg.annotations,
                image_id: rec.image_id.clone(),
            };
            if container_matches(&f, &c) {
                out.push(c);
            }
        }
        out
    }
}
