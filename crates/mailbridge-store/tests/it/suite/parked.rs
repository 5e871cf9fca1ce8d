//! Parked deliveries on both backends: parking is idempotent per key and bounded,
//! pages, claims under a lease that two workers never share, failed retries, delivery
//! with and without a pending source action, retry on demand and drop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mailbridge_store::{AccountId, MasterKey, NewParked, ParkedId, ParkedState, Store, StoreError};
use mailbridge_types::{Clock as _, OffsetClock};

use super::Fixture;

const MAX: u64 = 1024 * 1024;
const LEASE: Duration = Duration::from_mins(10);

suite!(
    parking_is_idempotent_per_key_bounded_and_listed_by_page,
    a_claimed_row_is_retried_by_one_worker_and_recorded,
    delivered_rows_go_or_wait_for_their_source_action,
    retry_now_and_drop_act_on_one_row,
    two_workers_never_claim_the_same_row,
);

async fn with_accounts(db: &Fixture, key: &MasterKey, names: &[&str]) -> (Store, Vec<AccountId>) {
    let store = db.open(key).await.unwrap();
    let mut ids = Vec::new();
    for name in names {
        ids.push(store.outbox_account_id(name).await.unwrap());
    }
    (store, ids)
}

fn new(store: &Store, account: AccountId, uid: u32) -> NewParked {
    NewParked {
        account,
        account_name: "alice".into(),
        folder: "INBOX".into(),
        source_id: uid.to_string(),
        message_ref: serde_json::json!({"imap": {"uid_validity": 7, "uid": uid}}),
        idempotency_key: format!("key-{uid}"),
        route: "all".into(),
        remaining_sinks: vec!["hook".into(), "relay".into()],
        source_action: serde_json::json!({"action": "mark-read"}),
        message: format!("Subject: {uid}\r\n\r\nbody\r\n").into_bytes(),
        attempts: 3,
        error: "the webhook answered 503".into(),
        error_class: "transient".into(),
        next_attempt_at: store.now(),
    }
}

async fn parking_is_idempotent_per_key_bounded_and_listed_by_page(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a", "b"]).await;
    let (a, b) = (ids[0], ids[1]);
    let first = store.parked_park(new(&store, a, 1), MAX).await.unwrap();
    assert!(first.created);
    let e = &first.entry;
    assert_eq!(e.state, ParkedState::Parked);
    assert_eq!(e.remaining_sinks, ["hook", "relay"]);
    assert_eq!(e.attempts, 3);
    assert_eq!(e.last_error, "the webhook answered 503");
    assert_eq!(e.error_class, "transient");
    assert_eq!(e.message_ref["imap"]["uid"], 1);
    assert_eq!(e.source_action["action"], "mark-read");
    assert_eq!(e.size, "Subject: 1\r\n\r\nbody\r\n".len() as u64);
    assert_eq!(e.claimed_by, None);

    // The same key again: the first row, unchanged.
    let mut again = new(&store, a, 1);
    again.error = "other".into();
    let again = store.parked_park(again, MAX).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.entry, first.entry);
    // Over the account's limit: refused, nothing written.
    let err = store.parked_park(new(&store, a, 2), 5).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MessageTooLarge { max: 5, .. }),
        "{err}"
    );
    // An unknown account: refused.
    let ghost = AccountId::from_uuid(uuid::Uuid::new_v4());
    assert!(matches!(
        store.parked_park(new(&store, ghost, 3), MAX).await,
        Err(StoreError::NotFound {
            kind: "account",
            ..
        })
    ));

    for uid in 2..=6 {
        store.parked_park(new(&store, a, uid), MAX).await.unwrap();
    }
    store.parked_park(new(&store, b, 1), MAX).await.unwrap();
    // Pages of two, in the order parked, per account.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.parked_list(Some(a), after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|e| e.seq);
        seen.extend(page.into_iter().map(|e| e.source_id));
    }
    assert_eq!(seen, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(store.parked_list(None, None, 100).await.unwrap().len(), 7);
    assert_eq!(store.parked_count(Some(b)).await.unwrap(), 1);
    assert_eq!(store.parked_count(None).await.unwrap(), 7);
    let found = store.parked_find(a, "INBOX", "4").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].idempotency_key, "key-4");
    assert!(
        store
            .parked_find(a, "Archive", "4")
            .await
            .unwrap()
            .is_empty()
    );

    // Kept across a restart; removing the account takes its rows.
    store.close().await;
    let store = db.open(&key).await.unwrap();
    assert_eq!(
        store.parked_get(first.entry.id).await.unwrap(),
        Some(first.entry.clone())
    );
    // (An account known by name only: removed, though it had no configuration.)
    store.remove_account("a").await.unwrap();
    assert_eq!(store.parked_count(None).await.unwrap(), 1);
    assert_eq!(store.parked_get(first.entry.id).await.unwrap(), None);
}

async fn a_claimed_row_is_retried_by_one_worker_and_recorded(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a"]).await;
    let clock = Arc::new(OffsetClock::new());
    let store = store.with_clock(clock.clone());
    let id = store
        .parked_park(new(&store, ids[0], 1), MAX)
        .await
        .unwrap()
        .entry
        .id;
    let claimed = store
        .parked_claim_due("w1", clock.now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.entry.id, id);
    assert_eq!(claimed.message, b"Subject: 1\r\n\r\nbody\r\n");
    assert_eq!(claimed.entry.claimed_by.as_deref(), Some("w1"));
    // Claimed: no one else takes it while the lease lasts.
    assert!(
        store
            .parked_claim_due("w2", clock.now(), LEASE)
            .await
            .unwrap()
            .is_none()
    );
    // The hook accepted, the relay refused again: only the relay remains.
    let next = clock.now() + Duration::from_mins(5);
    assert!(
        store
            .parked_record_failure(
                id,
                "w1",
                next,
                "relay said 451",
                "transient",
                &["relay".into()]
            )
            .await
            .unwrap()
    );
    let e = store.parked_get(id).await.unwrap().unwrap();
    assert_eq!(e.attempts, 4);
    assert_eq!(e.remaining_sinks, ["relay"]);
    assert_eq!(e.last_error, "relay said 451");
    assert_eq!(e.claimed_by, None);
    assert_eq!(e.next_attempt_at.unix_timestamp(), next.unix_timestamp());
    assert_eq!(
        store
            .parked_next_due()
            .await
            .unwrap()
            .map(time::OffsetDateTime::unix_timestamp),
        Some(next.unix_timestamp())
    );
    // Not due before its time; a worker whose claim ended records nothing.
    assert!(
        store
            .parked_claim_due("w2", clock.now(), LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .parked_record_failure(id, "w1", next, "late", "transient", &[])
            .await
            .unwrap()
    );
    clock.advance(time::Duration::minutes(6));
    let claimed = store
        .parked_claim_due("w2", clock.now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.entry.remaining_sinks, ["relay"]);
    // w2 stops without a word: once its lease ended, the row is due again.
    clock.advance(time::Duration::seconds(601));
    let claimed = store
        .parked_claim_due("w3", clock.now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.entry.claimed_by.as_deref(), Some("w3"));
    assert!(
        !store
            .parked_mark_delivered(id, "w2", clock.now(), false)
            .await
            .unwrap(),
        "the claim is w3's"
    );
}

async fn delivered_rows_go_or_wait_for_their_source_action(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a"]).await;
    let keep = store
        .parked_park(new(&store, ids[0], 1), MAX)
        .await
        .unwrap();
    let act = store
        .parked_park(new(&store, ids[0], 2), MAX)
        .await
        .unwrap();
    for _ in 0..2 {
        let c = store
            .parked_claim_due("w", store.now(), LEASE)
            .await
            .unwrap()
            .unwrap();
        let pending = c.entry.id == act.entry.id;
        assert!(
            store
                .parked_mark_delivered(c.entry.id, "w", store.now(), pending)
                .await
                .unwrap()
        );
    }
    // Nothing to do at the source: gone. A source action to do: waits, not retried.
    assert_eq!(store.parked_get(keep.entry.id).await.unwrap(), None);
    let waiting = store.parked_get(act.entry.id).await.unwrap().unwrap();
    assert_eq!(waiting.state, ParkedState::Delivered);
    assert!(waiting.remaining_sinks.is_empty());
    assert!(waiting.delivered_at.is_some());
    assert!(
        store
            .parked_claim_due("w", store.now() + Duration::from_hours(1), LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.parked_next_due().await.unwrap(), None);
    assert_eq!(store.parked_count(None).await.unwrap(), 0);
    let pending = store
        .parked_pending_actions(ids[0], "INBOX", 10)
        .await
        .unwrap();
    assert_eq!(pending, std::slice::from_ref(&waiting));
    assert!(
        store
            .parked_pending_actions(ids[0], "Archive", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A retry on demand does not apply to it; the watcher's report removes it.
    assert!(!store.parked_retry_now(waiting.id).await.unwrap());
    assert!(store.parked_source_action_done(waiting.id).await.unwrap());
    assert!(!store.parked_source_action_done(waiting.id).await.unwrap());
    assert!(store.parked_list(None, None, 10).await.unwrap().is_empty());
}

async fn retry_now_and_drop_act_on_one_row(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a"]).await;
    let mut later = new(&store, ids[0], 1);
    later.next_attempt_at = store.now() + Duration::from_hours(1);
    let later = store.parked_park(later, MAX).await.unwrap().entry.id;
    let mut other = new(&store, ids[0], 2);
    other.next_attempt_at = store.now() + Duration::from_hours(1);
    let other = store.parked_park(other, MAX).await.unwrap().entry.id;
    assert!(
        store
            .parked_claim_due("w", store.now(), LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.parked_retry_now(later).await.unwrap());
    let c = store
        .parked_claim_due("w", store.now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.entry.id, later, "only the row asked for is due");
    assert!(
        store
            .parked_claim_due("w", store.now(), LEASE)
            .await
            .unwrap()
            .is_none()
    );

    assert!(store.parked_drop(other).await.unwrap());
    assert!(!store.parked_drop(other).await.unwrap());
    assert!(!store.parked_retry_now(other).await.unwrap());
    let unknown = ParkedId::from_uuid(uuid::Uuid::new_v4());
    assert!(!store.parked_drop(unknown).await.unwrap());
    let left: Vec<ParkedId> = store
        .parked_list(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [later]);
    // A claimed row can be dropped too: its worker's report then changes nothing.
    assert!(store.parked_drop(later).await.unwrap());
    assert!(
        !store
            .parked_mark_delivered(later, "w", store.now(), false)
            .await
            .unwrap()
    );
}

async fn two_workers_never_claim_the_same_row(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a", "b"]).await;
    for uid in 0..20 {
        store
            .parked_park(new(&store, ids[uid as usize % 2], uid), MAX)
            .await
            .unwrap();
    }
    let other = db.open(&key).await.unwrap();
    let work = |store: Store, name: &'static str| async move {
        let mut taken = Vec::new();
        while let Some(c) = store
            .parked_claim_due(name, store.now(), LEASE)
            .await
            .unwrap()
        {
            assert!(
                store
                    .parked_mark_delivered(c.entry.id, name, store.now(), false)
                    .await
                    .unwrap()
            );
            taken.push(c.entry.id);
        }
        taken
    };
    let (x, y) = tokio::join!(work(store.clone(), "x"), work(other, "y"));
    let all: HashSet<ParkedId> = x.iter().chain(&y).copied().collect();
    assert_eq!(x.len() + y.len(), 20, "each row once");
    assert_eq!(all.len(), 20);
    assert_eq!(store.parked_list(None, None, 100).await.unwrap().len(), 0);
}
