//! `berth oci`: runc's command line over [`Runtime`], as containerd's runc shim and the
//! OCI runtime-tools validation call it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use oci_spec::runtime::{LinuxResources, Process};

use super::create::{CreateOptions, Runtime};
use super::error::OciError;
use super::lifecycle::{ExecOptions, parse_signal, wait};
use super::plan::PlanOptions;

/// Run OCI containers (runc's command line).
#[derive(Debug, Args)]
pub struct OciArgs {
    /// Root directory for container state.
    #[arg(long, default_value = "/run/berth-oci")]
    root: PathBuf,
    /// Also write errors to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Format of --log: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Use systemd to manage cgroups (not supported: berth writes cgroupfs itself).
    #[arg(long)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; berth does not use criu.
    #[arg(long, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    rootless: Option<String>,
    /// Accepted for runc compatibility (berth logs at the level of --log-level).
    #[arg(long, hide = true)]
    debug: bool,
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Path to the bundle (holds config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's init pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to receive the pty master of a terminal container.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Move the rootfs to / and chroot instead of pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a session keyring (berth never does).
    #[arg(long)]
    no_new_keyring: bool,
    /// Container id.
    id: String,
}

#[derive(Debug, Subcommand)]
enum OciCommand {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container; without --detach wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started.
        #[arg(short, long)]
        detach: bool,
    },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and what it holds.
    Delete {
        /// Kill it first if it still runs.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the container's processes.
    Ps {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Passed to ps(1) for the table format.
        ps_args: Vec<String>,
    },
    /// Run a new process in a container.
    Exec {
        /// A process.json (OCI process) instead of a command line.
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Return once started.
        #[arg(short, long)]
        detach: bool,
        /// Allocate a terminal (needs --console-socket).
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Extra environment variables NAME=value.
        #[arg(short, long)]
        env: Vec<String>,
        /// uid[:gid].
        #[arg(short, long)]
        user: Option<String>,
        /// Additional gids.
        #[arg(short = 'g', long)]
        additional_gids: Vec<u32>,
        /// Set no_new_privs.
        #[arg(long)]
        no_new_privs: bool,
        id: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resources.
    Update {
        /// A LinuxResources JSON file, or - for stdin.
        #[arg(short, long)]
        resources: Option<String>,
        #[arg(long)]
        memory: Option<i64>,
        #[arg(long)]
        memory_swap: Option<i64>,
        #[arg(long)]
        pids_limit: Option<i64>,
        #[arg(long)]
        cpu_shares: Option<u64>,
        #[arg(long)]
        cpu_quota: Option<i64>,
        #[arg(long)]
        cpu_period: Option<u64>,
        #[arg(long)]
        cpuset_cpus: Option<String>,
        #[arg(long)]
        cpuset_mems: Option<String>,
        id: String,
    },
    /// Print what this runtime supports (OCI features JSON).
    Features,
}

type CliResult = Result<i32, String>;

/// Runs `berth oci`; returns the process exit code.
pub fn main(args: OciArgs) -> i32 {
    let log = args.log.clone();
    let json = args.log_format == "json";
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "berth oci: {msg}");
            if let Some(p) = log {
                log_error(&p, json, &msg);
            }
            1
        }
    }
}

fn log_error(p: &Path, json: bool, msg: &str) {
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": super::state::now_rfc3339()})
            .to_string()
    } else {
        format!(
            "time=\"{}\" level=error msg={msg:?}",
            super::state::now_rfc3339()
        )
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn s(e: OciError) -> String {
    e.to_string()
}

fn out(text: &str) -> CliResult {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{text}").map_err(|e| e.to_string())?;
    Ok(0)
}

fn run(args: OciArgs) -> CliResult {
    if args.systemd_cgroup {
        return Err(
            "--systemd-cgroup: berth manages cgroupfs directly and has no systemd \
                    cgroup driver; drop the flag (containerd: SystemdCgroup = false)"
                .into(),
        );
    }
    let rt = Runtime::new(&args.root);
    match args.command {
        OciCommand::Create(c) => {
            create(&rt, &c)?;
            Ok(0)
        }
        OciCommand::Start { id } => rt.start(&id).map(|()| 0).map_err(s),
        OciCommand::Run { create: c, detach } => {
            let st = create(&rt, &c)?;
            if let Err(e) = rt.start(&c.id) {
                let _ = rt.delete(&c.id, true);
                let _ = wait(st.pid);
                return Err(s(e));
            }
            if detach {
                return Ok(0);
            }
            let code = wait(st.pid).map_err(|e| format!("wait for {}: {e}", c.id))?;
            rt.delete(&c.id, true).map_err(s)?;
            Ok(code.shell_code())
        }
        OciCommand::State { id } => {
            let st = rt.state(&id).map_err(s)?;
            out(&serde_json::to_string_pretty(&st.oci_json()).map_err(|e| e.to_string())?)
        }
        OciCommand::Kill { all, id, signal } => {
            let sig = parse_signal(&signal).ok_or_else(|| format!("unknown signal {signal:?}"))?;
            rt.kill(&id, sig, all).map(|()| 0).map_err(s)
        }
        OciCommand::Delete { force, id } => match rt.delete(&id, force) {
            // runc: deleting a missing container with --force succeeds
            Err(OciError::NotFound { .. }) if force => Ok(0),
            r => r.map(|()| 0).map_err(s),
        },
        OciCommand::List { format, quiet } => {
            let list = rt.list();
            if quiet {
                let ids: Vec<String> = list.iter().map(|s| s.id.clone()).collect();
                return if ids.is_empty() {
                    Ok(0)
                } else {
                    out(&ids.join("\n"))
                };
            }
            if format == "json" {
                let v: Vec<_> = list.iter().map(super::state::State::oci_json).collect();
                return out(&serde_json::to_string(&v).map_err(|e| e.to_string())?);
            }
            let mut t = String::from("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
            for st in &list {
                let j = st.oci_json();
                t.push_str(&format!(
                    "\n{}\t{}\t{}\t{}\t{}\t{}",
                    st.id,
                    j["pid"],
                    st.status(),
                    st.bundle.display(),
                    st.created,
                    if st.owner.is_empty() {
                        "root"
                    } else {
                        &st.owner
                    }
                ));
            }
            out(&t)
        }
        OciCommand::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = rt.ps(&id).map_err(s)?;
            if format == "json" {
                return out(&serde_json::to_string(&pids).map_err(|e| e.to_string())?);
            }
            let mut cmd = std::process::Command::new("ps");
            cmd.args(if ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                ps_args
            });
            let o = cmd.output().map_err(|e| format!("ps: {e}"))?;
            let text = String::from_utf8_lossy(&o.stdout);
            let mut lines = text.lines();
            let head = lines.next().unwrap_or("");
            let col = head
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or("ps output has no PID column")?;
            let mut res = vec![head.to_string()];
            for l in lines {
                if l.split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse().ok())
                    .is_some_and(|p: i32| pids.contains(&p))
                {
                    res.push(l.to_string());
                }
            }
            out(&res.join("\n"))
        }
        OciCommand::Exec {
            process,
            pid_file,
            detach,
            tty,
            console_socket,
            cwd,
            env,
            user,
            additional_gids,
            no_new_privs,
            id,
            command,
        } => {
            let st = rt.state(&id).map_err(s)?;
            let mut p: Process = match &process {
                Some(f) => {
                    let b =
                        std::fs::read(f).map_err(|e| format!("--process {}: {e}", f.display()))?;
                    serde_json::from_slice(&b)
                        .map_err(|e| format!("--process {}: {e}", f.display()))?
                }
                None => {
                    if command.is_empty() {
                        return Err("exec: give a command or --process".into());
                    }
                    let spec = super::spec::load(&id, &rt.root.dir(&id)).map_err(s)?;
                    let mut p = spec.process().clone().unwrap_or_default();
                    p.set_args(Some(command));
                    p.set_terminal(Some(tty));
                    p
                }
            };
            if let Some(c) = cwd {
                p.set_cwd(c);
            }
            if !env.is_empty() {
                let mut e = p.env().clone().unwrap_or_default();
                e.extend(env);
                p.set_env(Some(e));
            }
            if let Some(u) = user {
                let (uid, gid) = u.split_once(':').unwrap_or((&u, "0"));
                let user = p.user_mut();
                user.set_uid(
                    uid.parse()
                        .map_err(|_| format!("--user {u}: not uid[:gid]"))?,
                );
                user.set_gid(
                    gid.parse()
                        .map_err(|_| format!("--user {u}: not uid[:gid]"))?,
                );
            }
            if !additional_gids.is_empty() {
                p.user_mut().set_additional_gids(Some(additional_gids));
            }
            if no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            let _ = st;
            if tty {
                p.set_terminal(Some(true));
            }
            let pid = rt
                .exec(
                    &id,
                    &p,
                    &ExecOptions {
                        pid_file,
                        console_socket,
                        stdio: None,
                    },
                )
                .map_err(s)?;
            if detach {
                return Ok(0);
            }
            let code = wait(pid).map_err(|e| format!("wait: {e}"))?;
            Ok(code.shell_code())
        }
        OciCommand::Pause { id } => rt.pause(&id).map(|()| 0).map_err(s),
        OciCommand::Resume { id } => rt.resume(&id).map(|()| 0).map_err(s),
        OciCommand::Update {
            resources,
            memory,
            memory_swap,
            pids_limit,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            id,
        } => {
            let mut v = match resources.as_deref() {
                Some("-") => {
                    let mut b = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                        .map_err(|e| e.to_string())?;
                    serde_json::from_slice(&b).map_err(|e| format!("resources on stdin: {e}"))?
                }
                Some(f) => {
                    let b = std::fs::read(f).map_err(|e| format!("--resources {f}: {e}"))?;
                    serde_json::from_slice(&b).map_err(|e| format!("--resources {f}: {e}"))?
                }
                None => serde_json::json!({}),
            };
            let set = |v: &mut serde_json::Value, a: &str, b: &str, x: serde_json::Value| {
                v[a][b] = x;
            };
            if let Some(m) = memory {
                set(&mut v, "memory", "limit", m.into());
            }
            if let Some(m) = memory_swap {
                set(&mut v, "memory", "swap", m.into());
            }
            if let Some(m) = pids_limit {
                set(&mut v, "pids", "limit", m.into());
            }
            if let Some(m) = cpu_shares {
                set(&mut v, "cpu", "shares", m.into());
            }
            if let Some(m) = cpu_quota {
                set(&mut v, "cpu", "quota", m.into());
            }
            if let Some(m) = cpu_period {
                set(&mut v, "cpu", "period", m.into());
            }
            if let Some(m) = cpuset_cpus {
                set(&mut v, "cpu", "cpus", m.into());
            }
            if let Some(m) = cpuset_mems {
                set(&mut v, "cpu", "mems", m.into());
            }
            let r: LinuxResources =
                serde_json::from_value(v).map_err(|e| format!("resources: {e}"))?;
            rt.update(&id, &r).map(|()| 0).map_err(s)
        }
        OciCommand::Features => out(&features().to_string()),
    }
}

fn create(rt: &Runtime, c: &CreateArgs) -> Result<super::state::State, String> {
    let _ = c.no_new_keyring;
    // create reads config.json from the bundle (and keeps its bytes)
    rt.create(
        &c.id,
        &CreateOptions {
            bundle: c.bundle.clone(),
            spec: None,
            pid_file: c.pid_file.clone(),
            console_socket: c.console_socket.clone(),
            plan: PlanOptions {
                no_pivot: c.no_pivot,
                clamp_unprivileged: false,
                seccomp_cache: None,
            },
            stdio: None,
        },
    )
    .map_err(s)
}

/// The OCI features document (runtime-spec features.md).
fn features() -> serde_json::Value {
    let caps: Vec<String> = {
        let mut v: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro","rw","nosuid","suid","nodev","dev","noexec","exec","sync","async",
            "dirsync","remount","mand","nomand","atime","noatime","diratime","nodiratime",
            "relatime","norelatime","strictatime","nostrictatime","bind","rbind","private",
            "rprivate","shared","rshared","slave","rslave","unbindable","runbindable"],
        "linux": {
            "namespaces": ["cgroup","ipc","mount","network","pid","user","uts","time"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW","SCMP_ACT_ERRNO","SCMP_ACT_KILL",
                    "SCMP_ACT_KILL_PROCESS","SCMP_ACT_KILL_THREAD","SCMP_ACT_LOG",
                    "SCMP_ACT_TRACE","SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ","SCMP_CMP_GE","SCMP_CMP_GT","SCMP_CMP_LE",
                    "SCMP_CMP_LT","SCMP_CMP_MASKED_EQ","SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86","SCMP_ARCH_X86_64","SCMP_ARCH_X32"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runtime-spec.features.implementation": "berth"}
    })
}
