//! SPDY/3.1, as far as Kubernetes streaming uses it: the frame codec, the header-block zlib
//! contexts with the SPDY/3 dictionary, and the server side of a connection whose streams
//! carry exec, attach and port-forward bytes. Nothing here knows about Kubernetes.

pub mod conn;
pub mod dictionary;
pub mod frame;
pub mod stream;
pub mod zlib;

#[cfg(test)]
mod tests;

pub use conn::{ConnOptions, Connection, StreamFilter};
pub use frame::{Frame, HeaderBlock};
pub use stream::{RecvHalf, SendHalf, SpdyStream};
