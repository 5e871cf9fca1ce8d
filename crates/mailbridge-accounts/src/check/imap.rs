//! Test receive over IMAP: resolve, connect + TLS, token, authenticate, open INBOX,
//! read the first message's header.

use std::future::Future;
use std::time::Instant;

use mailbridge_imap::{ImapClient, ImapConfig, ImapError};
use mailbridge_tls::TlsSettings;
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use secrecy::SecretString;

use super::headers::{self, HeaderSink};
use super::steps::{self, MailProtocol, Opened};
use super::{Fix, Identity, Report, Side, SignIn, TokenFailure, diagnose, refused_login};

/// IMAP, as the shared steps see it.
struct Imap;

impl MailProtocol for Imap {
    type Client = ImapClient;
    type Error = ImapError;
    type Credentials = mailbridge_imap::Credentials;
    const SIDE: Side = Side::Incoming;
    const PORTS: &'static str = "IMAP: 993 implicit TLS, 143 STARTTLS";

    async fn connect(
        endpoint: &EndpointConfig,
        trust: TlsSettings,
    ) -> Result<ImapClient, ImapError> {
        let mut config = ImapConfig::new(&endpoint.host, endpoint.port(), endpoint.tls_mode());
        config.trust = trust;
        ImapClient::connect(&config).await
    }

    fn io_source(error: &ImapError) -> Option<&std::io::Error> {
        match error {
            ImapError::Tls(t) => Some(&t.source),
            ImapError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    fn tls_mode(client: &ImapClient) -> TlsMode {
        client.tls_mode()
    }

    fn xoauth2(user: String, token: SecretString) -> Self::Credentials {
        mailbridge_imap::Credentials::XOAuth2 { user, token }
    }

    fn password(user: String, password: SecretString) -> Self::Credentials {
        mailbridge_imap::Credentials::Login { user, password }
    }
}

/// Test receive over IMAP as `who` (XOAUTH2's `user=` is its login, as in `fetch`).
pub async fn receive_imap<F, Fut, E>(
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
    let Some(opened) = steps::open::<Imap, _, _, _>(&mut report, endpoint, who, sign_in).await
    else {
        return report;
    };
    let Opened {
        mut client,
        credentials,
        token,
        password_login,
    } = opened;
    let token_ref = token.as_ref().map(|(t, g)| (t, *g));
    let refusal = |e: &ImapError| {
        let server_fix = e
            .meaning()
            .map_or_else(Fix::default, diagnose::imap_meaning);
        diagnose::mail_refusal(token_ref, Transport::Imap, mailbox, server_fix)
    };
    let start = Instant::now();
    if let Err(e) = client.authenticate(&credentials).await {
        let detail = match &e {
            ImapError::Refused { text, .. } => format!("the server answered: {text}"),
            other => other.to_string(),
        };
        let detail = refused_login(password_login.as_deref(), detail);
        report.push("authenticate", start, Err((detail, Some(refusal(&e)))));
        return report;
    }
    report.push("authenticate", start, Ok(format!("signed in to {mailbox}")));
    let start = Instant::now();
    let folder = match client.select("INBOX").await {
        Ok(f) => f,
        Err(e) => {
            // Exchange's "BAD User is authenticated but not connected." lands here.
            let fix = matches!(
                e.meaning(),
                Some(mailbridge_imap::Meaning::AuthenticationFailed)
            )
            .then(|| refusal(&e));
            report.push("open inbox", start, Err((e.to_string(), fix)));
            return report;
        }
    };
    let opened = report.push(
        "open inbox",
        start,
        Ok(format!(
            "INBOX has {} messages (UIDVALIDITY {})",
            folder.exists, folder.uid_validity
        )),
    );
    report.ok = opened;
    if folder.exists > 0 {
        let start = Instant::now();
        let result = read_first_header(&mut client).await;
        report.ok = report.push("read header", start, result);
    }
    let _ = client.logout().await;
    report
}

async fn read_first_header(client: &mut ImapClient) -> Result<String, super::Failure> {
    let uids = client
        .uids_after(0)
        .await
        .map_err(|e| (e.to_string(), None))?;
    let Some(uid) = uids.first().copied() else {
        return Ok("INBOX lists no UIDs (emptied meanwhile)".to_owned());
    };
    // Only the header block travels (`BODY.PEEK[HEADER]`), whatever the message's size.
    let mut sink = HeaderSink::default();
    client
        .fetch_header(uid, &mut sink)
        .await
        .map_err(|e| (e.to_string(), None))?;
    headers::summary(&headers::parse(&sink.0))
        .map(|s| format!("UID {uid}: {s}"))
        .ok_or_else(|| {
            (
                format!("UID {uid} has no header fields"),
                Some(Fix::new(
                    "message-malformed",
                    "the message is malformed; the mailbox itself works",
                )),
            )
        })
}
