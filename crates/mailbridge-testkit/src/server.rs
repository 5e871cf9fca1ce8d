//! The HTTP server: every Microsoft HTTP surface of the emulator on one loopback port,
//! with a middleware that records each request for inspection.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use rustls::pki_types::pem::PemObject as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::emulator::{Emulator, RecordedRequest};

/// Bodies larger than this are not recorded in full.
const RECORD_LIMIT: usize = 64 * 1024;
/// Largest request body accepted (upload-session chunks are at most 60 MiB).
const BODY_LIMIT: usize = 200 * 1024 * 1024;

/// The router with every surface.
pub fn router(emulator: Emulator) -> Router {
    Router::new()
        .merge(crate::identity::router())
        .merge(crate::graph::router())
        .merge(crate::ews::router())
        .merge(crate::autodiscover::router())
        .merge(crate::exchange::router())
        .layer(middleware::from_fn_with_state(emulator.clone(), record))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(emulator)
}

async fn record(State(emulator): State<Emulator>, request: Request, next: Next) -> Response {
    // The judge records its own verdicts; its body carries credentials in clear.
    if request.uri().path() == crate::exchange::JUDGE_PATH {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return Response::builder()
            .status(413)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let index = emulator.request_count();
    emulator.record(RecordedRequest {
        surface: "http".to_owned(),
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes[..bytes.len().min(RECORD_LIMIT)]).into_owned(),
        status: 0,
        at: emulator.now(),
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    emulator.record_status(index, response.status().as_u16());
    response
}

/// A running HTTP server for an [`Emulator`].
#[derive(Debug)]
pub struct EmulatorServer {
    pub emulator: Emulator,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl EmulatorServer {
    /// Binds `addr` (use `127.0.0.1:0` for a free port) and serves until stopped.
    pub async fn start(emulator: Emulator, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        emulator.set_base_url(format!("http://{addr}"));
        Ok(Self::serve(emulator, addr, listener))
    }

    /// Like [`EmulatorServer::start`], over HTTPS with a certificate for `localhost`
    /// and `127.0.0.1` from `ca`, as Microsoft's endpoints are HTTPS: clients then
    /// trust `ca` as an extra CA, with certificate checks on. The base URL is
    /// `https://localhost:<port>`.
    pub async fn start_https(
        emulator: Emulator,
        addr: SocketAddr,
        ca: &crate::crypto::TestCa,
    ) -> std::io::Result<Self> {
        let cert = ca
            .issue(&["localhost", "127.0.0.1"])
            .map_err(std::io::Error::other)?;
        let certs: Vec<_> =
            rustls::pki_types::CertificateDer::pem_slice_iter(cert.certificate_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(std::io::Error::other)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
            .map_err(std::io::Error::other)?;
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
        let tcp = TcpListener::bind(addr).await?;
        let addr = tcp.local_addr()?;
        emulator.set_base_url(format!("https://localhost:{}", addr.port()));
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        };
        Ok(Self::serve(emulator, addr, listener))
    }

    fn serve<L>(emulator: Emulator, addr: SocketAddr, listener: L) -> Self
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let shutdown = CancellationToken::new();
        let app = router(emulator.clone());
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator HTTP server failed");
            }
        });
        Self {
            emulator,
            addr,
            shutdown,
            task,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (or `https://localhost:41234`).
    pub fn base_url(&self) -> String {
        self.emulator.base_url()
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// A TLS listener for `axum::serve`: accepts TCP connections and completes the TLS
/// handshake (with a timeout, so a silent client cannot hold the listener).
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await
            {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
