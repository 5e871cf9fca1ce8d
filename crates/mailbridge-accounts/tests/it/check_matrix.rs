//! The admin-mistake matrix (`microsoft-protocols.md` §8.2) through "test receive" and
//! "test send": one test per row, each running every check the row applies to (IMAP,
//! POP3, Graph and EWS receive; SMTP, Graph and EWS send) against a fresh emulated
//! tenant with real Dovecot and Postfix, and asserting the step that fails and the
//! key words of the fix (and, where rows share the servers' words, what the fix must
//! not blame).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mailbridge_accounts::check::{
    Identity, Report, SignIn, TokenFailure, receive_ews, receive_graph, receive_imap, receive_pop3,
    send_ews, send_graph, send_smtp,
};
use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::{CertificateCredential, ClientCredential};
use mailbridge_auth::scopes::{Grant, Transport as AuthTransport, scopes_for};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    AccessPolicyMode, Api, AppRegistration, ApplicationAccessPolicy, MailboxRight, PermissionKind,
    Platform, Tenant, TenantModel, User,
};
use mailbridge_testkit::robot::Person;
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::clock::OffsetClock;
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const PASSWORD: &str = "Correct-Horse-1";
const SECRET: &str = "connector-secret-value";

/// A check of `mailbridge test receive|send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    ReceiveImap,
    ReceivePop3,
    ReceiveGraph,
    ReceiveEws,
    SendSmtp,
    SendGraph,
    SendEws,
}

use Check::{ReceiveEws, ReceiveGraph, ReceiveImap, ReceivePop3, SendEws, SendGraph, SendSmtp};

pub const ALL: [Check; 7] = [
    ReceiveImap,
    ReceivePop3,
    ReceiveGraph,
    ReceiveEws,
    SendSmtp,
    SendGraph,
    SendEws,
];

impl Check {
    pub fn transport(self) -> Transport {
        match self {
            ReceiveImap => Transport::Imap,
            ReceivePop3 => Transport::Pop3,
            ReceiveGraph | SendGraph => Transport::Graph,
            ReceiveEws | SendEws => Transport::Ews,
            SendSmtp => Transport::Smtp,
        }
    }

    /// The step where a server refuses this check's credentials.
    pub fn refusing_step(self) -> &'static str {
        match self {
            ReceiveImap | ReceivePop3 | SendSmtp => "authenticate",
            ReceiveGraph | ReceiveEws => "open inbox",
            SendGraph | SendEws => "send",
        }
    }
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<SecretString, TokenFailure>> + Send>>;
/// How a check gets its token.
pub type Getter = Box<dyn FnOnce() -> TokenFuture + Send>;

pub struct World {
    pub server: EmulatorServer,
    pub mail: MailServers,
    /// The daemon (app-only) app: every Exchange Online and Graph application
    /// permission, consented, registered in Exchange, FullAccess on alice.
    pub app: AppRegistration,
    /// A public desktop app for delegated sign-in.
    pub desktop: AppRegistration,
    pub clock: Arc<OffsetClock>,
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
}

pub async fn world(adjust: impl FnOnce(&mut Tenant, &AppRegistration)) -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let mut app = AppRegistration::new("Firewall connector").with_secret(SECRET, year);
    for role in [
        "IMAP.AccessAsApp",
        "POP.AccessAsApp",
        "SMTP.SendAsApp",
        "full_access_as_app",
    ] {
        app = app.with_permission(Api::ExchangeOnline, PermissionKind::Application, role);
    }
    for role in ["Mail.ReadWrite", "Mail.Send"] {
        app = app.with_permission(Api::Graph, PermissionKind::Application, role);
    }
    let app = app.consented();
    let mut desktop = AppRegistration::new("Mail connector")
        .public()
        .with_redirect(Platform::MobileDesktop, "http://localhost");
    for scope in [
        "IMAP.AccessAsUser.All",
        "POP.AccessAsUser.All",
        "SMTP.Send",
        "Mail.ReadWrite",
        "Mail.Send",
        "offline_access",
    ] {
        desktop = desktop.with_permission(Api::Graph, PermissionKind::Delegated, scope);
    }
    desktop = desktop.with_permission(
        Api::ExchangeOnline,
        PermissionKind::Delegated,
        "EWS.AccessAsUser.All",
    );
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
        .with_user(User::new(BOB, "Bob", PASSWORD))
        .with_app(app.clone())
        .with_app(desktop.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        );
    adjust(&mut tenant, &app);
    let mut model = TenantModel::builder().tenant(tenant).build().unwrap();
    model.knobs.device_code_interval_secs = 1;
    let clock = Arc::new(OffsetClock::new());
    let emulator = Emulator::with_clock(model, clock.clone()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, mail.ca_pem()).unwrap();
    World {
        server,
        mail,
        app,
        desktop,
        clock,
        _dir: dir,
        ca_file,
    }
}

/// A client-credentials request as the account would make it, with parts replaced to
/// make a mistake.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub client_id: Option<String>,
    pub secret: Option<String>,
    pub tenant: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub certificate: Option<(String, String)>,
    pub clock_offset: Option<time::Duration>,
}

impl World {
    pub fn endpoint(&self, transport: Transport) -> EndpointConfig {
        let base = self.server.base_url();
        let (host, port, tls) = match transport {
            Transport::Imap => (
                "127.0.0.1".to_owned(),
                Some(self.mail.imaps().port()),
                Some(TlsMode::Implicit),
            ),
            Transport::Pop3 => (
                "127.0.0.1".to_owned(),
                Some(self.mail.pop3s().port()),
                Some(TlsMode::Implicit),
            ),
            Transport::Smtp => (
                "127.0.0.1".to_owned(),
                Some(self.mail.submission().port()),
                Some(TlsMode::StartTls),
            ),
            Transport::Graph => (base, None, None),
            Transport::Ews => (format!("{base}/EWS/Exchange.asmx"), None, None),
        };
        let mail = matches!(
            transport,
            Transport::Imap | Transport::Pop3 | Transport::Smtp
        );
        EndpointConfig {
            transport,
            host,
            port,
            tls,
            tls_name: mail.then(|| self.mail.tls_name().to_owned()),
            extra_ca_file: mail.then(|| self.ca_file.clone()),
            tls_pin: None,
        }
    }

    /// Client credentials for `transport`, with `request`'s replacements.
    pub fn app_getter(&self, transport: Transport, request: Request) -> Getter {
        let base = self.server.base_url();
        let client_id = request
            .client_id
            .unwrap_or_else(|| self.app.client_id.to_string());
        let tenant = request.tenant.unwrap_or_else(|| "contoso.example".into());
        let scopes = request.scopes.unwrap_or_else(|| {
            scopes_for(transport, Grant::AppOnly, "https://graph.microsoft.com")
        });
        let credential = match (&request.certificate, request.secret) {
            (Some((cert, key)), _) => ClientCredential::Certificate(
                CertificateCredential::from_pem(cert, key, "app.crt", "app.key").unwrap(),
            ),
            (None, secret) => ClientCredential::Secret(SecretString::from(
                secret.unwrap_or_else(|| SECRET.into()),
            )),
        };
        let offset = request.clock_offset;
        Box::new(move || {
            Box::pin(async move {
                let clock = Arc::new(OffsetClock::new());
                if let Some(by) = offset {
                    clock.advance(by);
                }
                let client = TokenClient::with_clock(&HttpOptions::default(), clock)
                    .map_err(TokenFailure::from)?;
                let app = App {
                    client_id,
                    credential,
                };
                let authority = Authority::new(
                    &base,
                    TenantSegment::parse(&tenant).map_err(|e| TokenFailure::from(e.to_string()))?,
                )
                .map_err(|e| TokenFailure::from(e.to_string()))?;
                client
                    .client_credentials(&app, &authority, &scopes)
                    .await
                    .map(|t| t.access_token)
                    .map_err(TokenFailure::from)
            })
        })
    }

    /// A token minted by the emulator (the resource side's view of a mistake).
    pub fn fixed(token: String) -> Getter {
        Box::new(move || Box::pin(async move { Ok(SecretString::from(token)) }))
    }

    /// A delegated token of `upn` for the desktop app, as the identity platform
    /// would issue it for `transport`.
    pub fn user_getter(&self, upn: &str, transport: Transport) -> Getter {
        let (resource, scopes): (Resource, &[&str]) = match transport {
            Transport::Graph => (Resource::graph(), &["Mail.ReadWrite", "Mail.Send"]),
            Transport::Imap => (Resource::exchange(), &["IMAP.AccessAsUser.All"]),
            Transport::Pop3 => (Resource::exchange(), &["POP.AccessAsUser.All"]),
            Transport::Smtp => (Resource::exchange(), &["SMTP.Send"]),
            Transport::Ews => (Resource::exchange(), &["EWS.AccessAsUser.All"]),
        };
        Self::fixed(
            self.server
                .emulator
                .user_token(&self.desktop, upn, resource, scopes),
        )
    }

    /// Alice signs in to the desktop app with the device code (a person at the pages)
    /// and the refresh token comes back.
    pub async fn alice_refresh_token(&self) -> SecretString {
        let client = TokenClient::new(&HttpOptions::default()).unwrap();
        let app = self.desktop_app();
        let authority = self.authority();
        let scopes = scopes_for(
            AuthTransport::Imap,
            Grant::Delegated,
            "https://graph.microsoft.com",
        );
        let code = client
            .start_device_code(&app, &authority, &scopes)
            .await
            .unwrap();
        Person::new(ALICE, PASSWORD)
            .device_login(&code.verification_uri, &code.user_code)
            .await
            .unwrap();
        client
            .poll_device_code(&app, &authority, &code)
            .await
            .unwrap()
            .refresh_token
            .unwrap()
    }

    fn desktop_app(&self) -> App {
        App {
            client_id: self.desktop.client_id.to_string(),
            credential: ClientCredential::None,
        }
    }

    fn authority(&self) -> Authority {
        Authority::new(
            &self.server.base_url(),
            TenantSegment::parse("contoso.example").unwrap(),
        )
        .unwrap()
    }

    /// The refresh grant of the desktop app for IMAP.
    pub fn refresh_getter(&self, refresh_token: SecretString) -> Getter {
        let app = self.desktop_app();
        let authority = self.authority();
        Box::new(move || {
            Box::pin(async move {
                let client =
                    TokenClient::new(&HttpOptions::default()).map_err(TokenFailure::from)?;
                let scopes = scopes_for(
                    AuthTransport::Imap,
                    Grant::Delegated,
                    "https://graph.microsoft.com",
                );
                client
                    .refresh(&app, &authority, &refresh_token, &scopes)
                    .await
                    .map(|t| t.access_token)
                    .map_err(TokenFailure::from)
            })
        })
    }

    pub async fn run_with(&self, check: Check, grant: Grant, get: Getter) -> Report {
        let endpoint = self.endpoint(check.transport());
        let sign_in = SignIn::Token { grant, get };
        match check {
            ReceiveImap => receive_imap(&endpoint, &Identity::address(ALICE), sign_in).await,
            ReceivePop3 => receive_pop3(&endpoint, &Identity::address(ALICE), sign_in).await,
            ReceiveGraph => receive_graph(&endpoint, &Identity::address(ALICE), sign_in).await,
            ReceiveEws => receive_ews(&endpoint, &Identity::address(ALICE), sign_in).await,
            SendSmtp => send_smtp(&endpoint, &Identity::address(ALICE), BOB, sign_in).await,
            SendGraph => send_graph(&endpoint, &Identity::address(ALICE), BOB, sign_in).await,
            SendEws => send_ews(&endpoint, &Identity::address(ALICE), BOB, sign_in).await,
        }
    }

    /// The check with the account's own client-credentials sign-in.
    pub async fn run(&self, check: Check) -> Report {
        let get = self.app_getter(check.transport(), Request::default());
        self.run_with(check, Grant::AppOnly, get).await
    }

    /// Puts a message in alice's inbox.
    pub async fn deliver_to_alice(&self) {
        self.mail
            .mail_store()
            .append(
                ALICE,
                "INBOX",
                b"From: Bob <bob@contoso.example>\r\nTo: alice@contoso.example\r\nSubject: Invoice 4711\r\nMessage-ID: <4711@contoso.example>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n",
                false,
            )
            .await
            .unwrap();
    }
}

/// What a check must report.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Every step passes.
    Pass,
    /// `step` fails; its fix contains every word of `words` and none of `not`.
    /// `{app}`, `{sp}` and `{appobj}` stand for the daemon's client id, enterprise
    /// application object id and app registration object id.
    Fail {
        step: &'static str,
        words: &'static [&'static str],
        not: &'static [&'static str],
    },
    /// Fails at the step where the server refuses this check's credentials.
    Refused {
        words: &'static [&'static str],
        not: &'static [&'static str],
    },
}

pub fn assert_report(w: &World, check: Check, report: &Report, expect: Expect) {
    let fill = |s: &str| {
        s.replace("{app}", &w.app.client_id.to_string())
            .replace("{sp}", &w.app.service_principal_id.to_string())
            .replace("{appobj}", &w.app.object_id.to_string())
    };
    let (step, words, not) = match expect {
        Expect::Pass => {
            assert!(report.ok, "{check:?} should pass:\n{}", report.render());
            assert!(
                report.steps.iter().all(|s| s.ok),
                "{check:?}:\n{}",
                report.render()
            );
            return;
        }
        Expect::Fail { step, words, not } => (step, words, not),
        Expect::Refused { words, not } => (check.refusing_step(), words, not),
    };
    assert!(!report.ok, "{check:?} should fail:\n{}", report.render());
    let failed = report
        .failed_step()
        .unwrap_or_else(|| panic!("{check:?}: no failed step:\n{}", report.render()));
    assert_eq!(failed.step, step, "{check:?}:\n{}", report.render());
    assert_eq!(
        report.steps.last().map(|s| s.step.as_str()),
        Some(step),
        "{check:?}: the check goes on after a failed step:\n{}",
        report.render()
    );
    let fix = failed.fix.as_deref().unwrap_or_else(|| {
        panic!(
            "{check:?}: a failed step without a fix:\n{}",
            report.render()
        )
    });
    assert_ne!(
        fix, failed.detail,
        "{check:?}: the fix only repeats the server"
    );
    for word in words {
        assert!(
            fix.contains(&fill(word)),
            "{check:?}: fix lacks {word:?}:\n{}",
            report.render()
        );
    }
    for word in not {
        assert!(
            !fix.contains(&fill(word)),
            "{check:?}: fix wrongly has {word:?}:\n{}",
            report.render()
        );
    }
}

/// Runs every check of `expected` (app-only, the account's own sign-in).
async fn row(w: &World, expected: &[(Check, Expect)]) {
    for (check, expect) in expected {
        let report = w.run(*check).await;
        assert_report(w, *check, &report, *expect);
    }
}

fn pass(checks: &[Check]) -> Vec<(Check, Expect)> {
    checks.iter().map(|c| (*c, Expect::Pass)).collect()
}

/// Every check fails at the "get token" step with the catalogue's fix.
async fn token_row(w: &World, request: &Request, words: &'static [&'static str]) {
    for check in ALL {
        let get = w.app_getter(check.transport(), request.clone());
        let report = w.run_with(check, Grant::AppOnly, get).await;
        assert_report(
            w,
            check,
            &report,
            Expect::Fail {
                step: "get token",
                words,
                not: &[],
            },
        );
    }
}

// ----- rows answered by the token endpoint -----

#[tokio::test]
async fn wrong_client_id_is_named_at_get_token() {
    let w = world(|_, _| {}).await;
    let request = Request {
        client_id: Some(uuid::Uuid::new_v4().to_string()),
        ..Request::default()
    };
    token_row(&w, &request, &["Application (client) ID", "Overview"]).await;
    let step = w
        .run_with(
            ReceiveImap,
            Grant::AppOnly,
            w.app_getter(Transport::Imap, request),
        )
        .await;
    assert!(
        step.failed_step().unwrap().detail.contains("AADSTS700016"),
        "{}",
        step.render()
    );
}

#[tokio::test]
async fn secret_id_instead_of_value_is_named_at_get_token() {
    let w = world(|_, _| {}).await;
    let request = Request {
        secret: Some(w.app.secrets[0].id.to_string()),
        ..Request::default()
    };
    token_row(
        &w,
        &request,
        &["Certificates & secrets", "not its Secret ID"],
    )
    .await;
}

#[tokio::test]
async fn expired_secret_is_named_at_get_token() {
    let w = world(|t, _| {
        t.apps[0].secrets[0].expires = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    })
    .await;
    token_row(
        &w,
        &Request::default(),
        &["has expired", "New client secret"],
    )
    .await;
}

#[tokio::test]
async fn tenant_typo_is_named_at_get_token() {
    let w = world(|_, _| {}).await;
    let request = Request {
        tenant: Some("contoso.exmaple".into()),
        ..Request::default()
    };
    token_row(
        &w,
        &request,
        &["tenant was not found", "Directory (tenant) ID"],
    )
    .await;
}

#[tokio::test]
async fn permission_name_as_client_credentials_scope_is_named_at_get_token() {
    let w = world(|_, _| {}).await;
    for scope in [
        "https://outlook.office365.com/IMAP.AccessAsApp",
        "https://graph.microsoft.com/Mail.Read",
    ] {
        let request = Request {
            scopes: Some(vec![scope.into()]),
            ..Request::default()
        };
        token_row(&w, &request, &["/.default", "are not scopes there"]).await;
    }
}

#[tokio::test]
async fn graph_and_outlook_scopes_in_one_request_are_named_at_get_token() {
    let w = world(|_, _| {}).await;
    let request = Request {
        scopes: Some(vec![
            "https://graph.microsoft.com/.default".into(),
            "https://outlook.office365.com/.default".into(),
        ]),
        ..Request::default()
    };
    token_row(
        &w,
        &request,
        &["more than one resource", "separate token requests"],
    )
    .await;
}

#[tokio::test]
async fn conditional_access_block_is_named_at_get_token() {
    let w = world(|t, app| {
        t.conditional_access_blocked_apps
            .push(app.client_id.to_string());
    })
    .await;
    token_row(
        &w,
        &Request::default(),
        &["Conditional Access", "Sign-in logs"],
    )
    .await;
}

#[tokio::test]
async fn client_assertion_clock_skew_is_named_at_get_token() {
    let cert = mailbridge_testkit::crypto::CertificateCredential::generate("connector").unwrap();
    let pem = cert.certificate_pem.clone();
    let w = world(move |t, _| {
        t.apps[0]
            .certificates
            .push(mailbridge_testkit::model::AppCertificate {
                certificate_pem: pem,
                expires: time::OffsetDateTime::now_utc() + time::Duration::days(30),
            });
    })
    .await;
    // The certificate works with a right clock...
    let right = Request {
        certificate: Some((cert.certificate_pem.clone(), cert.key_pem.clone())),
        ..Request::default()
    };
    let report = w
        .run_with(
            ReceiveGraph,
            Grant::AppOnly,
            w.app_getter(Transport::Graph, right.clone()),
        )
        .await;
    assert!(report.ok, "{}", report.render());
    // ...and this machine's clock two hours behind is named.
    let skewed = Request {
        clock_offset: Some(time::Duration::hours(-2)),
        ..right
    };
    token_row(&w, &skewed, &["time range", "NTP"]).await;
}

#[tokio::test]
async fn delegated_consent_missing_and_mfa_newly_required_are_named_at_get_token() {
    let w = world(|_, _| {}).await;
    let rt = w.alice_refresh_token().await;
    let report = w
        .run_with(ReceiveImap, Grant::Delegated, w.refresh_getter(rt.clone()))
        .await;
    assert!(report.ok, "{}", report.render());

    // The user's consent is revoked: 65001.
    w.server
        .emulator
        .update(|m| m.tenants[0].user_consents.clear());
    let report = w
        .run_with(ReceiveImap, Grant::Delegated, w.refresh_getter(rt.clone()))
        .await;
    assert_report(
        &w,
        ReceiveImap,
        &report,
        Expect::Fail {
            step: "get token",
            words: &["not consented", "Grant admin consent"],
            not: &[],
        },
    );
    assert!(
        report.render().contains("AADSTS65001"),
        "{}",
        report.render()
    );

    // MFA newly required: 50076, with the claims challenge named.
    let rt = w.alice_refresh_token().await;
    w.server
        .emulator
        .update(|m| m.tenants[0].users[0].mfa_required = true);
    let report = w
        .run_with(ReceiveImap, Grant::Delegated, w.refresh_getter(rt.clone()))
        .await;
    assert_report(
        &w,
        ReceiveImap,
        &report,
        Expect::Fail {
            step: "get token",
            words: &[
                "multi-factor",
                "sign in again interactively",
                "claims challenge",
            ],
            not: &[],
        },
    );
}

// ----- rows answered by the mail servers, Graph and EWS -----

#[tokio::test]
async fn the_right_setup_passes_every_check_and_reads_a_header() {
    let w = world(|_, _| {}).await;
    w.deliver_to_alice().await;
    row(&w, &pass(&ALL)).await;
    for check in [ReceiveImap, ReceivePop3, ReceiveGraph, ReceiveEws] {
        let report = w.run(check).await;
        let last = report.steps.last().unwrap();
        assert_eq!(last.step, "read header", "{check:?}:\n{}", report.render());
        assert!(
            last.detail.contains("Subject: Invoice 4711"),
            "{check:?}:\n{}",
            report.render()
        );
    }
    // EWS reads the header fields, not the message's MIME.
    let get_items: Vec<String> = w
        .server
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.body.contains("GetItem>") || r.body.contains("<m:GetItem"))
        .map(|r| r.body)
        .collect();
    assert!(!get_items.is_empty());
    for body in &get_items {
        assert!(
            body.contains("item:InternetMessageHeaders") && !body.contains("IncludeMimeContent"),
            "{body}"
        );
    }
    let report = w.run(ReceiveGraph).await;
    let names: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        [
            "resolve",
            "connect+TLS",
            "get token",
            "open inbox",
            "read header"
        ]
    );
    assert!(
        report.steps[2].detail.contains("roles Mail.ReadWrite"),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn admin_consent_not_granted() {
    let w = world(|t, _| t.apps[0].admin_consent_granted = false).await;
    let mail = Expect::Refused {
        words: &[
            "carries no roles",
            "Grant admin consent",
            "Office 365 Exchange Online",
        ],
        not: &["New-ServicePrincipal"],
    };
    row(
        &w,
        &[
            (ReceiveImap, mail),
            (ReceivePop3, mail),
            (SendSmtp, mail),
            (
                ReceiveGraph,
                Expect::Refused {
                    words: &[
                        "carries no roles",
                        "Microsoft Graph",
                        "Mail.ReadWrite",
                        "Grant admin consent",
                    ],
                    not: &["access policy"],
                },
            ),
            (
                SendGraph,
                Expect::Refused {
                    words: &["carries no roles", "Mail.Send", "Grant admin consent"],
                    // Reading's permissions are not what sending lacks.
                    not: &["Mail.ReadWrite", "Mail.Read "],
                },
            ),
            (
                ReceiveEws,
                Expect::Refused {
                    words: &[
                        "carries no roles",
                        "full_access_as_app",
                        "Grant admin consent",
                    ],
                    not: &[],
                },
            ),
            (
                SendEws,
                Expect::Refused {
                    words: &["full_access_as_app", "Grant admin consent"],
                    not: &[],
                },
            ),
        ],
    )
    .await;
    // The role named is the transport's own.
    let r = w.run(ReceivePop3).await;
    assert!(
        r.failed_step()
            .unwrap()
            .fix
            .as_deref()
            .unwrap()
            .contains("POP.AccessAsApp"),
        "{}",
        r.render()
    );
    let r = w.run(SendSmtp).await;
    assert!(
        r.failed_step()
            .unwrap()
            .fix
            .as_deref()
            .unwrap()
            .contains("SMTP.SendAsApp"),
        "{}",
        r.render()
    );
    assert!(
        r.steps[2].detail.contains("with no roles"),
        "{}",
        r.render()
    );
}

#[tokio::test]
async fn permission_added_under_the_wrong_api() {
    // Microsoft Graph permissions only: Graph works, Exchange Online refuses.
    let w = world(|t, _| t.apps[0].permissions.retain(|p| p.api == Api::Graph)).await;
    let mut expected = vec![
        (
            ReceiveImap,
            Expect::Refused {
                words: &[
                    "Office 365 Exchange Online",
                    "IMAP.AccessAsApp",
                    "Grant admin consent",
                ],
                not: &["New-ServicePrincipal"],
            },
        ),
        (
            ReceivePop3,
            Expect::Refused {
                words: &["Office 365 Exchange Online", "POP.AccessAsApp"],
                not: &["New-ServicePrincipal"],
            },
        ),
        (
            SendSmtp,
            Expect::Refused {
                words: &["Office 365 Exchange Online", "SMTP.SendAsApp"],
                not: &["New-ServicePrincipal"],
            },
        ),
        (
            ReceiveEws,
            Expect::Refused {
                words: &["Office 365 Exchange Online", "full_access_as_app"],
                not: &[],
            },
        ),
        (
            SendEws,
            Expect::Refused {
                words: &["full_access_as_app"],
                not: &[],
            },
        ),
    ];
    expected.extend(pass(&[ReceiveGraph, SendGraph]));
    row(&w, &expected).await;
}

const EXCHANGE_SIDE_NOT: &[&str] = &["Grant admin consent", "carries no roles"];

#[tokio::test]
async fn new_service_principal_not_run() {
    let w = world(|t, _| t.exchange_service_principals.clear()).await;
    let mail = Expect::Refused {
        words: &[
            "New-ServicePrincipal -AppId {app} -ObjectId {sp}",
            "Enterprise applications",
        ],
        not: EXCHANGE_SIDE_NOT,
    };
    let mut expected = vec![(ReceiveImap, mail), (ReceivePop3, mail), (SendSmtp, mail)];
    // Graph and EWS (full_access_as_app) do not need it.
    expected.extend(pass(&[ReceiveGraph, SendGraph, ReceiveEws, SendEws]));
    row(&w, &expected).await;
}

#[tokio::test]
async fn new_service_principal_with_the_app_registrations_object_id() {
    let w = world(|t, app| t.exchange_service_principals[0].object_id = app.object_id).await;
    let mail = Expect::Refused {
        words: &[
            "New-ServicePrincipal -AppId {app} -ObjectId {sp}",
            "App registrations Object ID",
        ],
        not: &["-ObjectId {appobj}", "Grant admin consent"],
    };
    let mut expected = vec![(ReceiveImap, mail), (ReceivePop3, mail), (SendSmtp, mail)];
    expected.extend(pass(&[ReceiveGraph, SendGraph, ReceiveEws, SendEws]));
    row(&w, &expected).await;
}

#[tokio::test]
async fn no_full_access_on_the_mailbox() {
    let w = world(|t, _| t.mailbox_permissions.clear()).await;
    let mail = Expect::Refused {
        words: &[
            "Add-MailboxPermission -Identity alice@contoso.example -User {sp} -AccessRights FullAccess",
        ],
        not: EXCHANGE_SIDE_NOT,
    };
    let mut expected = vec![(ReceiveImap, mail), (ReceivePop3, mail), (SendSmtp, mail)];
    expected.extend(pass(&[ReceiveGraph, SendGraph, ReceiveEws, SendEws]));
    row(&w, &expected).await;
}

#[tokio::test]
async fn delegated_user_without_full_access_on_another_mailbox() {
    let w = world(|_, _| {}).await;
    for check in [ReceiveImap, ReceivePop3, SendSmtp] {
        let report = w
            .run_with(
                check,
                Grant::Delegated,
                w.user_getter(BOB, check.transport()),
            )
            .await;
        assert_report(
            &w,
            check,
            &report,
            Expect::Refused {
                words: &[
                    "bob@contoso.example signed in but the mailbox is alice@contoso.example",
                    "Add-MailboxPermission -Identity alice@contoso.example -User bob@contoso.example -AccessRights FullAccess",
                ],
                not: EXCHANGE_SIDE_NOT,
            },
        );
    }
    // Alice herself passes, Graph through /me.
    for check in ALL {
        let report = w
            .run_with(
                check,
                Grant::Delegated,
                w.user_getter(ALICE, check.transport()),
            )
            .await;
        assert_report(&w, check, &report, Expect::Pass);
    }
}

#[tokio::test]
async fn delegated_token_for_the_wrong_resource() {
    // A bare IMAP.AccessAsUser.All is read as a Graph scope: a Graph token at IMAP.
    let w = world(|_, _| {}).await;
    let token = w.server.emulator.user_token(
        &w.desktop,
        ALICE,
        Resource::graph(),
        &["IMAP.AccessAsUser.All"],
    );
    let report = w
        .run_with(ReceiveImap, Grant::Delegated, World::fixed(token))
        .await;
    assert_report(
        &w,
        ReceiveImap,
        &report,
        Expect::Refused {
            words: &[
                "needs an Exchange Online token",
                "bare IMAP.AccessAsUser.All is read as a Graph scope",
            ],
            not: EXCHANGE_SIDE_NOT,
        },
    );
}

#[tokio::test]
async fn smtp_auth_disabled_for_the_tenant_and_for_the_mailbox() {
    let w = world(|t, _| t.smtp_auth_disabled = true).await;
    let mut expected = vec![(
        SendSmtp,
        Expect::Refused {
            words: &["Set-TransportConfig"],
            not: EXCHANGE_SIDE_NOT,
        },
    )];
    expected.extend(pass(&[ReceiveImap, ReceivePop3, SendGraph, SendEws]));
    row(&w, &expected).await;
    let w = world(|t, _| t.users[0].mailbox.smtp_auth_disabled = Some(true)).await;
    row(
        &w,
        &[(
            SendSmtp,
            Expect::Refused {
                words: &["Set-CASMailbox", "SmtpClientAuthenticationDisabled"],
                not: EXCHANGE_SIDE_NOT,
            },
        )],
    )
    .await;
}

#[tokio::test]
async fn imap_disabled_on_the_mailbox() {
    let w = world(|t, _| t.users[0].mailbox.imap_enabled = false).await;
    let mut expected = vec![(
        ReceiveImap,
        Expect::Refused {
            words: &["Set-CASMailbox -Identity alice@contoso.example -ImapEnabled $true"],
            not: EXCHANGE_SIDE_NOT,
        },
    )];
    expected.extend(pass(&[ReceivePop3, SendSmtp, ReceiveGraph, ReceiveEws]));
    row(&w, &expected).await;
}

#[tokio::test]
async fn pop_disabled_on_the_mailbox() {
    let w = world(|t, _| t.users[0].mailbox.pop_enabled = false).await;
    let mut expected = vec![(
        ReceivePop3,
        Expect::Refused {
            words: &["Set-CASMailbox -Identity alice@contoso.example -PopEnabled $true"],
            not: EXCHANGE_SIDE_NOT,
        },
    )];
    expected.extend(pass(&[ReceiveImap, SendSmtp, ReceiveGraph, ReceiveEws]));
    row(&w, &expected).await;
}

#[tokio::test]
async fn access_policy_excludes_the_mailbox() {
    let w = world(|t, app| {
        t.access_policies.push(ApplicationAccessPolicy {
            app_id: app.client_id,
            mode: AccessPolicyMode::RestrictAccess,
            mailboxes: vec![BOB.to_owned()],
            added_at: None,
        });
    })
    .await;
    let graph = Expect::Refused {
        words: &[
            "application access policy",
            "Test-ApplicationAccessPolicy -Identity alice@contoso.example -AppId {app}",
            "it has the Mail role",
        ],
        not: &["Grant admin consent"],
    };
    let ews = Expect::Refused {
        words: &["Test-ApplicationAccessPolicy -Identity alice@contoso.example -AppId {app}"],
        not: &["Grant admin consent"],
    };
    let mut expected = vec![
        (ReceiveGraph, graph),
        (SendGraph, graph),
        (ReceiveEws, ews),
        (SendEws, ews),
    ];
    // IMAP, POP and SMTP are not governed by access policies.
    expected.extend(pass(&[ReceiveImap, ReceivePop3, SendSmtp]));
    row(&w, &expected).await;
}

#[tokio::test]
async fn unlicensed_mailbox() {
    let w = world(|t, _| t.users[0].mailbox.licensed = false).await;
    let licence = Expect::Refused {
        words: &["Exchange Online licence", "Licenses and apps"],
        not: &["Grant admin consent"],
    };
    row(
        &w,
        &[
            (ReceiveImap, licence),
            (ReceivePop3, licence),
            (SendSmtp, licence),
            (ReceiveGraph, licence),
            (SendGraph, licence),
            (ReceiveEws, licence),
            (SendEws, licence),
        ],
    )
    .await;
    let r = w.run(ReceiveGraph).await;
    assert!(
        r.failed_step()
            .unwrap()
            .detail
            .contains("MailboxNotEnabledForRESTAPI"),
        "{}",
        r.render()
    );
    let r = w.run(ReceiveEws).await;
    assert!(
        r.failed_step()
            .unwrap()
            .detail
            .contains("ErrorNonExistentMailbox"),
        "{}",
        r.render()
    );
}

#[tokio::test]
async fn exchange_change_not_yet_propagated() {
    let w = world(|t, _| {
        let now = time::OffsetDateTime::now_utc();
        t.exchange_service_principals[0].added_at = Some(now);
        t.mailbox_permissions[0].added_at = Some(now);
    })
    .await;
    w.server
        .emulator
        .update_knobs(|k| k.exchange_propagation_delay_secs = 1800);
    let mail = Expect::Refused {
        words: &["up to 30 minutes", "test again later"],
        not: EXCHANGE_SIDE_NOT,
    };
    let mut expected = vec![(ReceiveImap, mail), (ReceivePop3, mail), (SendSmtp, mail)];
    expected.extend(pass(&[ReceiveGraph, ReceiveEws]));
    row(&w, &expected).await;
    // Half an hour later the same checks pass.
    w.clock.advance(time::Duration::minutes(31));
    row(&w, &pass(&[ReceiveImap, ReceivePop3, SendSmtp])).await;
}

#[tokio::test]
async fn ews_turned_off_for_the_organisation_or_the_app_not_allowed() {
    let w = world(|t, _| t.ews.enabled = Some(false)).await;
    let ews = Expect::Refused {
        words: &[
            "Set-OrganizationConfig -EwsEnabled $true",
            "EwsAllowedAppIDs",
        ],
        not: &["Grant admin consent"],
    };
    let mut expected = vec![(ReceiveEws, ews), (SendEws, ews)];
    expected.extend(pass(&[ReceiveGraph, SendGraph]));
    row(&w, &expected).await;
}

// ----- password sign-in (generic and on-premises servers) -----

/// Password sign-in: no token getter runs.
type NoToken = fn() -> std::future::Ready<Result<SecretString, TokenFailure>>;

fn password(pw: &str) -> SignIn<NoToken> {
    SignIn::Password {
        user: ALICE.to_owned(),
        password: SecretString::from(pw.to_owned()),
    }
}

#[tokio::test]
async fn passwords_work_where_basic_is_allowed_and_are_named_where_not() {
    // Exchange Online: no Basic; the fix says OAuth.
    let w = world(|_, _| {}).await;
    let r = receive_ews(
        &w.endpoint(Transport::Ews),
        &Identity::address(ALICE),
        password(PASSWORD),
    )
    .await;
    assert_report(
        &w,
        ReceiveEws,
        &r,
        Expect::Refused {
            words: &["accepts only OAuth tokens"],
            not: &[],
        },
    );
    let r = receive_graph(
        &w.endpoint(Transport::Graph),
        &Identity::address(ALICE),
        password(PASSWORD),
    )
    .await;
    assert_report(
        &w,
        ReceiveGraph,
        &r,
        Expect::Fail {
            step: "authenticate",
            words: &["sign_in to app-only", "Grant admin consent"],
            not: &[],
        },
    );
    // An on-premises style tenant: the right password passes IMAP, POP3, SMTP and EWS;
    // a wrong one is refused at authenticate with the password named.
    let w = world(|t, _| t.basic_auth_enabled = true).await;
    w.deliver_to_alice().await;
    for r in [
        receive_imap(
            &w.endpoint(Transport::Imap),
            &Identity::address(ALICE),
            password(PASSWORD),
        )
        .await,
        receive_pop3(
            &w.endpoint(Transport::Pop3),
            &Identity::address(ALICE),
            password(PASSWORD),
        )
        .await,
        receive_ews(
            &w.endpoint(Transport::Ews),
            &Identity::address(ALICE),
            password(PASSWORD),
        )
        .await,
        send_smtp(
            &w.endpoint(Transport::Smtp),
            &Identity::address(ALICE),
            BOB,
            password(PASSWORD),
        )
        .await,
    ] {
        assert!(r.ok, "{}", r.render());
        assert!(
            !r.steps.iter().any(|s| s.step == "get token"),
            "{}",
            r.render()
        );
    }
    // A wrong password is refused at authenticate over IMAP, POP3 and SMTP: the
    // detail names the login that was refused, the fix gives password causes (app
    // password, Basic authentication off) and no app-only token advice.
    for r in [
        receive_imap(
            &w.endpoint(Transport::Imap),
            &Identity::address(ALICE),
            password("wrong"),
        )
        .await,
        receive_pop3(
            &w.endpoint(Transport::Pop3),
            &Identity::address(ALICE),
            password("wrong"),
        )
        .await,
        send_smtp(
            &w.endpoint(Transport::Smtp),
            &Identity::address(ALICE),
            BOB,
            password("wrong"),
        )
        .await,
    ] {
        let failed = r.failed_step().unwrap();
        assert_eq!(failed.step, "authenticate", "{}", r.render());
        assert!(
            failed
                .detail
                .contains(&format!("password sign-in as {ALICE} was refused")),
            "{}",
            r.render()
        );
        let fix = failed.fix.as_deref().unwrap();
        assert!(
            fix.contains("password") && fix.contains("app password"),
            "{}",
            r.render()
        );
        assert!(
            !fix.contains("New-ServicePrincipal") && !fix.contains("FullAccess"),
            "{}",
            r.render()
        );
    }
}
