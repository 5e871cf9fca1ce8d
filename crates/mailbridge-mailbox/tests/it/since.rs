//! Listing a folder by date (`received_since`) on real Dovecot through IMAP, and
//! through the emulated Graph and EWS: only the messages received on or after the
//! date, downloaded into a Maildir the durable way, and a checkpoint from which
//! `new_since` lists only what arrives later. POP3 refuses, naming why.

use std::ops::ControlFlow;
use std::path::Path;

use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphTarget};
use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::download::{DownloadOptions, download_listed};
use mailbridge_mailbox::mailbox::{
    EwsMailbox, GraphMailboxAccess, ImapMailbox, Mailbox, MessageRef, Pop3Mailbox,
};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use mailbridge_types::ErrorClass;
use secrecy::SecretString;
use time::macros::datetime;

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
    fn token(&self, resource: Resource, role: &str) -> SecretString {
        SecretString::from(self.emulator.app_token(&self.app, resource, &[role]))
    }

    /// Appends a message received at `received`.
    async fn put(&self, subject: &str, received: time::OffsetDateTime) {
        let raw =
            format!("From: bob@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhi\r\n");
        self.mail
            .mail_store()
            .append_received(ALICE, "INBOX", raw.as_bytes(), false, Some(received))
            .await
            .unwrap();
    }

    /// Three messages: 1 November, 19 November 23:00 UTC and 2 December 2026.
    async fn fill(&self) {
        self.put("long-ago", datetime!(2026-11-01 10:00 UTC)).await;
        self.put("day-before", datetime!(2026-11-19 23:00 UTC))
            .await;
        self.put("recent", datetime!(2026-12-02 08:30 UTC)).await;
    }

    async fn imap(&self) -> ImapMailbox {
        let addr = self.mail.imaps();
        let mut config = ImapConfig::new(&addr.ip().to_string(), addr.port(), TlsMode::Implicit);
        config.trust = TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        };
        let mut client = ImapClient::connect(&config).await.unwrap();
        client
            .authenticate(&Credentials::XOAuth2 {
                user: ALICE.into(),
                token: self.token(Resource::exchange(), "IMAP.AccessAsApp"),
            })
            .await
            .unwrap();
        ImapMailbox::new(client)
    }

    fn graph(&self) -> GraphMailboxAccess {
        GraphMailboxAccess::new(
            GraphClient::new(GraphConfig::new(&format!(
                "{}/v1.0",
                self.server.base_url()
            )))
            .unwrap(),
            GraphTarget::User(ALICE.into()),
            mailbridge_auth::source::fixed(self.token(Resource::graph(), "Mail.ReadWrite")),
        )
    }

    fn ews(&self) -> EwsMailbox {
        EwsMailbox::new(
            mailbridge_ews::EwsClient::new(mailbridge_ews::EwsConfig::new(&format!(
                "{}/EWS/Exchange.asmx",
                self.server.base_url()
            )))
            .unwrap(),
            mailbridge_ews::EwsAuth::AppOnly {
                token: mailbridge_auth::source::fixed(
                    self.token(Resource::exchange(), "full_access_as_app"),
                ),
                mailbox: ALICE.into(),
            },
        )
    }
}

/// The subjects of `messages`, sorted.
async fn subjects<M: Mailbox>(mailbox: &mut M, messages: &[MessageRef]) -> Vec<String> {
    let mut out = Vec::new();
    for m in messages {
        let mut raw = Vec::new();
        mailbox.fetch(m, &mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap()
            .to_owned();
        out.push(subject);
    }
    out.sort();
    out
}

fn maildir_subjects(maildir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn imap_lists_by_day_downloads_and_hands_over_to_new_since() {
    let w = world().await;
    w.fill().await;
    let mut imap = w.imap().await;
    // IMAP SINCE compares whole days: 19 November counts from its first second.
    let listed = imap
        .received_since("INBOX", datetime!(2026-11-19 12:00 UTC))
        .await
        .unwrap();
    assert_eq!(
        subjects(&mut imap, &listed.messages).await,
        ["day-before", "recent"]
    );
    let listed = imap
        .received_since("INBOX", datetime!(2026-11-20 00:00 UTC))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("since");
    let checkpoint = listed.checkpoint.clone();
    let summary = download_listed(
        &mut imap,
        "INBOX",
        listed,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!(summary.messages, 1);
    assert_eq!(summary.checkpoint, checkpoint);
    assert_eq!(maildir_subjects(&maildir), ["recent"]);
    // The listing's checkpoint covers the folder: nothing is new, older mail included.
    assert!(
        imap.new_since("INBOX", &checkpoint)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    w.put("arrives-later", time::OffsetDateTime::now_utc())
        .await;
    let next = imap.new_since("INBOX", &checkpoint).await.unwrap();
    assert_eq!(subjects(&mut imap, &next.messages).await, ["arrives-later"]);
    // A second date run into the same Maildir skips what is already there.
    let again = imap
        .received_since("INBOX", datetime!(2026-11-20 00:00 UTC))
        .await
        .unwrap();
    assert_eq!(again.messages.len(), 2);
    let summary = download_listed(
        &mut imap,
        "INBOX",
        again,
        &maildir,
        &DownloadOptions::default(),
        &mut (),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((summary.messages, summary.already_present), (1, 1));
    assert_eq!(maildir_subjects(&maildir), ["arrives-later", "recent"]);
}

#[tokio::test]
async fn graph_filters_on_received_date_time_and_its_delta_link_goes_on() {
    let w = world().await;
    w.fill().await;
    let mut graph = w.graph();
    // Graph compares instants: 23:30 on 19 November leaves out the 23:00 message.
    let listed = graph
        .received_since("inbox", datetime!(2026-11-19 23:30 UTC))
        .await
        .unwrap();
    assert_eq!(subjects(&mut graph, &listed.messages).await, ["recent"]);
    let listed = graph
        .received_since("inbox", datetime!(2026-11-20 00:00 +01:00))
        .await
        .unwrap();
    assert_eq!(
        subjects(&mut graph, &listed.messages).await,
        ["day-before", "recent"],
        "midnight at +01:00 is 23:00 UTC the day before"
    );
    assert!(
        graph
            .new_since("inbox", &listed.checkpoint)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    w.put("arrives-later", time::OffsetDateTime::now_utc())
        .await;
    let next = graph.new_since("inbox", &listed.checkpoint).await.unwrap();
    assert_eq!(
        subjects(&mut graph, &next.messages).await,
        ["arrives-later"]
    );
}

#[tokio::test]
async fn ews_restricts_find_item_and_keeps_the_sync_state() {
    let w = world().await;
    w.fill().await;
    let mut ews = w.ews();
    let listed = ews
        .received_since("inbox", datetime!(2026-11-19 22:59 UTC))
        .await
        .unwrap();
    assert_eq!(
        subjects(&mut ews, &listed.messages).await,
        ["day-before", "recent"]
    );
    let listed = ews
        .received_since("inbox", datetime!(2026-12-01 00:00 UTC))
        .await
        .unwrap();
    assert_eq!(subjects(&mut ews, &listed.messages).await, ["recent"]);
    assert!(
        ews.new_since("inbox", &listed.checkpoint)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    w.put("arrives-later", time::OffsetDateTime::now_utc())
        .await;
    let next = ews.new_since("inbox", &listed.checkpoint).await.unwrap();
    assert_eq!(subjects(&mut ews, &next.messages).await, ["arrives-later"]);
}

#[tokio::test]
async fn pop3_refuses_a_date_and_says_why() {
    let w = world().await;
    w.fill().await;
    let addr = w.mail.pop3s();
    let mut config = mailbridge_pop3::Pop3Config::new(
        &addr.ip().to_string(),
        addr.port(),
        mailbridge_pop3::TlsMode::Implicit,
    );
    config.trust = TlsSettings {
        extra_ca_pem: Some(w.mail.ca_pem().to_owned()),
        server_name: Some(w.mail.tls_name().to_owned()),
        pin: None,
    };
    let mut client = mailbridge_pop3::Pop3Client::connect(&config).await.unwrap();
    client
        .authenticate(&mailbridge_pop3::Credentials::XOAuth2 {
            user: ALICE.into(),
            token: w.token(Resource::exchange(), "POP.AccessAsApp"),
        })
        .await
        .unwrap();
    let mut pop = Pop3Mailbox::new(client);
    let err = pop
        .received_since("INBOX", datetime!(2026-11-20 00:00 UTC))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Misconfigured);
    assert!(
        err.detail().contains("no received date") && err.detail().contains("--since all"),
        "{}",
        err.detail()
    );
}

/// A server whose SELECT leaves out UIDNEXT (RFC 3501 requires it; not every server
/// sends it): a date run that finds nothing still covers the folder up to its highest
/// UID, asked with `UID SEARCH`, so a later `--since last` does not fetch it all.
#[tokio::test]
async fn imap_without_uidnext_covers_the_folder_up_to_its_highest_uid() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        write.write_all(b"* OK ready\r\n").await.unwrap();
        while let Ok(Some(line)) = lines.next_line().await {
            let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let upper = rest.to_ascii_uppercase();
            let answer = if upper.starts_with("CAPABILITY") {
                "* CAPABILITY IMAP4rev1\r\n".to_owned()
            } else if upper.starts_with("SELECT") {
                "* 3 EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n".to_owned()
            } else if upper.starts_with("UID SEARCH") && upper.contains("SINCE") {
                "* SEARCH\r\n".to_owned()
            } else if upper.starts_with("UID SEARCH") {
                "* SEARCH 3 7 9\r\n".to_owned()
            } else {
                String::new()
            };
            let done = format!("{answer}{tag} OK done\r\n");
            if write.write_all(done.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let config = ImapConfig::new("127.0.0.1", port, TlsMode::None);
    let client = ImapClient::connect(&config).await.unwrap();
    let mut imap = ImapMailbox::new(client);
    let listed = imap
        .received_since("INBOX", datetime!(2026-12-01 00:00 UTC))
        .await
        .unwrap();
    assert!(listed.messages.is_empty());
    assert!(
        matches!(
            listed.checkpoint,
            mailbridge_mailbox::mailbox::Checkpoint::Imap {
                uid_validity: 42,
                last_uid: 9
            }
        ),
        "{:?}",
        listed.checkpoint
    );
}
