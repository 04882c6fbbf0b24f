//! Drives one pod through a CRI endpoint the way kubelet does, printing what the runtime
//! reports at each step: RunPodSandbox (with host port 8080 -> 80), CreateContainer and
//! StartContainer of an httpd image, the page fetched over TCP by pod IP and by host
//! port, an ExecSync, then StopPodSandbox and RemovePodSandbox. scripts/demo.sh runs it
//! against `berth cri`; any CRI runtime serving the image works.
//!
//! Usage: cri-demo <endpoint> <image> <log dir> <cgroup parent>

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::cri::{ContainerSpec, CriClient, PodSpec, api};

const PAGE: &str = "hello from a berth pod";

/// A line on stdout, the demo's report (a failed write ends the demo).
macro_rules! say {
    ($($t:tt)*) => {
        writeln!(std::io::stdout(), $($t)*)?
    };
}

/// One HTTP/1.0 GET of `/`; the body, once the server answers.
fn fetch(addr: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = || -> anyhow::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
            Ok(body.trim().to_string())
        };
        match attempt() {
            Ok(body) => return Ok(body),
            Err(e) if Instant::now() > deadline => return Err(e.context(format!("GET {addr}"))),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn step(what: &str) -> std::io::Result<()> {
    writeln!(std::io::stdout(), "\n== {what}")
}

async fn demo(c: &mut CriClient, image: &str, logs: PathBuf, cgroup: &str) -> anyhow::Result<()> {
    let v = c.version().await?;
    say!(
        "runtime {} {} (CRI {})",
        v.runtime_name,
        v.runtime_version,
        v.runtime_api_version
    );

    step("RunPodSandbox: pod default/demo, host port 8080 -> 80")?;
    let mut pod = PodSpec::new("demo", &logs, "");
    pod.cgroup_parent = format!("{cgroup}/pod{}", pod.uid);
    pod.port_mappings = vec![(8080, 80, api::Protocol::Tcp)];
    let pod_id = c.run_pod_sandbox(&pod.config()).await?;
    let st = c
        .pod_sandbox_status(&pod_id, false)
        .await?
        .status
        .context("no status")?;
    let ip = st
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .context("no pod IP")?;
    say!(
        "sandbox {} state {:?} ip {ip}",
        &pod_id[..12],
        api::PodSandboxState::try_from(st.state)?
    );

    let result = async {
        step("CreateContainer + StartContainer: busybox httpd")?;
        let spec = ContainerSpec::new("httpd", image, &[]);
        let cid = c
            .create_container(&pod_id, &spec.config(&pod), &pod.config())
            .await?;
        c.start_container(&cid).await?;
        let cs = c
            .container_status(&cid, false)
            .await?
            .status
            .context("no status")?;
        say!(
            "container {} state {:?} image {}",
            &cid[..12],
            api::ContainerState::try_from(cs.state)?,
            cs.image.map(|i| i.image).unwrap_or_default()
        );

        step("the node fetches the page over TCP")?;
        for addr in [format!("{ip}:80"), "127.0.0.1:8080".to_string()] {
            let body = fetch(&addr)?;
            say!("http://{addr}/ -> {body}");
            ensure!(body == PAGE, "unexpected page from {addr}: {body:?}");
        }

        step("ExecSync: wget inside the container")?;
        let out = c
            .exec_sync(
                &cid,
                &["/bin/busybox", "wget", "-qO-", "http://127.0.0.1/"],
                10,
            )
            .await?;
        let body = String::from_utf8_lossy(&out.stdout);
        say!("exit code {} stdout {}", out.exit_code, body.trim());
        ensure!(out.exit_code == 0 && body.trim() == PAGE, "{out:?}");

        step("ContainerStats")?;
        let s = c.container_stats(&cid).await?;
        say!(
            "memory working set {} bytes, cpu {} ns",
            s.memory
                .and_then(|m| m.working_set_bytes)
                .map_or(0, |v| v.value),
            s.cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map_or(0, |v| v.value)
        );
        anyhow::Ok(())
    }
    .await;

    step("StopPodSandbox + RemovePodSandbox")?;
    c.stop_pod_sandbox(&pod_id).await?;
    c.remove_pod_sandbox(&pod_id).await?;
    let left = c.list_pod_sandbox(None).await?;
    say!("sandboxes left: {}", left.len());
    result?;
    if !left.is_empty() {
        bail!("sandboxes left behind: {left:?}");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, image, logs, cgroup] = args.as_slice() else {
        bail!("usage: cri-demo <endpoint> <image> <log dir> <cgroup parent>");
    };
    let mut c = CriClient::wait_ready(endpoint, Duration::from_secs(30)).await?;
    demo(&mut c, image, PathBuf::from(logs), cgroup).await
}
