//! OCI hooks run by the runtime: createRuntime, poststart, poststop (and prestart, the
//! deprecated name of createRuntime's moment).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::error::{OciError, Result};

/// Runs `hooks` in order, each with the container state on stdin. The first failure is
/// returned (the caller decides whether it is fatal or only a warning).
pub fn run(id: &str, kind: &str, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        let name = format!("{kind}[{i}] {}", h.path().display());
        let herr = |reason: String| OciError::Hook {
            id: id.into(),
            hook: name.clone(),
            reason,
        };
        let args = h.args().clone().unwrap_or_default();
        let mut cmd = Command::new(h.path());
        if let Some((first, rest)) = args.split_first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(first).args(rest);
        }
        cmd.env_clear();
        for e in h.env().iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| herr(format!("spawn: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its stdin is not an error.
            let _ = stdin.write_all(state);
        }
        let timeout = h
            .timeout()
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64));
        let start = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| herr(format!("wait: {e}")))? {
                Some(s) => break s,
                None => {
                    if timeout.is_some_and(|t| start.elapsed() > t) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(herr(format!(
                            "timed out after {}s",
                            timeout.unwrap_or_default().as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(herr(format!("{status}: {}", err.trim())));
        }
    }
    Ok(())
}
