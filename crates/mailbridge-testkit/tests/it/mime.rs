//! Malformed MIME through every place the testkit parses MIME (Graph message JSON and
//! attachments, sendMail recipients, Bcc removal and attachment merging, EWS item XML):
//! truncated boundaries, bad transfer encodings, unknown charsets, 8-bit garbage, deep
//! nesting and header lines over 1 MB give a best-effort result, never a panic.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use mailbridge_testkit::ews::item::{BaseShape, BodyType, Shape, StoredItem, message_xml};
use mailbridge_testkit::graph::compose::{add_attachments, without_bcc};
use mailbridge_testkit::graph::json::{
    Attachment, BodyPreference, MessageMeta, attachments, message_json,
};
use mailbridge_testkit::graph::send::mime_recipients;
use mailbridge_testkit::mailstore::StoredMessageId;
use proptest::prelude::*;

fn meta() -> MessageMeta {
    MessageMeta {
        id: "AAMk".into(),
        parent_folder_id: "AQMk".into(),
        is_read: false,
        flagged: false,
        is_draft: false,
        received: time::macros::datetime!(2026-12-04 12:00 UTC),
        revision: 0,
    }
}

/// Every MIME reader of the testkit over `raw`; panics propagate.
fn read_everywhere(raw: &[u8]) {
    for pref in [None, Some(BodyPreference::Text), Some(BodyPreference::Html)] {
        if let Some(m) = message_json(raw, &meta(), pref) {
            assert!(m.contains_key("id"));
        }
    }
    let _ = attachments(raw);
    let _ = mime_recipients(raw);
    let _ = without_bcc(raw);
    let _ = add_attachments(
        raw,
        &[Attachment {
            name: "a.txt".into(),
            content_type: "text/plain".into(),
            is_inline: false,
            content_id: None,
            bytes: b"x".to_vec(),
        }],
    );
    let id = StoredMessageId {
        mailbox: "a@b.example".into(),
        folder: "INBOX".into(),
        uid_validity: 1,
        uid: 1,
    };
    for base in [
        BaseShape::IdOnly,
        BaseShape::Default,
        BaseShape::AllProperties,
    ] {
        let shape = Shape {
            base,
            additional: BTreeSet::new(),
            include_mime: true,
            body_type: BodyType::Best,
        };
        let item = StoredItem {
            id: &id,
            seen: false,
            received: meta().received,
            size: raw.len() as u64,
            raw,
            whole: true,
        };
        let xml = message_xml(&item, &shape, false);
        assert!(xml.starts_with("<t:Message"), "{xml}");
    }
}

#[test]
fn header_lines_over_a_megabyte() {
    let long = "a".repeat(1_100_000);
    for raw in [
        format!("Subject: {long}\r\nFrom: x@y.example\r\n\r\nbody\r\n"),
        format!("To: {}\r\n\r\nbody", "b@c.example, ".repeat(90_000)),
        format!("X-Long: {long}"),
        format!("Subject: =?utf-8?B?{long}?=\r\n\r\n"),
        format!(
            "Content-Type: multipart/mixed; boundary=\"{long}\"\r\n\r\n--{long}\r\n\r\nx\r\n--{long}--\r\n"
        ),
        format!("Subject: x\r\n{}\r\n\r\n", " folded".repeat(200_000)),
    ] {
        read_everywhere(raw.as_bytes());
    }
}

#[test]
fn deeply_nested_multiparts() {
    let depth = 5_000;
    let mut raw = String::new();
    for i in 0..depth {
        let _ = write!(
            raw,
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        );
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ninner\r\n");
    for i in (0..depth).rev() {
        let _ = write!(raw, "--b{i}--\r\n");
    }
    read_everywhere(raw.as_bytes());
    // Opened and never closed.
    let open = "Content-Type: message/rfc822\r\n\r\n".repeat(depth);
    read_everywhere(open.as_bytes());
}

/// A header with some malformation.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("From: =?utf-8?B?!!!notbase64?= <a@b.example>".to_owned()),
        Just("To: <<<@@@>>>, \"unterminated".to_owned()),
        Just("Subject: =?x-unknown-charset?Q?caf=E9?=".to_owned()),
        Just("Subject: =?utf-8?Q?=ZZ=?=".to_owned()),
        Just("Date: Mon, 99 Foo 99999 99:99:99 +9999".to_owned()),
        Just("Content-Type: text/plain; charset=\"x-no-such-charset\"".to_owned()),
        Just("Content-Type: text/html; charset=utf-7".to_owned()),
        Just("Content-Transfer-Encoding: base64".to_owned()),
        Just("Content-Transfer-Encoding: quoted-printable".to_owned()),
        Just("Content-Transfer-Encoding: x-uuencode".to_owned()),
        Just("Content-Disposition: attachment; filename*=utf-8''%ZZ%".to_owned()),
        Just("Content-Type: multipart/mixed".to_owned()),
        Just("Content-Type: multipart/mixed; boundary=\"\"".to_owned()),
        Just("Bcc: hidden@b.example".to_owned()),
        Just(" continuation without a header".to_owned()),
        Just("no colon at all".to_owned()),
        "[A-Za-z-]{1,12}: [ -~]{0,40}",
    ]
}

/// A body part that may be truncated or badly encoded.
fn part(boundary: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(header(), 0..4),
        prop_oneof![
            Just(b"SGVsbG8gd29ybGQ=".to_vec()),
            Just(b"!!!! not base64 ====".to_vec()),
            Just(b"=E9=ZZ=\r\nsoft=\r\nbreak=".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..200),
        ],
        prop_oneof![
            Just(format!("\r\n--{boundary}\r\n")),
            Just(format!("\r\n--{boundary}--\r\n")),
            Just(format!("\r\n--{boundary}")),
            Just(format!("\r\n--{}", &boundary[..boundary.len() / 2])),
            Just(String::new()),
        ],
    )
        .prop_map(|(headers, body, end)| {
            let mut out = Vec::new();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            out.extend_from_slice(end.as_bytes());
            out
        })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(header(), 0..8),
        prop_oneof![
            Just("Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"),
            Just("Content-Type: multipart/alternative; boundary=XYZ\r\n"),
            Just(""),
        ],
        proptest::collection::vec(part("XYZ"), 0..5),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(headers, multipart, parts, cut, truncate)| {
            let mut out = Vec::new();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(multipart.as_bytes());
            out.extend_from_slice(b"\r\n--XYZ\r\n");
            for p in parts {
                out.extend_from_slice(&p);
            }
            if truncate && !out.is_empty() {
                out.truncate(cut.index(out.len()));
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn malformed_messages_never_panic(raw in message()) {
        read_everywhere(&raw);
    }

    #[test]
    fn eight_bit_garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..2000)) {
        read_everywhere(&raw);
    }

    /// Bcc removal takes the Bcc recipients out of the header and keeps the body as
    /// it was (a header without its blank line gets one).
    #[test]
    fn bcc_removal_keeps_the_body(raw in message()) {
        let out = without_bcc(&raw);
        let after = mime_recipients(&out);
        prop_assert!(!after.iter().any(|r| r == "hidden@b.example"), "{:?}", after);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = raw.get(i + 4..).unwrap_or_default();
            prop_assert!(out.ends_with(body));
            let header = raw.get(..i).unwrap_or_default();
            // (A message that starts with its blank line has no header to keep.)
            if !raw.starts_with(b"\r\n") && !header.windows(4).any(|w| w.eq_ignore_ascii_case(b"bcc:")) {
                prop_assert_eq!(out, raw);
            }
        }
    }
}
