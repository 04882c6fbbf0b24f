//! The streaming server's error type.

/// What the streaming server reports to its callers (the CRI service maps these to gRPC
/// codes: `InvalidRequest` to InvalidArgument, `TooManyInFlight` to ResourceExhausted).
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("{request}.{field}: {reason}")]
    InvalidRequest {
        request: &'static str,
        field: &'static str,
        reason: &'static str,
    },
    #[error("maximum number of in-flight streaming requests exceeded ({0})")]
    TooManyInFlight(usize),
    #[error("streaming server: bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("streaming server: random token: {0}")]
    Random(String),
    #[error("streaming server config: {field}: {reason}")]
    Config { field: &'static str, reason: String },
}
