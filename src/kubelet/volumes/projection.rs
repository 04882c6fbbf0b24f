//! The files of configMap, secret, downwardAPI and projected volumes as plain data
//! (upstream configmap.MakePayload, secret.MakePayload, downwardapi.CollectData,
//! projected collectData): relative path -> content and mode, written by the atomic
//! writer. A serviceAccountToken source takes its token from `Objects.tokens`, which
//! the sync fills from the token manager before it sets up volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
    ServiceAccountTokenProjection,
};

use super::atomic_writer::FileProjection;
use crate::kubelet::Objects;
use crate::kubelet::envvars::{fieldpath, resource, secret_data};
use crate::kubelet::token::token_key;

/// The mode files get when neither the item nor the volume sets one (the API default).
pub const DEFAULT_MODE: i32 = 0o644;

/// Why a payload could not be made; the caller adds the pod and volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("configmap {namespace}/{name} not found")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error("secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    /// `object` is `configmap <namespace>/<name>` or `secret <namespace>/<name>`.
    #[error("{object} has no key {key:?}")]
    MissingKey { object: String, key: String },
    #[error("service account token for {namespace}/{service_account}: {reason}")]
    TokenUnavailable {
        namespace: String,
        service_account: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Other(String),
}

pub type Payload = BTreeMap<String, FileProjection>;

fn mode(m: Option<i32>) -> u32 {
    u32::try_from(m.unwrap_or(DEFAULT_MODE)).unwrap_or(0o644)
}

/// Keys (all of them, or the listed items) into files.
fn key_payload(
    kind: &'static str,
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode(default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(PayloadError::MissingKey {
                        object: format!("{kind} {namespace}/{name}"),
                        key: item.key.clone(),
                    });
                };
                let m = item.mode.or(default_mode);
                out.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode(m),
                    },
                );
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut d: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        d.entry(k.clone()).or_insert_with(|| v.0.clone());
    }
    d
}

fn secret_bytes(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut d: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret_data(&Secret {
        data: None,
        ..s.clone()
    }) {
        d.insert(k, v.into_bytes());
    }
    d
}

/// A configMap volume's (or projection's) files; a missing optional ConfigMap is empty.
pub fn config_map(
    objects: &Objects,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, PayloadError> {
    match objects.config_map(namespace, name) {
        Some(cm) => key_payload(
            "configmap",
            namespace,
            name,
            &config_map_data(cm),
            items,
            default_mode,
            optional,
        ),
        None if optional => Ok(Payload::new()),
        None => Err(PayloadError::ConfigMapNotFound {
            namespace: namespace.into(),
            name: name.into(),
        }),
    }
}

/// A secret volume's (or projection's) files; a missing optional Secret is empty.
pub fn secret(
    objects: &Objects,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, PayloadError> {
    match objects.secret(namespace, name) {
        Some(s) => key_payload(
            "secret",
            namespace,
            name,
            &secret_bytes(s),
            items,
            default_mode,
            optional,
        ),
        None if optional => Ok(Payload::new()),
        None => Err(PayloadError::SecretNotFound {
            namespace: namespace.into(),
            name: name.into(),
        }),
    }
}

/// A downwardAPI volume's (or projection's) files.
pub fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    alloc: Option<resource::Allocatable>,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    for item in items {
        let data = if let Some(f) = &item.field_ref {
            fieldpath::extract(pod, &f.field_path).map_err(PayloadError::Other)?
        } else if let Some(r) = &item.resource_field_ref {
            let alloc = alloc.ok_or_else(|| {
                PayloadError::Other(format!(
                    "{}: the node's allocatable resources are not known",
                    item.path
                ))
            })?;
            resource::resource_value(pod, None, r, alloc).map_err(PayloadError::Other)?
        } else {
            String::new()
        };
        let m = item.mode.or(default_mode);
        out.insert(
            item.path.clone(),
            FileProjection {
                data: data.into_bytes(),
                mode: mode(m),
            },
        );
    }
    Ok(out)
}

/// A serviceAccountToken source's one file. Its mode is the volume's default mode, or
/// 0600 when the pod has an fsGroup (the volume's ownership then adds group read), as
/// upstream's projected plugin writes it.
fn service_account_token(
    pod: &Pod,
    objects: &Objects,
    t: &ServiceAccountTokenProjection,
    default_mode: Option<i32>,
) -> Result<Payload, PayloadError> {
    let key = token_key(pod, t);
    let Some(token) = objects.tokens.get(&key) else {
        return Err(PayloadError::TokenUnavailable {
            namespace: key.namespace,
            service_account: key.service_account,
            reason: "not fetched: serviceAccountToken projections need an API server",
        });
    };
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group);
    let m = if fs_group.is_some() {
        0o600
    } else {
        mode(default_mode)
    };
    let mut out = Payload::new();
    out.insert(
        t.path.clone(),
        FileProjection {
            data: token.clone().into_bytes(),
            mode: m,
        },
    );
    Ok(out)
}

/// A projected volume's files: every source's, later sources over earlier ones.
pub fn projected(
    pod: &Pod,
    objects: &Objects,
    namespace: &str,
    src: &ProjectedVolumeSource,
    alloc: Option<resource::Allocatable>,
) -> Result<Payload, PayloadError> {
    let default_mode = src.default_mode;
    let mut out = Payload::new();
    for s in src.sources.iter().flatten() {
        let part = if let Some(c) = &s.config_map {
            config_map(
                objects,
                namespace,
                &c.name,
                c.items.as_deref(),
                default_mode,
                c.optional == Some(true),
            )?
        } else if let Some(c) = &s.secret {
            secret(
                objects,
                namespace,
                &c.name,
                c.items.as_deref(),
                default_mode,
                c.optional == Some(true),
            )?
        } else if let Some(d) = &s.downward_api {
            downward_api(
                pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                alloc,
            )?
        } else if let Some(t) = &s.service_account_token {
            service_account_token(pod, objects, t, default_mode)?
        } else if s.cluster_trust_bundle.is_some() {
            return Err(PayloadError::Other(
                "clusterTrustBundle projections are not supported by berth".into(),
            ));
        } else if s.pod_certificate.is_some() {
            return Err(PayloadError::Other(
                "podCertificate projections are not supported by berth".into(),
            ));
        } else {
            Payload::new()
        };
        out.extend(part);
    }
    Ok(out)
}
