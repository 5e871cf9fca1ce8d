//! What a receiver needs to know about a message without parsing MIME: its
//! `Message-ID`, addresses, subject, date, size, attachments (name, type, size) and
//! the start of its text, read with mail-parser. Every text taken from the message is
//! stripped of control characters and bounded, whatever the sender put there.

use mail_parser::{Address, Message, MessageParser, MimeHeaders as _};
use serde::Serialize;

/// The most characters of the text body in [`Summary::text_excerpt`].
pub const TEXT_EXCERPT_CHARS: usize = 4096;
/// The most characters kept of a header value (subject, a name, an address).
const MAX_FIELD_CHARS: usize = 998;
/// The most addresses kept per header.
const MAX_ADDRESSES: usize = 100;

/// A message, summarised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub message_id: Option<String>,
    pub from: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: Option<String>,
    /// RFC 3339.
    pub date: Option<String>,
    /// The whole message, in bytes.
    pub size: u64,
    pub attachments: Vec<AttachmentInfo>,
    /// The first [`TEXT_EXCERPT_CHARS`] characters of the text body (from HTML when
    /// there is no text part).
    pub text_excerpt: Option<String>,
    /// MIME could not be read at all: only the size is known.
    pub unparsed: bool,
}

/// One address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Option<String>,
}

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentInfo {
    /// As the sender named it (control characters dropped), if it has a name.
    pub name: Option<String>,
    /// `type/subtype`.
    pub content_type: String,
    pub size: u64,
}

fn clean(text: &str) -> String {
    mailbridge_types::text::without_controls(text, MAX_FIELD_CHARS)
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    address
        .map(|a| {
            a.iter()
                .take(MAX_ADDRESSES)
                .map(|addr| Mailbox {
                    name: addr.name().map(clean),
                    address: addr.address().map(clean),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The content type of a part as `type/subtype`.
pub(crate) fn content_type_of(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type().map_or_else(
        || "application/octet-stream".to_owned(),
        |ct| {
            clean(&match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .to_ascii_lowercase()
        },
    )
}

/// Summarises `mime`.
pub fn summarize(mime: &[u8]) -> Summary {
    let size = mime.len() as u64;
    match MessageParser::default().parse(mime) {
        Some(message) => summarize_parsed(&message, size),
        None => Summary {
            size,
            unparsed: true,
            ..Summary::default()
        },
    }
}

/// Summarises a message already parsed (`size`: its bytes), for a sink that parsed
/// it for its own work and must not parse it again.
pub fn summarize_parsed(message: &Message<'_>, size: u64) -> Summary {
    let Origin {
        message_id,
        from,
        subject,
        date,
    } = origin(message);
    let text_excerpt = message
        .body_text(0)
        .map(|t| {
            mailbridge_types::text::without_controls(
                &t.replace("\r\n", "\n").replace('\n', " "),
                TEXT_EXCERPT_CHARS,
            )
        })
        .filter(|t| !t.trim().is_empty());
    Summary {
        message_id,
        from,
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        subject,
        date,
        size,
        attachments: message
            .attachments()
            .take(crate::attachments::DEFAULT_MAX_ATTACHMENTS)
            .map(|part| AttachmentInfo {
                name: part.attachment_name().map(clean),
                content_type: content_type_of(part),
                size: part.len() as u64,
            })
            .collect(),
        text_excerpt,
        unparsed: false,
    }
}

/// What names a message to a person (the attachments folder's sidecar): its
/// `Message-ID`, sender, subject and date, cleaned as in [`Summary`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    pub message_id: Option<String>,
    pub from: Vec<Mailbox>,
    pub subject: Option<String>,
    pub date: Option<String>,
}

/// The [`Origin`] of a parsed message.
pub(crate) fn origin(message: &Message<'_>) -> Origin {
    Origin {
        message_id: message.message_id().map(clean),
        from: mailboxes(message.from()),
        subject: message.subject().map(clean),
        date: message.date().map(mail_parser::DateTime::to_rfc3339),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_summarised() {
        let mime = b"From: \"Alice \x1b[31m\" <alice@example.com>\r\nTo: bob@example.com, Carol <carol@example.com>\r\nSubject: Hello\x07 there\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHi Bob,\r\nsee attached.\r\n--b\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let s = summarize(mime);
        assert_eq!(s.message_id.as_deref(), Some("m1@example.com"));
        assert_eq!(s.from[0].address.as_deref(), Some("alice@example.com"));
        assert!(!s.from[0].name.as_deref().unwrap_or("").contains('\x1b'));
        assert_eq!(s.to.len(), 2);
        assert_eq!(s.subject.as_deref(), Some("Hello there"));
        assert_eq!(s.date.as_deref(), Some("2026-12-07T10:00:00Z"));
        assert_eq!(s.attachments.len(), 1);
        assert_eq!(s.attachments[0].name.as_deref(), Some("a.pdf"));
        assert_eq!(s.attachments[0].content_type, "application/pdf");
        assert_eq!(s.attachments[0].size, 5);
        assert_eq!(s.text_excerpt.as_deref(), Some("Hi Bob, see attached."));
        assert_eq!(s.size, mime.len() as u64);
    }

    #[test]
    fn the_origin_is_the_summary_s_own() {
        let mime = b"From: Alice <alice@example.com>\r\nSubject: Scans\x07\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <scan-1@example.com>\r\n\r\nbody\r\n";
        let message = MessageParser::default().parse(mime).unwrap();
        let o = origin(&message);
        let s = summarize(mime);
        assert_eq!(summarize_parsed(&message, mime.len() as u64), s);
        assert_eq!(o.message_id, s.message_id);
        assert_eq!(o.from, s.from);
        assert_eq!(o.subject.as_deref(), Some("Scans"));
        assert_eq!(o.subject, s.subject);
        assert_eq!(o.date, s.date);
    }

    #[test]
    fn the_excerpt_is_bounded() {
        let body = "x".repeat(100_000);
        let mime = format!("Subject: big\r\n\r\n{body}");
        let s = summarize(mime.as_bytes());
        assert_eq!(s.text_excerpt.unwrap().chars().count(), TEXT_EXCERPT_CHARS);
    }

    #[test]
    fn garbage_is_only_a_size() {
        let s = summarize(b"");
        assert!(s.unparsed || s.subject.is_none());
        assert_eq!(s.size, 0);
    }
}
