//! "Test receive" and "test send": run the chain step by step (resolve, connect and
//! TLS, get a token, authenticate, open the inbox and read one header / send a test
//! message), time each step, and on failure name the cause and the fix, reading the
//! token's claims and the server's reply together (the admin-mistake matrix of
//! `microsoft-protocols.md` §8.2).
//!
//! Parts: one file per transport ([`receive_imap`], [`receive_pop3`],
//! [`receive_graph`] / [`send_graph`], [`receive_ews`] / [`send_ews`],
//! [`send_smtp`]); `diagnose` turns a refusal plus the token into the admin's fix;
//! `tls` explains a failed TLS step (the cause, the certificate presented, the fix);
//! `steps` runs the steps IMAP, POP3 and SMTP share (resolve, connect + TLS, get
//! token); this file holds the report, the sign-in step and the steps every
//! transport shares.
//!
//! Every check signs in and opens the mailbox as [`Identity`] says, as `fetch` and
//! `send` do.

mod diagnose;
mod ews;
mod graph;
mod headers;
mod imap;
mod pop3;
mod smtp;
mod steps;
mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use mailbridge_auth::scopes::Grant;
use mailbridge_auth::token::AuthError;
use mailbridge_types::config::EndpointConfig;
use secrecy::SecretString;
use serde::Serialize;

pub use mailbridge_mailbox::connect::Identity;
pub use tls::PresentedCertificate;
use tls::Side;

pub use ews::{ews_notice, receive_ews, send_ews};
pub use graph::{receive_graph, send_graph};
pub use imap::receive_imap;
pub use pop3::receive_pop3;
pub use smtp::send_smtp;

/// One step of a check.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: String,
    pub ok: bool,
    pub elapsed_ms: u128,
    /// What happened (the server's words included).
    pub detail: String,
    /// On failure: the cause and what to change (also advice on a passed step, such as
    /// the EWS retirement notice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The fix's stable id, when it has one: `aadsts-<code>` for an entry of the AADSTS
    /// catalogue, otherwise a check's own id (see [`Fix`]). Pages say the fix in the
    /// viewer's language from it; absent when the fix is a server's or library's own
    /// words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_id: Option<String>,
    /// The values the fix names (account, mailbox, ids, fingerprints, ports), by the
    /// argument names of the fix's messages.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fix_args: BTreeMap<String, String>,
    /// On a TLS failure: the certificate the server presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PresentedCertificate>,
}

/// A whole check.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub ok: bool,
    pub steps: Vec<StepResult>,
}

/// A fix: its English text (what the CLI prints) and, when it has one, its stable id
/// with the values it names, from which the web pages say it in other languages.
///
/// Ids: `aadsts-<code>` (the AADSTS catalogue entry: its cause and fix, optionally with
/// the argument `claims` = `challenge` when the answer carried a claims challenge), or a
/// check's own id such as `resolve-failed`, `tls-self-signed` or
/// `mail-refused-app-only-imap`. Arguments are values only (names, addresses, ids,
/// commands), never words of a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fix {
    pub text: String,
    pub id: Option<String>,
    pub args: BTreeMap<String, String>,
}

impl Fix {
    /// A fix with the stable id `id`.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            id: Some(id.into()),
            args: BTreeMap::new(),
        }
    }

    /// The fix with the value `value` for its argument `name`.
    #[must_use]
    pub fn arg(mut self, name: &str, value: impl Into<String>) -> Self {
        self.args.insert(name.to_owned(), value.into());
        self
    }
}

impl From<String> for Fix {
    /// A fix known only by its English text (a server's or library's own words).
    fn from(text: String) -> Self {
        Self {
            text,
            id: None,
            args: BTreeMap::new(),
        }
    }
}

impl From<&str> for Fix {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

/// Every id a check's [`Fix`] can carry besides `aadsts-<code>` (an entry of
/// `mailbridge_auth::diagnosis::CATALOGUE`) and `aadsts-unknown`: the web pages have a
/// message `fix-<id>` for each, in every language.
pub const FIX_IDS: &[&str] = &[
    "resolve-no-address",
    "resolve-failed",
    "trust-settings",
    "endpoint-not-url",
    "url-unreachable",
    "graph-no-passwords",
    "token-certificate",
    "token-unreachable",
    "token-not-identity-platform",
    "token-credential",
    "token-authority",
    "token-sign-in-again",
    "tls-ca-as-server",
    "tls-self-signed",
    "tls-untrusted-issuer",
    "tls-wrong-name",
    "tls-no-name",
    "tls-pin-mismatch",
    "tls-port-expects-plain",
    "tls-port-expects-tls",
    "tls-no-answer",
    "connect-failed",
    "pop3-no-top",
    "message-malformed",
    "ews-retirement",
    "mail-refused-password-imap",
    "mail-refused-password-pop3",
    "mail-refused-password-smtp",
    "mail-refused-app-only-imap",
    "mail-refused-app-only-pop3",
    "mail-refused-app-only-smtp",
    "mail-refused-delegated-imap",
    "mail-refused-delegated-pop3",
    "mail-refused-delegated-smtp",
    "mail-refused-other-user-imap",
    "mail-refused-other-user-pop3",
    "mail-refused-other-user-smtp",
    "token-not-graph",
    "token-not-exchange",
    "token-no-roles-graph",
    "token-no-roles-exchange",
    "token-missing-role-graph",
    "token-missing-role-exchange",
    "token-missing-scope-graph",
    "token-missing-scope-exchange",
    "graph-unreachable",
    "graph-no-roles",
    "graph-missing-role",
    "graph-no-mail-send-scope",
    "graph-token-refused",
    "graph-denied-delegated",
    "graph-denied-app-only",
    "graph-outside-policy",
    "graph-outside-policy-with-role",
    "graph-mailbox-not-enabled",
    "graph-unknown-user",
    "graph-me-app-only",
    "ews-password-refused",
    "ews-token-expired",
    "ews-access-denied",
    "ews-impersonation-denied",
    "ews-no-mailbox",
    "ews-send-as-denied",
    "ews-unreachable",
    "imap-authentication-failed",
    "imap-throttled",
    "imap-transient",
    "imap-rejected",
    "pop3-authentication-failed",
    "pop3-disabled",
    "pop3-transient",
    "pop3-rejected",
    "smtp-auth-disabled-for-tenant",
    "smtp-auth-disabled-for-mailbox",
    "smtp-basic-auth-disabled",
    "smtp-authentication-failed",
    "smtp-send-as-denied",
    "smtp-throttled",
    "smtp-too-large",
    "smtp-transient",
    "smtp-rejected",
    "graph-throttled",
    "graph-not-found",
    "graph-resync-required",
    "graph-transient",
    "graph-rejected",
];

/// A failed step: what happened and, when known, the fix.
type Failure = (String, Option<Fix>);

impl Report {
    fn push(&mut self, step: &str, start: Instant, result: Result<String, Failure>) -> bool {
        self.push_presented(step, start, result, None)
    }

    /// Records a step with the certificate the server presented (on a TLS failure),
    /// and tells the progress hook, if any (see [`observed`]).
    fn push_presented(
        &mut self,
        step: &str,
        start: Instant,
        result: Result<String, Failure>,
        certificate: Option<PresentedCertificate>,
    ) -> bool {
        let (ok, detail, fix) = match result {
            Ok(d) => (true, d, None),
            Err((d, f)) => (false, d, f),
        };
        let (fix, fix_id, fix_args) = match fix {
            Some(f) => (Some(f.text), f.id, f.args),
            None => (None, None, BTreeMap::new()),
        };
        self.record(StepResult {
            step: step.to_owned(),
            ok,
            elapsed_ms: start.elapsed().as_millis(),
            detail,
            fix,
            fix_id,
            fix_args,
            certificate,
        });
        ok
    }

    /// The last step, passed, with advice beside it.
    fn advise(&mut self, step: &str, detail: String, advice: Fix) {
        self.record(StepResult {
            step: step.to_owned(),
            ok: true,
            elapsed_ms: 0,
            detail,
            fix: Some(advice.text),
            fix_id: advice.id,
            fix_args: advice.args,
            certificate: None,
        });
    }

    fn record(&mut self, step: StepResult) {
        // Outside `observed` there is no hook: the check runs as before.
        let _ = PROGRESS.try_with(|hook| hook(&step));
        self.steps.push(step);
    }

    /// The first failed step, if any.
    pub fn failed_step(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| !s.ok)
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
            if let Some(c) = &s.certificate {
                let _ = writeln!(out, "    certificate: {c}");
            }
            if let Some(fix) = &s.fix {
                let label = if s.ok { "note" } else { "fix" };
                let _ = writeln!(out, "    {label}: {fix}");
            }
        }
        out
    }
}

/// What [`observed`] calls with each step as it finishes.
pub type ProgressHook = std::sync::Arc<dyn Fn(&StepResult) + Send + Sync>;

tokio::task_local! {
    static PROGRESS: ProgressHook;
}

/// Runs `check` (any of the checks of this module, e.g. [`receive_imap`], or a
/// function that runs one) and calls `on_step` with each step as soon as it
/// finishes, before the next one starts; the outcome is the same as without the hook. For live progress (the web
/// page's "Test receive", `mailbridge test` printing as it goes).
pub async fn observed<T, F: Future<Output = T>>(on_step: ProgressHook, check: F) -> T {
    PROGRESS.scope(on_step, check).await
}

/// How the check signs in.
#[expect(missing_debug_implementations, reason = "holds a closure and a secret")]
pub enum SignIn<F> {
    /// A token from `get`, of this grant, for the account's mailbox.
    Token { grant: Grant, get: F },
    /// A password (generic servers, on-premises).
    Password {
        user: String,
        password: SecretString,
    },
}

/// Why the "get token" step failed: what the identity platform said and the fix from
/// the AADSTS catalogue (`mailbridge_auth::diagnosis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFailure {
    pub detail: String,
    pub fix: Option<Fix>,
}

/// The first `AADSTSnnnn` in a text.
fn aadsts_code(text: &str) -> Option<u32> {
    let at = text.find("AADSTS")?;
    let digits: String = text
        .get(at + "AADSTS".len()..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The catalogue's cause and fix for `code`, with the code as the id.
fn catalogue_fix(code: u32) -> Option<Fix> {
    mailbridge_auth::diagnosis::lookup(code)
        .map(|e| Fix::new(format!("aadsts-{code}"), format!("{}: {}", e.cause, e.fix)))
}

impl From<String> for TokenFailure {
    /// A failure known only by its text: the AADSTS code in it, if any, picks the fix.
    fn from(detail: String) -> Self {
        let fix = aadsts_code(&detail).and_then(catalogue_fix);
        Self { detail, fix }
    }
}

impl From<&str> for TokenFailure {
    fn from(detail: &str) -> Self {
        Self::from(detail.to_owned())
    }
}

impl From<AuthError> for TokenFailure {
    fn from(e: AuthError) -> Self {
        Self::from(&e)
    }
}

impl From<&AuthError> for TokenFailure {
    fn from(e: &AuthError) -> Self {
        if let AuthError::Identity(f) = e {
            let d = &f.diagnosis;
            let mut text = format!("{}: {}", d.cause, d.fix);
            if f.error.claims.is_some() {
                text.push_str(
                    " (the answer carries a claims challenge: the next interactive sign-in must pass it, which `mailbridge auth login` does)",
                );
            }
            // A code the catalogue lacks: the identity platform's OAuth error names it.
            let mut fix = match d
                .code
                .filter(|c| mailbridge_auth::diagnosis::lookup(*c).is_some())
            {
                Some(code) => Fix::new(format!("aadsts-{code}"), text),
                None => Fix::new("aadsts-unknown", text).arg("error", f.error.error.clone()),
            };
            if f.error.claims.is_some() {
                fix = fix.arg("claims", "challenge");
            }
            return Self {
                detail: format!(
                    "the sign-in service answered HTTP {} {}: {}",
                    f.status, f.error.error, f.error.message
                ),
                fix: Some(fix),
            };
        }
        let detail = mailbridge_types::error_chain(e);
        let fix = match e {
            AuthError::Certificate { .. } => Some(Fix::new(
                "token-certificate",
                "add the sign-in service's CA as the app's extra_ca_file (certificate checks stay on)",
            )),
            AuthError::Http { .. } => Some(Fix::new(
                "token-unreachable",
                "check that this machine reaches the sign-in host (DNS, proxy, firewall) and that the app's authority_host is right",
            )),
            AuthError::Status { .. } | AuthError::Protocol(_) | AuthError::TooLarge { .. } => {
                Some(Fix::new(
                    "token-not-identity-platform",
                    "the sign-in host did not answer as Microsoft's identity platform does: check the app's authority_host and cloud",
                ))
            }
            AuthError::Credential(_) => Some(Fix::new(
                "token-credential",
                "fix the app's credential: `mailbridge secrets set-app-secret <app>` with the secret's Value (App registrations -> Certificates & secrets), or the certificate and key files",
            )),
            AuthError::Authority(_) => Some(Fix::new(
                "token-authority",
                "set the app's tenant to the Directory (tenant) ID from App registrations -> Overview, or a verified domain",
            )),
            AuthError::Interaction(_) => Some(Fix::new(
                "token-sign-in-again",
                "sign in again: `mailbridge auth login <account>`",
            )),
            _ => aadsts_code(&detail).and_then(catalogue_fix),
        };
        Self { detail, fix }
    }
}

async fn resolve(report: &mut Report, host: &str, port: u16) -> bool {
    let start = Instant::now();
    let result = match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Ok(format!("{host} -> {}", a.ip())),
            None => Err((
                format!("{host} has no address"),
                Some(Fix::new("resolve-no-address", "check the host name")),
            )),
        },
        Err(e) => Err((
            format!("{host} could not be resolved: {e}"),
            Some(Fix::new(
                "resolve-failed",
                "check the host name and the DNS of this machine",
            )),
        )),
    };
    report.push("resolve", start, result)
}

/// Where a check connects and as whom: the endpoint, the account's identity, and the
/// side of the account (for the commands in fixes).
struct Target<'a> {
    endpoint: &'a EndpointConfig,
    who: &'a Identity,
    side: Side,
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
async fn obtain<F, Fut, E>(report: &mut Report, sign_in: SignIn<F>) -> Option<Obtained>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    match sign_in {
        SignIn::Token { grant, get } => {
            let start = Instant::now();
            match get().await {
                Ok(token) => {
                    report.push(
                        "get token",
                        start,
                        Ok(diagnose::describe_token(&token, grant)),
                    );
                    Some(Obtained::Token { token, grant })
                }
                Err(e) => {
                    let f: TokenFailure = e.into();
                    report.push("get token", start, Err((f.detail, f.fix)));
                    None
                }
            }
        }
        SignIn::Password { user, password } => Some(Obtained::Password { user, password }),
    }
}

/// A refusal's detail, naming the login when a password was refused (the server's
/// own words do not say which login it was given).
fn refused_login(password_login: Option<&str>, detail: String) -> String {
    match password_login {
        Some(login) => format!("the password sign-in as {login} was refused; {detail}"),
        None => detail,
    }
}

/// The test message `mailbridge test send` sends.
fn test_message(from: &str, to: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: mailbridge test message\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThis message was sent by `mailbridge test send` to check the account's outgoing side.\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id written in the checks' sources (and the token problems') is listed in
    /// [`FIX_IDS`], and every listed id is written somewhere: the pages' messages follow
    /// the list.
    #[test]
    fn every_fix_id_in_the_sources_is_listed() {
        // This file without the list itself and without these tests.
        let this = include_str!("mod.rs");
        let list_start = this.find("pub const FIX_IDS").unwrap();
        let list_end = list_start + this[list_start..].find("];").unwrap();
        let this = format!(
            "{}{}",
            &this[..list_start],
            &this[list_end..this.find("#[cfg(test)]").unwrap()]
        );
        let sources = [
            this.as_str(),
            include_str!("diagnose.rs"),
            include_str!("tls.rs"),
            include_str!("steps.rs"),
            include_str!("imap.rs"),
            include_str!("pop3.rs"),
            include_str!("smtp.rs"),
            include_str!("graph.rs"),
            include_str!("ews.rs"),
            include_str!("../../../mailbridge-auth/src/claims.rs"),
        ]
        .join("\n");
        let mut written = std::collections::BTreeSet::new();
        for (i, _) in sources.match_indices("Fix::new(") {
            let rest = sources[i + "Fix::new(".len()..].trim_start();
            if let Some(lit) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                written.insert(lit.to_owned());
            }
        }
        // Ids picked before `Fix::new` (the token problems', the server replies'
        // meanings, Graph's role and policy variants).
        for prefix in ["token-", "graph-", "imap-", "pop3-", "smtp-"] {
            for rest in sources.split(&format!("\"{prefix}")).skip(1) {
                let id = rest.split('"').next().unwrap_or_default();
                written.insert(format!("{prefix}{id}"));
            }
        }
        for kind in ["password", "app-only", "delegated", "other-user"] {
            assert!(sources.contains(&format!("\"mail-refused-{kind}-{{protocol}}\"")));
            for protocol in ["imap", "pop3", "smtp"] {
                written.insert(format!("mail-refused-{kind}-{protocol}"));
            }
        }
        written.remove("aadsts-unknown");
        let listed: std::collections::BTreeSet<String> =
            FIX_IDS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(written, listed);
    }

    #[test]
    fn token_failures_known_by_text_get_the_catalogue_fix() {
        let f = TokenFailure::from(
            "the sign-in service answered HTTP 401: AADSTS7000215: Invalid client secret provided.",
        );
        let fix = f.fix.clone().unwrap();
        assert!(fix.text.contains("not its Secret ID"), "{f:?}");
        assert_eq!(fix.id.as_deref(), Some("aadsts-7000215"));
        assert_eq!(TokenFailure::from("no AADSTS here").fix, None);
        assert_eq!(aadsts_code("xAADSTS"), None);
    }

    /// A scripted IMAP server that greets, answers CAPABILITY, and holds LOGIN until
    /// `release` fires, then refuses it.
    async fn stalling_imap(release: tokio::sync::oneshot::Receiver<()>) -> std::net::SocketAddr {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            write.write_all(b"* OK IMAP4rev1 ready\r\n").await.unwrap();
            let mut lines = BufReader::new(read).lines();
            let mut release = Some(release);
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.split(' ');
                let tag = words.next().unwrap_or("*").to_owned();
                let command = words.next().unwrap_or_default().to_ascii_uppercase();
                let answer = match command.as_str() {
                    "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
                    "LOGOUT" => format!("* BYE\r\n{tag} OK bye\r\n"),
                    _ => {
                        if let Some(r) = release.take() {
                            let _ = r.await;
                        }
                        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                    }
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_hook_hears_each_step_as_it_finishes() {
        let (release, held) = tokio::sync::oneshot::channel();
        let addr = stalling_imap(held).await;
        let endpoint = EndpointConfig {
            transport: mailbridge_types::config::Transport::Imap,
            host: "127.0.0.1".to_owned(),
            port: Some(addr.port()),
            tls: Some(mailbridge_types::config::TlsMode::None),
            tls_name: None,
            extra_ca_file: None,
            tls_pin: None,
        };
        let who = Identity {
            account: "helpdesk".to_owned(),
            address: "alice@contoso.example".to_owned(),
            login: "alice".to_owned(),
            graph_user: "alice@contoso.example".to_owned(),
        };
        let sign_in =
            SignIn::<fn() -> std::future::Ready<Result<SecretString, String>>>::Password {
                user: "alice".to_owned(),
                password: SecretString::from("pw".to_owned()),
            };
        let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
        let hook: ProgressHook = std::sync::Arc::new(move |s: &StepResult| {
            let _ = heard.send((s.step.clone(), s.ok));
        });
        let check =
            tokio::spawn(
                async move { observed(hook, receive_imap(&endpoint, &who, sign_in)).await },
            );
        // The first steps arrive while the server still holds LOGIN.
        assert_eq!(hearing.recv().await, Some(("resolve".to_owned(), true)));
        assert_eq!(hearing.recv().await, Some(("connect+TLS".to_owned(), true)));
        assert!(!check.is_finished(), "the check waits for the held LOGIN");
        release.send(()).unwrap();
        let report = check.await.unwrap();
        assert_eq!(
            hearing.recv().await,
            Some(("authenticate".to_owned(), false))
        );
        assert_eq!(hearing.recv().await, None, "no step is told twice");
        let names: Vec<_> = report.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(names, ["resolve", "connect+TLS", "authenticate"]);
        assert!(!report.ok);
        // Without the hook the check runs as before.
        assert!(PROGRESS.try_with(|_| ()).is_err());
    }
}
