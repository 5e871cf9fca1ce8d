//! Test receive and test send over Microsoft Graph: resolve, connect + TLS, token,
//! open the inbox (its counts) and read the first message's internet headers, or send
//! a small MIME test message with `sendMail`. App-only tokens address
//! `/users/{address or object id}`, delegated ones `/me`.

use std::future::Future;
use std::time::{Duration, Instant};

use mailbridge_graph::{GraphClient, GraphConfig, Mailbox};
use mailbridge_types::config::EndpointConfig;
use secrecy::SecretString;

use mailbridge_tls::TlsSettings;

use super::{
    Failure, Fix, Identity, Obtained, Report, Side, SignIn, Target, TokenFailure, diagnose, obtain,
    test_message,
};
use mailbridge_auth::scopes::Grant;

/// Resolve and connect + TLS for an HTTPS endpoint (Graph root or EWS URL): any HTTP
/// answer to a request without credentials proves both. The trust (extra CA, pin) is
/// the endpoint's, verified by mailbridge's own verifier, which keeps the certificate
/// the server presented for the report.
pub(super) async fn reach(
    report: &mut Report,
    target: &Target<'_>,
    url: &str,
) -> Option<TlsSettings> {
    let endpoint = target.endpoint;
    let start = Instant::now();
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            report.push(
                "resolve",
                start,
                Err((
                    format!("{} is not a URL: {e}", mailbridge_http::redact(url)),
                    Some(Fix::new("endpoint-not-url", "set the endpoint's host to the full URL, such as https://graph.microsoft.com or https://mail.contoso.com/EWS/Exchange.asmx")),
                )),
            );
            return None;
        }
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    if !super::resolve(report, &host, port).await {
        return None;
    }
    let start = Instant::now();
    let trust = match mailbridge_mailbox::connect::trust(endpoint) {
        Ok(t) => t,
        Err(e) => {
            report.push(
                "connect+TLS",
                start,
                Err((
                    e.detail(),
                    Some(Fix::new(
                        "trust-settings",
                        "fix the extra CA file path or the pin",
                    )),
                )),
            );
            return None;
        }
    };
    let presented = mailbridge_tls::Presented::default();
    let mut certificate = None;
    let result = async {
        let tls = trust
            .client_config_capturing(presented.clone())
            .map_err(|e| (mailbridge_types::error_chain(&e), None))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| (format!("HTTP client: {e}"), None))?;
        let response = http.get(url).send().await.map_err(|e| {
            match mailbridge_tls::refused_in_chain(&e, &presented, trust.pin) {
                Some(refused) => {
                    let explained = super::tls::certificate(&refused, target.who, target.side);
                    certificate = explained.certificate;
                    (
                        format!(
                            "TLS with {host} failed: {}",
                            explained.cause.unwrap_or_default()
                        ),
                        Some(explained.fix),
                    )
                }
                None => (
                    mailbridge_types::error_chain(&e.without_url()),
                    Some(Fix::new(
                        "url-unreachable",
                        "check the URL, and that this machine reaches it (DNS, proxy, firewall)",
                    )),
                ),
            }
        })?;
        let pinned = if trust.pin.is_some() {
            ", certificate pinned"
        } else {
            ""
        };
        Ok(format!(
            "{host}:{port} answers (HTTP {} without credentials{pinned})",
            response.status().as_u16()
        ))
    }
    .await;
    report
        .push_presented("connect+TLS", start, result, certificate)
        .then_some(trust)
}

/// The Graph client and the mailbox path for a grant; a failed step when the account
/// signs in with a password, which Graph never accepts.
fn client_for(
    report: &mut Report,
    endpoint: &EndpointConfig,
    trust: TlsSettings,
    who: &Identity,
    obtained: Obtained,
) -> Option<(GraphClient, Mailbox, SecretString, Grant)> {
    let start = Instant::now();
    let (token, grant) = match obtained {
        Obtained::Token { token, grant } => (token, grant),
        Obtained::Password { .. } => {
            report.push(
                "authenticate",
                start,
                Err((
                    "Microsoft Graph accepts only OAuth tokens, not passwords".into(),
                    Some(Fix::new("graph-no-passwords", "set the account's sign_in to app-only (App registrations -> Certificates & secrets, Microsoft Graph Mail.ReadWrite and Mail.Send application permissions, Grant admin consent) or delegated")),
                )),
            );
            return None;
        }
    };
    let mut config = GraphConfig::new(&mailbridge_mailbox::connect::graph_root(endpoint));
    config.extra_ca_pem = trust.extra_ca_pem;
    config.tls_pin = trust.pin;
    config.attempts = 2;
    config.max_retry_after = Duration::from_secs(10);
    config.timeout = Duration::from_mins(1);
    let client = match GraphClient::new(config) {
        Ok(c) => c,
        Err(e) => {
            report.push("authenticate", start, Err((e.to_string(), None)));
            return None;
        }
    };
    // The mailbox path `fetch` and `send` use: the Object ID when set.
    let mailbox = who.graph_mailbox(grant == Grant::Delegated);
    Some((client, mailbox, token, grant))
}

fn refused(
    e: &mailbridge_graph::ClientError,
    token: &SecretString,
    grant: Grant,
    address: &str,
    sending: bool,
) -> Failure {
    let detail = match e {
        mailbridge_graph::ClientError::Graph(g) => format!(
            "Microsoft Graph answered HTTP {} {}: {}",
            g.status, g.code, g.message
        ),
        other => other.to_string(),
    };
    (
        detail,
        Some(diagnose::graph_refusal(token, grant, e, address, sending)),
    )
}

/// Test receive over Graph as `who` (`/users/{object id or address}`, or `/me`).
pub async fn receive_graph<F, Fut, E>(
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
    let address = who.address.as_str();
    let root = mailbridge_mailbox::connect::graph_root(endpoint);
    let target = Target {
        endpoint,
        who,
        side: Side::Incoming,
    };
    let Some(trust) = reach(&mut report, &target, &format!("{root}/me")).await else {
        return report;
    };
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let Some((client, mailbox, token, grant)) =
        client_for(&mut report, endpoint, trust, who, obtained)
    else {
        return report;
    };
    let start = Instant::now();
    let counts = match client.folder_counts(&token, &mailbox, "inbox").await {
        Ok(c) => c,
        Err(e) => {
            report.push(
                "open inbox",
                start,
                Err(refused(&e, &token, grant, address, false)),
            );
            return report;
        }
    };
    let path = match &mailbox {
        Mailbox::Me => "/me".to_owned(),
        Mailbox::User(a) => format!("/users/{a}"),
    };
    report.ok = report.push(
        "open inbox",
        start,
        Ok(format!(
            "{path}/mailFolders/inbox has {} messages ({} unread)",
            counts.total, counts.unread
        )),
    );
    if counts.total > 0 {
        let start = Instant::now();
        let result = match client
            .first_message_headers(&token, &mailbox, "inbox")
            .await
        {
            Ok(Some(m)) => super::headers::summary(&m.headers).ok_or_else(|| {
                (
                    format!("message {} came without internetMessageHeaders", m.id),
                    None,
                )
            }),
            Ok(None) => Ok("the inbox lists no message (emptied meanwhile)".to_owned()),
            Err(e) => Err(refused(&e, &token, grant, address, false)),
        };
        report.ok = report.push("read header", start, result);
    }
    report
}

/// Test send over Graph: `sendMail` with a small MIME test message from `who`'s
/// mailbox (the path `send` uses) to `to`.
pub async fn send_graph<F, Fut, E>(
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
    let root = mailbridge_mailbox::connect::graph_root(endpoint);
    let target = Target {
        endpoint,
        who,
        side: Side::Outgoing,
    };
    let Some(trust) = reach(&mut report, &target, &format!("{root}/me")).await else {
        return report;
    };
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let Some((client, mailbox, token, grant)) =
        client_for(&mut report, endpoint, trust, who, obtained)
    else {
        return report;
    };
    let start = Instant::now();
    let message = test_message(from, to);
    let result = match client.send_mime(&token, &mailbox, message.as_bytes()).await {
        Ok(()) => Ok(format!(
            "accepted for {to} by sendMail (a copy is in Sent Items)"
        )),
        Err(e) => Err(refused(&e, &token, grant, from, true)),
    };
    report.ok = report.push("send", start, result);
    report
}
