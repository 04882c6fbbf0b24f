//! The node's credentials end to end: `berth node` started with only a bootstrap token
//! kubeconfig gets its client certificate through a CSR, registers with it, rotates it
//! while running, and goes on past the first certificate's expiry; stopped, its Lease goes
//! stale.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::TestEnv;
use berth_integration_tests::apiserver::{ApiServer, Options};
use berth_integration_tests::cluster::Cluster;
use berth_integration_tests::kubelet::{Kubelet, NODE, RuntimeKind};

const CSRS: &str = "certificatesigningrequests.certificates.k8s.io";
const LEASES: &str = "leases.coordination.k8s.io";

/// The renewTime of the node's Lease.
fn renew_time(c: &Cluster) -> Option<String> {
    c.api
        .get(LEASES, "kube-node-lease", NODE)
        .and_then(|l| l["spec"]["renewTime"].as_str().map(String::from))
}

fn node_ready(c: &Cluster) -> bool {
    c.api.get("nodes", "", NODE).is_some_and(|n| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|x| x["type"] == "Ready" && x["status"] == "True")
        })
    })
}

pub fn bootstrap_rotation_and_stale_lease(runtime: RuntimeKind) -> anyhow::Result<()> {
    const VALIDITY: Duration = Duration::from_secs(20);
    let env = TestEnv::new()?;
    let opts = Options {
        auto_approve_csrs: true,
        cert_validity: VALIDITY,
        ..Default::default()
    };
    let c = Cluster::start(&env, opts)?;
    let dir = env.subdir("node-creds")?;
    let boot = dir.join("bootstrap.kubeconfig");
    ApiServer::write_file(&boot, &c.api.bootstrap_kubeconfig()?)?;
    let kubeconfig = dir.join("kubelet.kubeconfig");
    let pki = dir.join("pki");
    let args = vec![
        "--bootstrap-kubeconfig".to_string(),
        boot.display().to_string(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--cert-dir".into(),
        pki.display().to_string(),
    ];
    let t0 = Instant::now();
    let mut k = Kubelet::start_node(&env, runtime, &[], args)?;
    let fail = |what: &str, k: &Kubelet| -> anyhow::Error {
        anyhow::anyhow!("{what}\nkubelet log (tail):\n{}", k.log_tail(60))
    };
    c.wait(
        "the Node Ready with the issued certificate",
        Duration::from_secs(60),
        || node_ready(&c),
    )
    .map_err(|e| {
        let node = c.api.get("nodes", "", NODE).unwrap_or_default();
        fail(&format!("{e}: {}", node["status"]["conditions"]), &k)
    })?;
    // What bootstrap left on disk, as kubelet leaves it.
    ensure!(kubeconfig.exists(), "no kubeconfig written");
    let current = pki.join("kubelet-client-current.pem");
    let target = std::fs::read_link(&current).context("kubelet-client-current.pem link")?;
    let meta = std::fs::metadata(pki.join(&target))?;
    use std::os::unix::fs::PermissionsExt;
    ensure!(
        meta.permissions().mode() & 0o077 == 0,
        "the key is readable by others"
    );
    let by = |user: &str| {
        c.api
            .list(CSRS, None)
            .iter()
            .filter(|r| {
                r["spec"]["username"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(user)
            })
            .count()
    };
    ensure!(
        by("system:bootstrap:") == 1,
        "bootstrap CSRs: {}",
        by("system:bootstrap:")
    );
    // Rotation at 70-90% of 20 s, by the node itself, with the daemon running.
    c.wait(
        "a rotation CSR by the node",
        Duration::from_secs(30),
        || by(&format!("system:node:{NODE}")) >= 1,
    )
    .map_err(|e| fail(&e.to_string(), &k))?;
    // Past the first certificate's expiry the node still renews its Lease.
    let expiry = t0 + VALIDITY + Duration::from_secs(2);
    std::thread::sleep(expiry.saturating_duration_since(Instant::now()));
    let before = renew_time(&c).context("no Lease")?;
    c.wait(
        "the Lease renewed after the first certificate expired",
        Duration::from_secs(20),
        || renew_time(&c).is_some_and(|t| t != before),
    )
    .map_err(|e| fail(&e.to_string(), &k))?;
    ensure!(node_ready(&c), "the Node is not Ready");
    // Stopped, berth renews nothing: the Lease goes stale.
    k.stop(Duration::from_secs(30))?;
    let last = renew_time(&c).context("no Lease")?;
    std::thread::sleep(Duration::from_secs(15));
    if renew_time(&c) != Some(last.clone()) {
        bail!(
            "the Lease was renewed after berth stopped ({last} -> {:?})",
            renew_time(&c)
        );
    }
    Ok(())
}
