//! The CRI streaming server: Exec, Attach and PortForward as kubelet's streaming server
//! serves them to kubectl (through the API server), over HTTP/1.1 upgraded to SPDY/3.1.
//!
//! It owns the protocol only: URLs and their single-use tokens, the upgrade negotiation,
//! SPDY framing, the remotecommand and portforward stream conventions and status reports.
//! Processes, terminals and namespaces belong to the runtime behind [`StreamingRuntime`].
//! See docs/streaming.md.

pub mod backend;
pub mod cache;
pub mod error;
pub mod http;
pub mod portforward;
pub mod remotecommand;
pub mod request;
pub mod server;
pub mod spdy;
pub mod status;

#[cfg(test)]
mod tests;

pub use backend::{
    DuplexStream, RuntimeError, SessionIo, StreamIn, StreamOut, StreamingRuntime, TerminalSize,
};
pub use error::StreamingError;
pub use request::{AttachRequest, ExecRequest, PortForwardRequest};
pub use server::{StreamingConfig, StreamingServer};
