//! "Test receive" and "test send": run the chain step by step (resolve, connect and
//! TLS, get a token, authenticate, open the inbox / send a message), time each step,
//! and on failure name the cause and the fix, reading the token's claims and the
//! server's reply together (the admin-mistake matrix of `microsoft-protocols.md` §8.2).

use std::future::Future;
use std::time::Instant;

use mailbridge_auth::claims::TokenClaims;
use mailbridge_auth::scopes::Grant;
use mailbridge_imap::{ImapClient, ImapConfig};
use mailbridge_smtp::{SmtpClient, SmtpConfig};
use mailbridge_tls::TlsSettings;
use mailbridge_types::config::{EndpointConfig, Transport};
use secrecy::SecretString;
use serde::Serialize;

/// One step of a check.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: String,
    pub ok: bool,
    pub elapsed_ms: u128,
    /// What happened (the server's words included).
    pub detail: String,
    /// On failure: the cause and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A whole check.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub ok: bool,
    pub steps: Vec<StepResult>,
}

impl Report {
    fn push(
        &mut self,
        step: &str,
        start: Instant,
        result: Result<String, (String, Option<String>)>,
    ) -> bool {
        let (ok, detail, fix) = match result {
            Ok(d) => (true, d, None),
            Err((d, f)) => (false, d, f),
        };
        self.steps.push(StepResult {
            step: step.to_owned(),
            ok,
            elapsed_ms: start.elapsed().as_millis(),
            detail,
            fix,
        });
        ok
    }

    /// The report as a person reads it: one line a step with ✓ or ✗ and its time.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{} {:<14} {:>5} ms  {}",
                if s.ok { "✓" } else { "✗" },
                s.step,
                s.elapsed_ms,
                s.detail
            );
            if let Some(fix) = &s.fix {
                let _ = writeln!(out, "    fix: {fix}");
            }
        }
        out
    }
}

/// How the check signs in.
#[expect(missing_debug_implementations, reason = "holds a closure and a secret")]
pub enum SignIn<F> {
    /// A token from `get`, for `user=` `mailbox`, of this grant.
    Token { grant: Grant, get: F },
    /// A password (generic servers, on-premises).
    Password {
        user: String,
        password: SecretString,
    },
}

/// Why the server refused a token that the identity platform issued: what the token
/// says first (missing roles = no admin consent, wrong audience = wrong scope), then
/// the Exchange-side steps the token cannot show.
fn refused_token_fix(
    token: &SecretString,
    transport: Transport,
    grant: Grant,
    server_fix: &str,
) -> String {
    use secrecy::ExposeSecret as _;
    match TokenClaims::decode(token.expose_secret()) {
        Some(claims) => {
            let problems = claims.problems(transport, grant);
            if problems.is_empty() {
                let exchange_side = match grant {
                    Grant::AppOnly => {
                        "the token is right (audience and role present), so the refusal is on the Exchange side: run `New-ServicePrincipal -AppId <client id> -ObjectId <Object ID from Enterprise applications, not from App registrations>`, grant `Add-MailboxPermission -Identity <mailbox> -User <service principal> -AccessRights FullAccess`, check the protocol is enabled for the mailbox, and allow up to 30 minutes for changes to propagate"
                    }
                    Grant::Delegated => {
                        "the token is right, so the refusal is on the Exchange side: check that user= is the mailbox's primary address (and that the user has FullAccess on it if it is another mailbox), and that the protocol is enabled for the mailbox"
                    }
                };
                exchange_side.to_owned()
            } else {
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        }
        None => server_fix.to_owned(),
    }
}

async fn resolve(report: &mut Report, host: &str, port: u16) -> bool {
    let start = Instant::now();
    let result = match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Ok(format!("{host} -> {}", a.ip())),
            None => Err((
                format!("{host} has no address"),
                Some("check the host name".into()),
            )),
        },
        Err(e) => Err((
            format!("{host} could not be resolved: {e}"),
            Some("check the host name and the DNS of this machine".into()),
        )),
    };
    report.push("resolve", start, result)
}

fn trust(endpoint: &EndpointConfig) -> Result<TlsSettings, String> {
    let extra_ca_pem = match &endpoint.extra_ca_file {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        ),
        None => None,
    };
    Ok(TlsSettings {
        extra_ca_pem,
        server_name: endpoint.tls_name.clone(),
    })
}

/// Resolves the host and reads the trust settings; `None` (with the failed step
/// recorded) when either fails.
async fn prepare(report: &mut Report, endpoint: &EndpointConfig) -> Option<TlsSettings> {
    if !resolve(report, &endpoint.host, endpoint.port()).await {
        return None;
    }
    let start = Instant::now();
    match trust(endpoint) {
        Ok(s) => Some(s),
        Err(e) => {
            report.push(
                "connect",
                start,
                Err((e, Some("fix the extra CA file path".into()))),
            );
            None
        }
    }
}

/// What the sign-in step produced.
enum Obtained {
    Token {
        token: SecretString,
        grant: Grant,
    },
    Password {
        user: String,
        password: SecretString,
    },
}

/// Runs the "get token" step for token sign-in; `None` (recorded) when it failed.
async fn obtain<F, Fut>(report: &mut Report, sign_in: SignIn<F>) -> Option<Obtained>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, String>>,
{
    match sign_in {
        SignIn::Token { grant, get } => {
            let start = Instant::now();
            match get().await {
                Ok(token) => {
                    report.push("get token", start, Ok("access token issued".into()));
                    Some(Obtained::Token { token, grant })
                }
                Err(e) => {
                    report.push("get token", start, Err((e, None)));
                    None
                }
            }
        }
        SignIn::Password { user, password } => Some(Obtained::Password { user, password }),
    }
}

/// Test receive over IMAP: resolve, connect + TLS, token, authenticate, open INBOX.
pub async fn receive_imap<F, Fut>(
    endpoint: &EndpointConfig,
    mailbox: &str,
    sign_in: SignIn<F>,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, String>>,
{
    let mut report = Report::default();
    let port = endpoint.port();
    let Some(settings) = prepare(&mut report, endpoint).await else {
        return report;
    };
    let start = Instant::now();
    let mut config = ImapConfig::new(&endpoint.host, port, endpoint.tls_mode());
    config.trust = settings;
    let mut client = match ImapClient::connect(&config).await {
        Ok(c) => c,
        Err(e) => {
            let fix = matches!(e, mailbridge_imap::ImapError::Tls(_))
                .then(|| "add the server's CA as the extra CA file, or check tls_name; certificate checks stay on".to_owned())
                .or_else(|| Some("check the host, port and TLS mode (IMAP: 993 implicit TLS, 143 STARTTLS)".to_owned()));
            report.push("connect+TLS", start, Err((format!("{e:#}"), fix)));
            return report;
        }
    };
    report.push(
        "connect+TLS",
        start,
        Ok(format!(
            "{}:{port} ({:?})",
            endpoint.host,
            endpoint.tls_mode()
        )),
    );
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let (credentials, token_for_diagnosis, grant) = match obtained {
        Obtained::Token { token, grant } => (
            mailbridge_imap::Credentials::XOAuth2 {
                user: mailbox.to_owned(),
                token: token.clone(),
            },
            Some(token),
            Some(grant),
        ),
        Obtained::Password { user, password } => (
            mailbridge_imap::Credentials::Login { user, password },
            None,
            None,
        ),
    };
    let start = Instant::now();
    match client.authenticate(&credentials).await {
        Ok(()) => {
            report.push("authenticate", start, Ok(format!("signed in to {mailbox}")));
        }
        Err(e) => {
            let server_fix = e.meaning().map(|m| m.fix().to_owned()).unwrap_or_default();
            let fix = match (&token_for_diagnosis, grant) {
                (Some(t), Some(g)) => refused_token_fix(t, Transport::Imap, g, &server_fix),
                _ => server_fix,
            };
            let detail = match &e {
                mailbridge_imap::ImapError::Refused { text, .. } => {
                    format!("the server answered: {text}")
                }
                other => other.to_string(),
            };
            report.push("authenticate", start, Err((detail, Some(fix))));
            return report;
        }
    }
    let start = Instant::now();
    let result = match client.select("INBOX").await {
        Ok(f) => Ok(format!(
            "INBOX has {} messages (UIDVALIDITY {})",
            f.exists, f.uid_validity
        )),
        Err(e) => Err((e.to_string(), None)),
    };
    report.ok = report.push("open inbox", start, result);
    let _ = client.logout().await;
    report
}

/// Test send over SMTP: resolve, connect + TLS, token, authenticate, send a test
/// message from `from` to `to`.
pub async fn send_smtp<F, Fut>(
    endpoint: &EndpointConfig,
    from: &str,
    to: &str,
    sign_in: SignIn<F>,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, String>>,
{
    let mut report = Report::default();
    let port = endpoint.port();
    let Some(settings) = prepare(&mut report, endpoint).await else {
        return report;
    };
    let start = Instant::now();
    let mut config = SmtpConfig::new(&endpoint.host, port, endpoint.tls_mode());
    config.trust = settings;
    let mut client = match SmtpClient::connect(&config).await {
        Ok(c) => c,
        Err(e) => {
            report.push(
                "connect+TLS",
                start,
                Err((
                    e.to_string(),
                    Some("check the host, port and TLS mode (SMTP submission: 587 STARTTLS, 465 implicit TLS)".into()),
                )),
            );
            return report;
        }
    };
    report.push(
        "connect+TLS",
        start,
        Ok(format!("{}:{port}", endpoint.host)),
    );
    let Some(obtained) = obtain(&mut report, sign_in).await else {
        return report;
    };
    let (credentials, token_for_diagnosis, grant) = match obtained {
        Obtained::Token { token, grant } => (
            mailbridge_smtp::Credentials::XOAuth2 {
                user: from.to_owned(),
                token: token.clone(),
            },
            Some(token),
            Some(grant),
        ),
        Obtained::Password { user, password } => (
            mailbridge_smtp::Credentials::Plain { user, password },
            None,
            None,
        ),
    };
    let start = Instant::now();
    if let Err(e) = client.authenticate(&credentials).await {
        let meaning = e.meaning();
        let server_fix = meaning.map(|m| m.fix().to_owned()).unwrap_or_default();
        // 5.7.139 says exactly what is wrong; only a generic refusal needs the token read.
        let fix = match (meaning, &token_for_diagnosis, grant) {
            (Some(mailbridge_smtp::Meaning::AuthenticationFailed), Some(t), Some(g)) => {
                refused_token_fix(t, Transport::Smtp, g, &server_fix)
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
    let message = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: mailbridge test message\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThis message was sent by `mailbridge test send` to check the account's outgoing side.\r\n"
    );
    let result = match client
        .send(from, &[to.to_owned()], message.as_bytes())
        .await
    {
        Ok(reply) => Ok(format!("accepted: {} {}", reply.code, reply.text())),
        Err(e) => {
            let fix = e.meaning().map(|m| m.fix().to_owned());
            Err((e.to_string(), fix))
        }
    };
    report.ok = report.push("send", start, result);
    let _ = client.quit().await;
    report
}
