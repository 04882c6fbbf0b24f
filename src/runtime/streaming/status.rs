//! The end-of-session report on a remotecommand error stream.
//!
//! From v4.channel.k8s.io on, kubelet writes a `metav1.Status` as JSON (kubectl turns a
//! NonZeroExitCode status into its own exit code); before v4 it writes only the message of
//! a failure, and nothing on success. Field order and omissions follow Go's encoding of
//! `metav1.Status`, so the bytes are the ones kubelet sends.

use serde::Serialize;

#[derive(Debug, Serialize, Default)]
struct Meta {}

#[derive(Debug, Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

#[derive(Debug, Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Debug, Serialize)]
struct Status {
    metadata: Meta,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command exited non-zero; `what` describes the command.
    ExitCode {
        code: i32,
        what: String,
    },
    /// The runtime failed; the text is the error.
    Internal(String),
}

impl Outcome {
    fn status(&self) -> Status {
        match self {
            Outcome::Success => Status {
                metadata: Meta::default(),
                status: "Success",
                message: None,
                reason: None,
                details: None,
                code: None,
            },
            Outcome::ExitCode { code, what } => Status {
                metadata: Meta::default(),
                status: "Failure",
                message: Some(format!(
                    "command terminated with non-zero exit code: {what}"
                )),
                reason: Some("NonZeroExitCode"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode"),
                        message: code.to_string(),
                    }],
                }),
                code: None,
            },
            Outcome::Internal(err) => Status {
                metadata: Meta::default(),
                status: "Failure",
                message: Some(format!("Internal error occurred: {err}")),
                reason: Some("InternalError"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: None,
                        message: err.clone(),
                    }],
                }),
                code: Some(500),
            },
        }
    }

    /// The bytes for the error stream of a v4 (or v5) session.
    pub fn v4_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.status()).unwrap_or_default()
    }

    /// The bytes for the error stream of a v1-v3 session: the failure's message, if any.
    pub fn v1_bytes(&self) -> Vec<u8> {
        match self.status().message {
            Some(m) if *self != Outcome::Success => m.into_bytes(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_encode_as_kubelet_sends_them() {
        assert_eq!(
            String::from_utf8(Outcome::Success.v4_bytes()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let exit = Outcome::ExitCode {
            code: 3,
            what: "error executing command [sh -c exit 3], exit code 3".into(),
        };
        assert_eq!(
            String::from_utf8(exit.v4_bytes()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            String::from_utf8(Outcome::Internal("boom".into()).v4_bytes()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","details":{"causes":[{"message":"boom"}]},"code":500}"#
        );
        assert!(Outcome::Success.v1_bytes().is_empty());
        assert_eq!(
            String::from_utf8(exit.v1_bytes()).unwrap(),
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
