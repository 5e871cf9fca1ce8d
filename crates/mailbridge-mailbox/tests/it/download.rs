//! Downloading into a Maildir from real Dovecot: every new message lands once with
//! its bytes, checkpoints only cover what is on disk, and a run stopped half-way (as
//! a crash would) followed by a re-run neither loses nor duplicates a message.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphTarget};
use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::download::{
    DownloadError, DownloadOptions, GRAPH_FETCHES_IN_FLIGHT, Progress, download, download_listed,
};
use mailbridge_mailbox::mailbox::{
    Checkpoint, ErrorKind, GraphMailboxAccess, ImapMailbox, Mailbox as _, MessageRef, Pop3Mailbox,
};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";

struct World {
    server: EmulatorServer,
    emulator: Emulator,
    mail: MailServers,
    app: AppRegistration,
}

async fn world() -> World {
    let app = AppRegistration::new("Connector").consented();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        );
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    World {
        server,
        emulator,
        mail,
        app,
    }
}

impl World {
    fn trust(&self) -> TlsSettings {
        TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        }
    }

    fn token(&self, role: &str) -> SecretString {
        SecretString::from(
            self.emulator
                .app_token(&self.app, Resource::exchange(), &[role]),
        )
    }

    async fn imap(&self) -> ImapMailbox {
        let addr = self.mail.imaps();
        let mut config = ImapConfig::new(&addr.ip().to_string(), addr.port(), TlsMode::Implicit);
        config.trust = self.trust();
        let mut client = ImapClient::connect(&config).await.unwrap();
        client
            .authenticate(&Credentials::XOAuth2 {
                user: ALICE.into(),
                token: self.token("IMAP.AccessAsApp"),
            })
            .await
            .unwrap();
        ImapMailbox::new(client)
    }

    /// Appends `count` messages of growing size (one larger than the write buffer);
    /// their bytes as Dovecot stores them.
    async fn fill(&self, first: usize, count: usize) -> Vec<Vec<u8>> {
        let store = self.mail.mail_store();
        let mut stored = Vec::new();
        for i in first..first + count {
            let filler = if i == 2 { 600 * 1024 } else { i * 700 };
            let raw = format!(
                "From: bob@example.org\r\nTo: {ALICE}\r\nSubject: message {i}\r\n\r\n{}\r\n",
                format!("{}\r\n", "x".repeat(76)).repeat(filler / 78 + 1)
            );
            let id = store
                .append(ALICE, "INBOX", raw.as_bytes(), false)
                .await
                .unwrap();
            stored.push(store.fetch(&id).await.unwrap().unwrap());
        }
        stored
    }
}

/// Every file of `new/` and `cur/`, by name.
fn maildir_files(maildir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(sub)).unwrap() {
            let entry = entry.unwrap();
            files.insert(
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            );
        }
    }
    files
}

/// Each expected message exactly once, with identical bytes, and nothing else.
fn assert_exactly(maildir: &Path, expected: &[Vec<u8>]) {
    let files = maildir_files(maildir);
    let mut got: Vec<&Vec<u8>> = files.values().collect();
    let mut want: Vec<&Vec<u8>> = expected.iter().collect();
    got.sort();
    want.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "files: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    assert!(got == want, "the Maildir's bytes differ from the server's");
}

/// In both placements: files without a name linked into `new/`, and the classic
/// `tmp/` + rename.
#[tokio::test]
async fn new_messages_land_once_each_and_checkpoints_cover_only_what_is_on_disk() {
    for named_files in [false, true] {
        lands_once_each(named_files).await;
    }
}

async fn lands_once_each(named_files: bool) {
    let w = world().await;
    let mut expected = w.fill(0, 7).await;
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Inbox");
    let mut imap = w.imap().await;
    let options = DownloadOptions {
        batch: 3,
        named_files,
        ..DownloadOptions::default()
    };
    let mut seen: Vec<Progress> = Vec::new();
    let summary = download(
        &mut imap,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &options,
        &mut (),
        |p| {
            if let Some(Checkpoint::Imap {
                uid_validity,
                last_uid,
            }) = &p.durable
            {
                // Whatever the checkpoint covers is already in new/.
                for uid in 1..=*last_uid {
                    let key = format!("imap-{uid_validity}-{uid}");
                    assert!(maildir.join("new").join(&key).is_file(), "{key}");
                }
            }
            seen.push(p.clone());
            ControlFlow::Continue(())
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.messages, 7);
    assert_eq!(
        summary.bytes,
        expected.iter().map(|m| m.len() as u64).sum::<u64>()
    );
    assert_eq!(summary.already_present, 0);
    assert_exactly(&maildir, &expected);
    let durable: Vec<u32> = seen
        .iter()
        .filter_map(|p| match p.durable {
            Some(Checkpoint::Imap { last_uid, .. }) => Some(last_uid),
            _ => None,
        })
        .collect();
    assert_eq!(durable, [3, 6, 7], "one checkpoint per batch of 3");
    assert_eq!(seen.iter().filter(|p| p.durable.is_none()).count(), 7);
    assert!(seen.iter().all(|p| p.total == 7));
    assert!(
        std::fs::read_dir(maildir.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left in tmp/"
    );

    // The next round brings only what is new.
    expected.extend(w.fill(7, 2).await);
    let next = download(
        &mut imap,
        "INBOX",
        &summary.checkpoint,
        &maildir,
        &options,
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!(next.messages, 2);
    assert_exactly(&maildir, &expected);
    assert!(matches!(
        next.checkpoint,
        Checkpoint::Imap { last_uid: 9, .. }
    ));
}

/// In both placements, as above.
#[tokio::test]
async fn a_run_stopped_half_way_then_rerun_leaves_every_message_exactly_once() {
    for named_files in [false, true] {
        stopped_then_rerun(named_files).await;
    }
}

async fn stopped_then_rerun(named_files: bool) {
    let w = world().await;
    let expected = w.fill(0, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Inbox");
    // A crash half-way through a batch also leaves a partial file in tmp/.
    std::fs::create_dir_all(maildir.join("tmp")).unwrap();
    std::fs::write(maildir.join("tmp/1700000000.M1P1.crashed"), b"From: half").unwrap();
    let options = DownloadOptions {
        batch: 4,
        named_files,
        ..DownloadOptions::default()
    };

    // Stops once 2 messages past the first durable checkpoint (4) are written: they
    // are on disk but not covered. (The checkpoint is handed out when batch 1 is
    // durable, seen after a message of batch 2 or at its end.)
    let mut stored = Checkpoint::Start;
    let mut imap = w.imap().await;
    let err = download(
        &mut imap,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &options,
        &mut (),
        |p| {
            if let Some(c) = &p.durable {
                stored = c.clone();
            }
            if matches!(stored, Checkpoint::Imap { .. }) && p.messages >= 6 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DownloadError::Stopped), "{err}");
    assert!(matches!(stored, Checkpoint::Imap { last_uid: 4, .. }));
    // Nothing is still being written behind the caller's back.
    let at_return = maildir_files(&maildir);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        maildir_files(&maildir).keys().collect::<Vec<_>>(),
        at_return.keys().collect::<Vec<_>>(),
        "the Maildir changed after the download returned"
    );
    drop(imap); // mid-response: a new session, as after a crash

    // The re-run lists 5..10 again; 5 and 6 are not duplicated.
    let mut imap = w.imap().await;
    let summary = download(
        &mut imap,
        "INBOX",
        &stored,
        &maildir,
        &options,
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!(summary.messages + summary.already_present, 6);
    assert_exactly(&maildir, &expected);

    // Even without any stored checkpoint nothing is duplicated.
    let mut imap = w.imap().await;
    let again = download(
        &mut imap,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &options,
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((again.messages, again.already_present), (0, 10));
    assert_exactly(&maildir, &expected);
    // Nothing of the stopped run is left in tmp/ (only the older crash's file).
    let left: Vec<String> = std::fs::read_dir(maildir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["1700000000.M1P1.crashed"],
        "named files: {named_files}"
    );
    // A reader moving a message to cur/ with flags does not make it new again.
    let (name, _) = maildir_files(&maildir).into_iter().next().unwrap();
    std::fs::rename(
        maildir.join("new").join(&name),
        maildir.join("cur").join(format!("{name}:2,S")),
    )
    .unwrap();
    let mut imap = w.imap().await;
    let after_read = download(
        &mut imap,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &options,
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!(after_read.messages, 0);
    assert_exactly(&maildir, &expected);
}

#[tokio::test]
async fn pop3_downloads_one_by_one_with_the_same_guarantees() {
    let w = world().await;
    let expected = w.fill(0, 3).await;
    let addr = w.mail.pop3s();
    let mut config = mailbridge_pop3::Pop3Config::new(
        &addr.ip().to_string(),
        addr.port(),
        mailbridge_pop3::TlsMode::Implicit,
    );
    config.trust = w.trust();
    let mut client = mailbridge_pop3::Pop3Client::connect(&config).await.unwrap();
    client
        .authenticate(&mailbridge_pop3::Credentials::XOAuth2 {
            user: ALICE.into(),
            token: w.token("POP.AccessAsApp"),
        })
        .await
        .unwrap();
    let mut pop = Pop3Mailbox::new(client);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("pop");
    let mut calls = 0;
    let first = download(
        &mut pop,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| {
            calls += 1;
            ControlFlow::Continue(())
        },
    )
    .await
    .unwrap();
    assert_eq!(first.messages, 3);
    assert_eq!(calls, 4, "3 messages and one durable checkpoint");
    assert!(matches!(&first.checkpoint, Checkpoint::Pop { uidls } if uidls.len() == 3));
    assert_exactly(&maildir, &expected);
    let again = download(
        &mut pop,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((again.messages, again.already_present), (0, 3));
    assert_exactly(&maildir, &expected);
    pop.close().await.unwrap();
}

/// Over Graph the download keeps 4 `$value` requests in flight (Outlook's limit per
/// mailbox; the emulator counts them while it holds requests) and still writes every
/// message once, with the server's bytes.
#[tokio::test]
async fn graph_downloads_four_messages_at_a_time() {
    let w = world().await;
    let expected = w.fill(0, 9).await;
    let mut graph = GraphMailboxAccess::new(
        GraphClient::new(GraphConfig::new(&format!("{}/v1.0", w.server.base_url()))).unwrap(),
        GraphTarget::User(ALICE.into()),
        mailbridge_auth::source::fixed(SecretString::from(w.emulator.app_token(
            &w.app,
            Resource::graph(),
            &["Mail.ReadWrite"],
        ))),
    );
    let listed = graph.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(listed.messages.len(), 9);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Inbox");
    // Requests wait at the emulator until 4 are in flight, then all go.
    let gate = mailbridge_testkit::graph::hold_requests(&w.emulator);
    let watch = async {
        let mut seen = 0;
        for _ in 0..3000 {
            seen = mailbridge_testkit::graph::in_flight(&w.emulator, ALICE);
            if seen as usize >= GRAPH_FETCHES_IN_FLIGHT {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        drop(gate);
        seen
    };
    let options = DownloadOptions::default();
    let mut nothing = ();
    let (summary, most) = tokio::join!(
        download_listed(
            &mut graph,
            "inbox",
            listed,
            &maildir,
            &options,
            &mut nothing,
            |_| { ControlFlow::Continue(()) },
        ),
        watch
    );
    assert_eq!(
        most as usize, GRAPH_FETCHES_IN_FLIGHT,
        "requests in flight at once"
    );
    assert_eq!(summary.unwrap().messages, 9);
    assert_exactly(&maildir, &expected);
}

/// A POP3 server that gives two messages the same UIDL: both are downloaded, each
/// once, and counted right; a second run finds both already there.
#[tokio::test]
async fn pop3_messages_with_the_same_uidl_are_both_kept() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let messages: [&[u8]; 3] = [
        b"Subject: first\r\n\r\none\r\n",
        b"Subject: second\r\n\r\ntwo\r\n",
        b"Subject: third\r\n\r\nthree\r\n",
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let retrs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = retrs.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let heard = heard.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                w.write_all(b"+OK ready\r\n").await.unwrap();
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let command = line.trim_end().to_owned();
                    line.clear();
                    let answer: Vec<u8> = match command.as_str() {
                        "UIDL" => b"+OK\r\n1 same-uidl\r\n2 other\r\n3 same-uidl\r\n.\r\n".to_vec(),
                        "LIST" => b"+OK\r\n1 24\r\n2 25\r\n3 27\r\n.\r\n".to_vec(),
                        "QUIT" => b"+OK bye\r\n".to_vec(),
                        retr => match retr
                            .strip_prefix("RETR ")
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|n| (1..=3).contains(n))
                        {
                            Some(n) => {
                                heard.lock().unwrap().push(n);
                                [b"+OK\r\n", messages[n - 1], b".\r\n"].concat()
                            }
                            None => b"-ERR no\r\n".to_vec(),
                        },
                    };
                    w.write_all(&answer).await.unwrap();
                }
            });
        }
    });
    let config =
        mailbridge_pop3::Pop3Config::new("127.0.0.1", addr.port(), mailbridge_pop3::TlsMode::None);
    let client = mailbridge_pop3::Pop3Client::connect(&config).await.unwrap();
    let mut pop = Pop3Mailbox::new(client);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("pop");
    let first = download(
        &mut pop,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!(first.messages, 3, "every message counted once");
    assert_eq!(*retrs.lock().unwrap(), [1, 2, 3], "each fetched once");
    assert_exactly(&maildir, &messages.map(<[u8]>::to_vec));
    assert!(
        matches!(&first.checkpoint, Checkpoint::Pop { uidls } if uidls.len() == 3),
        "{:?}",
        first.checkpoint
    );
    let again = download(
        &mut pop,
        "INBOX",
        &first.checkpoint,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((again.messages, again.already_present), (0, 0));
    let from_start = download(
        &mut pop,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((from_start.messages, from_start.already_present), (0, 3));
    assert_exactly(&maildir, &messages.map(<[u8]>::to_vec));
    pop.close().await.unwrap();
}

/// A POP3 server whose first message never ends (announced as 10 bytes): the
/// download stops at the account's size bound with an error naming the setting, and
/// nothing of that message is left in the Maildir or counted as fetched.
#[tokio::test]
async fn pop3_an_endless_message_stops_at_the_size_bound_and_is_not_stored() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut r = tokio::io::BufReader::new(r);
        w.write_all(b"+OK ready\r\n").await.unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).await.unwrap_or(0) > 0 {
            let answer: &[u8] = match line.trim_end() {
                "UIDL" => b"+OK\r\n1 endless\r\n2 fine\r\n.\r\n",
                "LIST" => b"+OK\r\n1 10\r\n2 10\r\n.\r\n",
                "RETR 1" => {
                    w.write_all(b"+OK\r\n").await.unwrap();
                    let chunk = b"endless line\r\n".repeat(4096);
                    while w.write_all(&chunk).await.is_ok() {}
                    return;
                }
                _ => b"-ERR no\r\n",
            };
            line.clear();
            w.write_all(answer).await.unwrap();
        }
    });
    let mut config =
        mailbridge_pop3::Pop3Config::new("127.0.0.1", addr.port(), mailbridge_pop3::TlsMode::None);
    config.limits.max_message_size = 2 * 1024 * 1024;
    let client = mailbridge_pop3::Pop3Client::connect(&config).await.unwrap();
    let mut pop = Pop3Mailbox::new(client);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("pop");
    let mut fetched = 0;
    let err = download(
        &mut pop,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |p| {
            fetched = p.messages;
            ControlFlow::Continue(())
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.class(),
        mailbridge_types::ErrorClass::LimitExceeded,
        "{err:?}"
    );
    let DownloadError::Mailbox(e) = &err else {
        panic!("{err:?}")
    };
    assert!(e.detail().contains("limits.max_message_size"), "{e}");
    assert_eq!(fetched, 0, "nothing counted as fetched");
    assert!(maildir_files(&maildir).is_empty());
    for sub in ["tmp", "new"] {
        let left: Vec<_> = std::fs::read_dir(maildir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{sub}/: {left:?}");
    }
}

/// A Graph stand-in whose delta lists two messages: `m1` ends, `m2`'s `$value`
/// never does (no Content-Length). Measured on main: two 1 GB "messages" stored and
/// exit 0.
async fn endless_graph() -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/v1.0/users/{user}/mailFolders/{folder}/messages/delta",
            get(|headers: axum::http::HeaderMap| async move {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                axum::Json(serde_json::json!({
                    "value": [{"id": "m1"}, {"id": "m2"}],
                    "@odata.deltaLink": format!("http://{host}/v1.0/delta?$deltatoken=1"),
                }))
            }),
        )
        .route(
            "/v1.0/users/{user}/messages/{id}/$value",
            get(
                |axum::extract::Path((_, id)): axum::extract::Path<(String, String)>| async move {
                    if id == "m1" {
                        axum::body::Body::from("From: a@b.example\r\nSubject: small\r\n\r\nhi\r\n")
                    } else {
                        let piece = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
                        axum::body::Body::from_stream(futures::stream::repeat_with(move || {
                            Ok::<_, std::io::Error>(piece.clone())
                        }))
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_graph_message_over_max_message_size_is_an_error_and_never_stored() {
    let base = endless_graph().await;
    let mut config = GraphConfig::new(&format!("{base}/v1.0"));
    config.limits.max_message_size = 1024 * 1024;
    config.attempts = 1;
    let mut graph = GraphMailboxAccess::new(
        GraphClient::new(config).unwrap(),
        GraphTarget::User(ALICE.into()),
        mailbridge_auth::source::fixed(SecretString::from("t")),
    );
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Inbox");
    let mut durable = None;
    let err = download(
        &mut graph,
        "inbox",
        &Checkpoint::Start,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |p| {
            if p.durable.is_some() {
                durable.clone_from(&p.durable);
            }
            ControlFlow::Continue(())
        },
    )
    .await
    .unwrap_err();
    let DownloadError::Mailbox(e) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(e.class, mailbridge_types::ErrorClass::LimitExceeded, "{e}");
    assert!(e.detail().contains("limits.max_message_size"), "{e}");
    // No checkpoint covers m2, and no file holds any of it.
    assert!(
        !matches!(durable, Some(Checkpoint::Graph { .. })),
        "{durable:?}"
    );
    for (name, bytes) in maildir_files(&maildir) {
        assert!(!bytes.starts_with(b"xxxx"), "{name} holds the cut message");
    }
}

#[tokio::test]
async fn a_reference_from_another_uidvalidity_or_transport_is_refused_not_fetched() {
    let w = world().await;
    w.fill(0, 2).await;
    let mut imap = w.imap().await;
    let mut listed = imap.new_since("INBOX", &Checkpoint::Start).await.unwrap();
    assert_eq!(listed.messages.len(), 2);
    let Some(MessageRef::Imap { uid_validity, uid }) = listed.messages.first().cloned() else {
        panic!("{:?}", listed.messages);
    };
    // The same UID under another UIDVALIDITY may name another message now.
    listed.messages = vec![MessageRef::Imap {
        uid_validity: uid_validity.wrapping_add(1),
        uid,
    }];
    let dir = tempfile::tempdir().unwrap();
    let err = download_listed(
        &mut imap,
        "INBOX",
        listed,
        &dir.path().join("m"),
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap_err();
    let DownloadError::Mailbox(e) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.detail());
    assert!(
        e.detail().contains("list the folder again"),
        "{}",
        e.detail()
    );
    assert!(maildir_files(&dir.path().join("m")).is_empty());

    let mut sink = Vec::new();
    let e = imap
        .fetch(
            &MessageRef::Graph {
                id: uid.to_string(),
            },
            &mut sink,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Configuration, "{}", e.detail());
    let size = imap
        .fetch(&MessageRef::Imap { uid_validity, uid }, &mut sink)
        .await
        .unwrap();
    assert_eq!(size, sink.len() as u64);
}
