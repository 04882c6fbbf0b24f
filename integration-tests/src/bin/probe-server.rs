//! `probe-server`: the target of the kubelet's gRPC and HTTPS probes in the tests, run
//! inside a container of the `ProbeServer` fixture image.
//!
//! - `probe-server grpc PORT [FLIP]` serves grpc.health.v1.Health on 0.0.0.0:PORT: the
//!   server as a whole ("") and `berth.test.Up` are SERVING, `berth.test.Down` is
//!   NOT_SERVING. While the file FLIP exists, "" reports NOT_SERVING too.
//! - `probe-server https PORT CERT KEY` answers every HTTPS request on 0.0.0.0:PORT with
//!   200 and `berth-https`, with the PEM certificate chain CERT and private key KEY.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic_health::ServingStatus;

const USAGE: &str = "usage: probe-server grpc PORT [FLIP] | probe-server https PORT CERT KEY";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("probe-server: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = rt.block_on(async {
        match argv.as_slice() {
            ["grpc", port] => grpc(port, None).await,
            ["grpc", port, flip] => grpc(port, Some(PathBuf::from(flip))).await,
            ["https", port, cert, key] => https(port, Path::new(cert), Path::new(key)).await,
            _ => Err(anyhow::anyhow!(USAGE)),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn listen_addr(port: &str) -> anyhow::Result<SocketAddr> {
    let port: u16 = port.parse().with_context(|| format!("port {port:?}"))?;
    Ok(([0, 0, 0, 0], port).into())
}

async fn grpc(port: &str, flip: Option<PathBuf>) -> anyhow::Result<()> {
    let addr = listen_addr(port)?;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("berth.test.Up", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("berth.test.Down", ServingStatus::NotServing)
        .await;
    if let Some(flip) = flip {
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let status = if flip.exists() {
                    ServingStatus::NotServing
                } else {
                    ServingStatus::Serving
                };
                if last != Some(status) {
                    eprintln!("probe-server: \"\" is {status:?}");
                    reporter.set_service_status("", status).await;
                    last = Some(status);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    eprintln!("probe-server: grpc health on {addr}");
    tonic::transport::Server::builder()
        .add_service(service)
        .serve(addr)
        .await
        .context("serve grpc")
}

fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("read {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key")
}

async fn https(port: &str, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let addr = listen_addr(port)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(cert, key)?));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    eprintln!("probe-server: https on {addr}");
    loop {
        let (tcp, peer) = listener.accept().await.context("accept")?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(acceptor, tcp).await {
                eprintln!("probe-server: {peer}: {e:#}");
            }
        });
    }
}

/// Reads one request's head and answers 200; the connection closes after it.
async fn answer(acceptor: TlsAcceptor, tcp: tokio::net::TcpStream) -> anyhow::Result<()> {
    let mut tls = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp))
        .await
        .context("handshake timed out")?
        .context("handshake")?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .context("request timed out")??;
        if n == 0 || head.len() > 64 * 1024 {
            anyhow::bail!("no complete request head");
        }
        head.extend_from_slice(&buf[..n]);
    }
    let body = "berth-https\n";
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(reply.as_bytes()).await?;
    tls.shutdown().await?;
    Ok(())
}
