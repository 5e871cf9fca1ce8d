//! The sealed store with real sign-ins against the emulated tenant: refresh-token
//! rotation survives a restart, and no secret or token is ever in the database files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(unix)]
mod files;
mod migration;
mod suite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::interactive::loopback_sign_in;
use mailbridge_auth::scopes::{Grant, Transport, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions, TokenStore};
use mailbridge_store::{AccountState, MasterKey, SecretKind, Store};
use mailbridge_testkit::model::{
    Api, AppRegistration, PermissionKind, Platform, Tenant, TenantModel, User,
};
use mailbridge_testkit::robot::Person;
use mailbridge_testkit::{Emulator, EmulatorServer};
use secrecy::{ExposeSecret, SecretString};

const PASSWORD: &str = "Correct-Horse-1";
const CLIENT_SECRET: &str = "Qx~8Q~client.secret.value-that-must-stay-sealed";

async fn tenant() -> (EmulatorServer, AppRegistration) {
    let app = AppRegistration::new("Document system")
        .public()
        .with_redirect(Platform::MobileDesktop, "http://localhost")
        .with_permission(
            Api::Graph,
            PermissionKind::Delegated,
            "IMAP.AccessAsUser.All",
        )
        .with_permission(Api::Graph, PermissionKind::Delegated, "offline_access");
    let model = TenantModel::builder()
        .tenant(
            Tenant::new("Contoso", "contoso.example")
                .with_user(User::new("alice@contoso.example", "Alice", PASSWORD))
                .with_app(app.clone()),
        )
        .build()
        .unwrap();
    let server = EmulatorServer::start(
        Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    (server, app)
}

fn sign_in(server: &EmulatorServer, app: &AppRegistration) -> AccountSignIn {
    AccountSignIn {
        account: "alice".into(),
        app: App {
            client_id: app.client_id.to_string(),
            credential: ClientCredential::None,
        },
        authority: Authority::new(
            &server.base_url(),
            TenantSegment::parse("contoso.example").unwrap(),
        )
        .unwrap(),
        scopes: scopes_for(
            Transport::Imap,
            Grant::Delegated,
            "https://graph.microsoft.com",
        ),
        delegated: true,
    }
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let n = &needle.as_bytes()[..needle.len().min(24)];
    haystack.windows(n.len()).any(|w| w == n)
}

#[tokio::test]
async fn rotated_refresh_token_survives_a_restart_and_nothing_secret_is_on_disk() {
    let (server, app) = tenant().await;
    server
        .emulator
        .update_knobs(|k| k.revoke_rotated_refresh_tokens = true);
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("mailbridge.db");
    let key_file = tempfile::tempdir().unwrap();
    let key = MasterKey::load_or_create_file(&key_file.path().join("master.key")).unwrap();
    let client = TokenClient::new(&HttpOptions::default()).unwrap();
    let account = sign_in(&server, &app);
    let mut seen_secrets: Vec<String> = vec![CLIENT_SECRET.to_owned()];

    // First run: the person signs in; the refresh token is stored.
    {
        let store = Arc::new(Store::open(&db, &key).await.unwrap());
        store
            .put_secret(
                "app:docs:client-secret",
                SecretKind::ClientSecret,
                &SecretString::from(CLIENT_SECRET),
                None,
                store.now(),
            )
            .await
            .unwrap();
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        let robot = tokio::spawn(async move {
            Person::new("alice@contoso.example", PASSWORD)
                .authorize(&url_rx.await.unwrap())
                .await
                .unwrap()
        });
        let tokens = loopback_sign_in(
            &client,
            &account.app,
            &account.authority,
            &account.scopes,
            &[],
            None,
            Duration::from_secs(30),
            move |u| {
                let _ = url_tx.send(u.to_owned());
            },
        )
        .await
        .unwrap();
        robot.await.unwrap();
        seen_secrets.push(tokens.access_token.expose_secret().to_owned());
        seen_secrets.push(
            tokens
                .refresh_token
                .as_ref()
                .unwrap()
                .expose_secret()
                .to_owned(),
        );
        let sessions = Sessions::new(client.clone(), store.clone(), RetryPolicy::default());
        sessions.persist("alice", &tokens).await.unwrap();
        store.close().await;
    }
    // Second run: a new process (new cache) refreshes with the stored token.
    let first_rt;
    {
        let store = Arc::new(Store::open(&db, &key).await.unwrap());
        first_rt = store.load_refresh_token("alice").await.unwrap().unwrap();
        let sessions = Sessions::new(client.clone(), store.clone(), RetryPolicy::default());
        let token = sessions.access_token(&account).await.unwrap();
        seen_secrets.push(token.expose_secret().to_owned());
        let rotated = store.load_refresh_token("alice").await.unwrap().unwrap();
        assert_ne!(
            rotated.expose_secret(),
            first_rt.expose_secret(),
            "rotated and stored"
        );
        seen_secrets.push(rotated.expose_secret().to_owned());
        assert_eq!(
            store.account_state("alice").await.unwrap(),
            Some(AccountState::SignedIn)
        );
        store.close().await;
    }
    // Third run: the rotated token works (the first one is revoked by the knob).
    {
        let store = Arc::new(Store::open(&db, &key).await.unwrap());
        let sessions = Sessions::new(client.clone(), store.clone(), RetryPolicy::default());
        sessions.access_token(&account).await.unwrap();
        let err = client
            .refresh(&account.app, &account.authority, &first_rt, &account.scopes)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("AADSTS"), "{err}");
        store.close().await;
    }
    let bytes = all_bytes(data.path());
    assert!(!bytes.is_empty());
    for secret in &seen_secrets {
        assert!(
            !contains(&bytes, secret),
            "a secret or token is in the database files in clear"
        );
    }
    // The master key is not in the database either.
    assert!(!contains(&bytes, key.to_base64().expose_secret()));
}
