//! The IMAP client against real Dovecot judged by the emulated tenant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod prop;

use std::time::Duration;

use mailbridge_imap::{Credentials, ImapClient, ImapConfig, Meaning, TlsMode};
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
    let app = AppRegistration::new("Firewall connector")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
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
    fn config(&self, tls: TlsMode) -> ImapConfig {
        let addr = if tls == TlsMode::Implicit {
            self.mail.imaps()
        } else {
            self.mail.imap()
        };
        let mut c = ImapConfig::new(&addr.ip().to_string(), addr.port(), tls);
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

    async fn deliver(&self, subject: &str, body: &str) -> Vec<u8> {
        let raw =
            format!("From: bob@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n{body}\r\n");
        self.mail
            .mail_store()
            .deliver("bob@example.org", &[ALICE.to_owned()], raw.as_bytes())
            .await
            .unwrap();
        raw.into_bytes()
    }

    async fn app_session(&self) -> ImapClient {
        let mut c = ImapClient::connect(&self.config(TlsMode::Implicit))
            .await
            .unwrap();
        c.authenticate(&Credentials::XOAuth2 {
            user: ALICE.into(),
            token: self.token(None, &["IMAP.AccessAsApp"]),
        })
        .await
        .unwrap();
        c
    }
}

#[tokio::test]
async fn checkpointed_download_fetch_mark_move_with_app_only_xoauth2() {
    let w = world(|_| {}).await;
    for i in 0..3 {
        w.deliver(&format!("m{i}"), &format!("body {i}\r\n.dot"))
            .await;
    }
    let mut c = w.app_session().await;
    let inbox = c.select("INBOX").await.unwrap();
    assert_eq!(inbox.exists, 3);
    let uids = c.uids_after(0).await.unwrap();
    assert_eq!(uids.len(), 3);
    let mut sink = Vec::new();
    let size = c.fetch(uids[0], &mut sink).await.unwrap().unwrap();
    assert_eq!(size, sink.len() as u64);
    let text = String::from_utf8(sink).unwrap();
    assert!(
        text.contains("Subject: m0") && text.contains("body 0\r\n.dot"),
        "{text}"
    );
    c.set_seen(uids[0], true).await.unwrap();
    c.move_to(uids[1], "Archive").await.unwrap();
    // The checkpoint: nothing after the last UID until new mail arrives.
    let last = *uids.last().unwrap();
    assert!(c.uids_after(last).await.unwrap().is_empty());
    w.deliver("m3", "later").await;
    let again = c.select("INBOX").await.unwrap();
    assert_eq!(
        again.uid_validity, inbox.uid_validity,
        "same UIDVALIDITY: the checkpoint holds"
    );
    let new = c.uids_after(last).await.unwrap();
    assert_eq!(new.len(), 1);
    assert!(new[0] > last);
    // A UID that does not exist fetches nothing.
    assert_eq!(c.fetch(9_999, &mut Vec::new()).await.unwrap(), None);
    let archive = c.select("Archive").await.unwrap();
    assert_eq!(archive.exists, 1);
    c.logout().await.unwrap();
}

#[tokio::test]
async fn starttls_delegated_and_a_large_message_streamed() {
    let w = world(|_| {}).await;
    let line = "The quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUV";
    let body = format!("{line}\r\n").repeat(60_000);
    let sent = w.deliver("large", &body).await;
    let mut c = ImapClient::connect(&w.config(TlsMode::StartTls))
        .await
        .unwrap();
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.token(Some(ALICE), &["IMAP.AccessAsUser.All"]),
    })
    .await
    .unwrap();
    c.select("INBOX").await.unwrap();
    let uid = c.uids_after(0).await.unwrap()[0];
    let mut sink = Vec::new();
    c.fetch(uid, &mut sink).await.unwrap();
    assert!(sink.len() >= sent.len());
    assert!(
        sink.ends_with(&sent[sent.len() - 1000..]),
        "the end of the message arrived intact"
    );
}

#[tokio::test]
async fn fetch_header_brings_the_header_block_and_none_of_the_body() {
    let w = world(|_| {}).await;
    let line = "The quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUV";
    let sent = w
        .deliver("headers only", &format!("{line}\r\n").repeat(20_000))
        .await;
    let mut c = w.app_session().await;
    c.select("INBOX").await.unwrap();
    let uid = c.uids_after(0).await.unwrap()[0];
    let mut header = Vec::new();
    let size = c.fetch_header(uid, &mut header).await.unwrap().unwrap();
    assert_eq!(size, header.len() as u64);
    let text = String::from_utf8(header).unwrap();
    assert!(text.contains("Subject: headers only"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "the header block and its empty line"
    );
    assert!(!text.contains("quick brown fox"), "no body: {text}");
    assert!(text.len() < sent.len() / 100);
    // A missing UID fetches nothing; the header is where the whole message starts.
    assert_eq!(c.fetch_header(9_999, &mut Vec::new()).await.unwrap(), None);
    let mut whole = Vec::new();
    c.fetch(uid, &mut whole).await.unwrap().unwrap();
    assert!(whole.starts_with(text.as_bytes()));
}

#[tokio::test]
async fn idle_wakes_up_when_mail_arrives() {
    let w = world(|_| {}).await;
    let mut c = w.app_session().await;
    c.select("INBOX").await.unwrap();
    assert!(
        !c.idle(Duration::from_millis(300)).await.unwrap(),
        "nothing yet"
    );
    let store = w.mail.mail_store();
    let deliver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        store
            .deliver(
                "bob@example.org",
                &[ALICE.to_owned()],
                b"Subject: ping\r\n\r\nx\r\n",
            )
            .await
            .unwrap();
    });
    assert!(
        c.idle(Duration::from_secs(30)).await.unwrap(),
        "woken by EXISTS"
    );
    deliver.await.unwrap();
    assert_eq!(c.uids_after(0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn append_returns_the_new_uid() {
    let w = world(|_| {}).await;
    let mut c = w.app_session().await;
    let msg = b"From: alice@contoso.example\r\nTo: bob@example.org\r\nSubject: sent copy\r\n\r\nhello\r\n";
    let uid = c
        .append("Sent Items", true, msg.len() as u64, &mut &msg[..])
        .await
        .unwrap()
        .unwrap();
    c.select("Sent Items").await.unwrap();
    let mut sink = Vec::new();
    c.fetch(uid, &mut sink).await.unwrap().unwrap();
    assert_eq!(sink, msg);
}

#[tokio::test]
async fn refused_token_names_the_exchange_checklist() {
    let w = world(|_| {}).await;
    let mut c = ImapClient::connect(&w.config(TlsMode::Implicit))
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
        text.contains("IMAP.AccessAsApp") && text.contains("Enterprise application"),
        "{text}"
    );
}

#[tokio::test]
async fn login_and_oauthbearer_where_the_server_allows_them() {
    let w = world(|t| t.basic_auth_enabled = true).await;
    let mut c = ImapClient::connect(&w.config(TlsMode::Implicit))
        .await
        .unwrap();
    c.authenticate(&Credentials::Login {
        user: ALICE.into(),
        password: SecretString::from(PASSWORD),
    })
    .await
    .unwrap();
    c.select("INBOX").await.unwrap();
    let mut c = ImapClient::connect(&w.config(TlsMode::Implicit))
        .await
        .unwrap();
    c.authenticate(&Credentials::OAuthBearer {
        user: ALICE.into(),
        token: w.token(None, &["IMAP.AccessAsApp"]),
    })
    .await
    .unwrap();
    c.select("INBOX").await.unwrap();
}
mod hostile;
mod search;
