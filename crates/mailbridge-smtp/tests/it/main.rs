//! The SMTP client against real Postfix (submission with STARTTLS and Dovecot SASL)
//! judged by the emulated tenant: XOAUTH2 app-only and delegated, passwords, streamed
//! DATA, and every refusal explained.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod hostile;
mod pipelining;
mod prop;
mod size;

use mailbridge_smtp::{Credentials, Meaning, SmtpClient, SmtpConfig, SmtpError, TlsMode};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::{MailServers, Options};
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;
use tokio::io::AsyncRead;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const PASSWORD: &str = "Passw0rd!";

struct World {
    _server: EmulatorServer,
    emulator: Emulator,
    mail: MailServers,
    app: AppRegistration,
}

async fn world(adjust: impl FnOnce(&mut Tenant)) -> World {
    world_with(adjust, Options::default()).await
}

/// [`world`] with the mail servers' `options` (a small Postfix `message_size_limit`).
async fn world_with(adjust: impl FnOnce(&mut Tenant), options: Options) -> World {
    let app = AppRegistration::new("Notifier")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
        .with_user(User::new(BOB, "Bob", PASSWORD))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        );
    adjust(&mut tenant);
    let model = TenantModel::builder().tenant(tenant).build().unwrap();
    let emulator = Emulator::new(model).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start_with(&emulator, &TestCa::generate().unwrap(), options)
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
    fn config(&self) -> SmtpConfig {
        let addr = self.mail.submission();
        let mut c = SmtpConfig::new(&addr.ip().to_string(), addr.port(), TlsMode::StartTls);
        c.trust = mailbridge_tls::TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        };
        c
    }

    fn app_token(&self, roles: &[&str]) -> SecretString {
        SecretString::from(
            self.emulator
                .app_token(&self.app, Resource::exchange(), roles),
        )
    }

    async fn inbox(&self, mailbox: &str, n: usize) -> Vec<Vec<u8>> {
        let store = self.mail.mail_store();
        for _ in 0..300 {
            let list = store.list(mailbox, "INBOX").await.unwrap();
            if list.len() >= n {
                let mut out = Vec::new();
                for m in list {
                    out.push(store.fetch(&m.id).await.unwrap().unwrap());
                }
                return out;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "{mailbox} did not receive {n} message(s)\n{}",
            self.mail.logs()
        );
    }
}

fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@contoso.example>\r\n\r\n{body}\r\n", uuid_like())
        .into_bytes()
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn send_as_app(
    w: &World,
    token: SecretString,
    from: &str,
    raw: impl AsyncRead + Unpin,
) -> Result<(), SmtpError> {
    let mut c = SmtpClient::connect(&w.config()).await?;
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token,
    })
    .await?;
    c.send(from, &[BOB.to_owned()], raw).await?;
    c.quit().await
}

#[tokio::test]
async fn app_only_xoauth2_over_starttls_delivers_with_dots_and_non_ascii_intact() {
    let w = world(|_| {}).await;
    let raw = "From: alice@contoso.example\r\nTo: bob@contoso.example\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\nfirst\r\n.starts with a dot\r\n.\r\nlast\r\n";
    send_as_app(&w, w.app_token(&["SMTP.SendAsApp"]), ALICE, raw.as_bytes())
        .await
        .unwrap();
    let got = w.inbox(BOB, 1).await;
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("\r\n.starts with a dot\r\n.\r\nlast\r\n"),
        "{text}"
    );
    assert!(text.contains("Subject: =?UTF-8?B?R3LDvMOfZQ==?="), "{text}");
}

/// A reader producing a large message without holding it in memory.
struct LargeMessage {
    header: Vec<u8>,
    pos: usize,
    body_len: usize,
}

impl AsyncRead for LargeMessage {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let total = self.header.len() + self.body_len;
        while buf.remaining() > 0 && self.pos < total {
            let b = if self.pos < self.header.len() {
                self.header[self.pos]
            } else {
                // 76-character lines of a repeating pattern, some starting with a dot.
                let i = self.pos - self.header.len();
                match i % 78 {
                    76 => b'\r',
                    77 => b'\n',
                    0 if (i / 78).is_multiple_of(10) => b'.',
                    k => {
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[k % 64]
                    }
                }
            };
            buf.put_slice(&[b]);
            self.pos += 1;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_large_message_is_streamed_and_arrives_intact() {
    let w = world(|_| {}).await;
    let body_len = 78 * 100_000; // about 7.8 MB
    let reader = LargeMessage {
        header: message(ALICE, BOB, "Large", "").into_iter().collect(),
        pos: 0,
        body_len,
    };
    let header_len = reader.header.len();
    send_as_app(&w, w.app_token(&["SMTP.SendAsApp"]), ALICE, reader)
        .await
        .unwrap();
    // What was sent, regenerated for the comparison.
    let mut expected = Vec::new();
    let mut again = LargeMessage {
        header: message(ALICE, BOB, "Large", "").into_iter().collect(),
        pos: 0,
        body_len,
    };
    tokio::io::AsyncReadExt::read_to_end(&mut again, &mut expected)
        .await
        .unwrap();
    let got = w.inbox(BOB, 1).await;
    let text = &got[0];
    // Postfix adds Received and other headers; the body is unchanged byte for byte,
    // dots at line starts included (stuffed on the wire, unstuffed by the server).
    let sent_body = &expected[expected.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let body = &text[text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(body.len(), sent_body.len());
    assert!(body == sent_body, "body differs");
    assert!(header_len < 200);
}

#[tokio::test]
async fn smtp_auth_disabled_for_the_tenant_names_the_powershell_fix() {
    let w = world(|t| t.smtp_auth_disabled = true).await;
    let err = send_as_app(&w, w.app_token(&["SMTP.SendAsApp"]), ALICE, &b"x\r\n"[..])
        .await
        .unwrap_err();
    assert_eq!(
        err.meaning(),
        Some(Meaning::SmtpAuthDisabledForTenant),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::NeedsAdmin);
    assert!(
        err.to_string()
            .contains("Set-TransportConfig -SmtpClientAuthenticationDisabled $false"),
        "{err}"
    );
}

#[tokio::test]
async fn token_without_the_role_is_an_authentication_failure_with_the_checklist() {
    let w = world(|_| {}).await;
    let err = send_as_app(&w, w.app_token(&[]), ALICE, &b"x\r\n"[..])
        .await
        .unwrap_err();
    assert_eq!(err.meaning(), Some(Meaning::AuthenticationFailed), "{err}");
    assert!(err.to_string().contains("SMTP.SendAsApp"), "{err}");
    assert!(err.to_string().contains("New-ServicePrincipal"), "{err}");
}

#[tokio::test]
async fn sending_as_another_address_without_send_as_is_refused_with_the_fix() {
    let w = world(|_| {}).await;
    let raw = message(BOB, ALICE, "Not mine", "x");
    let err = send_as_app(&w, w.app_token(&["SMTP.SendAsApp"]), BOB, raw.as_slice())
        .await
        .unwrap_err();
    assert_eq!(err.meaning(), Some(Meaning::SendAsDenied), "{err}");
    assert!(err.to_string().contains("Add-RecipientPermission"), "{err}");
}

#[tokio::test]
async fn passwords_work_with_plain_and_login_where_basic_is_allowed() {
    let w = world(|t| t.basic_auth_enabled = true).await;
    for creds in [
        Credentials::Plain {
            user: ALICE.into(),
            password: SecretString::from(PASSWORD),
        },
        Credentials::Login {
            user: ALICE.into(),
            password: SecretString::from(PASSWORD),
        },
    ] {
        let mut c = SmtpClient::connect(&w.config()).await.unwrap();
        c.authenticate(&creds)
            .await
            .unwrap_or_else(|e| panic!("{creds:?}: {e}"));
        c.send(
            ALICE,
            &[BOB.to_owned()],
            message(ALICE, BOB, "Basic", "x").as_slice(),
        )
        .await
        .unwrap();
        c.quit().await.unwrap();
    }
    assert_eq!(w.inbox(BOB, 2).await.len(), 2);
    assert!(
        !format!(
            "{:?}",
            Credentials::Plain {
                user: ALICE.into(),
                password: SecretString::from(PASSWORD)
            }
        )
        .contains(PASSWORD)
    );
}

#[tokio::test]
async fn untrusted_certificate_is_a_configuration_error_not_a_retry() {
    let w = world(|_| {}).await;
    let mut config = w.config();
    config.trust.extra_ca_pem = None;
    let err = SmtpClient::connect(&config).await.unwrap_err();
    assert!(matches!(err, SmtpError::Tls { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    assert!(err.to_string().contains("extra CA"), "{err}");
}

#[tokio::test]
async fn one_connection_sends_several_messages_and_recovers_after_a_refusal() {
    let w = world(|_| {}).await;
    let mut c = SmtpClient::connect(&w.config()).await.unwrap();
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.app_token(&["SMTP.SendAsApp"]),
    })
    .await
    .unwrap();
    c.send(
        ALICE,
        &[BOB.to_owned()],
        message(ALICE, BOB, "one", "1").as_slice(),
    )
    .await
    .unwrap();
    let refused = c
        .send(
            BOB,
            &[ALICE.to_owned()],
            message(BOB, ALICE, "no", "x").as_slice(),
        )
        .await;
    assert!(refused.is_err());
    c.reset().await.unwrap();
    c.send(
        ALICE,
        &[BOB.to_owned()],
        message(ALICE, BOB, "two", "2").as_slice(),
    )
    .await
    .unwrap();
    // An envelope address carrying a line break never reaches the server.
    let smuggled = c
        .send(
            ALICE,
            &[format!("{BOB}>\r\nRCPT TO:<{ALICE}")],
            message(ALICE, BOB, "three", "3").as_slice(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(smuggled, mailbridge_smtp::SmtpError::InvalidAddress(_)),
        "{smuggled}"
    );
    assert_eq!(smuggled.class(), ErrorClass::Permanent);
    c.quit().await.unwrap();
    assert_eq!(w.inbox(BOB, 2).await.len(), 2);
}

#[tokio::test]
async fn pipelined_envelope_with_a_refused_recipient_in_the_middle_sends_nothing() {
    let w = world(|_| {}).await;
    let connect = || async {
        let mut c = SmtpClient::connect(&w.config()).await.unwrap();
        c.authenticate(&Credentials::XOAuth2 {
            user: ALICE.into(),
            token: w.app_token(&["SMTP.SendAsApp"]),
        })
        .await
        .unwrap();
        c
    };
    let mut c = connect().await;
    assert!(c.has_capability("PIPELINING"), "{:?}", c.capabilities);
    // Postfix refuses a domain that cannot be one (501 5.1.3) at RCPT time and accepts
    // the others, so it answers DATA with 354: the client must not let the message go
    // to BOB and ALICE.
    let bad = "carol@-bad-.example";
    let err = c
        .send(
            ALICE,
            &[BOB.to_owned(), bad.to_owned(), ALICE.to_owned()],
            message(ALICE, BOB, "partly refused", "x").as_slice(),
        )
        .await
        .unwrap_err();
    match &err {
        SmtpError::RecipientRefused { address, reply } => {
            assert_eq!(address, bad);
            assert_eq!(reply.code / 100, 5, "{err}");
        }
        other => panic!("not a refused recipient: {other}"),
    }
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains(bad), "{err}");
    assert!(!c.is_open(), "the connection in DATA mode must be dropped");
    assert!(matches!(c.reset().await, Err(SmtpError::Io { .. })));

    // A fresh connection pipelines a clean envelope to both.
    let mut c = connect().await;
    c.send(
        ALICE,
        &[BOB.to_owned(), ALICE.to_owned()],
        message(ALICE, BOB, "to both", "y").as_slice(),
    )
    .await
    .unwrap();
    // Every RCPT refused: the RCPT refusal, not DATA's "no valid recipients".
    let err = c
        .send(
            ALICE,
            &[bad.to_owned(), "dave@.contoso.example".to_owned()],
            message(ALICE, BOB, "nobody", "z").as_slice(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SmtpError::RecipientRefused { address, .. } if address == bad),
        "{err}"
    );
    // DATA was refused too, so the session is in step and goes on.
    assert!(c.is_open());
    c.reset().await.unwrap();
    c.send(
        ALICE,
        &[BOB.to_owned()],
        message(ALICE, BOB, "after", "w").as_slice(),
    )
    .await
    .unwrap();
    c.quit().await.unwrap();
    let bob = w.inbox(BOB, 2).await;
    let alice = w.inbox(ALICE, 1).await;
    let subjects = |box_: &[Vec<u8>]| {
        let mut s = box_
            .iter()
            .map(|m| {
                let t = String::from_utf8_lossy(m);
                t.lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>();
        s.sort();
        s
    };
    assert_eq!(subjects(&bob), ["after", "to both"]);
    assert_eq!(subjects(&alice), ["to both"]);
}
