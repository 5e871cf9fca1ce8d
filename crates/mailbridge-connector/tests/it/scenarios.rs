//! The product's scenarios end to end, each through a watcher against the emulated
//! tenant and real Dovecot/Postfix: the firewall connector (a Microsoft 365 mailbox
//! read over IMAP app-only, relayed into a local Postfix and from there into another
//! Dovecot, the bytes unchanged), the document system (a mail's attachments, their
//! names hostile, saved under safe unique names with a sidecar naming the message),
//! and the helpdesk (a Graph app-only mailbox to a webhook, then a reply through the
//! outbox that reaches the customer's mailbox).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;

use mailbridge_connector::outbox::{
    OutboxSettings, OutboxWorker, Outcome, OutgoingSide, OutgoingSides,
};
use mailbridge_connector::watcher::{AnySink, SinkSet, WatcherState};
use mailbridge_mailbox::connect::Identity;
use mailbridge_mailbox::mailbox::MailboxError;
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_sinks::attachments::{AttachmentsOptions, AttachmentsSink, SIDECAR};
use mailbridge_sinks::filename::MAX_NAME_BYTES;
use mailbridge_sinks::relay::{RelayConfig, RelaySink};
use mailbridge_smtp::{SmtpConfig, TlsMode};
use mailbridge_store::{AccountId, NewOutboxMessage};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{Tenant, TenantModel, User};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::config::{AccountConfig, EndpointConfig, Transport};
use tokio_util::sync::CancellationToken;

use crate::transports::{ALICE, BOB, DEADLINE, receiver, route, world};

/// Polls `mailbox`'s inbox on `mail` until a message containing `needle` is there
/// (within the deadline); returns every such message's bytes.
async fn arrived(mail: &MailServers, mailbox: &str, needle: &str) -> Vec<Vec<u8>> {
    let store = mail.mail_store();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut found = Vec::new();
        for m in store.list(mailbox, "INBOX").await.unwrap() {
            let raw = store.fetch(&m.id).await.unwrap().unwrap();
            if raw.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(raw);
            }
        }
        if !found.is_empty() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} did not reach {mailbox}\n{}",
            mail.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The header fields the receiving Postfix and Dovecot put in front of a message
/// (trace fields, RFC 5321 §4.4), with their continuation lines.
fn is_trace_header(block: &str) -> bool {
    block.split("\r\n").filter(|l| !l.is_empty()).all(|line| {
        line.starts_with(' ')
            || line.starts_with('\t')
            || ["Return-Path:", "Delivered-To:", "Received:"]
                .iter()
                .any(|name| line.starts_with(name))
    })
}

/// The mailbox behind the firewall connector's local relay.
const ARCHIVE: &str = "archive@fabrikam.example";

/// The firewall connector: every message of a Microsoft 365 mailbox, read over IMAP
/// with an app-only token, goes through the local relay (a second Postfix) into the
/// mailbox behind it (a second Dovecot), byte for byte after the trace fields.
#[tokio::test]
async fn firewall_connector_relays_a_microsoft_365_mailbox_byte_for_byte() {
    let w = world().await;
    // The local side: its own mail system with the mailbox the relay delivers to.
    let local_tenant = Tenant::new("Fabrikam", "fabrikam.example").with_user(User::new(
        ARCHIVE,
        "Archive",
        "Passw0rd!",
    ));
    let local_emulator =
        Emulator::new(TenantModel::builder().tenant(local_tenant).build().unwrap()).unwrap();
    let _local_server =
        EmulatorServer::start(local_emulator.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let local = MailServers::start(&local_emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let relay = local.delivery();
    let mut relay_config = RelayConfig::new(SmtpConfig::new(
        &relay.ip().to_string(),
        relay.port(),
        TlsMode::None,
    ));
    // The route's envelope: everything goes to the archive mailbox.
    relay_config.recipients = vec![ARCHIVE.to_owned()];
    let mut sinks = SinkSet::new();
    sinks.insert(
        "relay",
        AnySink::Relay(Box::new(RelaySink::new(relay_config))),
    );
    let sinks = Arc::new(sinks);

    // 8-bit text, lines starting with a dot, a long line, an attachment: each must
    // survive both SMTP hops unchanged.
    let long_line = "x".repeat(900);
    let originals: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "From: Fabrikam Alerts <alerts@fabrikam.example>\r\nTo: {ALICE}\r\nSubject: Disk almost full {i}\r\nMessage-ID: <disk-{i}@fabrikam.example>\r\nDate: Mon, 7 Dec 2026 09:00:0{i} +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nZażółć gęślą jaźń {i}.\r\n.hidden line\r\n..two dots\r\n.\r\n{long_line}\r\n--b{i}\r\nContent-Type: application/octet-stream; name=\"log-{i}.bin\"\r\nContent-Disposition: attachment; filename=\"log-{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n--b{i}--\r\n"
            )
        })
        .collect();
    // Two before the watcher starts, one while it watches (IDLE).
    for original in &originals[..2] {
        w.append_raw(original.as_bytes()).await;
    }
    let (account, id) = w.account("firewall", Transport::Imap).await;
    let mut config = w.config(&account, id, "INBOX", vec![route(&["relay"])]);
    config.poll_interval = Duration::from_hours(1);
    let mut watch = w.watch(config, sinks);
    watch.until("idle", |s| *s == WatcherState::Idle).await;
    w.append_raw(originals[2].as_bytes()).await;

    for (i, original) in originals.iter().enumerate() {
        // What the Microsoft 365 side holds is what was delivered to it.
        let at_source = arrived(
            &w.mail,
            ALICE,
            &format!("Subject: Disk almost full {i}\r\n"),
        )
        .await
        .remove(0);
        assert_eq!(String::from_utf8(at_source).unwrap(), *original);
        let delivered = arrived(
            &local,
            ARCHIVE,
            &format!("Subject: Disk almost full {i}\r\n"),
        )
        .await;
        assert_eq!(delivered.len(), 1, "message {i} arrived once");
        let delivered = String::from_utf8(delivered[0].clone()).unwrap();
        let Some(trace) = delivered.strip_suffix(original.as_str()) else {
            panic!("message {i} changed on the way:\n{delivered}");
        };
        assert!(is_trace_header(trace), "message {i}: {trace}");
        // Among the trace fields, mailbridge's own names the account and the folder.
        assert!(
            trace.contains("Received: by mailbridge (account firewall, folder INBOX)"),
            "{trace}"
        );
    }
    watch.stop().await;
    local.stop().await;
}

/// The document system: a mail whose attachments are named by a hostile sender
/// (non-ASCII, a path out of the folder, control characters and a very long name,
/// two names that differ only in case) is saved as files with safe, unique names,
/// their contents unchanged, and a sidecar naming the message they came from.
#[tokio::test]
async fn document_system_gets_attachments_under_safe_unique_names_with_a_sidecar() {
    let w = world().await;
    let out = w.dir.path().join("documents");
    let mut sinks = SinkSet::new();
    sinks.insert(
        "documents",
        AnySink::Attachments(
            AttachmentsSink::open(&out, AttachmentsOptions::default())
                .await
                .unwrap(),
        ),
    );
    let long = "a".repeat(400);
    // RFC 2231 encoded names: what a sender's mail program writes for any name.
    let attachments: [(&str, String, &[u8]); 4] = [
        (
            "Rechnung März 2026 – Übersicht.pdf",
            "filename*=UTF-8''Rechnung%20M%C3%A4rz%202026%20%E2%80%93%20%C3%9Cbersicht.pdf"
                .to_owned(),
            b"%PDF-1.7 invoice",
        ),
        (
            "../../etc/passwd",
            "filename=\"../../etc/passwd\"".to_owned(),
            b"root:x:0:0::/root:/bin/sh\n",
        ),
        (
            "",
            format!("filename*=UTF-8''evil%07%1B%5B31m%0D%0Aname{long}.txt"),
            b"bell and escape",
        ),
        ("PASSWD", "filename=\"PASSWD\"".to_owned(), b"upper case"),
    ];
    let mut raw = format!(
        "From: Carol <carol@example.org>\r\nTo: {ALICE}\r\nSubject: Documents for the archive\r\nMessage-ID: <docs-1@example.org>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"docs\"\r\n\r\n--docs\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease file these.\r\n"
    );
    for (_, disposition, contents) in &attachments {
        write!(
            raw,
            "--docs\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; {disposition}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64::engine::general_purpose::STANDARD.encode(contents)
        )
        .unwrap();
    }
    raw.push_str("--docs--\r\n");
    w.append_raw(raw.as_bytes()).await;

    let (account, id) = w.account("documents", Transport::Imap).await;
    let config = w.config(&account, id, "INBOX", vec![route(&["documents"])]);
    let mut watch = w.watch(config, Arc::new(sinks));
    watch.until("idle", |s| *s == WatcherState::Idle).await;
    watch.stop().await;

    let dirs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(dirs.len(), 1, "one directory for the one message: {dirs:?}");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join(SIDECAR)).unwrap()).unwrap();
    assert_eq!(sidecar["account"], "documents");
    assert_eq!(sidecar["folder"], "INBOX");
    assert_eq!(sidecar["message_id"], "docs-1@example.org");
    assert_eq!(sidecar["subject"], "Documents for the archive");
    assert!(sidecar["source_id"].as_str().is_some_and(|s| !s.is_empty()));
    let files = sidecar["files"].as_array().unwrap();
    assert_eq!(files.len(), attachments.len(), "{sidecar:#}");

    let on_disk: BTreeSet<String> = std::fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != SIDECAR)
        .collect();
    let mut lowered = BTreeSet::new();
    for (file, (original, _, contents)) in files.iter().zip(&attachments) {
        let name = file["file"].as_str().unwrap();
        assert!(on_disk.contains(name), "{name:?} not in {on_disk:?}");
        assert!(!name.contains(['/', '\\']), "{name:?}");
        assert!(!name.contains(".."), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(
            name.len() <= MAX_NAME_BYTES,
            "{} bytes: {name:?}",
            name.len()
        );
        assert!(
            lowered.insert(name.to_lowercase()),
            "{name:?} is not unique, even ignoring case"
        );
        assert_eq!(
            std::fs::read(dirs[0].join(name)).unwrap(),
            *contents,
            "{name}"
        );
        if !original.is_empty() {
            assert_eq!(file["original_name"], *original, "{file}");
        }
    }
    assert_eq!(on_disk.len(), attachments.len());
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    // What a person recognises is kept.
    assert_eq!(names[0], "Rechnung März 2026 – Übersicht.pdf");
    assert_eq!(names[1], "passwd");
    assert!(
        names[2].starts_with("evil")
            && std::path::Path::new(names[2])
                .extension()
                .is_some_and(|x| x == "txt"),
        "{}",
        names[2]
    );
    assert_ne!(names[3].to_lowercase(), "passwd");
    // Nothing was written outside the folder.
    assert!(!out.join("etc").exists() && !w.dir.path().join("etc").exists());
}

/// The helpdesk's outgoing side: Graph, signed in with the account's token source.
struct GraphSide {
    account: AccountConfig,
    graph_root: String,
    tokens: Arc<dyn mailbridge_auth::source::TokenSource>,
}

impl OutgoingSides for GraphSide {
    async fn outgoing(&self, _account: AccountId) -> Result<OutgoingSide, MailboxError> {
        Ok(OutgoingSide {
            sent_copy: None,
            endpoint: EndpointConfig {
                transport: Transport::Graph,
                host: self.graph_root.clone(),
                port: None,
                tls: None,
                tls_name: None,
                extra_ca_file: None,
                tls_pin: None,
            },
            who: Identity::of(&self.account),
            sign_in: SenderSignIn::AppOnly(self.tokens.clone()),
            max_message_size: self.account.limits.max_message_size,
        })
    }
}

/// The helpdesk: a customer's mail to the Graph app-only helpdesk mailbox becomes a
/// webhook request (a ticket); the helpdesk's reply, queued in the outbox, is sent
/// through Graph and lands once in the customer's mailbox, threaded to the ticket.
#[tokio::test]
async fn helpdesk_gets_a_ticket_by_webhook_and_its_reply_reaches_the_customer() {
    let w = world().await;
    let mut hook = receiver().await;
    let mut sinks = SinkSet::new();
    sinks.insert("tickets", hook.sink());
    let (account, id) = w.account("helpdesk", Transport::Graph).await;
    let config = w.config(&account, id, "inbox", vec![route(&["tickets"])]);
    let mut watch = w.watch(config, Arc::new(sinks));
    watch.until("idle", |s| *s == WatcherState::Idle).await;

    // Bob writes to the helpdesk (through Postfix, as mail arrives).
    let question = format!(
        "From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: VPN does not connect\r\nMessage-ID: <vpn-1@contoso.example>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\n\r\nSince this morning the VPN says error 809.\r\n"
    );
    w.mail
        .mail_store()
        .deliver(BOB, &[ALICE.to_owned()], question.as_bytes())
        .await
        .unwrap();
    hook.wait_for("VPN does not connect").await;
    let ticket = hook.seen.lock().unwrap()[0].clone();
    assert_eq!(ticket.body["account"], "helpdesk");
    assert_eq!(ticket.body["message_id"], "vpn-1@contoso.example");
    assert_eq!(ticket.body["from"][0]["address"], BOB, "{:#}", ticket.body);
    watch.stop().await;

    // The helpdesk answers through the outbox.
    let reply = format!(
        "From: Contoso Helpdesk <{ALICE}>\r\nTo: {BOB}\r\nSubject: Re: VPN does not connect [ticket 1]\r\nMessage-ID: <ticket-1-reply@contoso.example>\r\nIn-Reply-To: <vpn-1@contoso.example>\r\nReferences: <vpn-1@contoso.example>\r\n\r\nPlease reinstall the VPN profile.\r\n"
    );
    let queued = w
        .store
        .outbox_enqueue(
            NewOutboxMessage {
                account: id,
                idempotency_key: Some("ticket-1-reply".into()),
                message: reply.into_bytes(),
                mail_from: None,
                recipients: Vec::new(),
            },
            u64::MAX,
        )
        .await
        .unwrap();
    let worker = OutboxWorker::new(
        w.store.clone(),
        Arc::new(GraphSide {
            graph_root: format!("{}/v1.0", w.server.base_url()),
            tokens: w.tokens("helpdesk", Transport::Graph),
            account,
        }),
        OutboxSettings {
            instance: "helpdesk".into(),
            ..OutboxSettings::default()
        },
    );
    let done = worker
        .send_pending(&CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(done.as_slice(), [Outcome::Sent { id, .. }] if *id == queued.entry.id),
        "{done:?}"
    );
    let delivered = arrived(&w.mail, BOB, "Subject: Re: VPN does not connect [ticket 1]").await;
    assert_eq!(delivered.len(), 1, "the reply arrived once");
    let text = String::from_utf8_lossy(&delivered[0]);
    assert!(
        text.contains("In-Reply-To: <vpn-1@contoso.example>"),
        "threaded to the ticket: {text}"
    );
    assert!(text.contains("Please reinstall the VPN profile."), "{text}");
    // Nothing more to send.
    assert!(
        worker
            .send_pending(&CancellationToken::new())
            .await
            .unwrap()
            .is_empty()
    );
}
