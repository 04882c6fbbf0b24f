//! A container's mounts as kubelet makes them (upstream kubelet_pods.go makeMounts and
//! kuberuntime makeMounts): one per volumeMount (a subPath bind-mounted safely below the
//! pod's dir, see [`super::subpath`]; read-only when the mount or the volume kind says
//! so; propagation translated), then the managed /etc/hosts, then the termination
//! message file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::subpath::{self, Subpath};
use super::{
    MountContext, MountedVolume, PodVolumes, VolumeError, VolumeManager, etc_hosts, is_plain_name,
    mkdir, pod_name,
};
use crate::kubelet::envvars::expand_sub_path_expr;

const ETC_HOSTS: &str = "/etc/hosts";

/// A volumeMount's mountPropagation in CRI terms.
fn propagation(mode: Option<&str>) -> Result<cri::MountPropagation, String> {
    match mode {
        None | Some("None") => Ok(cri::MountPropagation::PropagationPrivate),
        Some("HostToContainer") => Ok(cri::MountPropagation::PropagationHostToContainer),
        Some("Bidirectional") => Ok(cri::MountPropagation::PropagationBidirectional),
        Some(other) => Err(format!("invalid MountPropagation mode: {other:?}")),
    }
}

impl VolumeManager {
    /// The container's CRI mounts. `subPathExpr` needs the container's environment: see
    /// [`VolumeManager::container_mounts_with_env`].
    pub fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        vols: &PodVolumes,
        ctx: &MountContext,
    ) -> Result<Vec<cri::Mount>, VolumeError> {
        self.container_mounts_with_env(pod, container, vols, ctx, &[])
    }

    /// As [`VolumeManager::container_mounts`], with `env` (the container's environment)
    /// expanding `$(VAR)` in subPathExpr.
    pub fn container_mounts_with_env(
        &self,
        pod: &Pod,
        container: &Container,
        vols: &PodVolumes,
        ctx: &MountContext,
        env: &[cri::KeyValue],
    ) -> Result<Vec<cri::Mount>, VolumeError> {
        let name = pod_name(pod);
        let uid = super::plain_uid(pod).ok_or_else(|| VolumeError::BadUid { pod: name.clone() })?;
        let pod_dir = self.pod_dir(uid);
        let mount_err = |volume: &str, reason: String| VolumeError::VolumeMount {
            pod: name.clone(),
            container: container.name.clone(),
            volume: volume.to_string(),
            reason,
        };
        let file_err = |path: &Path| {
            let path = path.to_path_buf();
            let (pod, container) = (name.clone(), container.name.clone());
            move |source| VolumeError::ContainerFile {
                pod,
                container,
                path,
                source,
            }
        };

        let mut mounts = Vec::new();
        let mut hosts = !ctx.pod_ips.is_empty() || ctx.host_network;
        for (index, vm) in container.volume_mounts.iter().flatten().enumerate() {
            hosts &= vm.mount_path != ETC_HOSTS;
            let vol = vols
                .volumes
                .get(&vm.name)
                .ok_or_else(|| VolumeError::UnknownVolume {
                    pod: name.clone(),
                    container: container.name.clone(),
                    volume: vm.name.clone(),
                })?;
            let sub = match vm.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
                Some(expr) => {
                    expand_sub_path_expr(expr, env).map_err(|r| mount_err(&vm.name, r))?
                }
                None => vm.sub_path.clone().unwrap_or_default(),
            };
            let host = if sub.is_empty() {
                vol.host_path.clone()
            } else {
                self.subpath_host_path(&pod_dir, &container.name, index, &vm.name, vol, &sub)
                    .map_err(|r| mount_err(&vm.name, r))?
            };
            let container_path = if vm.mount_path.starts_with('/') {
                vm.mount_path.clone()
            } else {
                format!("/{}", vm.mount_path)
            };
            let prop =
                propagation(vm.mount_propagation.as_deref()).map_err(|r| mount_err(&vm.name, r))?;
            let readonly = vm.read_only == Some(true) || vol.read_only;
            let recursive_read_only = match vm.recursive_read_only.as_deref() {
                None | Some("Disabled") | Some("") => false,
                // Whether the runtime handler can is not known here: only where asked.
                Some("IfPossible") => false,
                Some("Enabled")
                    if readonly && prop == cri::MountPropagation::PropagationPrivate =>
                {
                    true
                }
                Some("Enabled") => {
                    return Err(mount_err(
                        &vm.name,
                        "recursiveReadOnly Enabled needs readOnly and no mount propagation".into(),
                    ));
                }
                Some(other) => {
                    return Err(mount_err(
                        &vm.name,
                        format!("unknown recursiveReadOnly {other:?}"),
                    ));
                }
            };
            mounts.push(cri::Mount {
                container_path,
                host_path: host.to_string_lossy().into_owned(),
                readonly,
                propagation: prop as i32,
                recursive_read_only,
                ..Default::default()
            });
        }

        if hosts {
            let path = pod_dir.join("etc-hosts");
            let aliases = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_aliases.clone())
                .unwrap_or_default();
            let content = if ctx.host_network {
                let node = std::fs::read_to_string(&self.node_hosts_file)
                    .map_err(file_err(&self.node_hosts_file))?;
                etc_hosts::host_network_content(&node, &aliases)
            } else {
                let (host, domain) = etc_hosts::hostname_and_domain(pod, &self.cluster_domain);
                etc_hosts::managed_content(&ctx.pod_ips, &host, &domain, &aliases)
            };
            mkdir(&pod_dir, 0o750).map_err(file_err(&pod_dir))?;
            std::fs::write(&path, content).map_err(file_err(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(file_err(&path))?;
            mounts.push(cri::Mount {
                container_path: ETC_HOSTS.into(),
                host_path: path.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }

        if let Some(tmp) = container
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            let file = self
                .termination_message_file(uid, &container.name)
                .map_err(|(p, e)| file_err(&p)(e))?;
            let container_path = if tmp.starts_with('/') {
                tmp.to_string()
            } else {
                format!("/{tmp}")
            };
            mounts.push(cri::Mount {
                container_path,
                host_path: file.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        Ok(mounts)
    }

    /// The host path the runtime mounts for a volumeMount with a subPath: the subPath's
    /// bind mount below the pod's dir (upstream makeMounts). The detailed reason of a
    /// failure is logged; the container's message is upstream's, which says nothing of
    /// the host's files.
    fn subpath_host_path(
        &self,
        pod_dir: &Path,
        container: &str,
        index: usize,
        volume: &str,
        vol: &MountedVolume,
        sub: &str,
    ) -> Result<PathBuf, String> {
        subpath::validate(sub)?;
        // Both name directories below the pod's dir.
        if !is_plain_name(volume) || !is_plain_name(container) {
            return Err(format!(
                "volume {volume:?} or container {container:?} cannot name a directory"
            ));
        }
        let path = vol.host_path.join(sub);
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => {
                // Made now with the volume's mode, not later by the runtime with 0755,
                // so a group-writable volume's subPath stays group-writable.
                let perm = std::fs::metadata(&vol.host_path)
                    .map_err(|e| format!("{}: {e}", vol.host_path.display()))?
                    .permissions()
                    .mode()
                    & 0o7777;
                if let Err(e) = subpath::safe_make_dir(sub, &vol.host_path, perm) {
                    tracing::error!(container, volume, error = %e, "failed to create subPath directory");
                    return Err(format!(
                        "failed to create subPath directory for volumeMount {volume:?} of container {container:?}"
                    ));
                }
            }
            Err(e) => tracing::error!(
                path = %path.display(),
                error = %e,
                "could not determine if subPath exists, will not attempt to change its permissions"
            ),
        }
        subpath::prepare_safe_subpath(
            self.mounter.as_ref(),
            &Subpath {
                volume_mount_index: index,
                path,
                volume_name: volume.to_string(),
                volume_path: vol.host_path.clone(),
                pod_dir: pod_dir.to_path_buf(),
                container_name: container.to_string(),
            },
        )
        .map_err(|e| {
            tracing::error!(container, volume, error = %e, "failed to prepare subPath");
            format!(
                "failed to prepare subPath for volumeMount {volume:?} of container {container:?}"
            )
        })
    }

    /// A new empty 0666 file `<pod dir>/containers/<name>/<8 hex digits>`: a fresh one per
    /// container instance, so a restarted container does not see its predecessor's message.
    fn termination_message_file(
        &self,
        uid: &str,
        container: &str,
    ) -> Result<PathBuf, (PathBuf, std::io::Error)> {
        let dir = self.pod_dir(uid).join("containers").join(container);
        mkdir(&dir, 0o750).map_err(|e| (dir.clone(), e))?;
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| (dir.clone(), std::io::Error::other(e.to_string())))?;
        let file = dir.join(format!("{:08x}", u32::from_ne_bytes(b)));
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&file)
            .map_err(|e| (file.clone(), e))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| (file.clone(), e))?;
        Ok(file)
    }
}
