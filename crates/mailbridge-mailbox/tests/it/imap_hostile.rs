//! Downloading from an IMAP server that answers `UID FETCH` with other messages than
//! asked for, or leaves some out: nothing it was not asked for is written or counted,
//! and no checkpoint passes a UID that was asked for and not delivered (before, UIDs
//! 999 and 4242 were written, "fetched 2" counted and `last_uid 3` stored, so UIDs 1-3
//! were skipped for ever).

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::time::Duration;

use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::download::{DownloadOptions, download};
use mailbridge_mailbox::mailbox::{Checkpoint, ImapMailbox};
use mailbridge_testkit::hostile::imap::{ImapAnswer, serve};
use secrecy::SecretString;

/// A folder of UIDs 1, 2, 3 (UIDVALIDITY 5) whose server answers every `UID FETCH`
/// with the messages `delivered` (UID, whether the UID comes before the body).
async fn server(delivered: &'static [(u32, bool)]) -> u16 {
    let (port, _) = serve(move |tag, command| {
        let upper = command.to_ascii_uppercase();
        let mut answer = String::new();
        if upper.starts_with("CAPABILITY") {
            answer.push_str("* CAPABILITY IMAP4rev1\r\n");
        } else if upper.starts_with("SELECT") {
            answer.push_str("* 3 EXISTS\r\n* OK [UIDVALIDITY 5] v\r\n* OK [UIDNEXT 4] n\r\n");
        } else if upper.starts_with("UID SEARCH") {
            answer.push_str("* SEARCH 1 2 3\r\n");
        } else if upper.starts_with("UID FETCH") {
            for (i, (uid, first)) in delivered.iter().enumerate() {
                let body = format!("Subject: message {uid}\r\n\r\nbody\r\n");
                let n = i + 1;
                let len = body.len();
                if *first {
                    write!(
                        answer,
                        "* {n} FETCH (UID {uid} BODY[] {{{len}}}\r\n{body})\r\n"
                    )
                    .unwrap();
                } else {
                    write!(
                        answer,
                        "* {n} FETCH (BODY[] {{{len}}}\r\n{body} UID {uid})\r\n"
                    )
                    .unwrap();
                }
            }
        }
        write!(answer, "{tag} OK done\r\n").unwrap();
        ImapAnswer::text(answer)
    })
    .await;
    port
}

/// Downloads from a server delivering `delivered`, in batches of `batch`; the summary's
/// message count and checkpoint, the durable checkpoints handed out, and the files.
async fn run(
    delivered: &'static [(u32, bool)],
    batch: usize,
) -> (u64, Checkpoint, Vec<Checkpoint>, Vec<String>) {
    let port = server(delivered).await;
    let mut config = ImapConfig::new("127.0.0.1", port, TlsMode::None);
    config.timeout = Duration::from_secs(5);
    let mut client = ImapClient::connect(&config).await.unwrap();
    client
        .authenticate(&Credentials::Login {
            user: "u".into(),
            password: SecretString::from("p"),
        })
        .await
        .unwrap();
    let mut mailbox = ImapMailbox::new(client);
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("INBOX");
    let mut durable = Vec::new();
    let options = DownloadOptions {
        batch,
        ..DownloadOptions::default()
    };
    let summary = download(
        &mut mailbox,
        "INBOX",
        &Checkpoint::Start,
        &maildir,
        &options,
        &mut (),
        |p| {
            if let Some(d) = &p.durable {
                durable.push(d.clone());
            }
            ControlFlow::Continue(())
        },
    )
    .await
    .unwrap();
    let mut files: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (summary.messages, summary.checkpoint, durable, files)
}

fn imap(last_uid: u32) -> Checkpoint {
    Checkpoint::Imap {
        uid_validity: 5,
        last_uid,
    }
}

#[tokio::test]
async fn answers_for_uids_not_asked_for_are_not_written_and_skip_nothing() {
    let (messages, checkpoint, durable, files) = run(&[(999, true), (4242, false)], 500).await;
    assert_eq!(messages, 0, "nothing asked for was fetched");
    assert!(files.is_empty(), "{files:?}");
    assert_eq!(checkpoint, imap(0), "UIDs 1-3 are asked for again next run");
    assert_eq!(durable, [imap(0)]);
}

#[tokio::test]
async fn the_checkpoint_stops_before_the_first_message_not_delivered() {
    // 2 is missing (expunged meanwhile, or a broken server); 7 was not asked for.
    let (messages, checkpoint, durable, files) =
        run(&[(1, true), (7, true), (3, false)], 500).await;
    assert_eq!(messages, 2);
    assert_eq!(files, ["imap-5-1", "imap-5-3"]);
    assert_eq!(checkpoint, imap(1));
    assert_eq!(durable, [imap(1)]);
    // In batches of one: 1, then (2 missing) 1, then 1 again.
    let (_, checkpoint, durable, _) = run(&[(1, true), (3, true)], 1).await;
    assert_eq!(checkpoint, imap(1));
    assert!(durable.iter().all(|d| *d == imap(1)), "{durable:?}");
    // All delivered: the listing's checkpoint.
    let (messages, checkpoint, _, _) = run(&[(1, true), (2, false), (3, true)], 500).await;
    assert_eq!((messages, checkpoint), (3, imap(3)));
}
