//! The outbox on both backends: idempotent queuing, the order of submission per
//! account across retries, leases, and claimers that never take the same message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mailbridge_store::{
    AccountId, MasterKey, NewOutboxMessage, OutboxId, OutboxState, Store, StoreError,
};
use mailbridge_types::{Clock as _, OffsetClock};

use super::Fixture;

const MAX: u64 = 1024 * 1024;
const LEASE: Duration = Duration::from_mins(10);

suite!(
    queuing_is_idempotent_per_account_and_bounded,
    each_account_sends_in_order_and_a_retrying_head_holds_its_account,
    a_sender_that_stops_while_sending_leaves_outcome_unknown,
    two_claimers_never_take_the_same_message_and_keep_each_accounts_order,
    counts_per_account_and_state,
);

async fn with_accounts(db: &Fixture, key: &MasterKey, names: &[&str]) -> (Store, Vec<AccountId>) {
    let store = db.open(key).await.unwrap();
    let mut ids = Vec::new();
    for name in names {
        ids.push(store.outbox_account_id(name).await.unwrap());
    }
    (store, ids)
}

fn message(account: AccountId, subject: &str, key: Option<&str>) -> NewOutboxMessage {
    NewOutboxMessage {
        account,
        idempotency_key: key.map(str::to_owned),
        message: format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n"
        )
        .into_bytes(),
        mail_from: Some("a@example.org".into()),
        recipients: vec!["b@example.org".into()],
    }
}

async fn queue(store: &Store, account: AccountId, subject: &str) -> OutboxId {
    store
        .outbox_enqueue(message(account, subject, None), MAX)
        .await
        .unwrap()
        .entry
        .id
}

async fn queuing_is_idempotent_per_account_and_bounded(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a", "b"]).await;
    let (a, b) = (ids[0], ids[1]);
    let first = store
        .outbox_enqueue(message(a, "one", Some("k1")), MAX)
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.entry.state, OutboxState::Queued);
    assert_eq!(first.entry.recipients, vec!["b@example.org".to_owned()]);
    assert_eq!(first.entry.attempts, 0);
    // The same key again: the first message, nothing new, whatever the bytes.
    let again = store
        .outbox_enqueue(message(a, "other bytes", Some("k1")), MAX)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.entry, first.entry);
    // The same key for another account is another message.
    let other = store
        .outbox_enqueue(message(b, "one", Some("k1")), MAX)
        .await
        .unwrap();
    assert!(other.created);
    assert_ne!(other.entry.id, first.entry.id);
    // No key: always a new message.
    queue(&store, a, "two").await;
    queue(&store, a, "two").await;
    assert_eq!(store.outbox_list(Some(a)).await.unwrap().len(), 3);
    assert_eq!(store.outbox_list(None).await.unwrap().len(), 4);
    // Bounded by the account's limit.
    let big = message(a, "big", Some("k2"));
    let limit = u64::try_from(big.message.len()).unwrap() - 1;
    let err = store.outbox_enqueue(big, limit).await.unwrap_err();
    assert!(matches!(err, StoreError::MessageTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("limits.max_message_size"), "{err}");
    // An unknown account.
    let err = store
        .outbox_enqueue(
            message(
                "00000000-0000-4000-8000-000000000000".parse().unwrap(),
                "x",
                None,
            ),
            MAX,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    // What survives a restart.
    store.close().await;
    let store = db.open(&key).await.unwrap();
    let got = store.outbox_get(first.entry.id).await.unwrap().unwrap();
    assert_eq!(got, first.entry);
    assert_eq!(
        got.size,
        u64::try_from(message(a, "one", None).message.len()).unwrap()
    );
}

async fn each_account_sends_in_order_and_a_retrying_head_holds_its_account(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a", "b"]).await;
    let clock = Arc::new(OffsetClock::new());
    let store = store.with_clock(clock.clone());
    let (a, b) = (ids[0], ids[1]);
    let a1 = queue(&store, a, "a1").await;
    let a2 = queue(&store, a, "a2").await;
    let b1 = queue(&store, b, "b1").await;
    let now = clock.now();

    let claim = store
        .outbox_claim_next("i1", now, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, a1);
    assert_eq!(claim.entry.state, OutboxState::Sending);
    assert_eq!(claim.entry.attempts, 1);
    assert_eq!(claim.entry.claimed_by.as_deref(), Some("i1"));
    assert!(String::from_utf8_lossy(&claim.message).contains("Subject: a1"));
    // a2 waits behind a1 (sending); b1 is b's head.
    let claim = store
        .outbox_claim_next("i1", now, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, b1);
    assert!(
        store
            .outbox_claim_next("i1", now, LEASE)
            .await
            .unwrap()
            .is_none()
    );

    // a1 fails for now: a waits for it, a2 included.
    let later = now + Duration::from_mins(1);
    store
        .outbox_mark_retry(a1, "i1", later, "the server is down", "transient")
        .await
        .unwrap();
    store
        .outbox_mark_sent(b1, "i1", now, Some("250 ok"))
        .await
        .unwrap();
    assert!(
        store
            .outbox_claim_next("i1", now, LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.outbox_next_due().await.unwrap(),
        Some(later.replace_nanosecond(0).unwrap())
    );
    let retrying = store.outbox_get(a1).await.unwrap().unwrap();
    assert_eq!(retrying.state, OutboxState::Retrying);
    assert_eq!(retrying.last_error.as_deref(), Some("the server is down"));
    assert_eq!(retrying.error_class.as_deref(), Some("transient"));
    assert!(retrying.claimed_by.is_none());
    let sent = store.outbox_get(b1).await.unwrap().unwrap();
    assert_eq!(sent.state, OutboxState::Sent);
    assert_eq!(sent.server_reply.as_deref(), Some("250 ok"));

    // Due: a1 again, then a2 once a1 is sent.
    let claim = store
        .outbox_claim_next("i1", later, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, a1);
    assert_eq!(claim.entry.attempts, 2);
    assert!(
        store
            .outbox_claim_next("i1", later, LEASE)
            .await
            .unwrap()
            .is_none()
    );
    store.outbox_mark_sent(a1, "i1", later, None).await.unwrap();
    let claim = store
        .outbox_claim_next("i1", later, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, a2);
    // A failed head does not hold its account.
    store
        .outbox_mark_failed(a2, "i1", "550 refused", "permanent")
        .await
        .unwrap();
    let a3 = queue(&store, a, "a3").await;
    let claim = store
        .outbox_claim_next("i1", later, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, a3);
    // Marking a message the instance does not hold is refused.
    let err = store
        .outbox_mark_sent(a3, "i2", later, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost { .. }), "{err}");
    let states: Vec<OutboxState> = store
        .outbox_list(Some(a))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        [OutboxState::Sent, OutboxState::Failed, OutboxState::Sending]
    );
}

async fn a_sender_that_stops_while_sending_leaves_outcome_unknown(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a"]).await;
    let now = store.now();
    let a1 = queue(&store, ids[0], "a1").await;
    let a2 = queue(&store, ids[0], "a2").await;
    let claim = store
        .outbox_claim_next("dead", now, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, a1);
    // Within the lease nobody else gets it, nor the account's next message.
    let within = now + Duration::from_mins(5);
    assert!(
        store
            .outbox_claim_next("live", within, LEASE)
            .await
            .unwrap()
            .is_none()
    );
    // A renewed lease holds longer; only its holder renews it.
    store
        .outbox_renew_claim(a1, "dead", now + Duration::from_mins(20))
        .await
        .unwrap();
    let err = store
        .outbox_renew_claim(a1, "live", now + Duration::from_hours(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost { .. }), "{err}");
    let renewed = now + Duration::from_mins(15);
    assert!(
        store
            .outbox_claim_next("live", renewed, LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.outbox_get(a1).await.unwrap().unwrap().state,
        OutboxState::Sending
    );
    // After it, a1 is outcome-unknown (never resent), and a2 goes on.
    let after = now + Duration::from_mins(20) + Duration::from_secs(1);
    let claim = store
        .outbox_claim_next("live", after, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry.id, a2);
    let lost = store.outbox_get(a1).await.unwrap().unwrap();
    assert_eq!(lost.state, OutboxState::OutcomeUnknown);
    assert!(
        lost.last_error
            .unwrap()
            .contains("dead stopped while sending")
    );
    let err = store
        .outbox_mark_sent(a1, "dead", after, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost { .. }), "{err}");
    store
        .outbox_mark_outcome_unknown(a2, "live", "the connection broke after the final dot")
        .await
        .unwrap();
    assert!(
        store
            .outbox_claim_next("live", after, LEASE)
            .await
            .unwrap()
            .is_none()
    );
}

async fn two_claimers_never_take_the_same_message_and_keep_each_accounts_order(db: Fixture) {
    const ACCOUNTS: usize = 6;
    const EACH: usize = 8;
    let key = MasterKey::generate().unwrap();
    let names: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (store, ids) = with_accounts(&db, &key, &refs).await;
    let mut order: HashMap<OutboxId, (AccountId, usize)> = HashMap::new();
    for n in 0..EACH {
        for account in &ids {
            let id = queue(&store, *account, &format!("{n}")).await;
            order.insert(id, (*account, n));
        }
    }
    // Two instances: two stores (two pools) on the same database.
    let other = db.open(&key).await.unwrap();
    let now = store.now();
    let ticket = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (name, store) in [("one", store.clone()), ("two", other.clone())] {
        let ticket = ticket.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                if let Some(claim) = store.outbox_claim_next(name, now, LEASE).await.unwrap() {
                    let t = ticket.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    got.push((t, claim.entry.id));
                    tokio::task::yield_now().await;
                    store
                        .outbox_mark_sent(claim.entry.id, name, now, None)
                        .await
                        .unwrap();
                    continue;
                }
                // Nothing due: done, or the other claimer holds every due head.
                let all_sent = store
                    .outbox_list(None)
                    .await
                    .unwrap()
                    .iter()
                    .all(|e| e.state == OutboxState::Sent);
                if all_sent {
                    break;
                }
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    let mut claims: Vec<(usize, OutboxId)> = all.into_iter().flatten().collect();
    let unique: HashSet<OutboxId> = claims.iter().map(|(_, id)| *id).collect();
    assert_eq!(claims.len(), unique.len(), "a message was claimed twice");
    assert_eq!(unique.len(), ACCOUNTS * EACH, "every message was claimed");
    // Per account, claimed in the order queued, whichever claimer took each (an
    // account's next message is claimable only once the one before is sent).
    claims.sort_unstable();
    let mut next: HashMap<AccountId, usize> = HashMap::new();
    for (_, id) in &claims {
        let (account, n) = order[id];
        let expected = next.entry(account).or_insert(0);
        assert_eq!(*expected, n, "account order broken");
        *expected += 1;
    }
    let entries = store.outbox_list(None).await.unwrap();
    assert!(
        entries
            .iter()
            .all(|e| e.state == OutboxState::Sent && e.attempts == 1)
    );
}

async fn counts_per_account_and_state(db: Fixture) {
    let key = MasterKey::generate().unwrap();
    let (store, ids) = with_accounts(&db, &key, &["a", "b"]).await;
    assert!(store.outbox_counts().await.unwrap().is_empty());
    store
        .outbox_enqueue(message(ids[0], "1", None), MAX)
        .await
        .unwrap();
    let claimed = store
        .outbox_claim_next("sender", store.now(), LEASE)
        .await
        .unwrap()
        .unwrap();
    store
        .outbox_mark_sent(claimed.entry.id, "sender", store.now(), Some("250 ok"))
        .await
        .unwrap();
    for (account, subject) in [(ids[0], "2"), (ids[1], "3"), (ids[1], "4")] {
        store
            .outbox_enqueue(message(account, subject, None), MAX)
            .await
            .unwrap();
    }
    let mut counts = store.outbox_counts().await.unwrap();
    counts.sort_by_key(|(a, s, _)| (ids.iter().position(|i| i == a), s.as_str()));
    assert_eq!(
        counts,
        [
            (ids[0], OutboxState::Queued, 1),
            (ids[0], OutboxState::Sent, 1),
            (ids[1], OutboxState::Queued, 2),
        ]
    );
}
