//! The little HTTP/1.1 the streaming server needs: read one request head, answer it with an
//! error the way Go's `http.Error` does, or switch the connection to SPDY/3.1 after the
//! `X-Stream-Protocol-Version` negotiation kubelet performs (httpstream.Handshake).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

pub const HEADER_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
pub const HEADER_ACCEPTED_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";

/// One parsed request line and header set.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Every value of `name` (case-insensitive), in order.
    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }
}

/// Why no request head could be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("connection closed before a request head")]
    Closed,
    #[error("request head not complete within {0:?}")]
    Timeout(Duration),
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("reading request head: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a request head; returns it with the bytes that followed it.
pub async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    timeout: Duration,
) -> Result<(RequestHead, Bytes), HeadError> {
    tokio::time::timeout(timeout, read_head_inner(rd))
        .await
        .map_err(|_| HeadError::Timeout(timeout))?
}

async fn read_head_inner<R: AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<(RequestHead, Bytes), HeadError> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if rd.read_buf(&mut buf).await? == 0 {
            return Err(HeadError::Closed);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let head = RequestHead {
                    method: req.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                let rest = buf.split_off(n).freeze();
                return Ok((head, rest));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() >= MAX_HEAD {
                    return Err(HeadError::TooLarge);
                }
            }
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

/// Writes a plain-text error response as Go's `http.Error` does, then closes.
pub async fn write_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    msg: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let body = format!("{msg}\n");
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n",
        reason(code)
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    w.flush().await?;
    w.shutdown().await
}

/// Writes the 101 that hands the connection to SPDY/3.1.
pub async fn write_switching<W: AsyncWrite + Unpin>(
    w: &mut W,
    protocol: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n{HEADER_PROTOCOL_VERSION}: {protocol}\r\n\r\n"
    );
    w.write_all(head.as_bytes()).await?;
    w.flush().await
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Error",
    }
}

/// A refused upgrade: the status and message kubelet answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub message: String,
    /// Extra response headers (the protocols the server accepts, on a 403).
    pub headers: Vec<(String, String)>,
}

/// Picks the first protocol the client offers that the server supports.
pub fn negotiate(head: &RequestHead, server: &[&str]) -> Result<String, Refusal> {
    let client: Vec<&str> = head
        .all(HEADER_PROTOCOL_VERSION)
        .flat_map(|v| v.split(','))
        .map(|p| p.trim_matches(' '))
        .filter(|p| !p.is_empty())
        .collect();
    if client.is_empty() {
        return Err(Refusal {
            code: 400,
            message: format!("unable to upgrade: {HEADER_PROTOCOL_VERSION} is required"),
            headers: vec![],
        });
    }
    if let Some(p) = client.iter().find(|c| server.contains(c)) {
        return Ok((*p).to_string());
    }
    Err(Refusal {
        code: 403,
        message: format!(
            "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
            client.join(" "),
            server.join(" ")
        ),
        headers: server
            .iter()
            .map(|p| (HEADER_ACCEPTED_VERSIONS.to_string(), (*p).to_string()))
            .collect(),
    })
}

/// Checks `Connection: Upgrade` and `Upgrade: SPDY/3.1` as kubelet's SPDY upgrader does.
pub fn check_upgrade(head: &RequestHead) -> Result<(), Refusal> {
    let connection = head.get("Connection").unwrap_or("").to_ascii_lowercase();
    let upgrade = head.get("Upgrade").unwrap_or("").to_ascii_lowercase();
    if connection.contains("upgrade") && upgrade.contains("spdy/3.1") {
        return Ok(());
    }
    Err(Refusal {
        code: 400,
        message: format!(
            "unable to upgrade: missing upgrade headers in request: {}",
            go_header_dump(head)
        ),
        headers: vec![],
    })
}

/// The request headers as Go prints an `http.Header` with `%#v` (Host is not among them).
fn go_header_dump(head: &RequestHead) -> String {
    let mut map: std::collections::BTreeMap<String, Vec<&str>> = std::collections::BTreeMap::new();
    for (n, v) in &head.headers {
        if n.eq_ignore_ascii_case("host") {
            continue;
        }
        map.entry(canonical(n)).or_default().push(v);
    }
    let fields: Vec<String> = map
        .iter()
        .map(|(k, vs)| {
            let vals: Vec<String> = vs.iter().map(|v| format!("{v:?}")).collect();
            format!("{k:?}:[]string{{{}}}", vals.join(", "))
        })
        .collect();
    format!("http.Header{{{}}}", fields.join(", "))
}

/// Go's textproto.CanonicalMIMEHeaderKey for ASCII names.
fn canonical(name: &str) -> String {
    let mut up = true;
    name.chars()
        .map(|c| {
            let out = if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            up = c == '-';
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            path: "/exec/x".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn negotiation_takes_the_clients_first_supported() {
        let h = head(&[
            ("X-Stream-Protocol-Version", "v9.channel.k8s.io"),
            (
                "x-stream-protocol-version",
                "v4.channel.k8s.io, v3.channel.k8s.io",
            ),
        ]);
        assert_eq!(
            negotiate(&h, &["v3.channel.k8s.io", "v4.channel.k8s.io"]).unwrap(),
            "v4.channel.k8s.io"
        );
    }

    #[test]
    fn missing_or_foreign_protocols_are_refused_like_kubelet() {
        let r = negotiate(&head(&[]), &["portforward.k8s.io"]).unwrap_err();
        assert_eq!(r.code, 400);
        assert_eq!(
            r.message,
            "unable to upgrade: X-Stream-Protocol-Version is required"
        );
        let r =
            negotiate(&head(&[("X-Stream-Protocol-Version", "a, b")]), &["x", "y"]).unwrap_err();
        assert_eq!(r.code, 403);
        assert_eq!(
            r.message,
            "unable to upgrade: unable to negotiate protocol: client supports [a b], server accepts [x y]"
        );
        assert_eq!(r.headers.len(), 2);
    }

    #[test]
    fn upgrade_headers_are_required() {
        assert!(
            check_upgrade(&head(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")])).is_ok()
        );
        let r = check_upgrade(&head(&[
            ("connection", "close"),
            ("Host", "h"),
            ("x-a", "1"),
            ("X-A", "2"),
        ]))
        .unwrap_err();
        assert_eq!(r.code, 400);
        assert_eq!(
            r.message,
            "unable to upgrade: missing upgrade headers in request: \
             http.Header{\"Connection\":[]string{\"close\"}, \"X-A\":[]string{\"1\", \"2\"}}"
        );
    }

    #[tokio::test]
    async fn head_and_trailing_bytes_are_split() {
        let raw =
            b"POST /exec/abc?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: SPDY/3.1\r\n\r\n\x80\x03\x00\x01";
        let mut rd = &raw[..];
        let (h, rest) = read_head(&mut rd, Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.query.as_str()),
            ("POST", "/exec/abc", "x=1")
        );
        assert_eq!(h.get("upgrade"), Some("SPDY/3.1"));
        assert_eq!(&rest[..], b"\x80\x03\x00\x01");
    }
}
