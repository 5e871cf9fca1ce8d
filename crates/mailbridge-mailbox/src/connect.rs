//! Opening an account's incoming side: from its configuration and what it signs in
//! with to one [`AnyMailbox`], whatever the transport.

use std::sync::Arc;

use mailbridge_auth::source::TokenSource;
use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphMailbox};
use mailbridge_imap::{ImapClient, ImapConfig};
use mailbridge_pop3::Pop3Config;
use mailbridge_tls::TlsSettings;
use mailbridge_types::config::{AccountConfig, EndpointConfig, SignInMethod, Transport};
use secrecy::SecretString;
use tokio::io::AsyncWrite;

use crate::compose::Address;
use crate::send::{SenderSignIn, token_error};

use crate::mailbox::{
    Checkpoint, EwsMailbox, GraphMailboxAccess, ImapMailbox, Mailbox, MailboxError, MessageRef,
    NewMessages, Pop3Mailbox, Pop3SignIn,
};

/// The secret a sign-in produced (the grant is the account's).
enum Credential {
    Password {
        user: String,
        password: SecretString,
    },
    Token(Arc<dyn TokenSource>),
}

/// Any transport's mailbox.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyMailbox {
    Imap(ImapMailbox),
    Pop3(Pop3Mailbox),
    Graph(GraphMailboxAccess),
    Ews(EwsMailbox),
}

fn misconfigured(message: String) -> MailboxError {
    MailboxError::misconfigured(message)
}

/// The extra CA of an endpoint, read.
pub fn extra_ca_pem(endpoint: &EndpointConfig) -> Result<Option<String>, MailboxError> {
    endpoint
        .extra_ca_file
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|e| {
                misconfigured(format!(
                    "cannot read the extra CA file {}: {e}; fix extra_ca_file",
                    p.display()
                ))
            })
        })
        .transpose()
}

/// The pinned certificate of an endpoint (`tls_pin`), parsed.
pub fn tls_pin(endpoint: &EndpointConfig) -> Result<Option<mailbridge_tls::Pin>, MailboxError> {
    endpoint
        .tls_pin
        .as_deref()
        .map(|p| {
            mailbridge_tls::Pin::parse(p)
                .map_err(|e| misconfigured(format!("{e}; fix tls_pin of {}", endpoint.host)))
        })
        .transpose()
}

/// Trust settings of an endpoint: the system roots, its extra CA, its pinned
/// certificate, its certificate name.
pub fn trust(endpoint: &EndpointConfig) -> Result<TlsSettings, MailboxError> {
    Ok(TlsSettings {
        extra_ca_pem: extra_ca_pem(endpoint)?,
        server_name: endpoint.tls_name.clone(),
        pin: tls_pin(endpoint)?,
    })
}

/// The versioned Graph root of an endpoint (`https://graph.microsoft.com/v1.0`).
/// A bare host gets `https://`; a root without a version gets `/v1.0`.
pub fn graph_root(endpoint: &EndpointConfig) -> String {
    let host = endpoint.host.trim_end_matches('/');
    let host = if host.starts_with("http://") || host.starts_with("https://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    };
    if host.ends_with("/v1.0") || host.ends_with("/beta") {
        host
    } else {
        format!("{host}/v1.0")
    }
}

/// Who an account is on the wire, for every transport: the one answer that `fetch`,
/// `send` and `test receive|send` all use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account's name (for the commands in fixes).
    pub account: String,
    /// The mailbox address (EWS impersonation, the From of test messages).
    pub address: String,
    /// The login: the user of a password sign-in and XOAUTH2's `user=`
    /// ([`AccountConfig::login_name`]: the address, its mailbox name, or a manual one).
    pub login: String,
    /// Graph app-only: `/users/{graph_user}`, the Object ID when set, else the address.
    pub graph_user: String,
}

impl Identity {
    /// The identity of an account. Its `address` is the account's [`sender`].
    pub fn of(account: &AccountConfig) -> Self {
        Self {
            account: account.name.clone(),
            address: sender(account, None).address,
            login: account.login_name(),
            graph_user: account
                .mailbox_id
                .clone()
                .unwrap_or_else(|| account.address.clone()),
        }
    }

    /// A mailbox known only by its address: it is also the login, the Graph user and
    /// the account's name.
    pub fn address(address: &str) -> Self {
        Self {
            account: address.to_owned(),
            address: address.to_owned(),
            login: address.to_owned(),
            graph_user: address.to_owned(),
        }
    }

    /// The Graph mailbox: `/me` for a delegated token, else `/users/{graph_user}`.
    pub fn graph_mailbox(&self, delegated: bool) -> GraphMailbox {
        if delegated {
            GraphMailbox::Me
        } else {
            GraphMailbox::User(self.graph_user.clone())
        }
    }
}

/// The sender of what an account sends: the `From` of `mailbridge send`, of the
/// outbox's messages and of the checks' test messages (through [`Identity::address`]).
///
/// The rule: the send-as address when one is given (the account's address or another
/// it may send as: whether it may is the server's decision, and a refusal comes back
/// classified, SMTP `5.2.252`, Graph and EWS `ErrorSendAsDenied`); else the account's
/// mailbox address (`address`) with its display name (`display_name`, left out when
/// blank). Never the login (a mailbox-name or manual login is not an address) nor the
/// Graph Object ID (`mailbox_id`), which only say how the account signs in and which
/// mailbox Graph opens.
pub fn sender(account: &AccountConfig, send_as: Option<Address>) -> Address {
    send_as.unwrap_or_else(|| Address {
        address: account.address.clone(),
        name: account
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    })
}

/// The Graph mailbox of an account: `/me` when a user signs in, else the Object ID or
/// user principal name.
pub fn graph_mailbox(account: &AccountConfig) -> GraphMailbox {
    Identity::of(account).graph_mailbox(account.sign_in == SignInMethod::Delegated)
}

/// Connects to the account's incoming side and signs in (IMAP and POP3 sessions are
/// opened now; Graph and EWS are per request). `signed_in` is what the send API takes
/// too, so one sign-in serves both sides.
pub async fn open_incoming(
    account: &AccountConfig,
    signed_in: SenderSignIn,
) -> Result<AnyMailbox, MailboxError> {
    let signed_in = match signed_in {
        SenderSignIn::Password { user, password } => Credential::Password { user, password },
        SenderSignIn::AppOnly(token) | SenderSignIn::Delegated(token) => Credential::Token(token),
        SenderSignIn::None => {
            return Err(misconfigured(format!(
                "account {} has no sign-in: reading a mailbox needs a password or a token",
                account.name
            )));
        }
    };
    let Some(endpoint) = account.incoming_side() else {
        return Err(misconfigured(format!(
            "account {} has no incoming side (download is off or no server is set)",
            account.name
        )));
    };
    match endpoint.transport {
        Transport::Imap => {
            let mut config = ImapConfig::new(&endpoint.host, endpoint.port(), endpoint.tls_mode());
            config.trust = trust(endpoint)?;
            config.limits = account.limits;
            let mut client = ImapClient::connect(&config).await?;
            let credentials = match signed_in {
                Credential::Password { user, password } => {
                    mailbridge_imap::Credentials::Login { user, password }
                }
                Credential::Token(tokens) => mailbridge_imap::Credentials::XOAuth2 {
                    user: Identity::of(account).login,
                    token: tokens.token().await.map_err(|e| token_error(&e))?,
                },
            };
            client.authenticate(&credentials).await?;
            Ok(AnyMailbox::Imap(ImapMailbox::new(client)))
        }
        Transport::Pop3 => {
            let mut config = Pop3Config::new(&endpoint.host, endpoint.port(), endpoint.tls_mode());
            config.trust = trust(endpoint)?;
            config.limits = account.limits;
            let sign_in = match signed_in {
                Credential::Password { user, password } => Pop3SignIn::Password { user, password },
                Credential::Token(tokens) => Pop3SignIn::Token {
                    user: Identity::of(account).login,
                    tokens,
                },
            };
            let client = sign_in.open(&config).await?;
            Ok(AnyMailbox::Pop3(Pop3Mailbox::reopening(
                client, config, sign_in,
            )))
        }
        Transport::Graph => {
            let Credential::Token(token) = signed_in else {
                return Err(misconfigured(
                    "Microsoft Graph does not accept passwords: use delegated or app-only sign-in"
                        .into(),
                ));
            };
            let mut config = GraphConfig::new(&graph_root(endpoint));
            config.extra_ca_pem = extra_ca_pem(endpoint)?;
            config.tls_pin = tls_pin(endpoint)?;
            config.limits = account.limits;
            let client = GraphClient::new(config)?;
            Ok(AnyMailbox::Graph(GraphMailboxAccess::new(
                client,
                graph_mailbox(account),
                token,
            )))
        }
        Transport::Ews => {
            let mut config = mailbridge_ews::EwsConfig::new(&endpoint.host);
            config.extra_ca_pem = extra_ca_pem(endpoint)?;
            config.tls_pin = tls_pin(endpoint)?;
            config.limits = account.limits;
            let client = mailbridge_ews::EwsClient::new(config)?;
            let auth = match (signed_in, account.sign_in) {
                (Credential::Password { user, password }, _) => {
                    mailbridge_ews::EwsAuth::Basic { user, password }
                }
                (Credential::Token(token), SignInMethod::AppOnly) => {
                    mailbridge_ews::EwsAuth::AppOnly {
                        token,
                        mailbox: account.address.clone(),
                    }
                }
                (Credential::Token(token), _) => mailbridge_ews::EwsAuth::Bearer { token },
            };
            Ok(AnyMailbox::Ews(EwsMailbox::new(client, auth)))
        }
        Transport::Smtp => Err(misconfigured(format!(
            "account {}'s incoming side is SMTP, which cannot download mail: use IMAP, POP3, Graph or EWS",
            account.name
        ))),
    }
}

impl AnyMailbox {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            AnyMailbox::Imap(_) => Transport::Imap,
            AnyMailbox::Pop3(_) => Transport::Pop3,
            AnyMailbox::Graph(_) => Transport::Graph,
            AnyMailbox::Ews(_) => Transport::Ews,
        }
    }

    /// Ends the session where there is one (POP3 commits deletions on `QUIT`).
    pub async fn close(self) -> Result<(), MailboxError> {
        match self {
            AnyMailbox::Pop3(p) => p.close().await,
            _ => Ok(()),
        }
    }
}

impl Mailbox for AnyMailbox {
    async fn new_since(
        &mut self,
        folder: &str,
        checkpoint: &Checkpoint,
    ) -> Result<NewMessages, MailboxError> {
        match self {
            AnyMailbox::Imap(m) => m.new_since(folder, checkpoint).await,
            AnyMailbox::Pop3(m) => m.new_since(folder, checkpoint).await,
            AnyMailbox::Graph(m) => m.new_since(folder, checkpoint).await,
            AnyMailbox::Ews(m) => m.new_since(folder, checkpoint).await,
        }
    }

    async fn received_since(
        &mut self,
        folder: &str,
        since: time::OffsetDateTime,
    ) -> Result<NewMessages, MailboxError> {
        match self {
            AnyMailbox::Imap(m) => m.received_since(folder, since).await,
            AnyMailbox::Pop3(m) => m.received_since(folder, since).await,
            AnyMailbox::Graph(m) => m.received_since(folder, since).await,
            AnyMailbox::Ews(m) => m.received_since(folder, since).await,
        }
    }

    async fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> Result<u64, MailboxError> {
        match self {
            AnyMailbox::Imap(m) => m.fetch(message, sink).await,
            AnyMailbox::Pop3(m) => m.fetch(message, sink).await,
            AnyMailbox::Graph(m) => m.fetch(message, sink).await,
            AnyMailbox::Ews(m) => m.fetch(message, sink).await,
        }
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        match self {
            AnyMailbox::Imap(m) => m.mark_read(message).await,
            AnyMailbox::Pop3(m) => m.mark_read(message).await,
            AnyMailbox::Graph(m) => m.mark_read(message).await,
            AnyMailbox::Ews(m) => m.mark_read(message).await,
        }
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        match self {
            AnyMailbox::Imap(m) => m.move_to(message, folder).await,
            AnyMailbox::Pop3(m) => m.move_to(message, folder).await,
            AnyMailbox::Graph(m) => m.move_to(message, folder).await,
            AnyMailbox::Ews(m) => m.move_to(message, folder).await,
        }
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        match self {
            AnyMailbox::Imap(m) => m.delete(message).await,
            AnyMailbox::Pop3(m) => m.delete(message).await,
            AnyMailbox::Graph(m) => m.delete(message).await,
            AnyMailbox::Ews(m) => m.delete(message).await,
        }
    }
}

impl crate::download::FetchMany for AnyMailbox {
    async fn fetch_many<S: crate::download::MessageSinks + Send>(
        &mut self,
        folder: &str,
        messages: &[MessageRef],
        sinks: &mut S,
    ) -> Result<(), crate::download::FetchError<S::Error>> {
        match self {
            AnyMailbox::Imap(m) => m.fetch_many(folder, messages, sinks).await,
            AnyMailbox::Pop3(m) => m.fetch_many(folder, messages, sinks).await,
            AnyMailbox::Graph(m) => m.fetch_many(folder, messages, sinks).await,
            AnyMailbox::Ews(m) => m.fetch_many(folder, messages, sinks).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountConfig {
        serde_json::from_value(serde_json::json!({
            "name": "helpdesk",
            "address": "helpdesk@contoso.example",
            "display_name": "Contoso Helpdesk",
            "sign_in": "app-only",
            "app": "connector",
            "login_format": "mailbox-name",
            "mailbox_id": "6f0c2a1e-0000-4000-8000-000000000001",
        }))
        .unwrap()
    }

    #[test]
    fn the_sender_is_the_mailbox_address_with_its_display_name_never_the_login() {
        let a = account();
        // The login (mailbox-name) and the Graph Object ID differ from the address:
        // neither is the sender.
        assert_eq!(a.login_name(), "helpdesk");
        assert_eq!(
            sender(&a, None),
            Address::with_name("helpdesk@contoso.example", "Contoso Helpdesk")
        );
        // The checks' test messages go out from the same address.
        assert_eq!(Identity::of(&a).address, sender(&a, None).address);
        assert_eq!(Identity::of(&a).login, "helpdesk");
    }

    #[test]
    fn a_send_as_address_wins_and_a_blank_display_name_is_left_out() {
        let mut a = account();
        let send_as = Address::with_name("support@contoso.example", "Support");
        assert_eq!(sender(&a, Some(send_as.clone())), send_as);
        a.display_name = Some("  ".into());
        assert_eq!(sender(&a, None), Address::new("helpdesk@contoso.example"));
        a.display_name = None;
        assert_eq!(sender(&a, None), Address::new("helpdesk@contoso.example"));
    }

    #[test]
    fn graph_root_gets_a_scheme_and_a_version_only_when_missing() {
        let e = |host: &str| EndpointConfig {
            transport: Transport::Graph,
            host: host.to_owned(),
            port: None,
            tls: None,
            tls_name: None,
            extra_ca_file: None,
            tls_pin: None,
        };
        for (host, root) in [
            (
                "https://graph.microsoft.com",
                "https://graph.microsoft.com/v1.0",
            ),
            ("graph.microsoft.us", "https://graph.microsoft.us/v1.0"),
            ("http://127.0.0.1:8400/", "http://127.0.0.1:8400/v1.0"),
            (
                "https://graph.microsoft.com/beta",
                "https://graph.microsoft.com/beta",
            ),
            (
                "https://graph.microsoft.com/v1.0",
                "https://graph.microsoft.com/v1.0",
            ),
        ] {
            assert_eq!(graph_root(&e(host)), root, "{host}");
        }
    }
}
