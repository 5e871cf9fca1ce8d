//! People of the web UI, their sessions and the setup token, on both backends.

use std::sync::Arc;
use std::time::Duration;

use mailbridge_store::{MasterKey, NewUser, PasswordHash, Store, StoreError};
use mailbridge_types::OffsetClock;
use mailbridge_types::access::Role;

use super::Fixture;

suite!(
    users_are_added_found_listed_and_changed,
    sessions_end_when_they_expire_or_the_user_changes,
    the_setup_token_makes_one_first_user_once,
);

fn phc(n: u8) -> PasswordHash {
    PasswordHash::new(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${n:02}"))
}

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn users_are_added_found_listed_and_changed(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    assert_eq!(store.user_count().await.unwrap(), 0);
    let hash = phc(1);
    let alice = store
        .add_user(NewUser {
            name: "alice",
            role: Role::Administrator,
            password: &hash,
            language: None,
        })
        .await
        .unwrap();
    let bob = store
        .add_user(NewUser {
            name: "bob",
            role: Role::Auditor,
            password: &phc(2),
            language: Some("pl"),
        })
        .await
        .unwrap();
    let err = store
        .add_user(NewUser {
            name: "alice",
            role: Role::User,
            password: &phc(3),
            language: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
    assert_eq!(store.user_count().await.unwrap(), 2);

    // Survives a restart; found by name with the hash; listed by name.
    store.close().await;
    let store = db.open(&key).await.unwrap();
    let (found, found_hash) = store.user_with_password("alice").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert_eq!(found_hash, hash);
    assert!(!format!("{found_hash:?}").contains("argon2id"));
    assert!(store.user_with_password("carol").await.unwrap().is_none());
    let listed = store.users().await.unwrap();
    assert_eq!(listed, [alice.clone(), bob.clone()]);
    assert_eq!(listed[1].language.as_deref(), Some("pl"));

    // Password, language and disabled change; an unknown name is not found.
    store.set_user_password("alice", &phc(4)).await.unwrap();
    assert_eq!(
        store.user_with_password("alice").await.unwrap().unwrap().1,
        phc(4)
    );
    let bob = store.set_user_language("bob", Some("de")).await.unwrap();
    assert_eq!(bob.language.as_deref(), Some("de"));
    let bob = store.set_user_disabled("bob", true).await.unwrap();
    assert!(bob.disabled);
    assert!(store.users().await.unwrap()[1].disabled);
    assert!(matches!(
        store.set_user_disabled("carol", true).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn sessions_end_when_they_expire_or_the_user_changes(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(OffsetClock::new());
    let store: Store = db.open(&key).await.unwrap().with_clock(clock.clone());
    let alice = store
        .add_user(NewUser {
            name: "alice",
            role: Role::User,
            password: &phc(1),
            language: None,
        })
        .await
        .unwrap();
    let hour = store.now() + Duration::from_hours(1);
    store
        .add_web_session(&sha(1), alice.id, "csrf-1", hour)
        .await
        .unwrap();
    store
        .add_web_session(
            &sha(2),
            alice.id,
            "csrf-2",
            store.now() + Duration::from_mins(1),
        )
        .await
        .unwrap();

    let session = store.find_web_session(&sha(1)).await.unwrap().unwrap();
    assert_eq!(session.user, alice);
    assert_eq!(session.csrf_token, "csrf-1");
    assert!(!format!("{session:?}").contains("csrf-1"));
    assert!(store.find_web_session(&sha(9)).await.unwrap().is_none());

    // After 2 minutes the short session is gone, the other is seen at the new time.
    clock.advance(time::Duration::seconds(120));
    assert!(store.find_web_session(&sha(2)).await.unwrap().is_none());
    let session = store.find_web_session(&sha(1)).await.unwrap().unwrap();
    assert_eq!(
        session.last_seen_at.unix_timestamp(),
        store.now().unix_timestamp()
    );
    assert_eq!(store.delete_expired_web_sessions().await.unwrap(), 1);

    // Signing out ends one session.
    store
        .add_web_session(&sha(3), alice.id, "csrf-3", hour)
        .await
        .unwrap();
    assert!(store.delete_web_session(&sha(3)).await.unwrap());
    assert!(!store.delete_web_session(&sha(3)).await.unwrap());
    assert!(store.find_web_session(&sha(3)).await.unwrap().is_none());

    // A new language keeps sessions; a new password ends them.
    store.set_user_language("alice", Some("fr")).await.unwrap();
    let session = store.find_web_session(&sha(1)).await.unwrap().unwrap();
    assert_eq!(session.user.language.as_deref(), Some("fr"));
    store.set_user_password("alice", &phc(2)).await.unwrap();
    assert!(store.find_web_session(&sha(1)).await.unwrap().is_none());

    // Disabling ends them too, and enabling does not bring them back.
    store
        .add_web_session(&sha(4), alice.id, "csrf-4", hour)
        .await
        .unwrap();
    store.set_user_disabled("alice", true).await.unwrap();
    store.set_user_disabled("alice", false).await.unwrap();
    assert!(store.find_web_session(&sha(4)).await.unwrap().is_none());
}

fn admin<'a>(name: &'a str, password: &'a PasswordHash) -> NewUser<'a> {
    NewUser {
        name,
        role: Role::Administrator,
        password,
        language: None,
    }
}

async fn the_setup_token_makes_one_first_user_once(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(OffsetClock::new());
    let store: Store = db.open(&key).await.unwrap().with_clock(clock.clone());
    let hash = phc(1);
    let admin = |name| admin(name, &hash);
    let in_ten_minutes = store.now() + Duration::from_mins(10);

    // An unknown token does nothing.
    assert!(!store.setup_token_valid(&sha(1)).await.unwrap());
    assert!(
        store
            .add_first_user_with_setup_token(&sha(1), admin("root"))
            .await
            .unwrap()
            .is_none()
    );

    // Only the last token printed works, once.
    store
        .put_setup_token(&sha(1), in_ten_minutes)
        .await
        .unwrap();
    store
        .put_setup_token(&sha(2), in_ten_minutes)
        .await
        .unwrap();
    assert!(!store.setup_token_valid(&sha(1)).await.unwrap());
    assert!(store.setup_token_valid(&sha(2)).await.unwrap());
    let root = store
        .add_first_user_with_setup_token(&sha(2), admin("root"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(root.role, Role::Administrator);
    assert!(!store.setup_token_valid(&sha(2)).await.unwrap());
    assert!(
        store
            .add_first_user_with_setup_token(&sha(2), admin("other"))
            .await
            .unwrap()
            .is_none()
    );

    // A fresh token does not make a second "first" user while one exists, and is
    // not used up by trying.
    store
        .put_setup_token(&sha(3), in_ten_minutes)
        .await
        .unwrap();
    assert!(
        store
            .add_first_user_with_setup_token(&sha(3), admin("other"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.setup_token_valid(&sha(3)).await.unwrap());
    assert_eq!(store.user_count().await.unwrap(), 1);

    // An expired token is refused.
    clock.advance(time::Duration::seconds(601));
    assert!(!store.setup_token_valid(&sha(3)).await.unwrap());
}
