//! A real OCI distribution registry for tests: Debian's docker-registry on a free
//! 127.0.0.1 port with a temp storage dir, in plain HTTP, TLS (test CA) or TLS with
//! htpasswd basic auth; images are pushed into it with skopeo. Stopped and removed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::fixtures::OciLayout;
use crate::util::{ID_ENV, TempDir, free_port, run, wait_for};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How the registry is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tls,
    /// TLS plus htpasswd basic auth with [`USER`] / [`PASSWORD`].
    TlsBasicAuth,
}

pub const USER: &str = "berth";
pub const PASSWORD: &str = "s3cret-test-password";

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub mode: Mode,
    pub addr: SocketAddr,
    /// Holds only `ca.crt` (the test CA) in TLS modes; pass it as a cert dir to clients.
    pub certs: PathBuf,
    // Dropped last: the storage, certs and config.
    dir: TempDir,
}

impl Registry {
    /// Starts a registry named after `id` (a test id) in `mode`.
    pub fn start(id: &str, mode: Mode) -> anyhow::Result<Self> {
        let dir = TempDir::new(id, &format!("registry-{}", crate::util::random_hex(4)))?;
        let root = dir.path();
        let certs = root.join("certs");
        std::fs::create_dir_all(&certs)?;
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            root.join("storage").display()
        );
        if mode != Mode::Http {
            // Clients read every file of a cert dir (a `.key` is taken as a client key),
            // so the CA's and the server's own files live apart from the `ca.crt` handed out.
            let tls = root.join("tls");
            std::fs::create_dir_all(&tls)?;
            make_test_ca(&tls)?;
            std::fs::copy(tls.join("ca.crt"), certs.join("ca.crt"))?;
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.join("server.crt").display(),
                tls.join("server.key").display()
            ));
        }
        if mode == Mode::TlsBasicAuth {
            let out = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]))?;
            std::fs::write(root.join("htpasswd"), &out.stdout)?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        let config_path = root.join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(root.join("registry.log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .env(ID_ENV, id)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("start {REGISTRY_BIN} (install docker-registry: scripts/setup.sh)")
            })?;
        let mut reg = Self {
            child,
            mode,
            addr,
            certs,
            dir,
        };
        let up = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).ok()
        });
        if up.is_none() {
            bail!("registry on {addr} did not come up: {}", reg.log());
        }
        if let Ok(Some(status)) = reg.child.try_wait() {
            bail!("registry exited ({status}): {}", reg.log());
        }
        Ok(reg)
    }

    /// `127.0.0.1:<port>`, the registry host as image references name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Pushes the layout's image as `<host>/<repo>:<tag>` and returns that reference.
    pub fn push(&self, layout: &OciLayout, repo: &str, tag: &str) -> anyhow::Result<String> {
        let reference = format!("{}/{repo}:{tag}", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--insecure-policy"]);
        match self.mode {
            Mode::Http => {
                cmd.arg("--dest-tls-verify=false");
            }
            Mode::Tls | Mode::TlsBasicAuth => {
                cmd.arg("--dest-cert-dir").arg(&self.certs);
            }
        }
        if self.mode == Mode::TlsBasicAuth {
            cmd.arg("--dest-creds").arg(format!("{USER}:{PASSWORD}"));
        }
        cmd.arg(layout.oci_ref())
            .arg(format!("docker://{reference}"));
        run(&mut cmd).with_context(|| format!("push {reference}; registry log: {}", self.log()))?;
        Ok(reference)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`server.crt`, `server.key`), made with the openssl command line.
pub fn make_test_ca(dir: &Path) -> anyhow::Result<()> {
    let p = |f: &str| dir.join(f);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.crt")))?;
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")))?;
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.crt")))?;
    Ok(())
}
