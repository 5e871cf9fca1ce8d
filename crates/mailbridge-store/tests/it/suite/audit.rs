//! The audit log, the settings and a user's role change, on both backends.

use mailbridge_store::audit::MAX_PAGE;
use mailbridge_store::{Actor, MasterKey, NewAuditEntry, NewUser, PasswordHash};
use mailbridge_types::access::Role;

use super::Fixture;

suite!(
    the_audit_log_keeps_who_what_and_where_newest_first_by_page,
    settings_are_set_replaced_and_removed,
    a_role_change_keeps_the_sessions_and_shows_at_once,
);

fn entry<'a>(actor: &'a str, action: &'a str, name: &'a str) -> NewAuditEntry<'a> {
    NewAuditEntry {
        actor_kind: Actor::Token,
        actor,
        action,
        object_kind: "app",
        object_id: Some("9b0c"),
        object_name: Some(name),
        client: "192.0.2.7",
    }
}

async fn the_audit_log_keeps_who_what_and_where_newest_first_by_page(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    assert!(store.audit_list(None, 10).await.unwrap().is_empty());
    let started = store.now().replace_nanosecond(0).unwrap();
    let first = store
        .audit_record(entry("ci", "create", "contoso"))
        .await
        .unwrap();
    let second = store
        .audit_record(NewAuditEntry {
            actor_kind: Actor::Person,
            actor: "alice",
            action: "delete",
            object_kind: "provider",
            object_id: None,
            object_name: None,
            client: "2001:db8::1",
        })
        .await
        .unwrap();
    assert!(second > first);
    for n in 0..5 {
        store
            .audit_record(entry("ci", "update", &format!("app{n}")))
            .await
            .unwrap();
    }
    let newest = store.audit_list(None, 3).await.unwrap();
    let names: Vec<_> = newest
        .iter()
        .map(|e| e.object_name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["app4", "app3", "app2"]);
    // The next page starts below the last seq seen, down to the first entry.
    let rest = store
        .audit_list(Some(newest[2].seq), MAX_PAGE + 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 4);
    let person = &rest[2];
    assert_eq!(person.actor_kind, Actor::Person);
    assert_eq!(person.actor, "alice");
    assert_eq!(person.action, "delete");
    assert_eq!(person.object_kind, "provider");
    assert_eq!(person.object_id, None);
    assert_eq!(person.client, "2001:db8::1");
    assert_eq!(rest[3].seq, first);
    assert_eq!(rest[3].object_id.as_deref(), Some("9b0c"));
    assert!(rest[3].at >= started && rest[3].at <= store.now());
    // A limit of 0 still answers one row; entries survive a restart.
    assert_eq!(store.audit_list(None, 0).await.unwrap().len(), 1);
    store.close().await;
    let store = db.open(&key).await.unwrap();
    assert_eq!(store.audit_list(None, 100).await.unwrap().len(), 7);
}

async fn settings_are_set_replaced_and_removed(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    assert_eq!(store.setting("notifications.account").await.unwrap(), None);
    store
        .put_setting("notifications.account", Some("helpdesk"))
        .await
        .unwrap();
    store
        .put_setting("default_language", Some("pl"))
        .await
        .unwrap();
    store
        .put_setting("notifications.account", Some("ops"))
        .await
        .unwrap();
    assert_eq!(
        store
            .setting("notifications.account")
            .await
            .unwrap()
            .as_deref(),
        Some("ops")
    );
    store.put_setting("default_language", None).await.unwrap();
    assert_eq!(store.setting("default_language").await.unwrap(), None);
    assert_eq!(
        store
            .setting("notifications.account")
            .await
            .unwrap()
            .as_deref(),
        Some("ops")
    );
}

async fn a_role_change_keeps_the_sessions_and_shows_at_once(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let store = db.open(&key).await.unwrap();
    let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$00".to_owned());
    let bob = store
        .add_user(NewUser {
            name: "bob",
            role: Role::User,
            password: &hash,
            language: None,
        })
        .await
        .unwrap();
    let session = "ab".repeat(32);
    store
        .add_web_session(
            &session,
            bob.id,
            "csrf",
            store.now() + time::Duration::hours(1),
        )
        .await
        .unwrap();
    let changed = store.set_user_role("bob", Role::Auditor).await.unwrap();
    assert_eq!(changed.role, Role::Auditor);
    let found = store.find_web_session(&session).await.unwrap().unwrap();
    assert_eq!(found.user.role, Role::Auditor);
    assert!(matches!(
        store.set_user_role("nobody", Role::User).await.unwrap_err(),
        mailbridge_store::StoreError::NotFound { .. }
    ));
}
