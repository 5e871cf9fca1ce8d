//! Parked deliveries against real Dovecot, SQLite, a loopback webhook receiver,
//! scripted SMTP relays and a folder sink: a refusing webhook parks its messages while
//! the messages behind them go on, and once it accepts each is delivered exactly once
//! and its source action done; a relay refusing for good parks at once and a retry on
//! demand delivers; a crash between parking and the checkpoint loses nothing and
//! delivers nothing twice; a dropped row is never delivered.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbridge_connector::parked::{ParkedOutcome, ParkedSettings, ParkedWorker, SinkLookup};
use mailbridge_connector::watcher::pipeline::watch_checkpoint_key;
use mailbridge_connector::watcher::{AnySink, SinkSet, WatcherState};
use mailbridge_mailbox::mailbox::Checkpoint;
use mailbridge_sinks::folder::FolderSink;
use mailbridge_sinks::relay::{RelayConfig, RelaySink};
use mailbridge_sinks::route::{Conditions, Route, SourceAction};
use mailbridge_smtp::{SmtpConfig, TlsMode};
use mailbridge_store::{ParkedEntry, ParkedState};
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_types::backoff::Backoff;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::watcher::{
    ALICE, DEADLINE, QUICK, World, eml_files, event, idle, receiver, route, subjects_of, world,
};

/// The rows of the test's account, every state.
async fn rows(w: &World) -> Vec<ParkedEntry> {
    w.store
        .parked_list(Some(w.account_id), None, 100)
        .await
        .unwrap()
}

/// Waits (looking every 50 ms, up to the deadline) until the rows satisfy `want`.
async fn rows_until(w: &World, what: &str, want: impl Fn(&[ParkedEntry]) -> bool) {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if want(&rows(w).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if found.is_err() {
        let left = rows(w).await;
        assert!(
            found.is_ok(),
            "the parked rows never became {what}: {left:#?}"
        );
    }
}

fn settings(w: &World) -> ParkedSettings {
    let mut s = ParkedSettings::new(w.dir.path().join("parked-spool"));
    s.backoff = QUICK.delivery;
    // Only the rows' own times and a retry on demand may wake the worker in time.
    s.poll_interval = Duration::from_hours(1);
    s
}

fn fixed(sinks: &Arc<SinkSet>) -> SinkLookup {
    let sinks = sinks.clone();
    Arc::new(move |_| Some(sinks.clone()))
}

fn subject_route(name: &str, subject: &str, sinks: &[&str], then: SourceAction) -> Route {
    Route {
        name: name.into(),
        when: Conditions {
            subject: Some(subject.into()),
            ..Conditions::default()
        },
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
        then,
    }
}

async fn seen(w: &World) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = w
        .mail
        .mail_store()
        .list(ALICE, "INBOX")
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            let header = String::from_utf8_lossy(&m.header).into_owned();
            let subject = header
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_owned();
            (subject, m.seen)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_refusing_webhook_parks_while_the_rest_goes_on_then_each_is_delivered_once() {
    let w = world().await;
    let hook = receiver(503).await;
    let out = w.dir.path().join("out");
    let sinks = {
        let mut s = SinkSet::new();
        s.insert(
            "folder",
            AnySink::Folder(FolderSink::open(&out).await.unwrap()),
        );
        s.insert("hook", hook.sink());
        Arc::new(s)
    };
    let routes = vec![
        subject_route(
            "alerts",
            "alert*",
            &["folder", "hook"],
            SourceAction::MarkRead,
        ),
        route("folder"),
    ];
    for subject in ["alert 1", "alert 2", "note 3"] {
        w.append(subject).await;
    }
    let mut config = w.config(routes);
    config.park_after = 2;
    let (events, mut rx) = broadcast::channel(256);
    let (watcher, _) = w.start(config, sinks.clone(), &events);

    // "alert 1" is refused twice (the round backs off in between) and parked; the
    // hook is down, so "alert 2" is parked at its first refusal; "note 3" goes on.
    event(&mut rx, "waiting after the first 503", |s| {
        matches!(s, WatcherState::WaitingUntil { .. })
    })
    .await;
    event(&mut rx, "idle after parking", idle).await;
    let parked = rows(&w).await;
    let summary: Vec<(String, u32, ParkedState)> = parked
        .iter()
        .map(|r| (r.route.clone(), r.attempts, r.state))
        .collect();
    assert_eq!(
        summary,
        [
            ("alerts".to_owned(), 2, ParkedState::Parked),
            ("alerts".to_owned(), 1, ParkedState::Parked)
        ]
    );
    for row in &parked {
        assert_eq!(row.remaining_sinks, ["hook"], "the folder accepted it");
        assert!(row.last_error.contains("503"), "{}", row.last_error);
        assert_eq!(row.error_class, "transient");
        assert_eq!(row.source_action["action"], "mark-read");
        assert!(row.size > 0);
    }
    assert_eq!(hook.subjects(503).len(), 3, "two tries, then one");
    assert_eq!(
        subjects_of(&eml_files(&out)),
        ["alert 1", "alert 2", "note 3"]
    );
    let Some(Checkpoint::Imap { last_uid, .. }) = w.checkpoint().await else {
        panic!("no IMAP checkpoint");
    };
    assert_eq!(last_uid, 3, "the checkpoint is past the parked messages");
    // Parked messages are not acted on at the source yet.
    assert!(seen(&w).await.iter().all(|(_, seen)| !seen));

    // The receiver is back: the worker delivers each parked message once.
    hook.status.store(200, Ordering::SeqCst);
    let worker = Arc::new(ParkedWorker::new(
        w.store.clone(),
        fixed(&sinks),
        settings(&w),
    ));
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (worker, cancel) = (worker.clone(), cancel.clone());
        async move { worker.run(cancel).await }
    });
    // Delivered; a watcher round that runs meanwhile may already have done their
    // source action and removed them (they were parked above, so none left means
    // delivered and acted on).
    rows_until(&w, "delivered", |r| {
        (r.len() == 2 && r.iter().all(|r| r.state == ParkedState::Delivered)) || r.is_empty()
    })
    .await;
    let mut delivered = hook.subjects(200);
    delivered.sort();
    assert_eq!(delivered, ["alert 1", "alert 2"]);
    assert_eq!(w.store.parked_count(None).await.unwrap(), 0);

    // The watcher's next round does their source action and removes the rows.
    w.append("note 4").await;
    rows_until(&w, "gone", <[ParkedEntry]>::is_empty).await;
    assert_eq!(
        seen(&w).await,
        [
            ("alert 1".to_owned(), true),
            ("alert 2".to_owned(), true),
            ("note 3".to_owned(), false),
            ("note 4".to_owned(), false),
        ]
    );
    event(&mut rx, "idle after note 4", idle).await;
    cancel.cancel();
    task.await.unwrap();
    watcher.stop().await;
    // Nothing twice: the folder has each message once, the hook took each alert once.
    assert_eq!(
        subjects_of(&eml_files(&out)),
        ["alert 1", "alert 2", "note 3", "note 4"]
    );
    let mut accepted = hook.subjects(200);
    accepted.sort();
    assert_eq!(accepted, ["alert 1", "alert 2"]);
}

/// An SMTP relay that refuses every recipient for good.
async fn refusing_relay() -> HostileServer {
    HostileServer::start(vec![
        Step::Send(b"220 relay ESMTP\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 relay\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"550 5.7.1 Relaying denied\r\n".to_vec()),
        Step::ReadLine,
        Step::Close,
    ])
    .await
}

/// An SMTP relay that takes one message per connection.
async fn accepting_relay() -> HostileServer {
    HostileServer::start(vec![
        Step::Send(b"220 relay ESMTP\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 relay\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 2.1.5 Ok\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"354 End data with <CR><LF>.<CR><LF>\r\n".to_vec()),
        Step::ReadUntil(b".\r\n".to_vec()),
        Step::Send(b"250 2.0.0 Ok: queued as 4F2A\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"221 2.0.0 Bye\r\n".to_vec()),
        Step::Close,
    ])
    .await
}

fn relay_set(server: &HostileServer) -> Arc<SinkSet> {
    let mut c = RelayConfig::new(SmtpConfig::new("127.0.0.1", server.port(), TlsMode::None));
    c.received_header = false;
    let mut s = SinkSet::new();
    s.insert("relay", AnySink::Relay(Box::new(RelaySink::new(c))));
    Arc::new(s)
}

#[tokio::test]
async fn a_relay_refusing_for_good_parks_at_once_and_a_retry_on_demand_delivers() {
    let w = world().await;
    let refusing = refusing_relay().await;
    w.append("invoice 7").await;
    let (events, mut rx) = broadcast::channel(256);
    let (watcher, _) = w.start(
        w.config(vec![route("relay")]),
        relay_set(&refusing),
        &events,
    );
    event(&mut rx, "idle after parking", idle).await;
    let parked = rows(&w).await;
    assert_eq!(parked.len(), 1);
    let id = parked[0].id;
    assert_eq!(
        parked[0].attempts, 1,
        "a refusal for good is not retried first"
    );
    assert_eq!(parked[0].error_class, "permanent");
    assert!(
        parked[0].last_error.contains("550"),
        "{}",
        parked[0].last_error
    );
    assert_eq!(refusing.connections(), 1);

    // The worker retries it (a retry on demand makes it due now): still refused, and
    // then not due again before its backoff.
    let current = Arc::new(Mutex::new(relay_set(&refusing)));
    let lookup: SinkLookup = {
        let current = current.clone();
        Arc::new(move |_| Some(current.lock().unwrap().clone()))
    };
    // A row refused again waits an hour: only a retry on demand brings it back in
    // the test's time.
    let hour = Duration::from_hours(1);
    let mut s = settings(&w);
    s.backoff = Backoff {
        floor: hour,
        base: hour,
        cap: hour,
    };
    let worker = Arc::new(ParkedWorker::new(w.store.clone(), lookup, s));
    let handle = worker.handle();
    assert!(handle.retry_now(id).await.unwrap());
    let before = time::OffsetDateTime::now_utc();
    let outcome = worker.retry_next().await.unwrap().unwrap();
    let ParkedOutcome::Retrying {
        at,
        remaining,
        error,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(remaining, ["relay"]);
    assert!(error.contains("550"), "{error}");
    assert!(at >= before + hour, "{at} {before}");
    assert!(worker.retry_next().await.unwrap().is_none(), "not due yet");
    assert_eq!(rows(&w).await[0].attempts, 2);

    // The relay is fixed; a retry on demand wakes the running worker (its poll
    // interval and the row's backoff are an hour), which delivers the message and
    // removes the row.
    let accepting = accepting_relay().await;
    *current.lock().unwrap() = relay_set(&accepting);
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (worker, cancel) = (worker.clone(), cancel.clone());
        async move { worker.run(cancel).await }
    });
    assert!(handle.retry_now(id).await.unwrap());
    rows_until(&w, "empty", <[ParkedEntry]>::is_empty).await;
    assert!(accepting.wait_ended(1, DEADLINE).await);
    let received = accepting.received_text();
    assert!(received.contains("Subject: invoice 7"), "{received}");
    assert_eq!(accepting.connections(), 1, "delivered once");
    assert!(
        !handle.retry_now(id).await.unwrap(),
        "nothing left to retry"
    );
    cancel.cancel();
    task.await.unwrap();
    watcher.stop().await;
}

#[tokio::test]
async fn a_crash_between_parking_and_the_checkpoint_loses_nothing_and_a_dropped_row_is_never_delivered()
 {
    let w = world().await;
    let hook = receiver(503).await;
    let sinks = {
        let mut s = SinkSet::new();
        s.insert("hook", hook.sink());
        Arc::new(s)
    };
    let config = || {
        let mut c = w.config(vec![route("hook")]);
        c.park_after = 1;
        c
    };
    w.append("kept").await;
    let (events, mut rx) = broadcast::channel(256);
    let (first, _) = w.start(config(), sinks.clone(), &events);
    event(&mut rx, "idle after parking", idle).await;
    first.stop().await;
    assert_eq!(rows(&w).await.len(), 1);
    // As if the watcher had died after parking and before storing its checkpoint.
    w.store
        .set_checkpoint_by_id(
            w.account_id,
            &watch_checkpoint_key("INBOX"),
            &Checkpoint::Start,
        )
        .await
        .unwrap();

    // The receiver accepts now; the restarted watcher lists the message again, finds
    // it parked and passes it: the worker delivers it, not the watcher.
    hook.status.store(200, Ordering::SeqCst);
    let (events, mut rx) = broadcast::channel(256);
    let (second, _) = w.start(config(), sinks.clone(), &events);
    event(&mut rx, "idle after the second round", idle).await;
    assert!(
        hook.subjects(200).is_empty(),
        "not delivered by the watcher"
    );
    assert!(matches!(
        w.checkpoint().await,
        Some(Checkpoint::Imap { last_uid: 1, .. })
    ));
    assert_eq!(rows(&w).await.len(), 1);

    // A second message parked and dropped by a person: never delivered.
    hook.status.store(503, Ordering::SeqCst);
    w.append("dropped").await;
    rows_until(&w, "two rows", |r| r.len() == 2).await;
    let dropped = rows(&w).await[1].id;
    let worker = Arc::new(ParkedWorker::new(
        w.store.clone(),
        fixed(&sinks),
        settings(&w),
    ));
    assert!(worker.handle().drop(dropped).await.unwrap());
    assert!(!worker.handle().drop(dropped).await.unwrap());
    assert_eq!(rows(&w).await.len(), 1);

    hook.status.store(200, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (worker, cancel) = (worker.clone(), cancel.clone());
        async move { worker.run(cancel).await }
    });
    rows_until(&w, "empty", <[ParkedEntry]>::is_empty).await;
    cancel.cancel();
    task.await.unwrap();
    second.stop().await;
    assert_eq!(hook.subjects(200), ["kept"]);
    assert_eq!(hook.subjects(503), ["kept", "dropped"]);
}
