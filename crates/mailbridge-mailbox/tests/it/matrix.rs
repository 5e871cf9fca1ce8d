//! The mail server matrix against real Dovecot and Postfix: every TLS mode the testkit
//! offers x every sign-in method that applies, for IMAP and POP3 (receive, through the
//! Mailbox API) and SMTP (send, read back through IMAP), each asserting that the bytes
//! come back unchanged; and a client whose TLS mode does not match the port gets a
//! clear error within its timeout instead of hanging.
//!
//! One emulator and one Dovecot + Postfix pair per protocol; each row is named in its
//! assertion messages, so a failure says which combination broke.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailbridge_imap::{ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::mailbox::{Checkpoint, ImapMailbox, Mailbox, Pop3Mailbox};
use mailbridge_pop3::{Pop3Client, Pop3Config};
use mailbridge_smtp::{SmtpClient, SmtpConfig};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
/// A shared mailbox Alice has FullAccess on.
const SHARED: &str = "shared@contoso.example";
const PASSWORD: &str = "correct horse battery staple";
/// Per-answer timeout of the mismatch rows: short, so a hang would show as a failure.
const MISMATCH_TIMEOUT: Duration = Duration::from_secs(2);

/// How a row signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignIn {
    /// `LOGIN` / `USER`+`PASS` / `AUTH PLAIN`.
    Password,
    /// SMTP `AUTH LOGIN`.
    PasswordLogin,
    /// XOAUTH2 with a delegated token of the mailbox owner.
    DelegatedXOAuth2,
    /// XOAUTH2 with an app-only token (role + FullAccess).
    AppOnlyXOAuth2,
    /// OAUTHBEARER (RFC 7628) with a delegated token.
    DelegatedOAuthBearer,
    /// OAUTHBEARER with an app-only token.
    AppOnlyOAuthBearer,
}

/// The tenant: a generic server (Basic auth and OAUTHBEARER on) so that every sign-in
/// method applies, an app with FullAccess on Alice's mailbox, and its service principal.
struct World {
    emulator: Emulator,
    _server: EmulatorServer,
    mail: MailServers,
    app: AppRegistration,
}

async fn world() -> World {
    let app = AppRegistration::new("Connector").consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
        .with_user(User::new(SHARED, "Shared", PASSWORD))
        .with_mailbox_permission(SHARED, ALICE, MailboxRight::FullAccess)
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        );
    tenant.basic_auth_enabled = true;
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    World {
        emulator,
        _server: server,
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

    fn delegated(&self, scope: &str) -> SecretString {
        SecretString::from(self.emulator.user_token(
            &self.app,
            ALICE,
            Resource::exchange(),
            &[scope],
        ))
    }

    fn app_only(&self, role: &str) -> SecretString {
        SecretString::from(
            self.emulator
                .app_token(&self.app, Resource::exchange(), &[role]),
        )
    }

    async fn imap(&self, tls: TlsMode, sign_in: SignIn) -> Result<ImapMailbox, String> {
        let addr = match tls {
            TlsMode::Implicit => self.mail.imaps(),
            _ => self.mail.imap(),
        };
        let mut config = ImapConfig::new(&addr.ip().to_string(), addr.port(), tls);
        config.trust = self.trust();
        config.timeout = Duration::from_secs(20);
        let user = ALICE.to_owned();
        let credentials = match sign_in {
            SignIn::Password | SignIn::PasswordLogin => mailbridge_imap::Credentials::Login {
                user,
                password: SecretString::from(PASSWORD),
            },
            SignIn::DelegatedXOAuth2 => mailbridge_imap::Credentials::XOAuth2 {
                user,
                token: self.delegated("IMAP.AccessAsUser.All"),
            },
            SignIn::AppOnlyXOAuth2 => mailbridge_imap::Credentials::XOAuth2 {
                user,
                token: self.app_only("IMAP.AccessAsApp"),
            },
            SignIn::DelegatedOAuthBearer => mailbridge_imap::Credentials::OAuthBearer {
                user,
                token: self.delegated("IMAP.AccessAsUser.All"),
            },
            SignIn::AppOnlyOAuthBearer => mailbridge_imap::Credentials::OAuthBearer {
                user,
                token: self.app_only("IMAP.AccessAsApp"),
            },
        };
        let mut client = ImapClient::connect(&config)
            .await
            .map_err(|e| format!("connect: {e:#}"))?;
        client
            .authenticate(&credentials)
            .await
            .map_err(|e| format!("sign-in: {e:#}\n{}", self.mail.logs()))?;
        Ok(ImapMailbox::new(client))
    }

    async fn pop3(&self, tls: TlsMode, sign_in: SignIn) -> Result<Pop3Mailbox, String> {
        let addr = match tls {
            TlsMode::Implicit => self.mail.pop3s(),
            _ => self.mail.pop3(),
        };
        let mut config = Pop3Config::new(&addr.ip().to_string(), addr.port(), tls);
        config.trust = self.trust();
        config.timeout = Duration::from_secs(20);
        let user = ALICE.to_owned();
        let credentials = match sign_in {
            SignIn::Password => mailbridge_pop3::Credentials::UserPass {
                user,
                password: SecretString::from(PASSWORD),
            },
            SignIn::DelegatedXOAuth2 => mailbridge_pop3::Credentials::XOAuth2 {
                user,
                token: self.delegated("POP.AccessAsUser.All"),
            },
            SignIn::AppOnlyXOAuth2 => mailbridge_pop3::Credentials::XOAuth2 {
                user,
                token: self.app_only("POP.AccessAsApp"),
            },
            other => return Err(format!("{other:?} does not apply to POP3")),
        };
        let mut client = Pop3Client::connect(&config)
            .await
            .map_err(|e| format!("connect: {e:#}"))?;
        client
            .authenticate(&credentials)
            .await
            .map_err(|e| format!("sign-in: {e:#}\n{}", self.mail.logs()))?;
        Ok(Pop3Mailbox::new(client))
    }

    async fn smtp(&self, tls: TlsMode, sign_in: SignIn) -> Result<SmtpClient, String> {
        let addr = match tls {
            TlsMode::Implicit => self.mail.submissions(),
            _ => self.mail.submission(),
        };
        let mut config = SmtpConfig::new(&addr.ip().to_string(), addr.port(), tls);
        config.trust = self.trust();
        config.timeout = Duration::from_secs(20);
        let user = ALICE.to_owned();
        let password = SecretString::from(PASSWORD);
        let credentials = match sign_in {
            SignIn::Password => mailbridge_smtp::Credentials::Plain { user, password },
            SignIn::PasswordLogin => mailbridge_smtp::Credentials::Login { user, password },
            SignIn::DelegatedXOAuth2 => mailbridge_smtp::Credentials::XOAuth2 {
                user,
                token: self.delegated("SMTP.Send"),
            },
            SignIn::AppOnlyXOAuth2 => mailbridge_smtp::Credentials::XOAuth2 {
                user,
                token: self.app_only("SMTP.SendAsApp"),
            },
            other => return Err(format!("{other:?} does not apply to SMTP")),
        };
        let mut client = SmtpClient::connect(&config)
            .await
            .map_err(|e| format!("connect: {e:#}"))?;
        client
            .authenticate(&credentials)
            .await
            .map_err(|e| format!("sign-in: {e:#}\n{}", self.mail.logs()))?;
        Ok(client)
    }
}

/// A message that exercises the byte paths: lines that start with a dot (POP3 and SMTP
/// dot stuffing), a line that is only a dot, 8-bit bytes, a long line, and a tab.
fn message(subject: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <{ALICE}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@matrix.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         .leading dot\r\n.\r\n..two dots\r\nk\u{f6}nnen \u{2713}\r\n\tindented\r\n"
    )
    .into_bytes();
    let long: String = "0123456789".repeat(90);
    m.extend_from_slice(long.as_bytes());
    m.extend_from_slice(b"\r\nlast line\r\n");
    m
}

fn row_name(protocol: &str, tls: TlsMode, sign_in: SignIn) -> String {
    format!("{protocol} {tls:?} {sign_in:?}")
}

const ALL_TLS: [TlsMode; 3] = [TlsMode::None, TlsMode::StartTls, TlsMode::Implicit];

/// Puts a message in INBOX byte for byte (IMAP `APPEND` as the store).
async fn put(w: &World, raw: &[u8]) {
    w.mail
        .mail_store()
        .append(ALICE, "INBOX", raw, false)
        .await
        .unwrap();
}

/// The newest message of INBOX through the Mailbox API.
async fn newest<M: Mailbox>(mailbox: &mut M) -> Result<Vec<u8>, String> {
    let found = mailbox
        .new_since("INBOX", &Checkpoint::Start)
        .await
        .map_err(|e| format!("new_since: {e}"))?;
    let last = found
        .messages
        .last()
        .ok_or_else(|| "no message found".to_owned())?;
    let mut out = Vec::new();
    let size = mailbox
        .fetch(last, &mut out)
        .await
        .map_err(|e| format!("fetch: {e}"))?;
    if size != out.len() as u64 {
        return Err(format!("fetch said {size} bytes but wrote {}", out.len()));
    }
    Ok(out)
}

fn check_bytes(row: &str, got: &[u8], want: &[u8], failures: &mut String) {
    if got != want {
        let _ = writeln!(
            failures,
            "{row}: bytes differ\n--- got ---\n{}\n--- want ---\n{}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want)
        );
    }
}

#[tokio::test]
async fn imap_receive_matrix_returns_identical_bytes() {
    let w = world().await;
    let methods = [
        SignIn::Password,
        SignIn::DelegatedXOAuth2,
        SignIn::AppOnlyXOAuth2,
        SignIn::DelegatedOAuthBearer,
        SignIn::AppOnlyOAuthBearer,
    ];
    let mut failures = String::new();
    let mut rows = 0;
    for tls in ALL_TLS {
        for sign_in in methods {
            rows += 1;
            let row = row_name("IMAP", tls, sign_in);
            let raw = message(&format!("imap-{tls:?}-{sign_in:?}"));
            put(&w, &raw).await;
            match w.imap(tls, sign_in).await {
                Ok(mut mailbox) => match newest(&mut mailbox).await {
                    Ok(got) => check_bytes(&row, &got, &raw, &mut failures),
                    Err(e) => {
                        let _ = writeln!(failures, "{row}: {e}");
                    }
                },
                Err(e) => {
                    let _ = writeln!(failures, "{row}: {e}");
                }
            }
        }
    }
    assert_eq!(rows, 15);
    w.mail.stop().await;
    assert!(failures.is_empty(), "{failures}");
}

#[tokio::test]
async fn pop3_receive_matrix_returns_identical_bytes() {
    let w = world().await;
    let methods = [
        SignIn::Password,
        SignIn::DelegatedXOAuth2,
        SignIn::AppOnlyXOAuth2,
    ];
    let mut failures = String::new();
    for tls in ALL_TLS {
        for sign_in in methods {
            let row = row_name("POP3", tls, sign_in);
            let raw = message(&format!("pop3-{tls:?}-{sign_in:?}"));
            put(&w, &raw).await;
            match w.pop3(tls, sign_in).await {
                Ok(mut mailbox) => {
                    match newest(&mut mailbox).await {
                        Ok(got) => check_bytes(&row, &got, &raw, &mut failures),
                        Err(e) => {
                            let _ = writeln!(failures, "{row}: {e}");
                        }
                    }
                    // QUIT releases the maildrop lock for the next row.
                    if let Err(e) = mailbox.close().await {
                        let _ = writeln!(failures, "{row}: QUIT: {e}");
                    }
                }
                Err(e) => {
                    let _ = writeln!(failures, "{row}: {e}");
                }
            }
        }
    }
    w.mail.stop().await;
    assert!(failures.is_empty(), "{failures}");
}

#[tokio::test]
async fn smtp_send_matrix_delivers_identical_bytes() {
    let w = world().await;
    let methods = [
        SignIn::Password,
        SignIn::PasswordLogin,
        SignIn::DelegatedXOAuth2,
        SignIn::AppOnlyXOAuth2,
    ];
    let mut failures = String::new();
    for tls in [TlsMode::StartTls, TlsMode::Implicit] {
        for sign_in in methods {
            let row = row_name("SMTP", tls, sign_in);
            let raw = message(&format!("smtp-{tls:?}-{sign_in:?}"));
            let sent = async {
                let mut client = w.smtp(tls, sign_in).await?;
                client
                    .send(ALICE, &[ALICE.to_owned()], raw.as_slice())
                    .await
                    .map_err(|e| format!("send: {e:#}\n{}", w.mail.logs()))?;
                client.quit().await.map_err(|e| format!("QUIT: {e:#}"))
            }
            .await;
            if let Err(e) = sent {
                let _ = writeln!(failures, "{row}: {e}");
                continue;
            }
            // Postfix prepends its trace headers (Return-Path, Delivered-To, Received);
            // everything after them is what was sent.
            match delivered(&w, &raw).await {
                Ok(()) => {}
                Err(e) => {
                    let _ = writeln!(failures, "{row}: {e}");
                }
            }
        }
    }
    w.mail.stop().await;
    assert!(failures.is_empty(), "{failures}");
}

/// Waits until the newest INBOX message (read over IMAP with an app-only token) ends
/// with `raw`.
async fn delivered(w: &World, raw: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let mut imap = w.imap(TlsMode::Implicit, SignIn::AppOnlyXOAuth2).await?;
        if let Ok(got) = newest(&mut imap).await {
            if got.ends_with(raw) {
                return Ok(());
            }
            last = got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "not delivered unchanged within 20 s; newest message:\n{}",
        String::from_utf8_lossy(&last)
    ))
}

/// The error text of a mismatched connect (with its `source()` chain), or why there
/// was none; and how long it took.
async fn timed<T, E: std::error::Error>(
    f: impl Future<Output = Result<T, E>>,
) -> (Result<String, String>, Duration) {
    let start = Instant::now();
    // The outer bound only catches a hang: the client's own timeout must fire first.
    let r = tokio::time::timeout(MISMATCH_TIMEOUT * 4, f).await;
    let elapsed = start.elapsed();
    let outcome = match r {
        Err(_) => Err("hung past 4x its timeout".to_owned()),
        Ok(Ok(_)) => Err("connected".to_owned()),
        Ok(Err(e)) => {
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                let _ = write!(text, ": {s}");
                source = s.source();
            }
            Ok(text)
        }
    };
    (outcome, elapsed)
}

fn mismatch_row(
    failures: &mut String,
    row: &str,
    outcome: (Result<String, String>, Duration),
    must_mention: &[&str],
) {
    let (result, elapsed) = outcome;
    let text = match result {
        Ok(text) => {
            eprintln!("{row}: {text} (after {elapsed:?})");
            text
        }
        Err(e) => {
            let _ = writeln!(failures, "{row}: {e} (after {elapsed:?})");
            return;
        }
    };
    if elapsed > MISMATCH_TIMEOUT * 2 {
        let _ = writeln!(
            failures,
            "{row}: took {elapsed:?}, more than twice the timeout: {text}"
        );
    }
    if text.contains("private CA") {
        let _ = writeln!(failures, "{row}: misleading CA advice in {text:?}");
    }
    if !must_mention.iter().all(|m| text.contains(m)) {
        let _ = writeln!(
            failures,
            "{row}: error {text:?} does not mention all of {must_mention:?}"
        );
    }
}

fn addr_config(addr: SocketAddr) -> (String, u16) {
    (addr.ip().to_string(), addr.port())
}

#[tokio::test]
async fn tls_mode_that_does_not_match_the_port_fails_clearly_within_the_timeout() {
    let w = world().await;
    let mut failures = String::new();
    // (row, what its error must mention)
    let tls_words: &[&str] = &["did not answer with TLS", "set TLS to STARTTLS"];
    // ... and no advice about private CAs, which would send the admin the wrong way.
    let wait_words: &[&str] = &["sent no greeting in time", "set TLS to implicit"];

    let imap_cases = [
        (
            "IMAP implicit TLS on the STARTTLS port",
            w.mail.imap(),
            TlsMode::Implicit,
            tls_words,
        ),
        (
            "IMAP STARTTLS on the implicit-TLS port",
            w.mail.imaps(),
            TlsMode::StartTls,
            wait_words,
        ),
        (
            "IMAP no TLS on the implicit-TLS port",
            w.mail.imaps(),
            TlsMode::None,
            wait_words,
        ),
    ];
    for (row, addr, tls, words) in imap_cases {
        let (host, port) = addr_config(addr);
        let mut config = ImapConfig::new(&host, port, tls);
        config.trust = w.trust();
        config.timeout = MISMATCH_TIMEOUT;
        let outcome = timed(ImapClient::connect(&config)).await;
        mismatch_row(&mut failures, row, outcome, words);
    }

    let pop_cases = [
        (
            "POP3 implicit TLS on the STLS port",
            w.mail.pop3(),
            TlsMode::Implicit,
            tls_words,
        ),
        (
            "POP3 STLS on the implicit-TLS port",
            w.mail.pop3s(),
            TlsMode::StartTls,
            wait_words,
        ),
    ];
    for (row, addr, tls, words) in pop_cases {
        let (host, port) = addr_config(addr);
        let mut config = Pop3Config::new(&host, port, tls);
        config.trust = w.trust();
        config.timeout = MISMATCH_TIMEOUT;
        let outcome = timed(Pop3Client::connect(&config)).await;
        mismatch_row(&mut failures, row, outcome, words);
    }

    let smtp_cases = [
        (
            "SMTP implicit TLS on the STARTTLS port",
            w.mail.submission(),
            TlsMode::Implicit,
            tls_words,
        ),
        (
            "SMTP STARTTLS on the implicit-TLS port",
            w.mail.submissions(),
            TlsMode::StartTls,
            wait_words,
        ),
    ];
    for (row, addr, tls, words) in smtp_cases {
        let (host, port) = addr_config(addr);
        let mut config = SmtpConfig::new(&host, port, tls);
        config.trust = w.trust();
        config.timeout = MISMATCH_TIMEOUT;
        let outcome = timed(SmtpClient::connect(&config)).await;
        mismatch_row(&mut failures, row, outcome, words);
    }
    w.mail.stop().await;
    assert!(failures.is_empty(), "{failures}");
}

/// `tls = auto`: implicit TLS on a port that speaks it, STARTTLS (STLS) on one that
/// greets in plain text, and the session works either way; a certificate failure is
/// reported, not worked around; a server offering no TLS at all is refused, never
/// used without it.
#[tokio::test]
async fn tls_auto_takes_whichever_tls_the_port_offers_and_never_none() {
    let w = world().await;
    let mut failures = String::new();
    let timeout = Duration::from_secs(20);
    // Connects with tls = auto, checks the mode chosen, and signs in with a password.
    macro_rules! auto_row {
        ($row:expr, $addr:expr, $want:expr, $config:ident, $client:ident, $login:expr) => {{
            let (host, port) = addr_config($addr);
            let mut config = $config::new(&host, port, TlsMode::Auto);
            config.trust = w.trust();
            config.timeout = timeout;
            match $client::connect(&config).await {
                Ok(mut c) if c.tls_mode() == $want => {
                    if let Err(e) = c.authenticate(&$login).await {
                        let _ = writeln!(failures, "{}: sign-in: {e:#}", $row);
                    }
                }
                Ok(c) => {
                    let _ = writeln!(failures, "{}: {:?}, not {:?}", $row, c.tls_mode(), $want);
                }
                Err(e) => {
                    let _ = writeln!(failures, "{}: {e:#}", $row);
                }
            }
        }};
    }
    let password = || SecretString::from(PASSWORD);
    for (row, addr, want) in [
        ("IMAP implicit port", w.mail.imaps(), TlsMode::Implicit),
        ("IMAP STARTTLS port", w.mail.imap(), TlsMode::StartTls),
    ] {
        let login = mailbridge_imap::Credentials::Login {
            user: ALICE.into(),
            password: password(),
        };
        auto_row!(row, addr, want, ImapConfig, ImapClient, login);
    }
    for (row, addr, want) in [
        ("POP3 implicit port", w.mail.pop3s(), TlsMode::Implicit),
        ("POP3 STLS port", w.mail.pop3(), TlsMode::StartTls),
    ] {
        let login = mailbridge_pop3::Credentials::UserPass {
            user: ALICE.into(),
            password: password(),
        };
        auto_row!(row, addr, want, Pop3Config, Pop3Client, login);
    }
    for (row, addr, want) in [
        (
            "SMTP implicit port",
            w.mail.submissions(),
            TlsMode::Implicit,
        ),
        ("SMTP STARTTLS port", w.mail.submission(), TlsMode::StartTls),
    ] {
        let login = mailbridge_smtp::Credentials::Plain {
            user: ALICE.into(),
            password: password(),
        };
        auto_row!(row, addr, want, SmtpConfig, SmtpClient, login);
    }

    // An untrusted certificate on the implicit port: reported as such, no STARTTLS
    // attempt behind it.
    let (host, port) = addr_config(w.mail.imaps());
    let mut config = ImapConfig::new(&host, port, TlsMode::Auto);
    config.trust = TlsSettings {
        extra_ca_pem: None,
        server_name: Some(w.mail.tls_name().to_owned()),
        pin: None,
    };
    config.timeout = timeout;
    match ImapClient::connect(&config).await {
        Err(e @ mailbridge_imap::ImapError::Tls(_)) if format!("{e}").contains("extra CA") => {}
        Err(e) => {
            let _ = writeln!(failures, "untrusted certificate: {e:#}");
        }
        Ok(c) => {
            let _ = writeln!(
                failures,
                "untrusted certificate: connected with {:?}",
                c.tls_mode()
            );
        }
    }

    // A plain-text server that offers no STARTTLS: refused before any sign-in.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let mut seen = Vec::new();
        // Two connections: the implicit-TLS try, then the STARTTLS one.
        for _ in 0..2 {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            write.write_all(b"* OK plain only\r\n").await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                let tag = line.split(' ').next().unwrap_or("*").to_owned();
                let command = line.split(' ').nth(1).unwrap_or("").to_ascii_uppercase();
                seen.push(command.clone());
                let answer = match command.as_str() {
                    "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
                    _ => format!("{tag} BAD not offered\r\n"),
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        seen
    });
    let mut config = ImapConfig::new("127.0.0.1", plain.port(), TlsMode::Auto);
    config.trust = w.trust();
    config.timeout = timeout;
    match ImapClient::connect(&config).await {
        Err(_) => {}
        Ok(c) => {
            let _ = writeln!(
                failures,
                "plain-only server: connected with {:?}",
                c.tls_mode()
            );
        }
    }
    let seen = tokio::time::timeout(timeout, server)
        .await
        .unwrap()
        .unwrap();
    if seen.iter().any(|c| c == "LOGIN" || c == "AUTHENTICATE") {
        let _ = writeln!(failures, "plain-only server: sign-in attempted: {seen:?}");
    }
    if !seen.iter().any(|c| c == "STARTTLS") {
        let _ = writeln!(
            failures,
            "plain-only server: STARTTLS never tried: {seen:?}"
        );
    }
    assert!(failures.is_empty(), "{failures}");
}

/// A shared mailbox as an account: its address is the mailbox, the token is the signed-in
/// user's (delegated), and XOAUTH2's `user=` names the shared mailbox, over IMAP and
/// POP3 through `connect::open_incoming`, as Exchange Online expects. Without FullAccess
/// the server refuses and the error says so.
#[tokio::test]
async fn a_shared_mailbox_account_reads_with_the_signed_in_users_token() {
    use mailbridge_mailbox::connect::open_incoming;
    use mailbridge_mailbox::send::SenderSignIn;
    let w = world().await;
    let raw = message("For the shared mailbox");
    w.mail
        .mail_store()
        .append(SHARED, "INBOX", &raw, false)
        .await
        .unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), w.mail.ca_pem()).unwrap();
    let mut failures = String::new();
    for (transport, addr, scope) in [
        ("imap", w.mail.imap(), "IMAP.AccessAsUser.All"),
        ("pop3", w.mail.pop3(), "POP.AccessAsUser.All"),
    ] {
        let account: mailbridge_types::config::AccountConfig =
            serde_json::from_value(serde_json::json!({
                "name": "shared",
                "address": SHARED,
                "sign_in": "delegated",
                "app": "connector",
                "transports": [transport],
                "incoming": {
                    "transport": transport,
                    "host": addr.ip().to_string(),
                    "port": addr.port(),
                    "tls": "starttls",
                    "tls_name": w.mail.tls_name(),
                    "extra_ca_file": ca.path(),
                },
            }))
            .unwrap();
        let signed_in = SenderSignIn::Delegated(mailbridge_auth::source::fixed(w.delegated(scope)));
        match open_incoming(&account, signed_in).await {
            Ok(mut mailbox) => match newest(&mut mailbox).await {
                Ok(got) => check_bytes(transport, &got, &raw, &mut failures),
                Err(e) => {
                    let _ = writeln!(failures, "{transport}: {e}");
                }
            },
            Err(e) => {
                let _ = writeln!(failures, "{transport}: open: {e}\n{}", w.mail.logs());
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");

    // Bob's token, without FullAccess on the shared mailbox: refused.
    w.emulator.update(|m| {
        m.tenants[0]
            .users
            .push(User::new("bob@contoso.example", "Bob", PASSWORD));
    });
    let token = SecretString::from(w.emulator.user_token(
        &w.app,
        "bob@contoso.example",
        Resource::exchange(),
        &["IMAP.AccessAsUser.All"],
    ));
    let account: mailbridge_types::config::AccountConfig =
        serde_json::from_value(serde_json::json!({
            "name": "shared",
            "address": SHARED,
            "sign_in": "delegated",
            "app": "connector",
            "transports": ["imap"],
            "incoming": {
                "transport": "imap",
                "host": w.mail.imap().ip().to_string(),
                "port": w.mail.imap().port(),
                "tls": "starttls",
                "tls_name": w.mail.tls_name(),
                "extra_ca_file": ca.path(),
            },
        }))
        .unwrap();
    let Err(err) = open_incoming(
        &account,
        SenderSignIn::Delegated(mailbridge_auth::source::fixed(token)),
    )
    .await
    else {
        panic!("bob has no FullAccess on the shared mailbox, yet it opened");
    };
    assert!(
        err.detail().contains("FullAccess") || err.detail().contains("full access"),
        "{err}"
    );
}

/// A server that accepts the connection and never answers the TLS handshake (a
/// firewall, a wrong service): implicit TLS and TLS auto give up within the client's
/// timeout with advice about the port and TLS mode, over IMAP, POP3 and SMTP.
#[tokio::test]
async fn a_silent_server_fails_the_tls_handshake_within_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, keeps every connection open, says nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut failures = String::new();
    for tls in [TlsMode::Implicit, TlsMode::Auto] {
        let mut imap = ImapConfig::new("127.0.0.1", port, tls);
        imap.timeout = MISMATCH_TIMEOUT;
        let mut pop3 = Pop3Config::new("127.0.0.1", port, tls);
        pop3.timeout = MISMATCH_TIMEOUT;
        let mut smtp = SmtpConfig::new("127.0.0.1", port, tls);
        smtp.timeout = MISMATCH_TIMEOUT;
        let words: &[&str] = &[
            "TLS handshake within 2 s",
            "check the host, port and TLS mode",
        ];
        let row = format!("IMAP {tls:?} to a silent server");
        mismatch_row(
            &mut failures,
            &row,
            timed(ImapClient::connect(&imap)).await,
            words,
        );
        let row = format!("POP3 {tls:?} to a silent server");
        mismatch_row(
            &mut failures,
            &row,
            timed(Pop3Client::connect(&pop3)).await,
            words,
        );
        let row = format!("SMTP {tls:?} to a silent server");
        mismatch_row(
            &mut failures,
            &row,
            timed(SmtpClient::connect(&smtp)).await,
            words,
        );
    }
    silent.abort();
    assert!(failures.is_empty(), "{failures}");
}
