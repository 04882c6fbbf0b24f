//! The spec's error result: a JSON object with `code`, `msg` and `details`, written to
//! stdout with a non-zero exit status.

use serde::{Deserialize, Serialize};

/// The error codes the CNI spec reserves (1-99) and berth's own (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's cniVersion is not supported.
    IncompatibleVersion,
    /// 2: a field of the configuration is not supported.
    UnsupportedField,
    /// 3: the container does not exist or is unknown.
    UnknownContainer,
    /// 4: a required CNI_* variable is missing or invalid.
    InvalidEnv,
    /// 5: an I/O failure (state files, netlink, nftables).
    Io,
    /// 6: the configuration could not be decoded.
    Decode,
    /// 7: the configuration is invalid.
    InvalidConfig,
    /// 11: try again later.
    TryAgainLater,
    /// 50: the plugin cannot serve requests now (STATUS).
    NotAvailable,
    /// 100: the IP range is full (berth-host-local).
    RangeFull,
    /// 101: the kernel refused a change (netlink or nftables).
    Kernel,
}

impl Code {
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::RangeFull => 100,
            Code::Kernel => 101,
        }
    }
}

/// A plugin failure as the spec reports it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct Error {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

/// The JSON shape of [`Error`] on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorJson {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl Error {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl std::fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }

    pub fn io(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::new(Code::Io, what).with_details(e)
    }

    pub fn kernel(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::new(Code::Kernel, what).with_details(e)
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidConfig, msg)
    }

    pub fn to_json(&self, cni_version: &str) -> ErrorJson {
        ErrorJson {
            cni_version: cni_version.to_string(),
            code: self.code.number(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
