//! Test receive and test send over EWS: resolve, connect + TLS, (for Exchange Online
//! the retirement notice), token or Basic, FindItem on the inbox and the first item's
//! header, or CreateItem `SendAndSaveCopy` with a small MIME test message.

use std::future::Future;
use std::time::{Duration, Instant};

use mailbridge_auth::scopes::Grant;
use mailbridge_ews::{EwsAuth, EwsClient, EwsConfig};
use mailbridge_types::config::EndpointConfig;
use secrecy::SecretString;

use super::{
    Failure, Fix, Identity, Obtained, Report, Side, SignIn, Target, TokenFailure, diagnose, obtain,
    test_message,
};

/// The advice for an EWS URL of Exchange Online: blocked by default from 2026-10-01,
/// switched off on 2027-04-01, and how to move the account to Graph. `None` for
/// on-premises URLs.
pub fn ews_notice(ews_url: &str) -> Option<String> {
    mailbridge_ews::exchange_online_notice(ews_url).map(|notice| {
        format!(
            "{notice}; in mailbridge set the account's incoming (and outgoing) transport to \"graph\" with host https://graph.microsoft.com, then run `mailbridge test receive <account>` again"
        )
    })
}

struct Session {
    client: EwsClient,
    auth: EwsAuth,
    token: Option<(SecretString, Grant)>,
}

/// Resolve, connect + TLS, the notice, and the sign-in; `None` when a step failed.
async fn open<F, Fut, E>(
    report: &mut Report,
    target: &Target<'_>,
    sign_in: SignIn<F>,
) -> Option<Session>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let url = target.endpoint.host.clone();
    let address = target.who.address.as_str();
    let trust = super::graph::reach(report, target, &url).await?;
    if let Some(advice) = ews_notice(&url) {
        report.advise(
            "EWS retirement",
            "this account uses EWS in Exchange Online".to_owned(),
            Fix::new("ews-retirement", advice)
                .arg(
                    "blocked",
                    mailbridge_ews::client::EXCHANGE_ONLINE_EWS_BLOCKED,
                )
                .arg("off", mailbridge_ews::client::EXCHANGE_ONLINE_EWS_OFF),
        );
    }
    let obtained = obtain(report, sign_in).await?;
    let (auth, token) = match obtained {
        Obtained::Token { token, grant } => {
            let auth = match grant {
                Grant::AppOnly => EwsAuth::AppOnly {
                    token: std::sync::Arc::new(token.clone()),
                    mailbox: address.to_owned(),
                },
                Grant::Delegated => EwsAuth::Bearer {
                    token: std::sync::Arc::new(token.clone()),
                },
            };
            (auth, Some((token, grant)))
        }
        Obtained::Password { user, password } => (EwsAuth::Basic { user, password }, None),
    };
    let mut config = EwsConfig::new(&url);
    config.extra_ca_pem = trust.extra_ca_pem;
    config.tls_pin = trust.pin;
    config.attempts = 2;
    config.timeout = Duration::from_mins(1);
    match EwsClient::new(config) {
        Ok(client) => Some(Session {
            client,
            auth,
            token,
        }),
        Err(e) => {
            report.push("open inbox", Instant::now(), Err((e.to_string(), None)));
            None
        }
    }
}

fn refused(e: &mailbridge_ews::EwsError, session: &Session, address: &str) -> Failure {
    let detail = match e {
        mailbridge_ews::EwsError::Unauthorized { diagnostics } => format!(
            "EWS answered HTTP 401{}",
            diagnostics
                .as_deref()
                .map(|d| format!(", x-ms-diagnostics: {d}"))
                .unwrap_or_default()
        ),
        mailbridge_ews::EwsError::Response { code, message, .. } => {
            format!("EWS answered {code}: {message}")
        }
        other => other.to_string(),
    };
    let token = session.token.as_ref().map(|(t, g)| (t, *g));
    (detail, Some(diagnose::ews_refusal(token, e, address)))
}

/// Test receive over EWS as `who` (app-only impersonates its address).
pub async fn receive_ews<F, Fut, E>(
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
    let target = Target {
        endpoint,
        who,
        side: Side::Incoming,
    };
    let Some(session) = open(&mut report, &target, sign_in).await else {
        return report;
    };
    let start = Instant::now();
    let peek = match session.client.find_first_item(&session.auth, "inbox").await {
        Ok(p) => p,
        Err(e) => {
            report.push("open inbox", start, Err(refused(&e, &session, address)));
            return report;
        }
    };
    report.ok = report.push(
        "open inbox",
        start,
        Ok(format!("FindItem: the inbox has {} items", peek.total)),
    );
    if let Some(first) = peek.first {
        let start = Instant::now();
        // Only the header fields travel (InternetMessageHeaders), not the message.
        let result = match session.client.get_headers(&session.auth, &first.id).await {
            Ok(headers) => super::headers::summary(&headers)
                .ok_or_else(|| ("the first item has no header fields".to_owned(), None)),
            Err(e) => Err(refused(&e, &session, address)),
        };
        report.ok = report.push("read header", start, result);
    }
    report
}

/// Test send over EWS: CreateItem `SendAndSaveCopy` of a small MIME test message.
pub async fn send_ews<F, Fut, E>(
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
    let target = Target {
        endpoint,
        who,
        side: Side::Outgoing,
    };
    let Some(session) = open(&mut report, &target, sign_in).await else {
        return report;
    };
    let start = Instant::now();
    let message = test_message(from, to);
    let result = match session
        .client
        .send_mime(&session.auth, message.as_bytes(), true)
        .await
    {
        Ok(()) => Ok(format!(
            "accepted for {to} by CreateItem SendAndSaveCopy (a copy is in Sent Items)"
        )),
        Err(e) => Err(refused(&e, &session, from)),
    };
    report.ok = report.push("send", start, result);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_online_gets_the_notice_and_on_premises_does_not() {
        let n = ews_notice("https://outlook.office365.com/EWS/Exchange.asmx").unwrap();
        assert!(n.contains("2026-10-01") && n.contains("2027-04-01"), "{n}");
        assert!(
            n.contains("Microsoft Graph") && n.contains("transport to \"graph\""),
            "{n}"
        );
        assert!(ews_notice("https://mail.contoso.com/EWS/Exchange.asmx").is_none());
    }
}
