//! Test receive over POP3: resolve, connect + TLS, token, authenticate, STAT and UIDL,
//! and the first message's header with `TOP n 0`.

use std::future::Future;
use std::time::Instant;

use mailbridge_pop3::{Pop3Client, Pop3Config, Pop3Error};
use mailbridge_tls::TlsSettings;
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use secrecy::SecretString;

use super::headers;
use super::steps::{self, MailProtocol, Opened};
use super::{Fix, Identity, Report, Side, SignIn, TokenFailure, diagnose, refused_login};

/// POP3, as the shared steps see it.
struct Pop3;

impl MailProtocol for Pop3 {
    type Client = Pop3Client;
    type Error = Pop3Error;
    type Credentials = mailbridge_pop3::Credentials;
    const SIDE: Side = Side::Incoming;
    const PORTS: &'static str = "POP3: 995 implicit TLS, 110 STLS";

    async fn connect(
        endpoint: &EndpointConfig,
        trust: TlsSettings,
    ) -> Result<Pop3Client, Pop3Error> {
        let mut config = Pop3Config::new(&endpoint.host, endpoint.port(), endpoint.tls_mode());
        config.trust = trust;
        Pop3Client::connect(&config).await
    }

    fn io_source(error: &Pop3Error) -> Option<&std::io::Error> {
        match error {
            Pop3Error::Tls(t) => Some(&t.source),
            Pop3Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    fn tls_mode(client: &Pop3Client) -> TlsMode {
        client.tls_mode()
    }

    fn xoauth2(user: String, token: SecretString) -> Self::Credentials {
        mailbridge_pop3::Credentials::XOAuth2 { user, token }
    }

    fn password(user: String, password: SecretString) -> Self::Credentials {
        mailbridge_pop3::Credentials::UserPass { user, password }
    }
}

/// Test receive over POP3 as `who` (XOAUTH2's `user=` is its login, as in `fetch`).
pub async fn receive_pop3<F, Fut, E>(
    endpoint: &EndpointConfig,
    who: &Identity,
    sign_in: SignIn<F>,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let mut report = Report::default();
    let mailbox = who.address.as_str();
    let Some(Opened {
        mut client,
        credentials,
        token,
        password_login,
    }) = steps::open::<Pop3, _, _, _>(&mut report, endpoint, who, sign_in).await
    else {
        return report;
    };
    let start = Instant::now();
    if let Err(e) = client.authenticate(&credentials).await {
        let (detail, fix) = match &e {
            Pop3Error::Refused { status, .. } => {
                let meaning = status.meaning();
                let fix = if meaning == mailbridge_pop3::Meaning::AuthenticationFailed {
                    diagnose::mail_refusal(
                        token.as_ref().map(|(t, g)| (t, *g)),
                        Transport::Pop3,
                        mailbox,
                        diagnose::pop3_meaning(meaning),
                    )
                } else {
                    diagnose::pop3_meaning(meaning)
                };
                (
                    refused_login(
                        password_login.as_deref(),
                        format!("the server answered: -ERR {}", status.text),
                    ),
                    fix,
                )
            }
            other => (
                other.to_string(),
                Fix::new(
                    "connect-failed",
                    format!("check the host, port and TLS mode ({})", Pop3::PORTS),
                )
                .arg("ports", Pop3::PORTS),
            ),
        };
        report.push("authenticate", start, Err((detail, Some(fix))));
        return report;
    }
    report.push("authenticate", start, Ok(format!("signed in to {mailbox}")));
    let start = Instant::now();
    let listed = async {
        let (count, size) = client.stat().await?;
        let uidl = client.uidl().await?;
        Ok::<_, Pop3Error>((count, size, uidl))
    }
    .await;
    let (count, uidl) = match listed {
        Ok((count, size, uidl)) => {
            report.push(
                "open inbox",
                start,
                Ok(format!("{count} messages, {size} bytes (STAT, UIDL)")),
            );
            (count, uidl)
        }
        Err(e) => {
            let fix = e.meaning().map(diagnose::pop3_meaning);
            report.push("open inbox", start, Err((e.to_string(), fix)));
            return report;
        }
    };
    report.ok = true;
    if count > 0 {
        let start = Instant::now();
        let (n, uid) = uidl
            .first()
            .map_or((1, String::new()), |(n, u)| (*n, u.clone()));
        let result = match client.top(n, 0).await {
            Ok(raw) => headers::summary(&headers::parse(&raw))
                .map(|s| format!("message {n} (UIDL {uid}): {s}"))
                .ok_or_else(|| (format!("message {n} has no header fields"), None)),
            Err(e) => Err((
                e.to_string(),
                Some(Fix::new(
                    "pop3-no-top",
                    "the server refused TOP: reading the mailbox works, headers need RETR",
                )),
            )),
        };
        report.ok = report.push("read header", start, result);
    }
    let _ = client.quit().await;
    report
}
