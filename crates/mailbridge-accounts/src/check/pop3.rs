//! Test receive over POP3: resolve, connect + TLS, token, authenticate, STAT and UIDL,
//! and the first message's header with `TOP n 0`.

use std::future::Future;
use std::time::Instant;

use mailbridge_pop3::{Pop3Client, Pop3Config, Pop3Error};
use mailbridge_types::config::{EndpointConfig, Transport};
use secrecy::SecretString;

use super::headers;
use super::{
    Identity, Obtained, Report, Side, SignIn, Target, TokenFailure, connect_step, diagnose, obtain,
    prepare, refused_login,
};

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
    let port = endpoint.port();
    let Some(settings) = prepare(&mut report, endpoint).await else {
        return report;
    };
    let mut config = Pop3Config::new(&endpoint.host, port, endpoint.tls_mode());
    config.trust = settings;
    let target = Target {
        endpoint,
        who,
        side: Side::Incoming,
    };
    let Some(mut client) = connect_step(
        &mut report,
        &target,
        Pop3Client::connect(&config),
        |e| match e {
            Pop3Error::Tls(t) => Some(&t.source),
            Pop3Error::Io { source, .. } => Some(source),
            _ => None,
        },
        Pop3Client::tls_mode,
        "POP3: 995 implicit TLS, 110 STLS",
    )
    .await
    else {
        return report;
    };
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let password_login = match &obtained {
        Obtained::Password { user, .. } => Some(user.clone()),
        Obtained::Token { .. } => None,
    };
    let (credentials, token) = match obtained {
        Obtained::Token { token, grant } => (
            mailbridge_pop3::Credentials::XOAuth2 {
                user: who.login.clone(),
                token: token.clone(),
            },
            Some((token, grant)),
        ),
        Obtained::Password { user, password } => (
            mailbridge_pop3::Credentials::UserPass { user, password },
            None,
        ),
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
                        meaning.fix(),
                    )
                } else {
                    meaning.fix().to_owned()
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
                "check the host, port and TLS mode (POP3: 995 implicit TLS, 110 STLS)".to_owned(),
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
            let fix = e.meaning().map(|m| m.fix().to_owned());
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
                Some(
                    "the server refused TOP: reading the mailbox works, headers need RETR"
                        .to_owned(),
                ),
            )),
        };
        report.ok = report.push("read header", start, result);
    }
    let _ = client.quit().await;
    report
}
