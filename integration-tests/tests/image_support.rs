//! Shared by the image_* tests: the berth binary, a store root and CLI runs against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use berth_integration_tests::TestEnv;

/// The berth binary of this build (scripts/test.sh builds every binary first; a bare
/// `cargo nextest run` builds it here), so the tests drive the CLI as users run it.
pub fn berth_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = berth_integration_tests::util::workspace_bin("berth");
        if !bin.is_file() {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace root");
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "berth", "--bin", "berth"])
                .current_dir(workspace)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build of berth failed");
        }
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// A store root in the test's temp dir, and a way to run `berth image` against it.
#[derive(Debug)]
pub struct Store {
    pub root: PathBuf,
    pub registry_config: Option<PathBuf>,
    id: String,
}

impl Store {
    pub fn new(env: &TestEnv) -> Self {
        Self {
            root: env.dir().join("store"),
            registry_config: None,
            id: env.id().to_string(),
        }
    }

    /// Another store root for the same test.
    pub fn new_like(other: &Store) -> Self {
        Self {
            root: other.root.clone(),
            registry_config: other.registry_config.clone(),
            id: other.id.clone(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.env(berth_integration_tests::util::ID_ENV, &self.id)
            .env("BERTH_LOG", "info")
            .env_remove("BERTH_REGISTRY_CREDS")
            .env("HOME", self.root.parent().expect("parent"))
            .arg("image")
            .arg("--root")
            .arg(&self.root);
        if let Some(rc) = &self.registry_config {
            c.arg("--registry-config").arg(rc);
        }
        c.args(args);
        c
    }

    /// Runs `berth image <args>`; returns the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spawn berth")
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth image {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and requires failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "berth image {args:?} should have failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn inspect(&self, image: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", image])).expect("inspect JSON")
    }

    pub fn blob(&self, digest: &str) -> PathBuf {
        self.root
            .join("content/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn snapshot(&self, chain: &str) -> PathBuf {
        self.root
            .join("snapshots")
            .join(chain.trim_start_matches("sha256:"))
    }

    /// Names in a store directory (e.g. `content/ingest`, `snapshots`).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        match std::fs::read_dir(self.root.join(sub)) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes a registry config and uses it from now on.
    pub fn set_registry_config(&mut self, yaml: &str) {
        std::fs::create_dir_all(&self.root).expect("mkdir root");
        let p = self.root.parent().expect("parent").join("registries.yaml");
        std::fs::write(&p, yaml).expect("write registry config");
        self.registry_config = Some(p);
    }
}
