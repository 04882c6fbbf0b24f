//! The CRI socket's message limits: 16 MiB each way, as kubelet's client and containerd's
//! server use (a node's ListContainers or ListImages answer outgrows gRPC's 4 MiB default
//! long before it outgrows the node), and the status a message over the limit gets.
//!
//! gRPC's status code table gives RESOURCE_EXHAUSTED to "sending or receiving a message
//! larger than the configured limit", which grpc-go (kubelet, containerd) answers; tonic
//! answers OUT_OF_RANGE. [`TooLargeLayer`] rewrites exactly tonic's two size refusals, in
//! the headers of a refused request and in the trailers of an answer that could not be
//! sent, so a client sees what it would see from containerd.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::{Bytes, Service, http};

/// The largest message the server decodes or sends.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The messages tonic's codec refuses an oversized message with.
const TOO_LARGE: [&str; 2] = [
    "Error, decoded message length too large",
    "Error, encoded message length too large",
];

/// A status of tonic's size refusal becomes RESOURCE_EXHAUSTED; any other is left alone.
fn remap(headers: &mut http::HeaderMap) {
    let Some(st) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if st.code() != tonic::Code::OutOfRange
        || !TOO_LARGE.iter().any(|p| st.message().starts_with(p))
    {
        return;
    }
    let exhausted = tonic::Status::resource_exhausted(st.message());
    if exhausted.add_header(headers).is_err() {
        tracing::warn!("could not rewrite a message-size status");
    }
}

fn remap_frame(f: Frame<Bytes>) -> Frame<Bytes> {
    match f.into_trailers() {
        Ok(mut t) => {
            remap(&mut t);
            Frame::trailers(t)
        }
        Err(f) => f,
    }
}

/// The layer [`super::server::serve`] puts around both services.
#[derive(Debug, Clone, Copy, Default)]
pub struct TooLargeLayer;

impl<S> tower_layer::Layer<S> for TooLargeLayer {
    type Service = TooLarge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TooLarge(inner)
    }
}

/// See [`TooLargeLayer`].
#[derive(Debug, Clone)]
pub struct TooLarge<S>(S);

impl<S> Service<http::Request<Body>> for TooLarge<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let answer = self.0.call(req);
        Box::pin(async move {
            let mut resp = answer.await?;
            remap(resp.headers_mut());
            Ok(resp.map(|b| Body::new(b.map_frame(remap_frame))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(h: &http::HeaderMap) -> tonic::Status {
        tonic::Status::from_header_map(h).expect("a status")
    }

    #[test]
    fn size_refusals_become_resource_exhausted() {
        for msg in [
            "Error, decoded message length too large: found 17825792 bytes, the limit is: 16777216 bytes",
            "Error, encoded message length too large: found 17825792 bytes, the limit is: 16777216 bytes",
        ] {
            let mut h = http::HeaderMap::new();
            tonic::Status::out_of_range(msg)
                .add_header(&mut h)
                .expect("header");
            remap(&mut h);
            let st = status_of(&h);
            assert_eq!(st.code(), tonic::Code::ResourceExhausted);
            assert_eq!(st.message(), msg);
        }
        // Anything else, OUT_OF_RANGE included, passes unchanged.
        for st in [
            tonic::Status::out_of_range("offset 9 past the end"),
            tonic::Status::invalid_argument("Error, decoded message length too large"),
        ] {
            let mut h = http::HeaderMap::new();
            st.add_header(&mut h).expect("header");
            remap(&mut h);
            assert_eq!(status_of(&h).code(), st.code());
        }
        let mut none = http::HeaderMap::new();
        remap(&mut none);
        assert!(none.is_empty());
    }
}
