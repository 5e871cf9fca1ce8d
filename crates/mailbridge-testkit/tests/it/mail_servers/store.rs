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

#[tokio::test]
async fn folders_can_be_created_renamed_and_deleted_with_any_name() {
    let w = world().await;
    let store = w.mail.mail_store();
    let created = store
        .create_folder(ALICE, "Entwürfe & 日本語")
        .await
        .unwrap();
    assert_eq!(
        (created.name.as_str(), created.total),
        ("Entwürfe & 日本語", 0)
    );
    assert!(matches!(
        store.create_folder(ALICE, "Entwürfe & 日本語").await,
        Err(MailStoreError::FolderExists(_))
    ));
    let raw = message(ALICE, BOB, "In a non-ASCII folder");
    let id = store
        .append(ALICE, "Entwürfe & 日本語", &raw, true)
        .await
        .unwrap();
    assert_eq!(store.fetch(&id).await.unwrap().unwrap(), raw);

    // Seen from IMAP in modified UTF-7.
    let mut c = w.imaps().await;
    let token = w.user_token(ALICE, &["IMAP.AccessAsUser.All"]);
    assert!(
        super::fixture::imap_xoauth2(&mut c, ALICE, &token)
            .await
            .starts_with("a1 OK")
    );
    let r = c.imap_command("a2", "LIST \"\" \"*\"").await.unwrap();
    assert!(
        r.iter()
            .any(|l| l.ends_with("\"Entw&APw-rfe &- &ZeVnLIqe-\"")),
        "{r:?}"
    );

    store.create_folder(ALICE, "INBOX/Projects").await.unwrap();
    assert!(
        store
            .rename_folder(ALICE, "INBOX/Projects", "Archive/Projects")
            .await
            .unwrap()
    );
    assert!(
        !store
            .rename_folder(ALICE, "INBOX/Projects", "X")
            .await
            .unwrap()
    );
    let names: Vec<String> = store
        .folders(ALICE)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(names.contains(&"Archive/Projects".to_owned()), "{names:?}");
    assert!(!names.contains(&"INBOX/Projects".to_owned()), "{names:?}");

    assert!(
        store
            .delete_folder(ALICE, "Entwürfe & 日本語")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_folder(ALICE, "Entwürfe & 日本語")
            .await
            .unwrap()
    );
    assert_eq!(store.fetch(&id).await.unwrap(), None);
}

#[tokio::test]
async fn flags_are_listed_and_set() {
    let w = world().await;
    let store = w.mail.mail_store();
    let id = store
        .append(ALICE, "INBOX", &message(BOB, ALICE, "Flag me"), false)
        .await
        .unwrap();
    assert!(store.set_flag(&id, "\\Flagged", true).await.unwrap());
    assert!(store.set_flag(&id, "$Forwarded", true).await.unwrap());
    let m = store.summary(&id).await.unwrap().unwrap();
    assert!(m.flags.contains(&"\\Flagged".to_owned()), "{:?}", m.flags);
    assert!(m.flags.contains(&"$Forwarded".to_owned()), "{:?}", m.flags);
    assert!(!m.seen);
    assert!(store.set_flag(&id, "\\Flagged", false).await.unwrap());
    let m = store.summary(&id).await.unwrap().unwrap();
    assert!(!m.flags.contains(&"\\Flagged".to_owned()), "{:?}", m.flags);
    assert!(store.set_flag(&id, "bad flag)", true).await.is_err());
}

#[tokio::test]
async fn concurrent_operations_on_one_mailbox() {
    let w = world().await;
    let store = w.mail.mail_store();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let raw = message(ALICE, BOB, &format!("Parallel {i}"));
                let id = store.append(ALICE, "INBOX", &raw, false).await.unwrap();
                assert_eq!(store.fetch(&id).await.unwrap().unwrap(), raw);
                store.list(ALICE, "INBOX").await.unwrap();
                id
            })
        })
        .collect();
    let mut uids = std::collections::BTreeSet::new();
    for t in tasks {
        assert!(uids.insert(t.await.unwrap().uid));
    }
    assert_eq!(store.list(ALICE, "INBOX").await.unwrap().len(), 12);
}
