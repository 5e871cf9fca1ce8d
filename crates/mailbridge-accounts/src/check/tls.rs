//! A failed "connect+TLS" step explained: the cause read from the typed errors
//! (`mailbridge_tls::failure`, rustls' `CertificateError`), the certificate the server
//! presented, and the fix: the CA file or a pin for trust (with the exact command when
//! pinning is the fix), `tls_name` or the host for a name, the TLS mode for a port.

use mailbridge_tls::{CertificateInfo, CertificateRefused, Failure, Problem};
use serde::Serialize;

use mailbridge_mailbox::connect::Identity;

use super::Fix;

/// The certificate a server presented, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresentedCertificate {
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    /// `sha256:<hex>`: what `tls_pin` takes.
    pub sha256: String,
    pub self_signed: bool,
    /// `basicConstraints CA:TRUE`.
    pub ca: bool,
    /// The DNS names and addresses it is for.
    pub names: Vec<String>,
}

impl From<CertificateInfo> for PresentedCertificate {
    fn from(c: CertificateInfo) -> Self {
        Self {
            subject: c.subject,
            issuer: c.issuer,
            not_before: c.not_before,
            not_after: c.not_after,
            sha256: c.fingerprint.to_string(),
            self_signed: c.self_signed,
            ca: c.is_ca,
            names: c.names,
        }
    }
}

impl std::fmt::Display for PresentedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subject {:?}, issuer {:?}", self.subject, self.issuer)?;
        if self.self_signed {
            f.write_str(" (self-signed)")?;
        }
        if self.ca {
            f.write_str(", a CA certificate (CA:TRUE)")?;
        }
        if !self.names.is_empty() {
            write!(f, ", for {}", self.names.join(", "))?;
        }
        if !self.not_after.is_empty() {
            write!(f, ", valid {} to {}", self.not_before, self.not_after)?;
        }
        write!(f, ", SHA-256 {}", self.sha256)
    }
}

/// Which side of the account a check is about: names the flag in a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Incoming,
    Outgoing,
}

impl Side {
    fn word(self) -> &'static str {
        match self {
            Side::Incoming => "incoming",
            Side::Outgoing => "outgoing",
        }
    }
}

/// What a failed TLS step shows.
#[derive(Debug)]
pub(super) struct Explained {
    /// The cause, in words (the step's detail ends with it).
    pub cause: Option<String>,
    pub fix: Fix,
    pub certificate: Option<PresentedCertificate>,
}

/// The command that pins `fingerprint` on `who`'s `side`.
fn pin_command(who: &Identity, side: Side, fingerprint: &str) -> String {
    format!(
        "`mailbridge account edit {} --{}-tls-pin {fingerprint}` (tls_pin = \"{fingerprint}\" in [account.{}])",
        who.account,
        side.word(),
        side.word()
    )
}

/// A refused certificate: its cause, the fix, and the certificate.
pub(super) fn certificate(refused: &CertificateRefused, who: &Identity, side: Side) -> Explained {
    let shown = refused.end_entity();
    let fingerprint = shown
        .as_ref()
        .map(|c| c.fingerprint.to_string())
        .unwrap_or_default();
    let pin = pin_command(who, side, &fingerprint);
    let account = &who.account;
    let fix = match refused.problem() {
        Problem::CaAsServerCertificate => Fix::new("tls-ca-as-server", format!(
            "the server uses a CA certificate as its own (the default of `openssl req -x509`), which is refused even as the extra CA file; once its administrator confirms that {fingerprint} is the server's certificate, pin it: {pin}. Only that certificate is accepted besides the normally trusted ones; or give the server a certificate issued by a CA"
        ))
        .arg("fingerprint", fingerprint.clone())
        .arg("pin", pin.clone()),
        Problem::UntrustedIssuer if shown.as_ref().is_some_and(|c| c.self_signed) => Fix::new("tls-self-signed", format!(
            "the certificate is self-signed: once its administrator confirms that {fingerprint} is the server's certificate, pin it: {pin}; or add the certificate as the extra CA file (`mailbridge account edit {account} --extra-ca-file server.pem`)"
        ))
        .arg("fingerprint", fingerprint.clone())
        .arg("pin", pin.clone())
        .arg("account", account.clone()),
        Problem::UntrustedIssuer => {
            let issuer = shown
                .as_ref()
                .map(|c| c.issuer.clone())
                .unwrap_or_default();
            Fix::new("tls-untrusted-issuer", format!(
                "add the CA that issued it ({issuer}) as the extra CA file: `mailbridge account edit {account} --extra-ca-file <that CA's PEM file>` (certificate checks stay on); or pin this one certificate: {pin} (a pin must be renewed with the certificate)"
            ))
            .arg("issuer", issuer)
            .arg("pin", pin.clone())
            .arg("account", account.clone())
        }
        Problem::WrongName {
            expected,
            presented,
        } => match presented.first() {
            Some(first) => Fix::new("tls-wrong-name", format!(
                "the certificate is for {}, not {expected}: set the host to one of those names, or keep the host and name the certificate's: `mailbridge account edit {account} --tls-name {first}`",
                presented.join(", ")
            ))
            .arg("names", presented.join(", "))
            .arg("expected", expected.clone())
            .arg("account", account.clone())
            .arg("name", first.clone()),
            None => Fix::new("tls-no-name", format!(
                "the certificate names no host: set tls_name to the name the server's administrator gives (`mailbridge account edit {account} --tls-name <name>`), or pin the certificate: {pin}"
            ))
            .arg("account", account.clone())
            .arg("pin", pin.clone()),
        },
        Problem::PinMismatch { pinned } => Fix::new("tls-pin-mismatch", format!(
            "the pinned certificate is {pinned}, the server presented {fingerprint}: if the server's certificate was renewed (ask its administrator), pin the new one: {pin}; otherwise something between here and the server presents its own certificate, so do not pin it"
        ))
        .arg("pinned", pinned.to_string())
        .arg("fingerprint", fingerprint.clone())
        .arg("pin", pin.clone()),
        // The TLS library's own words (expired, not yet valid, revoked, ...).
        _ => Fix::from(refused.fix()),
    };
    Explained {
        cause: Some(refused.to_string()),
        fix,
        certificate: shown.map(PresentedCertificate::from),
    }
}

/// The explanation of a failed connection step whose I/O error is `source`; `ports`
/// names the protocol's usual ports and modes.
pub(super) fn explain(
    source: Option<&std::io::Error>,
    who: &Identity,
    side: Side,
    ports: &str,
) -> Explained {
    let plain = |fix: Fix| Explained {
        cause: None,
        fix: fix.arg("ports", ports),
        certificate: None,
    };
    match source.map(mailbridge_tls::failure) {
        Some(Failure::Certificate(refused)) => certificate(refused, who, side),
        Some(Failure::NotTls) => plain(Fix::new(
            "tls-port-expects-plain",
            format!(
                "the port expects plain text first: set TLS to STARTTLS, or use the implicit-TLS port ({ports})"
            ),
        )),
        Some(Failure::ExpectsImplicitTls) => plain(Fix::new(
            "tls-port-expects-tls",
            format!(
                "the port expects TLS from the first byte: set TLS to implicit, or use the STARTTLS port ({ports})"
            ),
        )),
        Some(Failure::TimedOut) => plain(Fix::new(
            "tls-no-answer",
            format!(
                "check the host, port and TLS mode ({ports}): something on the path accepts connections without answering"
            ),
        )),
        _ => plain(Fix::new(
            "connect-failed",
            format!("check the host, port and TLS mode ({ports})"),
        )),
    }
}
