//! The Mailbox API over IMAP and Graph on the same Dovecot mailbox: mail sent over
//! SMTP is found by both, checkpoints return only what is new, and a change through
//! one transport is seen through the other.

use mailbridge_graph::{GraphClient, GraphConfig, Mailbox as GraphTarget};
use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::mailbox::{
    Checkpoint, EwsMailbox, GraphMailboxAccess, ImapMailbox, Mailbox, Pop3Mailbox,
};
use mailbridge_smtp::{SmtpClient, SmtpConfig};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";

fn token(
    emulator: &Emulator,
    app: &AppRegistration,
    resource: Resource,
    roles: &[&str],
) -> SecretString {
    SecretString::from(emulator.app_token(app, resource, roles))
}

async fn send(mail: &MailServers, emulator: &Emulator, app: &AppRegistration, subject: &str) {
    let addr = mail.submission();
    let mut config = SmtpConfig::new(
        &addr.ip().to_string(),
        addr.port(),
        mailbridge_smtp::TlsMode::StartTls,
    );
    config.trust = TlsSettings {
        extra_ca_pem: Some(mail.ca_pem().to_owned()),
        server_name: Some(mail.tls_name().to_owned()),
        pin: None,
    };
    let mut c = SmtpClient::connect(&config).await.unwrap();
    c.authenticate(&mailbridge_smtp::Credentials::XOAuth2 {
        user: ALICE.into(),
        token: token(emulator, app, Resource::exchange(), &["SMTP.SendAsApp"]),
    })
    .await
    .unwrap();
    let raw = format!("From: {ALICE}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhello\r\n");
    c.send(ALICE, &[ALICE.to_owned()], raw.as_bytes())
        .await
        .unwrap();
    c.quit().await.unwrap();
    let store = mail.mail_store();
    for _ in 0..200 {
        if store
            .list(ALICE, "INBOX")
            .await
            .unwrap()
            .iter()
            .any(|m| String::from_utf8_lossy(&m.header).contains(subject))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{subject} was not delivered");
}

#[tokio::test]
async fn imap_and_graph_see_the_same_mailbox_through_one_api() {
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
    send(&mail, &emulator, &app, "first").await;

    let addr = mail.imaps();
    let mut imap_config = ImapConfig::new(&addr.ip().to_string(), addr.port(), TlsMode::Implicit);
    imap_config.trust = TlsSettings {
        extra_ca_pem: Some(mail.ca_pem().to_owned()),
        server_name: Some(mail.tls_name().to_owned()),
        pin: None,
    };
    let mut client = ImapClient::connect(&imap_config).await.unwrap();
    client
        .authenticate(&Credentials::XOAuth2 {
            user: ALICE.into(),
            token: token(&emulator, &app, Resource::exchange(), &["IMAP.AccessAsApp"]),
        })
        .await
        .unwrap();
    let mut imap = ImapMailbox::new(client);
    let mut graph = GraphMailboxAccess::new(
        GraphClient::new(GraphConfig::new(&format!("{}/v1.0", server.base_url()))).unwrap(),
        GraphTarget::User(ALICE.into()),
        mailbridge_auth::source::fixed(token(
            &emulator,
            &app,
            Resource::graph(),
            &["Mail.ReadWrite"],
        )),
    );

    let mut imap_cp = Checkpoint::Start;
    let mut graph_cp = Checkpoint::Start;
    for (round, expected) in [("first", 1), ("second", 1)] {
        if round == "second" {
            send(&mail, &emulator, &app, "second").await;
        }
        let from_imap = imap.new_since("INBOX", &imap_cp).await.unwrap();
        let from_graph = graph.new_since("inbox", &graph_cp).await.unwrap();
        assert_eq!(from_imap.messages.len(), expected, "IMAP round {round}");
        assert_eq!(from_graph.messages.len(), expected, "Graph round {round}");
        let mut a = Vec::new();
        imap.fetch(&from_imap.messages[0], &mut a).await.unwrap();
        let mut b = Vec::new();
        graph.fetch(&from_graph.messages[0], &mut b).await.unwrap();
        assert_eq!(a, b, "the same bytes through both transports");
        assert!(String::from_utf8_lossy(&a).contains(&format!("Subject: {round}")));
        imap_cp = from_imap.checkpoint;
        graph_cp = from_graph.checkpoint;
    }
    // A checkpoint survives serialisation (the connector stores it).
    let stored = serde_json::to_string(&imap_cp).unwrap();
    let back: Checkpoint = serde_json::from_str(&stored).unwrap();
    assert!(
        imap.new_since("INBOX", &back)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // A wrong UIDVALIDITY means a resync of the whole folder.
    let stale = Checkpoint::Imap {
        uid_validity: 1,
        last_uid: 99,
    };
    let again = imap.new_since("INBOX", &stale).await.unwrap();
    assert!(again.resynced);
    assert_eq!(again.messages.len(), 2);
    let mut reference = Vec::new();
    imap.fetch(&again.messages[0], &mut reference)
        .await
        .unwrap();

    // EWS, app-only with impersonation: the same two messages, the same bytes.
    let mut ews = EwsMailbox::new(
        mailbridge_ews::EwsClient::new(mailbridge_ews::EwsConfig::new(&format!(
            "{}/EWS/Exchange.asmx",
            server.base_url()
        )))
        .unwrap(),
        mailbridge_ews::EwsAuth::AppOnly {
            token: mailbridge_auth::source::fixed(token(
                &emulator,
                &app,
                Resource::exchange(),
                &["full_access_as_app"],
            )),
            mailbox: ALICE.into(),
        },
    );
    let from_ews = ews.new_since("inbox", &Checkpoint::Start).await.unwrap();
    assert_eq!(from_ews.messages.len(), 2);
    let mut mime = Vec::new();
    ews.fetch(&from_ews.messages[0], &mut mime).await.unwrap();
    assert_eq!(mime, reference);
    assert!(
        ews.new_since("inbox", &from_ews.checkpoint)
            .await
            .unwrap()
            .messages
            .is_empty()
    );

    // POP3, app-only: the same, with UIDL checkpoints; no folders to move to.
    let addr = mail.pop3s();
    let mut pop_config = mailbridge_pop3::Pop3Config::new(
        &addr.ip().to_string(),
        addr.port(),
        mailbridge_pop3::TlsMode::Implicit,
    );
    pop_config.trust = TlsSettings {
        extra_ca_pem: Some(mail.ca_pem().to_owned()),
        server_name: Some(mail.tls_name().to_owned()),
        pin: None,
    };
    let mut pop_client = mailbridge_pop3::Pop3Client::connect(&pop_config)
        .await
        .unwrap();
    pop_client
        .authenticate(&mailbridge_pop3::Credentials::XOAuth2 {
            user: ALICE.into(),
            token: token(&emulator, &app, Resource::exchange(), &["POP.AccessAsApp"]),
        })
        .await
        .unwrap();
    let mut pop = Pop3Mailbox::new(pop_client);
    let from_pop = pop.new_since("INBOX", &Checkpoint::Start).await.unwrap();
    assert_eq!(from_pop.messages.len(), 2);
    let mut mime = Vec::new();
    pop.fetch(&from_pop.messages[0], &mut mime).await.unwrap();
    assert_eq!(mime, reference);
    assert!(
        pop.new_since("INBOX", &from_pop.checkpoint)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    let err = pop
        .move_to(&from_pop.messages[0], "Archive")
        .await
        .unwrap_err();
    assert_eq!(err.class, mailbridge_types::ErrorClass::Misconfigured);
    pop.close().await.unwrap();
}
