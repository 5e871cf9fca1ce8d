//! Sinks, watches and leases on both backends.

use std::sync::Arc;
use std::time::Duration;

use mailbridge_store::{MasterKey, SecretKind, Store, StoreError, sink_secret_id};
use mailbridge_types::OffsetClock;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use super::Fixture;

suite!(
    sinks_keep_their_id_and_their_secret_goes_with_them,
    a_watch_per_account_goes_with_its_account,
    a_lease_has_one_holder_until_it_ends,
);

async fn sinks_keep_their_id_and_their_secret_goes_with_them(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    let hook = store
        .put_sink(
            "hook",
            &json!({"kind": "webhook", "url": "http://127.0.0.1:9/"}),
        )
        .await
        .unwrap();
    let folder = store
        .put_sink("archive", &json!({"kind": "folder", "path": "/srv/mail"}))
        .await
        .unwrap();
    assert_ne!(hook, folder);
    // Replacing by name keeps the id.
    let again = store
        .put_sink(
            "hook",
            &json!({"kind": "webhook", "url": "http://127.0.0.1:10/"}),
        )
        .await
        .unwrap();
    assert_eq!(again, hook);
    store
        .put_secret(
            &sink_secret_id(hook),
            SecretKind::ClientSecret,
            &SecretString::from("s3cret"),
            None,
            store.now(),
        )
        .await
        .unwrap();

    let all = store.sinks::<serde_json::Value>().await.unwrap();
    let names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["archive", "hook"]);
    assert_eq!(all[1].config["url"], "http://127.0.0.1:10/");

    // Renaming through the id; a name another sink has is refused.
    assert!(
        store
            .update_sink(hook, "alerts", &json!({"kind": "webhook"}))
            .await
            .unwrap()
    );
    let e = store
        .update_sink(hook, "archive", &json!({"kind": "webhook"}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Exists { kind: "sink", .. }),
        "{e:?}"
    );
    let read = store
        .sink::<serde_json::Value>(hook)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.name, "alerts");

    // A restart reads the same.
    drop(store);
    let store = db.open(&key).await.unwrap();
    assert_eq!(
        store
            .get_secret(&sink_secret_id(hook))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "s3cret"
    );
    assert!(store.remove_sink(hook).await.unwrap());
    assert!(!store.remove_sink(hook).await.unwrap());
    assert!(
        store
            .sink::<serde_json::Value>(hook)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_secret(&sink_secret_id(hook))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.sinks::<serde_json::Value>().await.unwrap().len(), 1);
}

async fn a_watch_per_account_goes_with_its_account(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    let a = store.outbox_account_id("a").await.unwrap();
    let b = store.outbox_account_id("b").await.unwrap();
    assert!(store.watch::<serde_json::Value>(a).await.unwrap().is_none());
    store
        .put_watch(a, &json!({"folder": "INBOX", "routes": []}))
        .await
        .unwrap();
    store
        .put_watch(b, &json!({"folder": "Support"}))
        .await
        .unwrap();
    store
        .put_watch(a, &json!({"folder": "Orders"}))
        .await
        .unwrap();
    assert_eq!(
        store.watch::<serde_json::Value>(a).await.unwrap().unwrap()["folder"],
        "Orders"
    );
    assert_eq!(store.watches::<serde_json::Value>().await.unwrap().len(), 2);
    assert!(store.remove_watch(b).await.unwrap());
    assert!(!store.remove_watch(b).await.unwrap());
    // Removing the account (here one known by name only) removes its watch.
    store.remove_account("a").await.unwrap();
    assert!(
        store
            .watches::<serde_json::Value>()
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_lease_has_one_holder_until_it_ends(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(OffsetClock::new());
    let store: Store = db.open(&key).await.unwrap().with_clock(clock.clone());
    let lease = Duration::from_secs(30);
    assert!(store.acquire_lease("watch:a", "one", lease).await.unwrap());
    assert!(!store.acquire_lease("watch:a", "two", lease).await.unwrap());
    assert_eq!(
        store.lease_holder("watch:a").await.unwrap().as_deref(),
        Some("one")
    );
    // Another name is another lease.
    assert!(store.acquire_lease("watch:b", "two", lease).await.unwrap());

    // Renewed by its holder, it runs on from now.
    clock.advance(time::Duration::seconds(20));
    assert!(store.acquire_lease("watch:a", "one", lease).await.unwrap());
    clock.advance(time::Duration::seconds(20));
    assert!(!store.acquire_lease("watch:a", "two", lease).await.unwrap());
    // Not renewed, it ends, and another holder takes it.
    clock.advance(time::Duration::seconds(11));
    assert_eq!(store.lease_holder("watch:a").await.unwrap(), None);
    assert!(store.acquire_lease("watch:a", "two", lease).await.unwrap());
    assert!(!store.acquire_lease("watch:a", "one", lease).await.unwrap());

    // Released, it is free at once; only its holder can release it.
    assert!(!store.release_lease("watch:a", "one").await.unwrap());
    assert!(store.release_lease("watch:a", "two").await.unwrap());
    assert!(store.acquire_lease("watch:a", "one", lease).await.unwrap());

    // Renewing all of a holder's leases at once: only those it still holds.
    assert!(store.acquire_lease("watch:c", "one", lease).await.unwrap());
    clock.advance(time::Duration::seconds(20));
    let mut renewed = store.renew_leases("one", lease).await.unwrap();
    renewed.sort();
    assert_eq!(renewed, ["watch:a", "watch:c"]);
    clock.advance(time::Duration::seconds(20));
    assert!(!store.acquire_lease("watch:c", "two", lease).await.unwrap());
    clock.advance(time::Duration::seconds(11));
    assert!(store.renew_leases("one", lease).await.unwrap().is_empty());
    assert!(store.acquire_lease("watch:c", "two", lease).await.unwrap());

    // Many instances racing for one lease: exactly one gets it.
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .acquire_lease("watch:race", &format!("i{i}"), lease)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap());
    }
    assert_eq!(won, 1);
}
