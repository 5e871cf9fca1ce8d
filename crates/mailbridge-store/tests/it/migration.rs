//! A SQLite database made by the schema before stable ids (migrations 0001-0003, the
//! files this crate ships), filled the way that code wrote it, opened by today's
//! store: migration 0004 gives every app, account and provider an id and keeps
//! sign-in state and checkpoints, by account id.

use std::str::FromStr as _;

use mailbridge_store::sealed::Sealer;
use mailbridge_store::{AccountState, MasterKey, Store};
use mailbridge_types::config::ConfigFile;
use secrecy::ExposeSecret as _;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const BEFORE_IDS: [(&str, &str); 3] = [
    (
        "0001_secrets.sql",
        include_str!("../../migrations/sqlite/0001_secrets.sql"),
    ),
    (
        "0002_account_state.sql",
        include_str!("../../migrations/sqlite/0002_account_state.sql"),
    ),
    (
        "0003_accounts.sql",
        include_str!("../../migrations/sqlite/0003_accounts.sql"),
    ),
];

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
incoming = { transport = "graph", host = "https://graph.microsoft.com" }

[[account]]
name = "ops_1"
address = "ops@example.org"
sign_in = "password"
incoming = { transport = "imap", host = "imap.example.org", port = 993, tls = "implicit" }
"#;

/// Makes `path` as the code before stable ids did, with two accounts, an app, a
/// provider, secrets, sign-in state and checkpoints (also for `from-file`, an account
/// of the configuration file that the store never held).
async fn database_before_ids(path: &std::path::Path, key: &MasterKey, file: &ConfigFile) {
    let migrations = tempfile::tempdir().unwrap();
    for (name, text) in BEFORE_IDS {
        std::fs::write(migrations.path().join(name), text).unwrap();
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let sealer = Sealer::new(key);
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
        .bind("meta:key_check")
        .bind(
            sealer
                .seal("meta:key_check", b"mailbridge master key check v1")
                .unwrap(),
        )
        .execute(&pool)
        .await
        .unwrap();
    for app in &file.apps {
        sqlx::query("INSERT INTO apps (name, config, updated_at) VALUES (?, ?, 1)")
            .bind(&app.name)
            .bind(serde_json::to_string(app).unwrap())
            .execute(&pool)
            .await
            .unwrap();
    }
    for account in &file.accounts {
        sqlx::query(
            "INSERT INTO accounts (name, address, config, created_at, updated_at) VALUES (?, ?, ?, 1, 1)",
        )
        .bind(&account.name)
        .bind(&account.address)
        .bind(serde_json::to_string(account).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO providers (id, config, updated_at) VALUES ('corp', '{\"v\":1}', 1)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO secrets (id, kind, sealed, created_at, updated_at) VALUES (?, 'password', ?, 1, 1)",
    )
    .bind("account:ops_1:password")
    .bind(sealer.seal("account:ops_1:password", b"pw-ops").unwrap())
    .execute(&pool)
    .await
    .unwrap();
    for (account, state, reason) in [
        ("ops_1", "needs-sign-in", Some("expired")),
        ("from-file", "signed-in", None),
    ] {
        sqlx::query(
            "INSERT INTO account_state (account, state, reason, updated_at) VALUES (?, ?, ?, 1)",
        )
        .bind(account)
        .bind(state)
        .bind(reason)
        .execute(&pool)
        .await
        .unwrap();
    }
    for (account, folder, cp) in [
        ("ops_1", "INBOX", "{\"uid\":7}"),
        ("ops_1", "Archive", "{\"uid\":2}"),
        ("from-file", "INBOX", "{\"uid\":9}"),
    ] {
        sqlx::query(
            "INSERT INTO checkpoints (account, folder, checkpoint, updated_at) VALUES (?, ?, ?, 1)",
        )
        .bind(account)
        .bind(folder)
        .bind(cp)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn a_database_from_before_stable_ids_gets_ids_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbridge.db");
    let key = MasterKey::generate().unwrap();
    let file: ConfigFile = toml::from_str(FILE).unwrap();
    database_before_ids(&path, &key, &file).await;

    let store = Store::open(&path, &key).await.unwrap();
    assert_eq!(store.apps().await.unwrap(), file.apps);
    assert_eq!(store.accounts().await.unwrap(), file.accounts);
    let providers: Vec<serde_json::Value> = store.providers().await.unwrap();
    assert_eq!(providers, [serde_json::json!({"v": 1})]);
    assert_eq!(
        store
            .get_secret("account:ops_1:password")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "pw-ops"
    );
    assert_eq!(
        store.account_state("ops_1").await.unwrap(),
        Some(AccountState::NeedsSignIn {
            reason: "expired".into()
        })
    );
    assert_eq!(
        store.account_state("from-file").await.unwrap(),
        Some(AccountState::SignedIn)
    );
    for (account, folder, uid) in [
        ("ops_1", "INBOX", 7),
        ("ops_1", "Archive", 2),
        ("from-file", "INBOX", 9),
    ] {
        let cp: Option<serde_json::Value> = store.checkpoint(account, folder).await.unwrap();
        assert_eq!(
            cp,
            Some(serde_json::json!({ "uid": uid })),
            "{account} {folder}"
        );
    }

    // Every record got its own version 4 UUID; the file's account is known by name only.
    let ops = store.account_id("ops_1").await.unwrap().unwrap();
    let ids = [
        store.app_id("contoso").await.unwrap().unwrap().as_uuid(),
        store.provider_id("corp").await.unwrap().unwrap().as_uuid(),
        store
            .account_id("helpdesk")
            .await
            .unwrap()
            .unwrap()
            .as_uuid(),
        ops.as_uuid(),
        store
            .account_id("from-file")
            .await
            .unwrap()
            .unwrap()
            .as_uuid(),
    ];
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id.get_version_num(), 4, "{id}");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        assert!(!ids[..i].contains(id), "{id} given twice");
    }
    assert!(
        !store
            .accounts()
            .await
            .unwrap()
            .iter()
            .any(|a| a.name == "from-file")
    );
    store.close().await;

    // The ids are kept from now on: across a restart and a rename.
    let store = Store::open(&path, &key).await.unwrap();
    assert_eq!(store.account_id("ops_1").await.unwrap(), Some(ops));
    store.rename_account(ops, "ops").await.unwrap();
    let cp: Option<serde_json::Value> = store.checkpoint_by_id(ops, "INBOX").await.unwrap();
    assert_eq!(cp, Some(serde_json::json!({"uid": 7})));
    assert_eq!(
        store
            .get_secret("account:ops:password")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "pw-ops"
    );
}

/// An outbox from before migration 0011 (the message in the middle of the row): its
/// rows keep their ids, order, states and bytes, and `seq` goes on past a removed row.
#[tokio::test]
async fn an_outbox_from_before_the_message_moved_last_keeps_everything() {
    use mailbridge_store::NewOutboxMessage;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbridge.db");
    let key = MasterKey::generate().unwrap();
    // The store as it was: every migration before 0011, then a key check and rows.
    let migrations = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.as_str() < "0011" {
            std::fs::copy(entry.path(), migrations.path().join(&name)).unwrap();
        }
    }
    {
        let store = Store::open(&dir.path().join("seed.db"), &key)
            .await
            .unwrap();
        store.close().await;
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO accounts (id, name, address, config, created_at, updated_at)
         VALUES (randomblob(16), 'ops', 'ops@example.org', NULL, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (i, state) in ["sent", "queued", "queued"].iter().enumerate() {
        sqlx::query(
            "INSERT INTO outbox (id, account_id, idempotency_key, created_at, message,
               recipients, state, attempts, next_attempt_at)
             VALUES (randomblob(16), (SELECT id FROM accounts), ?, 0, ?, '[]', ?, 0, 0)",
        )
        .bind(format!("k{i}"))
        .bind(format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(20_000)).into_bytes())
        .bind(state)
        .execute(&pool)
        .await
        .unwrap();
    }
    // The newest row is gone: its seq (3) must not come back.
    sqlx::query("DELETE FROM outbox WHERE idempotency_key = 'k2'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // The key check the store expects: taken from a store made by the code.
    let seeded = SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::from_str(&format!(
                "sqlite://{}",
                dir.path().join("seed.db").display()
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    let meta: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT key, value FROM meta")
        .fetch_all(&seeded)
        .await
        .unwrap();
    seeded.close().await;
    let pool = SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).unwrap(),
        )
        .await
        .unwrap();
    for (k, v) in meta {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
            .bind(k)
            .bind(v)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = Store::open(&path, &key).await.unwrap();
    let rows = store.outbox_list(None).await.unwrap();
    let keys: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.idempotency_key.clone().unwrap(),
                r.state.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("k0".to_owned(), "sent".to_owned()),
            ("k1".to_owned(), "queued".to_owned())
        ]
    );
    let account = store.account_id("ops").await.unwrap().unwrap();
    let queued = store
        .outbox_enqueue(
            NewOutboxMessage {
                account,
                idempotency_key: Some("k3".into()),
                message: b"Subject: 3\r\n\r\nnew\r\n".to_vec(),
                mail_from: None,
                recipients: Vec::new(),
            },
            1 << 20,
        )
        .await
        .unwrap();
    assert!(queued.created);
    let claimed = store
        .outbox_claim_next(
            "test",
            time::OffsetDateTime::now_utc(),
            std::time::Duration::from_mins(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.entry.idempotency_key.as_deref(), Some("k1"));
    assert!(claimed.message.starts_with(b"Subject: 1\r\n"));
    assert_eq!(
        claimed.message.len(),
        format!("Subject: 1\r\n\r\n{}\r\n", "x".repeat(20_000)).len()
    );
    store.close().await;
    let pool = SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).unwrap(),
        )
        .await
        .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM outbox WHERE idempotency_key = 'k3'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seq, 4, "a seq given before must never come back");
    // The message is the row's last column now, and claims have their indexes.
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('outbox')")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        columns.last().map(String::as_str),
        Some("message"),
        "{columns:?}"
    );
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for wanted in ["outbox_pending", "outbox_due", "outbox_sending"] {
        assert!(
            indexes.iter().any(|i| i == wanted),
            "{wanted} missing: {indexes:?}"
        );
    }
    // Parked deliveries likewise (0012).
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('parked')")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        columns.last().map(String::as_str),
        Some("message"),
        "{columns:?}"
    );
    pool.close().await;
}
