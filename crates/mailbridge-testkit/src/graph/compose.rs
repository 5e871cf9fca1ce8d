//! Graph `message` JSON -> RFC 5322 MIME, for `sendMail`, drafts (`POST messages`) and
//! sending drafts with the attachments added through Graph.
//!
//! Non-ASCII subjects and names are RFC 2047 encoded, attachment names RFC 2231
//! encoded, bodies and attachments base64 encoded.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::json::Attachment;

/// `{"emailAddress": {"name", "address"}}`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Recipient {
    #[serde(rename = "emailAddress", default)]
    pub email_address: EmailAddress,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct EmailAddress {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ItemBody {
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content: String,
}

/// A `fileAttachment` in a request body.
#[derive(Debug, Clone, Deserialize)]
pub struct FileAttachment {
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
    #[serde(rename = "contentBytes", default)]
    pub content_bytes: Option<String>,
    #[serde(rename = "isInline", default)]
    pub is_inline: bool,
    #[serde(rename = "contentId", default)]
    pub content_id: Option<String>,
}

impl FileAttachment {
    /// The decoded attachment; `None` when `contentBytes` is missing or not base64 or the
    /// type is not a file attachment.
    pub fn decode(&self) -> Option<Attachment> {
        if let Some(t) = &self.odata_type
            && !t.eq_ignore_ascii_case("#microsoft.graph.fileAttachment")
        {
            return None;
        }
        let bytes = STANDARD
            .decode(self.content_bytes.as_deref()?.trim())
            .ok()?;
        Some(Attachment {
            name: self.name.clone().unwrap_or_else(|| "attachment".to_owned()),
            content_type: self
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            is_inline: self.is_inline,
            content_id: self.content_id.clone(),
            bytes,
        })
    }
}

/// The writable parts of a Graph `message` that the emulator turns into MIME.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct OutgoingMessage {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<ItemBody>,
    #[serde(rename = "toRecipients", default)]
    pub to: Vec<Recipient>,
    #[serde(rename = "ccRecipients", default)]
    pub cc: Vec<Recipient>,
    #[serde(rename = "bccRecipients", default)]
    pub bcc: Vec<Recipient>,
    #[serde(rename = "replyTo", default)]
    pub reply_to: Vec<Recipient>,
    #[serde(default)]
    pub importance: Option<String>,
    #[serde(default)]
    pub attachments: Vec<FileAttachment>,
    #[serde(rename = "internetMessageHeaders", default)]
    pub internet_message_headers: Vec<Value>,
}

/// Graph takes at most this many `internetMessageHeaders` on a message.
pub const MAX_INTERNET_MESSAGE_HEADERS: usize = 5;

impl OutgoingMessage {
    /// Graph's 400 for more than five `internetMessageHeaders`, word for word.
    pub fn check_headers(&self) -> Result<(), super::errors::GraphError> {
        if self.internet_message_headers.len() > MAX_INTERNET_MESSAGE_HEADERS {
            return Err(super::errors::GraphError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "InvalidInternetMessageHeaderCollection",
                "Maximum number of headers in one message should be less than or equal to 5.",
            ));
        }
        Ok(())
    }

    /// Every recipient address (To, Cc, Bcc), for delivery.
    pub fn envelope_recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|r| r.email_address.address.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    }
}

/// An RFC 2047 encoded word when `text` is not plain ASCII.
pub fn encode_word(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(text.as_bytes()))
    }
}

fn mailbox(name: Option<&str>, address: &str) -> String {
    match name
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != address)
    {
        Some(n) if n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') => {
            format!("{n} <{address}>")
        }
        Some(n) if n.is_ascii() => {
            format!(
                "\"{}\" <{address}>",
                n.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }
        Some(n) => format!("{} <{address}>", encode_word(n)),
        None => address.to_owned(),
    }
}

fn address_list(list: &[Recipient]) -> Option<String> {
    let items: Vec<String> = list
        .iter()
        .filter(|r| !r.email_address.address.trim().is_empty())
        .map(|r| {
            mailbox(
                r.email_address.name.as_deref(),
                r.email_address.address.trim(),
            )
        })
        .collect();
    (!items.is_empty()).then(|| items.join(", "))
}

fn wrapped_base64(bytes: &[u8]) -> String {
    let encoded = STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// Strips CR and LF from a header value.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn attachment_part(out: &mut String, a: &Attachment) {
    let name = one_line(&a.name);
    let (type_param, disposition_param) = if name.is_ascii() && !name.contains('"') {
        (format!("name=\"{name}\""), format!("filename=\"{name}\""))
    } else {
        let enc = percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        (
            format!("name=\"{}\"", encode_word(&name)),
            format!("filename*=utf-8''{enc}"),
        )
    };
    let _ = write!(
        out,
        "Content-Type: {}; {type_param}\r\n",
        one_line(&a.content_type)
    );
    let disposition = if a.is_inline { "inline" } else { "attachment" };
    let _ = write!(
        out,
        "Content-Disposition: {disposition}; {disposition_param}\r\n"
    );
    if let Some(cid) = &a.content_id {
        let _ = write!(out, "Content-ID: <{}>\r\n", one_line(cid));
    }
    out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    out.push_str(&wrapped_base64(&a.bytes));
}

/// Builds the MIME of a message sent (or saved) by `from`.
pub fn build_mime(
    message: &OutgoingMessage,
    from_name: &str,
    from_address: &str,
    extra_attachments: &[Attachment],
    now: OffsetDateTime,
) -> Vec<u8> {
    let mut out = String::new();
    let date = now.format(&Rfc2822).unwrap_or_default();
    let domain = from_address
        .rsplit_once('@')
        .map_or("emulator.invalid", |(_, d)| d);
    let _ = write!(out, "From: {}\r\n", mailbox(Some(from_name), from_address));
    for (name, list) in [
        ("To", &message.to),
        ("Cc", &message.cc),
        ("Bcc", &message.bcc),
        ("Reply-To", &message.reply_to),
    ] {
        if let Some(v) = address_list(list) {
            let _ = write!(out, "{name}: {}\r\n", one_line(&v));
        }
    }
    let _ = write!(
        out,
        "Subject: {}\r\n",
        encode_word(&one_line(message.subject.as_deref().unwrap_or_default()))
    );
    let _ = write!(out, "Date: {date}\r\n");
    let _ = write!(
        out,
        "Message-ID: <{}@{domain}>\r\n",
        uuid::Uuid::new_v4().simple()
    );
    if let Some(i) = message.importance.as_deref()
        && (i.eq_ignore_ascii_case("high") || i.eq_ignore_ascii_case("low"))
    {
        let _ = write!(out, "Importance: {}\r\n", i.to_ascii_lowercase());
    }
    for h in &message.internet_message_headers {
        let (Some(n), Some(v)) = (
            h.get("name").and_then(Value::as_str),
            h.get("value").and_then(Value::as_str),
        ) else {
            continue;
        };
        if n.len() > 2
            && n.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            let _ = write!(out, "{n}: {}\r\n", encode_word(&one_line(v)));
        }
    }
    out.push_str("MIME-Version: 1.0\r\n");
    let body = message.body.clone().unwrap_or_default();
    let subtype = if body
        .content_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("html"))
    {
        "html"
    } else {
        "plain"
    };
    let body_part = format!(
        "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        wrapped_base64(body.content.as_bytes())
    );
    let attachments: Vec<Attachment> = message
        .attachments
        .iter()
        .filter_map(FileAttachment::decode)
        .chain(extra_attachments.iter().cloned())
        .collect();
    if attachments.is_empty() {
        out.push_str(&body_part);
    } else {
        let boundary = format!("_mb_{}", uuid::Uuid::new_v4().simple());
        let _ = write!(
            out,
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        );
        let _ = write!(out, "--{boundary}\r\n{body_part}");
        for a in &attachments {
            let _ = write!(out, "--{boundary}\r\n");
            attachment_part(&mut out, a);
        }
        let _ = write!(out, "--{boundary}--\r\n");
    }
    out.into_bytes()
}

/// Adds attachments to an existing MIME message: wraps it in `multipart/mixed` (or
/// appends to one it already is).
pub fn add_attachments(raw: &[u8], extra: &[Attachment]) -> Vec<u8> {
    if extra.is_empty() {
        return raw.to_vec();
    }
    let (header, body) = split_header(raw);
    let boundary = format!("_mb_{}", uuid::Uuid::new_v4().simple());
    // Content headers move into the first part; the rest stay on the message.
    let mut top = Vec::new();
    let mut inner = Vec::new();
    for field in header_fields(header) {
        let name = field
            .split(|b| *b == b':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.starts_with(b"content-") {
            inner.extend_from_slice(field);
        } else if name != b"mime-version" {
            top.extend_from_slice(field);
        }
    }
    if inner.is_empty() {
        inner.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    let mut out = top;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(&inner);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    if !body.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    for a in extra {
        let mut part = format!("--{boundary}\r\n");
        attachment_part(&mut part, a);
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Splits a message at the first empty line.
fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    for (i, w) in raw.windows(4).enumerate() {
        if w == b"\r\n\r\n" {
            return (
                raw.get(..i + 2).unwrap_or(raw),
                raw.get(i + 4..).unwrap_or_default(),
            );
        }
    }
    for (i, w) in raw.windows(2).enumerate() {
        if w == b"\n\n" {
            return (
                raw.get(..i + 1).unwrap_or(raw),
                raw.get(i + 2..).unwrap_or_default(),
            );
        }
    }
    (raw, &[])
}

/// The header fields of a header block, each with its continuation lines and line end.
fn header_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        if header.get(i) == Some(&b'\n') {
            let next = header.get(i + 1).copied();
            if !matches!(next, Some(b' ' | b'\t')) {
                if let Some(f) = header.get(start..=i)
                    && f.iter().any(|b| !b.is_ascii_whitespace())
                {
                    fields.push(f);
                }
                start = i + 1;
            }
        }
        i += 1;
    }
    if let Some(f) = header.get(start..)
        && f.iter().any(|b| !b.is_ascii_whitespace())
    {
        fields.push(f);
    }
    fields
}

/// The message without its `Bcc` field, as it is handed to recipients.
pub fn without_bcc(raw: &[u8]) -> Vec<u8> {
    let (header, body) = split_header(raw);
    let mut out = Vec::with_capacity(raw.len());
    for field in header_fields(header) {
        if field.len() >= 4
            && field
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"bcc:"))
        {
            continue;
        }
        out.extend_from_slice(field);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Adds `Date` and `Message-ID` when a submitted MIME message lacks them, as Exchange
/// does on submission.
pub fn complete_headers(raw: &[u8], from_address: &str, now: OffsetDateTime) -> Vec<u8> {
    let (header, _) = split_header(raw);
    let has = |name: &[u8]| {
        header_fields(header).iter().any(|f| {
            f.len() > name.len()
                && f.get(..name.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(name))
        })
    };
    let mut prefix = String::new();
    if !has(b"date:") {
        let _ = write!(
            prefix,
            "Date: {}\r\n",
            now.format(&Rfc2822).unwrap_or_default()
        );
    }
    if !has(b"message-id:") {
        let domain = from_address
            .rsplit_once('@')
            .map_or("emulator.invalid", |(_, d)| d);
        let _ = write!(
            prefix,
            "Message-ID: <{}@{domain}>\r\n",
            uuid::Uuid::new_v4().simple()
        );
    }
    let mut out = prefix.into_bytes();
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::json::{MessageMeta, attachments, message_json};

    fn meta() -> MessageMeta {
        MessageMeta {
            id: "x".into(),
            parent_folder_id: "f".into(),
            is_read: true,
            flagged: false,
            is_draft: false,
            received: OffsetDateTime::UNIX_EPOCH,
            revision: 0,
        }
    }

    fn outgoing() -> OutgoingMessage {
        serde_json::from_value(serde_json::json!({
            "subject": "Grüße – café ☕",
            "body": {"contentType": "Text", "content": "Hallo Zoë\nzweite Zeile"},
            "toRecipients": [{"emailAddress": {"address": "bob@example.org", "name": "Bøb Ünïcode"}}],
            "ccRecipients": [{"emailAddress": {"address": "carol@contoso.example"}}],
            "bccRecipients": [{"emailAddress": {"address": "hidden@contoso.example", "name": "Hidden, Person"}}],
            "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "naïve.txt",
                             "contentType": "text/plain", "contentBytes": "SGVsbG8gV29ybGQh"}]
        }))
        .unwrap()
    }

    #[test]
    fn composed_message_round_trips_through_the_parser() {
        let raw = build_mime(
            &outgoing(),
            "Ålice",
            "alice@contoso.example",
            &[],
            OffsetDateTime::UNIX_EPOCH,
        );
        let m = message_json(&raw, &meta(), None).unwrap();
        assert_eq!(m["subject"], "Grüße – café ☕");
        assert_eq!(m["from"]["emailAddress"]["name"], "Ålice");
        assert_eq!(m["toRecipients"][0]["emailAddress"]["name"], "Bøb Ünïcode");
        assert_eq!(
            m["ccRecipients"][0]["emailAddress"]["address"],
            "carol@contoso.example"
        );
        assert_eq!(
            m["bccRecipients"][0]["emailAddress"]["name"],
            "Hidden, Person"
        );
        assert_eq!(m["body"]["content"], "Hallo Zoë\nzweite Zeile");
        assert_eq!(m["hasAttachments"], true);
        let a = attachments(&raw);
        assert_eq!(a[0].name, "naïve.txt");
        assert_eq!(a[0].bytes, b"Hello World!");
        assert_eq!(
            outgoing().envelope_recipients(),
            [
                "bob@example.org",
                "carol@contoso.example",
                "hidden@contoso.example"
            ]
        );
    }

    #[test]
    fn bcc_is_stripped_for_delivery_only() {
        let raw = build_mime(
            &outgoing(),
            "A",
            "alice@contoso.example",
            &[],
            OffsetDateTime::UNIX_EPOCH,
        );
        let delivered = without_bcc(&raw);
        let m = message_json(&delivered, &meta(), None).unwrap();
        assert_eq!(m["bccRecipients"], serde_json::json!([]));
        assert_eq!(m["subject"], "Grüße – café ☕");
        assert_eq!(attachments(&delivered).len(), 1);
    }

    #[test]
    fn attachments_can_be_added_to_a_single_part_message() {
        let raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody text\r\n";
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let out = add_attachments(
            raw,
            &[Attachment {
                name: "big.bin".into(),
                content_type: "application/octet-stream".into(),
                is_inline: false,
                content_id: None,
                bytes: big.clone(),
            }],
        );
        let m = message_json(&out, &meta(), None).unwrap();
        assert_eq!(m["subject"], "s");
        assert_eq!(m["body"]["content"].as_str().unwrap().trim(), "body text");
        let a = attachments(&out);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].bytes, big);
    }

    #[test]
    fn missing_date_and_message_id_are_added() {
        let out = complete_headers(
            b"Subject: x\r\n\r\nhi\r\n",
            "a@contoso.example",
            OffsetDateTime::UNIX_EPOCH,
        );
        let m = message_json(&out, &meta(), None).unwrap();
        assert!(
            m["internetMessageId"]
                .as_str()
                .unwrap()
                .ends_with("@contoso.example>")
        );
        assert_eq!(m["sentDateTime"], "1970-01-01T00:00:00Z");
    }
}
