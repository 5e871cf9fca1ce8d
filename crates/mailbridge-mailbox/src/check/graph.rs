//! Test receive and test send over Microsoft Graph: resolve, connect + TLS, token,
//! open the inbox (its counts) and read the first message's internet headers, or send
//! a small MIME test message with `sendMail`. App-only tokens address
//! `/users/{address or object id}`, delegated ones `/me`.

use std::future::Future;
use std::time::{Duration, Instant};

use mailbridge_graph::{GraphClient, GraphConfig, Mailbox};
use mailbridge_types::config::EndpointConfig;
use secrecy::SecretString;

use super::{Failure, Obtained, Report, SignIn, TokenFailure, diagnose, obtain, test_message};
use mailbridge_auth::scopes::Grant;

/// Resolve and connect + TLS for an HTTPS endpoint (Graph root or EWS URL): any HTTP
/// answer to a request without credentials proves both. The extra CA, when set.
pub(super) async fn reach(
    report: &mut Report,
    endpoint: &EndpointConfig,
    url: &str,
) -> Option<Option<String>> {
    let start = Instant::now();
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            report.push(
                "resolve",
                start,
                Err((
                    format!("{} is not a URL: {e}", mailbridge_http::redact(url)),
                    Some("set the endpoint's host to the full URL, such as https://graph.microsoft.com or https://mail.contoso.com/EWS/Exchange.asmx".into()),
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
    let extra_ca = match super::read_ca(endpoint) {
        Ok(ca) => ca,
        Err(e) => {
            report.push(
                "connect+TLS",
                start,
                Err((e, Some("fix the extra CA file path".into()))),
            );
            return None;
        }
    };
    let result = async {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &extra_ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| (format!("the extra CA file is not PEM: {e}"), Some("point extra_ca_file at the CA certificate in PEM".to_owned())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| (format!("HTTP client: {e}"), None))?;
        let response = http.get(url).send().await.map_err(|e| {
            // Without the URL reqwest would print, query and all.
            let text = mailbridge_types::error_chain(&e.without_url());
            let certificate = text.to_ascii_lowercase().contains("certificate");
            let fix = if certificate {
                "the server's certificate is not trusted: add its CA as the endpoint's extra_ca_file (certificate checks stay on)"
            } else {
                "check the URL, and that this machine reaches it (DNS, proxy, firewall)"
            };
            (text, Some(fix.to_owned()))
        })?;
        Ok(format!(
            "{host}:{port} answers (HTTP {} without credentials)",
            response.status().as_u16()
        ))
    }
    .await;
    report
        .push("connect+TLS", start, result)
        .then_some(extra_ca)
}

/// The Graph client and the mailbox path for a grant; a failed step when the account
/// signs in with a password, which Graph never accepts.
fn client_for(
    report: &mut Report,
    endpoint: &EndpointConfig,
    extra_ca: Option<String>,
    address: &str,
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
                    Some("set the account's sign_in to app-only (App registrations -> Certificates & secrets, Microsoft Graph Mail.ReadWrite and Mail.Send application permissions, Grant admin consent) or delegated".into()),
                )),
            );
            return None;
        }
    };
    let mut config = GraphConfig::new(&crate::connect::graph_root(endpoint));
    config.extra_ca_pem = extra_ca;
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
    let mailbox = match grant {
        Grant::AppOnly => Mailbox::User(address.to_owned()),
        Grant::Delegated => Mailbox::Me,
    };
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

/// Test receive over Graph for `address`.
pub async fn receive_graph<F, Fut, E>(
    endpoint: &EndpointConfig,
    address: &str,
    sign_in: SignIn<F>,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let mut report = Report::default();
    let root = crate::connect::graph_root(endpoint);
    let Some(extra_ca) = reach(&mut report, endpoint, &format!("{root}/me")).await else {
        return report;
    };
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let Some((client, mailbox, token, grant)) =
        client_for(&mut report, endpoint, extra_ca, address, obtained)
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

/// Test send over Graph: `sendMail` with a small MIME test message from `from` to `to`.
pub async fn send_graph<F, Fut, E>(
    endpoint: &EndpointConfig,
    from: &str,
    to: &str,
    sign_in: SignIn<F>,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let mut report = Report::default();
    let root = crate::connect::graph_root(endpoint);
    let Some(extra_ca) = reach(&mut report, endpoint, &format!("{root}/me")).await else {
        return report;
    };
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let Some((client, mailbox, token, grant)) =
        client_for(&mut report, endpoint, extra_ca, from, obtained)
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
