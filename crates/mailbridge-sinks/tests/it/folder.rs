use mailbridge_sinks::folder::{FolderSink, TMP_DIR};
use mailbridge_types::ErrorClass;

use crate::{delivery, names};

#[tokio::test]
async fn a_message_is_written_once_under_its_key() {
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sink = FolderSink::open(out.path()).await.unwrap();
    let mime = b"Subject: one\r\n\r\nbody\r\n";
    let d = delivery(spool.path(), "1", mime);

    let first = sink.deliver(&d).await.unwrap();
    assert!(!first.already_there);
    assert_eq!(names(out.path()), [format!("{}.eml", d.key)]);
    assert_eq!(std::fs::read(sink.path_of(&d.key)).unwrap(), mime);

    // The same message again (a crash before the checkpoint, a resync): nothing added,
    // nothing overwritten, even when the spool now holds other bytes.
    std::fs::write(&d.spool, b"Subject: changed\r\n\r\n").unwrap();
    let second = sink.deliver(&d).await.unwrap();
    assert!(second.already_there);
    assert_eq!(names(out.path()).len(), 1);
    assert_eq!(std::fs::read(sink.path_of(&d.key)).unwrap(), mime);
    // No temporary file stays behind.
    assert!(names(&out.path().join(TMP_DIR)).is_empty());
}

#[tokio::test]
async fn what_a_killed_run_left_is_removed_and_never_shown() {
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let tmp = out.path().join(TMP_DIR);
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("0123.4567.half"), b"Subject: half").unwrap();
    let sink = FolderSink::open(out.path()).await.unwrap();
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_none());
    let d = delivery(spool.path(), "2", b"Subject: two\r\n\r\n");
    sink.deliver(&d).await.unwrap();
    assert_eq!(names(out.path()), [format!("{}.eml", d.key)]);
}

#[tokio::test]
async fn many_messages_at_once_each_land_exactly_once() {
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sink = FolderSink::open(out.path()).await.unwrap();
    let deliveries: Vec<_> = (0..50)
        .map(|i| {
            delivery(
                spool.path(),
                &i.to_string(),
                format!("Subject: {i}\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    // Every message twice, concurrently: 50 files, each with its own bytes.
    let mut tasks = Vec::new();
    for d in deliveries.iter().chain(&deliveries) {
        let d = d.clone();
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move { sink.deliver(&d).await.unwrap() }));
    }
    let mut added = 0;
    for t in tasks {
        if !t.await.unwrap().already_there {
            added += 1;
        }
    }
    assert_eq!(added, 50);
    assert_eq!(names(out.path()).len(), 50);
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(
            std::fs::read(sink.path_of(&d.key)).unwrap(),
            format!("Subject: {i}\r\n\r\n").as_bytes()
        );
    }
}

#[tokio::test]
async fn an_unusable_folder_is_named_as_such() {
    let out = tempfile::tempdir().unwrap();
    let sink = FolderSink::open(out.path()).await.unwrap();
    // Something else took the temporary directory's place (root writes anywhere, so
    // permissions would not stop this test's user).
    std::fs::remove_dir(out.path().join(TMP_DIR)).unwrap();
    std::fs::write(out.path().join(TMP_DIR), b"not a directory").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(spool.path(), "3", b"Subject: x\r\n\r\n");
    let e = sink.deliver(&d).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Misconfigured, "{e:?}");
    assert!(e.to_string().contains("writing the message"), "{e}");
    assert!(!sink.path_of(&d.key).exists());
}

#[tokio::test]
async fn a_batch_shows_nothing_until_committed_then_each_message_once() {
    use mailbridge_sinks::folder::Batch;
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sink = FolderSink::open(out.path()).await.unwrap();
    let deliveries: Vec<_> = (0..20)
        .map(|i| {
            delivery(
                spool.path(),
                &i.to_string(),
                format!("Subject: {i}\r\n\r\n").as_bytes(),
            )
        })
        .collect();

    // Staged, then the run dies before the commit: nothing in the folder, nothing
    // left in its temporary directory.
    let mut batch = Batch::new();
    for d in &deliveries {
        assert!(!sink.stage(d, &mut batch).await.unwrap().already_there);
    }
    assert_eq!(batch.len(), 20);
    assert!(names(out.path()).is_empty());
    drop(batch);
    assert!(names(&out.path().join(TMP_DIR)).is_empty());

    // Staged (one of them twice) and committed: each message once, with its bytes.
    let mut batch = Batch::new();
    for d in deliveries.iter().chain(&deliveries[..1]) {
        sink.stage(d, &mut batch).await.unwrap();
    }
    assert_eq!(batch.len(), 20);
    batch.commit().await.unwrap();
    assert!(batch.is_empty());
    assert_eq!(names(out.path()).len(), 20);
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(
            std::fs::read(sink.path_of(&d.key)).unwrap(),
            format!("Subject: {i}\r\n\r\n").as_bytes()
        );
    }

    // Delivered again (a crash before the checkpoint): found there, nothing staged.
    let mut batch = Batch::new();
    for d in &deliveries {
        assert!(sink.stage(d, &mut batch).await.unwrap().already_there);
    }
    assert!(batch.is_empty());
    batch.commit().await.unwrap();
    assert_eq!(names(out.path()).len(), 20);
    assert!(names(&out.path().join(TMP_DIR)).is_empty());
}

#[tokio::test]
async fn a_maildir_gets_each_message_once_in_new_and_keeps_what_others_left_in_tmp() {
    use mailbridge_sinks::folder::Batch;
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Another program's delivery in progress, and one of ours a killed run left.
    std::fs::create_dir_all(out.path().join("tmp")).unwrap();
    std::fs::write(out.path().join("tmp/1700000000.M1P2.host"), b"theirs").unwrap();
    std::fs::write(out.path().join("tmp/.mailbridge-0123.half"), b"ours").unwrap();
    let sink = FolderSink::open_maildir(out.path()).await.unwrap();
    assert_eq!(names(out.path()), ["cur", "new", "tmp"]);
    assert_eq!(
        names(&out.path().join("tmp")),
        ["1700000000.M1P2.host"],
        "only this sink's own leftovers go"
    );

    let mime = b"Subject: one\r\n\r\nbody\r\n";
    let d = delivery(spool.path(), "1", mime);
    assert!(!sink.deliver(&d).await.unwrap().already_there);
    assert_eq!(
        sink.path_of(&d.key),
        out.path().join("new").join(d.key.to_string())
    );
    assert_eq!(names(&out.path().join("new")), [d.key.to_string()]);
    assert_eq!(std::fs::read(sink.path_of(&d.key)).unwrap(), mime);
    // Again: nothing added, nothing overwritten.
    std::fs::write(&d.spool, b"Subject: changed\r\n\r\n").unwrap();
    assert!(sink.deliver(&d).await.unwrap().already_there);
    assert_eq!(names(&out.path().join("new")).len(), 1);
    assert_eq!(std::fs::read(sink.path_of(&d.key)).unwrap(), mime);

    // A watcher's batch: placed in new/ together, each once.
    let deliveries: Vec<_> = (2..12)
        .map(|i| {
            delivery(
                spool.path(),
                &i.to_string(),
                format!("Subject: {i}\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    let mut batch = Batch::new();
    for d in deliveries.iter().chain(&deliveries[..2]) {
        sink.stage(d, &mut batch).await.unwrap();
    }
    assert_eq!(
        names(&out.path().join("new")).len(),
        1,
        "nothing before the commit"
    );
    batch.commit().await.unwrap();
    assert_eq!(names(&out.path().join("new")).len(), 11);
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(
            std::fs::read(sink.path_of(&d.key)).unwrap(),
            format!("Subject: {}\r\n\r\n", i + 2).as_bytes()
        );
    }
    // None of ours stays in tmp; the other program's file is untouched.
    assert_eq!(names(&out.path().join("tmp")), ["1700000000.M1P2.host"]);
    let hidden: Vec<_> = std::fs::read_dir(out.path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mailbridge-"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[tokio::test]
async fn a_batch_takes_the_spool_file_itself_once_and_copies_it_elsewhere() {
    use std::os::unix::fs::MetadataExt as _;

    use mailbridge_sinks::folder::Batch;
    let spool = tempfile::tempdir().unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        FolderSink::open(one.path()).await.unwrap(),
        FolderSink::open(two.path()).await.unwrap(),
    );
    let mime = b"Subject: linked\r\n\r\nbody\r\n";
    let d = delivery(spool.path(), "7", mime);
    let mut batch = Batch::new();
    a.stage(&d, &mut batch).await.unwrap();
    b.stage(&d, &mut batch).await.unwrap();
    batch.commit().await.unwrap();
    let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    // The first folder got the spool file itself (same file system: a link, no
    // copy); the second a copy of its own, so the two never share a file.
    assert_eq!(inode(&a.path_of(&d.key)), inode(&d.spool));
    assert_ne!(inode(&b.path_of(&d.key)), inode(&d.spool));
    assert_eq!(std::fs::read(b.path_of(&d.key)).unwrap(), mime);
    // Removing the spool (the watcher does after the commit) leaves both in place.
    std::fs::remove_file(&d.spool).unwrap();
    assert_eq!(std::fs::read(a.path_of(&d.key)).unwrap(), mime);
    assert!(names(&one.path().join(TMP_DIR)).is_empty());
    assert!(names(&two.path().join(TMP_DIR)).is_empty());
}

#[tokio::test]
async fn a_spool_on_another_file_system_is_copied_into_place() {
    use std::os::unix::fs::MetadataExt as _;

    use mailbridge_sinks::folder::Batch;
    // /dev/shm is a tmpfs on Debian; the folder is on the disk.
    let spool = tempfile::tempdir_in("/dev/shm").unwrap();
    let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let device = |p: &std::path::Path| std::fs::metadata(p).unwrap().dev();
    assert_ne!(
        device(spool.path()),
        device(out.path()),
        "the test needs the spool and the folder on two file systems"
    );
    let sink = FolderSink::open(out.path()).await.unwrap();
    let mime = b"Subject: copied\r\n\r\nbody\r\n";
    let d = delivery(spool.path(), "8", mime);
    let mut batch = Batch::new();
    sink.stage(&d, &mut batch).await.unwrap();
    batch.commit().await.unwrap();
    assert_eq!(std::fs::read(sink.path_of(&d.key)).unwrap(), mime);
    assert_eq!(names(out.path()), [format!("{}.eml", d.key)]);
    assert!(names(&out.path().join(TMP_DIR)).is_empty());
}
