//! Delegating to the IPAM plugin named in `ipam.type`: the same stdin and CNI variables,
//! found on CNI_PATH, as the spec's "delegated plugin" protocol says.

use std::io::Write;
use std::process::{Command as Exec, Stdio};

use crate::entry::{Command, Request};
use crate::error::{Code, Error, ErrorJson, Result};
use crate::types::CniResult;

/// Runs the IPAM plugin for `command`; ADD returns its result.
pub fn delegate(req: &Request, ipam_type: &str, command: Command) -> Result<Option<CniResult>> {
    start(req, ipam_type, command)?.wait()
}

/// An IPAM plugin started with [`start`], running while the caller does other work.
#[derive(Debug)]
pub struct Pending {
    child: std::process::Child,
    bin: std::path::PathBuf,
    ipam_type: String,
    command: Command,
}

/// Starts the IPAM plugin for `command` and hands it its stdin; [`Pending::wait`] collects
/// the outcome. Lets a plugin overlap IPAM with its own netlink work.
pub fn start(req: &Request, ipam_type: &str, command: Command) -> Result<Pending> {
    if ipam_type.is_empty() || ipam_type.contains('/') || ipam_type.starts_with('.') {
        return Err(Error::config(format!(
            "ipam.type {ipam_type:?}: not a plugin name"
        )));
    }
    let bin = req
        .path
        .iter()
        .map(|d| d.join(ipam_type))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::new(
                Code::InvalidConfig,
                format!(
                    "ipam.type {ipam_type:?}: no such plugin on CNI_PATH {:?}",
                    req.path
                ),
            )
        })?;
    let verb = match command {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Status => "STATUS",
        Command::Gc => "GC",
        Command::Version => "VERSION",
    };
    let mut cmd = Exec::new(&bin);
    cmd.env("CNI_COMMAND", verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    crate::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("run IPAM plugin {}", bin.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&req.stdin)
            .map_err(|e| Error::io(format!("write stdin of {}", bin.display()), e))?;
    }
    Ok(Pending {
        child,
        bin,
        ipam_type: ipam_type.to_string(),
        command,
    })
}

impl Pending {
    /// Waits for the plugin; ADD returns its result.
    pub fn wait(self) -> Result<Option<CniResult>> {
        let Pending {
            child,
            bin,
            ipam_type,
            command,
        } = self;
        let ipam_type = ipam_type.as_str();
        finish(child, &bin, ipam_type, command)
    }
}

fn finish(
    child: std::process::Child,
    bin: &std::path::Path,
    ipam_type: &str,
    command: Command,
) -> Result<Option<CniResult>> {
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait for {}", bin.display()), e))?;
    if !out.status.success() {
        return Err(match serde_json::from_slice::<ErrorJson>(&out.stdout) {
            Ok(ej) => Error {
                code: code_from(ej.code),
                msg: format!("{ipam_type}: {}", ej.msg),
                details: ej.details,
            },
            Err(_) => Error::io(
                format!("IPAM plugin {ipam_type} failed ({})", out.status),
                String::from_utf8_lossy(&out.stdout),
            ),
        });
    }
    if command != Command::Add {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(|e| {
        Error::new(Code::Decode, format!("decode result of {ipam_type}")).with_details(e)
    })
}

fn code_from(n: u32) -> Code {
    match n {
        1 => Code::IncompatibleVersion,
        2 => Code::UnsupportedField,
        3 => Code::UnknownContainer,
        4 => Code::InvalidEnv,
        5 => Code::Io,
        6 => Code::Decode,
        7 => Code::InvalidConfig,
        11 => Code::TryAgainLater,
        50 => Code::NotAvailable,
        100 => Code::RangeFull,
        _ => Code::Kernel,
    }
}
