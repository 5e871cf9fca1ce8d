//! A fresh emulated tenant with real Dovecot and Postfix for one test, and helpers to
//! mint tokens and talk the raw protocols.

use std::collections::BTreeSet;
use std::sync::Arc;

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::mailservers::wire::{self, LineClient, SmtpReply};
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::tokens::{Resource, Subject, TokenGrant};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::OffsetClock;

pub const ALICE: &str = "alice@contoso.example";
pub const BOB: &str = "bob@contoso.example";
pub const SHARED: &str = "shared@contoso.example";
pub const PASSWORD: &str = "Passw0rd!";
/// A personal Microsoft account (Outlook.com style), in the `consumers` directory.
pub const PERSONAL: &str = "pat@outlook.example";

/// One test's world: the emulator's HTTP server, the mail servers, the clock.
pub struct World {
    pub server: EmulatorServer,
    pub mail: MailServers,
    pub clock: Arc<OffsetClock>,
    pub app: AppRegistration,
}

/// The app every test uses: all three Exchange application roles, consented.
pub fn connector_app() -> AppRegistration {
    AppRegistration::new("Mail connector")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "POP.AccessAsApp",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .consented()
}

/// Contoso with alice, bob and a shared mailbox; the connector app registered in
/// Exchange correctly with FullAccess on alice.
pub fn contoso(app: &AppRegistration) -> Tenant {
    Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
        .with_user(User::new(BOB, "Bob", PASSWORD))
        .with_user(User::new(SHARED, "Shared", PASSWORD))
        .with_app(app.clone())
        .with_exchange_service_principal(app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        )
}

/// A world with the default tenant, changed by `adjust` before start.
pub async fn world_with(adjust: impl FnOnce(&mut Tenant, &AppRegistration)) -> World {
    build(adjust, false).await
}

/// A world with the default tenant and the personal-account directory (`PERSONAL`).
pub async fn world_with_personal() -> World {
    build(|_, _| {}, true).await
}

async fn build(adjust: impl FnOnce(&mut Tenant, &AppRegistration), personal: bool) -> World {
    let app = connector_app();
    let mut tenant = contoso(&app);
    adjust(&mut tenant, &app);
    let mut model = TenantModel::builder().tenant(tenant);
    if personal {
        let mut consumers = Tenant::personal_accounts("outlook.example");
        consumers.users.push(User::new(PERSONAL, "Pat", PASSWORD));
        model = model.tenant(consumers);
    }
    let model = model.build().unwrap();
    let clock = Arc::new(OffsetClock::new());
    let emulator = Emulator::with_clock(model, clock.clone()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ca = TestCa::generate().unwrap();
    let mail = MailServers::start(&emulator, &ca).await.unwrap();
    World {
        server,
        mail,
        clock,
        app,
    }
}

/// A world with the default tenant.
pub async fn world() -> World {
    world_with(|_, _| {}).await
}

impl World {
    pub fn emulator(&self) -> &Emulator {
        &self.server.emulator
    }

    fn grant(
        &self,
        resource: Resource,
        subject: Subject,
        roles: &[&str],
        scopes: &[&str],
    ) -> String {
        let emulator = self.emulator();
        let tenant_id = emulator.read(|m| m.tenants[0].id);
        let grant = TokenGrant {
            resource,
            tenant_id,
            app_id: self.app.client_id,
            app_display_name: self.app.display_name.clone(),
            client_auth: 1,
            subject,
            roles: roles
                .iter()
                .map(|r| (*r).to_owned())
                .collect::<BTreeSet<_>>(),
            scopes: scopes
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
            issued_at: emulator.clock().now().unix_timestamp(),
            lifetime_secs: 3599,
        };
        emulator.issue_access_token(&grant, false)
    }

    /// An app-only Exchange token (`https://outlook.office365.com/.default`) with `roles`.
    pub fn app_token(&self, roles: &[&str]) -> String {
        self.grant(
            Resource::exchange(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
            roles,
            &[],
        )
    }

    /// The app-only Exchange token the identity platform would issue for the connector
    /// app as the model stands: the app's Office 365 Exchange Online application
    /// permissions as `roles` when admin consent is granted, none otherwise.
    pub fn app_token_from_model(&self) -> String {
        let client_id = self.app.client_id.to_string();
        let roles: Vec<String> = self.emulator().read(|m| {
            let (_, app) = m.app(&client_id).unwrap();
            if app.admin_consent_granted {
                app.permissions_for(Api::ExchangeOnline, PermissionKind::Application)
                    .map(str::to_owned)
                    .collect()
            } else {
                Vec::new()
            }
        });
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        self.app_token(&roles)
    }

    /// An app-only token for Microsoft Graph with `roles`.
    pub fn graph_app_token(&self, roles: &[&str]) -> String {
        self.grant(
            Resource::graph(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
            roles,
            &[],
        )
    }

    /// A delegated Exchange token (`https://outlook.office.com/...`) for `upn`.
    pub fn user_token(&self, upn: &str, scopes: &[&str]) -> String {
        let (object_id, name) = self
            .emulator()
            .read(|m| {
                m.user(upn)
                    .map(|(_, u)| (u.object_id, u.display_name.clone()))
            })
            .unwrap();
        self.grant(
            Resource {
                api: Api::ExchangeOnline,
                uri: "https://outlook.office.com".to_owned(),
            },
            Subject::User {
                object_id,
                upn: upn.to_owned(),
                name,
            },
            &[],
            scopes,
        )
    }

    /// An opaque `EwB...` access token for a personal account, as Outlook.com issues.
    pub fn personal_token(&self, upn: &str, scopes: &[&str]) -> String {
        let emulator = self.emulator();
        let (tenant_id, object_id, name) = emulator
            .read(|m| {
                m.user(upn)
                    .map(|(t, u)| (t.id, u.object_id, u.display_name.clone()))
            })
            .unwrap();
        let grant = TokenGrant {
            resource: Resource {
                api: Api::ExchangeOnline,
                uri: "https://outlook.office.com".to_owned(),
            },
            tenant_id,
            app_id: self.app.client_id,
            app_display_name: self.app.display_name.clone(),
            client_auth: 0,
            subject: Subject::User {
                object_id,
                upn: upn.to_owned(),
                name,
            },
            roles: BTreeSet::new(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            issued_at: emulator.clock().now().unix_timestamp(),
            lifetime_secs: 3600,
        };
        emulator.issue_access_token(&grant, true)
    }

    /// An IMAP connection over implicit TLS, greeting read.
    pub async fn imaps(&self) -> LineClient {
        let mut c = LineClient::connect_tls(self.mail.imaps(), self.mail.tls_config(), "localhost")
            .await
            .unwrap();
        let greeting = c.read_line().await.unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    /// An IMAP connection on the plain port upgraded with STARTTLS.
    pub async fn imap_starttls(&self) -> LineClient {
        let mut c = LineClient::connect(self.mail.imap()).await.unwrap();
        let greeting = c.read_line().await.unwrap();
        assert!(greeting.contains("STARTTLS"), "{greeting}");
        let r = c.imap_command("s1", "STARTTLS").await.unwrap();
        assert!(r.last().unwrap().starts_with("s1 OK"), "{r:?}");
        c.upgrade_tls(self.mail.tls_config(), "localhost")
            .await
            .unwrap();
        c
    }

    /// A POP3 connection over implicit TLS, greeting read.
    pub async fn pop3s(&self) -> LineClient {
        let mut c = LineClient::connect_tls(self.mail.pop3s(), self.mail.tls_config(), "localhost")
            .await
            .unwrap();
        let greeting = c.read_line().await.unwrap();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        c
    }

    /// A POP3 connection on the plain port upgraded with STLS.
    pub async fn pop3_stls(&self) -> LineClient {
        let mut c = LineClient::connect(self.mail.pop3()).await.unwrap();
        let greeting = c.read_line().await.unwrap();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        assert_eq!(c.pop_command("STLS").await.unwrap().get(..3), Some("+OK"));
        c.upgrade_tls(self.mail.tls_config(), "localhost")
            .await
            .unwrap();
        c
    }

    /// An SMTP submission connection after EHLO, STARTTLS and EHLO again; the last EHLO reply.
    pub async fn submission(&self) -> (LineClient, SmtpReply) {
        let mut c = LineClient::connect(self.mail.submission()).await.unwrap();
        assert_eq!(c.read_smtp_reply().await.unwrap().code, 220);
        let ehlo = c.smtp_command("EHLO client.example").await.unwrap();
        assert!(ehlo.has_keyword("STARTTLS"), "{ehlo}");
        assert!(!ehlo.has_keyword("AUTH"), "AUTH offered before TLS: {ehlo}");
        assert_eq!(c.smtp_command("STARTTLS").await.unwrap().code, 220);
        c.upgrade_tls(self.mail.tls_config(), "localhost")
            .await
            .unwrap();
        let ehlo = c.smtp_command("EHLO client.example").await.unwrap();
        (c, ehlo)
    }

    /// The reasons the judge recorded, oldest first (`x-reason` of `<service>-judge`).
    pub fn judge_reasons(&self, service: &str) -> Vec<String> {
        let surface = format!("{service}-judge");
        self.emulator()
            .requests()
            .into_iter()
            .filter(|r| r.surface == surface)
            .map(|r| r.header("x-reason").unwrap_or_default().to_owned())
            .collect()
    }

    /// The last reason the judge recorded for `service`.
    pub fn last_reason(&self, service: &str) -> String {
        self.judge_reasons(service).pop().unwrap_or_default()
    }
}

/// `AUTHENTICATE XOAUTH2 <initial response>` (SASL-IR); the tagged reply line.
pub async fn imap_xoauth2(c: &mut LineClient, user: &str, token: &str) -> String {
    let r = c
        .imap_command(
            "a1",
            &format!("AUTHENTICATE XOAUTH2 {}", wire::xoauth2(user, token)),
        )
        .await
        .unwrap();
    r.last().unwrap().clone()
}

/// POP3 `AUTH XOAUTH2`, `+`, blob; the final status line.
pub async fn pop_xoauth2(c: &mut LineClient, user: &str, token: &str) -> String {
    let cont = c.pop_command("AUTH XOAUTH2").await.unwrap();
    assert!(cont.starts_with('+') && !cont.starts_with("+OK"), "{cont}");
    c.pop_command(&wire::xoauth2(user, token)).await.unwrap()
}

/// SMTP `AUTH XOAUTH2 <initial response>`; when the server answers with an error
/// challenge (334), the empty response is sent and the final reply returned.
pub async fn smtp_xoauth2(c: &mut LineClient, user: &str, token: &str) -> SmtpReply {
    let mut r = c
        .smtp_command(&format!("AUTH XOAUTH2 {}", wire::xoauth2(user, token)))
        .await
        .unwrap();
    if r.code == 334 {
        r = c.smtp_command("").await.unwrap();
    }
    r
}

/// A small message.
pub fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{}@test.example>\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from {from}.\r\n.leading dot line\r\n",
        uuid::Uuid::new_v4()
    )
    .into_bytes()
}
