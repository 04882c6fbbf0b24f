//! Kubelet cases that need more than the busybox fixtures: images pulled from a real
//! registry (imagePullPolicy Always pulls at every container start; a missing tag waits as
//! ErrImagePull, then ImagePullBackOff, until it is pushed), and the gRPC and HTTPS probes
//! against the `probe-server` fixture.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use berth_integration_tests::fixtures::{Image, OciLayout, build};
use berth_integration_tests::kubelet::{Kubelet, Pod, RuntimeKind};
use berth_integration_tests::registry::{Mode, Registry, make_test_ca};

use serde_json::{Value, json};

use super::{IDLE, apply, host_path, pod, running, shared_dir};

/// A container of image `image` (pulled by `policy`) running `script` in `sh -c`.
fn ctr(name: &str, image: &str, policy: &str, script: &str) -> Value {
    json!({"name": name, "image": image, "imagePullPolicy": policy,
           "command": ["sh", "-c", script]})
}

fn image_id(p: &Pod, name: &str) -> String {
    p.container(name)
        .and_then(|c| c["imageID"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The imageID a container of `layout` pulled from `repo` reports: the runtime's
/// ContainerStatus.image_ref, which containerd gives as the repo digest and berth's runtime
/// as the image ID (the config digest), as CRI leaves to the runtime.
fn want_image_id(k: &Kubelet, repo: &str, layout: &OciLayout) -> String {
    match k.runtime {
        RuntimeKind::Containerd => format!("{repo}@{}", layout.manifest_digest),
        RuntimeKind::Berth => layout.config_digest.clone(),
    }
}

fn waiting_message(p: &Pod, name: &str) -> String {
    p.container(name)
        .and_then(|c| c["state"]["waiting"]["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Starts a plain-HTTP registry in the test's "host" netns (where the kubelet and the
/// runtimes run) and has the kubelet restart knowing it: berth's image service reads
/// plainHttp from `--registry-config`; containerd's CRI plugin speaks plain HTTP to a
/// loopback registry by itself.
fn start_registry(k: &mut Kubelet) -> anyhow::Result<Registry> {
    let env = k.env();
    let reg = env.host.run(|| Registry::start(env.id(), Mode::Http))?;
    if k.runtime == RuntimeKind::Berth {
        let cfg = k.dir.join("registries.yaml");
        std::fs::write(
            &cfg,
            format!("registries:\n  \"{}\":\n    plainHttp: true\n", reg.host()),
        )?;
        k.restart_with_args(&["--registry-config".into(), cfg.display().to_string()])?;
    }
    Ok(reg)
}

fn push(k: &Kubelet, reg: &Registry, layout: &OciLayout, tag: &str) -> anyhow::Result<String> {
    k.env().host.run(|| reg.push(layout, "berth-test/app", tag))
}

pub fn image_pull_policy_always_pulls_from_the_registry(k: &mut Kubelet) -> anyhow::Result<()> {
    let reg = start_registry(k)?;
    let layouts = k.dir.join("registry-layouts");
    // Two different images (busybox, and busybox with /www): different manifests.
    let v1 = build(&Image::Busybox, &layouts.join("v1"))?;
    let v2 = build(&Image::Httpd { port: 8080 }, &layouts.join("v2"))?;
    ensure!(v1.manifest_digest != v2.manifest_digest && v1.config_digest != v2.config_digest);
    let image = push(k, &reg, &v1, "v1")?;
    let repo = image.rsplit_once(':').map(|(r, _)| r).context("repo")?;
    let t = Duration::from_secs(60);

    // Not on the node before: with Never the kubelet says so and starts nothing.
    apply(
        k,
        "never",
        &[pod(
            "never",
            json!({"containers": [ctr("c", &image, "Never", IDLE)]}),
        )],
    )?;
    let p = k.wait_for("never", |p| p.waiting_reason("c") == "ErrImageNeverPull", t)?;
    ensure!(
        waiting_message(&p, "c")
            == format!("Container image \"{image}\" is not present with pull policy of Never"),
        "message {:?}",
        waiting_message(&p, "c")
    );
    k.remove_manifest("never")?;
    k.wait_for("never", Pod::deleted, t)?;

    // Always: pulled, and the container reports the pulled manifest.
    let shared = shared_dir(k, "always")?;
    // Runs until the test asks it to exit (restartPolicy Always starts it again); each
    // start leaves whether /www (only in v2) is there.
    let script = "if [ -d /www ]; then echo v2; else echo v1; fi >> /shared/starts; \
                  while [ ! -e /shared/exit ]; do sleep 0.1; done; rm -f /shared/exit";
    let mut c = ctr("c", &image, "Always", script);
    c["volumeMounts"] = json!([{"name": "shared", "mountPath": "/shared"}]);
    apply(
        k,
        "always",
        &[pod(
            "always",
            json!({"containers": [c], "volumes": [host_path("shared", &shared)]}),
        )],
    )?;
    let p = k.wait_for("always", running("c"), t)?;
    let want1 = want_image_id(k, repo, &v1);
    ensure!(
        image_id(&p, "c") == want1,
        "imageID {:?}, want {want1}",
        image_id(&p, "c")
    );
    ensure!(
        p.container("c").map(|c| c["image"].clone()) == Some(json!(image)),
        "image {:?}",
        p.container("c").map(|c| c["image"].clone())
    );

    // The tag moves to another image; the next start of the container pulls it.
    push(k, &reg, &v2, "v1")?;
    std::fs::write(shared.join("exit"), "")?;
    let p = k.wait_for("always", |p| p.restarts("c") == 1 && p.running("c"), t)?;
    let want2 = want_image_id(k, repo, &v2);
    ensure!(
        image_id(&p, "c") == want2,
        "after the restart imageID {:?}, want {want2} (the tag's new manifest)",
        image_id(&p, "c")
    );
    let starts = super::lines(&shared.join("starts"));
    ensure!(starts == ["v1", "v2"], "the starts saw {starts:?}");

    // A tag the registry does not have: ErrImagePull, then ImagePullBackOff; once pushed,
    // the next retry pulls it and the pod runs.
    let late = format!("{repo}:late");
    apply(
        k,
        "late",
        &[pod(
            "late",
            json!({"containers": [ctr("c", &late, "IfNotPresent", IDLE)]}),
        )],
    )?;
    let p = k.wait_for("late", |p| p.waiting_reason("c") == "ErrImagePull", t)?;
    ensure!(p.phase() == "Pending", "phase {}", p.phase());
    ensure!(
        !waiting_message(&p, "c").is_empty(),
        "ErrImagePull has a message"
    );
    let p = k.wait_for("late", |p| p.waiting_reason("c") == "ImagePullBackOff", t)?;
    ensure!(
        waiting_message(&p, "c") == format!("Back-off pulling image \"{late}\""),
        "message {:?}",
        waiting_message(&p, "c")
    );
    ensure!(p.condition("Ready") == "False");
    push(k, &reg, &v1, "late")?;
    let p = k.wait_for("late", running("c"), Duration::from_secs(90))?;
    let want = want_image_id(k, repo, &v1);
    ensure!(
        image_id(&p, "c") == want,
        "imageID {:?}, want {want}",
        image_id(&p, "c")
    );
    ensure!(p.restarts("c") == 0, "a pull retry is not a restart");
    Ok(())
}

pub fn grpc_and_https_probes_against_a_container(k: &mut Kubelet) -> anyhow::Result<()> {
    let image = k.import_image(&Image::ProbeServer)?;
    let tls = shared_dir(k, "tls")?;
    // Any certificate does: kubelet does not verify an HTTPS probe's.
    make_test_ca(&tls)?;
    let flip = shared_dir(k, "flip")?;
    let server = |name: &str, args: &[&str], probe: Value| {
        json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
               "command": ["/bin/probe-server"], "args": args,
               "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true},
                                {"name": "flip", "mountPath": "/flip"}],
               "readinessProbe": probe})
    };
    let grpc_args = ["grpc", "9090", "/flip/not-serving"];
    let https_args = ["https", "8443", "/tls/server.crt", "/tls/server.key"];
    let volumes = json!([host_path("tls", &tls), host_path("flip", &flip)]);
    let every_second = |mut probe: Value| {
        probe["periodSeconds"] = json!(1);
        probe
    };
    apply(
        k,
        "probes",
        &[
            pod(
                "probes",
                json!({"containers": [
                    server("grpc", &grpc_args, every_second(json!({"grpc": {"port": 9090}}))),
                    server("https", &https_args,
                           every_second(json!({"httpGet": {"scheme": "HTTPS", "port": 8443, "path": "/"}}))),
                ], "volumes": volumes}),
            ),
            // The same servers, probed where they fail: a service reported NOT_SERVING,
            // and plain HTTP to the TLS port.
            pod(
                "probes-fail",
                json!({"containers": [
                    server("grpc", &grpc_args,
                           every_second(json!({"grpc": {"port": 9090, "service": "berth.test.Down"}}))),
                    server("https", &https_args,
                           every_second(json!({"httpGet": {"scheme": "HTTP", "port": 8443, "path": "/"}}))),
                ], "volumes": volumes}),
            ),
        ],
    )?;
    let t = Duration::from_secs(60);
    let p = k.wait_for("probes", Pod::ready, t)?;
    ensure!(p.condition("ContainersReady") == "True");
    let f = k.wait_for(
        "probes-fail",
        |p| p.running("grpc") && p.running("https"),
        t,
    )?;
    // Both failing probes have run (their failures are logged as Unhealthy events) and
    // several periods later the pod is still not ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    let failure_logged = || {
        k.log().lines().any(|l| {
            l.contains("probes-fail")
                && l.contains("Readiness probe failed: service unhealthy")
                && l.contains("NOT_SERVING")
        })
    };
    while !failure_logged() {
        ensure!(
            Instant::now() < deadline,
            "no NOT_SERVING readiness failure logged for probes-fail:\n{}",
            k.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let f = k.pod("probes-fail").unwrap_or(f);
    for c in ["grpc", "https"] {
        ensure!(
            f.container(c).map(|s| s["ready"].clone()) == Some(json!(false)),
            "probes-fail {c} ready: {:?}",
            f.container(c).map(|s| s["ready"].clone())
        );
    }
    ensure!(
        f.condition("Ready") == "False",
        "probes-fail Ready {}",
        f.condition("Ready")
    );
    ensure!(
        f.restarts("grpc") == 0 && f.restarts("https") == 0,
        "readiness failures restart nothing"
    );

    // The server switches to NOT_SERVING: the pod leaves Ready; back to SERVING: Ready.
    std::fs::write(flip.join("not-serving"), "")?;
    let p = k.wait_for("probes", |p| p.condition("Ready") == "False", t)?;
    ensure!(
        p.container("https").map(|s| s["ready"].clone()) == Some(json!(true)),
        "the https container stays ready"
    );
    ensure!(p.running("grpc") && p.restarts("grpc") == 0);
    std::fs::remove_file(flip.join("not-serving"))?;
    k.wait_for("probes", Pod::ready, t)?;
    Ok(())
}
