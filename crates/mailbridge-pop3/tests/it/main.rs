//! The POP3 client against real Dovecot judged by the emulated tenant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod hostile;
mod prop;

use mailbridge_pop3::{Credentials, Meaning, Pop3Client, Pop3Config, TlsMode};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use mailbridge_types::ErrorClass;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const PASSWORD: &str = "Passw0rd!";

struct World {
    _server: EmulatorServer,
    emulator: Emulator,
    mail: MailServers,
    app: AppRegistration,
}

async fn world(adjust: impl FnOnce(&mut Tenant)) -> World {
    let app = AppRegistration::new("Connector")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "POP.AccessAsApp",
        )
        .consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(ALICE, &app.client_id.to_string(), MailboxRight::FullAccess);
    adjust(&mut tenant);
    let model = TenantModel::builder().tenant(tenant).build().unwrap();
    let emulator = Emulator::new(model).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    World {
        _server: server,
        emulator,
        mail,
        app,
    }
}

impl World {
    fn config(&self, tls: TlsMode) -> Pop3Config {
        let addr = if tls == TlsMode::Implicit {
            self.mail.pop3s()
        } else {
            self.mail.pop3()
        };
        let mut c = Pop3Config::new(&addr.ip().to_string(), addr.port(), tls);
        c.trust = TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        };
        c
    }

    fn token(&self, user: Option<&str>, permissions: &[&str]) -> SecretString {
        SecretString::from(match user {
            None => self
                .emulator
                .app_token(&self.app, Resource::exchange(), permissions),
            Some(upn) => self.emulator.user_token(
                &self.app,
                upn,
                Resource {
                    api: Api::ExchangeOnline,
                    uri: "https://outlook.office.com".into(),
                },
                permissions,
            ),
        })
    }

    async fn deliver(&self, subject: &str, body: &str) {
        let raw =
            format!("From: bob@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n{body}\r\n");
        self.mail
            .mail_store()
            .deliver("bob@example.org", &[ALICE.to_owned()], raw.as_bytes())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn app_only_over_stls_lists_retrieves_and_deletes_with_stable_uids() {
    let w = world(|_| {}).await;
    for i in 0..3 {
        w.deliver(
            &format!("message {i}"),
            &format!("line\r\n.dot line {i}\r\n..two dots"),
        )
        .await;
    }
    let creds = Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.token(None, &["POP.AccessAsApp"]),
    };
    let mut c = Pop3Client::connect(&w.config(TlsMode::StartTls))
        .await
        .unwrap();
    c.authenticate(&creds).await.unwrap();
    assert_eq!(c.stat().await.unwrap().0, 3);
    let uids = c.uidl().await.unwrap();
    assert_eq!(uids.len(), 3);
    let mut first = Vec::new();
    let n = c.retr(1, &mut first).await.unwrap();
    assert_eq!(n, first.len() as u64);
    let text = String::from_utf8(first).unwrap();
    assert!(text.contains("Subject: message 0\r\n"), "{text}");
    assert!(
        text.contains("\r\n.dot line 0\r\n..two dots\r\n"),
        "dot stuffing removed: {text}"
    );
    c.dele(1).await.unwrap();
    c.quit().await.unwrap();

    let mut c = Pop3Client::connect(&w.config(TlsMode::Implicit))
        .await
        .unwrap();
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.token(None, &["POP.AccessAsApp"]),
    })
    .await
    .unwrap();
    let after = c.uidl().await.unwrap();
    assert_eq!(after.len(), 2);
    let ids: Vec<&String> = after.iter().map(|(_, u)| u).collect();
    assert_eq!(ids, [&uids[1].1, &uids[2].1], "remaining ids unchanged");
    c.quit().await.unwrap();
}

#[tokio::test]
async fn delegated_token_and_a_large_message_streamed() {
    let w = world(|_| {}).await;
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";
    let body: String = (0..60_000)
        .map(|i| {
            if i % 7 == 0 {
                format!(".{line}\r\n")
            } else {
                format!("{line}\r\n")
            }
        })
        .collect();
    w.deliver("large", &body).await;
    let mut c = Pop3Client::connect(&w.config(TlsMode::Implicit))
        .await
        .unwrap();
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.token(Some(ALICE), &["POP.AccessAsUser.All"]),
    })
    .await
    .unwrap();
    let mut sink = Vec::new();
    c.retr(1, &mut sink).await.unwrap();
    let text = String::from_utf8(sink).unwrap();
    // The delivered message is the body plus the final CR LF of `deliver`.
    assert!(
        text.ends_with(&format!("{body}\r\n")),
        "body intact after unstuffing ({} bytes): ...{:?}",
        text.len(),
        text.get(text.len().saturating_sub(100)..)
    );
    c.quit().await.unwrap();
}

#[tokio::test]
async fn refusal_for_a_token_without_the_role_names_the_checklist() {
    let w = world(|_| {}).await;
    let mut c = Pop3Client::connect(&w.config(TlsMode::Implicit))
        .await
        .unwrap();
    let err = c
        .authenticate(&Credentials::XOAuth2 {
            user: ALICE.into(),
            token: w.token(None, &[]),
        })
        .await
        .unwrap_err();
    assert_eq!(err.meaning(), Some(Meaning::AuthenticationFailed), "{err}");
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    let text = err.to_string();
    assert!(
        text.contains("POP.AccessAsApp") && text.contains("New-ServicePrincipal"),
        "{text}"
    );
}

#[tokio::test]
async fn user_pass_where_basic_is_allowed_and_refused_where_not() {
    let w = world(|t| t.basic_auth_enabled = true).await;
    let mut c = Pop3Client::connect(&w.config(TlsMode::StartTls))
        .await
        .unwrap();
    c.authenticate(&Credentials::UserPass {
        user: ALICE.into(),
        password: SecretString::from(PASSWORD),
    })
    .await
    .unwrap();
    c.quit().await.unwrap();

    let w = world(|_| {}).await;
    let mut c = Pop3Client::connect(&w.config(TlsMode::StartTls))
        .await
        .unwrap();
    let err = c
        .authenticate(&Credentials::UserPass {
            user: ALICE.into(),
            password: SecretString::from(PASSWORD),
        })
        .await
        .unwrap_err();
    assert_eq!(err.meaning(), Some(Meaning::AuthenticationFailed), "{err}");
}

#[tokio::test]
async fn untrusted_certificate_is_refused_as_misconfiguration() {
    let w = world(|_| {}).await;
    let mut config = w.config(TlsMode::Implicit);
    config.trust.extra_ca_pem = None;
    let err = Pop3Client::connect(&config).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Misconfigured, "{err}");
}

/// Over real Dovecot: a message with a 10,000-byte line (longer than any status line
/// may be) is fetched whole, and so is the message after it.
#[tokio::test]
async fn a_message_with_a_10000_byte_line_and_the_next_one_are_fetched() {
    let w = world(|_| {}).await;
    let long: String = "0123456789".repeat(1_000);
    // Straight into Dovecot over LMTP: Postfix's LMTP client would break the line at
    // 998 bytes.
    lmtp_deliver(
        w.mail.lmtp(),
        &format!("From: bob@example.org\r\nTo: {ALICE}\r\nSubject: long line\r\n\r\nbefore\r\n{long}\r\nafter\r\n"),
    )
    .await;
    w.deliver("the next one", "hello").await;
    let mut c = Pop3Client::connect(&w.config(TlsMode::Implicit))
        .await
        .unwrap();
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.token(None, &["POP.AccessAsApp"]),
    })
    .await
    .unwrap();
    let listed = c.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    let mut first = Vec::new();
    let n = c.retr(1, &mut first).await.unwrap();
    assert_eq!(n, first.len() as u64);
    let first = String::from_utf8(first).unwrap();
    assert!(
        first.contains(&format!("\r\nbefore\r\n{long}\r\nafter\r\n")),
        "the long line intact: {:?}",
        first.split("\r\n").map(str::len).collect::<Vec<_>>()
    );
    let mut second = Vec::new();
    c.retr(2, &mut second).await.unwrap();
    assert!(
        String::from_utf8(second)
            .unwrap()
            .contains("Subject: the next one\r\n")
    );
    c.quit().await.unwrap();
}

/// Delivers `raw` (no line starting with ".") to Alice over Dovecot's LMTP.
async fn lmtp_deliver(addr: std::net::SocketAddr, raw: &str) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = tokio::io::BufReader::new(r);
    // Reads one (possibly multi-line) reply.
    let mut reply = async || loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        if line.get(3..4) != Some("-") {
            return line;
        }
    };
    let _ = reply().await;
    for cmd in [
        "LHLO test".to_owned(),
        "MAIL FROM:<bob@example.org>".to_owned(),
        format!("RCPT TO:<{ALICE}>"),
        "DATA".to_owned(),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let _ = reply().await;
    }
    w.write_all(format!("{raw}.\r\n").as_bytes()).await.unwrap();
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("250"), "LMTP delivery: {line}");
}
