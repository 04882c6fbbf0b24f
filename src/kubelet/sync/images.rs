//! A container's image by its imagePullPolicy (kubelet's images.EnsureImageExists):
//! Never uses what is there, IfNotPresent pulls what is missing, Always pulls every
//! time; a failed pull is ErrImagePull, and retries wait under back-off as
//! ImagePullBackOff. The pod's imagePullSecrets give the credentials
//! ([`super::pull_secrets`]): each match is tried in order until one pull succeeds.

use std::time::Instant;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::pull_secrets::{self, Keyring};
use super::start::image_of;
use super::{Outcome, Syncer};
use crate::kubelet::Objects;
use crate::kubelet::events::EventKind;
use crate::kubelet::kuberuntime::labels;
use crate::kubelet::status::Waiting;

impl Syncer {
    async fn image_ref(&self, image: &str) -> Option<String> {
        self.runtime
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.image)
            .map(|i| i.id)
    }

    /// The image reference to create the container from.
    pub(super) async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox: &cri::PodSandboxConfig,
        objects: &Objects,
        out: &mut Outcome,
    ) -> Result<String, Waiting> {
        let image = image_of(c).to_string();
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let present = self.image_ref(&image).await;
        match (policy, present) {
            ("Never", Some(r)) | ("IfNotPresent", Some(r)) => {
                self.event(
                    pod,
                    Some(&c.name),
                    EventKind::Normal,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(r);
            }
            ("Never", None) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(
                    pod,
                    Some(&c.name),
                    EventKind::Warning,
                    "ErrImageNeverPull",
                    msg.clone(),
                );
                return Err(Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: msg,
                });
            }
            _ => {}
        }
        let key = format!("{}_{image}", labels::uid(pod));
        let now = Instant::now();
        if let Some(left) = self.pull_backoff.remaining_since_update(&key, now) {
            self.event(
                pod,
                Some(&c.name),
                EventKind::Normal,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
            out.requeue = Some(out.requeue.map_or(left, |r| r.min(left)));
            return Err(Waiting {
                reason: "ImagePullBackOff".into(),
                message: format!("Back-off pulling image \"{image}\""),
            });
        }
        self.event(
            pod,
            Some(&c.name),
            EventKind::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        let pulled = match self.pull_keyring(pod, objects) {
            Ok(keyring) => self.pull(&image, &keyring, sandbox).await,
            Err(e) => Err(e.to_string()),
        };
        match pulled {
            Ok(image_ref) => {
                self.event(
                    pod,
                    Some(&c.name),
                    EventKind::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(image_ref)
            }
            Err(msg) => {
                self.pull_backoff.next(&key, Instant::now(), Instant::now());
                self.event(
                    pod,
                    Some(&c.name),
                    EventKind::Warning,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {msg}"),
                );
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: msg,
                })
            }
        }
    }

    /// The keyring of the pod's imagePullSecrets; a Secret that is not there is left out
    /// with a warning, as upstream does (the pull may still succeed without it).
    fn pull_keyring(
        &self,
        pod: &Pod,
        objects: &Objects,
    ) -> Result<Keyring, pull_secrets::PullSecretError> {
        let ns = labels::namespace(pod);
        let refs = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten());
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for r in refs.filter(|r| !r.name.is_empty()) {
            match objects.secret(ns, &r.name) {
                Some(s) => found.push(s),
                None => failed.push(r.name.clone()),
            }
        }
        if !failed.is_empty() {
            self.event(
                pod,
                None,
                EventKind::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    failed.join(", ")
                ),
            );
        }
        pull_secrets::keyring(&found)
    }

    /// Pulls with each matching credential in turn (none: anonymously); the errors of
    /// every attempt when all fail.
    async fn pull(
        &self,
        image: &str,
        keyring: &Keyring,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<String, String> {
        let mut errors = Vec::new();
        for auth in pull_secrets::attempts(keyring, image) {
            let req = cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: Some(sandbox.clone()),
            };
            match self.runtime.images.pull_image(req).await {
                Ok(r) => return Ok(r.image_ref),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(pull_secrets::aggregate(errors))
    }
}
