//! The URL source (pkg/kubelet/config/http.go): the manifest stream at a URL, fetched every
//! `url_period`. As kubelet: a body larger than 10 MiB or a status other than 200 is a
//! failed fetch, which keeps the last good set (and says so in its errors); an empty body
//! is an empty set.
//!
//! Owns one task per URL; it only fetches and sends what it read.

use std::time::Duration;

use tokio::sync::mpsc;

use super::error::ManifestError;
use super::parse::{SourceSet, parse_documents};

/// kubelet's maxConfigLength.
const MAX_CONFIG_LENGTH: usize = 10 * 1024 * 1024;

/// kubelet's client timeout for manifest URLs.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(
    url: String,
    node_name: String,
    period: Duration,
    client: reqwest::Client,
    id: usize,
    tx: mpsc::UnboundedSender<(usize, SourceSet)>,
) {
    let mut last_body: Option<Vec<u8>> = None;
    let mut last_set = SourceSet::default();
    loop {
        let to_send = match fetch(&client, &url).await {
            Ok(body) => {
                // Parse again only when the bytes changed, as kubelet short-circuits.
                if last_body.as_deref() != Some(body.as_slice()) {
                    last_set = parse_documents(&url, &body, &node_name);
                    last_body = Some(body);
                }
                last_set.clone()
            }
            Err(detail) => {
                tracing::warn!(url = %url, "fetching manifests failed, keeping the last set: {detail}");
                let mut set = last_set.clone();
                set.errors.push(ManifestError::new(
                    &url,
                    "",
                    format!("fetch failed, kept the last set: {detail}"),
                ));
                set
            }
        };
        if tx.send((id, to_send)).is_err() {
            return;
        }
        tokio::time::sleep(period).await;
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{url}: {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_CONFIG_LENGTH {
            return Err(format!("body larger than {MAX_CONFIG_LENGTH} bytes"));
        }
    }
    Ok(body)
}

/// reqwest's own message is terse ("error sending request"): add its causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
