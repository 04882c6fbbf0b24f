//! PullImage: validates the reference and the `AuthConfig`, then pulls through the image
//! store, logging progress. Pulls of one reference with the same credentials coalesce:
//! the first caller starts the pull as a task of its own (so a caller that gives up does
//! not cancel it for the others) and every caller waits for its one result.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cri_proto::v1 as cri;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tonic::Code;

use super::error::{CriError, image_code};
use super::images::{Images, image_of};
use crate::image::Reference;
use crate::image::progress::Progress;
use crate::image::pull::{PullOptions, pull};
use crate::image::registry::{AuthConfig, Credentials, RegistryHosts};

const RPC: &str = "PullImage";

/// How the service pulls.
#[derive(Debug, Clone, Default)]
pub struct PullConfig {
    pub hosts: RegistryHosts,
    /// Platform and download concurrency; credentials come with each request.
    pub options: PullOptions,
}

/// What a finished pull left for its waiters: the image ID, or the error's code and text.
type Outcome = Result<String, (Code, String)>;

/// A pull under way, watched by every caller that asked for it.
pub(super) type InFlight = watch::Receiver<Option<Outcome>>;

/// The table of pulls under way.
pub(super) type InFlightTable = Arc<Mutex<HashMap<String, InFlight>>>;

impl Images {
    pub(super) async fn pull(
        &self,
        req: cri::PullImageRequest,
    ) -> Result<cri::PullImageResponse, CriError> {
        let image = image_of(RPC, req.image.as_ref())?;
        let r = Reference::parse(image)
            .map_err(|e| CriError::invalid(RPC, "image.image", e.to_string()))?;
        // As containerd: a digest pins the image, and a tag beside it is dropped.
        let reference = match &r.digest {
            Some(d) => format!("{}@{d}", r.name()),
            None => r.to_string(),
        };
        let credentials = credentials_for(req.auth.as_ref(), &r.registry)?;
        if let Some(m) = req
            .sandbox_config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
        {
            tracing::info!(image = %reference, pod = %m.name, namespace = %m.namespace, "PullImage for a pod");
        }
        let key = format!("{reference} {}", fingerprint(credentials.as_ref()));
        let mut rx = {
            let mut table = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match table.get(&key) {
                Some(rx) => {
                    tracing::info!(image = %reference, "joining a pull already under way");
                    rx.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    table.insert(key.clone(), rx.clone());
                    let opts = PullOptions {
                        credentials,
                        ..self.pull.options.clone()
                    };
                    tokio::spawn(run_pull(
                        self.store.clone(),
                        self.pull.hosts.clone(),
                        reference.clone(),
                        opts,
                        self.in_flight.clone(),
                        key,
                        tx,
                    ));
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| CriError::Internal {
                rpc: RPC,
                what: format!("pull of {reference}"),
                reason: "the pull task ended without a result".into(),
            })?
            .clone();
        match outcome {
            Some(Ok(id)) => Ok(cri::PullImageResponse { image_ref: id }),
            Some(Err((code, message))) => Err(CriError::Failed {
                rpc: RPC,
                object: reference,
                code,
                message,
            }),
            None => Err(CriError::Internal {
                rpc: RPC,
                what: format!("pull of {reference}"),
                reason: "no result".into(),
            }),
        }
    }
}

async fn run_pull(
    store: Arc<crate::image::ImageStore>,
    hosts: RegistryHosts,
    reference: String,
    opts: PullOptions,
    table: InFlightTable,
    key: String,
    tx: watch::Sender<Option<Outcome>>,
) {
    // Unregistered however the task ends (a panic included), so that no later caller
    // joins a pull that will never answer.
    let _entry = Entry { table, key };
    let t = Instant::now();
    tracing::info!(image = %reference, "pulling");
    let progress = Progress::lines(Box::new(LogLines::new(&reference)));
    let outcome = match pull(&store, &hosts, &reference, &opts, &progress).await {
        Ok(rec) => {
            tracing::info!(
                image = %reference, id = %rec.id, size = rec.size,
                secs = t.elapsed().as_secs_f64(), "pulled"
            );
            Ok(rec.id.to_string())
        }
        Err(e) => {
            tracing::warn!(image = %reference, "pull failed: {e}");
            Err((image_code(&e), e.to_string()))
        }
    };
    drop(_entry);
    let _ = tx.send(Some(outcome));
}

/// A pull's place in the table of pulls under way; removed on drop.
struct Entry {
    table: InFlightTable,
    key: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The credentials an `AuthConfig` gives for `registry`. Credentials that name another
/// server are not sent (as containerd does).
fn credentials_for(
    auth: Option<&cri::AuthConfig>,
    registry: &str,
) -> Result<Option<Credentials>, CriError> {
    let Some(a) = auth else {
        return Ok(None);
    };
    if !a.server_address.is_empty() {
        let host = server_host(&a.server_address);
        let docker_hub =
            registry == "docker.io" && matches!(host, "index.docker.io" | "registry-1.docker.io");
        if host != registry && !docker_hub {
            tracing::info!(
                registry, server_address = %a.server_address,
                "credentials are for another server; pulling without them"
            );
            return Ok(None);
        }
    }
    let field = if a.auth.is_empty() {
        "auth"
    } else {
        "auth.auth"
    };
    AuthConfig {
        username: a.username.clone(),
        password: a.password.clone(),
        auth: a.auth.clone(),
        server_address: a.server_address.clone(),
        identity_token: a.identity_token.clone(),
        registry_token: a.registry_token.clone(),
    }
    .credentials()
    .map_err(|e| CriError::invalid(RPC, field, e.to_string()))
}

/// `host[:port]` of a server address given as a host, `host/path` or a URL.
fn server_host(addr: &str) -> &str {
    let a = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    a.split('/').next().unwrap_or(a)
}

/// Which credentials a pull uses, as a key that does not hold them.
fn fingerprint(c: Option<&Credentials>) -> String {
    let mut h = Sha256::new();
    match c {
        None => h.update(b"none"),
        Some(Credentials::Basic { username, password }) => {
            h.update(b"basic\0");
            h.update(username.as_bytes());
            h.update(b"\0");
            h.update(password.as_bytes());
        }
        Some(Credentials::IdentityToken(t)) => {
            h.update(b"identity\0");
            h.update(t.as_bytes());
        }
        Some(Credentials::RegistryToken(t)) => {
            h.update(b"registry\0");
            h.update(t.as_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

/// Turns the pull's progress lines into log events.
struct LogLines {
    image: String,
    buf: Vec<u8>,
}

impl LogLines {
    fn new(image: &str) -> Self {
        Self {
            image: image.to_string(),
            buf: Vec::new(),
        }
    }
}

impl Write for LogLines {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            tracing::info!(image = %self.image, "{}", line.trim_end());
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(f: impl FnOnce(&mut cri::AuthConfig)) -> cri::AuthConfig {
        let mut a = cri::AuthConfig::default();
        f(&mut a);
        a
    }

    #[test]
    fn auth_config_gives_credentials_for_its_server_only() {
        let a = auth(|a| {
            a.username = "u".into();
            a.password = "p".into();
            a.server_address = "https://reg.local:5000/v2/".into();
        });
        assert!(matches!(
            credentials_for(Some(&a), "reg.local:5000"),
            Ok(Some(Credentials::Basic { .. }))
        ));
        assert!(matches!(credentials_for(Some(&a), "other:5000"), Ok(None)));
        let hub = auth(|a| {
            a.auth = "dTpw".into(); // u:p
            a.server_address = "https://index.docker.io/v1/".into();
        });
        assert!(matches!(
            credentials_for(Some(&hub), "docker.io"),
            Ok(Some(Credentials::Basic { .. }))
        ));
        let token = auth(|a| a.identity_token = "refresh".into());
        assert!(matches!(
            credentials_for(Some(&token), "r"),
            Ok(Some(Credentials::IdentityToken(t))) if t == "refresh"
        ));
        let bearer = auth(|a| a.registry_token = "bearer".into());
        assert!(matches!(
            credentials_for(Some(&bearer), "r"),
            Ok(Some(Credentials::RegistryToken(t))) if t == "bearer"
        ));
        let bad = auth(|a| a.auth = "%%%".into());
        let e = credentials_for(Some(&bad), "r").expect_err("not base64");
        assert!(e.to_string().contains("auth.auth"), "{e}");
        assert!(matches!(credentials_for(None, "r"), Ok(None)));
    }

    #[test]
    fn fingerprints_differ_by_credentials() {
        let a = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let b = Credentials::Basic {
            username: "u".into(),
            password: "q".into(),
        };
        assert_ne!(fingerprint(Some(&a)), fingerprint(Some(&b)));
        assert_ne!(fingerprint(Some(&a)), fingerprint(None));
    }
}
