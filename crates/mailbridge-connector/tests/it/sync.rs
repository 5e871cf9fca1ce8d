use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use mailbridge_connector::{CheckpointStore as _, MaildirSink, Start, SyncError, checkpoint_key};
use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::download::{DownloadError, DownloadOptions};
use mailbridge_mailbox::mailbox::{Checkpoint, ImapMailbox, Mailbox as _, MessageRef};
use mailbridge_store::{MasterKey, Store};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use mailbridge_types::ErrorClass;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const ACCOUNT: &str = "alice";

struct World {
    _server: EmulatorServer,
    emulator: Emulator,
    mail: MailServers,
    app: AppRegistration,
    store: Store,
    dir: tempfile::TempDir,
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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("db.sqlite"),
        &MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    World {
        _server: server,
        emulator,
        mail,
        app,
        store,
        dir,
    }
}

impl World {
    async fn imap(&self) -> ImapMailbox {
        let addr = self.mail.imaps();
        let mut config = ImapConfig::new(&addr.ip().to_string(), addr.port(), TlsMode::Implicit);
        config.trust = TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        };
        let mut client = ImapClient::connect(&config).await.unwrap();
        let token = self
            .emulator
            .app_token(&self.app, Resource::exchange(), &["IMAP.AccessAsApp"]);
        client
            .authenticate(&Credentials::XOAuth2 {
                user: ALICE.into(),
                token: SecretString::from(token),
            })
            .await
            .unwrap();
        ImapMailbox::new(client)
    }

    /// Appends `count` messages; their bytes as Dovecot stores them.
    async fn fill(&self, count: usize) -> Vec<Vec<u8>> {
        let store = self.mail.mail_store();
        let mut stored = Vec::new();
        for i in 0..count {
            let raw = format!(
                "From: bob@example.org\r\nTo: {ALICE}\r\nSubject: message {i}\r\n\r\n{}\r\n",
                "body ".repeat(40 * (i + 1))
            );
            let id = store
                .append(ALICE, "INBOX", raw.as_bytes(), false)
                .await
                .unwrap();
            stored.push(store.fetch(&id).await.unwrap().unwrap());
        }
        stored
    }

    /// The INBOX as listed from the start: its UIDVALIDITY and UIDs.
    async fn uids(&self) -> (u32, Vec<u32>) {
        let listed = self
            .imap()
            .await
            .new_since("INBOX", &Checkpoint::Start)
            .await
            .unwrap();
        let Checkpoint::Imap { uid_validity, .. } = listed.checkpoint else {
            panic!("{:?}", listed.checkpoint);
        };
        let uids = listed
            .messages
            .iter()
            .map(|m| match m {
                MessageRef::Imap { uid, .. } => *uid,
                other => panic!("{other:?}"),
            })
            .collect();
        (uid_validity, uids)
    }

    fn sink(&self, batch: usize) -> MaildirSink {
        MaildirSink {
            dir: self.dir.path().join("mail"),
            options: DownloadOptions {
                batch,
                ..DownloadOptions::default()
            },
        }
    }

    async fn stored(&self, sink: &MaildirSink) -> Option<Checkpoint> {
        self.store
            .load(ACCOUNT, &checkpoint_key("INBOX", &sink.dir))
            .await
            .unwrap()
    }
}

/// The files of `new/` and `cur/` of `maildir`, by name.
fn files(maildir: &Path) -> BTreeMap<String, Vec<u8>> {
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

/// Exactly `messages`, each once, under the names the UIDs give.
fn assert_exactly(maildir: &Path, uid_validity: u32, uids: &[u32], messages: &[Vec<u8>]) {
    let expected: BTreeMap<String, Vec<u8>> = uids
        .iter()
        .zip(messages)
        .map(|(uid, m)| (format!("imap-{uid_validity}-{uid}"), m.clone()))
        .collect();
    assert_eq!(files(maildir), expected);
}

#[tokio::test]
async fn a_checkpoint_never_passes_what_the_sink_did_not_make_durable() {
    let w = world().await;
    let messages = w.fill(12).await;
    let (uid_validity, uids) = w.uids().await;
    assert_eq!(uids.len(), 12);
    let sink = w.sink(3);
    let new = sink.dir.join("new");
    let moved = sink.dir.join("new.moved");
    // The sink fails from message k = 8 on: its new/ is replaced by a file (root
    // writes anywhere, so a read-only directory would not stop it).
    let k = 8;
    let mut mailbox = w.imap().await;
    let err = mailbridge_connector::sync(
        &mut mailbox,
        ACCOUNT,
        "INBOX",
        Start::Last,
        &sink,
        &w.store,
        |p| {
            if p.messages == k && p.durable.is_none() {
                std::fs::rename(&new, &moved).unwrap();
                std::fs::write(&new, b"not a directory").unwrap();
            }
            ControlFlow::Continue(())
        },
    )
    .await
    .unwrap_err();
    // Reported as the Maildir's failure, not the mailbox's.
    assert!(
        matches!(
            &err,
            SyncError::Deliver {
                source: DownloadError::Maildir { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    let chain = mailbridge_types::error_chain(&err);
    assert!(chain.contains("failed to write the maildir"), "{chain}");
    assert!(!chain.contains("connection"), "{chain}");

    // The stored checkpoint is before message k, and covers only what is on disk.
    let Some(Checkpoint::Imap {
        uid_validity: v,
        last_uid,
    }) = w.stored(&sink).await
    else {
        panic!("a batch before k was durable and stored");
    };
    assert_eq!(v, uid_validity);
    let kth = uids[usize::try_from(k).unwrap() - 1];
    assert!(last_uid < kth, "stored {last_uid}, message k is UID {kth}");
    assert!(last_uid >= uids[2], "the first batch was durable before k");
    for uid in uids.iter().filter(|u| **u <= last_uid) {
        assert!(
            moved.join(format!("imap-{uid_validity}-{uid}")).is_file(),
            "{uid}"
        );
    }

    // The Maildir repaired, a re-run delivers from the checkpoint on, nothing twice.
    std::fs::remove_file(&new).unwrap();
    std::fs::rename(&moved, &new).unwrap();
    let on_disk = files(&sink.dir).len() as u64;
    let mut mailbox = w.imap().await;
    let summary = mailbridge_connector::sync(
        &mut mailbox,
        ACCOUNT,
        "INBOX",
        Start::Last,
        &sink,
        &w.store,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    let after_checkpoint = uids.iter().filter(|u| **u > last_uid).count() as u64;
    assert_eq!(summary.messages + summary.already_present, after_checkpoint);
    assert_eq!(summary.messages, 12 - on_disk);
    assert_exactly(&sink.dir, uid_validity, &uids, &messages);
    assert_eq!(
        w.stored(&sink).await,
        Some(Checkpoint::Imap {
            uid_validity,
            last_uid: uids[11]
        })
    );

    // And the next run finds nothing new.
    let again = mailbridge_connector::sync(
        &mut mailbox,
        ACCOUNT,
        "INBOX",
        Start::Last,
        &sink,
        &w.store,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((again.messages, again.already_present), (0, 0));
}

#[tokio::test]
async fn a_maildir_written_by_earlier_versions_is_recognised_and_not_fetched_again() {
    let w = world().await;
    let messages = w.fill(5).await;
    let (uid_validity, uids) = w.uids().await;
    let sink = w.sink(500);
    // Earlier versions named a message "imap-<UIDVALIDITY>-<UID>" (from the UID as
    // text) in new/, and moved read ones to cur/ with flags: the first three.
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(sink.dir.join(sub)).unwrap();
    }
    for (i, (uid, m)) in uids.iter().zip(&messages).take(3).enumerate() {
        let name = if i == 0 {
            format!("cur/imap-{uid_validity}-{uid}:2,S")
        } else {
            format!("new/imap-{uid_validity}-{uid}")
        };
        std::fs::write(sink.dir.join(name), m).unwrap();
    }
    let mut mailbox = w.imap().await;
    let summary = mailbridge_connector::sync(
        &mut mailbox,
        ACCOUNT,
        "INBOX",
        Start::All,
        &sink,
        &w.store,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((summary.messages, summary.already_present), (2, 3));
    let names: Vec<String> = files(&sink.dir).into_keys().collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        w.stored(&sink).await,
        Some(Checkpoint::Imap {
            uid_validity,
            last_uid: uids[4]
        })
    );
}
