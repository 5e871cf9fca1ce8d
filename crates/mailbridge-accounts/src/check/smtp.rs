//! Test send over SMTP: resolve, connect + TLS, token, authenticate, send a test
//! message.

use std::future::Future;
use std::time::Instant;

use mailbridge_smtp::{SmtpClient, SmtpConfig, SmtpError};
use mailbridge_tls::TlsSettings;
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use secrecy::SecretString;

use super::steps::{self, MailProtocol, Opened};
use super::{
    Fix, Identity, Report, Side, SignIn, TokenFailure, diagnose, refused_login, test_message,
};

/// SMTP submission, as the shared steps see it.
struct Smtp;

impl MailProtocol for Smtp {
    type Client = SmtpClient;
    type Error = SmtpError;
    type Credentials = mailbridge_smtp::Credentials;
    const SIDE: Side = Side::Outgoing;
    const PORTS: &'static str = "SMTP submission: 587 STARTTLS, 465 implicit TLS";

    async fn connect(
        endpoint: &EndpointConfig,
        trust: TlsSettings,
    ) -> Result<SmtpClient, SmtpError> {
        let mut config = SmtpConfig::new(&endpoint.host, endpoint.port(), endpoint.tls_mode());
        config.trust = trust;
        SmtpClient::connect(&config).await
    }

    fn io_source(error: &SmtpError) -> Option<&std::io::Error> {
        match error {
            SmtpError::Tls { source, .. } | SmtpError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    fn tls_mode(client: &SmtpClient) -> TlsMode {
        client.tls_mode()
    }

    fn xoauth2(user: String, token: SecretString) -> Self::Credentials {
        mailbridge_smtp::Credentials::XOAuth2 { user, token }
    }

    fn password(user: String, password: SecretString) -> Self::Credentials {
        mailbridge_smtp::Credentials::Plain { user, password }
    }
}

/// Test send over SMTP: a test message from `who`'s address to `to`, signed in as
/// its login (XOAUTH2's `user=`, as in `send`).
pub async fn send_smtp<F, Fut, E>(
    endpoint: &EndpointConfig,
    who: &Identity,
    to: &str,
    sign_in: SignIn<F>,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let mut report = Report::default();
    let from = who.address.as_str();
    let Some(Opened {
        mut client,
        credentials,
        token,
        password_login,
    }) = steps::open::<Smtp, _, _, _>(&mut report, endpoint, who, sign_in).await
    else {
        return report;
    };
    let token_ref = token.as_ref().map(|(t, g)| (t, *g));
    let start = Instant::now();
    if let Err(e) = client.authenticate(&credentials).await {
        if matches!(e, mailbridge_smtp::SmtpError::AuthOnlyAfterStartTls) {
            // Exchange Online (smtp.office365.com:587) and most submission servers
            // offer AUTH only after STARTTLS: the refusal is about TLS, not the
            // credentials.
            report.push(
                "authenticate",
                start,
                Err((
                    format!(
                        "the server offers no AUTH before STARTTLS (it offers: {})",
                        client.capabilities.join(", ")
                    ),
                    Some(Fix::from(e.to_string())),
                )),
            );
            let _ = client.quit().await;
            return report;
        }
        let meaning = e.meaning();
        let server_fix = meaning.map_or_else(Fix::default, diagnose::smtp_meaning);
        // 5.7.139 says exactly what is wrong; only a bare refusal needs the token read.
        let fix = match meaning {
            Some(mailbridge_smtp::Meaning::AuthenticationFailed) | None => {
                diagnose::mail_refusal(token_ref, Transport::Smtp, from, server_fix)
            }
            _ => server_fix,
        };
        let detail = match &e {
            mailbridge_smtp::SmtpError::Refused { reply, .. } => {
                format!("the server answered: {} {}", reply.code, reply.text())
            }
            other => other.to_string(),
        };
        let detail = refused_login(password_login.as_deref(), detail);
        report.push("authenticate", start, Err((detail, Some(fix))));
        return report;
    }
    report.push("authenticate", start, Ok(format!("signed in as {from}")));
    let start = Instant::now();
    let message = test_message(from, to);
    let result = match client
        .send(from, &[to.to_owned()], message.as_bytes())
        .await
    {
        Ok(reply) => Ok(format!(
            "accepted for {to}: {} {}",
            reply.code,
            reply.text()
        )),
        Err(e) => {
            let fix = e.meaning().map(diagnose::smtp_meaning);
            Err((e.to_string(), fix))
        }
    };
    report.ok = report.push("send", start, result);
    let _ = client.quit().await;
    report
}
