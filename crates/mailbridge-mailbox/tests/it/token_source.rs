//! Graph and EWS mailboxes and senders over a token source, against the emulated
//! tenant with an injected clock: one long-lived object keeps working across token
//! expiry; a token refused before its time (the server's clock ahead of ours) costs
//! one token request and one retry, however many requests were refused together; a
//! token refused every time ends in the usual error after exactly one retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::scopes::{Grant, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions, StoreFailure, TokenStore};
use mailbridge_auth::source::{AccountTokens, TokenFuture, TokenSource, fixed};
use mailbridge_ews::{EwsAuth, EwsClient, EwsConfig};
use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphTarget};
use mailbridge_mailbox::compose::{Address, Message};
use mailbridge_mailbox::mailbox::{Checkpoint, EwsMailbox, GraphMailboxAccess, Mailbox as _};
use mailbridge_mailbox::send::{EwsSender, GraphSender, Outgoing, Sender as _, SmtpSender};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::config::Transport;
use mailbridge_types::{ErrorClass, OffsetClock};
use secrecy::{ExposeSecret as _, SecretString};

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const SECRET: &str = "Qx~8Q~connector.secret.value-1234567890";
const GRAPH: &str = "https://graph.microsoft.com";

struct World {
    server: EmulatorServer,
    emulator: Emulator,
    /// The tenant's clock (token lifetimes are judged by it).
    tenant_clock: Arc<OffsetClock>,
    /// Ours (the token cache's).
    our_clock: Arc<OffsetClock>,
    mail: MailServers,
    app: AppRegistration,
}

async fn world() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Connector")
        .with_secret(SECRET, year)
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.Send")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "full_access_as_app",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(ALICE, &sp, MailboxRight::FullAccess);
    let tenant_clock = Arc::new(OffsetClock::new());
    let emulator = Emulator::with_clock(
        TenantModel::builder().tenant(tenant).build().unwrap(),
        tenant_clock.clone(),
    )
    .unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let raw = format!("From: carol@example.org\r\nTo: {ALICE}\r\nSubject: hello\r\n\r\nhi\r\n");
    mail.mail_store()
        .deliver("carol@example.org", &[ALICE.to_owned()], raw.as_bytes())
        .await
        .unwrap();
    World {
        server,
        emulator,
        tenant_clock,
        our_clock: Arc::new(OffsetClock::new()),
        mail,
        app,
    }
}

/// App-only sign-in keeps no refresh token.
struct NoStore;

impl TokenStore for NoStore {
    async fn load_refresh_token(&self, _: &str) -> Result<Option<SecretString>, StoreFailure> {
        Ok(None)
    }
    async fn save_refresh_token(&self, _: &str, _: &SecretString) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn mark_needs_sign_in(&self, _: &str, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn mark_signed_in(&self, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
}

impl World {
    /// The account's tokens for `transport` through one set of sessions on our clock.
    fn tokens(
        &self,
        sessions: &Arc<Sessions<NoStore>>,
        transport: Transport,
    ) -> Arc<dyn TokenSource> {
        Arc::new(AccountTokens::new(
            sessions.clone(),
            AccountSignIn {
                account: "helpdesk".into(),
                app: App {
                    client_id: self.app.client_id.to_string(),
                    credential: ClientCredential::Secret(SecretString::from(SECRET)),
                },
                authority: Authority::new(
                    &self.server.base_url(),
                    TenantSegment::parse("contoso.example").unwrap(),
                )
                .unwrap(),
                scopes: scopes_for(transport, Grant::AppOnly, GRAPH),
                delegated: false,
            },
        ))
    }

    fn sessions(&self) -> Arc<Sessions<NoStore>> {
        Arc::new(Sessions::new(
            TokenClient::with_clock(&HttpOptions::default(), self.our_clock.clone()).unwrap(),
            Arc::new(NoStore),
            RetryPolicy::default(),
        ))
    }

    fn graph_client(&self) -> GraphClient {
        GraphClient::new(GraphConfig::new(&format!(
            "{}/v1.0",
            self.server.base_url()
        )))
        .unwrap()
    }

    fn ews_client(&self) -> EwsClient {
        EwsClient::new(EwsConfig::new(&format!(
            "{}/EWS/Exchange.asmx",
            self.server.base_url()
        )))
        .unwrap()
    }

    fn ews_auth(tokens: Arc<dyn TokenSource>) -> EwsAuth {
        EwsAuth::AppOnly {
            token: tokens,
            mailbox: ALICE.into(),
        }
    }

    fn token_requests(&self) -> usize {
        self.emulator.requests_to("/oauth2/v2.0/token").len()
    }

    /// Statuses of the requests whose path ends with `suffix`, oldest first.
    fn statuses(&self, suffix: &str) -> Vec<u16> {
        self.emulator
            .requests_to(suffix)
            .iter()
            .map(|r| r.status)
            .collect()
    }

    /// Both clocks on by `by`: tokens issued before have expired for everyone.
    fn time_passes(&self, by: time::Duration) {
        self.tenant_clock.advance(by);
        self.our_clock.advance(by);
    }
}

fn note(subject: &str) -> Message {
    let mut m = Message::new(Address::new(ALICE));
    m.to.push(Address::new(BOB));
    subject.clone_into(&mut m.subject);
    m.text = Some("status report\r\n".into());
    m
}

#[tokio::test]
async fn graph_and_ews_mailboxes_and_senders_outlive_their_first_token() {
    let w = world().await;
    let sessions = w.sessions();
    let graph_tokens = w.tokens(&sessions, Transport::Graph);
    let ews_tokens = w.tokens(&sessions, Transport::Ews);
    let mut graph = GraphMailboxAccess::new(
        w.graph_client(),
        GraphTarget::User(ALICE.into()),
        graph_tokens.clone(),
    );
    let mut ews = EwsMailbox::new(w.ews_client(), World::ews_auth(ews_tokens.clone()));
    let mut graph_sender = GraphSender::new(
        w.graph_client(),
        GraphTarget::User(ALICE.into()),
        graph_tokens.clone(),
    );
    let mut ews_sender = EwsSender::new(w.ews_client(), World::ews_auth(ews_tokens.clone()));
    // What mailbridge did before: one token, held. It is the control.
    let held = sessions_token(&graph_tokens).await;
    // Whatever holds a source never shows its token.
    for shown in [
        format!("{graph_tokens:?}"),
        format!("{graph:?}"),
        format!("{ews:?}"),
        format!("{graph_sender:?}"),
        format!("{ews_sender:?}"),
    ] {
        assert!(!shown.contains(held.expose_secret()), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
    let mut fixed_graph = GraphMailboxAccess::new(
        w.graph_client(),
        GraphTarget::User(ALICE.into()),
        fixed(held),
    );

    for round in 0..3 {
        let listed = graph.new_since("inbox", &Checkpoint::Start).await.unwrap();
        assert_eq!(listed.messages.len(), 1, "Graph, round {round}");
        let listed = ews.new_since("inbox", &Checkpoint::Start).await.unwrap();
        assert_eq!(listed.messages.len(), 1, "EWS, round {round}");
        graph_sender
            .send(Outgoing::Message(&note(&format!("graph {round}"))))
            .await
            .unwrap();
        ews_sender
            .send(Outgoing::Message(&note(&format!("ews {round}"))))
            .await
            .unwrap();
        // One Graph and one Exchange token per lifetime, shared by mailbox and sender.
        assert_eq!(w.token_requests(), 2 * (round + 1), "round {round}");
        // Past the emulator's 3599 s lifetime for both clocks.
        w.time_passes(time::Duration::minutes(61));
    }
    // No request was refused: each token was renewed before it expired.
    assert!(!w.statuses("/messages/delta").contains(&401));
    assert!(!w.statuses("/EWS/Exchange.asmx").contains(&401));
    // The held token is long expired: Graph refuses it, and that is "needs sign-in".
    let err = fixed_graph
        .new_since("inbox", &Checkpoint::Start)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::NeedsSignIn, "{}", err.detail());
}

async fn sessions_token(tokens: &Arc<dyn TokenSource>) -> SecretString {
    tokens.token().await.unwrap()
}

#[tokio::test]
async fn a_token_refused_before_its_time_is_replaced_once_and_the_request_retried() {
    let w = world().await;
    let sessions = w.sessions();
    let mut graph = GraphMailboxAccess::new(
        w.graph_client(),
        GraphTarget::User(ALICE.into()),
        w.tokens(&sessions, Transport::Graph),
    );
    let mut ews = EwsMailbox::new(
        w.ews_client(),
        World::ews_auth(w.tokens(&sessions, Transport::Ews)),
    );
    graph.new_since("inbox", &Checkpoint::Start).await.unwrap();
    ews.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(w.token_requests(), 2);
    // The tenant's clock runs an hour ahead of ours: our cached tokens look valid to
    // us and have expired for the servers.
    w.tenant_clock.advance(time::Duration::minutes(61));
    let graph_before = w.statuses("/messages/delta").len();
    let listed = graph.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(listed.messages.len(), 1);
    assert_eq!(
        w.statuses("/messages/delta")[graph_before..],
        [401, 200],
        "one refusal, one retry"
    );
    assert_eq!(w.token_requests(), 3, "one new Graph token");
    let ews_before = w.statuses("/EWS/Exchange.asmx").len();
    let listed = ews.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(listed.messages.len(), 1);
    assert_eq!(w.statuses("/EWS/Exchange.asmx")[ews_before..], [401, 200]);
    assert_eq!(w.token_requests(), 4, "one new Exchange token");
    // The new tokens stay in use.
    graph.new_since("inbox", &Checkpoint::Start).await.unwrap();
    ews.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(w.token_requests(), 4);
}

#[tokio::test]
async fn requests_refused_together_cost_one_token_request() {
    let w = world().await;
    let sessions = w.sessions();
    let tokens = w.tokens(&sessions, Transport::Graph);
    let client = w.graph_client();
    let alice = GraphTarget::User(ALICE.into());
    client
        .folder_counts(&tokens, &alice, "inbox")
        .await
        .unwrap();
    assert_eq!(w.token_requests(), 1);
    w.tenant_clock.advance(time::Duration::minutes(61));
    let before = w.statuses("/mailFolders/inbox").len();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, tokens, alice) = (client.clone(), tokens.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            client.folder_counts(&tokens, &alice, "inbox").await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(w.token_requests(), 2, "one new token for all eight");
    let statuses = &w.statuses("/mailFolders/inbox")[before..];
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 8);
    // Each request is retried at most once: at most one refusal per request.
    assert!(statuses.iter().filter(|s| **s == 401).count() <= 8);
    assert!(statuses.contains(&401), "{statuses:?}");
}

/// A source whose tokens every server refuses, counting what it is asked.
#[derive(Debug, Default)]
struct Refused {
    handed: AtomicU32,
    replaced: AtomicU32,
}

impl TokenSource for Refused {
    fn token(&self) -> TokenFuture<'_, SecretString> {
        let n = self.handed.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(SecretString::from(format!("not-a-token-{n}"))) })
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        _rejected: &'a SecretString,
    ) -> TokenFuture<'a, Option<SecretString>> {
        let n = self.replaced.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(Some(SecretString::from(format!("still-not-{n}")))) })
    }
}

#[tokio::test]
async fn a_token_refused_every_time_ends_in_the_usual_error_after_one_retry() {
    let w = world().await;
    // Graph: what a held token that Graph refuses gives...
    let mut held = GraphMailboxAccess::new(
        w.graph_client(),
        GraphTarget::User(ALICE.into()),
        fixed(SecretString::from("not-a-token")),
    );
    let expected = held
        .new_since("inbox", &Checkpoint::Start)
        .await
        .unwrap_err();
    assert_eq!(expected.class, ErrorClass::NeedsSignIn);
    assert_eq!(
        w.statuses("/messages/delta"),
        [401],
        "a fixed token is not retried"
    );
    // ...is what a source whose new token is refused too gives, after one retry.
    let source = Arc::new(Refused::default());
    let mut graph = GraphMailboxAccess::new(
        w.graph_client(),
        GraphTarget::User(ALICE.into()),
        source.clone(),
    );
    let err = graph
        .new_since("inbox", &Checkpoint::Start)
        .await
        .unwrap_err();
    assert_eq!(err.class, expected.class);
    assert_eq!(err.detail(), expected.detail());
    assert_eq!(w.statuses("/messages/delta"), [401, 401, 401]);
    assert_eq!(source.replaced.load(Ordering::SeqCst), 1);

    // EWS alike.
    let held = EwsMailbox::new(
        w.ews_client(),
        World::ews_auth(fixed(SecretString::from("not-a-token"))),
    );
    let expected = ews_error(held).await;
    assert_eq!(w.statuses("/EWS/Exchange.asmx"), [401]);
    let source = Arc::new(Refused::default());
    let err = ews_error(EwsMailbox::new(
        w.ews_client(),
        World::ews_auth(source.clone()),
    ))
    .await;
    assert_eq!(err, expected);
    assert_eq!(w.statuses("/EWS/Exchange.asmx"), [401, 401, 401]);
    assert_eq!(source.replaced.load(Ordering::SeqCst), 1);
    assert_eq!(w.token_requests(), 0);
}

async fn ews_error(mut ews: EwsMailbox) -> (ErrorClass, String) {
    let err = ews
        .new_since("inbox", &Checkpoint::Start)
        .await
        .unwrap_err();
    (err.class, err.detail())
}

#[tokio::test]
async fn an_smtp_sender_signs_in_with_a_token_current_at_connection_time() {
    let w = world().await;
    let sessions = w.sessions();
    let tokens = w.tokens(&sessions, Transport::Smtp);
    let addr = w.mail.submission();
    let mut config = mailbridge_smtp::SmtpConfig::new(
        &addr.ip().to_string(),
        addr.port(),
        mailbridge_smtp::TlsMode::StartTls,
    );
    config.trust = mailbridge_tls::TlsSettings {
        extra_ca_pem: Some(w.mail.ca_pem().to_owned()),
        server_name: Some(w.mail.tls_name().to_owned()),
        pin: None,
    };
    // The sender is made, and the account's token fetched, now...
    let held = tokens.token().await.unwrap();
    let mut sender = SmtpSender::with_tokens(config.clone(), ALICE.into(), tokens.clone());
    let mut held_sender = SmtpSender::new(
        config,
        Some(mailbridge_smtp::Credentials::XOAuth2 {
            user: ALICE.into(),
            token: held,
        }),
    );
    assert_eq!(w.token_requests(), 1);
    // ...and it connects an hour later, when that token has expired.
    w.time_passes(time::Duration::minutes(61));
    sender
        .send(Outgoing::Message(&note("over SMTP")))
        .await
        .unwrap();
    assert_eq!(w.token_requests(), 2, "a token current at connection time");
    // The token held since is refused (the control): Exchange's 535 5.7.3 does not
    // say "expired", so a held token would have read as a setup mistake.
    let err = held_sender
        .send(Outgoing::Message(&note("too late")))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Misconfigured, "{}", err.detail());
    assert!(
        err.detail().contains("refused the token"),
        "{}",
        err.detail()
    );
}
