//! The store's behaviour, one suite run against both backends: every test body takes a
//! [`Fixture`] and runs once on SQLite (`sqlite::`) and once on PostgreSQL
//! (`postgres::`, a private cluster from the testkit; PostgreSQL must be installed:
//! `scripts/install-deps`).

use mailbridge_auth::session::TokenStore as _;
use mailbridge_store::{
    AccountState, Backend, Import, ImportSecret, MasterKey, SecretKind, Store, StoreError,
};
use mailbridge_types::access::Role;
use mailbridge_types::config::{AccountConfig, AppConfig, ConfigFile};
use secrecy::{ExposeSecret as _, SecretString};

/// Where a test's database lives; [`Fixture::open`] opens it again (a restart).
pub enum Fixture {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Fixture {
    fn sqlite() -> Self {
        Fixture::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        match mailbridge_testkit::postgres::fresh_database() {
            Ok(url) => Fixture::Postgres(url),
            Err(e) => panic!("the PostgreSQL half of the store suite needs PostgreSQL: {e}"),
        }
    }

    async fn open(&self, key: &MasterKey) -> Result<Store, StoreError> {
        match self {
            Fixture::Sqlite(dir) => Store::open(&dir.path().join("mailbridge.db"), key).await,
            Fixture::Postgres(url) => Store::connect(url, key).await,
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Fixture::Sqlite(_) => Backend::Sqlite,
            Fixture::Postgres(_) => Backend::Postgres,
        }
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Fixture::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Fixture::postgres()).await;
                }
            )*
        }
    };
}

mod audit;
mod outbox;
mod parked;
mod users;
mod watches;

suite!(
    opens_the_backend_it_is_given,
    secrets_are_sealed_and_only_the_master_key_opens_them,
    key_rotation_reseals_every_secret_in_one_go,
    records_round_trip_and_removal_takes_their_secrets,
    ids_stay_when_records_are_replaced,
    renaming_an_account_keeps_its_id_state_checkpoints_and_secrets,
    an_account_of_the_configuration_file_gets_an_id_for_its_state,
    import_writes_a_batch_and_replace_keeps_ids,
    a_failed_import_leaves_nothing,
    token_store_keeps_refresh_tokens_and_sign_in_state,
    who_signed_in_lasts_through_refreshes_until_sign_in_is_needed,
    instances_opening_a_new_database_together_agree_on_one_key,
    api_tokens_are_found_by_hash_listed_and_revoked,
    the_first_api_token_is_stored_once_only,
    an_account_belongs_to_its_owner_through_edits_and_renames,
);

#[tokio::test]
async fn a_url_picks_the_backend_and_an_unknown_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let path = dir.path().join("by-url.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()), &key)
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    put_secret(&store, "s", "v").await;
    store.close().await;
    let store = Store::open(&path, &key).await.unwrap();
    assert_eq!(secret_text(&store, "s").await.as_deref(), Some("v"));
    let err = Store::connect("mysql://root:hunter2@db/mail", &key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("postgres://"), "{err}");
}

const FILE: &str = r#"
[[app]]
name = "contoso"
tenant = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
client_id = "11111111-2222-3333-4444-555555555555"
credential = { type = "secret" }

[[account]]
name = "helpdesk"
address = "helpdesk@contoso.com"
sign_in = "app-only"
app = "contoso"
usages = ["helpdesk"]
incoming = { transport = "graph", host = "https://graph.microsoft.com" }

[[account]]
name = "ops_1"
address = "ops@example.org"
sign_in = "password"
login_format = "mailbox-name"
send = false
incoming = { transport = "imap", host = "imap.example.org", port = 993, tls = "implicit" }
"#;

fn config() -> ConfigFile {
    toml::from_str(FILE).unwrap()
}

fn account(name: &str, address: &str) -> AccountConfig {
    let mut a = config().accounts.remove(1);
    name.clone_into(&mut a.name);
    address.clone_into(&mut a.address);
    a
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

async fn put_secret(store: &Store, id: &str, value: &str) {
    store
        .put_secret(id, SecretKind::Password, &secret(value), None, store.now())
        .await
        .unwrap();
}

async fn secret_text(store: &Store, id: &str) -> Option<String> {
    store
        .get_secret(id)
        .await
        .unwrap()
        .map(|s| s.expose_secret().to_owned())
}

async fn opens_the_backend_it_is_given(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    assert_eq!(store.backend(), db.backend());
}

async fn secrets_are_sealed_and_only_the_master_key_opens_them(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    let expires = store.now() + time::Duration::days(90);
    store
        .put_secret(
            "app:contoso:client-secret",
            SecretKind::ClientSecret,
            &secret("Qx~8Q~value"),
            Some(expires),
            store.now(),
        )
        .await
        .unwrap();
    put_secret(&store, "account:ops_1:password", "pw").await;
    store.close().await;

    // A restart with the same key opens them; another key opens nothing.
    assert!(matches!(
        db.open(&MasterKey::generate().unwrap()).await,
        Err(StoreError::WrongMasterKey)
    ));
    let store = db.open(&key).await.unwrap();
    assert_eq!(
        secret_text(&store, "app:contoso:client-secret")
            .await
            .as_deref(),
        Some("Qx~8Q~value")
    );
    assert_eq!(secret_text(&store, "missing").await, None);
    let meta = store.secrets().await.unwrap();
    let ids: Vec<&str> = meta.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["account:ops_1:password", "app:contoso:client-secret"]);
    assert_eq!(meta[1].kind, SecretKind::ClientSecret);
    assert_eq!(
        meta[1].expires_at.map(time::OffsetDateTime::unix_timestamp),
        Some(expires.unix_timestamp())
    );
    assert_eq!(meta[0].last_used_at, None);
    store
        .touch_secret("account:ops_1:password", store.now())
        .await
        .unwrap();
    assert!(store.secrets().await.unwrap()[0].last_used_at.is_some());
    assert!(store.delete_secret("account:ops_1:password").await.unwrap());
    assert!(!store.delete_secret("account:ops_1:password").await.unwrap());
}

async fn key_rotation_reseals_every_secret_in_one_go(db: Fixture) {
    let old = MasterKey::generate().unwrap();
    let new = MasterKey::generate().unwrap();
    let store = db.open(&old).await.unwrap();
    for i in 0..3 {
        put_secret(&store, &format!("s{i}"), &format!("pw{i}")).await;
    }
    assert_eq!(store.rotate_key(&new).await.unwrap(), 3);
    assert_eq!(secret_text(&store, "s2").await.as_deref(), Some("pw2"));
    store.close().await;
    assert!(matches!(
        db.open(&old).await,
        Err(StoreError::WrongMasterKey)
    ));
    let store = db.open(&new).await.unwrap();
    assert_eq!(secret_text(&store, "s0").await.as_deref(), Some("pw0"));
}

async fn records_round_trip_and_removal_takes_their_secrets(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let file = config();
    {
        let store = db.open(&key).await.unwrap();
        for app in &file.apps {
            store.put_app(app).await.unwrap();
        }
        for account in &file.accounts {
            store.put_account(account).await.unwrap();
        }
        for id in [
            "account:ops_1:password",
            "account:ops_1:refresh-token",
            "account:ops%1:password",
            "app:contoso:client-secret",
        ] {
            put_secret(&store, id, "s3cret").await;
        }
        store
            .set_checkpoint("ops_1", "INBOX", &serde_json::json!({"kind": "start"}))
            .await
            .unwrap();
        store
            .put_provider(
                "corp",
                &serde_json::json!({"id": "corp", "imap": "imap.corp"}),
            )
            .await
            .unwrap();
        store.close().await;
    }
    let store = db.open(&key).await.unwrap();
    let apps: Vec<AppConfig> = store.apps().await.unwrap();
    assert_eq!(apps, file.apps);
    let accounts = store.accounts().await.unwrap();
    assert_eq!(accounts, file.accounts);
    assert_eq!(accounts[1].login_name(), "ops");
    // By name or by address, in any case.
    let by_address = store.account("OPS@example.org").await.unwrap().unwrap();
    assert_eq!(by_address.name, "ops_1");
    assert!(store.account("nobody").await.unwrap().is_none());
    let cp: Option<serde_json::Value> = store.checkpoint("ops_1", "INBOX").await.unwrap();
    assert_eq!(cp.unwrap()["kind"], "start");
    let providers: Vec<serde_json::Value> = store.providers().await.unwrap();
    assert_eq!(providers[0]["imap"], "imap.corp");

    assert!(store.remove_account("ops_1").await.unwrap());
    assert!(!store.remove_account("ops_1").await.unwrap());
    assert!(store.account("ops_1").await.unwrap().is_none());
    assert!(store.account_id("ops_1").await.unwrap().is_none());
    assert_eq!(secret_text(&store, "account:ops_1:password").await, None);
    assert_eq!(
        secret_text(&store, "account:ops_1:refresh-token").await,
        None
    );
    let cp: Option<serde_json::Value> = store.checkpoint("ops_1", "INBOX").await.unwrap();
    assert!(cp.is_none());
    // `_` and `%` in a name are not wildcards: another account's secret stays.
    assert_eq!(
        secret_text(&store, "account:ops%1:password")
            .await
            .as_deref(),
        Some("s3cret")
    );

    assert!(store.remove_app("contoso").await.unwrap());
    assert!(store.apps().await.unwrap().is_empty());
    assert_eq!(secret_text(&store, "app:contoso:client-secret").await, None);
    assert!(store.remove_provider("corp").await.unwrap());
    assert!(!store.remove_provider("corp").await.unwrap());
}

async fn ids_stay_when_records_are_replaced(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    let file = config();
    let mut app = file.apps[0].clone();
    store.put_app(&app).await.unwrap();
    let app_id = store.app_id("contoso").await.unwrap().unwrap();
    app.client_id = "99999999-2222-3333-4444-555555555555".into();
    store.put_app(&app).await.unwrap();
    assert_eq!(store.app_id("contoso").await.unwrap(), Some(app_id));
    assert_eq!(store.apps_with_ids().await.unwrap(), [(app_id, app)]);

    let mut ops = file.accounts[1].clone();
    store.put_account(&ops).await.unwrap();
    store.put_account(&file.accounts[0]).await.unwrap();
    let ops_id = store.account_id("ops_1").await.unwrap().unwrap();
    let helpdesk_id = store.account_id("helpdesk").await.unwrap().unwrap();
    assert_ne!(ops_id, helpdesk_id);
    ops.address = "operations@example.org".into();
    store.put_account(&ops).await.unwrap();
    assert_eq!(store.account_id("ops_1").await.unwrap(), Some(ops_id));
    assert_eq!(
        store.account_by_id(ops_id).await.unwrap(),
        Some(ops.clone())
    );
    let listed = store.accounts_with_ids().await.unwrap();
    assert_eq!(listed[1], (ops_id, ops));
    assert_eq!(listed[0].0, helpdesk_id);

    store
        .put_provider("corp", &serde_json::json!({"v": 1}))
        .await
        .unwrap();
    let provider_id = store.provider_id("corp").await.unwrap().unwrap();
    store
        .put_provider("corp", &serde_json::json!({"v": 2}))
        .await
        .unwrap();
    let providers: Vec<(_, serde_json::Value)> = store.providers_with_ids().await.unwrap();
    assert_eq!(providers, [(provider_id, serde_json::json!({"v": 2}))]);

    // A removed account's id is not handed to a new account of the same name.
    assert!(store.remove_account("ops_1").await.unwrap());
    store
        .put_account(&account("ops_1", "x@example.org"))
        .await
        .unwrap();
    let again = store.account_id("ops_1").await.unwrap().unwrap();
    assert_ne!(again, ops_id);
    assert_eq!(store.account_by_id(ops_id).await.unwrap(), None);
    // Ids print and parse as UUIDs.
    assert_eq!(
        again
            .to_string()
            .parse::<mailbridge_store::AccountId>()
            .unwrap(),
        again
    );
}

async fn renaming_an_account_keeps_its_id_state_checkpoints_and_secrets(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    store
        .put_account(&account("ops", "ops@example.org"))
        .await
        .unwrap();
    store
        .put_account(&account("sales", "sales@example.org"))
        .await
        .unwrap();
    let id = store.account_id("ops").await.unwrap().unwrap();
    put_secret(&store, "account:ops:password", "pw-ops").await;
    put_secret(&store, "account:ops:refresh-token", "rt-ops").await;
    put_secret(&store, "account:opsx:password", "pw-opsx").await;
    store
        .set_account_state_by_id(
            id,
            AccountState::NeedsSignIn {
                reason: "expired".into(),
            },
        )
        .await
        .unwrap();
    store
        .set_checkpoint_by_id(id, "INBOX", &serde_json::json!({"uid": 7}))
        .await
        .unwrap();

    assert!(matches!(
        store.rename_account(id, "sales").await,
        Err(StoreError::Exists {
            kind: "account",
            ..
        })
    ));
    store.rename_account(id, "operations").await.unwrap();

    assert_eq!(store.account_id("operations").await.unwrap(), Some(id));
    assert_eq!(store.account_id("ops").await.unwrap(), None);
    let renamed = store.account_by_id(id).await.unwrap().unwrap();
    assert_eq!(renamed.name, "operations");
    assert_eq!(renamed.address, "ops@example.org");
    assert_eq!(
        store.account_state("operations").await.unwrap(),
        Some(AccountState::NeedsSignIn {
            reason: "expired".into()
        })
    );
    let cp: Option<serde_json::Value> = store.checkpoint("operations", "INBOX").await.unwrap();
    assert_eq!(cp, Some(serde_json::json!({"uid": 7})));
    // The secrets moved (sealed again under their new ids); another account's stayed.
    assert_eq!(
        secret_text(&store, "account:operations:password")
            .await
            .as_deref(),
        Some("pw-ops")
    );
    assert_eq!(
        secret_text(&store, "account:operations:refresh-token")
            .await
            .as_deref(),
        Some("rt-ops")
    );
    assert_eq!(secret_text(&store, "account:ops:password").await, None);
    assert_eq!(
        secret_text(&store, "account:opsx:password")
            .await
            .as_deref(),
        Some("pw-opsx")
    );
    // The old name is free again, for a new account with a new id.
    store
        .put_account(&account("ops", "new@example.org"))
        .await
        .unwrap();
    assert_ne!(store.account_id("ops").await.unwrap(), Some(id));
    assert_eq!(store.account_state("ops").await.unwrap(), None);

    let unknown = mailbridge_store::AccountId::from_uuid(uuid::Uuid::new_v4());
    assert!(matches!(
        store.rename_account(unknown, "x").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_checkpoint_by_id(unknown, "INBOX", &1).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_account_state_by_id(unknown, AccountState::SignedIn)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn an_account_of_the_configuration_file_gets_an_id_for_its_state(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    assert_eq!(store.account_state("from-file").await.unwrap(), None);
    assert_eq!(
        store.account_id("from-file").await.unwrap(),
        None,
        "reads register nothing"
    );
    store
        .set_account_state("from-file", AccountState::SignedIn)
        .await
        .unwrap();
    store
        .set_checkpoint("from-file", "INBOX", &serde_json::json!(3))
        .await
        .unwrap();
    let id = store.account_id("from-file").await.unwrap().unwrap();
    // Known by name, but not a stored account.
    assert!(store.accounts().await.unwrap().is_empty());
    assert!(store.account("from-file").await.unwrap().is_none());
    assert_eq!(store.account_by_id(id).await.unwrap(), None);
    assert_eq!(
        store.account_state_by_id(id).await.unwrap(),
        Some(AccountState::SignedIn)
    );
    store.clear_account_state("from-file").await.unwrap();
    assert_eq!(store.account_state("from-file").await.unwrap(), None);
    // Stored later (e.g. imported), it keeps its id and checkpoints.
    store
        .put_account(&account("from-file", "f@example.org"))
        .await
        .unwrap();
    assert_eq!(store.account_id("from-file").await.unwrap(), Some(id));
    let cp: Option<serde_json::Value> = store.checkpoint_by_id(id, "INBOX").await.unwrap();
    assert_eq!(cp, Some(serde_json::json!(3)));
}

fn batch(accounts: Vec<AccountConfig>, replace: bool) -> Import {
    let mut import = Import::default();
    import.apps = config().apps;
    import.accounts = accounts;
    import.providers = vec![("corp".into(), serde_json::json!({"imap": "imap.corp"}))];
    import.secrets = vec![
        ImportSecret {
            id: "app:contoso:client-secret".into(),
            kind: SecretKind::ClientSecret,
            value: secret("client-secret-1"),
            expires_at: None,
        },
        ImportSecret {
            id: "account:helpdesk:refresh-token".into(),
            kind: SecretKind::RefreshToken,
            value: secret("rt-1"),
            expires_at: None,
        },
    ];
    import.replace = replace;
    import
}

async fn import_writes_a_batch_and_replace_keeps_ids(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    store
        .import(&batch(config().accounts, false))
        .await
        .unwrap();
    assert_eq!(store.apps().await.unwrap(), config().apps);
    assert_eq!(store.accounts().await.unwrap(), config().accounts);
    assert_eq!(
        secret_text(&store, "account:helpdesk:refresh-token")
            .await
            .as_deref(),
        Some("rt-1")
    );
    let providers: Vec<serde_json::Value> = store.providers().await.unwrap();
    assert_eq!(providers, [serde_json::json!({"imap": "imap.corp"})]);
    let id = store.account_id("helpdesk").await.unwrap().unwrap();

    // Again without replace: refused whole; with it: overwritten, ids kept.
    let mut changed = config().accounts;
    changed[0].address = "support@contoso.com".into();
    assert!(matches!(
        store.import(&batch(changed.clone(), false)).await,
        Err(StoreError::Exists { kind: "app", .. })
    ));
    let mut again = batch(changed, true);
    again.secrets[1].value = secret("rt-2");
    store.import(&again).await.unwrap();
    assert_eq!(store.account_id("helpdesk").await.unwrap(), Some(id));
    assert_eq!(
        store.account("helpdesk").await.unwrap().unwrap().address,
        "support@contoso.com"
    );
    assert_eq!(
        secret_text(&store, "account:helpdesk:refresh-token")
            .await
            .as_deref(),
        Some("rt-2")
    );
}

async fn a_failed_import_leaves_nothing(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    let existing = account("ops_1", "ops@example.org");
    store.put_account(&existing).await.unwrap();
    put_secret(&store, "account:ops_1:password", "kept").await;
    // The app, the first account and (in the batch's order) everything before the
    // account that exists are written inside the transaction, then it fails.
    let mut import = batch(
        vec![
            account("new_1", "new1@example.org"),
            account("ops_1", "other@example.org"),
        ],
        false,
    );
    import.secrets.push(ImportSecret {
        id: "account:ops_1:password".into(),
        kind: SecretKind::Password,
        value: secret("overwritten"),
        expires_at: None,
    });
    let err = store.import(&import).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Exists { kind: "account", name } if name == "ops_1"),
        "{err}"
    );
    assert_eq!(err.to_string(), "account ops_1 exists already");
    assert!(store.apps().await.unwrap().is_empty());
    assert_eq!(store.accounts().await.unwrap(), [existing]);
    assert_eq!(store.account_id("new_1").await.unwrap(), None);
    assert!(
        store
            .providers::<serde_json::Value>()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(secret_text(&store, "app:contoso:client-secret").await, None);
    assert_eq!(
        secret_text(&store, "account:ops_1:password")
            .await
            .as_deref(),
        Some("kept")
    );
}

async fn token_store_keeps_refresh_tokens_and_sign_in_state(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    assert!(store.load_refresh_token("alice").await.unwrap().is_none());
    store
        .save_refresh_token("alice", &secret("rt-alice"))
        .await
        .unwrap();
    store
        .mark_needs_sign_in("alice", "AADSTS70008: expired")
        .await
        .unwrap();
    store.close().await;
    let store = db.open(&key).await.unwrap();
    assert_eq!(
        store
            .load_refresh_token("alice")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "rt-alice"
    );
    assert_eq!(
        store.account_state("alice").await.unwrap(),
        Some(AccountState::NeedsSignIn {
            reason: "AADSTS70008: expired".into()
        })
    );
    store.mark_signed_in("alice").await.unwrap();
    assert_eq!(
        store.account_state("alice").await.unwrap(),
        Some(AccountState::SignedIn)
    );
    let meta = store.secrets().await.unwrap();
    assert_eq!(meta[0].kind, SecretKind::RefreshToken);
    assert!(meta[0].last_used_at.is_some(), "loading marks it used");
}

async fn who_signed_in_lasts_through_refreshes_until_sign_in_is_needed(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    store.mark_signed_in("alice").await.unwrap();
    let id = store.account_id("alice").await.unwrap().unwrap();
    assert_eq!(store.signed_in_user(id).await.unwrap(), None);
    store
        .set_signed_in_user("alice", Some("alice@contoso.example"))
        .await
        .unwrap();
    // A refresh marks it signed in again: who signed in stays.
    store.mark_signed_in("alice").await.unwrap();
    assert_eq!(
        store.signed_in_user(id).await.unwrap().as_deref(),
        Some("alice@contoso.example")
    );
    assert_eq!(
        store.account_state("alice").await.unwrap(),
        Some(AccountState::SignedIn)
    );
    // Needing sign-in forgets it; a user is not recorded on that state.
    store.mark_needs_sign_in("alice", "revoked").await.unwrap();
    assert_eq!(store.signed_in_user(id).await.unwrap(), None);
    store
        .set_signed_in_user("alice", Some("bob@contoso.example"))
        .await
        .unwrap();
    assert_eq!(
        store.account_state("alice").await.unwrap(),
        Some(AccountState::NeedsSignIn {
            reason: "revoked".into()
        })
    );
    store.mark_signed_in("alice").await.unwrap();
    assert_eq!(store.signed_in_user(id).await.unwrap(), None);
}

async fn instances_opening_a_new_database_together_agree_on_one_key(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let other = MasterKey::generate().unwrap();
    // Same key: both open (migrations and the key check do not trip over each other).
    let (a, b) = tokio::join!(db.open(&key), db.open(&key));
    let (a, b) = (a.unwrap(), b.unwrap());
    put_secret(&a, "s", "from-a").await;
    assert_eq!(secret_text(&b, "s").await.as_deref(), Some("from-a"));
    a.close().await;
    b.close().await;
    assert!(matches!(
        db.open(&other).await,
        Err(StoreError::WrongMasterKey)
    ));

    // Different keys on a new database: exactly one of them becomes its key.
    let fresh = match &db {
        Fixture::Sqlite(_) => Fixture::sqlite(),
        Fixture::Postgres(_) => Fixture::postgres(),
    };
    let (a, b) = tokio::join!(fresh.open(&key), fresh.open(&other));
    let refused = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(StoreError::WrongMasterKey)))
        .count();
    assert_eq!(refused, 1, "{a:?} {b:?}");
    assert!(a.is_ok() || b.is_ok());
}

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn api_tokens_are_found_by_hash_listed_and_revoked(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    assert_eq!(store.api_token_count().await.unwrap(), 0);
    assert!(store.api_tokens().await.unwrap().is_empty());
    let admin = store
        .add_api_token("ops", Role::Administrator, None, &hash(1))
        .await
        .unwrap();
    let audit = store
        .add_api_token("audit", Role::Auditor, Some("carol"), &hash(2))
        .await
        .unwrap();
    assert_ne!(admin.id, audit.id);
    // A valid token's name is taken; so is a hash.
    let err = store
        .add_api_token("ops", Role::User, None, &hash(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
    assert!(
        store
            .add_api_token("other", Role::User, None, &hash(1))
            .await
            .is_err()
    );
    assert_eq!(store.api_token_count().await.unwrap(), 2);

    // Found by hash only, with what it is; survives a restart.
    store.close().await;
    let store = db.open(&key).await.unwrap();
    let found = store.find_api_token(&hash(2)).await.unwrap().unwrap();
    assert_eq!(found, audit);
    assert_eq!(found.role, Role::Auditor);
    assert_eq!(found.user.as_deref(), Some("carol"));
    assert!(store.find_api_token(&hash(9)).await.unwrap().is_none());
    let listed: Vec<_> = store
        .api_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.role, t.revoked_at.is_none()))
        .collect();
    assert_eq!(
        listed,
        [
            ("audit".to_owned(), Role::Auditor, true),
            ("ops".to_owned(), Role::Administrator, true)
        ]
    );

    // Revoked by name: not found any more, listed with the time, the name free again.
    let revoked = store.revoke_api_token("audit").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(store.find_api_token(&hash(2)).await.unwrap().is_none());
    assert_eq!(store.api_token_count().await.unwrap(), 1);
    assert!(matches!(
        store.revoke_api_token("audit").await,
        Err(StoreError::NotFound { .. })
    ));
    let again = store
        .add_api_token("audit", Role::Auditor, None, &hash(4))
        .await
        .unwrap();
    assert!(store.find_api_token(&hash(4)).await.unwrap().is_some());
    let all = store.api_tokens().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().filter(|t| t.revoked_at.is_some()).count(), 1);

    // Revoked by id.
    store.revoke_api_token(&again.id.to_string()).await.unwrap();
    assert!(store.find_api_token(&hash(4)).await.unwrap().is_none());
    assert!(matches!(
        store.revoke_api_token(&uuid_like()).await,
        Err(StoreError::NotFound { .. })
    ));
    // The other token is untouched.
    assert_eq!(
        store.find_api_token(&hash(1)).await.unwrap().unwrap().name,
        "ops"
    );
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

async fn the_first_api_token_is_stored_once_only(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    // Two instances starting together on a new database: one first token.
    let (a, b) = tokio::join!(db.open(&key), db.open(&key));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (h1, h2) = (hash(1), hash(2));
    let (first_a, first_b) = tokio::join!(
        a.add_first_api_token("first-admin", Role::Administrator, None, &h1),
        b.add_first_api_token("first-admin", Role::Administrator, None, &h2),
    );
    let made: Vec<_> = [first_a.unwrap(), first_b.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].role, Role::Administrator);
    assert_eq!(a.api_token_count().await.unwrap(), 1);
    // Later starts make none, even after every token was revoked.
    assert!(
        a.add_first_api_token("first-admin", Role::Administrator, None, &hash(3))
            .await
            .unwrap()
            .is_none()
    );
    a.revoke_api_token("first-admin").await.unwrap();
    assert!(
        a.add_first_api_token("first-admin", Role::Administrator, None, &hash(3))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(a.api_token_count().await.unwrap(), 0);
}

async fn an_account_belongs_to_its_owner_through_edits_and_renames(db: Fixture) {
    let store = db.open(&MasterKey::generate().unwrap()).await.unwrap();
    store
        .put_account(&account("ops", "ops@example.org"))
        .await
        .unwrap();
    store
        .put_account(&account("sales", "sales@example.org"))
        .await
        .unwrap();
    let ops = store.account_id("ops").await.unwrap().unwrap();
    let sales = store.account_id("sales").await.unwrap().unwrap();
    // Nobody's until given.
    assert_eq!(store.account_owner(ops).await.unwrap(), None);
    assert!(store.account_owners().await.unwrap().is_empty());
    assert!(store.set_account_owner(ops, Some("alice")).await.unwrap());
    assert_eq!(
        store.account_owner(ops).await.unwrap().as_deref(),
        Some("alice")
    );
    // An edit and a rename keep the owner.
    let mut edited = account("ops", "ops@example.org");
    edited.display_name = Some("Operations".into());
    store.put_account(&edited).await.unwrap();
    store.rename_account(ops, "operations").await.unwrap();
    let owners = store.account_owners().await.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners.get(&ops).map(String::as_str), Some("alice"));
    assert!(!owners.contains_key(&sales));
    // Given back to nobody; an unknown account is said to be unknown.
    assert!(store.set_account_owner(ops, None).await.unwrap());
    assert_eq!(store.account_owner(ops).await.unwrap(), None);
    let unknown = mailbridge_store::AccountId::from_uuid(uuid::Uuid::from_u128(42));
    assert!(
        !store
            .set_account_owner(unknown, Some("alice"))
            .await
            .unwrap()
    );
    assert_eq!(store.account_owner(unknown).await.unwrap(), None);
    // A removed account takes its owner with it; a new one of the name is nobody's.
    store.set_account_owner(ops, Some("alice")).await.unwrap();
    assert!(store.remove_account("operations").await.unwrap());
    store
        .put_account(&account("operations", "ops@example.org"))
        .await
        .unwrap();
    let again = store.account_id("operations").await.unwrap().unwrap();
    assert_eq!(store.account_owner(again).await.unwrap(), None);
}
