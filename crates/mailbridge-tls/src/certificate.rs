//! Why a server's certificate was refused, from rustls' and webpki's typed errors (never
//! their English), and what the server presented, read with `x509-parser`: the words
//! and the fix a person needs.

use rustls::CertificateError;
use rustls::pki_types::CertificateDer;

use crate::pin::Pin;

/// What a certificate says about itself (the server's words, control characters
/// removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// `notBefore`, `2026-12-07 11:46:26 UTC`.
    pub not_before: String,
    /// `notAfter`.
    pub not_after: String,
    /// SHA-256 of the DER: what a pin names.
    pub fingerprint: Pin,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
    /// `basicConstraints CA:TRUE`.
    pub is_ca: bool,
    /// The DNS names and IP addresses it is for (subjectAltName).
    pub names: Vec<String>,
}

/// Printable text from a server: control characters (escape sequences) dropped, and
/// at most 300 characters.
fn printable(text: &str) -> String {
    mailbridge_types::text::without_controls(text, 300)
}

fn time_text(t: x509_parser::time::ASN1Time) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_datetime()
        .format(&format)
        .unwrap_or_else(|_| t.timestamp().to_string())
}

impl CertificateInfo {
    /// Reads a certificate (DER). A certificate that does not parse still has its
    /// fingerprint; its other fields say it could not be read.
    pub fn of(der: &[u8]) -> Self {
        use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
        let fingerprint = Pin::of(der);
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            let unreadable = "(not a readable X.509 certificate)".to_owned();
            return Self {
                subject: unreadable.clone(),
                issuer: unreadable,
                not_before: String::new(),
                not_after: String::new(),
                fingerprint,
                self_signed: false,
                is_ca: false,
                names: Vec::new(),
            };
        };
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(printable(d)),
                        GeneralName::IPAddress(ip) => match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*ip)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a).to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .take(50)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            subject: printable(&cert.subject().to_string()),
            issuer: printable(&cert.issuer().to_string()),
            not_before: time_text(cert.validity().not_before),
            not_after: time_text(cert.validity().not_after),
            fingerprint,
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            is_ca: cert.is_ca(),
            names,
        }
    }
}

impl std::fmt::Display for CertificateInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subject {:?}, issuer {:?}", self.subject, self.issuer)?;
        if self.self_signed {
            f.write_str(" (self-signed)")?;
        }
        if !self.names.is_empty() {
            write!(f, ", for {}", self.names.join(", "))?;
        }
        if !self.not_after.is_empty() {
            write!(f, ", valid {} to {}", self.not_before, self.not_after)?;
        }
        if self.is_ca {
            f.write_str(", a CA certificate (CA:TRUE)")?;
        }
        write!(f, ", SHA-256 {}", self.fingerprint)
    }
}

/// What was wrong with a refused certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A pin is set and the server presented another certificate, which is not
    /// trusted otherwise either.
    PinMismatch { pinned: Pin },
    /// A CA certificate (`CA:TRUE`) is the server's own: refused even as the extra CA.
    CaAsServerCertificate,
    /// Issued by a CA that is not trusted (or self-signed and not trusted).
    UntrustedIssuer,
    /// Not for the name connected to.
    WrongName {
        expected: String,
        presented: Vec<String>,
    },
    /// Past its `notAfter`.
    Expired,
    /// Before its `notBefore`.
    NotYetValid,
    /// Anything else (a bad signature, an unsupported algorithm, a revoked one).
    Other,
}

/// The server's certificate was refused: the typed cause, the chain it presented and
/// the pin in force.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CertificateRefused {
    /// rustls' typed cause (webpki's inside `Other`, such as `CaUsedAsEndEntity`).
    pub error: CertificateError,
    /// The chain the server presented, end entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The pin in force.
    pub pin: Option<Pin>,
}

impl CertificateRefused {
    /// The server's own certificate, read.
    pub fn end_entity(&self) -> Option<CertificateInfo> {
        self.chain.first().map(|c| CertificateInfo::of(c))
    }

    /// The problem, from the typed error.
    pub fn problem(&self) -> Problem {
        if let Some(pinned) = self.pin
            && self.chain.first().is_some_and(|c| Pin::of(c) != pinned)
        {
            return Problem::PinMismatch { pinned };
        }
        self.underlying()
    }

    /// The problem without the pin (what the certificate would fail on unpinned).
    pub fn underlying(&self) -> Problem {
        match problem_of(&self.error) {
            // The names as the certificate carries them (rustls' list is for display).
            Problem::WrongName { expected, .. } => Problem::WrongName {
                expected,
                presented: self.end_entity().map(|c| c.names).unwrap_or_default(),
            },
            p => p,
        }
    }

    fn describe(&self) -> String {
        let cert = self.end_entity();
        let issuer = cert.as_ref().map(|c| c.issuer.clone()).unwrap_or_default();
        let fingerprint = cert
            .as_ref()
            .map(|c| c.fingerprint.to_string())
            .unwrap_or_default();
        let base = |p: Problem| {
            match p {
            Problem::CaAsServerCertificate => "the server's certificate is a CA certificate (CA:TRUE, as `openssl req -x509` makes by default) used as the server's own, which is refused even when it is the extra CA".to_owned(),
            Problem::UntrustedIssuer if cert.as_ref().is_some_and(|c| c.self_signed) => {
                "the server's certificate is self-signed and not trusted".to_owned()
            }
            Problem::UntrustedIssuer => {
                format!("the server's certificate was issued by {issuer:?}, which is not a trusted CA")
            }
            Problem::WrongName { expected, presented } => format!(
                "the server's certificate is for {}, not for {expected}",
                if presented.is_empty() { "no host name".to_owned() } else { presented.join(", ") }
            ),
            Problem::Expired => format!(
                "the server's certificate expired on {}",
                cert.as_ref().map(|c| c.not_after.clone()).unwrap_or_default()
            ),
            Problem::NotYetValid => format!(
                "the server's certificate is not valid before {}",
                cert.as_ref().map(|c| c.not_before.clone()).unwrap_or_default()
            ),
            Problem::PinMismatch { .. } | Problem::Other => {
                "the server's certificate was refused".to_owned()
            }
        }
        };
        match self.problem() {
            Problem::PinMismatch { pinned } => format!(
                "the server presented the certificate {fingerprint}, not the pinned {pinned} (unpinned: {})",
                base(self.underlying())
            ),
            p => base(p),
        }
    }

    /// What to change, in configuration words (`tls_pin`, `extra_ca_file`, `tls_name`).
    pub fn fix(&self) -> String {
        let fingerprint = self
            .end_entity()
            .map(|c| c.fingerprint.to_string())
            .unwrap_or_default();
        match self.problem() {
            Problem::PinMismatch { .. } => format!(
                "if the server's certificate was replaced on purpose, pin the new one (tls_pin = \"{fingerprint}\"); otherwise something between here and the server presents its own certificate"
            ),
            Problem::CaAsServerCertificate => format!(
                "pin the certificate (tls_pin = \"{fingerprint}\"; every other certificate is still checked), or give the server a certificate issued by a CA"
            ),
            Problem::UntrustedIssuer => {
                let cert = self.end_entity();
                if cert.as_ref().is_some_and(|c| c.self_signed) {
                    format!(
                        "pin the certificate (tls_pin = \"{fingerprint}\"), or add it as the extra CA file (extra_ca_file); certificate checks stay on"
                    )
                } else {
                    format!(
                        "add the CA that issued it ({}) as the extra CA file (extra_ca_file), or pin the certificate (tls_pin = \"{fingerprint}\"); certificate checks stay on",
                        cert.map(|c| c.issuer).unwrap_or_default()
                    )
                }
            }
            Problem::WrongName { presented, .. } if !presented.is_empty() => format!(
                "connect to a name the certificate carries, or set tls_name to it ({})",
                presented.join(", ")
            ),
            Problem::WrongName { .. } => "set tls_name to the name the server's certificate carries".to_owned(),
            Problem::Expired | Problem::NotYetValid => {
                "the server's administrator must renew its certificate; check this machine's clock too".to_owned()
            }
            Problem::Other => "check the server's certificate".to_owned(),
        }
    }
}

fn problem_of(error: &CertificateError) -> Problem {
    match error {
        CertificateError::UnknownIssuer => Problem::UntrustedIssuer,
        CertificateError::NotValidForName => Problem::WrongName {
            expected: String::new(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext { expected, .. } => Problem::WrongName {
            expected: printable(&expected.to_str()),
            presented: Vec::new(),
        },
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => Problem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Problem::NotYetValid
        }
        CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => Problem::CaAsServerCertificate,
            _ => Problem::Other,
        },
        _ => Problem::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a server presents, reading it never panics and always gives the
        /// fingerprint; shown text has no control characters.
        #[test]
        fn any_presented_bytes_are_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let info = CertificateInfo::of(&bytes);
            prop_assert_eq!(info.fingerprint, Pin::of(&bytes));
            prop_assert!(!info.subject.chars().any(char::is_control));
            prop_assert!(!info.issuer.chars().any(char::is_control));
        }

        /// A real certificate with bytes changed: still no panic.
        #[test]
        fn damaged_certificates_are_read_without_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut der = sample().to_vec();
            for (at, byte) in edits {
                let len = der.len();
                if let Some(b) = der.get_mut(at % len) {
                    *b = byte;
                }
            }
            let info = CertificateInfo::of(&der);
            prop_assert_eq!(info.fingerprint, Pin::of(&der));
        }

        #[test]
        fn pins_parse_without_panic(text in ".{0,100}") {
            if let Ok(pin) = Pin::parse(&text) {
                prop_assert_eq!(Pin::parse(&pin.to_string()).ok(), Some(pin));
            }
        }
    }

    fn sample() -> &'static [u8] {
        static DER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        DER.get_or_init(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec![
                "mail.contoso.com".to_owned(),
                "10.0.0.1".to_owned(),
            ])
            .unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.self_signed(&key).unwrap().der().to_vec()
        })
    }

    #[test]
    fn a_certificate_is_read_as_a_person_needs_it() {
        let info = CertificateInfo::of(sample());
        assert_eq!(info.names, ["mail.contoso.com", "10.0.0.1"]);
        assert!(info.is_ca && info.self_signed, "{info}");
        assert!(info.not_after.ends_with(" UTC"), "{info}");
        assert!(info.to_string().contains(&Pin::of(sample()).to_string()));
    }

    #[test]
    fn control_characters_in_names_are_not_shown() {
        assert_eq!(printable("CN=evil\u{1b}[31m\r\nx"), "CN=evil[31mx");
    }
}
