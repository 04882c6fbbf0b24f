//! Test images, built at test time from Debian's busybox-static into OCI image layouts.
//!
//! Each image is a real OCI image layout (oci-layout, index.json, blobs/sha256/...) with
//! gzip layers and a config whose Cmd runs the fixture's behaviour. Builds are
//! deterministic (fixed mtimes), so the same fixture always has the same digests.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The fixture images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// Plain busybox; Cmd `sh`.
    Busybox,
    /// `busybox httpd` serving /www (index.html says "berth-fixture") on `port`.
    Httpd { port: u16 },
    /// Sleeps `after_ms` milliseconds, then exits with `code`.
    Exit { code: u8, after_ms: u64 },
    /// Ignores SIGTERM and sleeps forever; only SIGKILL stops it.
    IgnoreSigterm,
    /// A pod sandbox's placeholder, like Kubernetes' pause: sleeps forever and exits 0 on
    /// SIGTERM or SIGINT (as PID 1 it has to handle them itself).
    Pause,
    /// Writes `per_sec` numbered lines a second to stdout and to stderr.
    Chatty { per_sec: u32 },
    /// Three layers: busybox; files under /data and /opq; then a whiteout of /data/gone,
    /// a changed /data/keep, and /opq made opaque with only /opq/new in it.
    MultiLayer,
    /// `count` layers of `mib` MiB of random data each (does not compress), and nothing
    /// else: a data image for transfer and unpack measurements.
    RandomLayers { count: u8, mib: u32 },
    /// Busybox plus `count` tiny layers, each adding /layers/<n>: more lower dirs than
    /// one mount(2) option page can name.
    ManyLayers { count: u16 },
    /// Busybox plus one layer of files whose attributes must survive unpacking, and a top
    /// layer holding only a hardlink to a file of the layer below.
    Attributes,
    /// One crafted layer that tries to reach outside its root (see [`Hostile`]).
    Hostile(Hostile),
    /// One layer holding a file of `mib` MiB of zeros: a few KiB gzipped, a decompression
    /// bomb in miniature.
    Zeros { mib: u32 },
    /// Busybox plus /bin/probe-server (this workspace's `probe-server`, stripped, with the
    /// shared libraries `ldd` lists at the same paths): a gRPC health and HTTPS server
    /// for probes. Cmd is the binary alone (it prints its usage); pods give the args.
    ProbeServer,
}

/// Crafted layers that try to write outside the directory they are unpacked into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hostile {
    /// A file named `../../../../<path>` (path relative to /, e.g. `tmp/x`).
    DotDot { path: String },
    /// `<dir>` as a directory inside the layer, a symlink `escape -> <dir>` (absolute) and
    /// `rel -> ../../../../<dir>`, then a file written through each: `escape/pwned`,
    /// `rel/pwned-rel`. Outside the layer, `<dir>` is a real host directory.
    SymlinkEscape { dir: String },
    /// A hardlink `link -> <host_file>` (absolute), then a regular file `link` written
    /// over it.
    HardlinkEscape { host_file: String },
    /// A character device `dev/evil` (1, 1: /dev/mem).
    DeviceNode,
}

impl Image {
    /// The repository name used for this fixture in layouts and registries.
    pub fn name(&self) -> String {
        match self {
            Image::Busybox => "busybox".into(),
            Image::Httpd { port } => format!("httpd-{port}"),
            Image::Exit { code, after_ms } => format!("exit-{code}-after-{after_ms}ms"),
            Image::IgnoreSigterm => "ignore-sigterm".into(),
            Image::Pause => "pause".into(),
            Image::Chatty { per_sec } => format!("chatty-{per_sec}"),
            Image::MultiLayer => "multilayer".into(),
            Image::RandomLayers { count, mib } => format!("random-{count}x{mib}m"),
            Image::ManyLayers { count } => format!("many-{count}"),
            Image::Attributes => "attributes".into(),
            Image::Zeros { mib } => format!("zeros-{mib}m"),
            Image::ProbeServer => "probe-server".into(),
            Image::Hostile(h) => format!(
                "hostile-{}",
                match h {
                    Hostile::DotDot { .. } => "dotdot",
                    Hostile::SymlinkEscape { .. } => "symlink",
                    Hostile::HardlinkEscape { .. } => "hardlink",
                    Hostile::DeviceNode => "device",
                }
            ),
        }
    }

    fn cmd(&self) -> Vec<String> {
        let sh = |s: String| vec!["/bin/sh".to_string(), "-c".to_string(), s];
        match self {
            Image::Busybox
            | Image::MultiLayer
            | Image::RandomLayers { .. }
            | Image::ManyLayers { .. }
            | Image::Attributes
            | Image::Zeros { .. }
            | Image::Hostile(_) => vec!["/bin/sh".into()],
            Image::ProbeServer => vec!["/bin/probe-server".into()],
            Image::Httpd { port } => ["/bin/httpd", "-f", "-p", &port.to_string(), "-h", "/www"]
                .map(String::from)
                .to_vec(),
            Image::Exit { code, after_ms } => {
                sh(format!("usleep {}; exit {code}", after_ms * 1000))
            }
            Image::IgnoreSigterm => sh("trap '' TERM; while true; do sleep 1; done".into()),
            // `wait` returns when a trapped signal arrives; a plain `sleep` in the
            // foreground would delay the exit until it ends.
            Image::Pause => sh(
                "trap 'exit 0' TERM INT; while true; do sleep 2147483647 & wait $!; done".into(),
            ),
            Image::Chatty { per_sec } => sh(format!(
                "i=0; while true; do i=$((i+1)); echo \"out $i\"; echo \"err $i\" >&2; usleep {}; done",
                1_000_000 / per_sec.max(&1)
            )),
        }
    }

    fn layers(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        if let Image::Hostile(h) = self {
            let mut l = Layer::default();
            l.hostile(h);
            return Ok(vec![l.finish()?]);
        }
        if let Image::Zeros { mib } = self {
            let mut l = Layer::default();
            l.file("zeros", &vec![0u8; (*mib as usize) << 20], 0o644);
            return Ok(vec![l.finish()?]);
        }
        if let Image::RandomLayers { count, mib } = self {
            let mut layers = Vec::new();
            let mut urandom = std::fs::File::open("/dev/urandom")?;
            for i in 0..*count {
                let mut l = Layer::default();
                let mut data = vec![0u8; (*mib as usize) << 20];
                std::io::Read::read_exact(&mut urandom, &mut data)?;
                l.file(&format!("random-{i}"), &data, 0o644);
                layers.push(l.finish()?);
            }
            return Ok(layers);
        }
        let mut base = Layer::default();
        base.busybox()?;
        let mut layers = vec![base];
        match self {
            Image::Httpd { .. } => {
                let mut l = Layer::default();
                l.dir("www", 0o755);
                l.file("www/index.html", b"berth-fixture\n", 0o644);
                layers.push(l);
            }
            Image::MultiLayer => {
                let mut two = Layer::default();
                two.dir("data", 0o755);
                two.file("data/keep", b"v1\n", 0o644);
                two.file("data/gone", b"removed by a whiteout\n", 0o644);
                two.dir("data/dir", 0o755);
                two.file("data/dir/a", b"a\n", 0o644);
                two.dir("opq", 0o755);
                two.file("opq/old", b"hidden by the opaque dir\n", 0o644);
                two.dir("opq/sub", 0o755);
                two.file("opq/sub/old2", b"hidden too\n", 0o644);
                let mut three = Layer::default();
                three.dir("data", 0o755);
                three.file("data/.wh.gone", b"", 0o644);
                three.file("data/keep", b"v2\n", 0o644);
                three.dir("opq", 0o755);
                three.file("opq/.wh..wh..opq", b"", 0o644);
                three.file("opq/new", b"new\n", 0o644);
                layers.extend([two, three]);
            }
            Image::ManyLayers { count } => {
                for i in 0..*count {
                    let mut l = Layer::default();
                    l.dir("layers", 0o755);
                    l.file(&format!("layers/{i}"), format!("{i}\n").as_bytes(), 0o644);
                    layers.push(l);
                }
            }
            Image::Attributes => {
                let mut l = Layer::default();
                l.dir("attr", 0o750);
                l.owned_file("attr/owned", b"owned\n", 0o4755, 1000, 2000);
                l.file("attr/target", b"linked\n", 0o640);
                l.hardlink("attr/hardlink", "attr/target");
                l.symlink("attr/symlink", "../attr/target");
                l.fifo("attr/fifo");
                layers.push(l);
                // A hardlink whose target is only in the layer below.
                let mut top = Layer::default();
                top.dir("attr", 0o750);
                top.hardlink("attr/lower-link", "attr/target");
                layers.push(top);
            }
            Image::ProbeServer => {
                let mut l = Layer::default();
                l.host_binary(
                    &crate::util::workspace_bin("probe-server"),
                    "bin/probe-server",
                )?;
                layers.push(l);
            }
            _ => {}
        }
        layers.into_iter().map(Layer::finish).collect()
    }
}

/// An OCI image layout on disk holding one tagged image.
#[derive(Debug, Clone)]
pub struct OciLayout {
    pub dir: PathBuf,
    pub tag: String,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the image config (the image ID).
    pub config_digest: String,
    /// The uncompressed digests of the layers, in order.
    pub diff_ids: Vec<String>,
}

impl OciLayout {
    /// `oci:<dir>:<tag>`, the reference skopeo and umoci take.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

/// Builds `image` as an OCI image layout in `dir` (created), tagged `latest`.
pub fn build(image: &Image, dir: &Path) -> anyhow::Result<OciLayout> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("mkdir {}", blobs.display()))?;
    let write_blob = |bytes: &[u8]| -> anyhow::Result<(String, usize)> {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };

    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in image.layers()? {
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut gz, &tar)?;
        let (digest, size) = write_blob(&gz.finish()?)?;
        layer_descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        }));
    }
    let config = json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": image.cmd(),
            "WorkingDir": "/",
            "Labels": { "org.berth.fixture": image.name() },
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": diff_ids.iter().map(|_| json!({"created_by": "berth test fixture"})).collect::<Vec<_>>(),
    });
    let (config_digest, config_size) = write_blob(&serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layer_descs,
    });
    let (manifest_digest, manifest_size) = write_blob(&serde_json::to_vec(&manifest)?)?;
    let tag = "latest".to_string();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(OciLayout {
        dir: dir.to_path_buf(),
        tag,
        manifest_digest,
        config_digest,
        diff_ids,
    })
}

/// Writes a plain rootfs of busybox (as the base layer holds it) into `dir`: for tests
/// that need a bundle's rootfs without an image store.
pub fn busybox_rootfs(dir: &Path) -> anyhow::Result<()> {
    let mut layer = Layer::default();
    layer.busybox()?;
    let tar = layer.finish()?;
    std::fs::create_dir_all(dir)?;
    tar::Archive::new(tar.as_slice())
        .unpack(dir)
        .with_context(|| format!("unpack busybox into {}", dir.display()))
}

/// `bin`'s bytes without its debug info (a debug build's binary is mostly that).
fn stripped(bin: &Path) -> anyhow::Result<Vec<u8>> {
    let out = std::env::temp_dir().join(format!(
        "berth-fixture-{}-{}",
        std::process::id(),
        crate::util::random_hex(4)
    ));
    crate::util::run(
        std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&out)
            .arg(bin),
    )?;
    let data = std::fs::read(&out).with_context(|| format!("read {}", out.display()));
    let _ = std::fs::remove_file(&out);
    data
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An uncompressed layer tar under construction.
#[derive(Default)]
struct Layer {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl Layer {
    fn tar(&mut self) -> &mut tar::Builder<Vec<u8>> {
        self.builder
            .get_or_insert_with(|| tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_767_225_600); // 2026-01-01: fixed, so digests are stable
        h
    }

    fn dir(&mut self, path: &str, mode: u32) {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar()
            .append_data(&mut h, path, std::io::empty())
            .expect("append to a Vec");
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar()
            .append_data(&mut h, path, data)
            .expect("append to a Vec");
    }

    fn symlink(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar()
            .append_link(&mut h, path, target)
            .expect("append to a Vec");
    }

    fn owned_file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.tar()
            .append_data(&mut h, path, data)
            .expect("append to a Vec");
    }

    fn hardlink(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.tar()
            .append_link(&mut h, path, target)
            .expect("append to a Vec");
    }

    fn fifo(&mut self, path: &str) {
        let mut h = Self::header(tar::EntryType::Fifo, 0o600, 0);
        self.tar()
            .append_data(&mut h, path, std::io::empty())
            .expect("append to a Vec");
    }

    /// Appends an entry with `name` and `link` written into the header as raw bytes,
    /// bypassing the tar crate's own checks (which refuse `..` and absolute names).
    fn raw(&mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        if kind == tar::EntryType::Char {
            h.set_device_major(1).expect("device major");
            h.set_device_minor(1).expect("device minor");
        }
        h.set_cksum();
        self.tar().append(&h, data).expect("append to a Vec");
    }

    fn hostile(&mut self, h: &Hostile) {
        use tar::EntryType as T;
        match h {
            Hostile::DotDot { path } => {
                self.raw(T::Regular, &format!("../../../../{path}"), "", b"escaped\n");
            }
            Hostile::SymlinkEscape { dir } => {
                // The same path inside the layer, so the writes below resolve to it.
                let mut at = String::new();
                for c in dir.split('/').filter(|c| !c.is_empty()) {
                    at = if at.is_empty() {
                        c.to_string()
                    } else {
                        format!("{at}/{c}")
                    };
                    self.dir(&at, 0o755);
                }
                self.raw(T::Symlink, "escape", dir, b"");
                self.raw(T::Regular, "escape/pwned", "", b"escaped\n");
                let rel = format!("../../../../../../..{dir}");
                self.raw(T::Symlink, "rel", &rel, b"");
                self.raw(T::Regular, "rel/pwned-rel", "", b"escaped\n");
            }
            Hostile::HardlinkEscape { host_file } => {
                self.raw(T::Link, "link", host_file, b"");
                self.raw(T::Regular, "link", "", b"overwritten\n");
            }
            Hostile::DeviceNode => {
                self.dir("dev", 0o755);
                self.raw(T::Char, "dev/evil", "", b"");
            }
        }
    }

    /// The host binary `bin`, stripped of debug info, at `at`, and the shared libraries it
    /// loads (as `ldd` lists them) at their host paths; parent directories first.
    fn host_binary(&mut self, bin: &Path, at: &str) -> anyhow::Result<()> {
        let ldd = crate::util::run(std::process::Command::new("ldd").arg(bin))
            .context("ldd the fixture binary (build it: cargo build -p berth-integration-tests)")?;
        let mut files = vec![(at.to_string(), None)];
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vdso has no path.
            let path = line.split("=>").last().unwrap_or_default().trim();
            if let Some(path) = path
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                files.push((
                    path.trim_start_matches('/').to_string(),
                    Some(path.to_string()),
                ));
            }
        }
        let mut dirs = std::collections::BTreeSet::new();
        for (rel, _) in &files {
            let mut parent = Path::new(rel).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_string_lossy().into_owned());
                parent = p.parent();
            }
        }
        // BTreeSet order puts a parent before its children.
        for d in &dirs {
            self.dir(d, 0o755);
        }
        for (rel, host) in files {
            let data = match host {
                Some(path) => std::fs::read(&path).with_context(|| format!("read {path}"))?,
                None => stripped(bin)?,
            };
            self.file(&rel, &data, 0o755);
        }
        Ok(())
    }

    /// The busybox userland: /bin/busybox, an applet link for each applet in /bin, and
    /// the directories and files a container expects.
    fn busybox(&mut self) -> anyhow::Result<()> {
        let bin = std::fs::read(BUSYBOX).with_context(|| {
            format!("read {BUSYBOX} (install busybox-static: scripts/setup.sh)")
        })?;
        for (d, mode) in [
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("proc", 0o555),
            ("root", 0o700),
            ("sys", 0o555),
            ("tmp", 0o1777),
            ("var", 0o755),
        ] {
            self.dir(d, mode);
        }
        self.file("bin/busybox", &bin, 0o755);
        let out = std::process::Command::new(BUSYBOX).arg("--list").output()?;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                self.symlink(&format!("bin/{applet}"), "busybox");
            }
        }
        self.file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            0o644,
        );
        self.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
        Ok(())
    }

    fn finish(self) -> anyhow::Result<Vec<u8>> {
        match self.builder {
            Some(b) => b.into_inner().context("finish layer tar"),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct() {
        let imgs = [
            Image::Busybox,
            Image::Httpd { port: 80 },
            Image::Exit {
                code: 3,
                after_ms: 10,
            },
            Image::IgnoreSigterm,
            Image::Pause,
            Image::Chatty { per_sec: 10 },
            Image::MultiLayer,
            Image::RandomLayers { count: 5, mib: 10 },
            Image::ManyLayers { count: 3 },
            Image::Attributes,
            Image::Hostile(Hostile::DeviceNode),
            Image::ProbeServer,
        ];
        let names: std::collections::BTreeSet<_> = imgs.iter().map(Image::name).collect();
        assert_eq!(names.len(), imgs.len());
    }
}
