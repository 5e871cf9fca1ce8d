//! The send API against real Postfix/Dovecot and the emulated tenant: a message sent
//! through SMTP, Graph (MIME and a draft with an upload session) or EWS is read back
//! through IMAP (Dovecot) or Graph and compared, non-ASCII names included.

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders as _};
use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphTarget};
use mailbridge_mailbox::compose::{Address, Attachment, Content, Message};
use mailbridge_mailbox::mailbox::{Checkpoint, GraphMailboxAccess, Mailbox as _};
use mailbridge_mailbox::send::{
    AnySender, EwsSender, GraphSender, Outgoing, RawMime, Route, Sender as _, SenderSignIn,
    SmtpSender,
};
use mailbridge_smtp::SmtpConfig;
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use mailbridge_types::ErrorClass;
use mailbridge_types::config::{EndpointConfig, Transport};
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
            pin: None,
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
            mailbridge_auth::source::fixed(
                self.token(Resource::graph(), &["Mail.Send", "Mail.ReadWrite"]),
            ),
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
                token: mailbridge_auth::source::fixed(
                    self.token(Resource::exchange(), &["full_access_as_app"]),
                ),
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

    // Raw MIME over 3 MB, all of it body: a draft with that body.
    let mut eml = format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: big raw\r\n\r\n").into_bytes();
    eml.extend(std::iter::repeat_n(b'x', 3_500_000));
    let raw = RawMime::from_reader(std::io::Cursor::new(eml))
        .await
        .unwrap();
    let sent = graph.send(Outgoing::Mime(raw)).await.unwrap();
    assert_eq!(sent.route, Route::GraphDraft { upload_sessions: 0 });
    let got = w.received(BOB, "big raw").await;
    let parsed = MessageParser::default().parse(&got).unwrap();
    assert_eq!(parsed.body_text(0).unwrap().trim_end().len(), 3_500_000);
}

/// Raw MIME of about 11 MB (an 8 MB attachment, base64) over Graph: too large for
/// `sendMail`, so it becomes a draft whose attachment goes through an upload session;
/// what the recipients get keeps the header, the bodies Graph can carry and the
/// attachments byte for byte.
#[tokio::test]
async fn graph_sends_raw_mime_over_3_mb_through_a_draft_and_an_upload_session() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let (large, large_data) =
        file_attachment(&dir, "Jahresbericht – Größe 8 MB.pdf", 8 * 1024 * 1024);
    let small = Attachment {
        file_name: "notiz.txt".into(),
        content_type: "text/plain".into(),
        content: Content::Bytes("kleine Notiz\r\n".into()),
    };
    let mut m = message("Roh-MIME über Graph, 11 MB");
    m.cc.push(Address::with_name(CAROL, "Carol Çelik"));
    m.bcc = vec![Address::new(ALICE)];
    m.reply_to.push(Address::new(CAROL));
    m.attachments.push(large);
    m.attachments.push(small);
    let eml = m
        .to_vec(mailbridge_mailbox::compose::BccHeader::Include)
        .await
        .unwrap();
    assert!(eml.len() > 10 * 1024 * 1024, "{}", eml.len());
    let raw = RawMime::from_reader(std::io::Cursor::new(eml.clone()))
        .await
        .unwrap();
    let sent = w.graph().send(Outgoing::Mime(raw)).await.unwrap();
    assert_eq!(sent.route, Route::GraphDraft { upload_sessions: 1 });
    assert_eq!(sent.size, eml.len() as u64);
    assert_eq!(sent.recipients, 3);

    let got = w.received(BOB, &m.subject).await;
    check_received(&got, &m, Some(&large_data));
    let parsed = MessageParser::default().parse(&got).unwrap();
    let from = parsed.from().unwrap().first().unwrap();
    // Exchange writes the mailbox's own display name on a draft it sends.
    assert_eq!((from.address(), from.name()), (Some(ALICE), Some("Alice")));
    let cc = parsed.cc().unwrap().first().unwrap();
    assert_eq!(
        (cc.address(), cc.name()),
        (Some(CAROL), Some("Carol Çelik"))
    );
    assert_eq!(
        parsed.reply_to().unwrap().first().unwrap().address(),
        Some(CAROL)
    );
    assert_eq!(
        parsed.header_raw("X-Ticket-Id").map(str::trim),
        Some("T-42")
    );
    // One body over Graph: the HTML.
    assert!(
        parsed.body_html(0).unwrap().contains("<p>Grüße</p>"),
        "{:?}",
        parsed.body_html(0)
    );
    let a = parsed.attachment(0).unwrap();
    assert_eq!(a.content_type().unwrap().ctype(), "application");
    assert_eq!(a.content_type().unwrap().subtype(), Some("pdf"));
    let note = parsed.attachment(1).unwrap();
    assert_eq!(note.attachment_name(), Some("notiz.txt"));
    assert_eq!(note.contents(), b"kleine Notiz\r\n");
    // Cc and Bcc recipients got it too; the draft is gone.
    w.received(CAROL, &m.subject).await;
    let bcc_copy = w.received(ALICE, &m.subject).await;
    assert!(
        MessageParser::default()
            .parse(&bcc_copy)
            .unwrap()
            .bcc()
            .is_none()
    );
    assert!(
        w.mail
            .mail_store()
            .list(ALICE, "Drafts")
            .await
            .unwrap()
            .is_empty()
    );
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
        mailbridge_auth::source::fixed(w.token(Resource::graph(), &["Mail.ReadWrite"])),
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
        e.detail().contains("header X-Note contains a line break"),
        "{}",
        e.detail()
    );
    assert!(!smtp.is_connected(), "refused before connecting");
    let e = w.graph().send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.detail().contains("line break"), "{}", e.detail());
    let e = w.ews().send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.detail().contains("line break"), "{}", e.detail());
    let mut m = message("subject\nBcc: victim@contoso.example");
    m.headers.clear();
    let e = smtp.send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(
        e.detail().contains("the subject contains a line break"),
        "{}",
        e.detail()
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
    assert!(e.detail().contains("5.2.252"), "{}", e.detail());
    assert_ne!(e.class, ErrorClass::Transient, "{}", e.detail());
    // The session survives the refusal (RSET) and sends the next message.
    assert!(smtp.is_connected());
    let ok = message("as alice after a refusal");
    smtp.send(Outgoing::Message(&ok)).await.unwrap();
    w.received(BOB, &ok.subject).await;
    // EWS checks the From of the MIME.
    let e = w.ews().send(Outgoing::Message(&m)).await.unwrap_err();
    assert!(e.detail().contains("SendAs"), "{}", e.detail());
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
    let mut graph = GraphSender::new(
        w.graph_client(),
        GraphTarget::Me,
        mailbridge_auth::source::fixed(token),
    );
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

/// A TCP proxy between a client and Postfix's submission port that can cut the
/// current connection on demand (both directions closed at once), now or after a
/// number of further bytes from the client.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// Connections accepted so far.
    accepted: usize,
    /// The tasks carrying the current connection(s); aborting them closes both sides.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Cut once this many more bytes have come from the client.
    cut_after: Option<usize>,
}

impl CuttingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up_state = shared.clone();
                let up = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // Pass on at most the bytes before the cut, then cut.
                        let (pass, cut) = {
                            let mut s = up_state.lock().unwrap();
                            match s.cut_after {
                                Some(left) if left <= n => {
                                    s.cut_after = None;
                                    (left, true)
                                }
                                Some(left) => {
                                    s.cut_after = Some(left - n);
                                    (n, false)
                                }
                                None => (n, false),
                            }
                        };
                        if sw.write_all(&buf[..pass]).await.is_err() {
                            return;
                        }
                        if cut {
                            let tasks = std::mem::take(&mut up_state.lock().unwrap().tasks);
                            // This task ends by returning: its halves drop with it.
                            for t in tasks {
                                t.abort();
                            }
                            return;
                        }
                    }
                });
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut s = shared.lock().unwrap();
                s.accepted += 1;
                s.tasks.push(up);
                s.tasks.push(down);
            }
        });
        Self { addr, state }
    }

    /// Closes the current connection, both directions, now.
    async fn cut(&self) {
        let tasks = std::mem::take(&mut self.state.lock().unwrap().tasks);
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Closes the current connection after `n` more bytes from the client.
    fn cut_after(&self, n: usize) {
        self.state.lock().unwrap().cut_after = Some(n);
    }

    fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }
}

impl World {
    /// An SMTP sender that reaches Postfix through `proxy`.
    fn smtp_through(&self, proxy: &CuttingProxy) -> SmtpSender {
        let mut config = SmtpConfig::new(
            "127.0.0.1",
            proxy.addr.port(),
            mailbridge_smtp::TlsMode::StartTls,
        );
        config.trust = TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        };
        config.timeout = Duration::from_secs(20);
        SmtpSender::new(
            config,
            Some(mailbridge_smtp::Credentials::XOAuth2 {
                user: ALICE.into(),
                token: self.token(Resource::exchange(), &["SMTP.SendAsApp"]),
            }),
        )
    }

    /// How many messages with `subject` are in `mailbox`'s inbox now.
    async fn count(&self, mailbox: &str, subject: &str) -> usize {
        let store = self.mail.mail_store();
        store
            .list(mailbox, "INBOX")
            .await
            .unwrap()
            .iter()
            .filter(|m| {
                MessageParser::default()
                    .parse_headers(&m.header)
                    .unwrap()
                    .subject()
                    == Some(subject)
            })
            .count()
    }
}

#[tokio::test]
async fn a_dropped_idle_smtp_connection_is_reopened_once_and_a_cut_in_data_is_an_error() {
    let w = world().await;
    let proxy = CuttingProxy::start(w.mail.submission()).await;
    let mut smtp = w.smtp_through(&proxy);
    let plain = |subject: &str| {
        let mut m = Message::new(Address::new(ALICE));
        m.to.push(Address::new(BOB));
        subject.clone_into(&mut m.subject);
        m.text = Some("hello\r\n".into());
        m
    };

    let first = plain("before the cut");
    smtp.send(Outgoing::Message(&first)).await.unwrap();
    assert_eq!(proxy.accepted(), 1);
    // The server side goes away while the connection is idle: the next message
    // notices before any of its body is read, reconnects once and goes out.
    proxy.cut().await;
    assert!(smtp.is_connected(), "the sender has not noticed yet");
    let second = plain("after the cut");
    let sent = smtp.send(Outgoing::Message(&second)).await;
    assert!(sent.is_ok(), "{sent:?}\n{}", w.mail.logs());
    assert_eq!(proxy.accepted(), 2, "exactly one new connection");

    // A cut in the middle of DATA on the reused connection: an error, no second try
    // (the server might have kept part of it; a retry could duplicate).
    let mut big = plain("cut in the middle of DATA");
    big.text = Some("0123456789abcdef\r\n".repeat(200_000)); // 3.6 MB
    proxy.cut_after(1024 * 1024);
    let e = smtp.send(Outgoing::Message(&big)).await.unwrap_err();
    // Transient when the cut is seen while the body is written; outcome unknown when
    // the kernel's socket buffers took the rest and the final `.` went out before the
    // cut was seen (a loaded machine). Either way: an error, and never a second try.
    assert!(
        matches!(e.class, ErrorClass::Transient | ErrorClass::OutcomeUnknown),
        "{:?}: {}",
        e.class,
        e.detail()
    );
    assert_eq!(proxy.accepted(), 2, "no silent retry: {}", e.detail());
    assert!(!smtp.is_connected());

    // The next message opens a new connection.
    let last = plain("after the failed one");
    smtp.send(Outgoing::Message(&last)).await.unwrap();
    assert_eq!(proxy.accepted(), 3);
    smtp.close().await.unwrap();

    for m in [&first, &second, &last] {
        w.received(BOB, &m.subject).await;
    }
    // Anything duplicated would have been queued before the last message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in [&first, &second, &last] {
        assert_eq!(w.count(BOB, &m.subject).await, 1, "{}", m.subject);
    }
    assert_eq!(w.count(BOB, &big.subject).await, 0);
}

/// A plain SMTP server that takes messages on each connection, but answers the first
/// command after the first connection's first message with `421` and hangs up, as
/// Postfix does once its idle timeout has passed. Counts connections and messages.
async fn idle_timeout_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let (conns, msgs) = (connections.clone(), messages.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let nth = conns.fetch_add(1, Ordering::SeqCst);
            let msgs = msgs.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                let _ = w.write_all(b"220 localhost ESMTP\r\n").await;
                let mut delivered = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    if nth == 0 && delivered == 1 {
                        let _ = w
                            .write_all(b"421 4.4.2 localhost Error: timeout exceeded\r\n")
                            .await;
                        let _ = w.shutdown().await;
                        let mut rest = Vec::new();
                        let _ = r.read_to_end(&mut rest).await;
                        return;
                    }
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-localhost\r\n250 8BITMIME\r\n"
                    } else if cmd == "DATA" {
                        let _ = w.write_all(b"354 go on\r\n").await;
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        msgs.lock().unwrap().push(data);
                        delivered += 1;
                        b"250 2.0.0 Ok: queued\r\n"
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections, messages)
}

#[tokio::test]
async fn a_421_goodbye_on_a_reused_connection_is_a_reconnect_not_an_error() {
    use std::sync::atomic::Ordering;
    let (addr, connections, messages) = idle_timeout_server().await;
    let mut config = SmtpConfig::new("127.0.0.1", addr.port(), mailbridge_smtp::TlsMode::None);
    config.timeout = Duration::from_secs(10);
    let mut smtp = SmtpSender::new(config, None);
    let mut m = Message::new(Address::new(ALICE));
    m.to.push(Address::new(BOB));
    "first".clone_into(&mut m.subject);
    m.text = Some("one\r\n".into());
    smtp.send(Outgoing::Message(&m)).await.unwrap();
    "second".clone_into(&mut m.subject);
    let sent = smtp.send(Outgoing::Message(&m)).await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let messages = messages.lock().unwrap();
    assert_eq!(messages.len(), 2);
    assert!(messages[1].contains("Subject: second"), "{}", messages[1]);
}

#[tokio::test]
async fn a_refused_recipient_among_several_stops_the_message_and_is_named() {
    let w = world().await;
    let mut smtp = w.smtp();
    let eml = format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: partly refused\r\n\r\nx\r\n");
    let bad = "carol@-bad-.example";
    let raw = RawMime::from_reader(std::io::Cursor::new(eml.into_bytes()))
        .await
        .unwrap()
        .with_recipients(vec![BOB.into(), bad.into(), CAROL.into()]);
    let e = smtp.send(Outgoing::Mime(raw)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{}", e.detail());
    assert!(
        e.detail().contains(&format!("RCPT TO:<{bad}>")),
        "{}",
        e.detail()
    );
    assert!(e.detail().contains("5.1.3"), "{}", e.detail());
    // Postfix had said 354 to the pipelined DATA: the connection was dropped, not
    // used for a message to BOB and CAROL; the next message opens a new one.
    assert!(!smtp.is_connected());
    let ok = message("after a refused recipient");
    smtp.send(Outgoing::Message(&ok)).await.unwrap();
    w.received(BOB, &ok.subject).await;
    w.received(CAROL, &ok.subject).await;
    assert_eq!(w.count(BOB, "partly refused").await, 0);
    assert_eq!(w.count(CAROL, "partly refused").await, 0);
}

/// A structured message that needs a Graph draft (an attachment of 3 MB or more) with
/// more X- headers than a draft carries is refused before any request, naming SMTP;
/// small enough for sendMail (MIME), the same headers go through.
#[tokio::test]
async fn graph_draft_with_more_than_five_headers_is_refused_before_sending() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let mut graph = w.graph();
    let (large, _) = file_attachment(&dir, "big.bin", 3 * 1024 * 1024 + 1);
    let mut m = message("Six headers, large");
    for i in 0..6 {
        m.headers.push((format!("X-H{i}"), "v".to_owned()));
    }
    m.attachments.push(large);
    let e = graph.send(Outgoing::Message(&m)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(
        e.detail().contains("at most 5") && e.detail().contains("SMTP"),
        "{e}"
    );
    let mut m = message("Six headers, small");
    for i in 0..6 {
        m.headers.push((format!("X-H{i}"), "v".to_owned()));
    }
    let sent = graph.send(Outgoing::Message(&m)).await.unwrap();
    assert_eq!(sent.route, Route::GraphSendMail);
    let raw = w.received(BOB, &m.subject).await;
    assert!(String::from_utf8_lossy(&raw).contains("X-H5: v"));
}

/// A server that takes the first message and swallows the second one's final `.`:
/// the second send is "outcome unknown" (the server may have it), and the sender
/// neither resends it on a new connection nor calls it a passing failure.
#[tokio::test]
async fn smtp_never_resends_a_message_whose_final_dot_went_unanswered() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // (connections, DATA commands)
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counts.lock().unwrap().0 += 1;
            let counts = counts.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                w.write_all(b"220 ready\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let answer: &[u8] = if line.starts_with("DATA") {
                        let n = {
                            let mut c = counts.lock().unwrap();
                            c.1 += 1;
                            c.1
                        };
                        w.write_all(b"354 go\r\n").await.unwrap();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        if n > 1 {
                            // Swallowed: hold the connection until the client leaves.
                            let _ = r.read_line(&mut line).await;
                            return;
                        }
                        b"250 2.0.0 queued\r\n"
                    } else if line.starts_with("EHLO") {
                        b"250-mx\r\n250 8BITMIME\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(answer).await.unwrap();
                }
            });
        }
    });
    let mut config = SmtpConfig::new("127.0.0.1", addr.port(), mailbridge_smtp::TlsMode::None);
    config.final_reply_timeout = Duration::from_millis(500);
    let mut smtp = SmtpSender::new(config, None);
    let eml = |subject: &str| {
        RawMime::from_reader(std::io::Cursor::new(
            format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nhello\r\n")
                .into_bytes(),
        ))
    };
    smtp.send(Outgoing::Mime(eml("first").await.unwrap()))
        .await
        .unwrap();
    let e = smtp
        .send(Outgoing::Mime(eml("second").await.unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::OutcomeUnknown, "{e}");
    assert!(e.detail().contains("may have accepted the message"), "{e}");
    assert!(!smtp.is_connected(), "the unanswered session is dropped");
    assert_eq!(
        *seen.lock().unwrap(),
        (1, 2),
        "one connection, one DATA per message: nothing resent"
    );
}

/// An SMTP server offering `SIZE 1000000` that hears EHLO and, at the end, QUIT.
async fn smtp_server() -> mailbridge_testkit::hostile::HostileServer {
    use mailbridge_testkit::hostile::{HostileServer, Step};
    HostileServer::start(vec![
        Step::Send(b"220 ready\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250-mx\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"221 bye\r\n".to_vec()),
    ])
    .await
}

fn smtp_sender(port: u16, max_message_size: u64) -> AnySender {
    let endpoint = EndpointConfig {
        transport: Transport::Smtp,
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: Some(mailbridge_types::config::TlsMode::None),
        tls_name: None,
        extra_ca_file: None,
        tls_pin: None,
    };
    AnySender::for_endpoint(
        &endpoint,
        &mailbridge_mailbox::connect::Identity::address("a@x.example"),
        SenderSignIn::None,
    )
    .unwrap()
    .with_max_message_size(max_message_size)
}

#[tokio::test]
async fn smtp_refuses_a_mime_file_over_max_message_size_before_mail_from() {
    let server = smtp_server().await;
    let mut sender = smtp_sender(server.port(), 2000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.eml");
    let header =
        "From: a@x.example\r\nTo: b@x.example\r\nBcc: hidden@x.example\r\nSubject: big\r\n\r\n";
    let mut eml = header.as_bytes().to_vec();
    eml.extend(b"x".repeat(5000));
    std::fs::write(&path, &eml).unwrap();
    let raw = RawMime::from_file(&path).await.unwrap();
    let e = sender.send(Outgoing::Mime(raw)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::LimitExceeded, "{}", e.detail());
    // The size is the file's, less the Bcc line that is not sent.
    let sent = eml.len() - "Bcc: hidden@x.example\r\n".len();
    assert!(
        e.detail().contains(&format!("{sent} bytes"))
            && e.detail().contains("2000 bytes")
            && e.detail().contains("limits.max_message_size"),
        "{}",
        e.detail()
    );

    // A composed message over the bound too, on the same connection.
    let mut m = Message::new(Address::new("a@x.example"));
    m.to.push(Address::new("b@x.example"));
    m.text = Some("y".repeat(5000));
    let e = sender.send(Outgoing::Message(&m)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::LimitExceeded, "{}", e.detail());
    assert!(
        e.detail().contains("limits.max_message_size"),
        "{}",
        e.detail()
    );

    let AnySender::Smtp(smtp) = sender else {
        panic!("an SMTP sender")
    };
    smtp.close().await.unwrap();
    assert_eq!(
        server.received_text(),
        "EHLO mailbridge.localhost\r\nQUIT\r\n"
    );
    assert_eq!(server.connections(), 1);
}
