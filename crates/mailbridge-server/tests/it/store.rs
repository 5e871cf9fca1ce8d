//! The HTTP surface over the real store (SQLite): tokens issued into the store are
//! accepted with their role, revoked ones refused; `/readyz` follows the store.

use std::sync::Arc;

use mailbridge_server::metrics::Metrics;
use mailbridge_server::store_tokens::{StoreTokens, issue, issue_first, store_ready};
use mailbridge_server::{ApiLimits, AppState, app};
use mailbridge_store::{MasterKey, Store};
use mailbridge_types::access::Role;
use secrecy::ExposeSecret as _;

#[tokio::test]
async fn tokens_and_readiness_come_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let store = Store::open(&dir.path().join("mailbridge.db"), &key)
        .await
        .unwrap();
    let first = issue_first(&store).await.unwrap().unwrap();
    assert!(issue_first(&store).await.unwrap().is_none(), "made once");
    let (auditor, stored) = issue(&store, "audit", Role::Auditor, Some("carol"))
        .await
        .unwrap();
    assert_eq!(stored.role, Role::Auditor);
    // Only the hash is in the store.
    let listed = format!("{:?}", store.api_tokens().await.unwrap());
    assert!(!listed.contains(auditor.expose_secret()));

    let state = AppState {
        tokens: Arc::new(StoreTokens::new(store.clone())),
        metrics: Arc::new(Metrics::default()),
        ready: store_ready(store.clone()),
        limits: ApiLimits::default(),
        daemon: None,
        web: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    let http = reqwest::Client::new();
    let whoami = |token: &str| {
        http.get(format!("{base}/api/v1/whoami"))
            .bearer_auth(token)
            .send()
    };

    let me: serde_json::Value = whoami(first.expose_secret())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["token"], "first-admin");
    assert_eq!(me["role"], "administrator");
    let me: serde_json::Value = whoami(auditor.expose_secret())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "auditor");
    assert_eq!(me["user"], "carol");

    store.revoke_api_token("audit").await.unwrap();
    assert_eq!(whoami(auditor.expose_secret()).await.unwrap().status(), 401);
    assert_eq!(whoami(first.expose_secret()).await.unwrap().status(), 200);

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // The store closed: not ready, with the reason; a token cannot be checked.
    store.close().await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["code"], "not-ready");
    assert!(body["detail"].as_str().unwrap().contains("store"), "{body}");
    assert_eq!(whoami(first.expose_secret()).await.unwrap().status(), 500);
}
