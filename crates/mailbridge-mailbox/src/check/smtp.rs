//! Test send over SMTP: resolve, connect + TLS, token, authenticate, send a test
//! message.

use std::future::Future;
use std::time::Instant;

use mailbridge_smtp::{SmtpClient, SmtpConfig};
use mailbridge_types::config::{EndpointConfig, Transport};
use secrecy::SecretString;

use super::{
    Obtained, Report, SignIn, TokenFailure, connect_step, diagnose, obtain, prepare, test_message,
};

/// Test send over SMTP: a test message from `from` to `to`.
pub async fn send_smtp<F, Fut, E>(
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
    let port = endpoint.port();
    let Some(settings) = prepare(&mut report, endpoint).await else {
        return report;
    };
    let mut config = SmtpConfig::new(&endpoint.host, port, endpoint.tls_mode());
    config.trust = settings;
    let Some(mut client) = connect_step(
        &mut report,
        endpoint,
        SmtpClient::connect(&config),
        |e| matches!(e, mailbridge_smtp::SmtpError::Tls { source, .. } if mailbridge_tls::may_be_trust(source)),
        SmtpClient::tls_mode,
        "SMTP submission: 587 STARTTLS, 465 implicit TLS",
    )
    .await
    else {
        return report;
    };
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let (credentials, token) = match obtained {
        Obtained::Token { token, grant } => (
            mailbridge_smtp::Credentials::XOAuth2 {
                user: from.to_owned(),
                token: token.clone(),
            },
            Some((token, grant)),
        ),
        Obtained::Password { user, password } => {
            (mailbridge_smtp::Credentials::Plain { user, password }, None)
        }
    };
    let token_ref = token.as_ref().map(|(t, g)| (t, *g));
    let start = Instant::now();
    if let Err(e) = client.authenticate(&credentials).await {
        let meaning = e.meaning();
        let server_fix = meaning.map(|m| m.fix().to_owned()).unwrap_or_default();
        // 5.7.139 says exactly what is wrong; only a bare refusal needs the token read.
        let fix = match meaning {
            Some(mailbridge_smtp::Meaning::AuthenticationFailed) | None => {
                diagnose::mail_refusal(token_ref, Transport::Smtp, from, &server_fix)
            }
            _ => server_fix,
        };
        let detail = match &e {
            mailbridge_smtp::SmtpError::Refused { reply, .. } => {
                format!("the server answered: {} {}", reply.code, reply.text())
            }
            other => other.to_string(),
        };
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
            let fix = e.meaning().map(|m| m.fix().to_owned());
            Err((e.to_string(), fix))
        }
    };
    report.ok = report.push("send", start, result);
    let _ = client.quit().await;
    report
}
