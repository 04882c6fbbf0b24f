//! Image volumes (Kubernetes ImageVolume): a CRI mount with `image` set shows that
//! image's root filesystem, read-only, at `container_path`, or only its `image_sub_path`.
//! The kubelet pulls the image first and names it by the `image_ref` the pull returned.
//! Each such mount gets a read-only view from the image store (an overlay of the image's
//! layers with no upper dir, see [`crate::image::view`]), owned by the container and
//! removed with it; the container's spec bind-mounts the view (or the sub path's real
//! place in it) read-only, nosuid, nodev and noexec, as the KEP asks.

use cri_proto::v1::ContainerConfig as CriContainerConfig;

use super::Containers;
use crate::image::view::{SubPathError, check_sub_path, resolve_sub_path};
use crate::runtime::error::{Result, RuntimeError};

/// The container's config with image volumes made: `spec` with each image mount's
/// `host_path` set to its view (what the OCI spec binds), `record` with each image
/// mount's `image.image_ref` set to the image ID (what ContainerStatus reports).
#[derive(Debug)]
pub(super) struct Made {
    pub spec: CriContainerConfig,
    pub record: CriContainerConfig,
}

/// The checks that need nothing but the request, made before anything is mounted.
fn check(cfg: &CriContainerConfig) -> Result<()> {
    for (i, m) in cfg.mounts.iter().enumerate() {
        let Some(image) = m.image.as_ref().filter(|s| !s.image.is_empty()) else {
            continue;
        };
        let field = |f: &str| format!("config.mounts[{i}].{f}");
        if !m.readonly {
            return Err(RuntimeError::invalid(
                field("readonly"),
                format!(
                    "image volume {:?} is read-only; a read-write mount is refused",
                    image.image
                ),
            ));
        }
        if !m.host_path.is_empty() {
            return Err(RuntimeError::invalid(
                field("host_path"),
                "must be empty when image is set",
            ));
        }
        check_sub_path(&m.image_sub_path)
            .map_err(|e| RuntimeError::invalid(field("image_sub_path"), e.to_string()))?;
    }
    Ok(())
}

impl Containers {
    /// Makes the read-only views of `id`'s image volumes; `None` when it has none. On
    /// an error, the views made so far stay for the caller's rollback (`unmake`).
    pub(super) async fn image_volumes(
        &self,
        id: &str,
        cfg: &CriContainerConfig,
    ) -> Result<Option<Made>> {
        if !cfg
            .mounts
            .iter()
            .any(|m| m.image.as_ref().is_some_and(|s| !s.image.is_empty()))
        {
            return Ok(None);
        }
        check(cfg)?;
        let (mut spec, mut record) = (cfg.clone(), cfg.clone());
        for (i, m) in cfg.mounts.iter().enumerate() {
            let Some(query) = m
                .image
                .as_ref()
                .map(|s| s.image.as_str())
                .filter(|s| !s.is_empty())
            else {
                continue;
            };
            let field = |f: &str| format!("config.mounts[{i}].{f}");
            let (img, root) = self
                .inner
                .images
                .create_view(id, &i.to_string(), query)
                .await
                .map_err(|e| RuntimeError::Image {
                    image: query.into(),
                    not_found: matches!(e, crate::image::Error::NotFound { .. }),
                    reason: match e {
                        crate::image::Error::NotFound { .. } => format!(
                            "{}: no such image in the store (the kubelet pulls an image volume's image before it creates the container)",
                            field("image.image")
                        ),
                        e => format!("{}: image volume: {e}", field("image.image")),
                    },
                })?;
            let src = resolve_sub_path(&root, &m.image_sub_path).map_err(|e| {
                let why = match &e {
                    SubPathError::Missing(_) => format!("{e} {query:?} ({})", img.id),
                    _ => e.to_string(),
                };
                RuntimeError::invalid(field("image_sub_path"), why)
            })?;
            spec.mounts[i].host_path = src.to_string_lossy().into_owned();
            if let Some(s) = record.mounts[i].image.as_mut() {
                s.image_ref = img.id.to_string();
            }
        }
        Ok(Some(Made { spec, record }))
    }

    /// Removes the views of containers that have no record any more (a crash between
    /// removing a record and its views, or a record removed by hand).
    pub(super) fn remove_orphan_views(&self) {
        let owners = match self.inner.images.view_owners() {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "list image volume views");
                return;
            }
        };
        for owner in owners {
            if self
                .inner
                .cfg
                .records
                .join(format!("{owner}.json"))
                .exists()
            {
                continue;
            }
            tracing::info!(container = %owner, "removing the image volumes of a container that is gone");
            if let Err(e) = self.inner.images.remove_views(&owner) {
                tracing::warn!(container = %owner, error = %e, "remove image volumes");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cri_proto::v1::{ImageSpec, Mount};

    fn image_mount(readonly: bool, sub: &str) -> CriContainerConfig {
        CriContainerConfig {
            mounts: vec![
                Mount {
                    container_path: "/data".into(),
                    host_path: "/srv/data".into(),
                    ..Default::default()
                },
                Mount {
                    container_path: "/vol".into(),
                    image: Some(ImageSpec {
                        image: "sha256:abc".into(),
                        ..Default::default()
                    }),
                    readonly,
                    image_sub_path: sub.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn read_write_and_climbing_sub_paths_are_refused_by_field() {
        assert!(check(&image_mount(true, "")).is_ok());
        assert!(check(&image_mount(true, "a/b")).is_ok());
        let e = check(&image_mount(false, "")).unwrap_err();
        assert!(
            e.to_string().starts_with("config.mounts[1].readonly:"),
            "{e}"
        );
        assert_eq!(e.code(), crate::runtime::error::Code::InvalidArgument);
        for bad in ["../etc", "a/../../b", "/etc"] {
            let e = check(&image_mount(true, bad)).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("config.mounts[1].image_sub_path:"),
                "{e}"
            );
        }
        let mut both = image_mount(true, "");
        both.mounts[1].host_path = "/etc".into();
        let e = check(&both).unwrap_err();
        assert!(
            e.to_string().starts_with("config.mounts[1].host_path:"),
            "{e}"
        );
    }
}
