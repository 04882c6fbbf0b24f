//! A control plane for node tests: the test API server ([`crate::apiserver`]) served
//! inside the test's "host" netns, where the kubelet under test (`berth node`) runs, and a
//! tokio runtime whose threads live there too, so the test's own API calls reach it.
//!
//! Tests are plain threads; [`Cluster::run`] runs an async block (kube-rs calls) on the
//! cluster's runtime and waits for it.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::Api;

use crate::TestEnv;
use crate::apiserver::{ApiServer, Options};
use crate::kubelet::Pod;

/// The API server and a runtime to talk to it from the test.
pub struct Cluster {
    pub api: std::sync::Arc<ApiServer>,
    client: kube::Client,
    // Dropped last: the server's tasks run on it.
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts the API server on the loopback of the test's "host" netns.
    pub fn start(env: &TestEnv, opts: Options) -> anyhow::Result<Cluster> {
        // Threads inherit their creator's netns: every worker of this runtime (and every
        // socket its tasks open) lives in the host netns.
        let rt = env.host.run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })?;
        let api = rt
            .block_on(rt.spawn(ApiServer::start(opts)))
            .context("API server task")??;
        let api = std::sync::Arc::new(api);
        let a = api.clone();
        let client = rt
            .block_on(rt.spawn(async move { a.client().await }))
            .context("client task")??;
        Ok(Cluster { api, client, rt })
    }

    /// Runs `f` (given an admin client) on the cluster's runtime and returns its output.
    pub fn run<T, F>(&self, f: impl FnOnce(kube::Client) -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let fut = f(self.client.clone());
        self.rt
            .block_on(self.rt.spawn(fut))
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Writes a kubeconfig for node `node` (client certificate `system:node:<node>`)
    /// under `dir`; returns `berth node`'s flags for it.
    pub fn node_args(&self, dir: &Path, node: &str) -> anyhow::Result<Vec<String>> {
        let path = dir.join("kubelet.kubeconfig");
        let text = self.api.node_kubeconfig(node)?;
        ApiServer::write_file(&path, &text)?;
        Ok(vec!["--kubeconfig".into(), path.display().to_string()])
    }

    /// Pod `ns/name` as the API server holds it.
    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.api.get("pods", ns, name).map(Pod)
    }

    /// Creates `pod` (JSON) through the API as an admin would.
    pub fn create_pod(&self, ns: &str, pod: serde_json::Value) -> anyhow::Result<Pod> {
        use k8s_openapi::api::core::v1::Pod as ApiPod;
        let ns = ns.to_string();
        let pod: ApiPod = serde_json::from_value(pod).context("pod JSON")?;
        let made = self
            .run(move |c| async move {
                Api::<ApiPod>::namespaced(c, &ns)
                    .create(&Default::default(), &pod)
                    .await
            })
            .context("create the pod")?;
        Ok(Pod(serde_json::to_value(made)?))
    }

    /// Waits until pod `ns/name` in the API satisfies `ok`; fails with its last state.
    pub fn wait_pod(
        &self,
        ns: &str,
        name: &str,
        ok: impl Fn(&Pod) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Pod> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.pod(ns, name);
            if let Some(p) = &p
                && ok(p)
            {
                return Ok(p.clone());
            }
            if Instant::now() >= deadline {
                bail!(
                    "pod {ns}/{name}: condition not met within {timeout:?}; last:\n{}",
                    p.map(|p| serde_json::to_string_pretty(&p.0["status"]).unwrap_or_default())
                        .unwrap_or_else(|| "(no such pod)".into())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `ok` holds; fails with `what`.
    pub fn wait(&self, what: &str, timeout: Duration, ok: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !ok() {
            if Instant::now() >= deadline {
                bail!("{what}: not within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}
