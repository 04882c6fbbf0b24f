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
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_integration_tests::containerd::{Containerd, NAMESPACE};
use berth_integration_tests::fixtures::Image;
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

const NS: &str = NAMESPACE;

/// Runs ctr to completion, returning its output whatever its exit status.
fn output(cd: &Containerd<'_>, args: &[&str]) -> Output {
    cd.output(args).expect("spawn ctr")
}

/// Runs ctr; a failure panics with ctr's stderr and containerd's log.
fn ok(cd: &Containerd<'_>, args: &[&str]) -> String {
    cd.ok(args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn scenario(which: &str) {
    let env = TestEnv::new().expect("env");
    let id = env.id().to_string();
    {
        let dir = env.subdir("containerd").expect("dir");
        let _run = PrivateRun::new().expect("private /run");
        let rt = Runtime::new(&env, which).expect("runtime");
        let mut cd = Containerd::start(&env, &dir, None).expect("containerd");
        let image = cd.import(&Image::Busybox, &dir).expect("import busybox");
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
        let o = output(&cd, &args);
        assert_eq!(
            o.status.code(),
            Some(3),
            "ctr run: stdout {:?} stderr {:?}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            cd.log()
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hello");
        cd.tasks.clear();
        assert!(output(&cd, &["container", "info", "hello"]).status.code() != Some(0));

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
            cd.log()
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
        ok(&cd, &args);
        let tasks = cd.task_list().expect("task ls");
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
        let o = output(
            &cd,
            &[
                "task",
                "exec",
                "--exec-id",
                "probe",
                "sleeper",
                "sh",
                "-c",
                "echo pid 1 is $(tr '\\0' ' ' </proc/1/cmdline); exit 5",
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(5),
            "ctr task exec: {}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            cd.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "pid 1 is sleep 600"
        );

        // A detached exec shows in `ctr task ps` next to the init.
        ok(
            &cd,
            &[
                "task",
                "exec",
                "-d",
                "--exec-id",
                "bg",
                "sleeper",
                "sleep",
                "601",
            ],
        );
        let ps = wait_for(Duration::from_secs(5), || {
            let ps = ok(&cd, &["task", "ps", "sleeper"]);
            let pids: Vec<u32> = ps
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect();
            (pids.len() == 2).then_some(pids)
        })
        .unwrap_or_else(|| panic!("ps: {}", ok(&cd, &["task", "ps", "sleeper"])));
        assert!(ps.contains(&pid), "{ps:?}");
        let bg = *ps.iter().find(|p| **p != pid).expect("exec pid");
        assert_eq!(
            std::fs::read(format!("/proc/{bg}/cmdline")).expect("cmdline"),
            b"sleep\x00601\0"
        );

        // pause and resume through the shim.
        let status = || {
            cd.task_list()
                .expect("task ls")
                .into_iter()
                .find(|t| t.0 == "sleeper")
                .map(|t| t.2)
        };
        ok(&cd, &["task", "pause", "sleeper"]);
        assert_eq!(status().as_deref(), Some("PAUSED"));
        ok(&cd, &["task", "resume", "sleeper"]);
        assert_eq!(status().as_deref(), Some("RUNNING"));

        // kill and delete; nothing of the container is left.
        ok(&cd, &["task", "kill", "-s", "SIGKILL", "sleeper"]);
        wait_for(Duration::from_secs(10), || {
            cd.task_list()
                .expect("task ls")
                .iter()
                .any(|t| t.0 == "sleeper" && t.2 == "STOPPED")
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "sleeper did not stop: {:?}",
                cd.task_list().expect("task ls")
            )
        });
        ok(&cd, &["task", "delete", "sleeper"]);
        ok(&cd, &["container", "delete", "sleeper"]);
        cd.tasks.clear();
        assert!(
            cd.task_list().expect("task ls").is_empty(),
            "{:?}",
            cd.task_list().expect("task ls")
        );
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
