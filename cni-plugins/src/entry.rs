//! The plugin entry point: the CNI environment, stdin, dispatch, and the spec's output.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::{Code, Error, Result};
use crate::types::{CniResult, Common, SUPPORTED_VERSIONS, VERSION_WITH_GC};

/// The verbs of CNI 1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            other => {
                return Err(Error::new(
                    Code::InvalidEnv,
                    format!(
                        "CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, STATUS, GC or VERSION"
                    ),
                ));
            }
        })
    }
}

/// One invocation: the CNI variables and the configuration on stdin.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
    pub stdin: Vec<u8>,
    pub common: Common,
}

impl Request {
    /// The previous plugin's result; `Ok(None)` when there is none.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        self.common.prev_result()
    }

    /// CNI_NETNS, required for the verb at hand.
    pub fn netns(&self) -> Result<&PathBuf> {
        self.netns
            .as_ref()
            .ok_or_else(|| Error::new(Code::InvalidEnv, "CNI_NETNS is required"))
    }
}

/// What a plugin does for each verb. VERSION is answered by [`run`] itself.
pub trait Plugin {
    fn add(&self, req: &Request) -> Result<CniResult>;
    /// Must succeed when the attachment is already gone (the spec's idempotent DEL).
    fn del(&self, req: &Request) -> Result<()>;
    fn check(&self, req: &Request) -> Result<()>;
    fn status(&self, _req: &Request) -> Result<()> {
        Ok(())
    }
    fn gc(&self, _req: &Request) -> Result<()> {
        Ok(())
    }
}

/// Reads the environment and stdin, runs the verb, and writes the result or the spec's
/// error JSON to stdout. Exit status 0 on success, 1 on error.
pub fn run<P: Plugin>(plugin: P) -> ExitCode {
    let mut stdin = Vec::new();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let command = match Command::parse(&env("CNI_COMMAND")) {
        Ok(c) => c,
        Err(e) => return fail(&e, "1.1.0"),
    };
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(&Error::io("read stdin", e), "1.1.0");
    }
    if command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(&stdin)
            .ok()
            .and_then(|v| {
                v.get("cniVersion")
                    .and_then(|s| s.as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| "1.1.0".into());
        let out = serde_json::json!({"cniVersion": asked, "supportedVersions": SUPPORTED_VERSIONS});
        return emit(&out);
    }
    let common: Common = match serde_json::from_slice(&stdin) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &Error::new(Code::Decode, "decode network configuration").with_details(e),
                "1.1.0",
            );
        }
    };
    let version = common.cni_version.clone();
    let req = match request(command, stdin, common, env) {
        Ok(r) => r,
        Err(e) => return fail(&e, &version),
    };
    let out = match command {
        Command::Add => plugin.add(&req).map(|r| Some(r.for_version(&version))),
        Command::Del => plugin.del(&req).map(|()| None),
        Command::Check => plugin.check(&req).map(|()| None),
        Command::Status => plugin.status(&req).map(|()| None),
        Command::Gc => plugin.gc(&req).map(|()| None),
        Command::Version => Ok(None),
    };
    match out {
        Ok(Some(result)) => match serde_json::to_value(&result) {
            Ok(v) => emit(&v),
            Err(e) => fail(&Error::io("encode result", e), &version),
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(&e, &version),
    }
}

fn request(
    command: Command,
    stdin: Vec<u8>,
    common: Common,
    env: impl Fn(&str) -> String,
) -> Result<Request> {
    common.validate()?;
    if matches!(command, Command::Status | Command::Gc)
        && version_lt(&common.cni_version, VERSION_WITH_GC)
    {
        return Err(Error::new(
            Code::IncompatibleVersion,
            format!(
                "{command:?} needs cniVersion {VERSION_WITH_GC} or later, config is {}",
                common.cni_version
            ),
        ));
    }
    let per_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
    let container_id = env("CNI_CONTAINERID");
    let ifname = env("CNI_IFNAME");
    let netns = Some(env("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if per_attachment {
        validate_container_id(&container_id)?;
        validate_ifname(&ifname)?;
        if netns.is_none() && command != Command::Del {
            return Err(Error::new(Code::InvalidEnv, "CNI_NETNS is required"));
        }
    }
    let args = env("CNI_ARGS")
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    Error::new(
                        Code::InvalidEnv,
                        format!("CNI_ARGS entry {kv:?}: expected KEY=VALUE"),
                    )
                })
        })
        .collect::<Result<_>>()?;
    let path = std::env::split_paths(&env("CNI_PATH")).collect();
    Ok(Request {
        command,
        container_id,
        netns,
        ifname,
        args,
        path,
        stdin,
        common,
    })
}

/// The spec's container id: letters, digits, and `_ . -` after the first character.
pub fn validate_container_id(id: &str) -> Result<()> {
    let ok = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::new(
            Code::InvalidEnv,
            format!("CNI_CONTAINERID {id:?}: must be letters, digits, '_', '.', '-'"),
        ));
    }
    Ok(())
}

/// A Linux interface name: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
    if !ok {
        return Err(Error::new(
            Code::InvalidEnv,
            format!("CNI_IFNAME {name:?}: not a valid interface name"),
        ));
    }
    Ok(())
}

/// Compares dotted versions numerically.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

fn emit(v: &serde_json::Value) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{v}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn fail(e: &Error, version: &str) -> ExitCode {
    let json = serde_json::to_string(&e.to_json(version)).unwrap_or_default();
    let _ = writeln!(std::io::stdout().lock(), "{json}");
    let _ = writeln!(std::io::stderr().lock(), "{e}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids_and_names() {
        assert!(validate_container_id("abc-1.2_3").is_ok());
        assert!(validate_container_id("-abc").is_err());
        assert!(validate_container_id("").is_err());
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
        assert!(version_lt("1.0.0", "1.1.0"));
        assert!(!version_lt("1.1.0", "1.1.0"));
    }
}
