//! The sign-in service against the emulated tenant: one service, one token cache.

use mailbridge_accounts::ErrorKind;
use mailbridge_accounts::catalog::lookup_account;
use mailbridge_accounts::signin::SignIn;
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_store::{MasterKey, SecretKind, Store};
use mailbridge_testkit::model::{Api, AppRegistration, PermissionKind, Tenant, TenantModel, User};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::{AccountConfig, AppConfig, ConfigFile, Transport};
use secrecy::{ExposeSecret as _, SecretString};

const ALICE: &str = "alice@contoso.example";
const SECRET: &str = "connector-secret-value";
const TOKEN_PATH: &str = "/oauth2/v2.0/token";

struct World {
    server: EmulatorServer,
    store: Store,
    catalog: ConfigFile,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Helpdesk")
        .with_secret(SECRET, year)
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
        .consented();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_app(app.clone());
    let model = TenantModel::builder().tenant(tenant).build().unwrap();
    let server = EmulatorServer::start(
        Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("mailbridge.db"),
        &MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let app_config: AppConfig = serde_json::from_value(serde_json::json!({
        "name": "helpdesk",
        "tenant": "contoso.example",
        "client_id": app.client_id.to_string(),
        "authority_host": server.base_url(),
        "credential": { "type": "secret" },
    }))
    .unwrap();
    store
        .put_secret(
            &app_config.secret_id(),
            SecretKind::ClientSecret,
            &SecretString::from(SECRET),
            None,
            store.now(),
        )
        .await
        .unwrap();
    let account: AccountConfig = serde_json::from_value(serde_json::json!({
        "name": "alice",
        "address": ALICE,
        "sign_in": "app-only",
        "app": "helpdesk",
        "incoming": { "transport": "graph", "host": format!("{}/v1.0", server.base_url()) },
    }))
    .unwrap();
    World {
        server,
        store,
        catalog: ConfigFile {
            apps: vec![app_config],
            accounts: vec![account],
        },
        _dir: dir,
    }
}

impl World {
    /// What the account named `name` signs in with, through `service`.
    async fn credentials(
        &self,
        service: &SignIn,
        name: &str,
    ) -> Result<SenderSignIn, mailbridge_accounts::Error> {
        let (account, app) = lookup_account(&self.catalog, name)?;
        service
            .credentials(&account, app.as_ref(), Transport::Graph)
            .await
    }
}

async fn token(s: SenderSignIn) -> String {
    match s {
        SenderSignIn::AppOnly(t) => t.token().await.unwrap().expose_secret().to_owned(),
        other => panic!("expected an app-only token, got {other:?}"),
    }
}

#[tokio::test]
async fn two_token_requests_through_one_service_reach_the_token_endpoint_once() {
    let w = world().await;
    let service = SignIn::new(w.store.clone());
    // At the same time, then once more: one token request in all.
    let (a, b) = tokio::join!(
        w.credentials(&service, "alice"),
        w.credentials(&service, ALICE),
    );
    let (a, b) = (token(a.unwrap()).await, token(b.unwrap()).await);
    assert!(a == b, "two tokens for one account");
    let c = token(w.credentials(&service, "alice").await.unwrap()).await;
    assert!(a == c, "a second token for one account");
    assert_eq!(w.server.emulator.requests_to(TOKEN_PATH).len(), 1);
    // The cache is the service's: a second service (a second process) asks again.
    let other = SignIn::new(w.store.clone());
    token(w.credentials(&other, "alice").await.unwrap()).await;
    assert_eq!(w.server.emulator.requests_to(TOKEN_PATH).len(), 2);
}

#[tokio::test]
async fn a_missing_secret_or_account_is_a_typed_error_that_names_the_fix() {
    let w = world().await;
    let service = SignIn::new(w.store.clone());
    let e = w.credentials(&service, "bob").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("mailbridge account add"), "{e}");
    w.store
        .delete_secret(&w.catalog.apps[0].secret_id())
        .await
        .unwrap();
    let e = w.credentials(&service, "alice").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misconfigured);
    assert_eq!(e.class(), ErrorClass::Misconfigured);
    assert!(
        e.to_string()
            .contains("mailbridge secrets set-app-secret helpdesk"),
        "{e}"
    );
    assert!(w.server.emulator.requests_to(TOKEN_PATH).is_empty());
}

#[tokio::test]
async fn a_refused_token_request_keeps_the_sign_in_class_and_cause() {
    let w = world().await;
    let mut catalog = w.catalog.clone();
    catalog.apps[0].client_id = "00000000-0000-4000-8000-00000000dead".into();
    let service = SignIn::new(w.store.clone());
    let (account, app) = lookup_account(&catalog, "alice").unwrap();
    let e = service
        .credentials(&account, app.as_ref(), Transport::Graph)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SignIn);
    assert_ne!(e.class(), ErrorClass::Transient, "{e:?}");
    let chain = mailbridge_types::error_chain(&e);
    assert!(
        chain.starts_with("could not get a token for account alice ["),
        "{chain}"
    );
    assert!(chain.contains("AADSTS"), "{chain}");
}
