//! How a holder is launched: what the daemon and `berth-holder` agree on before the
//! holder protocol ([`super::proto`]) starts. The daemon starts one zygote per state dir
//! (`berth-holder zygote ROOM`, its socket on fd 3) and sends it, per pod, the holder's
//! arguments NUL-separated with a ready pipe; the zygote forks, the child becomes that
//! pod's holder and reports on the pipe: `ok <pid>`, `error: <why>`, or `invalid error:
//! <why>` when what it was asked to set up was refused.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

/// The first argument that makes `berth-holder` a zygote.
pub const ZYGOTE_ARG: &str = "zygote";

/// The largest holder start request: its arguments, NUL-separated.
pub const MAX_REQUEST: usize = 16 * 1024;

/// The bytes a holder's command line may take after argv[0]: the zygote is started with
/// this much room in its own arguments. `--state-dir` and `--pod-id` come first, so the
/// pod a holder serves is always there.
pub const CMDLINE_ROOM: usize = 4096;

/// The fd the zygote finds its socket on.
pub const SOCKET_FD: RawFd = 3;

/// Marks a readiness error caused by what the holder was asked for (the daemon answers
/// INVALID_ARGUMENT), not by the host.
pub const INVALID_PREFIX: &str = "invalid ";

/// Which namespaces a pod gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodOptions {
    /// Set in the pod's new uts namespace.
    pub hostname: Option<String>,
    /// Use the host's network (and, as containerd does, its uts) namespace.
    pub host_network: bool,
    pub host_ipc: bool,
    /// One pid namespace for all containers of the pod (shareProcessNamespace).
    pub share_pid: bool,
    /// Sysctls set in the pod's own namespaces before it is ready: (dotted name, value),
    /// checked by the daemon against the namespaces the pod has.
    pub sysctls: Vec<(String, String)>,
    /// The holder's cgroup, relative to each hierarchy's root (containerd's pause
    /// container cgroup: `<cgroup parent>/<sandbox id>`).
    pub cgroup: Option<String>,
    /// cpu.shares of that cgroup (containerd's sandbox CPU shares).
    pub cpu_shares: Option<u64>,
}

impl PodOptions {
    /// The holder's arguments for this pod (what `berth-holder` parses), without the
    /// ready pipe. `--state-dir` and `--pod-id` come first: ps and the daemon's recovery
    /// find a pod's holder by them.
    pub fn args(&self, state_dir: &std::path::Path, pod_id: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--state-dir".into(),
            state_dir.into(),
            "--pod-id".into(),
            pod_id.into(),
        ];
        if let Some(h) = &self.hostname {
            args.extend(["--hostname".into(), h.into()]);
        }
        for (on, flag) in [
            (self.host_network, "--host-network"),
            (self.host_ipc, "--host-ipc"),
            (self.share_pid, "--share-pid"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        for (k, v) in &self.sysctls {
            args.push(format!("--sysctl={k}={v}").into());
        }
        if let Some(cg) = &self.cgroup {
            args.extend(["--cgroup".into(), cg.into()]);
            if let Some(shares) = self.cpu_shares {
                args.extend(["--cpu-shares".into(), shares.to_string().into()]);
            }
        }
        args
    }
}

/// Whether `cmdline` (a /proc/<pid>/cmdline) is the holder of `pod_id` in `state_dir`.
pub fn is_holder_of(cmdline: &[u8], state_dir: &std::path::Path, pod_id: &str) -> bool {
    let mut words = cmdline.split(|b| *b == 0).skip(1);
    words.next() == Some(b"--state-dir")
        && words.next() == Some(state_dir.as_os_str().as_bytes())
        && words.next() == Some(b"--pod-id")
        && words.next() == Some(pod_id.as_bytes())
}

/// A start request: the arguments NUL-separated, each checked to fit.
pub fn encode(args: &[OsString]) -> io::Result<Vec<u8>> {
    let mut msg = Vec::new();
    for a in args {
        if a.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("holder argument {a:?} contains a NUL byte"),
            ));
        }
        msg.extend_from_slice(a.as_bytes());
        msg.push(0);
    }
    if msg.len() > MAX_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the holder's arguments take {} bytes, over the {MAX_REQUEST} a start takes",
                msg.len()
            ),
        ));
    }
    Ok(msg)
}

/// The arguments of a start request's body.
pub fn decode(body: &[u8]) -> Vec<OsString> {
    match body.strip_suffix(b"\0") {
        None if body.is_empty() => Vec::new(),
        rest => rest
            .unwrap_or(body)
            .split(|b| *b == 0)
            .map(|a| OsStr::from_bytes(a).to_os_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_decodes_to_its_arguments() {
        let args: Vec<OsString> = vec!["--pod-id".into(), "p".into(), "".into(), "x y".into()];
        assert_eq!(decode(&encode(&args).unwrap()), args);
        assert!(decode(b"").is_empty());
        assert!(encode(&["a\0b".into()]).is_err());
        assert!(encode(&["x".repeat(MAX_REQUEST).into()]).is_err());
    }

    #[test]
    fn a_holder_is_found_by_its_state_dir_and_pod_id() {
        let opts = PodOptions {
            share_pid: true,
            ..Default::default()
        };
        let dir = std::path::Path::new("/var/lib/berth");
        let mut cmd = b"/usr/bin/berth-holder".to_vec();
        for a in opts.args(dir, "abc") {
            cmd.push(0);
            cmd.extend_from_slice(a.as_bytes());
        }
        assert!(is_holder_of(&cmd, dir, "abc"));
        assert!(!is_holder_of(&cmd, dir, "ab"));
        assert!(!is_holder_of(&cmd, std::path::Path::new("/other"), "abc"));
        assert!(!is_holder_of(b"berth-holder\0zygote\0", dir, "abc"));
    }
}
