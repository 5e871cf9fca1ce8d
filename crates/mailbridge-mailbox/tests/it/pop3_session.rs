//! A POP3 mailbox opened for an account against real Dovecot: a POP3 session sees the
//! maildrop as it was when it opened, so each listing after the first is taken in a
//! new session; mail that arrived in between is listed, and deletions are committed
//! when the session ends.

use mailbridge_mailbox::connect::{AnyMailbox, open_incoming};
use mailbridge_mailbox::mailbox::{Checkpoint, Mailbox as _};
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::config::AccountConfig;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";

async fn append(mail: &MailServers, subject: &str) {
    let raw = format!("From: carol@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhi\r\n");
    mail.mail_store()
        .append(ALICE, "INBOX", raw.as_bytes(), false)
        .await
        .unwrap();
}

async fn subjects_on_server(mail: &MailServers) -> Vec<String> {
    let mut subjects: Vec<String> = mail
        .mail_store()
        .list(ALICE, "INBOX")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(&m.header)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect();
    subjects.sort();
    subjects
}

#[tokio::test]
async fn a_pop3_mailbox_lists_mail_that_arrived_after_its_first_listing() {
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
    let _server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let addr = mail.pop3s();
    let account: AccountConfig = serde_json::from_value(serde_json::json!({
        "name": "alice",
        "address": ALICE,
        "sign_in": "app-only",
        "app": "connector",
        "transports": ["pop3"],
        "incoming": {
            "transport": "pop3",
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "tls": "implicit",
            "tls_name": mail.tls_name(),
            "extra_ca_file": ca,
        },
    }))
    .unwrap();
    let token = emulator.app_token(&app, Resource::exchange(), &["POP.AccessAsApp"]);
    append(&mail, "first").await;
    let mut pop = open_incoming(
        &account,
        SenderSignIn::AppOnly(mailbridge_auth::source::fixed(SecretString::from(token))),
    )
    .await
    .unwrap();
    assert!(matches!(pop, AnyMailbox::Pop3(_)));

    let listed = pop.new_since("INBOX", &Checkpoint::Start).await.unwrap();
    assert_eq!(listed.messages.len(), 1);
    let first = listed.messages[0].clone();
    // Arrives while the session is open: that session will never list it.
    append(&mail, "second").await;
    pop.delete(&first).await.unwrap();
    // Deleted in the session, not yet on the server.
    assert_eq!(subjects_on_server(&mail).await, ["first", "second"]);

    let next = pop.new_since("INBOX", &listed.checkpoint).await.unwrap();
    assert_eq!(next.messages.len(), 1, "the mail that arrived is listed");
    let mut raw = Vec::new();
    pop.fetch(&next.messages[0], &mut raw).await.unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("Subject: second"));
    // The first session ended before the new one opened: its deletion is committed.
    assert_eq!(subjects_on_server(&mail).await, ["second"]);
    // The checkpoint remembers only what is still there, and nothing is new.
    let Checkpoint::Pop { uidls } = &next.checkpoint else {
        panic!("{:?}", next.checkpoint);
    };
    assert_eq!(uidls.len(), 1);
    assert!(
        pop.new_since("INBOX", &next.checkpoint)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // A reference from an ended session is not resolved against the new numbering.
    let err = pop.fetch(&first, &mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind, mailbridge_mailbox::mailbox::ErrorKind::NotFound);

    // Released between polls (as a watcher does): the session ends at once, its
    // deletion committed, and the next listing opens a new one.
    let second = next.messages[0].clone();
    pop.delete(&second).await.unwrap();
    let AnyMailbox::Pop3(inner) = &mut pop else {
        unreachable!()
    };
    inner.release().await.unwrap();
    assert!(subjects_on_server(&mail).await.is_empty());
    append(&mail, "third").await;
    let after = pop.new_since("INBOX", &next.checkpoint).await.unwrap();
    assert_eq!(after.messages.len(), 1, "a released mailbox lists again");
    pop.close().await.unwrap();
}
