//! How `mailbridge serve` meets the network: HTTPS with its own certificate
//! (`--tls-cert`/`--tls-key`, rustls on aws-lc-rs, handshakes beside the accept loop
//! so a slow client stalls no one), and reverse proxies whose `X-Forwarded-For`,
//! `-Proto` and `-Host` are believed only from the addresses given with
//! `--trusted-proxy`.
//!
//! Behind a trusted proxy the client's address (the right-most `X-Forwarded-For`
//! entry that is not itself a trusted proxy) replaces the peer's in the request's
//! `ConnectInfo`, so the sign-in rate limits and the logs name the client; an `https`
//! `X-Forwarded-Proto` makes every cookie `Secure`; and without `--public-url` the
//! forwarded scheme and host are the web UI's public address (its callback URI).
//! From anyone else those headers are removed before any handler sees them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most handshakes in progress at once (accepting waits beyond).
const MAX_HANDSHAKES: usize = 1024;

/// An address or a network (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || {
            format!(
                "{text:?} is not an address or a network: give e.g. 10.0.0.5, 10.0.0.0/8 or 2001:db8::/32"
            )
        };
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| wrong())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(wrong)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u32) {
            match a.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (net, width) = bits(self.addr);
        let (ip, ip_width) = bits(ip);
        if width != ip_width {
            return false;
        }
        let host_bits = width - u32::from(self.prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        (net & mask) == (ip & mask)
    }
}

/// What the forwarded-headers layer knows.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// Whether the listener itself speaks TLS.
    pub tls: bool,
    /// Proxies whose forwarded headers are believed.
    pub trusted: Vec<Cidr>,
    /// Whether `--public-url` was given (then forwarded hosts are not needed).
    pub public_url_set: bool,
}

impl Forwarding {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }
}

const FORWARDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// The middleware: believes `X-Forwarded-*` from trusted proxies only (see the
/// module's documentation) and marks cookies `Secure` on HTTPS requests.
pub async fn forwarded(
    State(policy): State<Arc<Forwarding>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let mut https = policy.tls;
    if let Some(peer) = peer.filter(|p| policy.trusts(p.ip())) {
        let headers = request.headers();
        let client = client_address(headers, &policy);
        let proto = first_value(headers, "x-forwarded-proto").map(|p| p.to_ascii_lowercase());
        let host = first_value(headers, "x-forwarded-host").filter(|h| valid_host(h));
        if proto.as_deref() == Some("https") {
            https = true;
        }
        if !policy.public_url_set
            && let Some(host) = host
        {
            let scheme = if https { "https" } else { "http" };
            request
                .extensions_mut()
                .insert(mailbridge_web::ForwardedOrigin(format!(
                    "{scheme}://{host}"
                )));
        }
        if let Some(client) = client {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        }
    } else {
        for name in FORWARDED {
            request.headers_mut().remove(name);
        }
    }
    let mut response = next.run(request).await;
    if https {
        secure_cookies(response.headers_mut());
    }
    response
}

/// The right-most `X-Forwarded-For` address that is not a trusted proxy (the
/// left-most ones are whatever the client wrote).
fn client_address(headers: &HeaderMap, policy: &Forwarding) -> Option<IpAddr> {
    let list: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(64)
        .filter_map(|a| parse_forwarded_ip(a.trim()))
        .collect();
    list.iter()
        .rev()
        .find(|ip| !policy.trusts(**ip))
        .or_else(|| list.first())
        .copied()
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443` or
/// `192.0.2.1:443`.
fn parse_forwarded_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    text.parse::<SocketAddr>().ok().map(|s| s.ip())
}

fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A host and optional port, nothing else (no path, no user, no spaces).
fn valid_host(host: &str) -> bool {
    (1..=255).contains(&host.len())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// Adds `Secure` to every cookie set without it.
fn secure_cookies(headers: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for value in cookies {
        let secured = value
            .to_str()
            .ok()
            .filter(|v| {
                !v.split(';')
                    .any(|part| part.trim().eq_ignore_ascii_case("secure"))
            })
            .and_then(|v| HeaderValue::from_str(&format!("{v}; Secure")).ok())
            .unwrap_or(value);
        headers.append(header::SET_COOKIE, secured);
    }
}

/// The TLS settings of `--tls-cert` (the chain, PEM, leaf first) and `--tls-key`.
pub fn server_tls(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| {
            format!(
                "failed to read the certificate file {} given by --tls-cert (MAILBRIDGE_TLS_CERT)",
                cert.display()
            )
        })?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "{} (--tls-cert) is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "{} (--tls-cert) holds no certificate: give the PEM chain, the server's certificate first",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "failed to read a PEM private key from {} given by --tls-key (MAILBRIDGE_TLS_KEY)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS library refused its default protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context(
            "the --tls-key does not belong to the --tls-cert, or is of a kind TLS cannot use",
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP listener that hands out connections after their TLS handshake.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// TLS over `tcp`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    match accepted {
                        Ok((stream, addr)) => {
                            let acceptor = self.acceptor.clone();
                            self.handshakes.spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => Some((tls, addr)),
                                    Ok(Err(e)) => {
                                        tracing::debug!(%addr, error = %e, "TLS handshake failed");
                                        None
                                    }
                                    Err(_) => {
                                        tracing::debug!(%addr, "TLS handshake timed out");
                                        None
                                    }
                                }
                            });
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: give others a
                            // moment to close theirs.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy.example".parse::<Cidr>().is_err());
    }

    #[test]
    fn the_client_is_the_last_address_no_trusted_proxy_added() {
        let policy = Forwarding {
            tls: false,
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            public_url_set: false,
        };
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.5, 10.0.0.2"),
        );
        assert_eq!(
            client_address(&h, &policy),
            Some("203.0.113.5".parse().unwrap())
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::7]:443"),
        );
        assert_eq!(
            client_address(&h, &policy),
            Some("2001:db8::7".parse().unwrap())
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_address(&h, &policy), None);
    }

    #[test]
    fn cookies_get_secure_once() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/; HttpOnly"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("b=2; Path=/; Secure"),
        );
        secure_cookies(&mut h);
        let all: Vec<_> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            all,
            ["a=1; Path=/; HttpOnly; Secure", "b=2; Path=/; Secure"]
        );
        assert!(valid_host("mb.example.com:8443"));
        assert!(!valid_host("evil.example/path"));
        assert!(!valid_host(""));
    }
}
