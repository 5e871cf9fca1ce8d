//! The mail store over real Dovecot and Postfix: what Graph and EWS build on.

use mailbridge_testkit::mailstore::{MailStoreError, WELL_KNOWN_FOLDERS};

use super::fixture::{ALICE, BOB, message, world};

#[tokio::test]
async fn every_mailbox_has_the_exchange_folders() {
    let w = world().await;
    let store = w.mail.mail_store();
    let folders = store.folders(ALICE).await.unwrap();
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    for (_, folder) in WELL_KNOWN_FOLDERS {
        assert!(names.contains(&folder), "{folder} missing from {names:?}");
    }
    assert_eq!(names.first(), Some(&"INBOX"));
    assert!(folders.iter().all(|f| f.uid_validity != 0 && f.total == 0));
}

#[tokio::test]
async fn append_list_fetch_seen_move_delete_round_trip() {
    let w = world().await;
    let store = w.mail.mail_store();
    let raw = message(ALICE, BOB, "Round trip");
    let id = store.append(ALICE, "Drafts", &raw, false).await.unwrap();
    assert_eq!(id.folder, "Drafts");

    let listed = store.list(ALICE, "Drafts").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert!(!listed[0].seen);
    assert_eq!(listed[0].size, raw.len() as u64);
    assert!(String::from_utf8_lossy(&listed[0].header).contains("Subject: Round trip"));

    assert_eq!(store.fetch(&id).await.unwrap().unwrap(), raw);

    assert!(store.set_seen(&id, true).await.unwrap());
    assert!(store.list(ALICE, "Drafts").await.unwrap()[0].seen);
    let folders = store.folders(ALICE).await.unwrap();
    let drafts = folders.iter().find(|f| f.name == "Drafts").unwrap();
    assert_eq!((drafts.total, drafts.unread), (1, 0));

    let moved = store.move_to(&id, "Archive").await.unwrap().unwrap();
    assert_eq!(moved.folder, "Archive");
    assert!(store.list(ALICE, "Drafts").await.unwrap().is_empty());
    assert_eq!(store.fetch(&id).await.unwrap(), None, "old id is gone");
    assert_eq!(store.fetch(&moved).await.unwrap().unwrap(), raw);
    assert!(
        store.list(ALICE, "Archive").await.unwrap()[0].seen,
        "flags move along"
    );

    assert!(store.delete(&moved).await.unwrap());
    assert!(!store.delete(&moved).await.unwrap());
    assert!(!store.set_seen(&moved, false).await.unwrap());
    assert_eq!(store.move_to(&moved, "Inbox").await.unwrap(), None);
    assert!(store.list(ALICE, "Archive").await.unwrap().is_empty());
}

#[tokio::test]
async fn deliver_lands_in_every_recipients_inbox() {
    let w = world().await;
    let store = w.mail.mail_store();
    let raw = message(ALICE, BOB, "Delivered");
    store
        .deliver(ALICE, &[BOB.to_owned(), ALICE.to_owned()], &raw)
        .await
        .unwrap();
    for mailbox in [BOB, ALICE] {
        let inbox = store.list(mailbox, "INBOX").await.unwrap();
        assert_eq!(inbox.len(), 1, "{mailbox}: {}", w.mail.logs());
        let body = store.fetch(&inbox[0].id).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("Subject: Delivered"), "{text}");
        assert!(
            text.contains("\r\n.leading dot line\r\n"),
            "dot-stuffing undone: {text}"
        );
    }
}

#[tokio::test]
async fn unknown_folder_is_reported_as_such() {
    let w = world().await;
    let store = w.mail.mail_store();
    let err = store.list(ALICE, "No Such Folder").await.unwrap_err();
    assert!(
        matches!(err, MailStoreError::NoSuchFolder(ref f) if f == "No Such Folder"),
        "{err:?}"
    );
    let err = store
        .append(ALICE, "No Such Folder", b"Subject: x\r\n\r\nx\r\n", false)
        .await
        .unwrap_err();
    assert!(matches!(err, MailStoreError::NoSuchFolder(_)), "{err:?}");
}

#[tokio::test]
async fn the_store_secret_is_judged_and_recorded_without_the_secret() {
    let w = world().await;
    let store = w.mail.mail_store();
    store.folders(ALICE).await.unwrap();
    let secret = store.config().store_secret.clone();
    let judged: Vec<_> = w
        .emulator()
        .requests()
        .into_iter()
        .filter(|r| r.surface == "imap-judge")
        .collect();
    assert!(!judged.is_empty());
    assert_eq!(judged[0].header("x-principal"), Some("store"));
    for r in w.emulator().requests() {
        let text = format!("{r:?}");
        assert!(!text.contains(&secret), "secret recorded in {text}");
    }
}

#[tokio::test]
async fn mail_to_other_domains_is_kept_in_a_mailbox_named_by_the_recipient() {
    let w = world().await;
    let store = w.mail.mail_store();
    let outside = "someone@elsewhere.example";
    store
        .deliver(
            ALICE,
            &[outside.to_owned()],
            &message(ALICE, outside, "Outbound"),
        )
        .await
        .unwrap();
    let inbox = store.list(outside, "INBOX").await.unwrap();
    assert_eq!(inbox.len(), 1, "{}", w.mail.logs());
    assert!(String::from_utf8_lossy(&inbox[0].header).contains("Subject: Outbound"));
    assert!(
        store.list(ALICE, "INBOX").await.unwrap().is_empty(),
        "no bounce"
    );
}
