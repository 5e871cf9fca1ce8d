//! Apps, accounts, providers and checkpoints kept in the store.

use mailbridge_store::{MasterKey, SecretKind, Store};
use mailbridge_types::config::{AccountConfig, AppConfig, ConfigFile};
use secrecy::{ExposeSecret as _, SecretString};

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

async fn store(dir: &std::path::Path) -> Store {
    let key = MasterKey::load_or_create_file(&dir.join("master.key")).unwrap();
    Store::open(&dir.join("db.sqlite"), &key).await.unwrap()
}

#[tokio::test]
async fn accounts_and_apps_round_trip_and_removal_takes_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file: ConfigFile = toml::from_str(FILE).unwrap();
    {
        let store = store(dir.path()).await;
        for app in &file.apps {
            store.put_app(app).await.unwrap();
        }
        for account in &file.accounts {
            store.put_account(account).await.unwrap();
        }
        let now = store.now();
        for (id, kind) in [
            ("account:ops_1:password", SecretKind::Password),
            ("account:ops_1:refresh-token", SecretKind::RefreshToken),
            ("account:ops%1:password", SecretKind::Password),
        ] {
            store
                .put_secret(id, kind, &SecretString::from("s3cret"), None, now)
                .await
                .unwrap();
        }
        store
            .set_checkpoint("ops_1", "INBOX", &serde_json::json!({"kind": "start"}))
            .await
            .unwrap();
        store.close().await;
    }
    let store = store(dir.path()).await;
    let apps: Vec<AppConfig> = store.apps().await.unwrap();
    assert_eq!(apps, file.apps);
    let mut accounts: Vec<AccountConfig> = store.accounts().await.unwrap();
    accounts.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(accounts, file.accounts);
    assert_eq!(accounts[1].login_name(), "ops");
    assert!(accounts[1].outgoing_side().is_none());
    // By name or by address, in any case.
    let by_address = store.account("OPS@example.org").await.unwrap().unwrap();
    assert_eq!(by_address.name, "ops_1");
    let cp: Option<serde_json::Value> = store.checkpoint("ops_1", "INBOX").await.unwrap();
    assert_eq!(cp.unwrap()["kind"], "start");

    assert!(store.remove_account("ops_1").await.unwrap());
    assert!(!store.remove_account("ops_1").await.unwrap());
    assert!(store.account("ops_1").await.unwrap().is_none());
    assert!(
        store
            .get_secret("account:ops_1:password")
            .await
            .unwrap()
            .is_none()
    );
    let cp: Option<serde_json::Value> = store.checkpoint("ops_1", "INBOX").await.unwrap();
    assert!(cp.is_none());
    // `_` and `%` in a name are not wildcards: another account's secret stays.
    assert_eq!(
        store
            .get_secret("account:ops%1:password")
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "s3cret"
    );
}
