//! MIME -> Graph `message` JSON (`microsoft-protocols.md` §3.1), parsed with
//! mail-parser, plus `$select` projection and the `fileAttachment` resource.
//!
//! <https://learn.microsoft.com/graph/api/resources/message>

use base64::Engine;
use mail_parser::{Address, MessageParser, MessagePart, MimeHeaders, PartType};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What the store knows about a message beyond its MIME.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    /// Graph id.
    pub id: String,
    /// Graph id of the folder.
    pub parent_folder_id: String,
    pub is_read: bool,
    /// IMAP `\Flagged` (Outlook's follow-up flag).
    pub flagged: bool,
    pub is_draft: bool,
    /// INTERNALDATE.
    pub received: OffsetDateTime,
    /// Changes whenever the stored item is rewritten (its UID), for the change key.
    pub revision: u32,
}

/// Which body form the caller asked for with `Prefer: outlook.body-content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPreference {
    Text,
    Html,
}

/// A Graph date-time: UTC, seconds precision, `Z`.
pub fn graph_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0);
    t.unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn recipient(name: Option<&str>, address: Option<&str>) -> Value {
    let address = address.unwrap_or_default();
    let name = name.filter(|n| !n.trim().is_empty()).unwrap_or(address);
    json!({"emailAddress": {"name": name, "address": address}})
}

fn recipients(address: Option<&Address<'_>>) -> Vec<Value> {
    address.map_or_else(Vec::new, |a| {
        a.iter()
            .filter(|addr| addr.address.is_some())
            .map(|addr| recipient(addr.name.as_deref(), addr.address.as_deref()))
            .collect()
    })
}

/// The `bodyPreview`: the first 255 characters of the text, whitespace collapsed.
fn preview(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(255).collect()
}

fn importance(message: &mail_parser::Message<'_>) -> &'static str {
    let value = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    match value("Importance").as_deref() {
        Some("high") => return "high",
        Some("low") => return "low",
        _ => {}
    }
    match value("X-Priority")
        .as_deref()
        .and_then(|v| v.chars().next())
    {
        Some('1' | '2') => "high",
        Some('4' | '5') => "low",
        _ => "normal",
    }
}

/// Whether a MIME part is an inline part (shown in the body) rather than an attachment.
fn is_inline(part: &MessagePart<'_>) -> bool {
    match part.content_disposition() {
        Some(cd) => cd.ctype().eq_ignore_ascii_case("inline"),
        None => part.content_id().is_some(),
    }
}

/// One attachment of a message, as Graph's `fileAttachment` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub is_inline: bool,
    pub content_id: Option<String>,
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// The `fileAttachment` JSON (with `contentBytes`).
    pub fn to_json(&self, id: &str, last_modified: OffsetDateTime) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "@odata.mediaContentType": self.content_type,
            "id": id,
            "lastModifiedDateTime": graph_date(last_modified),
            "name": self.name,
            "contentType": self.content_type,
            "size": self.bytes.len(),
            "isInline": self.is_inline,
            "contentId": self.content_id,
            "contentLocation": null,
            "contentBytes": base64::engine::general_purpose::STANDARD.encode(&self.bytes),
        })
    }
}

fn content_type_of(part: &MessagePart<'_>) -> String {
    part.content_type().map_or_else(
        || "application/octet-stream".to_owned(),
        |ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
    )
}

/// The attachments of a raw message, in MIME order.
pub fn attachments(raw: &[u8]) -> Vec<Attachment> {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    message
        .attachments()
        .map(|part| {
            let content_type = content_type_of(part);
            let name = part
                .attachment_name()
                .map(str::to_owned)
                .or_else(|| {
                    part.message()
                        .and_then(|m| m.subject())
                        .map(|s| format!("{s}.eml"))
                })
                .unwrap_or_else(|| "attachment".to_owned());
            let bytes = match &part.body {
                PartType::Message(m) => m.raw_message().to_vec(),
                _ => part.contents().to_vec(),
            };
            Attachment {
                name,
                content_type,
                is_inline: is_inline(part),
                content_id: part
                    .content_id()
                    .map(|c| c.trim_matches(['<', '>']).to_owned()),
                bytes,
            }
        })
        .collect()
}

/// The full Graph `message` JSON of a raw MIME message, or `None` when the bytes are
/// not a message at all.
pub fn message_json(
    raw: &[u8],
    meta: &MessageMeta,
    body_preference: Option<BodyPreference>,
) -> Option<Map<String, Value>> {
    let message = MessageParser::default().parse(raw)?;
    let received = graph_date(meta.received);
    let sent = message
        .date()
        .and_then(|d| OffsetDateTime::from_unix_timestamp(d.to_timestamp()).ok())
        .map_or_else(|| received.clone(), graph_date);
    let text = message.body_text(0).map(std::borrow::Cow::into_owned);
    let has_html = message.html_body_count() > 0
        && message
            .html_part(0)
            .is_some_and(|p| matches!(p.body, PartType::Html(_)));
    let (content_type, content) = match (body_preference, has_html) {
        (Some(BodyPreference::Text), _) | (None, false) => {
            ("text", text.clone().unwrap_or_default())
        }
        (Some(BodyPreference::Html) | None, _) => (
            "html",
            message
                .body_html(0)
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default(),
        ),
    };
    let from = recipients(message.from());
    let sender = {
        let s = recipients(message.sender());
        if s.is_empty() { from.clone() } else { s }
    };
    let has_attachments = message.attachments().any(|p| !is_inline(p));
    let internet_message_id = message.message_id().map(|id| format!("<{id}>"));
    let thread_root = message
        .references()
        .as_text_list()
        .and_then(|l| l.first().map(ToString::to_string))
        .or_else(|| message.references().as_text().map(str::to_owned))
        .or_else(|| message.message_id().map(str::to_owned))
        .unwrap_or_else(|| message.thread_name().unwrap_or_default().to_owned());
    let conversation_id = format!(
        "AAQkAD{}",
        base64::engine::general_purpose::URL_SAFE.encode(
            crate::crypto::sha256(thread_root.as_bytes())
                .get(..24)
                .unwrap_or_default()
        )
    );
    let change_key = super::ids::change_key(&[
        meta.id.as_bytes(),
        if meta.is_read { b"1" } else { b"0" },
        if meta.flagged { b"F" } else { b"-" },
        &meta.revision.to_be_bytes(),
    ]);
    let web_link = format!(
        "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
        percent_encoding::utf8_percent_encode(&meta.id, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("@odata.etag", json!(format!("W/\"{change_key}\"")));
    put("id", json!(meta.id));
    put("createdDateTime", json!(received));
    put("lastModifiedDateTime", json!(received));
    put("changeKey", json!(change_key));
    put("categories", json!([]));
    put("receivedDateTime", json!(received));
    put("sentDateTime", json!(sent));
    put("hasAttachments", json!(has_attachments));
    put("internetMessageId", json!(internet_message_id));
    put("subject", json!(message.subject().unwrap_or_default()));
    put(
        "bodyPreview",
        json!(preview(text.as_deref().unwrap_or_default())),
    );
    put("importance", json!(importance(&message)));
    put("parentFolderId", json!(meta.parent_folder_id));
    put("conversationId", json!(conversation_id));
    put("isDeliveryReceiptRequested", json!(false));
    put(
        "isReadReceiptRequested",
        json!(message.header_raw("Disposition-Notification-To").is_some()),
    );
    put("isRead", json!(meta.is_read));
    put("isDraft", json!(meta.is_draft));
    put("webLink", json!(web_link));
    put("inferenceClassification", json!("focused"));
    put(
        "body",
        json!({"contentType": content_type, "content": content}),
    );
    put("sender", sender.first().cloned().unwrap_or(Value::Null));
    put("from", from.first().cloned().unwrap_or(Value::Null));
    put("toRecipients", json!(recipients(message.to())));
    put("ccRecipients", json!(recipients(message.cc())));
    put("bccRecipients", json!(recipients(message.bcc())));
    put("replyTo", json!(recipients(message.reply_to())));
    put(
        "flag",
        json!({"flagStatus": if meta.flagged { "flagged" } else { "notFlagged" }}),
    );
    let headers: Vec<Value> = message
        .headers_raw()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            json!({"name": name, "value": value})
        })
        .collect();
    put("internetMessageHeaders", json!(headers));
    Some(m)
}

/// Every property of Graph's `message` type (`$select` may name any of them).
pub const MESSAGE_PROPERTIES: [&str; 35] = [
    "attachments",
    "bccRecipients",
    "body",
    "bodyPreview",
    "categories",
    "ccRecipients",
    "changeKey",
    "conversationId",
    "conversationIndex",
    "createdDateTime",
    "extensions",
    "flag",
    "from",
    "hasAttachments",
    "id",
    "importance",
    "inferenceClassification",
    "internetMessageHeaders",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isDraft",
    "isRead",
    "isReadReceiptRequested",
    "lastModifiedDateTime",
    "multiValueExtendedProperties",
    "parentFolderId",
    "receivedDateTime",
    "replyTo",
    "sender",
    "sentDateTime",
    "singleValueExtendedProperties",
    "subject",
    "toRecipients",
    "uniqueBody",
    "webLink",
];

/// The first `$select`ed name that is not a `message` property.
pub fn unknown_property(select: &[String]) -> Option<&str> {
    select
        .iter()
        .map(String::as_str)
        .find(|f| !MESSAGE_PROPERTIES.iter().any(|p| p.eq_ignore_ascii_case(f)))
}

/// Keeps only the `$select`ed properties (plus `id` and `@odata.etag`, which Graph always
/// sends). Names match case-insensitively, as Graph's do.
///
/// `internetMessageHeaders` is only sent when selected, as Graph does.
pub fn select(mut full: Map<String, Value>, select: Option<&[String]>) -> Map<String, Value> {
    let Some(fields) = select else {
        full.remove("internetMessageHeaders");
        return full;
    };
    full.retain(|k, _| {
        k == "id" || k == "@odata.etag" || fields.iter().any(|f| f.eq_ignore_ascii_case(k))
    });
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MessageMeta {
        MessageMeta {
            id: "AAMkADtest".into(),
            parent_folder_id: "AQMkADinbox".into(),
            is_read: false,
            flagged: false,
            is_draft: false,
            received: time::macros::datetime!(2024-05-14 09:21:37.5 UTC),
            revision: 0,
        }
    }

    const PLAIN: &[u8] = b"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.org>\r\n\
To: Alice <alice@contoso.example>, bob@contoso.example\r\n\
Cc: \"Carol C.\" <carol@contoso.example>\r\n\
Reply-To: replies@example.org\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n\
Date: Tue, 14 May 2024 11:20:00 +0200\r\n\
Message-ID: <abc123@example.org>\r\n\
Importance: High\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hallo   Alice,\r\n\r\nbis bald.\r\n";

    #[test]
    fn plain_message_maps_to_graph_properties() {
        let m = message_json(PLAIN, &meta(), None).unwrap();
        assert_eq!(m["subject"], "Grüße aus Köln");
        assert_eq!(
            m["from"],
            json!({"emailAddress": {"name": "Jürgen Müller", "address": "juergen@example.org"}})
        );
        assert_eq!(m["sender"], m["from"]);
        assert_eq!(
            m["toRecipients"],
            json!([
                {"emailAddress": {"name": "Alice", "address": "alice@contoso.example"}},
                {"emailAddress": {"name": "bob@contoso.example", "address": "bob@contoso.example"}}
            ])
        );
        assert_eq!(m["ccRecipients"][0]["emailAddress"]["name"], "Carol C.");
        assert_eq!(m["bccRecipients"], json!([]));
        assert_eq!(
            m["replyTo"][0]["emailAddress"]["address"],
            "replies@example.org"
        );
        assert_eq!(m["receivedDateTime"], "2024-05-14T09:21:37Z");
        assert_eq!(m["sentDateTime"], "2024-05-14T09:20:00Z");
        assert_eq!(m["internetMessageId"], "<abc123@example.org>");
        assert_eq!(m["importance"], "high");
        assert_eq!(m["bodyPreview"], "Hallo Alice, bis bald.");
        assert_eq!(m["body"]["contentType"], "text");
        assert!(m["body"]["content"].as_str().unwrap().contains("bis bald."));
        assert_eq!(m["hasAttachments"], false);
        assert_eq!(m["isRead"], false);
        assert_eq!(m["flag"]["flagStatus"], "notFlagged");
        assert!(m["@odata.etag"].as_str().unwrap().starts_with("W/\""));
        assert!(m["conversationId"].as_str().unwrap().starts_with("AAQkAD"));
    }

    const MIXED: &[u8] = b"From: a@example.org\r\n\
To: b@example.org\r\n\
Subject: report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
See attached.\r\n\
--b2\r\n\
Content-Type: text/html; charset=us-ascii\r\n\
\r\n\
<p>See <b>attached</b>.</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename*=utf-8''Bericht%20%C3%A4.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    #[test]
    fn html_is_the_default_body_and_text_is_served_when_preferred() {
        let m = message_json(MIXED, &meta(), None).unwrap();
        assert_eq!(m["body"]["contentType"], "html");
        assert!(
            m["body"]["content"]
                .as_str()
                .unwrap()
                .contains("<b>attached</b>")
        );
        assert_eq!(m["hasAttachments"], true);
        let t = message_json(MIXED, &meta(), Some(BodyPreference::Text)).unwrap();
        assert_eq!(t["body"]["contentType"], "text");
        assert_eq!(t["bodyPreview"], "See attached.");
    }

    #[test]
    fn attachments_are_decoded_with_their_names() {
        let a = attachments(MIXED);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, "Bericht ä.pdf");
        assert_eq!(a[0].content_type, "application/pdf");
        assert_eq!(a[0].bytes, b"%PDF-1.4\n");
        assert!(!a[0].is_inline);
        let j = a[0].to_json("AAMkADatt", time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(j["contentBytes"], "JVBERi0xLjQK");
        assert_eq!(j["size"], 9);
    }

    #[test]
    fn select_keeps_id_and_etag() {
        let m = message_json(PLAIN, &meta(), None).unwrap();
        let s = select(
            m.clone(),
            Some(&["subject".to_owned(), "ISREAD".to_owned()]),
        );
        let mut keys: Vec<_> = s.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["@odata.etag", "id", "isRead", "subject"]);
        assert!(!select(m.clone(), None).contains_key("internetMessageHeaders"));
        let h = select(m, Some(&["internetMessageHeaders".to_owned()]));
        let headers = h["internetMessageHeaders"].as_array().unwrap();
        assert!(
            headers.contains(&json!({"name": "Importance", "value": "High"})),
            "{headers:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = message_json(&raw, &meta(), Some(BodyPreference::Text));
            let _ = attachments(&raw);
            let _ = crate::graph::compose::without_bcc(&raw);
            let _ = crate::graph::compose::add_attachments(&raw, &[Attachment {
                name: "a".into(),
                content_type: "text/plain".into(),
                is_inline: false,
                content_id: None,
                bytes: raw.clone(),
            }]);
        }

        #[test]
        fn header_shaped_input_never_panics(raw in "(From|To|Cc|Subject|Content-Type|Date): [ -~]{0,40}\r\n(\r\n)?[ -~]{0,40}") {
            let _ = message_json(raw.as_bytes(), &meta(), None);
            let _ = crate::graph::send::mime_recipients(raw.as_bytes());
        }
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            &b""[..],
            b"\xff\xfe",
            b"Subject: x",
            b"\r\n\r\n--",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
        ] {
            let _ = message_json(raw, &meta(), None);
            let _ = attachments(raw);
        }
    }
}
