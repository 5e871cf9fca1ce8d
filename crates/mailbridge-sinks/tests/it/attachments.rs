use std::fmt::Write as _;

use base64::Engine as _;
use mailbridge_sinks::attachments::{AttachmentsOptions, AttachmentsSink, SIDECAR};
use mailbridge_types::ErrorClass;

use crate::{delivery, names};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A message with the given attachments (name as written in the header, bytes).
fn message(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = String::from(
        "From: Alice <alice@example.com>\r\nTo: docs@example.com\r\nSubject: Scans\r\nMessage-ID: <scan-1@example.com>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n--sep\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThree documents.\r\n",
    );
    for (name, bytes) in parts {
        let _ = write!(
            m,
            "--sep\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8''{name}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(bytes)
        );
    }
    m.push_str("--sep--\r\n");
    m.into_bytes()
}

/// RFC 2231 percent-encoding of a UTF-8 name.
fn pct(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn hostile_and_non_ascii_names_are_saved_safe_and_unique() {
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sink = AttachmentsSink::open(out.path(), AttachmentsOptions::default())
        .await
        .unwrap();
    let long = format!("{}.pdf", "ü".repeat(200));
    let names_given = [
        "Faktura zażółć.pdf".to_owned(),
        "../../etc/passwd".to_owned(),
        "invoice\u{202e}fdp.exe".to_owned(),
        "passwd".to_owned(),
        "message.json".to_owned(),
        "CON".to_owned(),
        long,
    ];
    let contents: Vec<Vec<u8>> = (0..names_given.len())
        .map(|i| format!("document {i} \u{0}\u{1}").into_bytes())
        .collect();
    let encoded: Vec<String> = names_given.iter().map(|n| pct(n)).collect();
    let parts: Vec<(&str, &[u8])> = encoded
        .iter()
        .map(String::as_str)
        .zip(contents.iter().map(Vec::as_slice))
        .collect();
    let d = delivery(spool.path(), "7", &message(&parts));

    let accepted = sink.deliver(&d).await.unwrap();
    assert!(!accepted.already_there);
    // One directory per message, named by its key; nothing else visible.
    assert_eq!(names(out.path()), [d.key.to_string()]);
    let dir = sink.path_of(&d.key);
    let saved = names(&dir);
    assert_eq!(saved.len(), names_given.len() + 1, "{saved:?}");

    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(SIDECAR)).unwrap()).unwrap();
    assert_eq!(sidecar["key"], d.key.as_str());
    assert_eq!(sidecar["account"], "alice");
    assert_eq!(sidecar["folder"], "INBOX");
    assert_eq!(sidecar["source_id"], "7");
    assert_eq!(sidecar["message_id"], "scan-1@example.com");
    assert_eq!(sidecar["subject"], "Scans");
    assert_eq!(sidecar["from"][0]["name"], "Alice");
    assert_eq!(sidecar["from"][0]["address"], "alice@example.com");
    assert_eq!(sidecar["date"], "2026-12-07T10:00:00Z");
    let files = sidecar["files"].as_array().unwrap();
    assert_eq!(files.len(), names_given.len());
    let written: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(written[0], "Faktura zażółć.pdf");
    assert_eq!(written[1], "passwd");
    assert_eq!(written[2], "invoicefdp.exe");
    assert_eq!(written[3], "passwd (2)");
    assert_eq!(written[4], "message (2).json");
    assert_eq!(written[5], "_CON");
    assert!(
        written[6].len() <= 120 && written[6].ends_with("pdf"),
        "{}",
        written[6]
    );
    for (i, f) in files.iter().enumerate() {
        let name = f["file"].as_str().unwrap();
        assert!(!name.contains('/') && !name.contains("..") && !name.chars().any(char::is_control));
        // The bytes are the attachment's, exactly.
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            contents[i],
            "{name}"
        );
        assert_eq!(f["size"], contents[i].len());
    }
    // The original names are kept for people, without their control characters.
    assert_eq!(files[1]["original_name"], "../../etc/passwd");
    assert_eq!(files[2]["original_name"], "invoicefdp.exe");

    // Again: nothing added.
    let again = sink.deliver(&d).await.unwrap();
    assert!(again.already_there);
    assert_eq!(names(out.path()).len(), 1);
    assert_eq!(names(&dir).len(), names_given.len() + 1);
}

#[tokio::test]
async fn a_message_without_attachments_writes_nothing() {
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sink = AttachmentsSink::open(out.path(), AttachmentsOptions::default())
        .await
        .unwrap();
    let d = delivery(spool.path(), "8", b"Subject: hi\r\n\r\nno files\r\n");
    let accepted = sink.deliver(&d).await.unwrap();
    assert_eq!(accepted.location, "no attachments");
    assert!(names(out.path()).is_empty());
}

#[tokio::test]
async fn too_many_attachments_are_refused_whole() {
    let spool = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sink = AttachmentsSink::open(
        out.path(),
        AttachmentsOptions {
            max_attachments: 3,
            ..AttachmentsOptions::default()
        },
    )
    .await
    .unwrap();
    let parts: Vec<(&str, &[u8])> = vec![
        ("a.txt", b"a"),
        ("b.txt", b"b"),
        ("c.txt", b"c"),
        ("d.txt", b"d"),
    ];
    let d = delivery(spool.path(), "9", &message(&parts));
    let e = sink.deliver(&d).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::LimitExceeded);
    assert!(e.to_string().contains("more than 3 attachments"), "{e}");
    // Nothing half-written, visible or hidden.
    assert!(names(out.path()).is_empty());
    assert!(names(&out.path().join(mailbridge_sinks::folder::TMP_DIR)).is_empty());
}
