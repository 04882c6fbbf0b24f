//! `berth cri` driven through its socket with a tonic client built from cri-proto: the
//! ImageService against Debian's docker-registry (plain HTTP, TLS with the test CA,
//! basic auth), Version/Status/RuntimeConfig, UNIMPLEMENTED for the runtime calls not
//! served yet, bad requests, the socket's permissions, a stale socket, SIGKILL and
//! restart, SIGTERM (and the grace running calls get). The image cases also run against
//! containerd's CRI plugin (the peer), so the assertions encode containerd's behaviour;
//! where berth answers differently on purpose, the case says so for each peer.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use berth_integration_tests::containerd::Containerd;
use berth_integration_tests::fixtures::{self, Image, OciLayout};
use berth_integration_tests::registry::{Mode, PASSWORD, Registry, USER};
use berth_integration_tests::util::{run, workspace_bin};
use berth_integration_tests::{TestEnv, require_root};
use cri_proto::v1 as cri;
use cri_proto::{ImageServiceClient, RuntimeServiceClient};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

/// Which runtime answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Berth,
    Containerd,
}

/// A CRI client on one socket.
#[derive(Debug, Clone)]
struct Cri {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

/// Connects to the CRI on the unix socket `sock` (the address in the URI is unused).
async fn connect(sock: &Path) -> anyhow::Result<Cri> {
    let sock = sock.to_path_buf();
    let channel = Endpoint::try_from("http://[::1]:1")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                let s = tokio::net::UnixStream::connect(sock).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await?;
    Ok(Cri {
        rt: RuntimeServiceClient::new(channel.clone()),
        img: ImageServiceClient::new(channel),
    })
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

impl Cri {
    async fn pull(
        &mut self,
        image: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String, tonic::Status> {
        let r = self
            .img
            .pull_image(cri::PullImageRequest {
                image: spec(image),
                auth,
                sandbox_config: None,
            })
            .await?;
        Ok(r.into_inner().image_ref)
    }

    async fn list(&mut self, filter: Option<&str>) -> Vec<cri::Image> {
        let req = cri::ListImagesRequest {
            filter: filter.map(|f| cri::ImageFilter { image: spec(f) }),
        };
        let mut images = self
            .img
            .list_images(req)
            .await
            .expect("ListImages")
            .into_inner()
            .images;
        images.sort_by(|a, b| a.id.cmp(&b.id));
        images
    }

    async fn status(
        &mut self,
        image: &str,
        verbose: bool,
    ) -> Result<cri::ImageStatusResponse, tonic::Status> {
        Ok(self
            .img
            .image_status(cri::ImageStatusRequest {
                image: spec(image),
                verbose,
            })
            .await?
            .into_inner())
    }

    async fn remove(&mut self, image: &str) -> Result<(), tonic::Status> {
        self.img
            .remove_image(cri::RemoveImageRequest { image: spec(image) })
            .await
            .map(|_| ())
    }
}

/// `berth cri` on a socket in the test's temp dir, with its own state root.
struct BerthCri {
    child: Option<Child>,
    sock: PathBuf,
    log: PathBuf,
    args: Vec<String>,
}

impl BerthCri {
    fn start(env: &TestEnv, sock: &Path, root: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let mut args = vec![
            "cri".to_string(),
            "--listen".into(),
            format!("unix://{}", sock.display()),
            "--root".into(),
            root.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let mut b = BerthCri {
            child: None,
            sock: sock.to_path_buf(),
            log: root.with_extension("log"),
            args,
        };
        b.spawn(env)?;
        Ok(b)
    }

    fn spawn(&mut self, env: &TestEnv) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = env
            .host
            .command(workspace_bin("berth").to_str().context("utf-8 path")?)
            .env(berth_integration_tests::util::ID_ENV, env.id())
            .env("BERTH_LOG", "info")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn berth cri")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until Version answers on the socket.
    async fn wait_up(&mut self) -> anyhow::Result<Cri> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(st) = c.try_wait()?
            {
                anyhow::bail!("berth cri exited ({st}): {}", self.log());
            }
            if let Ok(mut c) = connect(&self.sock).await
                && c.rt.version(cri::VersionRequest::default()).await.is_ok()
            {
                return Ok(c);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("berth cri did not answer: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).expect("kill");
        let st = c.wait().expect("wait");
        self.child = None;
        st
    }
}

impl Drop for BerthCri {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a runtime must report for an image built from a fixture layout.
#[derive(Debug, Clone)]
struct Expect {
    id: String,
    tag: String,
    repo_digest: String,
    size: u64,
    chain_id: String,
    user: String,
}

fn blob(layout: &OciLayout, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(layout.dir.join("blobs/sha256").join(hex)).expect("blob")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Sets the image config's `User` in a layout, rewriting config, manifest and index.
fn set_user(layout: &mut OciLayout, user: &str) {
    let blobs = layout.dir.join("blobs/sha256");
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).expect("write blob");
        d
    };
    let mut config: Value =
        serde_json::from_slice(&blob(layout, &layout.config_digest)).expect("config");
    config["config"]["User"] = Value::from(user);
    let config = serde_json::to_vec(&config).expect("json");
    let config_digest = put(&config);
    let mut manifest: Value =
        serde_json::from_slice(&blob(layout, &layout.manifest_digest)).expect("manifest");
    manifest["config"]["digest"] = Value::from(config_digest.as_str());
    manifest["config"]["size"] = Value::from(config.len());
    let manifest = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = put(&manifest);
    let index_path = layout.dir.join("index.json");
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("index");
    index["manifests"][0]["digest"] = Value::from(manifest_digest.as_str());
    index["manifests"][0]["size"] = Value::from(manifest.len());
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("index");
    layout.config_digest = config_digest;
    layout.manifest_digest = manifest_digest;
}

fn expect(layout: &OciLayout, reference: &str) -> Expect {
    let manifest_bytes = blob(layout, &layout.manifest_digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest");
    let layers: u64 = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("size"))
        .sum();
    let config = blob(layout, &layout.config_digest);
    let mut chain = layout.diff_ids[0].clone();
    for d in &layout.diff_ids[1..] {
        chain = sha256(format!("{chain} {d}").as_bytes());
    }
    let user = serde_json::from_slice::<Value>(&config).expect("config")["config"]["User"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = reference.rsplit_once(':').expect("tagged").0;
    Expect {
        id: layout.config_digest.clone(),
        tag: reference.to_string(),
        repo_digest: format!("{name}@{}", layout.manifest_digest),
        size: manifest_bytes.len() as u64 + config.len() as u64 + layers,
        chain_id: chain,
        user,
    }
}

/// Checks one CRI image against what the layout says.
fn check_image(img: &cri::Image, e: &Expect) {
    assert_eq!(img.id, e.id, "id");
    assert_eq!(img.repo_tags, vec![e.tag.clone()], "repo tags");
    assert_eq!(
        img.repo_digests,
        vec![e.repo_digest.clone()],
        "repo digests"
    );
    assert_eq!(
        img.size, e.size,
        "size: manifest + config + compressed layers"
    );
    let name = e.user.split(':').next().unwrap_or_default();
    match name.parse::<i64>() {
        Ok(uid) => {
            assert_eq!(img.uid, Some(cri::Int64Value { value: uid }), "uid");
            assert_eq!(img.username, "", "username with a numeric user");
        }
        Err(_) => {
            assert_eq!(img.uid, None, "uid with a named user");
            assert_eq!(img.username, name, "username");
        }
    }
    assert_eq!(img.spec, None, "spec (containerd leaves it unset)");
    assert!(!img.pinned, "pinned");
}

fn basic(user: &str, password: &str) -> Option<cri::AuthConfig> {
    Some(cri::AuthConfig {
        username: user.into(),
        password: password.into(),
        ..Default::default()
    })
}

/// Registries (plain HTTP, and TLS with basic auth) in the test's "host" netns, each
/// with one image whose config names a user.
struct Fixture {
    http: Registry,
    auth: Registry,
    /// `<http host>/app:v1`, config User "1000:1000".
    app: Expect,
    /// `<auth host>/private/busybox:1.0`, config User "nobody".
    private: Expect,
    /// `<http host>/multi:v1`, an index of an arm64 and an amd64 image (no User): the
    /// amd64 one is pulled, and the index counts in its size.
    multi: Expect,
}

fn fixture(env: &TestEnv) -> Fixture {
    let dir = env.subdir("layouts").expect("dir");
    let mut app = fixtures::build(&Image::Httpd { port: 8080 }, &dir.join("app")).expect("fx");
    set_user(&mut app, "1000:1000");
    let mut private = fixtures::build(&Image::Busybox, &dir.join("busybox")).expect("fixture");
    set_user(&mut private, "nobody");
    let arm = fixtures::build(&Image::Busybox, &dir.join("arm")).expect("fixture");
    let amd = fixtures::build(
        &Image::Exit {
            code: 3,
            after_ms: 0,
        },
        &dir.join("amd"),
    )
    .expect("fixture");
    let multi_dir = dir.join("multi");
    let index = write_index(&multi_dir, &[(&arm, "arm64"), (&amd, "amd64")]);
    // Both registries and the pushes run in the "host" netns, where the peers run.
    env.host.run(|| {
        let http = Registry::start(env.id(), Mode::Http).expect("registry");
        let auth = Registry::start(env.id(), Mode::TlsBasicAuth).expect("registry");
        let app_ref = http.push(&app, "app", "v1").expect("push");
        let private_ref = auth.push(&private, "private/busybox", "1.0").expect("push");
        let multi_ref = format!("{}/multi:v1", http.host());
        run(Command::new("skopeo")
            .args(["copy", "--all", "--quiet", "--insecure-policy"])
            .arg("--dest-tls-verify=false")
            .arg(format!("oci:{}:latest", multi_dir.display()))
            .arg(format!("docker://{multi_ref}")))
        .expect("push the index");
        let mut multi = expect(&amd, &multi_ref);
        multi.repo_digest = format!("{}/multi@{}", http.host(), index.0);
        multi.size += index.1;
        Fixture {
            app: expect(&app, &app_ref),
            private: expect(&private, &private_ref),
            multi,
            http,
            auth,
        }
    })
}

/// Writes an OCI layout in `dir` whose `latest` is an index of `images` (layout, arch);
/// returns the index's digest and size.
fn write_index(dir: &Path, images: &[(&OciLayout, &str)]) -> (String, u64) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let mut manifests = Vec::new();
    for (l, arch) in images {
        for e in std::fs::read_dir(l.dir.join("blobs/sha256"))
            .expect("blobs")
            .flatten()
        {
            std::fs::copy(e.path(), blobs.join(e.file_name())).expect("copy blob");
        }
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": l.manifest_digest, "size": blob(l, &l.manifest_digest).len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("json");
    let digest = sha256(&index);
    std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), &index).expect("index");
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    (digest, index.len() as u64)
}

/// berth's per-registry settings for the fixture.
fn berth_registry_config(env: &TestEnv, f: &Fixture) -> PathBuf {
    let p = env.dir().join("registries.yaml");
    std::fs::write(
        &p,
        format!(
            "registries:\n  \"{}\":\n    plainHttp: true\n  \"{}\":\n    caFiles: [\"{}\"]\n",
            f.http.host(),
            f.auth.host(),
            f.auth.certs.join("ca.crt").display()
        ),
    )
    .expect("registries.yaml");
    p
}

/// containerd's hosts.toml dir for the fixture.
fn containerd_hosts(dir: &Path, f: &Fixture) -> PathBuf {
    let certs = dir.join("certs.d");
    for (host, scheme, ca) in [
        (f.http.host(), "http", None),
        (
            f.auth.host(),
            "https",
            Some(f.auth.certs.join("ca.crt").display().to_string()),
        ),
    ] {
        let d = certs.join(&host);
        std::fs::create_dir_all(&d).expect("hosts dir");
        let mut t = format!(
            "server = \"{scheme}://{host}\"\n[host.\"{scheme}://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        if let Some(ca) = ca {
            t.push_str(&format!("  ca = \"{ca}\"\n"));
        }
        std::fs::write(d.join("hosts.toml"), t).expect("hosts.toml");
    }
    certs
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The image cases, the same for both peers.
async fn image_cases(peer: Peer, c: &mut Cri, f: &Fixture) {
    let (app, private) = (&f.app, &f.private);

    // Pulls: anonymous from the auth registry fails and names it; a wrong password fails;
    // username/password and the base64 `auth` field both work.
    let e = c
        .pull(&private.tag, None)
        .await
        .expect_err("no credentials");
    assert!(e.message().contains(&f.auth.host()), "{peer:?}: {e:?}");
    let e = c
        .pull(&private.tag, basic(USER, "wrong"))
        .await
        .expect_err("wrong password");
    assert!(e.message().contains(&f.auth.host()), "{peer:?}: {e:?}");
    match peer {
        Peer::Berth => assert_eq!(e.code(), Code::PermissionDenied, "{e:?}"),
        Peer::Containerd => assert_eq!(e.code(), Code::Unknown, "{e:?}"),
    }
    let id = c
        .pull(&private.tag, basic(USER, PASSWORD))
        .await
        .expect("pull with username/password");
    assert_eq!(id, private.id, "{peer:?}: image_ref is the image ID");
    let b64 = cri::AuthConfig {
        auth: base64(&format!("{USER}:{PASSWORD}")),
        ..Default::default()
    };
    assert_eq!(
        c.pull(&private.tag, Some(b64))
            .await
            .expect("pull with auth"),
        private.id
    );
    assert_eq!(c.pull(&app.tag, None).await.expect("plain HTTP"), app.id);
    assert_eq!(
        c.pull(&f.multi.tag, None).await.expect("through an index"),
        f.multi.id,
        "{peer:?}: the host's platform (amd64) is chosen"
    );
    // Credentials are sent only to the server they name.
    let for_server = |server: String| cri::AuthConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        server_address: server,
        ..Default::default()
    };
    let other = for_server(format!("https://{}", f.http.host()));
    let e = c
        .pull(&private.tag, Some(other))
        .await
        .expect_err("other server");
    assert!(e.message().contains(&f.auth.host()), "{peer:?}: {e:?}");
    let this = for_server(format!("https://{}", f.auth.host()));
    assert_eq!(
        c.pull(&private.tag, Some(this)).await.expect("its server"),
        private.id
    );

    // List and status report both images as containerd does.
    let images = c.list(None).await;
    assert_eq!(images.len(), 3, "{peer:?}: {images:?}");
    for (img, e) in images.iter().zip(sorted(vec![app, private, &f.multi])) {
        check_image(img, e);
    }
    let streamed = c
        .img
        .stream_images(cri::StreamImagesRequest { filter: None })
        .await;
    match peer {
        Peer::Berth => {
            let mut stream = streamed.expect("StreamImages").into_inner();
            let mut all = Vec::new();
            while let Some(batch) = stream.message().await.expect("stream") {
                all.extend(batch.images);
            }
            all.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(all, images, "StreamImages carries ListImages' answer");
        }
        // containerd 1.6 predates the streaming list calls.
        Peer::Containerd => assert_eq!(streamed.expect_err("1.6").code(), Code::Unimplemented),
    }
    let filtered = c.list(Some(&app.tag)).await;
    match peer {
        // berth reads the filter as CRI-O does: the one image it names.
        Peer::Berth => {
            assert_eq!(filtered.len(), 1);
            check_image(&filtered[0], app);
            assert!(c.list(Some("no/such:image")).await.is_empty());
        }
        // containerd ignores ListImages' filter.
        Peer::Containerd => assert_eq!(filtered.len(), 3),
    }
    for name in [
        app.tag.clone(),
        app.id.clone(),
        app.repo_digest.clone(),
        app.id[7..19].to_string(),
    ] {
        let st = c.status(&name, false).await.expect("ImageStatus");
        check_image(st.image.as_ref().expect("found"), app);
        assert!(st.info.is_empty(), "no info unless verbose");
    }
    let st = c.status(&private.tag, true).await.expect("verbose");
    let info: Value = serde_json::from_str(&st.info["info"]).expect("info JSON");
    assert_eq!(info["chainID"], private.chain_id.as_str(), "{peer:?}");
    assert_eq!(info["imageSpec"]["config"]["User"], "nobody", "{peer:?}");
    assert_eq!(info["imageSpec"]["rootfs"]["type"], "layers", "{peer:?}");
    let missing = c.status("no/such:image", false).await.expect("status");
    assert!(
        missing.image.is_none(),
        "{peer:?}: unknown image is an empty answer"
    );

    // Bad requests.
    let e = c
        .pull("UPPER/Case:x", None)
        .await
        .expect_err("bad reference");
    assert!(e.message().contains("UPPER/Case:x"), "{peer:?}: {e:?}");
    let e = c
        .pull(&format!("{}/app:nope", f.http.host()), None)
        .await
        .expect_err("missing tag");
    assert_eq!(e.code(), Code::NotFound, "{peer:?}: {e:?}");
    match peer {
        Peer::Berth => {
            assert_eq!(e.code(), Code::NotFound);
            let e = c.pull("UPPER/Case:x", None).await.expect_err("bad");
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains("image.image"), "{e:?}");
            for e in [
                c.status("", false).await.expect_err("empty status"),
                c.remove("").await.expect_err("empty remove"),
                c.pull("", None).await.expect_err("empty pull"),
            ] {
                assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
                assert!(e.message().contains("image.image"), "{e:?}");
            }
            let bad_auth = cri::AuthConfig {
                auth: "%%%".into(),
                ..Default::default()
            };
            let e = c
                .pull(&private.tag, Some(bad_auth))
                .await
                .expect_err("auth");
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains("auth.auth"), "{e:?}");
        }
        Peer::Containerd => {
            // containerd answers UNKNOWN both for a reference it cannot parse and for an
            // empty image spec ("can not resolve \"\" locally: ambiguous digest string");
            // berth answers INVALID_ARGUMENT naming the field.
            let e = c.pull("UPPER/Case:x", None).await.expect_err("bad");
            assert_eq!(e.code(), Code::Unknown, "{e:?}");
            for e in [
                c.status("", false).await.expect_err("empty status"),
                c.remove("").await.expect_err("empty remove"),
                c.pull("", None).await.expect_err("empty pull"),
            ] {
                assert_eq!(e.code(), Code::Unknown, "{e:?}");
            }
        }
    }

    // Remove: by tag removes the whole image; unknown is OK; by ID works.
    c.remove(&private.tag).await.expect("remove by tag");
    assert!(
        c.status(&private.id, false)
            .await
            .expect("st")
            .image
            .is_none()
    );
    c.remove(&private.tag)
        .await
        .expect("removing it again is OK");
    c.remove("no/such:image")
        .await
        .expect("unknown image is OK");
    c.remove(&app.id).await.expect("remove by ID");
    c.remove(&f.multi.repo_digest)
        .await
        .expect("remove by repo digest");
    assert!(c.list(None).await.is_empty(), "{peer:?}");
}

fn sorted(mut e: Vec<&Expect>) -> Vec<&Expect> {
    e.sort_by(|a, b| a.id.cmp(&b.id));
    e
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `du -sx` of `dir`: (bytes, inodes).
fn du(dir: &Path) -> (u64, u64) {
    let num = |args: &[&str]| -> u64 {
        let out = run(Command::new("du").args(args).arg(dir)).expect("du");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("du number")
    };
    (num(&["-sx", "--block-size=1"]), num(&["-sx", "--inodes"]))
}

/// Whether the server on `sock` answers an HTTP/2 client preface (with its own
/// SETTINGS) from a forked child, run as uid/gid 65534 when `as_nobody`.
fn speaks_to(sock: &Path, as_nobody: bool) -> bool {
    use nix::sys::socket::{SockaddrLike, UnixAddr};
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};
    let addr = UnixAddr::new(sock).expect("socket address");
    // SAFETY: the child makes only async-signal-safe system calls through libc (no
    // allocation, no locks) and leaves with _exit, so forking a threaded process is sound.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: plain system calls on memory this frame owns; see above.
            let code = unsafe {
                let dropped = !as_nobody
                    || (libc::setgroups(0, std::ptr::null()) == 0
                        && libc::setgid(65534) == 0
                        && libc::setuid(65534) == 0);
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
                let tv = libc::timeval {
                    tv_sec: 5,
                    tv_usec: 0,
                };
                let mut buf = [0u8; 64];
                if !dropped || fd < 0 || libc::connect(fd, addr.as_ptr().cast(), addr.len()) != 0 {
                    2
                } else {
                    libc::write(fd, preface.as_ptr().cast(), preface.len());
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        (&raw const tv).cast(),
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    );
                    i32::from(libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) > 0)
                }
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, 1) => true,
            WaitStatus::Exited(_, 0) => false,
            other => panic!("probe failed to connect: {other:?}"),
        },
    }
}

#[test]
fn cri_images_against_berth() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let f = fixture(&env);
    let cfg = berth_registry_config(&env, &f);
    let root = env.dir().join("state");
    let sock = env.dir().join("run/berth.sock");
    let extra = vec![
        "--registry-config".to_string(),
        cfg.display().to_string(),
        "--cni-conf-dir".into(),
        env.dir().display().to_string(),
    ];
    let mut berth = BerthCri::start(&env, &sock, &root, &extra).expect("berth cri");
    tokio_rt().block_on(async {
        let mut c = berth.wait_up().await.expect("up");

        // Two pulls of one image at once coalesce into one pull with one answer.
        let (mut c1, mut c2) = (c.clone(), c.clone());
        let (a, b) = tokio::join!(c1.pull(&f.app.tag, None), c2.pull(&f.app.tag, None));
        assert_eq!(a.expect("pull a"), f.app.id);
        assert_eq!(b.expect("pull b"), f.app.id);
        let log = berth.log();
        assert_eq!(
            log.matches("joining a pull already under way").count(),
            1,
            "{log}"
        );
        assert_eq!(log.matches("image stored").count(), 1, "{log}");
        assert!(log.contains(": done ("), "layer progress is logged: {log}");
        c.remove(&f.app.id).await.expect("remove");

        image_cases(Peer::Berth, &mut c, &f).await;

        // ImageFsInfo: the store root, counted as du counts it.
        c.pull(&f.app.tag, None).await.expect("pull");
        let fs = c
            .img
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .expect("ImageFsInfo")
            .into_inner();
        assert_eq!(fs.image_filesystems.len(), 1);
        let u = &fs.image_filesystems[0];
        let store = root.join("images");
        assert_eq!(
            u.fs_id.as_ref().expect("fs id").mountpoint,
            store.display().to_string()
        );
        let (bytes, inodes) = du(&store);
        assert_eq!(u.used_bytes.as_ref().expect("bytes").value, bytes);
        assert_eq!(u.inodes_used.as_ref().expect("inodes").value, inodes);
        assert!(bytes > f.app.size, "the unpacked layers are counted too");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i64;
        assert!(
            (now - u.timestamp).abs() < 60_000_000_000,
            "timestamp is now"
        );

        // An image a container's rootfs uses is refused (containerd would drop its
        // references and keep the content); once the rootfs is gone it can go.
        let image = |args: &[&str]| {
            run(Command::new(workspace_bin("berth"))
                .arg("image")
                .arg("--root")
                .arg(&store)
                .args(args))
            .expect("berth image")
        };
        image(&["mount", "c1", &f.app.tag]);
        let e = c.remove(&f.app.tag).await.expect_err("in use");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("c1"), "names the container: {e:?}");
        assert_eq!(c.list(None).await.len(), 1, "nothing removed");
        image(&["unmount", "c1"]);
        c.remove(&f.app.tag).await.expect("remove once unused");
        assert!(c.list(None).await.is_empty());
    });
}

#[test]
fn cri_images_against_containerd() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let f = fixture(&env);
    let dir = env.subdir("containerd").expect("dir");
    let certs = containerd_hosts(&dir, &f);
    let cri_toml = format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
        conf = env.subdir("net.d").expect("dir").display(),
        certs = certs.display(),
    );
    let cd = Containerd::start(&env, &dir, Some(&cri_toml)).expect("containerd");
    tokio_rt().block_on(async {
        let mut c = connect(&cd.sock).await.expect("connect");
        // The runtime calls berth answers, as containerd answers them: the same version
        // fields and NetworkReady wording; RuntimeConfig is newer than containerd 1.6.
        let v =
            c.rt.version(cri::VersionRequest::default())
                .await
                .expect("Version")
                .into_inner();
        assert_eq!(
            (
                v.version.as_str(),
                v.runtime_name.as_str(),
                v.runtime_api_version.as_str()
            ),
            ("0.1.0", "containerd", "v1")
        );
        let st =
            c.rt.status(cri::StatusRequest { verbose: false })
                .await
                .expect("Status")
                .into_inner()
                .status
                .expect("status")
                .conditions;
        assert_eq!(
            (st[0].r#type.as_str(), st[0].status),
            ("RuntimeReady", true)
        );
        assert_eq!(
            (st[1].r#type.as_str(), st[1].status),
            ("NetworkReady", false)
        );
        assert_eq!(st[1].reason, "NetworkPluginNotReady");
        assert!(
            st[1].message.starts_with("Network plugin returns error: "),
            "{}",
            st[1].message
        );
        let e =
            c.rt.runtime_config(cri::RuntimeConfigRequest {})
                .await
                .expect_err("1.6");
        assert_eq!(e.code(), Code::Unimplemented);
        image_cases(Peer::Containerd, &mut c, &f).await;
        let fs = c
            .img
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .expect("ImageFsInfo")
            .into_inner();
        // containerd reports its snapshotter's dir, from stats it refreshes periodically.
        let mount = &fs.image_filesystems[0]
            .fs_id
            .as_ref()
            .expect("fs id")
            .mountpoint;
        assert!(
            mount.ends_with("io.containerd.snapshotter.v1.overlayfs"),
            "{mount}"
        );
    });
    drop(cd);
}

#[test]
fn cri_socket_version_status_and_unimplemented() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let root = env.dir().join("state");
    let sock_dir = env.dir().join("run/berth");
    let sock = sock_dir.join("berth.sock");
    let cni = env.subdir("net.d").expect("dir");
    let extra = vec!["--cni-conf-dir".to_string(), cni.display().to_string()];
    let mut berth = BerthCri::start(&env, &sock, &root, &extra).expect("berth cri");
    tokio_rt().block_on(async {
        let mut c = berth.wait_up().await.expect("up");

        // Root-only: a 0700 directory, a 0600 socket owned by root.
        for d in [env.dir().join("run"), sock_dir.clone()] {
            let m = std::fs::metadata(&d).expect("socket dir");
            assert_eq!(m.permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
        let s = std::fs::symlink_metadata(&sock).expect("socket");
        assert!(s.file_type().is_socket());
        assert_eq!(s.permissions().mode() & 0o777, 0o600);
        assert_eq!((s.uid(), s.gid()), (0, 0));

        let v =
            c.rt.version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .expect("Version")
            .into_inner();
        assert_eq!(v.version, "0.1.0");
        assert_eq!(v.runtime_name, "berth");
        assert_eq!(v.runtime_version, berth::version::VERSION);
        assert_eq!(v.runtime_api_version, "v1");

        let conditions = |s: cri::StatusResponse| s.status.expect("status").conditions;
        let st = conditions(
            c.rt.status(cri::StatusRequest { verbose: false })
                .await
                .expect("Status")
                .into_inner(),
        );
        assert_eq!(st.len(), 2);
        assert_eq!(
            (st[0].r#type.as_str(), st[0].status),
            ("RuntimeReady", true)
        );
        assert_eq!(
            (st[1].r#type.as_str(), st[1].status),
            ("NetworkReady", false)
        );
        assert_eq!(st[1].reason, "NetworkPluginNotReady");
        assert!(
            st[1].message.starts_with("Network plugin returns error: ")
                && st[1].message.contains(&cni.display().to_string()),
            "{}",
            st[1].message
        );
        std::fs::write(
            cni.join("10-test.conflist"),
            r#"{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"berth-bridge"}]}"#,
        )
        .expect("conflist");
        let st =
            c.rt.status(cri::StatusRequest { verbose: true })
                .await
                .expect("Status")
                .into_inner();
        assert!(st.info.contains_key("cniconfig"), "{:?}", st.info);
        let st = conditions(st);
        assert_eq!(
            (st[1].r#type.as_str(), st[1].status),
            ("NetworkReady", true)
        );

        let rc =
            c.rt.runtime_config(cri::RuntimeConfigRequest {})
                .await
                .expect("RuntimeConfig")
                .into_inner();
        assert_eq!(
            rc.linux.expect("linux").cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );

        let e =
            c.rt.checkpoint_container(cri::CheckpointContainerRequest::default())
                .await
                .expect_err("not served");
        assert_eq!(e.code(), Code::Unimplemented);
        assert!(e.message().contains("CheckpointContainer"), "{e:?}");
        // Served calls check their requests: an Exec naming no container is refused.
        let e =
            c.rt.exec(cri::ExecRequest::default())
                .await
                .expect_err("an empty Exec");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

        // Even with the socket opened up by hand, berth speaks only to its own uid.
        assert!(
            speaks_to(&sock, false),
            "the probe hears the server as root"
        );
        for d in [env.dir().join("run"), sock_dir.clone()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        }
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666))
            .expect("chmod socket");
        assert!(!speaks_to(&sock, true), "a connection as nobody is dropped");
        let log = berth.log();
        assert!(
            log.contains("refused a CRI connection from another user") && log.contains("65534"),
            "{log}"
        );
        c.rt.version(cri::VersionRequest::default())
            .await
            .expect("root is still served");

        // A second server on a live socket is refused and leaves it alone.
        let out = env
            .host
            .command(workspace_bin("berth").to_str().expect("utf-8"))
            .args(["cri", "--listen", &format!("unix://{}", sock.display())])
            .arg("--root")
            .arg(env.dir().join("state2"))
            .output()
            .expect("second berth cri");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in use"), "{err}");
        c.rt.version(cri::VersionRequest::default())
            .await
            .expect("still served");
    });

    // SIGTERM: a clean exit that removes the socket.
    let st = berth.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(st.success(), "{st}: {}", berth.log());
    assert!(!sock.exists(), "socket removed");
    assert!(berth.log().contains("SIGTERM"), "{}", berth.log());

    // Something that is not a socket is never replaced.
    std::fs::write(&sock, b"not a socket").expect("file");
    let out = env
        .host
        .command(workspace_bin("berth").to_str().expect("utf-8"))
        .args(["cri", "--listen", &format!("unix://{}", sock.display())])
        .arg("--root")
        .arg(&root)
        .output()
        .expect("berth cri");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&sock).expect("kept"), b"not a socket");
    std::fs::remove_file(&sock).expect("rm");
}

#[test]
fn cri_survives_sigkill_and_restarts_with_its_images() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let f = fixture(&env);
    let cfg = berth_registry_config(&env, &f);
    let root = env.dir().join("state");
    let sock = env.dir().join("run/berth.sock");
    let extra = vec!["--registry-config".to_string(), cfg.display().to_string()];
    let mut berth = BerthCri::start(&env, &sock, &root, &extra).expect("berth cri");
    let rt = tokio_rt();
    rt.block_on(async {
        let mut c = berth.wait_up().await.expect("up");
        c.pull(&f.app.tag, None).await.expect("pull");
        c.pull(&f.private.tag, basic(USER, PASSWORD))
            .await
            .expect("pull");
    });
    let st = berth.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(!st.success());
    assert!(
        std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()),
        "a killed server leaves its socket"
    );
    berth.spawn(&env).expect("restart");
    rt.block_on(async {
        let mut c = berth.wait_up().await.expect("up again");
        let images = c.list(None).await;
        assert_eq!(images.len(), 2, "{images:?}");
        for (img, e) in images.iter().zip(sorted(vec![&f.app, &f.private])) {
            check_image(img, e);
        }
        let st = c.status(&f.private.tag, true).await.expect("status");
        assert!(st.image.is_some());
    });
    assert!(
        berth.log().contains("replacing a stale CRI socket"),
        "{}",
        berth.log()
    );
}

#[test]
fn cri_sigterm_waits_for_running_calls_at_most_the_grace() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    // A "registry" that accepts connections and never answers, in the host netns.
    let (hang, host) = env.host.run(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = l.local_addr().expect("addr").to_string();
        (l, host)
    });
    let cfg = env.dir().join("registries.yaml");
    std::fs::write(
        &cfg,
        format!("registries:\n  \"{host}\":\n    plainHttp: true\n"),
    )
    .expect("registries.yaml");
    let root = env.dir().join("state");
    let sock = env.dir().join("run/berth.sock");
    let extra = vec![
        "--registry-config".to_string(),
        cfg.display().to_string(),
        "--shutdown-grace".into(),
        "2".into(),
    ];
    let mut berth = BerthCri::start(&env, &sock, &root, &extra).expect("berth cri");
    let signalled = tokio_rt().block_on(async {
        let mut c = berth.wait_up().await.expect("up");
        let mut puller = c.clone();
        let reference = format!("{host}/stuck:v1");
        let pull = tokio::spawn(async move { puller.pull(&reference, None).await });
        // The pull is under way once berth has logged it.
        for _ in 0..100 {
            if berth.log().contains("stuck:v1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(berth.log().contains("pulling"), "{}", berth.log());
        c.rt.version(cri::VersionRequest::default())
            .await
            .expect("up");
        let pid = berth.child.as_ref().expect("running").id();
        let t = std::time::Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let r = pull.await.expect("join");
        assert!(r.is_err(), "the stuck pull cannot succeed: {r:?}");
        t
    });
    let child = berth.child.as_mut().expect("running");
    let st = child.wait().expect("wait");
    berth.child = None;
    let waited = signalled.elapsed();
    assert!(st.success(), "{st}: {}", berth.log());
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "waited {waited:?} for the running pull, the grace being 2 s"
    );
    assert!(
        berth.log().contains("still running after the grace period"),
        "{}",
        berth.log()
    );
    assert!(!sock.exists(), "socket removed");
    drop(hang);
}
