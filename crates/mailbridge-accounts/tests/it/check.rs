//! "Test receive" and "test send" against real Dovecot/Postfix and the emulated
//! tenant: every step reported, and the §8.2 mistakes named with their fix.

use mailbridge_accounts::check::{Identity, Report, SignIn, receive_imap, send_smtp};
use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::scopes::{Grant, Transport as AuthTransport, scopes_for};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const SECRET: &str = "connector-secret-value";

struct World {
    server: EmulatorServer,
    mail: MailServers,
    app: AppRegistration,
    ca_file: tempfile_path::Path,
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct Path(pub std::path::PathBuf);
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn world(adjust: impl FnOnce(&mut Tenant, &AppRegistration)) -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Firewall connector")
        .with_secret(SECRET, year)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        );
    adjust(&mut tenant, &app);
    let model = TenantModel::builder().tenant(tenant).build().unwrap();
    let emulator = Emulator::new(model).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let ca_file = tempfile_path::Path(
        std::env::temp_dir().join(format!("mb-ca-{}.pem", mail.imaps().port())),
    );
    std::fs::write(&ca_file.0, mail.ca_pem()).unwrap();
    World {
        server,
        mail,
        app,
        ca_file,
    }
}

impl World {
    fn endpoint(&self, transport: Transport) -> EndpointConfig {
        let (addr, tls) = match transport {
            Transport::Imap => (self.mail.imaps(), TlsMode::Implicit),
            _ => (self.mail.submission(), TlsMode::StartTls),
        };
        EndpointConfig {
            transport,
            host: addr.ip().to_string(),
            port: Some(addr.port()),
            tls: Some(tls),
            tls_name: Some(self.mail.tls_name().to_owned()),
            extra_ca_file: Some(self.ca_file.0.clone()),
            tls_pin: None,
        }
    }

    /// The real path: a client-credentials token from the identity platform.
    fn token_getter(
        &self,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<SecretString, String>> + Send>,
    > {
        let base = self.server.base_url();
        let client_id = self.app.client_id.to_string();
        move || {
            Box::pin(async move {
                let client =
                    TokenClient::new(&HttpOptions::default()).map_err(|e| e.to_string())?;
                let app = App {
                    client_id,
                    credential: ClientCredential::Secret(SecretString::from(SECRET)),
                };
                let authority =
                    Authority::new(&base, TenantSegment::parse("contoso.example").unwrap())
                        .unwrap();
                client
                    .client_credentials(
                        &app,
                        &authority,
                        &scopes_for(
                            AuthTransport::Imap,
                            Grant::AppOnly,
                            "https://graph.microsoft.com",
                        ),
                    )
                    .await
                    .map(|t| t.access_token)
                    .map_err(|e| e.to_string())
            })
        }
    }

    async fn receive(&self) -> Report {
        receive_imap(
            &self.endpoint(Transport::Imap),
            &Identity::address(ALICE),
            SignIn::Token {
                grant: Grant::AppOnly,
                get: self.token_getter(),
            },
        )
        .await
    }

    async fn send(&self) -> Report {
        send_smtp(
            &self.endpoint(Transport::Smtp),
            &Identity::address(ALICE),
            BOB,
            SignIn::Token {
                grant: Grant::AppOnly,
                get: self.token_getter(),
            },
        )
        .await
    }
}

fn failed_step(report: &Report) -> &mailbridge_accounts::check::StepResult {
    report
        .steps
        .iter()
        .find(|s| !s.ok)
        .unwrap_or_else(|| panic!("no failed step:\n{}", report.render()))
}

#[tokio::test]
async fn receive_and_send_pass_every_step_when_the_setup_is_right() {
    let w = world(|_, _| {}).await;
    let r = w.receive().await;
    assert!(r.ok, "{}", r.render());
    let names: Vec<&str> = r.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        [
            "resolve",
            "connect+TLS",
            "get token",
            "authenticate",
            "open inbox"
        ]
    );
    assert!(r.render().starts_with("✓ resolve"));
    let s = w.send().await;
    assert!(s.ok, "{}", s.render());
    assert!(
        s.steps.last().unwrap().detail.contains(": 250"),
        "{}",
        s.render()
    );
}

#[tokio::test]
async fn missing_admin_consent_is_named_from_the_token() {
    let w = world(|t, _| t.apps[0].admin_consent_granted = false).await;
    let r = w.receive().await;
    assert!(!r.ok);
    let step = failed_step(&r);
    assert_eq!(step.step, "authenticate");
    let fix = step.fix.as_deref().unwrap();
    assert!(
        fix.contains("carries no roles") && fix.contains("Grant admin consent"),
        "{fix}"
    );
}

#[tokio::test]
async fn service_principal_with_the_app_registrations_object_id_is_named() {
    let w = world(|t, app| {
        t.exchange_service_principals[0].object_id = app.object_id;
    })
    .await;
    let r = w.receive().await;
    let step = failed_step(&r);
    assert_eq!(step.step, "authenticate");
    let fix = step.fix.as_deref().unwrap();
    assert!(
        fix.contains("Enterprise applications, not from App registrations"),
        "{fix}"
    );
    assert!(
        step.detail.contains("AUTHENTICATE failed"),
        "{}",
        step.detail
    );
}

#[tokio::test]
async fn smtp_auth_disabled_for_the_tenant_is_named() {
    let w = world(|t, _| t.smtp_auth_disabled = true).await;
    let s = w.send().await;
    let step = failed_step(&s);
    assert_eq!(step.step, "authenticate");
    assert!(
        step.fix.as_deref().unwrap().contains("Set-TransportConfig"),
        "{}",
        s.render()
    );
}

#[tokio::test]
async fn untrusted_certificate_stops_at_connect() {
    let w = world(|_, _| {}).await;
    let mut endpoint = w.endpoint(Transport::Imap);
    endpoint.extra_ca_file = None;
    let r = receive_imap(
        &endpoint,
        &Identity::address(ALICE),
        SignIn::Token {
            grant: Grant::AppOnly,
            get: w.token_getter(),
        },
    )
    .await;
    let step = failed_step(&r);
    assert_eq!(step.step, "connect+TLS");
    assert!(
        step.fix.as_deref().unwrap().contains("extra CA"),
        "{}",
        r.render()
    );
}
