//! The Graph client against the emulated tenant's Graph, with the mail in real Dovecot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod hostile;
mod prop;

use mailbridge_graph::{GraphClient, GraphConfig, Mailbox, Meaning};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    AccessPolicyMode, AppRegistration, ApplicationAccessPolicy, Tenant, TenantModel, User,
};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";

struct World {
    server: EmulatorServer,
    emulator: Emulator,
    mail: MailServers,
    app: AppRegistration,
}

async fn world(adjust: impl FnOnce(&mut Tenant, &AppRegistration)) -> World {
    let app = AppRegistration::new("Asset tool").consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone());
    adjust(&mut tenant, &app);
    let model = TenantModel::builder().tenant(tenant).build().unwrap();
    let emulator = Emulator::new(model).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    World {
        server,
        emulator,
        mail,
        app,
    }
}

impl World {
    fn client(&self) -> GraphClient {
        let mut config = GraphConfig::new(&format!("{}/v1.0", self.server.base_url()));
        config.max_retry_after = std::time::Duration::from_secs(2);
        GraphClient::new(config).unwrap()
    }

    fn token(&self, roles: &[&str]) -> SecretString {
        SecretString::from(self.emulator.app_token(&self.app, Resource::graph(), roles))
    }

    async fn deliver(&self, to: &str, subject: &str) -> Vec<u8> {
        let raw = format!(
            "From: carol@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
        );
        self.mail
            .mail_store()
            .deliver("carol@example.org", &[to.to_owned()], raw.as_bytes())
            .await
            .unwrap();
        raw.into_bytes()
    }
}

#[tokio::test]
async fn delta_sync_rounds_fetch_mime_mark_read_and_move() {
    let w = world(|_, _| {}).await;
    for i in 0..3 {
        w.deliver(ALICE, &format!("m{i}")).await;
    }
    let client = w.client();
    let token = w.token(&["Mail.ReadWrite"]);
    let alice = Mailbox::User(ALICE.into());
    // First round, two per page.
    let mut items = Vec::new();
    let mut page = client
        .delta(&token, &alice, "inbox", None, 2)
        .await
        .unwrap();
    let delta_link = loop {
        items.extend(page.items.clone());
        if let Some(next) = page.next_link.clone() {
            page = client
                .delta(&token, &alice, "inbox", Some(&next), 2)
                .await
                .unwrap();
        } else {
            break page.delta_link.clone().unwrap();
        }
    };
    assert_eq!(items.len(), 3);
    // $value streamed, byte for byte what Dovecot holds.
    let mut mime = Vec::new();
    let size = client
        .fetch_mime(&token, &alice, &items[0].id, &mut mime)
        .await
        .unwrap();
    assert_eq!(size, mime.len() as u64);
    assert!(
        String::from_utf8_lossy(&mime).contains("Subject: m"),
        "{}",
        String::from_utf8_lossy(&mime)
    );
    client
        .set_read(&token, &alice, &items[0].id, true)
        .await
        .unwrap();
    let moved = client
        .move_to(&token, &alice, &items[1].id, "archive")
        .await
        .unwrap();
    assert_ne!(moved, items[1].id, "moved messages get a new id");
    w.deliver(ALICE, "m3").await;
    // Next round from the stored delta link: the new message, the read change, the move.
    let next = client
        .delta(&token, &alice, "inbox", Some(&delta_link), 50)
        .await
        .unwrap();
    assert!(
        next.items
            .iter()
            .any(|i| i.subject.as_deref() == Some("m3")),
        "{:?}",
        next.items
    );
    assert!(
        next.items.iter().any(|i| i.removed && i.id == items[1].id),
        "{:?}",
        next.items
    );
    assert!(next.delta_link.is_some());
}

#[tokio::test]
async fn send_mime_delivers_and_keeps_a_sent_copy() {
    let w = world(|_, _| {}).await;
    let client = w.client();
    let token = w.token(&["Mail.Send", "Mail.ReadWrite"]);
    let mime =
        format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\nhello\r\n");
    client
        .send_mime(&token, &Mailbox::User(ALICE.into()), mime.as_bytes())
        .await
        .unwrap();
    let store = w.mail.mail_store();
    let mut got = Vec::new();
    for _ in 0..200 {
        got = store.list(BOB, "INBOX").await.unwrap();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), 1);
    assert_eq!(store.list(ALICE, "Sent Items").await.unwrap().len(), 1);
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let w = world(|_, _| {}).await;
    w.deliver(ALICE, "m").await;
    w.emulator.update_knobs(|k| {
        k.faults.graph_429 = 2;
        k.graph_retry_after_secs = 1;
    });
    let page = w
        .client()
        .delta(
            &w.token(&["Mail.Read"]),
            &Mailbox::User(ALICE.into()),
            "inbox",
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let statuses: Vec<u16> = w
        .emulator
        .requests_to("/messages/delta")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn admin_mistakes_are_named() {
    let w = world(|t, app| {
        t.access_policies.push(ApplicationAccessPolicy {
            app_id: app.client_id,
            mode: AccessPolicyMode::RestrictAccess,
            mailboxes: vec![BOB.into()],
            added_at: None,
        });
        t.user_mut(BOB).unwrap().mailbox.licensed = false;
    })
    .await;
    let client = w.client();
    let token = w.token(&["Mail.Read"]);
    let err = client
        .delta(&token, &Mailbox::User(ALICE.into()), "inbox", None, 10)
        .await
        .unwrap_err();
    let mailbridge_graph::ClientError::Graph(g) = &err else {
        panic!("{err}")
    };
    assert_eq!(g.meaning, Meaning::OutsideAccessPolicy, "{err}");
    assert_eq!(err.class(), ErrorClass::NeedsAdmin);
    let err = client
        .delta(&token, &Mailbox::User(BOB.into()), "inbox", None, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("licence"), "{err}");
    let err = client
        .delta(&w.token(&[]), &Mailbox::User(BOB.into()), "inbox", None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err.class(), ErrorClass::NeedsAdmin), "{err}");
}
