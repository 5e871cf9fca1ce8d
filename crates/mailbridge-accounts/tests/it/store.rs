//! The master key, the store and import/export against a real SQLite store.

use mailbridge_accounts::ErrorKind;
use mailbridge_accounts::master_key::{self, Rotation};
use mailbridge_accounts::transfer;
use mailbridge_store::{MasterKey, SecretKind, Store};
use mailbridge_types::config::{AccountConfig, ConfigFile};
use secrecy::{ExposeSecret as _, SecretString};

async fn put_password(store: &Store, id: &str, value: &str) {
    store
        .put_secret(
            id,
            SecretKind::Password,
            &SecretString::from(value),
            None,
            store.now(),
        )
        .await
        .unwrap();
}

async fn secret(store: &Store, id: &str) -> Option<String> {
    store
        .get_secret(id)
        .await
        .unwrap()
        .map(|s| s.expose_secret().to_owned())
}

#[tokio::test]
async fn a_key_rotation_that_stopped_before_the_rename_is_finished_on_open() {
    assert!(
        !master_key::key_from_environment(),
        "run without MAILBRIDGE_MASTER_KEY/MAILBRIDGE_MASTER_PASSPHRASE"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = master_key::open_store(dir.path()).await.unwrap();
    put_password(&store, "account:a:password", "one").await;
    // A whole rotation: the key file is replaced and the secret still opens.
    let old = std::fs::read(dir.path().join("master.key")).unwrap();
    let Rotation::KeyFile { resealed, key_file } =
        master_key::rotate_key(dir.path(), &store).await.unwrap()
    else {
        panic!("the key file was not used");
    };
    assert_eq!((resealed, key_file), (1, dir.path().join("master.key")));
    assert_ne!(std::fs::read(dir.path().join("master.key")).unwrap(), old);
    assert!(!dir.path().join("master.key.new").exists());
    drop(store);
    let store = master_key::open_store(dir.path()).await.unwrap();
    assert_eq!(
        secret(&store, "account:a:password").await.as_deref(),
        Some("one")
    );
    // Stopped after the database commit, before the rename: both keys on disk.
    let new_path = dir.path().join("master.key.new");
    let new_key = MasterKey::load_or_create_file(&new_path).unwrap();
    store.rotate_key(&new_key).await.unwrap();
    drop(store);
    let store = master_key::open_store(dir.path()).await.unwrap();
    assert_eq!(
        secret(&store, "account:a:password").await.as_deref(),
        Some("one")
    );
    assert!(!new_path.exists(), "the rename was not finished");
    drop(store);
    // And the key file is now the new key: the store opens with it alone.
    let key = MasterKey::load_or_create_file(&dir.path().join("master.key")).unwrap();
    Store::open(&dir.path().join("mailbridge.db"), &key)
        .await
        .unwrap();
}

fn account(name: &str) -> AccountConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "address": format!("{name}@example.org"),
        "sign_in": "password",
        "send": false,
        "incoming": { "transport": "imap", "host": "mail.example.org", "tls": "implicit" },
    }))
    .unwrap()
}

#[tokio::test]
async fn export_with_secrets_imports_into_another_store_and_a_conflict_writes_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let from = master_key::open_store(a.path()).await.unwrap();
    let ops = account("ops");
    from.put_account(&ops).await.unwrap();
    put_password(&from, &ops.password_id(), "pw-of-ops").await;
    let catalog = ConfigFile {
        apps: vec![],
        accounts: vec![ops.clone()],
    };
    let file = transfer::export(&from, catalog, true).await.unwrap();
    let text = transfer::to_toml(&file, true).unwrap();
    assert!(text.contains("keep it private"), "{text}");
    let path = a.path().join("export.toml");
    transfer::write_file(&path, text.as_bytes(), true).unwrap();
    let read = transfer::read(&path).unwrap();

    let to = master_key::open_store(b.path()).await.unwrap();
    let empty = ConfigFile::default();
    transfer::import(&to, &empty, &read, false, "export.toml")
        .await
        .unwrap();
    assert_eq!(to.account("ops").await.unwrap(), Some(ops.clone()));
    assert_eq!(
        secret(&to, &ops.password_id()).await.as_deref(),
        Some("pw-of-ops")
    );

    // A file with a new account beside one that exists: refused whole.
    let mut again = transfer::read(&path).unwrap();
    again.accounts.push(account("sales"));
    let e = transfer::import(&to, &empty, &again, false, "again.toml")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(
        e.to_string()
            .starts_with("nothing was imported from again.toml"),
        "{e}"
    );
    assert!(e.to_string().contains("account ops exists already"), "{e}");
    assert_eq!(to.account("sales").await.unwrap(), None);
    // With replace, both are written.
    transfer::import(&to, &empty, &again, true, "again.toml")
        .await
        .unwrap();
    assert!(to.account("sales").await.unwrap().is_some());
}

#[tokio::test]
async fn health_reads_sign_in_states_idle_refresh_tokens_and_expiring_secrets_from_the_store() {
    use mailbridge_auth::session::TokenStore as _;
    use mailbridge_store::AccountState;
    use mailbridge_types::config::AppConfig;

    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mailbridge_types::clock::OffsetClock::new());
    let store = master_key::open_store(dir.path())
        .await
        .unwrap()
        .with_clock(clock.clone());
    let delegated = |name: &str| -> AccountConfig {
        let mut a = account(name);
        a.sign_in = mailbridge_types::config::SignInMethod::Delegated;
        a.app = Some("helpdesk".into());
        a
    };
    let mut app: AppConfig = serde_json::from_value(serde_json::json!({
        "name": "helpdesk", "tenant": "contoso.example",
        "client_id": "00000000-0000-4000-8000-000000000001",
    }))
    .unwrap();
    app.credential = mailbridge_types::config::AppCredentialConfig::Secret {
        expires: Some(store.now() + time::Duration::days(70)),
    };
    store
        .save_refresh_token("alice", &SecretString::from("rt-alice"))
        .await
        .unwrap();
    store
        .set_account_state("alice", AccountState::SignedIn)
        .await
        .unwrap();
    store
        .set_account_state(
            "bob",
            AccountState::NeedsSignIn {
                reason: "AADSTS70008: the refresh token has expired".into(),
            },
        )
        .await
        .unwrap();
    clock.advance(time::Duration::days(61));
    let catalog = ConfigFile {
        apps: vec![app],
        accounts: vec![
            delegated("alice"),
            delegated("bob"),
            delegated("carol"),
            account("ops"),
        ],
    };
    let h = mailbridge_accounts::health::health(&catalog, &store)
        .await
        .unwrap();
    let states: Vec<(&str, &str)> = h
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), a.state))
        .collect();
    assert_eq!(
        states,
        [
            ("alice", "signed-in"),
            ("bob", "needs-sign-in"),
            ("carol", "never-signed-in"),
            ("ops", "password"),
        ]
    );
    let alice = &h.accounts[0];
    assert_eq!(alice.refresh_token_idle_days, Some(61));
    assert!(
        alice.warnings[0].contains("90 days of inactivity"),
        "{alice:?}"
    );
    let bob = &h.accounts[1];
    assert_eq!(
        bob.reason.as_deref(),
        Some("AADSTS70008: the refresh token has expired")
    );
    assert_eq!(bob.warnings, ["run `mailbridge auth login bob`"]);
    assert!(h.accounts[3].warnings.is_empty());
    // The secret expires 70 days after the start: 9 days from the store's now (less
    // the milliseconds the test took, so 8 whole days), and was never stored.
    let app = &h.apps[0];
    assert!(matches!(app.expires_in_days, Some(8 | 9)), "{app:?}");
    assert!(app.warnings[0].contains("expires in"), "{app:?}");
    assert!(
        app.warnings[1].contains("mailbridge secrets set-app-secret helpdesk"),
        "{app:?}"
    );
}
