//! Certificate pinning: a server's own certificate, trusted by its SHA-256
//! fingerprint, for self-signed servers (`openssl req -x509`'s CA:TRUE default, which
//! rustls refuses even as an extra CA: `CaUsedAsEndEntity`).
//!
//! [`PinningVerifier`] accepts the handshake when the end-entity certificate's
//! fingerprint equals the pin, and otherwise verifies as always (the system's roots
//! plus the extra CA, the name, the validity). The handshake's signatures are verified
//! in both cases. It also keeps the chain the server presented, so that a failure can
//! show it.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A pinned certificate: the SHA-256 of its DER encoding. Written `sha256:<64 hex
/// digits>`; colons between the bytes (as `openssl x509 -fingerprint -sha256` prints
/// them) and upper case are accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

/// A text that is not a pin.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a certificate pin: write sha256: and the 64 hex digits of the certificate's SHA-256 fingerprint (`mailbridge test receive` prints it; or `openssl x509 -in server.pem -noout -fingerprint -sha256`)"
)]
pub struct PinError(String);

impl Pin {
    /// The fingerprint of a certificate (DER).
    pub fn of(der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Pin(out)
    }

    /// Parses `sha256:<hex>` (the grammar of [`mailbridge_types::config::pin_digest`]).
    pub fn parse(text: &str) -> Result<Self, PinError> {
        mailbridge_types::config::pin_digest(text)
            .map(Pin)
            .ok_or_else(|| PinError(text.chars().take(120).collect()))
    }
}

impl std::str::FromStr for Pin {
    type Err = PinError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pin::parse(s)
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The chain a server presented in the last handshake of a verifier (end entity
/// first), kept for the report of a failure.
#[derive(Debug, Clone, Default)]
pub struct Presented(Arc<Mutex<Vec<CertificateDer<'static>>>>);

impl Presented {
    /// The chain, end entity first (empty when the server presented none).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        if let Ok(mut c) = self.0.lock() {
            *c = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|d| d.clone().into_owned())
                .collect();
        }
    }
}

/// Verifies a server's certificate: accepted when it is the pinned one, else by the
/// WebPKI rules with the given roots. Never accepts anything else.
#[derive(Debug)]
pub struct PinningVerifier {
    /// `None` when there are no roots at all (no system store, no extra CA): then
    /// only the pinned certificate is accepted.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<Pin>,
    provider: Arc<CryptoProvider>,
    presented: Presented,
}

impl PinningVerifier {
    /// A verifier over `roots` with an optional `pin`; it records what servers present
    /// in `presented`.
    pub fn new(
        roots: impl Into<Arc<rustls::RootCertStore>>,
        pin: Option<Pin>,
        provider: Arc<CryptoProvider>,
        presented: Presented,
    ) -> Result<Self, rustls::client::VerifierBuilderError> {
        let roots: Arc<rustls::RootCertStore> = roots.into();
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?)
        };
        Ok(Self {
            webpki,
            pin,
            provider,
            presented,
        })
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.presented.record(end_entity, intermediates);
        if self.pin.is_some_and(|p| p == Pin::of(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::CertificateError::UnknownIssuer.into()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_openssl_and_plain_forms_and_print_plain() {
        let plain = format!("sha256:{}", "ab".repeat(32));
        let pin = Pin::parse(&plain).unwrap();
        assert_eq!(pin.to_string(), plain);
        let openssl = format!("SHA256:{}", vec!["AB"; 32].join(":"));
        assert_eq!(Pin::parse(&openssl).unwrap(), pin);
        for bad in [
            "",
            "sha256:",
            "sha1:abcd",
            &format!("sha256:{}", "ab".repeat(31)),
            &format!("sha256:{}", "zz".repeat(32)),
            &format!("sha256:{}é", "ab".repeat(31)),
            "sha25",
            "ü",
        ] {
            assert!(Pin::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            Pin::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
