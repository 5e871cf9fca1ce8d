//! `mailbridge send` against real Postfix/Dovecot and the emulated tenant: over SMTP
//! and Graph, from the configuration's accounts, with app-only tokens; a 50 MB message
//! through each with the child's peak memory (VmHWM) read from /proc while it runs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders as _};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const SECRET: &str = "Qx~8Q~cli.sender.secret-value-0123456789";

struct World {
    _server: EmulatorServer,
    mail: MailServers,
    dir: tempfile::TempDir,
}

impl World {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailbridge"));
        c.args(args)
            .env("MAILBRIDGE_CONFIG", self.dir.path().join("mailbridge.toml"))
            .env("MAILBRIDGE_DATA_DIR", self.dir.path().join("data"))
            .env_remove("MAILBRIDGE_MASTER_KEY")
            .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.cmd(args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the command and samples its peak resident set (VmHWM, KiB) from
    /// /proc/<pid>/status until it exits: (success, stdout, stderr, peak KiB, samples).
    async fn run_measured(&self, args: &[&str]) -> (bool, String, String, u64, usize) {
        let mut child = self.cmd(args).spawn().unwrap();
        let pid = child.id().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out_task = tokio::spawn(async move {
            let mut s = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut s)
                .await
                .unwrap();
            s
        });
        let err_task = tokio::spawn(async move {
            let mut s = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut s)
                .await
                .unwrap();
            s
        });
        let mut peak = 0u64;
        let mut samples = 0;
        let status = loop {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kb) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
                samples += 1;
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        (
            status.success(),
            String::from_utf8_lossy(&out_task.await.unwrap()).into_owned(),
            String::from_utf8_lossy(&err_task.await.unwrap()).into_owned(),
            peak,
            samples,
        )
    }

    /// Bob's message with `subject`, read through IMAP (Dovecot), once delivered.
    async fn received(&self, subject: &str) -> (u64, Vec<u8>) {
        let store = self.mail.mail_store();
        for _ in 0..1200 {
            for m in store.list(BOB, "INBOX").await.unwrap() {
                let parsed = MessageParser::default().parse_headers(&m.header).unwrap();
                if parsed.subject() == Some(subject) {
                    return (m.size, store.fetch(&m.id).await.unwrap().unwrap());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{subject:?} did not arrive\n{}", self.mail.logs());
    }
}

async fn world() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Sender")
        .with_secret(SECRET, year)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.Send")
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
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
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let submission = mail.submission();
    let config = format!(
        r#"
[[app]]
name = "connector"
tenant = "contoso.example"
client_id = "{client_id}"
authority_host = "{base}"
credential = {{ type = "secret" }}

[[account]]
name = "smtp"
address = "{ALICE}"
display_name = "Alice Ärger"
sign_in = "app-only"
app = "connector"
transports = ["smtp"]
outgoing = {{ transport = "smtp", host = "{host}", port = {port}, tls = "starttls", tls_name = "{tls_name}", extra_ca_file = "{ca}" }}

[[account]]
name = "graph"
address = "{ALICE}"
sign_in = "app-only"
app = "connector"
transports = ["graph"]
outgoing = {{ transport = "graph", host = "{base}/v1.0" }}

[[account]]
name = "bob-imap"
address = "{BOB}"
sign_in = "app-only"
app = "connector"
transports = ["imap"]
incoming = {{ transport = "imap", host = "{host}", port = {imap_port}, tls = "starttls", tls_name = "{tls_name}", extra_ca_file = "{ca}" }}

[[account]]
name = "bob-graph"
address = "{BOB}"
sign_in = "app-only"
app = "connector"
transports = ["graph"]
incoming = {{ transport = "graph", host = "{base}/v1.0" }}
"#,
        imap_port = mail.imap().port(),
        client_id = app.client_id,
        base = server.base_url(),
        host = submission.ip(),
        port = submission.port(),
        tls_name = mail.tls_name(),
        ca = ca.display(),
    );
    std::fs::write(dir.path().join("mailbridge.toml"), config).unwrap();
    let w = World {
        _server: server,
        mail,
        dir,
    };
    let mut c = w.cmd(&["secrets", "set-app-secret", "connector"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SECRET}\n").as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w
}

fn write_file(w: &World, name: &str, data: &[u8]) -> PathBuf {
    let path = w.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test]
async fn send_over_smtp_and_graph_from_configured_accounts() {
    let w = world().await;
    let data: Vec<u8> = (0..50_000u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let file = write_file(&w, "Prüfbericht März.pdf", &data);
    let file_arg = file.display().to_string();
    let (ok, out, err) = w
        .run(&[
            "send",
            "--account",
            "smtp",
            "--to",
            "Bob Bärlauch <bob@contoso.example>",
            "--subject",
            "Grüße über die Kommandozeile",
            "--text",
            "Hallo Bob",
            "--attach",
            &file_arg,
            "--header",
            "X-Ticket-Id: T-7",
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("over SMTP (SMTP DATA)"), "{out}");
    assert!(out.contains("server: 250"), "{out}");
    let (_, raw) = w.received("Grüße über die Kommandozeile").await;
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.from().unwrap().first().unwrap().name(),
        Some("Alice Ärger"),
        "the account's display name"
    );
    assert_eq!(
        parsed.to().unwrap().first().unwrap().name(),
        Some("Bob Bärlauch")
    );
    let a = parsed.attachment(0).unwrap();
    assert_eq!(a.attachment_name(), Some("Prüfbericht März.pdf"));
    assert!(a.contents() == data.as_slice());
    let message_id = parsed.message_id().unwrap();
    assert!(out.contains(message_id), "{out} reports {message_id}");

    // Graph, JSON output.
    let (ok, out, err) = w
        .run(&[
            "send",
            "--account",
            "graph",
            "--to",
            BOB,
            "--subject",
            "über Graph",
            "--html",
            "<p>Hallo</p>",
            "--json",
        ])
        .await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["transport"], "graph");
    assert_eq!(v["route"]["kind"], "graph-send-mail");
    assert_eq!(v["account"], "graph");
    let (_, raw) = w.received("über Graph").await;
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.message_id(), v["message_id"].as_str());

    // A raw MIME file over SMTP.
    let eml = write_file(
        &w,
        "m.eml",
        format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: raw file\r\nMessage-ID: <f1@contoso.example>\r\n\r\nbody\r\n").as_bytes(),
    );
    let (ok, out, err) = w
        .run(&[
            "send",
            "--account",
            "smtp",
            "--mime",
            &eml.display().to_string(),
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("<f1@contoso.example>"), "{out}");
    w.received("raw file").await;
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let w = world().await;
    let (ok, _, err) = w
        .run(&[
            "send",
            "--account",
            "smtp",
            "--to",
            BOB,
            "--subject",
            "x",
            "--header",
            "X-Evil: a\r\nBcc: victim@contoso.example",
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("header X-Evil contains a line break"), "{err}");
    let (ok, _, err) = w
        .run(&["send", "--account", "nobody", "--to", BOB, "--subject", "x"])
        .await;
    assert!(!ok);
    assert!(err.contains("accounts: smtp, graph"), "{err}");
    // Sending as someone else: the server's 5.2.252 with the admin's fix.
    let (ok, _, err) = w
        .run(&[
            "send",
            "--account",
            "smtp",
            "--from",
            BOB,
            "--to",
            BOB,
            "--subject",
            "as bob",
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("5.2.252"), "{err}");
    assert!(err.contains("next step:"), "{err}");
}

/// 50 MB of attachment through SMTP and through Graph (upload session), then both
/// messages fetched back over IMAP and Graph: the sending and the fetching process's
/// peak memory stays far below the message size.
#[tokio::test]
async fn a_50_mb_message_is_streamed_over_smtp_and_graph_and_fetched_back() {
    const SIZE: usize = 50 * 1024 * 1024;
    let w = world().await;
    let data: Vec<u8> = (0..SIZE)
        .map(|i| u8::try_from((i.wrapping_mul(31) >> 3) % 256).unwrap())
        .collect();
    let file = write_file(&w, "big.bin", &data);
    drop(data);
    let file_arg = file.display().to_string();
    for (account, subject) in [("smtp", "50 MB over SMTP"), ("graph", "50 MB over Graph")] {
        // The peer in the same run: the same command with a one-line message.
        let (ok, _, err, base_kb, _) = w
            .run_measured(&[
                "send",
                "--account",
                account,
                "--to",
                BOB,
                "--subject",
                "small",
                "--text",
                "small",
            ])
            .await;
        assert!(ok, "{err}");
        let (ok, out, err, peak_kb, samples) = w
            .run_measured(&[
                "send",
                "--account",
                account,
                "--to",
                BOB,
                "--subject",
                subject,
                "--text",
                "big",
                "--attach",
                &file_arg,
            ])
            .await;
        assert!(ok, "{err}");
        println!(
            "{account}: peak resident set {peak_kb} KiB over {samples} samples (a one-line message: {base_kb} KiB); {out}"
        );
        assert!(samples > 0, "the child was never sampled");
        // Streaming costs buffers (a 3.125 MiB upload chunk for Graph), never the
        // message: well under 50 MB above what a one-line message costs.
        assert!(
            peak_kb < base_kb + 20 * 1024,
            "{account}: peak resident set {peak_kb} KiB for a 50 MB attachment, {base_kb} KiB for a one-line message"
        );
        assert!(
            peak_kb < 45 * 1024,
            "{account}: peak resident set {peak_kb} KiB for a 50 MB attachment"
        );
        let (size, raw) = w.received(subject).await;
        assert!(size > SIZE as u64, "{size}");
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let a = parsed.attachment(0).unwrap();
        assert_eq!(a.contents().len(), SIZE);
        assert!(
            a.contents() == std::fs::read(&file).unwrap().as_slice(),
            "{account}: attachment bytes differ"
        );
    }

    // Both arrived in Bob's inbox (with the two one-line messages): fetched back into
    // a Maildir over IMAP (XOAUTH2, streamed literals) and over Graph ($value streamed),
    // the fetching process's peak memory also stays far below one message.
    let (_, over_smtp) = w.received("50 MB over SMTP").await;
    let (_, over_graph) = w.received("50 MB over Graph").await;
    for account in ["bob-imap", "bob-graph"] {
        let out_dir = w.dir.path().join(format!("fetched-{account}"));
        let (ok, out, err, peak_kb, samples) = w
            .run_measured(&[
                "fetch",
                "--account",
                account,
                "--since",
                "all",
                "--out",
                out_dir.to_str().unwrap(),
                "--json",
            ])
            .await;
        assert!(ok, "{account}: {out}{err}");
        println!("fetch {account}: peak resident set {peak_kb} KiB over {samples} samples; {out}");
        assert!(samples > 0, "the child was never sampled");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["messages"], 4, "{account}: {v}");
        assert!(
            peak_kb < 45 * 1024,
            "{account}: peak resident set {peak_kb} KiB fetching two 50 MB messages"
        );
        let mut files: Vec<Vec<u8>> = std::fs::read_dir(out_dir.join("new"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        files.sort_by_key(Vec::len);
        assert_eq!(files.len(), 4);
        assert!(
            files.contains(&over_smtp) && files.contains(&over_graph),
            "{account}: the fetched 50 MB messages differ from the server's"
        );
    }
}

#[tokio::test]
async fn an_account_kept_in_the_store_sends_and_sending_can_be_turned_off() {
    let w = world().await;
    let submission = w.mail.submission();
    let outgoing = format!("smtp+starttls://{}:{}", submission.ip(), submission.port());
    let ca = w.dir.path().join("ca.pem").display().to_string();
    let (ok, _, err) = w
        .run(&[
            "account",
            "add",
            ALICE,
            "--name",
            "stored",
            "--sign-in",
            "app-only",
            "--app",
            "connector",
            "--outgoing",
            &outgoing,
            "--tls-name",
            w.mail.tls_name(),
            "--extra-ca-file",
            &ca,
            "--download",
            "false",
        ])
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = w
        .run(&[
            "send",
            "--account",
            "stored",
            "--to",
            BOB,
            "--subject",
            "from the store",
            "--text",
            "hi",
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("over SMTP"), "{out}");
    w.received("from the store").await;
    let incoming = format!("imaps://{}", w.mail.imaps());
    let (ok, _, err) = w
        .run(&[
            "account",
            "edit",
            "stored",
            "--incoming",
            &incoming,
            "--download",
            "true",
            "--send",
            "false",
        ])
        .await;
    assert!(ok, "{err}");
    let (ok, _, err) = w
        .run(&[
            "send",
            "--account",
            "stored",
            "--to",
            BOB,
            "--subject",
            "off",
            "--text",
            "x",
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("sending is off for account stored"), "{err}");
}

/// Raw MIME of about 11 MB (an 8 MB attachment) through Graph: too large for
/// `sendMail`, so a draft with an upload session. The sending process holds the
/// message and its decoded attachment, not several copies of it.
#[tokio::test]
async fn raw_mime_over_3_mb_goes_through_graph_as_a_draft() {
    use mailbridge_mailbox::compose::{Address, Attachment, BccHeader, Content, Message};
    const SIZE: usize = 8 * 1024 * 1024;
    let w = world().await;
    let data: Vec<u8> = (0..SIZE)
        .map(|i| u8::try_from((i.wrapping_mul(37) >> 2) % 256).unwrap())
        .collect();
    let file = write_file(&w, "Bericht.pdf", &data);
    let mut m = Message::new(Address::new(ALICE));
    m.to.push(Address::new(BOB));
    "raw MIME, 11 MB, over Graph".clone_into(&mut m.subject);
    m.text = Some("see the attachment\r\n".into());
    m.attachments.push(Attachment {
        file_name: "Bericht für März.pdf".into(),
        content_type: "application/pdf".into(),
        content: Content::File(file),
    });
    let eml = w.dir.path().join("big.eml");
    let mut out = tokio::fs::File::create(&eml).await.unwrap();
    let eml_len = m.write_mime(&mut out, BccHeader::Include).await.unwrap();
    out.sync_all().await.unwrap();
    drop(out);
    let eml_arg = eml.display().to_string();
    let (ok, _, err, base_kb, _) = w
        .run_measured(&[
            "send",
            "--account",
            "graph",
            "--to",
            BOB,
            "--subject",
            "small",
            "--text",
            "small",
        ])
        .await;
    assert!(ok, "{err}");
    let (ok, out, err, peak_kb, samples) = w
        .run_measured(&["send", "--account", "graph", "--mime", &eml_arg, "--json"])
        .await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["route"]["kind"], "graph-draft", "{out}");
    assert_eq!(v["route"]["upload_sessions"], 1, "{out}");
    let eml_kb = eml_len / 1024;
    println!(
        "raw MIME over Graph: {eml_kb} KiB message, peak resident set {peak_kb} KiB over {samples} samples (a one-line message: {base_kb} KiB)"
    );
    assert!(samples > 0, "the child was never sampled");
    // The message read once and its attachment decoded once, plus an upload chunk:
    // about twice the message, not three or more times.
    assert!(
        peak_kb < base_kb + eml_kb * 5 / 2,
        "peak resident set {peak_kb} KiB for a {eml_kb} KiB message, {base_kb} KiB for a one-line message"
    );
    let (_, raw) = w.received("raw MIME, 11 MB, over Graph").await;
    let parsed = MessageParser::default().parse(&raw).unwrap();
    let a = parsed.attachment(0).unwrap();
    assert_eq!(a.attachment_name(), Some("Bericht für März.pdf"));
    assert!(a.contents() == data.as_slice(), "attachment bytes differ");
}

/// `send --queue` writes to the outbox (an idempotency key queues once), `outbox list`
/// shows the messages queued, and `outbox send-pending` sends each once, over SMTP
/// and Graph, Bcc included.
#[tokio::test]
async fn queued_messages_are_listed_and_sent_by_send_pending() {
    let w = world().await;
    let queue = |account: &'static str, subject: &'static str, key: Option<&'static str>| {
        let mut args = vec![
            "send",
            "--account",
            account,
            "--to",
            BOB,
            "--subject",
            subject,
            "--text",
            "later",
            "--queue",
        ];
        if let Some(key) = key {
            args.extend(["--idempotency-key", key]);
        }
        args
    };
    let (ok, first, err) = w.run(&queue("smtp", "queued over smtp", Some("k-1"))).await;
    assert!(ok, "{err}");
    let first = first.trim().to_owned();
    assert_eq!(first.len(), 36, "the id: {first}");
    let (ok, again, err) = w.run(&queue("smtp", "queued over smtp", Some("k-1"))).await;
    assert!(ok, "{err}");
    assert_eq!(again.trim(), first);
    assert!(err.contains("already queued"), "{err}");
    let (ok, _, err) = w.run(&queue("graph", "queued over graph", None)).await;
    assert!(ok, "{err}");
    // A composed message with a Bcc recipient: delivered to the Bcc, who is in no
    // header.
    let (ok, _, err) = w
        .run(&[
            "send",
            "--account",
            "smtp",
            "--to",
            ALICE,
            "--bcc",
            BOB,
            "--subject",
            "queued with bcc",
            "--text",
            "x",
            "--queue",
        ])
        .await;
    assert!(ok, "{err}");

    let (ok, out, err) = w.run(&["outbox", "list", "--json"]).await;
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{out}");
    assert_eq!(list[0]["id"], first.as_str());
    assert_eq!(list[0]["account"], "smtp");
    assert!(list.iter().all(|e| e["state"] == "queued"), "{out}");
    let (ok, out, _) = w.run(&["outbox", "list", "--account", "graph"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("graph  queued"), "{out}");

    let (ok, out, err) = w.run(&["outbox", "send-pending", "--json"]).await;
    assert!(ok, "{out}{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    let outcomes = done["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 3, "{out}");
    assert!(outcomes.iter().all(|o| o["state"] == "sent"), "{out}");
    assert!(done["next_due"].is_null(), "{out}");
    w.received("queued over smtp").await;
    w.received("queued over graph").await;
    let (_, raw) = w.received("queued with bcc").await;
    let header = MessageParser::default().parse_headers(&raw).unwrap();
    assert!(header.bcc().is_none(), "Bcc must not reach recipients");
    // Nothing is sent twice.
    let (ok, out, err) = w.run(&["outbox", "send-pending"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("nothing to send"), "{out}");
    let (ok, out, _) = w.run(&["outbox", "list", "--json"]).await;
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "sent" && e["attempts"] == 1),
        "{out}"
    );
    let store = w.mail.mail_store();
    let count = |subject: &'static str| {
        let store = store.clone();
        async move {
            store
                .list(BOB, "INBOX")
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
    };
    assert_eq!(count("queued over smtp").await, 1);
    assert_eq!(count("queued over graph").await, 1);
}

/// A 5xx refusal fails the queued message with the server's reason: `send-pending`
/// says so and exits non-zero, and `outbox list` shows the reason.
#[tokio::test]
async fn send_pending_reports_a_refusal_and_exits_non_zero() {
    let w = world().await;
    let (ok, id, err) = w
        .run(&[
            "send",
            "--account",
            "smtp",
            "--to",
            "carol@-bad-.example",
            "--subject",
            "refused",
            "--text",
            "x",
            "--queue",
        ])
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = w.run(&["outbox", "send-pending"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{}  failed", id.trim())), "{out}");
    assert!(out.contains("5.1.3"), "{out}");
    assert!(err.contains("1 message(s) could not be sent"), "{err}");
    let (ok, out, _) = w.run(&["outbox", "list"]).await;
    assert!(ok);
    assert!(out.contains("smtp  failed"), "{out}");
    assert!(out.contains("carol@-bad-.example"), "{out}");
}
