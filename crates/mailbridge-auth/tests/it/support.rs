//! A fresh emulated tenant per test, an in-memory refresh-token store, and helpers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::session::{StoreFailure, TokenStore};
use mailbridge_testkit::crypto::CertificateCredential;
use mailbridge_testkit::model::{
    Api, AppRegistration, PermissionKind, Platform, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::OffsetClock;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

pub const PASSWORD: &str = "Correct-Horse-1";
pub const SECRET: &str = "Qx~8Q~daemon.secret.value-1234567890";

pub struct World {
    pub server: EmulatorServer,
    pub clock: Arc<OffsetClock>,
    pub desktop: AppRegistration,
    pub daemon: AppRegistration,
    pub certificate: CertificateCredential,
    pub tenant_id: String,
}

impl World {
    pub fn emulator(&self) -> &Emulator {
        &self.server.emulator
    }

    pub fn authority(&self, tenant: &str) -> Authority {
        Authority::new(
            &self.server.base_url(),
            TenantSegment::parse(tenant).unwrap(),
        )
        .unwrap()
    }

    pub fn client(&self) -> TokenClient {
        TokenClient::with_clock(&HttpOptions::default(), self.clock.clone()).unwrap()
    }

    pub fn daemon_app(&self, secret: &str) -> App {
        App {
            client_id: self.daemon.client_id.to_string(),
            credential: ClientCredential::Secret(SecretString::from(secret.to_owned())),
        }
    }

    pub fn desktop_app(&self) -> App {
        App {
            client_id: self.desktop.client_id.to_string(),
            credential: ClientCredential::None,
        }
    }

    pub fn token_requests(&self) -> usize {
        self.emulator().requests_to("/oauth2/v2.0/token").len()
    }
}

pub async fn world() -> World {
    world_with(|_| {}).await
}

pub async fn world_with(f: impl FnOnce(&mut TenantModel)) -> World {
    let certificate = CertificateCredential::generate("mailbridge daemon").unwrap();
    let year = OffsetDateTime::now_utc() + time::Duration::days(365);
    let desktop = AppRegistration::new("Document system")
        .public()
        .with_redirect(Platform::MobileDesktop, "http://localhost")
        .with_permission(
            Api::Graph,
            PermissionKind::Delegated,
            "IMAP.AccessAsUser.All",
        )
        .with_permission(Api::Graph, PermissionKind::Delegated, "SMTP.Send")
        .with_permission(Api::Graph, PermissionKind::Delegated, "Mail.ReadWrite")
        .with_permission(Api::Graph, PermissionKind::Delegated, "offline_access");
    let daemon = AppRegistration::new("Mail daemon")
        .with_secret(SECRET, year)
        .with_certificate(&certificate.certificate_pem, year)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
        .consented();
    let mut bob = User::new("bob@contoso.example", "Bob", PASSWORD);
    bob.mfa_required = true;
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new("alice@contoso.example", "Alice", PASSWORD))
        .with_user(bob)
        .with_app(desktop.clone())
        .with_app(daemon.clone());
    let tenant_id = tenant.id.to_string();
    let mut model = TenantModel::builder().tenant(tenant).build().unwrap();
    f(&mut model);
    let clock = Arc::new(OffsetClock::new());
    let emulator = Emulator::with_clock(model, clock.clone()).unwrap();
    let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    World {
        server,
        clock,
        desktop,
        daemon,
        certificate,
        tenant_id,
    }
}

/// Refresh tokens and sign-in state in memory.
#[derive(Default)]
pub struct MemoryStore {
    pub tokens: Mutex<HashMap<String, String>>,
    pub needs_sign_in: Mutex<HashMap<String, String>>,
    pub saves: Mutex<u32>,
}

impl TokenStore for MemoryStore {
    async fn load_refresh_token(
        &self,
        account: &str,
    ) -> Result<Option<SecretString>, StoreFailure> {
        Ok(self
            .tokens
            .lock()
            .unwrap()
            .get(account)
            .cloned()
            .map(SecretString::from))
    }
    async fn save_refresh_token(
        &self,
        account: &str,
        token: &SecretString,
    ) -> Result<(), StoreFailure> {
        *self.saves.lock().unwrap() += 1;
        self.tokens
            .lock()
            .unwrap()
            .insert(account.to_owned(), token.expose_secret().to_owned());
        Ok(())
    }
    async fn mark_needs_sign_in(&self, account: &str, reason: &str) -> Result<(), StoreFailure> {
        self.needs_sign_in
            .lock()
            .unwrap()
            .insert(account.to_owned(), reason.to_owned());
        Ok(())
    }
    async fn mark_signed_in(&self, account: &str) -> Result<(), StoreFailure> {
        self.needs_sign_in.lock().unwrap().remove(account);
        Ok(())
    }
}

/// Decodes a JWT's claims without verifying (the emulator's tokens are JWTs).
pub fn claims(token: &str) -> serde_json::Value {
    let jwt = mailbridge_testkit::crypto::Jwt::parse(token).expect("a JWT");
    jwt.claims
}
