//! containerd's runc v2 shim driving `berth oci` as its runtime binary, through a two-line
//! wrapper (`#!/bin/sh` / `exec berth oci "$@"`) given to `ctr run --runc-binary`; the same
//! scenario run with Debian's runc as the peer.
//!
//! Everything containerd touches is the test's own: it runs in the test's "host" netns; its
//! root, state, socket and opt dirs and the runtime's root are under the test's temp dir; in
//! the test's private mount namespace /run is a fresh tmpfs, so the shim's
//! /run/containerd/{s,fifo} never reach the machine. Containers run in the test's cgroup
//! parent. The terminal case runs ctr under `script`, which gives it a pty.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_integration_tests::fixtures::{Image, build};
use berth_integration_tests::util::{run, wait_for, workspace_bin};
use berth_integration_tests::{TestEnv, leak, require_root};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A fresh tmpfs on /run in the test's private mount namespace; unmounted on drop.
struct PrivateRun;

impl PrivateRun {
    fn new() -> anyhow::Result<Self> {
        mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=755"),
        )
        .context("tmpfs on /run")?;
        Ok(PrivateRun)
    }
}

impl Drop for PrivateRun {
    fn drop(&mut self) {
        let _ = umount2("/run", MntFlags::MNT_DETACH);
    }
}

/// The runtime under test: berth through its wrapper, or runc from PATH (the shim's default).
struct Runtime {
    /// `--runc-binary`, or `None` for runc.
    binary: Option<PathBuf>,
    /// The runtime's own CLI, to read its state directly.
    cli: Vec<String>,
    /// `--runc-root`; the shim keeps containers of namespace N under `root/N`.
    root: PathBuf,
}

impl Runtime {
    fn new(env: &TestEnv, which: &str) -> anyhow::Result<Self> {
        let root = env.subdir("runtime-root")?;
        if which == "runc" {
            return Ok(Runtime {
                binary: None,
                cli: vec!["runc".into()],
                root,
            });
        }
        let berth = workspace_bin("berth");
        if !berth.exists() {
            bail!(
                "{} missing: run `cargo build --workspace --bins` first",
                berth.display()
            );
        }
        let wrapper = env.dir().join("berth-runc");
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nexec {} oci \"$@\"\n", berth.display()),
        )?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(Runtime {
            binary: Some(wrapper),
            cli: vec![berth.display().to_string(), "oci".into()],
            root,
        })
    }

    /// The runtime's CLI on the shim's root for namespace `ns`.
    fn cli(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = run(Command::new(&self.cli[0])
            .args(&self.cli[1..])
            .arg("--root")
            .arg(self.root.join(ns))
            .args(args)
            .stdin(Stdio::null()))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// containerd started by the test; its tasks are killed and it is stopped on drop.
struct Containerd<'a> {
    env: &'a TestEnv,
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    tasks: Vec<String>,
}

const NS: &str = "berth";

impl<'a> Containerd<'a> {
    fn start(env: &'a TestEnv, dir: &Path) -> anyhow::Result<Self> {
        let sock = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            opt = dir.join("opt").display(),
        );
        let conf = dir.join("config.toml");
        std::fs::write(&conf, config)?;
        let log = dir.join("containerd.log");
        let child = env
            .host
            .command("containerd")
            .env(berth_integration_tests::util::ID_ENV, env.id())
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start containerd")?;
        let cd = Containerd {
            env,
            child,
            sock,
            log,
            tasks: Vec::new(),
        };
        if wait_for(Duration::from_secs(20), || {
            cd.ctr()
                .arg("version")
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .is_none()
        {
            bail!("containerd did not come up: {}", cd.log_text());
        }
        Ok(cd)
    }

    fn ctr(&self) -> Command {
        let mut c = self.env.host.command("ctr");
        c.env(berth_integration_tests::util::ID_ENV, self.env.id())
            .arg("--address")
            .arg(&self.sock)
            .args(["--namespace", NS])
            .stdin(Stdio::null());
        c
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs ctr to completion, returning its output whatever its exit status.
    fn output(&self, args: &[&str]) -> Output {
        self.ctr().args(args).output().expect("spawn ctr")
    }

    /// Runs ctr; a failure panics with ctr's stderr and containerd's log.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.output(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ctr task ls` as (id, pid, status) rows.
    fn tasks(&self) -> Vec<(String, u32, String)> {
        self.ok(&["task", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.to_string(),
                ))
            })
            .collect()
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        for t in &self.tasks {
            let _ = self
                .ctr()
                .args(["task", "kill", "-s", "SIGKILL", t])
                .output();
            let _ = wait_for(Duration::from_secs(5), || {
                let out = self.ctr().args(["task", "delete", t]).output().ok()?;
                let err = String::from_utf8_lossy(&out.stderr);
                (out.status.success() || err.contains("not found")).then_some(())
            });
            let _ = self.ctr().args(["container", "delete", t]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Imports the busybox fixture (an OCI layout, tarred into an OCI archive).
fn import_busybox(cd: &Containerd<'_>, dir: &Path) -> anyhow::Result<String> {
    let layout = build(&Image::Busybox, &dir.join("busybox"))?;
    let tar = dir.join("busybox.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout.dir)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    let name = "berth.test/busybox";
    run(cd
        .ctr()
        .args(["images", "import", "--base-name", name])
        .arg(&tar))?;
    Ok(format!("{name}:latest"))
}

fn scenario(which: &str) {
    let env = TestEnv::new().expect("env");
    let id = env.id().to_string();
    {
        let dir = env.subdir("containerd").expect("dir");
        let _run = PrivateRun::new().expect("private /run");
        let rt = Runtime::new(&env, which).expect("runtime");
        let mut cd = Containerd::start(&env, &dir).expect("containerd");
        let image = import_busybox(&cd, &dir).expect("import busybox");
        let cgroup = |c: &str| format!("/{}/{c}", env.cgroups().name());
        let root = rt.root.display().to_string();
        let run_args = |c: &str, extra: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = vec!["run".into()];
            v.extend(extra.iter().map(|s| s.to_string()));
            if let Some(b) = &rt.binary {
                v.extend(["--runc-binary".into(), b.display().to_string()]);
            }
            v.extend(["--runc-root".into(), root.clone()]);
            v.extend(["--cgroup".into(), cgroup(c), image.clone(), c.into()]);
            v
        };

        // Attached: output and exit code come back through the shim and ctr.
        cd.tasks.push("hello".into());
        let mut args = run_args("hello", &["--rm"]);
        args.extend(["sh", "-c", "echo hello; exit 3"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = cd.output(&args);
        assert_eq!(
            o.status.code(),
            Some(3),
            "ctr run: stdout {:?} stderr {:?}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            cd.log_text()
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hello");
        cd.tasks.clear();
        assert!(cd.output(&["container", "info", "hello"]).status.code() != Some(0));

        // A terminal: the shim hands the runtime a console socket; ctr runs under a pty.
        cd.tasks.push("tty".into());
        let mut args = run_args("tty", &["--rm", "-t"]);
        args.extend(["sh", "-c", "'tty; exit 4'"].map(String::from));
        let line = format!(
            "ctr --address {} --namespace {NS} {}",
            cd.sock.display(),
            args.join(" ")
        );
        let o = env
            .host
            .command("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("script");
        assert_eq!(
            o.status.code(),
            Some(4),
            "ctr run -t: stdout {:?} stderr {:?}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            cd.log_text()
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("/dev/pts/0"),
            "{:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        cd.tasks.clear();

        // Detached: listed with its pid, in its cgroup, held by the runtime under test.
        cd.tasks.push("sleeper".into());
        let mut args = run_args("sleeper", &["-d", "--null-io"]);
        args.extend(["sleep", "600"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cd.ok(&args);
        let tasks = cd.tasks();
        let (_, pid, status) = tasks
            .iter()
            .find(|t| t.0 == "sleeper")
            .unwrap_or_else(|| panic!("sleeper not in {tasks:?}"));
        let pid = *pid;
        assert_eq!(status, "RUNNING", "{tasks:?}");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        assert_eq!(cmdline, b"sleep\x00600\0");
        let procs = std::fs::read_to_string(
            env.cgroups()
                .dir("pids")
                .expect("pids hierarchy")
                .join("sleeper/cgroup.procs"),
        )
        .expect("container cgroup");
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "{procs}"
        );
        let state: serde_json::Value =
            serde_json::from_str(&rt.cli(NS, &["state", "sleeper"]).expect("runtime state"))
                .expect("state json");
        assert_eq!(state["pid"], pid, "{state}");
        assert_eq!(state["status"], "running", "{state}");
        // ... and by that runtime only: the other one cannot read its state.
        let other = Runtime {
            binary: None,
            cli: if which == "runc" {
                vec![workspace_bin("berth").display().to_string(), "oci".into()]
            } else {
                vec!["runc".into()]
            },
            root: rt.root.clone(),
        };
        assert!(
            other.cli(NS, &["state", "sleeper"]).is_err(),
            "{:?} reads the state of {which}",
            other.cli
        );

        // exec: output and exit code through the shim.
        let o = cd.output(&[
            "task",
            "exec",
            "--exec-id",
            "probe",
            "sleeper",
            "sh",
            "-c",
            "echo pid 1 is $(tr '\\0' ' ' </proc/1/cmdline); exit 5",
        ]);
        assert_eq!(
            o.status.code(),
            Some(5),
            "ctr task exec: {}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            cd.log_text()
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "pid 1 is sleep 600"
        );

        // A detached exec shows in `ctr task ps` next to the init.
        cd.ok(&[
            "task",
            "exec",
            "-d",
            "--exec-id",
            "bg",
            "sleeper",
            "sleep",
            "601",
        ]);
        let ps = wait_for(Duration::from_secs(5), || {
            let ps = cd.ok(&["task", "ps", "sleeper"]);
            let pids: Vec<u32> = ps
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect();
            (pids.len() == 2).then_some(pids)
        })
        .unwrap_or_else(|| panic!("ps: {}", cd.ok(&["task", "ps", "sleeper"])));
        assert!(ps.contains(&pid), "{ps:?}");
        let bg = *ps.iter().find(|p| **p != pid).expect("exec pid");
        assert_eq!(
            std::fs::read(format!("/proc/{bg}/cmdline")).expect("cmdline"),
            b"sleep\x00601\0"
        );

        // pause and resume through the shim.
        let status = || {
            cd.tasks()
                .into_iter()
                .find(|t| t.0 == "sleeper")
                .map(|t| t.2)
        };
        cd.ok(&["task", "pause", "sleeper"]);
        assert_eq!(status().as_deref(), Some("PAUSED"));
        cd.ok(&["task", "resume", "sleeper"]);
        assert_eq!(status().as_deref(), Some("RUNNING"));

        // kill and delete; nothing of the container is left.
        cd.ok(&["task", "kill", "-s", "SIGKILL", "sleeper"]);
        wait_for(Duration::from_secs(10), || {
            cd.tasks()
                .iter()
                .any(|t| t.0 == "sleeper" && t.2 == "STOPPED")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("sleeper did not stop: {:?}", cd.tasks()));
        cd.ok(&["task", "delete", "sleeper"]);
        cd.ok(&["container", "delete", "sleeper"]);
        cd.tasks.clear();
        assert!(cd.tasks().is_empty(), "{:?}", cd.tasks());
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "init {pid} left"
        );
        assert!(
            !Path::new(&format!("/proc/{bg}")).exists(),
            "exec {bg} left"
        );
        let list = rt.cli(NS, &["list", "--quiet"]).expect("runtime list");
        assert!(list.trim().is_empty(), "runtime still holds {list}");
        for (_, parent) in env.cgroups().dirs() {
            for c in ["hello", "sleeper"] {
                assert!(
                    !parent.join(c).exists(),
                    "{} left",
                    parent.join(c).display()
                );
            }
        }
    }
    drop(env);
    assert!(leak::find(&id).is_empty(), "{:?}", leak::find(&id));
}

#[test]
fn oci_containerd_shim_drives_berth() {
    require_root!();
    scenario("berth");
}

#[test]
fn oci_containerd_shim_drives_runc() {
    require_root!();
    scenario("runc");
}
