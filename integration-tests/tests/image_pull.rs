//! Registry pulls against Debian's docker-registry: plain HTTP, TLS with the test CA,
//! basic auth (flag and auth file; a wrong password is a clear error), a multi-arch
//! index, mirrors, digest pins, a corrupt blob, and a pull killed half-way.

#[path = "image_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_integration_tests::fixtures::{self, Image, OciLayout};
use berth_integration_tests::registry::{Mode, PASSWORD, Registry, USER};
use berth_integration_tests::{TestEnv, require_root};
use support::Store;

fn layout(env: &TestEnv, image: &Image) -> OciLayout {
    fixtures::build(
        image,
        &env.subdir(&format!("layout-{}", image.name()))
            .expect("dir"),
    )
    .expect("fixture")
}

fn plain_http_config(hosts: &[&str]) -> String {
    let mut y = String::from("registries:\n");
    for h in hosts {
        y.push_str(&format!("  \"{h}\":\n    plainHttp: true\n"));
    }
    y
}

#[test]
fn pull_over_plain_http_by_tag_and_digest_deduplicated() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::Http).expect("registry");
    let img = layout(&env, &Image::Httpd { port: 8080 });
    let reference = reg.push(&img, "httpd", "v1").expect("push");
    let mut store = Store::new(&env);
    // Without the plain-HTTP setting berth speaks TLS and fails clearly.
    let err = store.fails(&["pull", &reference]);
    assert!(err.contains(&reg.host()), "error names the registry: {err}");
    store.set_registry_config(&plain_http_config(&[&reg.host()]));
    // Two pulls at once: both succeed, each layer stored once.
    let spawn = || {
        store
            .command(&["pull", &reference])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn pull")
    };
    let (a, b) = (spawn(), spawn());
    let a = a.wait_with_output().expect("pull a");
    let b = b.wait_with_output().expect("pull b");
    // Each layer was fetched by one of them; the other found it done.
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let fetched = logs.lines().filter(|l| l.contains(": done (")).count();
    let present = logs
        .lines()
        .filter(|l| l.contains(": already present"))
        .count();
    assert_eq!(
        (fetched, present),
        (2, 2),
        "each of the 2 layers fetched once: {logs}"
    );
    for o in [&a, &b] {
        assert!(
            o.status.success(),
            "pull failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), img.config_digest);
    }
    let rec = store.inspect(&reference);
    assert_eq!(rec["id"], img.config_digest.as_str());
    assert_eq!(rec["manifest"], img.manifest_digest.as_str());
    assert_eq!(rec["config"]["cmd"][0], "/bin/httpd");
    assert_eq!(rec["config"]["workingDir"], "/");
    let diff_ids: Vec<_> = rec["diffIds"]
        .as_array()
        .expect("diff ids")
        .iter()
        .map(|d| d.as_str().expect("str").to_string())
        .collect();
    assert_eq!(diff_ids, img.diff_ids);
    assert_eq!(
        store.entries("snapshots").len(),
        2,
        "one snapshot per layer"
    );
    let digest_ref = format!("{}/httpd@{}", reg.host(), img.manifest_digest);
    assert_eq!(
        store.inspect(&digest_ref)["id"],
        img.config_digest.as_str(),
        "repo digest lookup"
    );
    let id_prefix = &img.config_digest[7..19];
    assert_eq!(
        store.inspect(id_prefix)["id"],
        img.config_digest.as_str(),
        "ID prefix lookup"
    );
    // A digest-pinned pull into a fresh store; a wrong pin fails.
    let mut pinned = Store::new_like(&store);
    pinned.root = env.dir().join("store-pinned");
    assert_eq!(pinned.ok(&["pull", &digest_ref]).trim(), img.config_digest);
    let wrong = format!("{}/httpd@sha256:{}", reg.host(), "0".repeat(64));
    pinned.fails(&["pull", &wrong]);
    assert!(store.ok(&["verify"]).starts_with("ok"));
    assert!(store.ok(&["ls"]).contains(&format!("{}/httpd", reg.host())));
}

#[test]
fn pull_over_tls_with_the_test_ca() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::Tls).expect("registry");
    let img = layout(&env, &Image::Busybox);
    let reference = reg.push(&img, "busybox", "latest").expect("push");
    let mut store = Store::new(&env);
    let err = store.fails(&["pull", &reference]);
    assert!(
        err.to_lowercase().contains("certificate"),
        "an unknown CA is a certificate error: {err}"
    );
    store.set_registry_config(&format!(
        "registries:\n  \"{}\":\n    caFiles: [\"{}\"]\n",
        reg.host(),
        reg.certs.join("ca.crt").display()
    ));
    assert_eq!(store.ok(&["pull", &reference]).trim(), img.config_digest);
}

#[test]
fn pull_with_basic_auth_and_a_wrong_password() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::TlsBasicAuth).expect("registry");
    let img = layout(&env, &Image::Busybox);
    let reference = reg.push(&img, "private/busybox", "1.0").expect("push");
    let mut store = Store::new(&env);
    store.set_registry_config(&format!(
        "registries:\n  \"{}\":\n    caFiles: [\"{}\"]\n",
        reg.host(),
        reg.certs.join("ca.crt").display()
    ));
    let err = store.fails(&["pull", &reference]);
    assert!(
        err.contains("authentication failed") && err.contains("none were given"),
        "no credentials: {err}"
    );
    let err = store.fails(&[
        "pull",
        "--creds",
        &format!("{USER}:wrong-password"),
        &reference,
    ]);
    assert!(
        err.contains("authentication failed") && err.contains("rejected the credentials"),
        "wrong password: {err}"
    );
    assert!(store.entries("snapshots").is_empty());
    assert_eq!(
        store
            .ok(&["pull", "--creds", &format!("{USER}:{PASSWORD}"), &reference])
            .trim(),
        img.config_digest
    );
    // The same from a docker-config-style file.
    let auth_file = env.dir().join("auth.json");
    let b64 = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.host()),
    )
    .expect("auth file");
    store.ok(&["rm", &reference]);
    assert_eq!(
        store
            .ok(&[
                "pull",
                "--auth-file",
                auth_file.to_str().expect("utf8"),
                &reference
            ])
            .trim(),
        img.config_digest
    );
}

#[test]
fn multi_arch_index_selects_linux_amd64_and_mirrors_serve_another_host() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::Http).expect("registry");
    let arm = layout(&env, &Image::Busybox);
    let amd = layout(&env, &Image::Httpd { port: 81 });
    let multi = env.subdir("multi").expect("dir");
    let index_digest = write_multi_arch_layout(&multi, &[(&arm, "arm64"), (&amd, "amd64")]);
    berth_integration_tests::util::run(
        std::process::Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:latest", multi.display()))
            .arg(format!("docker://{}/multi:latest", reg.host())),
    )
    .expect("push the index");
    let mut store = Store::new(&env);
    // Pulled through a mirror: the reference names a host that does not exist.
    store.set_registry_config(&format!(
        "registries:\n  registry.example.invalid:\n    mirrors: [\"{0}\"]\n  \"{0}\":\n    plainHttp: true\n",
        reg.host()
    ));
    let id = store.ok(&["pull", "registry.example.invalid/multi:latest"]);
    assert_eq!(
        id.trim(),
        amd.config_digest,
        "linux/amd64 chosen from the index"
    );
    let rec = store.inspect("registry.example.invalid/multi:latest");
    assert_eq!(
        rec["repoDigests"][0],
        format!("registry.example.invalid/multi@{index_digest}"),
        "repo digest is the index's"
    );
    assert_eq!(rec["platform"], "linux/amd64");
    let other = store.ok(&[
        "pull",
        "--platform",
        "linux/arm64",
        "registry.example.invalid/multi:latest",
    ]);
    assert_eq!(
        other.trim(),
        arm.config_digest,
        "--platform selects another entry"
    );
}

/// Writes an OCI layout whose `latest` is an index of the given images and platforms;
/// returns the index digest.
fn write_multi_arch_layout(dir: &Path, images: &[(&OciLayout, &str)]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let mut manifests = Vec::new();
    for (l, arch) in images {
        for e in std::fs::read_dir(l.dir.join("blobs/sha256"))
            .expect("read blobs")
            .flatten()
        {
            std::fs::copy(e.path(), blobs.join(e.file_name())).expect("copy blob");
        }
        let size = std::fs::metadata(blobs.join(&l.manifest_digest[7..]))
            .expect("manifest")
            .len();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": l.manifest_digest, "size": size,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
    }))
    .expect("index json");
    let hex = fixtures::sha256_hex(&index);
    std::fs::write(blobs.join(&hex), &index).expect("index blob");
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    format!("sha256:{hex}")
}

#[test]
fn a_blob_with_wrong_bytes_is_rejected_and_nothing_of_it_stored() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::Http).expect("registry");
    let img = layout(&env, &Image::Httpd { port: 82 });
    let reference = reg.push(&img, "corrupt", "latest").expect("push");
    // Corrupt the top layer's blob in the registry's storage, keeping its size.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(img.dir.join("blobs/sha256").join(&img.manifest_digest[7..]))
            .expect("manifest"),
    )
    .expect("json");
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let hex = &layer[7..];
    let data = reg.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).expect("registry blob");
    for b in bytes.iter_mut().skip(10) {
        *b ^= 0x5a;
    }
    std::fs::write(&data, &bytes).expect("corrupt blob");
    let mut store = Store::new(&env);
    store.set_registry_config(&plain_http_config(&[&reg.host()]));
    let err = store.fails(&["pull", &reference]);
    assert!(
        err.contains(&layer) && err.contains("expected"),
        "a digest mismatch naming the blob: {err}"
    );
    assert!(!store.blob(&layer).exists(), "the bad blob was stored");
    assert!(
        store.entries("content/ingest").is_empty(),
        "partial bytes left: {:?}",
        store.entries("content/ingest")
    );
    let chain = store.entries("snapshots");
    assert!(
        chain.iter().all(|n| !n.starts_with("tmp-")),
        "a temp unpack was left: {chain:?}"
    );
    assert!(
        !store.ok(&["ls", "-q"]).contains(&img.config_digest),
        "the image was recorded"
    );
    assert!(store.ok(&["verify"]).starts_with("ok"));
}

#[test]
fn a_pull_killed_half_way_resumes_and_the_store_verifies() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::Http).expect("registry");
    let img = layout(&env, &Image::RandomLayers { count: 1, mib: 8 });
    reg.push(&img, "big", "latest").expect("push");
    let proxy = slow_proxy(reg.addr, 2 << 20);
    let mut store = Store::new(&env);
    store.set_registry_config(&plain_http_config(&[&reg.host(), &proxy]));
    let mut child = store
        .command(&["pull", &format!("{proxy}/big:latest")])
        .spawn()
        .expect("spawn pull");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ingest = store.root.join("content/ingest");
    let partial = loop {
        let big = std::fs::read_dir(&ingest).ok().and_then(|rd| {
            rd.flatten()
                .find(|e| e.metadata().map(|m| m.len() > (2 << 20)).unwrap_or(false))
                .map(|e| e.path())
        });
        if let Some(p) = big {
            break p;
        }
        assert!(Instant::now() < deadline, "the pull never got going");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the pull finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL the pull");
    child.wait().expect("reap");
    let had = std::fs::metadata(&partial).expect("partial").len();
    assert!(
        store
            .entries("snapshots")
            .iter()
            .any(|n| n.starts_with("tmp-")),
        "the layer was being unpacked while it downloaded"
    );
    assert!(
        store.ok(&["ls", "-q"]).trim().is_empty(),
        "a killed pull recorded an image"
    );
    // Restarted straight from the registry: it resumes the partial blob and completes.
    let out = store.run(&["pull", &format!("{}/big:latest", reg.host())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restarted pull failed: {stderr}");
    assert!(
        stderr.contains("resuming an interrupted download"),
        "the pull started over instead of resuming ({had} bytes were there): {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        img.config_digest
    );
    assert!(store.ok(&["verify"]).starts_with("ok"));
    assert!(store.entries("content/ingest").is_empty());
    let temps: Vec<_> = store
        .entries("snapshots")
        .into_iter()
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(
        temps.is_empty(),
        "the killed pull's half unpack was not cleaned: {temps:?}"
    );
    let rec = store.inspect(&format!("{}/big:latest", reg.host()));
    let snap = store.snapshot(rec["chainIds"][0].as_str().expect("chain"));
    assert_eq!(
        std::fs::metadata(snap.join("random-0"))
            .expect("layer file")
            .len(),
        8 << 20
    );
}

/// A TCP proxy on 127.0.0.1 that forwards to `upstream`, sending its replies at about
/// `bytes_per_sec`. Returns `127.0.0.1:<port>`. Its threads end with the test process.
fn slow_proxy(upstream: std::net::SocketAddr, bytes_per_sec: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(up) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut c_read, mut up_write) = (
                conn.try_clone().expect("clone"),
                up.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut up_write);
            });
            let (mut up_read, mut c_write) = (up, conn);
            std::thread::spawn(move || {
                let chunk = 16 << 10;
                let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
                let mut buf = vec![0u8; chunk];
                while let Ok(n) = up_read.read(&mut buf) {
                    if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(pause);
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_dead_mirror_falls_back_to_the_registry() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let reg = Registry::start(env.id(), Mode::Http).expect("registry");
    let img = layout(&env, &Image::Busybox);
    let reference = reg.push(&img, "busybox", "latest").expect("push");
    // A port nothing listens on: connections are refused, retried, then given up.
    let dead = format!("127.0.0.1:{}", berth_integration_tests::util::free_port());
    let mut store = Store::new(&env);
    store.set_registry_config(&format!(
        "registries:\n  \"{0}\":\n    plainHttp: true\n    mirrors: [\"{dead}\"]\n  \"{dead}\":\n    plainHttp: true\n",
        reg.host()
    ));
    let out = store.run(&["pull", &reference]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull failed: {stderr}");
    assert!(
        stderr.contains(&format!("request to http://{dead}/"))
            && stderr.contains("trying the next"),
        "the dead mirror was tried first: {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        img.config_digest
    );
}
