//! mailbridge-tls: client TLS for the mail protocols (SMTP, POP3, IMAP).
//!
//! - [`TlsSettings`]: which certificates are trusted (the system's roots plus an
//!   optional extra CA, for private CAs and the sandbox, and an optional [`Pin`] of
//!   the server's own certificate) and which name the server's certificate must
//!   carry. Certificate checks are never switched off. [`TlsSettings::client_config`]
//!   is the same trust for HTTPS clients (reqwest's preconfigured rustls).
//! - `pin`: [`Pin`] and [`PinningVerifier`], which accepts exactly the pinned
//!   certificate and verifies every other one as usual, keeping what the server
//!   presented ([`Presented`]).
//! - `certificate`: [`CertificateRefused`] (the typed cause, the presented chain) and
//!   [`CertificateInfo`] (subject, issuer, validity, fingerprint, self-signed, CA);
//!   [`failure`] tells a handshake failure's kind from the typed errors.
//! - [`MailStream`]: a TCP connection that is plain or TLS, and can be upgraded in
//!   place (STARTTLS, STLS), buffered for line-based protocols, with the bounded
//!   line reading and writing that SMTP, POP3 and IMAP share.

mod certificate;
mod pin;

use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use mailbridge_types::config::TlsMode;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite,
    AsyncWriteExt as _, BufStream, ReadBuf,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use certificate::{CertificateInfo, CertificateRefused, Problem};
pub use pin::{Pin, PinError, PinningVerifier, Presented};

/// Who is trusted.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// An extra trusted CA (PEM), added to the system's roots.
    pub extra_ca_pem: Option<String>,
    /// The name the certificate must carry (default: the host connected to).
    pub server_name: Option<String>,
    /// The server's own certificate, pinned: accepted when presented, whatever its
    /// issuer, name or `CA:TRUE`; any other certificate is verified as usual.
    pub pin: Option<Pin>,
}

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS with {name} failed{}", ca_hint(source))]
pub struct TlsError {
    pub name: String,
    #[source]
    pub source: std::io::Error,
}

/// The rustls error inside a handshake's I/O error, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The certificate refusal somewhere in an error's chain (an HTTPS client's error,
/// whose handshake ran with [`TlsSettings::client_config_capturing`]): rustls' typed
/// cause, with the chain the server presented and the pin in force.
pub fn refused_in_chain(
    error: &(dyn std::error::Error + 'static),
    presented: &Presented,
    pin: Option<Pin>,
) -> Option<CertificateRefused> {
    let mut next = Some(error);
    while let Some(e) = next {
        // An I/O error's `source()` skips the error it wraps (which may be another
        // I/O error): look inside too.
        let mut candidates = vec![e];
        while let Some(inner) = candidates
            .last()
            .and_then(|c| c.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::get_ref)
            .filter(|_| candidates.len() < 8)
        {
            candidates.push(inner);
        }
        for candidate in candidates {
            if let Some(c) = candidate.downcast_ref::<CertificateRefused>() {
                return Some(CertificateRefused {
                    error: c.error.clone(),
                    chain: c.chain.clone(),
                    pin: c.pin,
                });
            }
            if let Some(rustls::Error::InvalidCertificate(error)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(CertificateRefused {
                    error: error.clone(),
                    chain: presented.chain(),
                    pin,
                });
            }
        }
        next = e.source();
    }
    None
}

/// The server answered the handshake with something that is not TLS.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server did not answer with TLS ({0}): this port expects plain text or STARTTLS (like 143, 110 or 587), so set TLS to STARTTLS, or use the implicit-TLS port (like 993, 995 or 465)"
)]
struct NotTls(rustls::Error);

/// The fix for a failed handshake (`source` of a TLS error) when the server's
/// certificate was refused, as ` (fix)`; empty for other failures, whose own text
/// already says what to change.
pub fn ca_hint(source: &std::io::Error) -> String {
    match failure(source) {
        Failure::Certificate(c) => format!(" ({})", c.fix()),
        _ => String::new(),
    }
}

/// False when a failed handshake (`source` of a TLS error) was plainly not about
/// certificates: the server answered in plain text, or not in time. Their fix is the
/// port and TLS mode, not a CA.
pub fn may_be_trust(source: &std::io::Error) -> bool {
    !is_not_tls(source) && source.kind() != std::io::ErrorKind::TimedOut
}

/// What kind of failure a TLS handshake had, read from the typed errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure<'a> {
    /// The server answered in plain text: the port expects STARTTLS or no TLS.
    NotTls,
    /// The server sent no greeting in time on a plain connection, or answered it
    /// with TLS: the port expects implicit TLS.
    ExpectsImplicitTls,
    /// The handshake did not finish in time.
    TimedOut,
    /// The server's certificate was refused.
    Certificate(&'a CertificateRefused),
    /// Something else (a reset connection, a TLS alert from the server).
    Other,
}

/// The kind of a TLS failure (`source` of a TLS error, or of a failed greeting).
pub fn failure(source: &std::io::Error) -> Failure<'_> {
    let inner = source.get_ref();
    if let Some(c) = inner.and_then(|e| e.downcast_ref::<CertificateRefused>()) {
        return Failure::Certificate(c);
    }
    if inner
        .is_some_and(|e| e.is::<NoGreeting>() || e.is::<NoGreetingAtAll>() || e.is::<TlsGreeting>())
    {
        return Failure::ExpectsImplicitTls;
    }
    if is_not_tls(source) {
        return Failure::NotTls;
    }
    if source.kind() == std::io::ErrorKind::TimedOut {
        return Failure::TimedOut;
    }
    Failure::Other
}

/// True when a handshake failed (`source` of a TLS error) because the server spoke
/// something other than TLS, such as a plain-text greeting: the one failure after
/// which `TlsMode::Auto` tries STARTTLS.
pub fn is_not_tls(source: &std::io::Error) -> bool {
    source
        .get_ref()
        .is_some_and(<dyn std::error::Error + Send + Sync>::is::<NotTls>)
        || matches!(rustls_error(source), Some(rustls::Error::InvalidMessage(_)))
}

/// The server accepted the connection but did not finish the TLS handshake in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server did not finish the TLS handshake within {} s: check the host, port and TLS mode (something on the path may accept connections without answering)",
    .0.as_secs()
)]
struct HandshakeTimedOut(Duration);

/// Connects with `connect` in the TLS mode `tls`; for [`TlsMode::Auto`] implicit TLS
/// first and, when `not_tls` says the server answered the handshake in plain text,
/// STARTTLS on a new connection. Never without TLS, and any other failure (a
/// certificate, a timeout) is the answer. One rule for IMAP, POP3 and SMTP.
pub async fn connect_in_mode<T, E, F, Fut>(
    tls: TlsMode,
    connect: F,
    not_tls: impl FnOnce(&E) -> bool,
) -> Result<T, E>
where
    F: Fn(TlsMode) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match tls {
        TlsMode::Auto => match connect(TlsMode::Implicit).await {
            Err(e) if not_tls(&e) => connect(TlsMode::StartTls).await,
            other => other,
        },
        tls => connect(tls).await,
    }
}

/// A failed handshake, explained: a plain-text answer says so with the likely fix; a
/// refused certificate carries the chain the server presented and the pin in force.
fn explain_handshake(
    source: std::io::Error,
    presented: &Presented,
    pin: Option<Pin>,
) -> std::io::Error {
    match rustls_error(&source) {
        Some(e @ rustls::Error::InvalidMessage(_)) => {
            std::io::Error::new(std::io::ErrorKind::InvalidData, NotTls(e.clone()))
        }
        Some(rustls::Error::InvalidCertificate(e)) => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            CertificateRefused {
                error: e.clone(),
                chain: presented.chain(),
                pin,
            },
        ),
        _ => source,
    }
}

/// How long a server on a plain connection has to start its greeting: a server that
/// says nothing is most likely waiting for a TLS handshake (an implicit-TLS port).
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain connection's server sent nothing in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server sent no greeting in time ({} s): if this port expects TLS from the first byte (like 993, 995 or 465), set TLS to implicit",
    .0.as_secs()
)]
struct NoGreeting(Duration);

/// A plain connection's server answered with TLS.
#[derive(Debug, thiserror::Error)]
#[error("the server speaks TLS from the first byte (like 993, 995 or 465 do): set TLS to implicit")]
struct TlsGreeting;

/// The I/O error for a server that sent no greeting within the timeout, when the client
/// did not start with TLS: the usual cause is an implicit-TLS port.
pub fn no_greeting(source: std::io::Error) -> std::io::Error {
    if source.kind() != std::io::ErrorKind::TimedOut
        || source
            .get_ref()
            .is_some_and(|e| e.is::<NoGreeting>() || e.is::<NoGreetingAtAll>())
    {
        return source;
    }
    // Typed, so `failure` names it as the implicit-TLS port it most likely is (a
    // client's own read timeout can fire before the greeting wait does).
    std::io::Error::new(std::io::ErrorKind::TimedOut, NoGreetingAtAll)
}

/// A plain connection's server sent nothing before the client's own timeout.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server sent no greeting in time: if this port expects TLS from the first byte (like 993, 995 or 465), set TLS to implicit"
)]
struct NoGreetingAtAll;

/// The system's trusted roots, read from disk once per process (not per connection).
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

/// The system's roots plus `extra` (PEM), shared: every connection with the same trust
/// holds one copy (a root store is about 200 KB, which an idle connection would
/// otherwise keep for itself). The last few sets with an extra CA are kept.
fn roots_with(extra: Option<&str>) -> Arc<rustls::RootCertStore> {
    static SYSTEM: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    static WITH_EXTRA: std::sync::Mutex<Vec<(String, Arc<rustls::RootCertStore>)>> =
        std::sync::Mutex::new(Vec::new());
    const KEPT: usize = 16;
    let Some(pem) = extra else {
        return SYSTEM
            .get_or_init(|| Arc::new(system_roots().clone()))
            .clone();
    };
    let mut kept = WITH_EXTRA
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = kept.iter().position(|(p, _)| p == pem) {
        let entry = kept.remove(i);
        let roots = entry.1.clone();
        kept.push(entry);
        return roots;
    }
    let mut roots = system_roots().clone();
    {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
            let _ = roots.add(cert);
        }
    }
    let roots = Arc::new(roots);
    if kept.len() >= KEPT {
        kept.remove(0);
    }
    kept.push((pem.to_owned(), roots.clone()));
    roots
}

/// The trust settings could not be turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[error("the TLS configuration could not be built")]
pub struct ConfigError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl TlsSettings {
    /// The rustls configuration of these settings: the system's roots and the extra
    /// CA, verified by [`PinningVerifier`] with the pin. For HTTPS clients:
    /// `reqwest::ClientBuilder::tls_backend_preconfigured(settings.client_config()?)`.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        self.client_config_capturing(Presented::default())
    }

    /// [`TlsSettings::client_config`], keeping what servers present in `presented`
    /// (for the report of a failed handshake).
    pub fn client_config_capturing(
        &self,
        presented: Presented,
    ) -> Result<rustls::ClientConfig, ConfigError> {
        let roots = roots_with(self.extra_ca_pem.as_deref());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = PinningVerifier::new(roots, self.pin, provider.clone(), presented)
            .map_err(|e| ConfigError(Box::new(e)))?;
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError(Box::new(e)))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    /// Runs the TLS handshake on `tcp` for `host`, within `timeout`.
    pub async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name =
            rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| TlsError {
                name: name.clone(),
                source: std::io::Error::other(e),
            })?;
        let presented = Presented::default();
        let config = self
            .client_config_capturing(presented.clone())
            .map_err(|e| TlsError {
                name: name.clone(),
                source: std::io::Error::other(e),
            })?;
        let connecting =
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp);
        match tokio::time::timeout(timeout, connecting).await {
            Ok(done) => done.map_err(|source| TlsError {
                name,
                source: explain_handshake(source, &presented, self.pin),
            }),
            Err(_) => Err(TlsError {
                name,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    HandshakeTimedOut(timeout),
                ),
            }),
        }
    }
}

/// A buffered connection, plain or TLS.
pub enum MailStream {
    Plain(BufStream<TcpStream>),
    /// A plain connection whose greeting has not been read yet: the first
    /// [`MailStream::read_line`] gives the server at most [`GREETING_TIMEOUT`] to
    /// start it (a silent server is most likely an implicit-TLS port).
    Greeting(BufStream<TcpStream>),
    Tls(Box<BufStream<TlsStream<TcpStream>>>),
    /// Taken out for an upgrade, or after a failed one: every operation fails.
    Closed,
}

impl std::fmt::Debug for MailStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_tls() {
            "MailStream(TLS)"
        } else {
            "MailStream(plain)"
        })
    }
}

/// A line could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The connection failed, timed out, or was closed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server sent a line longer than the limit.
    #[error("a line longer than {0} bytes")]
    TooLong(usize),
}

/// Opens a TCP connection within `timeout`.
pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

impl MailStream {
    /// Reads one line of at most `max` bytes within `timeout`, without its CR LF.
    /// A closed connection is `UnexpectedEof`; a silent server `TimedOut`.
    pub async fn read_line(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, LineError> {
        self.await_greeting(timeout).await?;
        let mut line = Vec::new();
        let mut limited = (&mut *self).take(max as u64 + 2);
        let read = limited.read_until(b'\n', &mut line);
        let n = tokio::time::timeout(timeout, read).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server did not answer in time",
            )
        })??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )
            .into());
        }
        // Only the line end goes: LF, and one CR before it (a CR the line itself ends
        // with is content, as in a message line "text\r\r\n").
        if line.last() != Some(&b'\n') {
            if (line.len() as u64) < max as u64 + 2 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection in the middle of a line",
                )
                .into());
            }
            return Err(LineError::TooLong(max));
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        // `take(max + 2)` lets through `max + 1` bytes and a bare LF.
        if line.len() > max {
            return Err(LineError::TooLong(max));
        }
        Ok(line)
    }

    /// On a fresh plain connection, waits at most [`GREETING_TIMEOUT`] (or `timeout`
    /// when shorter) for the server's first bytes, and refuses a TLS record (0x15/0x16
    /// 0x03) where a greeting belongs. [`MailStream::read_line`] calls it; a driver
    /// that reads the greeting otherwise calls it first. A no-op after the greeting.
    pub async fn await_greeting(&mut self, timeout: Duration) -> std::io::Result<()> {
        let MailStream::Greeting(s) = self else {
            return Ok(());
        };
        let wait = timeout.min(GREETING_TIMEOUT);
        let first = match tokio::time::timeout(wait, s.fill_buf()).await {
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    NoGreeting(wait),
                ));
            }
            Ok(read) => read?,
        };
        if matches!(first, [0x15 | 0x16, 0x03, ..]) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                TlsGreeting,
            ));
        }
        if let MailStream::Greeting(s) = std::mem::replace(self, MailStream::Closed) {
            *self = MailStream::Plain(s);
        }
        Ok(())
    }

    /// Writes `line` and CR LF, and flushes.
    pub async fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.write_all(line).await?;
        self.write_all(b"\r\n").await?;
        self.flush().await
    }

    /// Upgrades this connection to TLS in place (after STARTTLS / STLS was accepted),
    /// the handshake within `timeout`.
    pub async fn start_tls(
        &mut self,
        settings: &TlsSettings,
        host: &str,
        timeout: Duration,
    ) -> Result<(), TlsError> {
        let plain = std::mem::replace(self, MailStream::Closed);
        *self = plain.upgrade(settings, host, timeout).await?;
        Ok(())
    }

    /// True once TLS is on.
    pub fn is_tls(&self) -> bool {
        matches!(self, MailStream::Tls(_))
    }

    /// A plain connection, its greeting still to be read.
    pub fn plain(tcp: TcpStream) -> Self {
        MailStream::Greeting(BufStream::new(tcp))
    }

    /// A TLS connection from the first byte, the handshake within `timeout`.
    pub async fn implicit(
        settings: &TlsSettings,
        host: &str,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<Self, TlsError> {
        Ok(MailStream::Tls(Box::new(BufStream::new(
            settings.handshake(host, tcp, timeout).await?,
        ))))
    }

    /// Upgrades a plain connection (after the server agreed to STARTTLS / STLS).
    /// Bytes the server sent before the handshake are discarded, as RFC 3207 requires.
    pub async fn upgrade(
        self,
        settings: &TlsSettings,
        host: &str,
        timeout: Duration,
    ) -> Result<Self, TlsError> {
        match self {
            MailStream::Plain(plain) | MailStream::Greeting(plain) => {
                let tcp = plain.into_inner();
                Self::implicit(settings, host, tcp, timeout).await
            }
            tls @ MailStream::Tls(_) => Ok(tls),
            MailStream::Closed => Err(TlsError {
                name: host.to_owned(),
                source: closed(),
            }),
        }
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is closed")
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) | MailStream::Greeting(s) => {
                std::pin::Pin::new(s).poll_read(cx, buf)
            }
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            MailStream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncBufRead for MailStream {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<&[u8]>> {
        match self.get_mut() {
            MailStream::Plain(s) | MailStream::Greeting(s) => {
                std::pin::Pin::new(s).poll_fill_buf(cx)
            }
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_fill_buf(cx),
            MailStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn consume(self: std::pin::Pin<&mut Self>, amt: usize) {
        match self.get_mut() {
            MailStream::Plain(s) | MailStream::Greeting(s) => std::pin::Pin::new(s).consume(amt),
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).consume(amt),
            MailStream::Closed => {}
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) | MailStream::Greeting(s) => {
                std::pin::Pin::new(s).poll_write(cx, buf)
            }
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            MailStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) | MailStream::Greeting(s) => std::pin::Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            MailStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) | MailStream::Greeting(s) => {
                std::pin::Pin::new(s).poll_shutdown(cx)
            }
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            MailStream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    /// Serves `bytes` in `chunks`-sized writes on a loopback connection and reads lines
    /// of at most `max` bytes until an error.
    fn read_all(bytes: &[u8], chunk: usize, max: usize) -> (Vec<Vec<u8>>, LineError) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let data = bytes.to_vec();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                for c in data.chunks(chunk.max(1)) {
                    if s.write_all(c).await.is_err() {
                        return;
                    }
                }
            });
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut stream = MailStream::plain(tcp);
            let mut lines = Vec::new();
            loop {
                match stream.read_line(max, Duration::from_secs(5)).await {
                    Ok(l) => lines.push(l),
                    Err(e) => {
                        let _ = server.await;
                        return (lines, e);
                    }
                }
            }
        })
    }

    /// The lines a correct reader returns: split after each LF, drop the LF and one CR
    /// before it; stop at the first line longer than `max` or at the unterminated tail.
    fn model(bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(pos);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                return (out, true);
            }
            out.push(line.to_vec());
            rest = tail.get(1..).unwrap_or_default();
        }
        // An unterminated tail is "too long" once it reaches the reader's limit
        // (`max` + CR LF), else the connection closed mid-line.
        (out, rest.len() >= max + 2)
    }

    #[test]
    fn a_line_one_byte_over_the_limit_is_refused() {
        // Found by `lines_match_the_model`: `take(max + 2)` let `max + 1` bytes and a
        // bare LF through.
        let (lines, err) = read_all(b"abcd\n", 64, 3);
        assert!(lines.is_empty(), "{lines:?}");
        assert!(matches!(err, LineError::TooLong(3)), "{err:?}");
        let (lines, _) = read_all(b"abc\r\n", 64, 3);
        assert_eq!(lines, [b"abc".to_vec()]);
    }

    #[test]
    fn a_connection_closed_mid_line_is_not_a_long_line() {
        // Found by `lines_match_the_model`: "0" then EOF was "a line longer than 0 bytes".
        let (lines, err) = read_all(b"ok\r\npartial", 64, 100);
        assert_eq!(lines, [b"ok".to_vec()]);
        assert!(
            matches!(err, LineError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
    }

    #[test]
    fn only_the_line_end_is_stripped() {
        let (lines, err) = read_all(b"text\r\r\n\r\n\n", 64, 100);
        assert_eq!(lines, [b"text\r".to_vec(), Vec::new(), Vec::new()]);
        assert!(
            matches!(err, LineError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn lines_match_the_model(
            bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\n'), Just(b'\r')], 0..400),
            chunk in 1usize..50,
            max in 0usize..40,
        ) {
            let (lines, err) = read_all(&bytes, chunk, max);
            let (want, too_long) = model(&bytes, max);
            prop_assert_eq!(&lines, &want);
            for l in &lines {
                prop_assert!(l.len() <= max);
            }
            if too_long {
                prop_assert!(matches!(err, LineError::TooLong(m) if m == max), "{:?}", err);
            } else {
                prop_assert!(matches!(err, LineError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{:?}", err);
            }
        }
    }
}

#[cfg(test)]
mod shared_roots_tests {
    use super::*;

    #[test]
    fn connections_with_the_same_trust_share_one_root_store() {
        assert!(Arc::ptr_eq(&roots_with(None), &roots_with(None)));
        // Not a certificate: nothing is added, but the set is still kept by its text.
        let pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        let a = roots_with(Some(pem));
        assert!(Arc::ptr_eq(&a, &roots_with(Some(pem))));
        assert!(!Arc::ptr_eq(&a, &roots_with(None)));
        // Bounded: many different sets do not grow without end, and the newest is kept.
        for i in 0..40 {
            let _ = roots_with(Some(&format!("{pem}# {i}\n")));
        }
        let last = format!("{pem}# 39\n");
        assert!(Arc::ptr_eq(
            &roots_with(Some(&last)),
            &roots_with(Some(&last))
        ));
    }
}
