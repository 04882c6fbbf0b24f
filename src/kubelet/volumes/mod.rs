//! A pod's volumes on the node, laid out as upstream kubelet lays them out:
//!
//! ```text
//! <root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>     0777 dir, or tmpfs (medium Memory)
//!                         /kubernetes.io~configmap/<name>      atomic writer, on disk
//!                         /kubernetes.io~secret/<name>         atomic writer, on tmpfs
//!                         /kubernetes.io~downward-api/<name>   atomic writer, on tmpfs
//!                         /kubernetes.io~projected/<name>      atomic writer, on tmpfs
//! <root>/pods/<uid>/plugins/kubernetes.io~empty-dir/<name>/ready  set up once
//! <root>/pods/<uid>/volume-subpaths/<volume>/<container>/<i>  subPath bind mounts
//! <root>/pods/<uid>/etc-hosts                                  the managed /etc/hosts
//! <root>/pods/<uid>/containers/<container>/<random>            termination message files
//! ```
//!
//! hostPath volumes are the node's path itself, checked against their `type`.
//! [`VolumeManager::setup_pod`] is idempotent: run again it mounts nothing twice and
//! rewrites a configMap/secret/downwardAPI/projected volume only when its content changed,
//! by one swap of `..data`. [`VolumeManager::teardown_pod`] needs no spec: it unmounts
//! the subPath bind mounts it finds in the pod's dir, then what the mount table shows
//! below the pod's dir, then removes the dir.
//!
//! A pod's `securityContext.fsGroup` becomes the group of its emptyDir (once, when set
//! up) and configMap, secret, downwardAPI and projected volumes (each time new files are
//! written); hostPath volumes are never changed.
//!
//! Owns everything below `<root>/pods`; touches nothing else on the node but the hostPath
//! volumes the pods name. Mounts go through [`crate::sys::mount::Mounter`].

mod atomic_writer;
mod empty_dir;
mod error;
mod etc_hosts;
mod host_path;
mod mounts;
mod ownership;
mod projection;
mod subpath;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod token_tests;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Volume};
use nix::mount::MntFlags;

use crate::kubelet::Objects;
use crate::kubelet::envvars::resource::{self, Allocatable};
use crate::sys::mount::Mounter;

pub use atomic_writer::{FileProjection, WriteError};
pub use error::VolumeError;
pub use ownership::OwnershipError;
pub use projection::PayloadError;

const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";

/// Sets up and tears down pods' volumes below a kubelet root.
pub struct VolumeManager {
    root: PathBuf,
    mounter: Arc<dyn Mounter>,
    cluster_domain: String,
    node_hosts_file: PathBuf,
    allocatable: Option<Allocatable>,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager")
            .field("root", &self.root)
            .field("cluster_domain", &self.cluster_domain)
            .finish_non_exhaustive()
    }
}

/// What a container's mounts need of a pod's volumes: each volume's path on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub volumes: BTreeMap<String, MountedVolume>,
}

/// One set-up volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    pub host_path: PathBuf,
    /// The volume kind is always mounted read-only (configMap, secret, downwardAPI,
    /// projected), whatever the volumeMount says.
    pub read_only: bool,
}

/// The pod's network facts the managed /etc/hosts needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountContext {
    pub pod_ips: Vec<String>,
    pub host_network: bool,
}

/// `namespace/name` for messages.
fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A directory made with `mode` (as os.MkdirAll: the umask may narrow it).
fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

impl VolumeManager {
    /// A manager for pods below `<root>/pods`; the cluster domain defaults to
    /// `cluster.local` and the node's hosts file to /etc/hosts.
    pub fn new(root: PathBuf, mounter: Arc<dyn Mounter>) -> Self {
        VolumeManager {
            root,
            mounter,
            cluster_domain: "cluster.local".into(),
            node_hosts_file: PathBuf::from("/etc/hosts"),
            allocatable: None,
        }
    }

    /// The domain of pod hostnames with a subdomain (kubelet's --cluster-domain).
    pub fn with_cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// The node's allocatable cpu and memory, for downwardAPI `resourceFieldRef` files
    /// of containers without limits.
    pub fn with_node_allocatable(mut self, cpu_millis: i64, memory: i64) -> Self {
        self.allocatable = Some(Allocatable { cpu_millis, memory });
        self
    }

    /// The file host-network pods' /etc/hosts is made from.
    pub fn with_node_hosts_file(mut self, path: PathBuf) -> Self {
        self.node_hosts_file = path;
        self
    }

    /// `<root>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// Sets up every volume of `pod`; run again, it brings the projected volumes up to
    /// date. Stops at the first volume that fails.
    pub fn setup_pod(&self, pod: &Pod, objects: &Objects) -> Result<PodVolumes, VolumeError> {
        let name = pod_name(pod);
        let uid = plain_uid(pod).ok_or_else(|| VolumeError::BadUid { pod: name.clone() })?;
        let pod_dir = self.pod_dir(uid);
        for d in [
            pod_dir.clone(),
            pod_dir.join("volumes"),
            pod_dir.join("plugins"),
        ] {
            mkdir(&d, 0o750).map_err(|source| VolumeError::Io {
                pod: name.clone(),
                volume: String::new(),
                path: d.clone(),
                source,
            })?;
        }
        let mut out = PodVolumes::default();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let mounted = self.setup_volume(pod, &name, &pod_dir, v, objects)?;
            out.volumes.insert(v.name.clone(), mounted);
        }
        Ok(out)
    }

    fn setup_volume(
        &self,
        pod: &Pod,
        name: &str,
        pod_dir: &Path,
        v: &Volume,
        objects: &Objects,
    ) -> Result<MountedVolume, VolumeError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&v.name);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VolumeError::Io {
                pod: name.to_string(),
                volume: v.name.clone(),
                path,
                source,
            }
        };
        let payload_err = |source| VolumeError::Payload {
            pod: name.to_string(),
            volume: v.name.clone(),
            source,
        };
        let tmpfs = |d: &Path, size: Option<i64>| {
            empty_dir::setup_tmpfs(self.mounter.as_ref(), d, size).map_err(|e| match e {
                empty_dir::TmpfsError::Io(source) => io_err(d)(source),
                empty_dir::TmpfsError::Mount(source) => VolumeError::Mount {
                    pod: name.to_string(),
                    volume: v.name.clone(),
                    path: d.to_path_buf(),
                    source,
                },
            })
        };
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group);
        // Upstream's emptyDir, configMap, secret, downwardAPI and projected plugins pass
        // no fsGroupChangePolicy: their volumes are always walked whole.
        let own = |d: &Path, read_only: bool| {
            ownership::set_volume_ownership(d, fs_group, None, read_only)
        };
        // The projected kinds are read-only volumes: group read, no group write.
        let write = |d: &Path, payload: projection::Payload| {
            atomic_writer::write(d, &payload, &|| own(d, true)).map_err(|source| {
                VolumeError::Write {
                    pod: name.to_string(),
                    volume: v.name.clone(),
                    source,
                }
            })
        };
        let projected = |host_path: PathBuf| MountedVolume {
            host_path,
            read_only: true,
        };

        if let Some(e) = &v.empty_dir {
            let d = dir(EMPTY_DIR);
            // Set up once (upstream's ready marker): later syncs leave the modes of what
            // the containers wrote alone, unless the tmpfs had to be mounted again.
            let meta_dir = pod_dir.join("plugins").join(EMPTY_DIR).join(&v.name);
            let ready = empty_dir::is_ready(&meta_dir);
            let fresh = match e.medium.as_deref().unwrap_or_default() {
                "" => {
                    let existed = d.is_dir();
                    empty_dir::setup_dir(&d).map_err(io_err(&d))?;
                    !(ready && existed)
                }
                "Memory" => {
                    let size = match &e.size_limit {
                        Some(q) => {
                            Some(resource::value(q).ok_or_else(|| VolumeError::Unsupported {
                                pod: name.to_string(),
                                volume: v.name.clone(),
                                what: format!("emptyDir.sizeLimit {:?}", q.0),
                            })?)
                        }
                        None => None,
                    };
                    tmpfs(&d, empty_dir::memory_size(pod, size, self.allocatable))? || !ready
                }
                other => {
                    return Err(VolumeError::Unsupported {
                        pod: name.to_string(),
                        volume: v.name.clone(),
                        what: format!("emptyDir medium {other:?}"),
                    });
                }
            };
            if fresh {
                // As upstream, an emptyDir whose ownership could not be set is still used.
                if let Err(err) = own(&d, false) {
                    tracing::warn!(pod = name, volume = %v.name, error = %err, "emptyDir fsGroup ownership");
                }
                empty_dir::set_ready(&meta_dir).map_err(io_err(&meta_dir))?;
            }
            return Ok(MountedVolume {
                host_path: d,
                read_only: false,
            });
        }
        if let Some(h) = &v.host_path {
            let kind = h.type_.as_deref().unwrap_or_default();
            host_path::check_type(Path::new(&h.path), kind).map_err(|reason| {
                VolumeError::HostPathType {
                    pod: name.to_string(),
                    volume: v.name.clone(),
                    kind: kind.to_string(),
                    reason,
                }
            })?;
            return Ok(MountedVolume {
                host_path: PathBuf::from(&h.path),
                read_only: false,
            });
        }
        if let Some(c) = &v.config_map {
            let payload = projection::config_map(
                objects,
                ns,
                &c.name,
                c.items.as_deref(),
                c.default_mode,
                c.optional == Some(true),
            )
            .map_err(payload_err)?;
            let d = dir(CONFIG_MAP);
            empty_dir::setup_dir(&d).map_err(io_err(&d))?;
            write(&d, payload)?;
            return Ok(projected(d));
        }
        if let Some(s) = &v.secret {
            let secret_name = s.secret_name.as_deref().unwrap_or_default();
            let payload = projection::secret(
                objects,
                ns,
                secret_name,
                s.items.as_deref(),
                s.default_mode,
                s.optional == Some(true),
            )
            .map_err(payload_err)?;
            let d = dir(SECRET);
            tmpfs(&d, empty_dir::memory_size(pod, None, self.allocatable))?;
            write(&d, payload)?;
            return Ok(projected(d));
        }
        if let Some(dapi) = &v.downward_api {
            let items = dapi.items.as_deref().unwrap_or_default();
            let payload = projection::downward_api(pod, items, dapi.default_mode, self.allocatable)
                .map_err(payload_err)?;
            let d = dir(DOWNWARD_API);
            tmpfs(&d, empty_dir::memory_size(pod, None, self.allocatable))?;
            write(&d, payload)?;
            return Ok(projected(d));
        }
        if let Some(p) = &v.projected {
            let payload = projection::projected(pod, objects, ns, p, self.allocatable)
                .map_err(payload_err)?;
            let d = dir(PROJECTED);
            tmpfs(&d, empty_dir::memory_size(pod, None, self.allocatable))?;
            write(&d, payload)?;
            return Ok(projected(d));
        }
        Err(VolumeError::Unsupported {
            pod: name.to_string(),
            volume: v.name.clone(),
            what: format!("volume source {}", volume_kind(v)),
        })
    }

    /// Unmounts the pod's subPath bind mounts, then every other mount below the pod's
    /// dir, deepest first, then removes the dir. A mount that stays keeps the dir (so
    /// nothing below a live mount is deleted); every error is reported.
    pub fn teardown_pod(&self, uid: &str) -> Result<(), VolumeError> {
        if !is_plain_name(uid) {
            return Err(VolumeError::BadUid {
                pod: uid.to_string(),
            });
        }
        let pod_dir = self.pod_dir(uid);
        let canonical = match std::fs::canonicalize(&pod_dir) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(VolumeError::Root {
                    path: pod_dir,
                    source,
                });
            }
        };
        // The subPath bind mounts first, each from its own entry on disk (upstream
        // CleanSubPaths before a volume's TearDown); the rest of the mount table below
        // the pod's dir after.
        let mut errors: Vec<String> = subpath::clean_subpaths(self.mounter.as_ref(), &canonical)
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        let subpaths = canonical.join(subpath::SUBPATHS_DIR);
        let info = self
            .mounter
            .mountinfo()
            .map_err(|source| VolumeError::Root {
                path: "/proc/self/mountinfo".into(),
                source,
            })?;
        let mut below: Vec<PathBuf> = empty_dir::mount_points(&info)
            .into_iter()
            .filter(|m| m.starts_with(&canonical) && !m.starts_with(&subpaths))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in &below {
            match self.mounter.umount(m, MntFlags::empty()) {
                Ok(()) => tracing::debug!(pod_uid = uid, path = %m.display(), "volume unmounted"),
                Err(e) => errors.push(format!("mount {}: {e}", m.display())),
            }
        }
        if errors.is_empty()
            && let Err(e) = std::fs::remove_dir_all(&pod_dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            errors.push(format!("dir {}: {e}", pod_dir.display()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(VolumeError::Teardown {
                uid: uid.to_string(),
                errors,
            })
        }
    }

    /// The UIDs that have a dir below `<root>/pods`, for finding orphans.
    pub fn pod_uids(&self) -> Result<Vec<String>, VolumeError> {
        let pods = self.root.join("pods");
        let entries = match std::fs::read_dir(&pods) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(VolumeError::Root { path: pods, source }),
        };
        let mut uids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| VolumeError::Root {
                path: pods.clone(),
                source,
            })?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                uids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        uids.sort();
        Ok(uids)
    }
}

/// The pod's uid when it can name a directory (no `/`, not `.` or `..`).
fn plain_uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref().filter(|u| is_plain_name(u))
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != "." && s != ".."
}

/// The volume source's field name (`nfs`, `persistentVolumeClaim`, ...), for messages.
fn volume_kind(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "(none)".into())
}
