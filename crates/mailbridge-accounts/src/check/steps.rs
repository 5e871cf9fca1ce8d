//! The steps the IMAP, POP3 and SMTP checks share, in one runner: resolve, read the
//! trust settings, connect + TLS, get the token, and the credentials for the
//! protocol's own "authenticate" step. Each protocol says what differs
//! ([`MailProtocol`]: its client, its errors, its credentials, its usual ports);
//! [`open`] runs the steps and records each in the report.

use std::future::Future;
use std::time::Instant;

use mailbridge_auth::scopes::Grant;
use mailbridge_tls::TlsSettings;
use mailbridge_types::config::{EndpointConfig, TlsMode};
use secrecy::SecretString;

use super::{
    Fix, Identity, Obtained, Report, Side, SignIn, Target, TokenFailure, obtain, resolve, tls,
};

/// What a mail protocol's check needs to know about the protocol.
pub(super) trait MailProtocol {
    /// A connected session.
    type Client;
    type Error: std::error::Error + 'static;
    /// What the client signs in with.
    type Credentials;
    /// The side of the account the protocol serves (for the commands in fixes).
    const SIDE: Side;
    /// The protocol's usual ports and TLS modes, for the connect step's fix.
    const PORTS: &'static str;

    /// Connects to `endpoint` (TLS as it says, trusting `trust`).
    async fn connect(
        endpoint: &EndpointConfig,
        trust: TlsSettings,
    ) -> Result<Self::Client, Self::Error>;
    /// The I/O error of a failed TLS handshake or greeting, if that is what failed.
    fn io_source(error: &Self::Error) -> Option<&std::io::Error>;
    /// How the session is secured.
    fn tls_mode(client: &Self::Client) -> TlsMode;
    /// XOAUTH2 as `user` with `token`.
    fn xoauth2(user: String, token: SecretString) -> Self::Credentials;
    /// A password sign-in (the protocol's usual mechanism).
    fn password(user: String, password: SecretString) -> Self::Credentials;
}

/// A session ready for the protocol's "authenticate" step.
pub(super) struct Opened<P: MailProtocol> {
    pub client: P::Client,
    pub credentials: P::Credentials,
    /// The token and its grant, when signing in with a token (read to explain a
    /// refusal).
    pub token: Option<(SecretString, Grant)>,
    /// The login, when signing in with a password (a refusal names it).
    pub password_login: Option<String>,
}

/// Runs resolve, connect + TLS and get token for `P` as `who` (XOAUTH2's `user=` is
/// its login, as in `fetch` and `send`); `None` when a step failed (it is recorded).
pub(super) async fn open<P, F, Fut, E>(
    report: &mut Report,
    endpoint: &EndpointConfig,
    who: &Identity,
    sign_in: SignIn<F>,
) -> Option<Opened<P>>
where
    P: MailProtocol,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let trust = prepare(report, endpoint).await?;
    let target = Target {
        endpoint,
        who,
        side: P::SIDE,
    };
    let client = connect_step(
        report,
        &target,
        P::connect(endpoint, trust),
        P::io_source,
        P::tls_mode,
        P::PORTS,
    )
    .await?;
    let (credentials, token, password_login) = match obtain(report, sign_in).await? {
        Obtained::Token { token, grant } => (
            P::xoauth2(who.login.clone(), token.clone()),
            Some((token, grant)),
            None,
        ),
        Obtained::Password { user, password } => {
            let login = user.clone();
            (P::password(user, password), None, Some(login))
        }
    };
    Some(Opened {
        client,
        credentials,
        token,
        password_login,
    })
}

/// The "connect+TLS" step of IMAP, POP3 and SMTP: runs `connecting`, records the
/// step (on failure the cause read from the typed errors, the certificate the server
/// presented, and the fix: CA file or pin, name, or the TLS mode with the protocol's
/// usual `ports`), and hands back the session.
async fn connect_step<C, E: std::error::Error + 'static>(
    report: &mut Report,
    target: &Target<'_>,
    connecting: impl Future<Output = Result<C, E>>,
    // The I/O error of a failed TLS handshake or greeting, if that is what failed.
    io_source: impl FnOnce(&E) -> Option<&std::io::Error>,
    tls_of: impl FnOnce(&C) -> TlsMode,
    ports: &str,
) -> Option<C> {
    let endpoint = target.endpoint;
    let start = Instant::now();
    match connecting.await {
        Ok(client) => {
            let auto = if endpoint.tls_mode() == TlsMode::Auto {
                ", chosen by tls = auto"
            } else {
                ""
            };
            let pinned = if endpoint.tls_pin.is_some() {
                ", certificate pinned"
            } else {
                ""
            };
            report.push(
                "connect+TLS",
                start,
                Ok(format!(
                    "{}:{} ({:?}{auto}{pinned})",
                    endpoint.host,
                    endpoint.port(),
                    tls_of(&client)
                )),
            );
            Some(client)
        }
        Err(e) => {
            let explained = tls::explain(io_source(&e), target.who, target.side, ports);
            let detail = match &explained.cause {
                Some(cause) => format!(
                    "TLS with {} failed: {cause}",
                    endpoint.tls_name.as_deref().unwrap_or(&endpoint.host)
                ),
                None => mailbridge_types::error_chain(&e),
            };
            report.push_presented(
                "connect+TLS",
                start,
                Err((detail, Some(explained.fix))),
                explained.certificate,
            );
            None
        }
    }
}

/// Resolves the host and reads the trust settings; `None` (with the failed step
/// recorded) when either fails.
async fn prepare(report: &mut Report, endpoint: &EndpointConfig) -> Option<TlsSettings> {
    if !resolve(report, &endpoint.host, endpoint.port()).await {
        return None;
    }
    let start = Instant::now();
    match mailbridge_mailbox::connect::trust(endpoint) {
        Ok(settings) => Some(settings),
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
            None
        }
    }
}
