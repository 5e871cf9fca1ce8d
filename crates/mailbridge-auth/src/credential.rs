//! App credentials: a client secret, or a certificate that signs a client assertion
//! (`microsoft-protocols.md` §1.3.4).
//!
//! Secrets are [`SecretString`]s and never appear in `Debug` output. The assertion is a
//! JWT signed with PS256 and an `x5t#S256` header by default (MSAL's choice), or RS256
//! with `x5t` (SHA-1) for older setups.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

/// Error loading or using a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("failed to read {what} {path}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} holds no RSA private key (PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")")]
    NoKey(String),
    #[error("the private key is not an RSA key of 2048 bits or more")]
    BadKey,
    #[error("signing the client assertion failed")]
    Signing,
}

/// How the app proves who it is.
pub enum ClientCredential {
    /// A public client (device code, loopback browser sign-in): no credential.
    None,
    /// The Value of a client secret.
    Secret(SecretString),
    /// A certificate and its private key.
    Certificate(CertificateCredential),
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Secret(_) => f.write_str("Secret([REDACTED])"),
            Self::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

/// Signature algorithm of the client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssertionAlgorithm {
    /// PS256 with an `x5t#S256` header (default, as MSAL).
    #[default]
    Ps256,
    /// RS256 with an `x5t` (SHA-1) header.
    Rs256,
}

/// A certificate credential.
pub struct CertificateCredential {
    key: RsaKeyPair,
    certificate_der: Vec<u8>,
    pub algorithm: AssertionAlgorithm,
}

impl std::fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("thumbprint_sha1", &self.thumbprint_sha1_hex())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl CertificateCredential {
    /// Reads the certificate and the private key from PEM files (they may be one file).
    pub fn from_pem_files(certificate: &str, key: &str) -> Result<Self, CredentialError> {
        let read = |what, path: &str| {
            std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read("certificate", certificate)?;
        let key_pem = read("private key", key)?;
        Self::from_pem(&cert_pem, &key_pem, certificate, key)
    }

    /// From PEM texts; the names are for error messages.
    pub fn from_pem(
        certificate_pem: &str,
        key_pem: &str,
        certificate_name: &str,
        key_name: &str,
    ) -> Result<Self, CredentialError> {
        let certificate_der = first_certificate(certificate_pem)
            .ok_or_else(|| CredentialError::NoCertificate(certificate_name.to_owned()))?;
        let key_item = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| CredentialError::NoKey(key_name.to_owned()))?;
        let key = match &key_item {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(CredentialError::BadKey),
        }
        .map_err(|_| CredentialError::BadKey)?;
        Ok(Self {
            key,
            certificate_der,
            algorithm: AssertionAlgorithm::default(),
        })
    }

    /// The SHA-1 thumbprint in hex, as the portal's "Certificates & secrets" page shows it.
    pub fn thumbprint_sha1_hex(&self) -> String {
        hex_upper(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &self.certificate_der).as_ref())
    }

    /// `x5t#S256`: base64url of the SHA-256 of the certificate.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &self.certificate_der))
    }

    /// `x5t`: base64url of the raw SHA-1 digest of the certificate.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            &self.certificate_der,
        ))
    }

    /// A fresh client assertion for `client_id` at `token_endpoint`, valid 10 minutes.
    pub fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: OffsetDateTime,
    ) -> Result<SecretString, CredentialError> {
        let (alg, header) = match self.algorithm {
            AssertionAlgorithm::Ps256 => (
                &signature::RSA_PSS_SHA256 as &'static dyn signature::RsaEncoding,
                json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256()}),
            ),
            AssertionAlgorithm::Rs256 => (
                &signature::RSA_PKCS1_SHA256 as &'static dyn signature::RsaEncoding,
                json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t()}),
            ),
        };
        let iat = now.unix_timestamp();
        let claims = json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": iat,
            "nbf": iat,
            "exp": iat + 600,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(alg, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .map_err(|_| CredentialError::Signing)?;
        Ok(SecretString::from(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig)
        )))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

impl ClientCredential {
    /// The form fields that authenticate the client at the token endpoint.
    pub(crate) fn form_fields(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(&'static str, SecretString)>, CredentialError> {
        Ok(match self {
            Self::None => Vec::new(),
            Self::Secret(s) => vec![(
                "client_secret",
                SecretString::from(s.expose_secret().to_owned()),
            )],
            Self::Certificate(c) => vec![
                (
                    "client_assertion_type",
                    SecretString::from("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ),
                (
                    "client_assertion",
                    c.assertion(client_id, token_endpoint, now)?,
                ),
            ],
        })
    }
}

/// The DER of the first certificate in a PEM text (other sections are skipped).
fn first_certificate(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .find_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
}

/// The SHA-1 thumbprint (upper-case hex, as the portal's "Certificates & secrets" page
/// shows it) of the first certificate in a PEM text.
pub fn certificate_thumbprint(pem: &str) -> Option<String> {
    let der = first_certificate(pem)?;
    Some(hex_upper(
        digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref(),
    ))
}

/// The `notAfter` of the first certificate in a PEM text, read with `x509-parser`;
/// `None` when it is not a certificate.
pub fn certificate_not_after(pem: &str) -> Option<OffsetDateTime> {
    let der = first_certificate(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_is_read_from_a_real_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let cert = params.self_signed(&key).unwrap();
        let not_after = certificate_not_after(&cert.pem()).unwrap();
        assert_eq!(not_after.date(), time::macros::date!(2031 - 07 - 15));
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2051, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(certificate_not_after(&cert.pem()).unwrap().year(), 2051);
    }

    #[test]
    fn garbage_certificates_give_none() {
        assert!(certificate_not_after("").is_none());
        assert!(
            certificate_not_after("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
                .is_none()
        );
        // A PEM key is not a certificate.
        let key = rcgen::KeyPair::generate().unwrap();
        assert!(certificate_not_after(&key.serialize_pem()).is_none());
    }

    #[test]
    fn debug_of_credentials_shows_no_secret() {
        let c = ClientCredential::Secret(SecretString::from("very-secret-value"));
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
