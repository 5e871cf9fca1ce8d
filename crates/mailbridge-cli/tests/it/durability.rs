//! Crashes of `mailbridge serve`, through the real binary: `kill -9` during a drain of
//! 5,000 messages from Dovecot into a folder sink, then a restart (every message
//! there exactly once, nothing partial); and two instances on one PostgreSQL store,
//! the one watching the account killed (the other takes the account over once the
//! lease ends, and no message reaches the folder sink twice).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailbridge_testkit::mailservers::wire::{LineClient, literal_length};
use mailbridge_testkit::mailstore::MailStore;
use serde_json::{Value, json};

use super::daemon_world::{
    BOB, Daemon, SECRET, account_id, eventually, eventually_within, spawn, start, world,
    world_without_secret,
};

/// Messages in the drain.
const DRAIN: usize = 5_000;
/// Sessions filling the mailbox.
const FILLERS: usize = 4;
/// The drain on a busy 2-core machine in a debug build; only a failure waits this long.
const DRAIN_DEADLINE: Duration = Duration::from_mins(15);

/// Message `i`: its number in the subject and the Message-ID, and a body whose size
/// varies (about 1 to 9 KB), so a cut write would show.
fn message(prefix: &str, i: usize) -> Vec<u8> {
    let mut body = String::new();
    for line in 0..(16 + (i * 7) % 128) {
        let _ = write!(
            body,
            "{prefix} message {i}, line {line}: the quick brown fox jumps over the lazy dog.\r\n"
        );
    }
    format!(
        "From: Sender <sender@example.net>\r\n\
         To: Bob <{BOB}>\r\n\
         Subject: {prefix} {i}\r\n\
         Message-ID: <{prefix}-{i}@durability.test>\r\n\
         Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {body}"
    )
    .into_bytes()
}

/// The number in the Message-ID `<prefix-N@durability.test>` of a message.
fn number(prefix: &str, raw: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(raw);
    let start = format!("\r\nMessage-ID: <{prefix}-");
    let rest = &text[text.find(&start)? + start.len()..];
    rest[..rest.find('@')?].parse().ok()
}

/// The names in the folder a user (or a program) sees: not the dot entries.
fn visible(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// A session on Dovecot's plain IMAP port, logged in to Bob's mailbox with the
/// harness's store credential.
async fn imap_session(mail: &MailStore) -> LineClient {
    let config = mail.config();
    let mut c = LineClient::connect(config.imap).await.unwrap();
    c.read_line().await.unwrap();
    let login = format!("LOGIN \"{BOB}\" \"{}\"", config.store_secret);
    let answer = c.imap_command("l", &login).await.unwrap();
    assert!(answer.last().unwrap().starts_with("l OK"), "{answer:?}");
    c
}

/// Appends messages `0..count` to Bob's INBOX: `FILLERS` sessions, each sending its
/// APPENDs (LITERAL+) in pipelined windows, so the time goes to Dovecot's writes
/// rather than round trips.
async fn fill(mail: &MailStore, prefix: &'static str, count: usize) {
    const WINDOW: usize = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..FILLERS {
        let mail = mail.clone();
        tasks.spawn(async move {
            let mut c = imap_session(&mail).await;
            let mine: Vec<usize> = (k..count).step_by(FILLERS).collect();
            for window in mine.chunks(WINDOW) {
                let mut commands = Vec::new();
                for i in window {
                    let raw = message(prefix, *i);
                    commands.extend_from_slice(
                        format!("a{i} APPEND INBOX {{{}+}}\r\n", raw.len()).as_bytes(),
                    );
                    commands.extend_from_slice(&raw);
                    commands.extend_from_slice(b"\r\n");
                }
                c.send_raw(&commands).await.unwrap();
                for i in window {
                    let answer = c.read_imap_until_tagged(&format!("a{i}")).await.unwrap();
                    assert!(
                        answer.last().unwrap().starts_with(&format!("a{i} OK")),
                        "{answer:?}"
                    );
                }
            }
            let _ = c.imap_command("z", "LOGOUT").await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// What Dovecot holds in Bob's INBOX (one `UID FETCH 1:* BODY.PEEK[]`), by the number
/// in each message's Message-ID; every number from 0 to `count` - 1 exactly once.
async fn held(mail: &MailStore, prefix: &str, count: usize) -> Vec<Vec<u8>> {
    let mut c = imap_session(mail).await;
    let selected = c.imap_command("s", "SELECT INBOX").await.unwrap();
    assert!(selected.last().unwrap().starts_with("s OK"), "{selected:?}");
    c.send_line("f UID FETCH 1:* (BODY.PEEK[])").await.unwrap();
    let mut by_number: Vec<Option<Vec<u8>>> = vec![None; count];
    loop {
        let line = c.read_line().await.unwrap();
        if line.starts_with("f ") {
            assert!(line.starts_with("f OK"), "{line}");
            break;
        }
        if let Some(len) = literal_length(&line) {
            let raw = c.read_exact(len).await.unwrap();
            let n = number(prefix, &raw).expect("only our messages are in INBOX");
            assert!(n < count, "message {n} was never sent");
            assert!(by_number[n].is_none(), "Dovecot holds message {n} twice");
            by_number[n] = Some(raw);
        }
    }
    let _ = c.imap_command("z", "LOGOUT").await;
    by_number
        .into_iter()
        .enumerate()
        .map(|(n, raw)| raw.unwrap_or_else(|| panic!("Dovecot does not hold message {n}")))
        .collect()
}

/// Checks the folder's visible entries: each a `.eml` file whose bytes are exactly
/// what Dovecot holds for its message, each message at most once; returns how many
/// messages are there.
fn check_folder(dir: &Path, prefix: &str, dovecot: &[Vec<u8>]) -> usize {
    let mut seen = vec![false; dovecot.len()];
    for name in visible(dir) {
        assert!(
            Path::new(&name).extension() == Some("eml".as_ref()),
            "{name}: only complete .eml files are visible in the folder"
        );
        let raw = std::fs::read(dir.join(&name)).unwrap();
        let n = number(prefix, &raw)
            .unwrap_or_else(|| panic!("{name} is cut or not one of ours: {raw:?}"));
        assert!(n < dovecot.len(), "{name}: message {n} was never sent");
        assert!(
            raw == dovecot[n],
            "{name} (message {n}) differs from what Dovecot holds: {} bytes against {}",
            raw.len(),
            dovecot[n].len()
        );
        assert!(!seen[n], "message {n} is in the folder twice ({name})");
        seen[n] = true;
    }
    seen.iter().filter(|s| **s).count()
}

/// The `"delivered"` lines of a JSON log, as (idempotency key, already there).
fn deliveries(log: &str) -> Vec<(String, bool)> {
    let field = |line: &str, name: &str| -> Option<String> {
        let start = format!("\"{name}\":");
        let rest = &line[line.find(&start)? + start.len()..];
        Some(if let Some(quoted) = rest.strip_prefix('"') {
            quoted[..quoted.find('"')?].to_owned()
        } else {
            rest[..rest.find([',', '}'])?].to_owned()
        })
    };
    log.lines()
        .filter(|l| l.contains("\"message\":\"delivered\""))
        .map(|l| {
            let key = field(l, "key").unwrap_or_else(|| panic!("no key in {l}"));
            let again =
                field(l, "already_there").unwrap_or_else(|| panic!("no already_there in {l}"));
            (key, again == "true")
        })
        .collect()
}

/// Checks the deliveries of `logs` together: `expected` messages, each delivered once,
/// but for at most one batch delivered a second time that found its files there (the
/// batch in flight when a process was killed: its files placed, its checkpoint not).
fn check_deliveries(logs: &[&str], expected: usize) {
    let mut by_key: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for log in logs {
        for (key, again) in deliveries(log) {
            by_key.entry(key).or_default().push(again);
        }
    }
    assert_eq!(by_key.len(), expected, "messages delivered");
    let twice: Vec<(&String, &Vec<bool>)> = by_key.iter().filter(|(_, d)| d.len() > 1).collect();
    assert!(
        twice.len() <= mailbridge_connector::watcher::pipeline::BATCH,
        "only the batch in flight at the kill may be delivered again: {twice:?}"
    );
    for (key, d) in twice {
        assert_eq!(
            d.as_slice(),
            [false, true],
            "{key}: delivered again, and the folder sink must find it there"
        );
    }
}

async fn folder_sink_and_watch(d: &Daemon, admin: &str, bob: &str, path: &Path) {
    let (status, sink) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(admin),
            Some(json!({"name": "archive", "settings": {"kind": "folder", "path": path.display().to_string()}})),
        )
        .await;
    assert_eq!(status, 201, "{sink}");
    let (status, watch) = d
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{bob}/watch"),
            Some(admin),
            Some(json!({"routes": [{"name": "all", "sinks": ["archive"]}]})),
        )
        .await;
    assert_eq!(status, 200, "{watch}");
}

#[tokio::test]
async fn kill_9_during_a_drain_of_5000_messages_then_a_restart_delivers_each_exactly_once() {
    let w = world().await;
    let mail = w.mail.mail_store();
    let began = Instant::now();
    fill(&mail, "drain", DRAIN).await;
    eprintln!("filled in {:?}", began.elapsed());

    let d = start(&w).await;
    let admin = d.token.clone().expect("first start prints a token");
    let bob = account_id(&d, &admin, "bob-imap").await;
    folder_sink_and_watch(&d, &admin, &bob, &w.archive()).await;
    let archive = w.archive();
    eventually("a fifth of the drain reaches the folder", || {
        visible(&archive).len() >= DRAIN / 5
    })
    .await;
    let first_log = d.kill().await;
    eprintln!("killed at {:?}", began.elapsed());

    // Right after the crash: what is visible is complete, and the drain was cut.
    let dovecot = held(&mail, "drain", DRAIN).await;
    let at_kill = check_folder(&archive, "drain", &dovecot);
    eprintln!(
        "{at_kill} there at the kill; checked at {:?}",
        began.elapsed()
    );
    assert!(
        at_kill < DRAIN,
        "the drain ended before the kill: the test proves nothing"
    );

    // Restarted, it goes on from its checkpoint to the end.
    let d = start(&w).await;
    assert!(d.token.is_none());
    eventually_within("the whole drain reaches the folder", DRAIN_DEADLINE, || {
        visible(&archive).len() >= DRAIN
    })
    .await;
    eprintln!("drained at {:?}", began.elapsed());
    let second_log = d.stop().await;
    eprintln!("drained and stopped at {:?}", began.elapsed());
    assert_eq!(check_folder(&archive, "drain", &dovecot), DRAIN);
    eprintln!("checked at {:?}", began.elapsed());
    let tmp: Vec<_> = std::fs::read_dir(archive.join(".mailbridge-tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    check_deliveries(&[&first_log, &second_log], DRAIN);
    assert!(
        !deliveries(&first_log).is_empty() && !deliveries(&second_log).is_empty(),
        "both runs delivered"
    );
    assert!(!first_log.contains(SECRET) && !second_log.contains(SECRET));
    eprintln!("done at {:?}", began.elapsed());
}

/// The instance whose lease on the account runs now, if any.
async fn holder(store: &mailbridge_store::Store, lease: &str) -> Option<String> {
    store.lease_holder(lease).await.unwrap()
}

/// The account's watcher state as `instance` last saw it (null: it never ran there).
async fn watcher_state(d: &Daemon, admin: &str, bob: &str) -> Value {
    let (status, account) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/accounts/{bob}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{account}");
    account["watcher"]["state"]["state"].clone()
}

#[tokio::test]
async fn two_instances_on_postgresql_one_killed_the_other_takes_the_account_over_once() {
    const LEASE: Duration = Duration::from_secs(3);
    let w = world_without_secret().await;
    let url = mailbridge_testkit::postgres::fresh_database()
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL (scripts/install-deps): {e}"));
    // Two instances, each with its own data directory and the one master key.
    let data = [w.dir.path().join("data-a"), w.dir.path().join("data-b")];
    for dir in &data {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let key =
        mailbridge_store::MasterKey::load_or_create_file(&data[0].join("master.key")).unwrap();
    std::fs::copy(data[0].join("master.key"), data[1].join("master.key")).unwrap();
    let store = mailbridge_store::Store::connect(&url, &key).await.unwrap();
    store
        .put_secret(
            "app:connector:client-secret",
            mailbridge_store::SecretKind::ClientSecret,
            &secrecy::SecretString::from(SECRET),
            None,
            store.now(),
        )
        .await
        .unwrap();
    let serve = |name: &str, dir: &Path| {
        w.cmd_in(
            dir,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--database",
                &url,
                "--instance",
                name,
                "--lease",
                &LEASE.as_secs().to_string(),
            ],
        )
    };
    let a = spawn(serve("a", &data[0])).await;
    let b = spawn(serve("b", &data[1])).await;
    let admin = a
        .token
        .clone()
        .expect("the first instance makes the first token");
    assert!(b.token.is_none());
    let bob = account_id(&a, &admin, "bob-imap").await;
    assert_eq!(account_id(&b, &admin, "bob-imap").await, bob);
    let lease = format!("watch:{bob}");
    folder_sink_and_watch(&a, &admin, &bob, &w.archive()).await;

    // Mail keeps arriving, one message every 100 ms, until the end of the test.
    let sent = Arc::new(AtomicUsize::new(0));
    let stop_feeding = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (mail, sent, stop) = (w.mail.mail_store(), sent.clone(), stop_feeding.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let i = sent.load(Ordering::SeqCst);
                mail.append(BOB, "INBOX", &message("takeover", i), false)
                    .await
                    .unwrap();
                sent.store(i + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let archive = w.archive();
    eventually("the first messages reach the folder", || {
        visible(&archive).len() >= 10
    })
    .await;

    // Exactly one instance watches the account: the lease's holder.
    let first = holder(&store, &lease)
        .await
        .expect("someone holds the lease");
    let (killed, survivor, survivor_name) = match first.as_str() {
        "a" => (a, b, "b"),
        "b" => (b, a, "a"),
        other => panic!("unknown holder {other}"),
    };
    assert!(
        matches!(
            watcher_state(&killed, &admin, &bob).await.as_str(),
            Some("idle" | "syncing")
        ),
        "the holder watches"
    );
    assert_eq!(
        watcher_state(&survivor, &admin, &bob).await,
        Value::Null,
        "the other instance never ran the account's watcher"
    );
    let before = visible(&archive).len();
    let killed_at = Instant::now();
    let killed_log = killed.kill().await;

    // The survivor takes over once the lease ends: within the lease and a pass of its
    // supervisor (a third of the lease), with room for a busy machine.
    let mut taken = None;
    while taken.is_none() {
        assert!(
            killed_at.elapsed() < LEASE * 5,
            "{survivor_name} did not take the account over within {:?} of the kill (lease {LEASE:?})",
            LEASE * 5
        );
        if holder(&store, &lease).await.as_deref() == Some(survivor_name) {
            taken = Some(killed_at.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!("taken over {:?} after the kill", taken.unwrap());
    // It delivers what arrived meanwhile and what arrives from now on.
    let after_takeover = sent.load(Ordering::SeqCst);
    eventually("mail keeps arriving after the takeover", || {
        sent.load(Ordering::SeqCst) >= after_takeover + 10
    })
    .await;
    stop_feeding.store(true, Ordering::SeqCst);
    feeder.await.unwrap();
    let total = sent.load(Ordering::SeqCst);
    eventually("every message reaches the folder", || {
        visible(&archive).len() >= total
    })
    .await;
    assert!(before < total);
    assert!(
        matches!(
            watcher_state(&survivor, &admin, &bob).await.as_str(),
            Some("idle" | "syncing")
        ),
        "the survivor watches"
    );
    let survivor_log = survivor.stop().await;

    let dovecot = held(&w.mail.mail_store(), "takeover", total).await;
    assert_eq!(check_folder(&archive, "takeover", &dovecot), total);
    check_deliveries(&[&killed_log, &survivor_log], total);
    assert!(
        !deliveries(&killed_log).is_empty() && !deliveries(&survivor_log).is_empty(),
        "both instances delivered"
    );
    assert!(!killed_log.contains(SECRET) && !survivor_log.contains(SECRET));
    store.close().await;
}
