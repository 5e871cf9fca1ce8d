//! The EWS client against the emulated tenant's EWS, with the mail in real Dovecot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bounds;
mod hostile;
mod prop;

use mailbridge_ews::{ChangeKind, EwsAuth, EwsClient, EwsConfig, EwsError};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";
const PASSWORD: &str = "Passw0rd!";

struct World {
    server: EmulatorServer,
    emulator: Emulator,
    mail: MailServers,
    app: AppRegistration,
}

async fn world(adjust: impl FnOnce(&mut Tenant)) -> World {
    let app = AppRegistration::new("Alerting").consented();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", PASSWORD))
        .with_user(User::new(BOB, "Bob", PASSWORD))
        .with_app(app.clone());
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
        server,
        emulator,
        mail,
        app,
    }
}

impl World {
    fn client(&self) -> EwsClient {
        EwsClient::new(EwsConfig::new(&format!(
            "{}/EWS/Exchange.asmx",
            self.server.base_url()
        )))
        .unwrap()
    }

    fn app_auth(&self, roles: &[&str], mailbox: &str) -> EwsAuth {
        EwsAuth::AppOnly {
            token: mailbridge_auth::source::fixed(SecretString::from(self.emulator.app_token(
                &self.app,
                Resource::exchange(),
                roles,
            ))),
            mailbox: mailbox.to_owned(),
        }
    }

    async fn deliver(&self, subject: &str) -> Vec<u8> {
        let raw = format!(
            "From: carol@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n"
        );
        self.mail
            .mail_store()
            .deliver("carol@example.org", &[ALICE.to_owned()], raw.as_bytes())
            .await
            .unwrap();
        raw.into_bytes()
    }
}

#[tokio::test]
async fn sync_get_mime_mark_read_move_and_send_with_app_only_impersonation() {
    let w = world(|_| {}).await;
    for i in 0..3 {
        w.deliver(&format!("m{i}")).await;
    }
    let client = w.client();
    let auth = w.app_auth(&["full_access_as_app"], ALICE);
    let first = client
        .sync_folder_items(&auth, "inbox", None, 512)
        .await
        .unwrap();
    assert!(first.includes_last);
    assert_eq!(first.changes.len(), 3);
    assert!(first.changes.iter().all(|c| c.kind == ChangeKind::Create));
    let mime = client.get_mime(&auth, &first.changes[0].id).await.unwrap();
    assert!(
        String::from_utf8_lossy(&mime).contains("Subject: m"),
        "{}",
        String::from_utf8_lossy(&mime)
    );
    client
        .set_read(
            &auth,
            &first.changes[0].id,
            first.changes[0].change_key.as_deref(),
            true,
        )
        .await
        .unwrap();
    client
        .move_item(&auth, &first.changes[1].id, "deleteditems")
        .await
        .unwrap();
    let next = client
        .sync_folder_items(&auth, "inbox", Some(&first.sync_state), 512)
        .await
        .unwrap();
    assert!(
        next.changes
            .iter()
            .any(|c| c.kind == ChangeKind::ReadFlagChange && c.is_read == Some(true)),
        "{:?}",
        next.changes
    );
    assert!(
        next.changes.iter().any(|c| c.kind == ChangeKind::Delete),
        "{:?}",
        next.changes
    );
    // Send with a copy in Sent Items.
    let mime = format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: alert\r\n\r\nfire\r\n");
    client
        .send_mime(&auth, mime.as_bytes(), true)
        .await
        .unwrap();
    let store = w.mail.mail_store();
    let mut delivered = 0;
    for _ in 0..200 {
        delivered = store.list(BOB, "INBOX").await.unwrap().len();
        if delivered == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, 1);
    assert_eq!(store.list(ALICE, "Sent Items").await.unwrap().len(), 1);
}

#[tokio::test]
async fn token_without_full_access_as_app_names_admin_consent() {
    let w = world(|_| {}).await;
    let err = w
        .client()
        .sync_folder_items(&w.app_auth(&[], ALICE), "inbox", None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, EwsError::Unauthorized { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::NeedsAdmin);
    assert!(err.to_string().contains("full_access_as_app"), "{err}");
}

#[tokio::test]
async fn server_busy_is_retried_after_its_back_off() {
    let w = world(|_| {}).await;
    w.emulator.update_knobs(|k| {
        k.faults.ews_server_busy = 1;
        k.ews_backoff_ms = 200;
    });
    let page = w
        .client()
        .sync_folder_items(
            &w.app_auth(&["full_access_as_app"], ALICE),
            "inbox",
            None,
            10,
        )
        .await
        .unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(
        w.emulator.requests_to("/EWS/Exchange.asmx").len(),
        2,
        "one busy answer, one retry"
    );
}

#[tokio::test]
async fn basic_auth_on_an_on_premises_style_server() {
    let w = world(|t| t.basic_auth_enabled = true).await;
    w.deliver("hello").await;
    let auth = EwsAuth::Basic {
        user: ALICE.into(),
        password: SecretString::from(PASSWORD),
    };
    let page = w
        .client()
        .sync_folder_items(&auth, "inbox", None, 10)
        .await
        .unwrap();
    assert_eq!(page.changes.len(), 1);
    let wrong = EwsAuth::Basic {
        user: ALICE.into(),
        password: SecretString::from("nope"),
    };
    assert!(
        w.client()
            .sync_folder_items(&wrong, "inbox", None, 10)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unlicensed_mailbox_is_named() {
    let w = world(|t| t.user_mut(BOB).unwrap().mailbox.licensed = false).await;
    let err = w
        .client()
        .sync_folder_items(&w.app_auth(&["full_access_as_app"], BOB), "inbox", None, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ErrorNonExistentMailbox"), "{err}");
    assert_eq!(err.class(), ErrorClass::NeedsAdmin);
}
