//! The send API against real Postfix/Dovecot and the emulated tenant: a message sent
//! through SMTP, Graph (MIME and a draft with an upload session) or EWS is read back
//! through IMAP (Dovecot) or Graph and compared, non-ASCII names included.

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders as _};
use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphTarget};
use mailbridge_mailbox::compose::{Address, Attachment, Content, Message};
use mailbridge_mailbox::mailbox::{Checkpoint, GraphMailboxAccess, Mailbox as _};
use mailbridge_mailbox::send::{
    EwsSender, GraphSender, Outgoing, RawMime, Route, Sender as _, SmtpSender,
};
use mailbridge_smtp::SmtpConfig;
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Transport;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const CAROL: &str = "carol@contoso.example";

struct World {
    emulator: Emulator,
    server: EmulatorServer,
    mail: MailServers,
    app: AppRegistration,
}

async fn world() -> World {
    let app = AppRegistration::new("Connector").consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_user(User::new(CAROL, "Carol", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(ALICE, &sp, MailboxRight::FullAccess)
        .with_mailbox_permission(BOB, &sp, MailboxRight::FullAccess);
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    World {
        emulator,
        server,
        mail,
        app,
    }
}

impl World {
    fn token(&self, resource: Resource, roles: &[&str]) -> SecretString {
        SecretString::from(self.emulator.app_token(&self.app, resource, roles))
    }

    fn smtp(&self) -> SmtpSender {
        let addr = self.mail.submission();
        let mut config = SmtpConfig::new(
            &addr.ip().to_string(),
            addr.port(),
            mailbridge_smtp::TlsMode::StartTls,
        );
        config.trust = TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
        };
        SmtpSender::new(
            config,
            Some(mailbridge_smtp::Credentials::XOAuth2 {
                user: ALICE.into(),
                token: self.token(Resource::exchange(), &["SMTP.SendAsApp"]),
            }),
        )
    }

    fn graph_client(&self) -> GraphClient {
        GraphClient::new(GraphConfig::new(&format!(
            "{}/v1.0",
            self.server.base_url()
        )))
        .unwrap()
    }

    fn graph(&self) -> GraphSender {
        GraphSender::new(
            self.graph_client(),
            GraphTarget::User(ALICE.into()),
            self.token(Resource::graph(), &["Mail.Send", "Mail.ReadWrite"]),
        )
    }

    fn ews(&self) -> EwsSender {
        EwsSender::new(
            mailbridge_ews::EwsClient::new(mailbridge_ews::EwsConfig::new(&format!(
                "{}/EWS/Exchange.asmx",
                self.server.base_url()
            )))
            .unwrap(),
            mailbridge_ews::EwsAuth::AppOnly {
                token: self.token(Resource::exchange(), &["full_access_as_app"]),
                mailbox: ALICE.into(),
            },
        )
    }

    /// The raw message with `subject` in `mailbox`'s inbox, read through IMAP
    /// (Dovecot), waiting for delivery.
    async fn received(&self, mailbox: &str, subject: &str) -> Vec<u8> {
        let store = self.mail.mail_store();
        for _ in 0..400 {
            for m in store.list(mailbox, "INBOX").await.unwrap() {
                let parsed = MessageParser::default().parse_headers(&m.header).unwrap();
                if parsed.subject() == Some(subject) {
                    return store.fetch(&m.id).await.unwrap().unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{subject:?} did not arrive in {mailbox}\n{}",
            self.mail.logs()
        );
    }
}

fn message(subject: &str) -> Message {
    let mut m = Message::new(Address::with_name(ALICE, "Alice Ärger-Ørsted"));
    m.to.push(Address::with_name(BOB, "Bob Bärlauch"));
    m.bcc.push(Address::new(CAROL));
    subject.clone_into(&mut m.subject);
    m.text = Some("Grüße,\r\n.\r\nthe end\r\n".into());
    m.html = Some("<p>Grüße</p>".into());
    m.headers.push(("X-Ticket-Id".into(), "T-42".into()));
    m
}

fn file_attachment(dir: &tempfile::TempDir, name: &str, len: usize) -> (Attachment, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap())
        .collect();
    let path = dir.path().join(format!("{}.bin", data.len()));
    std::fs::write(&path, &data).unwrap();
    (
        Attachment {
            file_name: name.to_owned(),
            content_type: "application/pdf".into(),
            content: Content::File(path),
        },
        data,
    )
}

/// What a recipient must see of `sent`, with the attachment bytes.
fn check_received(raw: &[u8], sent: &Message, attachment: Option<&[u8]>) {
    let parsed = MessageParser::default().parse(raw).unwrap();
    assert_eq!(parsed.subject(), Some(sent.subject.as_str()));
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some(BOB));
    assert!(parsed.bcc().is_none(), "Bcc must not reach recipients");
    assert!(
        parsed.body_text(0).unwrap().contains("Grüße"),
        "{:?}",
        parsed.body_text(0)
    );
    if let Some(data) = attachment {
        let a = parsed.attachment(0).expect("the attachment");
        assert_eq!(
            a.attachment_name(),
            Some(sent.attachments[0].file_name.as_str())
        );
        assert!(a.contents() == data, "attachment bytes differ");
    }
}

#[tokio::test]
async fn smtp_sends_structured_and_raw_mime_over_one_connection() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = w.smtp();
    let (attachment, data) = file_attachment(&dir, "Prüfbericht Größe №1 – März.pdf", 300_000);
    let mut m = message("Rechnung für Jörg – SMTP");
    m.attachments.push(attachment);
    let sent = smtp.send(Outgoing::Message(&m)).await.unwrap();
    assert_eq!(sent.transport, Transport::Smtp);
    assert_eq!(sent.route, Route::SmtpData);
    assert_eq!(sent.recipients, 2);
    assert!(sent.server_reply.as_deref().unwrap().starts_with("250"));
    assert!(
        smtp.is_connected(),
        "the connection stays open for the next"
    );

    let raw = w.received(BOB, &m.subject).await;
    check_received(&raw, &m, Some(&data));
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.from().unwrap().first().unwrap().name(),
        Some("Alice Ärger-Ørsted")
    );
    assert_eq!(parsed.message_id(), sent.message_id.as_deref());
    // Bcc is in the envelope: Carol got it, without a Bcc field.
    let carol = w.received(CAROL, &m.subject).await;
    assert!(
        MessageParser::default()
            .parse(&carol)
            .unwrap()
            .bcc()
            .is_none()
    );

    // Raw MIME on the same connection; its Bcc field is dropped, its Bcc delivered.
    let eml = format!(
        "From: {ALICE}\r\nTo: {BOB}\r\nBcc: {CAROL}\r\nSubject: raw over smtp\r\nMessage-ID: <raw-1@contoso.example>\r\n\r\n.leading dot\r\nbody\r\n"
    );
    let path = dir.path().join("m.eml");
    std::fs::write(&path, &eml).unwrap();
    let sent = smtp
        .send(Outgoing::Mime(RawMime::from_file(&path).await.unwrap()))
        .await
        .unwrap();
    assert_eq!(sent.message_id.as_deref(), Some("raw-1@contoso.example"));
    assert_eq!(sent.recipients, 2);
    let got = w.received(BOB, "raw over smtp").await;
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("Bcc:"), "{text}");
    assert!(
        text.contains("\r\n.leading dot\r\n"),
        "dot unstuffed: {text}"
    );
    w.received(CAROL, "raw over smtp").await;
    smtp.close().await.unwrap();
}

#[tokio::test]
async fn graph_small_message_goes_as_mime_and_large_attachment_through_an_upload_session() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let mut graph = w.graph();

    // Small: sendMail with MIME; read back through IMAP.
    let (small, small_data) = file_attachment(&dir, "Übersicht 2026.pdf", 20_000);
    let mut m = message("Kleine Grüße über Graph");
    m.attachments.push(small);
    let sent = graph.send(Outgoing::Message(&m)).await.unwrap();
    assert_eq!(sent.route, Route::GraphSendMail);
    assert_eq!(sent.message_id.as_deref(), Some(m.message_id.as_str()));
    let raw = w.received(BOB, &m.subject).await;
    check_received(&raw, &m, Some(&small_data));
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.from().unwrap().first().unwrap().name(),
        Some("Alice Ärger-Ørsted")
    );
    w.received(CAROL, &m.subject).await;

    // 4 MB attachment: a draft, an upload session in 320 KiB multiples, send.
    let (large, large_data) =
        file_attachment(&dir, "Großer Anhang – Bilanz.pdf", 4 * 1024 * 1024 + 123);
    let mut m = message("Große Grüße über Graph");
    m.attachments.push(large);
    let sent = graph.send(Outgoing::Message(&m)).await.unwrap();
    assert_eq!(sent.route, Route::GraphDraft { upload_sessions: 1 });
    assert_eq!(sent.transport, Transport::Graph);
    let raw = w.received(BOB, &m.subject).await;
    check_received(&raw, &m, Some(&large_data));
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.message_id(),
        sent.message_id.as_deref(),
        "the Message-ID reported is the one delivered"
    );
    w.received(CAROL, &m.subject).await;
    // The draft is gone; the copy is in Sent Items.
    let store = w.mail.mail_store();
    assert!(store.list(ALICE, "Drafts").await.unwrap().is_empty());

    // Raw MIME over 3 MB is refused with the way out.
    let mut eml = format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: big raw\r\n\r\n").into_bytes();
    eml.extend(std::iter::repeat_n(b'x', 3_500_000));
    let raw = RawMime::from_reader(std::io::Cursor::new(eml))
        .await
        .unwrap();
    let e = graph.send(Outgoing::Mime(raw)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.message.contains("send it over SMTP"), "{}", e.message);
}

#[tokio::test]
async fn ews_sends_with_a_copy_in_sent_items() {
    let w = world().await;
    let mut ews = w.ews();
    let mut m = message("Grüße über EWS");
    m.attachments.push(Attachment {
        file_name: "Notiz für Ärzte.txt".into(),
        content_type: "text/plain".into(),
        content: Content::Bytes("Hallo Welt".into()),
    });
    let sent = match ews.send(Outgoing::Message(&m)).await {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{}", w.mail.logs()),
    };
    assert_eq!(sent.route, Route::EwsCreateItem);
    let raw = w.received(BOB, &m.subject).await;
    check_received(&raw, &m, Some(b"Hallo Welt"));
    w.received(CAROL, &m.subject).await;
    let store = w.mail.mail_store();
    let copies = store.list(ALICE, "Sent Items").await.unwrap();
    assert_eq!(copies.len(), 1, "SendAndSaveCopy keeps a copy");
}

#[tokio::test]
async fn sent_over_smtp_is_read_through_graph() {
    let w = world().await;
    let mut smtp = w.smtp();
    let m = message("Über SMTP, gelesen über Graph");
    smtp.send(Outgoing::Message(&m)).await.unwrap();
    let imap_copy = w.received(BOB, &m.subject).await;
    let mut inbox = GraphMailboxAccess::new(
        w.graph_client(),
        GraphTarget::User(BOB.into()),
        w.token(Resource::graph(), &["Mail.ReadWrite"]),
    );
    let new = inbox.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(new.messages.len(), 1);
    let mut through_graph = Vec::new();
    inbox
        .fetch(&new.messages[0], &mut through_graph)
        .await
        .unwrap();
    assert_eq!(through_graph, imap_copy);
    check_received(&through_graph, &m, None);
}

#[tokio::test]
async fn header_injection_is_refused_before_anything_is_sent() {
    let w = world().await;
    let mut m = message("harmless");
    m.headers
        .push(("X-Note".into(), "x\r\nBcc: victim@contoso.example".into()));
    let mut smtp = w.smtp();
    let e = smtp.send(Outgoing::Message(&m)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.message.contains("header X-Note contains a line break"),
        "{}",
        e.message
    );
    assert!(!smtp.is_connected(), "refused before connecting");
    let e = w.graph().send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.message.contains("line break"), "{}", e.message);
    let e = w.ews().send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.message.contains("line break"), "{}", e.message);
    let mut m = message("subject\nBcc: victim@contoso.example");
    m.headers.clear();
    let e = smtp.send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(
        e.message.contains("the subject contains a line break"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn send_as_without_the_right_is_refused_by_the_server() {
    let w = world().await;
    // Alice's SMTP session sending as Bob: Exchange's 5.2.252 / the emulator's judge.
    let mut m = message("as bob over smtp");
    m.from = Address::new(BOB);
    let mut smtp = w.smtp();
    let e = smtp.send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.message.contains("5.2.252"), "{}", e.message);
    assert_ne!(e.class, ErrorClass::Transient, "{}", e.message);
    // The session survives the refusal (RSET) and sends the next message.
    assert!(smtp.is_connected());
    let ok = message("as alice after a refusal");
    smtp.send(Outgoing::Message(&ok)).await.unwrap();
    w.received(BOB, &ok.subject).await;
    // EWS checks the From of the MIME.
    let e = w.ews().send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.message.contains("SendAs"), "{}", e.message);
}

#[tokio::test]
async fn graph_draft_route_honours_retry_after_and_uploads_chunks_without_the_token() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    w.emulator.update_knobs(|k| {
        k.faults.graph_429 = 2;
        k.graph_retry_after_secs = 1;
    });
    let (large, data) = file_attachment(&dir, "gedrosselt.pdf", 3 * 1024 * 1024 + 500_000);
    let mut m = message("throttled draft");
    m.attachments.push(large);
    let sent = w.graph().send(Outgoing::Message(&m)).await.unwrap();
    assert_eq!(sent.route, Route::GraphDraft { upload_sessions: 1 });
    let raw = w.received(BOB, &m.subject).await;
    check_received(&raw, &m, Some(&data));
    let requests = w.emulator.requests();
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 2, "both 429s were answered and retried");
    let chunks: Vec<_> = requests
        .iter()
        .filter(|r| r.uri.contains("AttachmentSessions"))
        .collect();
    assert_eq!(chunks.len(), 2, "3.5 MB in chunks of 10 x 320 KiB");
    for c in &chunks {
        assert!(
            !c.headers.iter().any(|(n, _)| n == "authorization"),
            "the upload URL must not get the Graph token"
        );
    }
    let first_range = chunks[0]
        .headers
        .iter()
        .find(|(n, _)| n == "content-range")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        first_range,
        format!("bytes 0-{}/{}", 10 * 320 * 1024 - 1, data.len())
    );
}

#[tokio::test]
async fn graph_delegated_sends_from_me() {
    let w = world().await;
    let token = SecretString::from(w.emulator.user_token(
        &w.app,
        ALICE,
        Resource::graph(),
        &["Mail.Send", "Mail.ReadWrite"],
    ));
    let mut graph = GraphSender::new(w.graph_client(), GraphTarget::Me, token);
    let m = message("delegiert über /me");
    let sent = graph.send(Outgoing::Message(&m)).await.unwrap();
    assert_eq!(sent.route, Route::GraphSendMail);
    check_received(&w.received(BOB, &m.subject).await, &m, None);
    assert!(
        w.emulator
            .requests()
            .iter()
            .any(|r| r.uri.ends_with("/v1.0/me/sendMail")),
        "delegated sends go to /me"
    );
}
