//! A structured outgoing message and its MIME (RFC 5322 / RFC 2045-2049).
//!
//! [`Message`] holds what a business app fills in: from, to/cc/bcc, reply-to, subject,
//! text and/or HTML body, attachments read from files, and extra headers. Every value
//! that ends up in a header is checked first: a CR or LF in it (header injection) is
//! refused with [`ComposeError::LineBreak`], never silently stripped.
//!
//! [`Message::write_mime`] writes the message into any [`AsyncWrite`]. mail-builder
//! (>= 2.0) writes the header block (RFC 2047 encoded words for non-ASCII subjects and
//! display names), the text/HTML parts, and each attachment's `Content-Type` /
//! `Content-Disposition` (RFC 2231 `filename*` for non-ASCII file names). Attachment
//! *contents* are not given to mail-builder, because its parts hold their content in
//! memory: they are read from their files in 57 KiB-aligned chunks and written as
//! base64 in 76-character lines, so a 50 MB attachment costs a 64 KiB buffer, not
//! 67 MB of encoded text.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::Header as _;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mailbridge_types::ErrorClass;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// A mailbox: an address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub address: String,
    pub name: Option<String>,
}

impl Address {
    /// An address without a display name.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            name: None,
        }
    }

    /// An address with a display name.
    pub fn with_name(address: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            name: Some(name.into()),
        }
    }
}

/// Where an attachment's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A file, read (streamed) when the message is written or uploaded.
    File(PathBuf),
    /// Bytes in memory (small generated content).
    Bytes(Vec<u8>),
}

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name the recipient sees (any Unicode; RFC 2231 encoded when needed).
    pub file_name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    pub content: Content,
}

impl Attachment {
    /// An attachment read from `path`, named after the file, with the type guessed
    /// from its extension.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let file_name = path.file_name().map_or_else(
            || "attachment".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self {
            content_type: content_type_for(&file_name).to_owned(),
            file_name,
            content: Content::File(path),
        }
    }

    /// The content's size in bytes (a file's is read from its metadata).
    pub async fn size(&self) -> Result<u64, ComposeError> {
        match &self.content {
            Content::Bytes(b) => Ok(b.len() as u64),
            Content::File(p) => tokio::fs::metadata(p)
                .await
                .map(|m| m.len())
                .map_err(|source| ComposeError::Attachment {
                    path: p.clone(),
                    source,
                }),
        }
    }

    /// A reader over the content.
    pub async fn open(&self) -> Result<Box<dyn AsyncRead + Send + Unpin + '_>, ComposeError> {
        match &self.content {
            Content::Bytes(b) => Ok(Box::new(b.as_slice())),
            Content::File(p) => tokio::fs::File::open(p)
                .await
                .map(|f| Box::new(f) as Box<dyn AsyncRead + Send + Unpin>)
                .map_err(|source| ComposeError::Attachment {
                    path: p.clone(),
                    source,
                }),
        }
    }
}

/// A MIME type from a file name's extension; `application/octet-stream` otherwise.
pub fn content_type_for(file_name: &str) -> &'static str {
    let ext = Path::new(file_name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "xml" => "application/xml",
        "json" => "application/json",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

/// Whether the `Bcc` field is written into the MIME header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BccHeader {
    /// SMTP: Bcc recipients are in the envelope only (RFC 5322 §3.6.3), so the header
    /// leaves them out.
    Omit,
    /// Graph `sendMail` MIME and EWS `CreateItem`: Exchange reads the recipients from
    /// the header and strips `Bcc` before delivery, so it must be there.
    Include,
}

/// Headers set from the message's fields, which an extra header may not repeat.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "sender",
];

/// What is wrong with a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    #[error(
        "the {field} contains a line break (CR or LF), which could inject other header fields: remove the line breaks"
    )]
    LineBreak { field: String },
    #[error(
        "{name:?} is not a valid header name: use printable ASCII without spaces or ':', for example X-Ticket-Id"
    )]
    HeaderName { name: String },
    #[error(
        "the extra header {name} is set from the message's own fields: use the matching option (from, to, subject, ...) instead"
    )]
    ReservedHeader { name: String },
    #[error("{address:?} ({field}) is not a mail address: expected local-part@domain")]
    Address {
        field: &'static str,
        address: String,
    },
    #[error("the message has no recipients: give at least one To, Cc or Bcc address")]
    NoRecipients,
    #[error("failed to read the attachment {}", path.display())]
    Attachment {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the message")]
    Write(#[source] std::io::Error),
}

impl ComposeError {
    /// What to do about it: a bad message stays bad; a write failure may pass.
    pub fn class(&self) -> ErrorClass {
        match self {
            ComposeError::Write(_) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// A structured outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: Address,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body; with `text`, the two form `multipart/alternative`.
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Extra header fields (name, value), e.g. `X-Ticket-Id`.
    pub headers: Vec<(String, String)>,
    /// The `Message-ID` without angle brackets; [`Message::new`] generates one.
    pub message_id: String,
}

impl Message {
    /// An empty message from `from`, with a fresh `Message-ID` in the sender's domain.
    pub fn new(from: Address) -> Self {
        let domain = from
            .address
            .rsplit_once('@')
            .map_or("mailbridge.invalid", |(_, d)| d)
            .to_owned();
        Self {
            message_id: format!("{}@{domain}", uuid::Uuid::new_v4().simple()),
            from,
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: Vec::new(),
            subject: String::new(),
            text: None,
            html: None,
            attachments: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Every recipient address (To, Cc, Bcc): the SMTP envelope.
    pub fn envelope_recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|a| a.address.clone())
            .collect()
    }

    /// Checks every value that ends up in a header (no CR/LF, valid header names and
    /// addresses) and that there is a recipient.
    pub fn validate(&self) -> Result<(), ComposeError> {
        let lists: [(&'static str, &[Address]); 5] = [
            ("From", std::slice::from_ref(&self.from)),
            ("To", &self.to),
            ("Cc", &self.cc),
            ("Bcc", &self.bcc),
            ("Reply-To", &self.reply_to),
        ];
        for (field, list) in lists {
            for a in list {
                no_line_break(&format!("{field} address"), &a.address)?;
                if let Some(n) = &a.name {
                    no_line_break(&format!("{field} display name"), n)?;
                }
                if !is_address(&a.address) {
                    return Err(ComposeError::Address {
                        field,
                        address: a.address.clone(),
                    });
                }
            }
        }
        if self.to.is_empty() && self.cc.is_empty() && self.bcc.is_empty() {
            return Err(ComposeError::NoRecipients);
        }
        no_line_break("subject", &self.subject)?;
        no_line_break("Message-ID", &self.message_id)?;
        for a in &self.attachments {
            no_line_break("attachment file name", &a.file_name)?;
            no_line_break("attachment content type", &a.content_type)?;
        }
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(ComposeError::HeaderName { name: name.clone() });
            }
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(ComposeError::ReservedHeader { name: name.clone() });
            }
            no_line_break(&format!("header {name}"), value)?;
        }
        Ok(())
    }

    /// The header block and body parts written by mail-builder. With attachments the
    /// body is a `multipart/mixed` whose closing delimiter is left off, so the
    /// attachments can be streamed after it; the boundary is returned.
    fn head(&self, bcc: BccHeader) -> (Vec<u8>, Option<String>) {
        let mut b = MessageBuilder::new()
            .from(mb_address(&self.from))
            .message_id(MessageId::new(self.message_id.as_str()))
            .subject(Text::new(self.subject.as_str()));
        if !self.to.is_empty() {
            b = b.to(mb_list(&self.to));
        }
        if !self.cc.is_empty() {
            b = b.cc(mb_list(&self.cc));
        }
        if bcc == BccHeader::Include && !self.bcc.is_empty() {
            b = b.bcc(mb_list(&self.bcc));
        }
        if !self.reply_to.is_empty() {
            b = b.reply_to(mb_list(&self.reply_to));
        }
        for (name, value) in &self.headers {
            b = b.header(name.as_str(), Text::new(value.as_str()));
        }
        let text = self.text.as_deref().map(|t| MimePart::new("text/plain", t));
        let html = self.html.as_deref().map(|h| MimePart::new("text/html", h));
        let body = match (text, html) {
            (Some(t), Some(h)) => MimePart::new("multipart/alternative", vec![t, h]),
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => MimePart::new("text/plain", ""),
        };
        if self.attachments.is_empty() {
            let mut out = Vec::new();
            b.body(body).serialize(&mut out);
            return (out, None);
        }
        let boundary = format!("mb_{}", uuid::Uuid::new_v4().simple());
        let mixed = MimePart::new(
            ContentType::new("multipart/mixed").attribute("boundary", boundary.clone()),
            vec![body],
        );
        let mut out = Vec::new();
        b.body(mixed).serialize(&mut out);
        // mail-builder closed the multipart with "\r\n--{boundary}--\r\n": reopen it.
        let close = format!("\r\n--{boundary}--\r\n");
        if out.ends_with(close.as_bytes()) {
            out.truncate(out.len() - close.len());
        }
        (out, Some(boundary))
    }

    /// Writes the MIME into `sink` (see the module doc for what is streamed); the
    /// number of bytes written. Validates first.
    pub async fn write_mime<W: AsyncWrite + Unpin + Send>(
        &self,
        sink: &mut W,
        bcc: BccHeader,
    ) -> Result<u64, ComposeError> {
        self.validate()?;
        let (head, boundary) = self.head(bcc);
        sink.write_all(&head).await.map_err(ComposeError::Write)?;
        let mut total = head.len() as u64;
        if let Some(boundary) = boundary {
            for a in &self.attachments {
                let mut part = format!("\r\n--{boundary}\r\n").into_bytes();
                part.extend_from_slice(b"Content-Type: ");
                ContentType::new(a.content_type.as_str())
                    .attribute("name", a.file_name.as_str())
                    .write_header(&mut part, 14);
                part.extend_from_slice(b"Content-Disposition: ");
                ContentType::new("attachment")
                    .attribute("filename", a.file_name.as_str())
                    .write_header(&mut part, 21);
                part.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
                sink.write_all(&part).await.map_err(ComposeError::Write)?;
                total += part.len() as u64;
                let path = match &a.content {
                    Content::File(p) => p.clone(),
                    Content::Bytes(_) => PathBuf::from(&a.file_name),
                };
                let mut reader = a.open().await?;
                total += write_base64(&mut reader, sink, &path).await?;
            }
            let close = format!("\r\n--{boundary}--\r\n");
            sink.write_all(close.as_bytes())
                .await
                .map_err(ComposeError::Write)?;
            total += close.len() as u64;
        }
        sink.flush().await.map_err(ComposeError::Write)?;
        Ok(total)
    }

    /// The MIME in memory (small messages: Graph `sendMail`, EWS).
    pub async fn to_vec(&self, bcc: BccHeader) -> Result<Vec<u8>, ComposeError> {
        let mut out = Vec::new();
        self.write_mime(&mut out, bcc).await?;
        Ok(out)
    }
}

/// Bytes of input per base64 line (76 characters).
const LINE_INPUT: usize = 57;
/// Input read at a time: a whole number of lines (64,980 bytes).
const CHUNK_INPUT: usize = LINE_INPUT * 1140;

/// Streams `reader` as base64 in 76-character lines separated by CRLF (the last line
/// without one: the boundary delimiter that follows begins with CRLF).
async fn write_base64<R: AsyncRead + Unpin + ?Sized, W: AsyncWrite + Unpin + ?Sized>(
    reader: &mut R,
    sink: &mut W,
    path: &Path,
) -> Result<u64, ComposeError> {
    let mut input = vec![0u8; CHUNK_INPUT];
    let mut encoded = String::with_capacity(CHUNK_INPUT / 3 * 4 + 4);
    let mut out = Vec::with_capacity(CHUNK_INPUT / 3 * 4 + CHUNK_INPUT / LINE_INPUT * 2 + 4);
    let mut total = 0u64;
    let mut first = true;
    loop {
        // Fill the chunk completely so that only the last line is short.
        let mut filled = 0;
        while filled < input.len() {
            let slot = input.get_mut(filled..).unwrap_or_default();
            let n = reader
                .read(slot)
                .await
                .map_err(|source| ComposeError::Attachment {
                    path: path.to_owned(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        encoded.clear();
        STANDARD.encode_string(input.get(..filled).unwrap_or_default(), &mut encoded);
        out.clear();
        for line in encoded.as_bytes().chunks(76) {
            if !first {
                out.extend_from_slice(b"\r\n");
            }
            first = false;
            out.extend_from_slice(line);
        }
        sink.write_all(&out).await.map_err(ComposeError::Write)?;
        total += out.len() as u64;
        if filled < input.len() {
            break;
        }
    }
    Ok(total)
}

fn mb_address(a: &Address) -> MbAddress<'_> {
    MbAddress::new_address(
        a.name.as_deref().map(Cow::Borrowed),
        Cow::Borrowed(a.address.as_str()),
    )
}

fn mb_list(list: &[Address]) -> MbAddress<'_> {
    MbAddress::new_list(list.iter().map(mb_address).collect())
}

fn no_line_break(field: &str, value: &str) -> Result<(), ComposeError> {
    if value.contains(['\r', '\n']) {
        Err(ComposeError::LineBreak {
            field: field.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// `local@domain` with no spaces, angle brackets or quotes, one `@`, a dotted or
/// bracketed domain.
pub fn is_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !address.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')
        })
        && !domain.contains('@')
        && !local.contains('@')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use mail_parser::{MessageParser, MimeHeaders as _};

    fn message() -> Message {
        let mut m = Message::new(Address::with_name("jorg@example.com", "Jörg Müller"));
        m.to.push(Address::with_name("b@example.com", "Bea"));
        m.bcc.push(Address::new("hidden@example.com"));
        m.subject = "Grüße aus Köln – Rechnung №7".into();
        m.text = Some("Hallo\r\n.\r\nEnde".into());
        m
    }

    #[tokio::test]
    async fn non_ascii_round_trips_through_mail_parser() {
        let mut m = message();
        m.html = Some("<p>Hallo</p>".into());
        m.headers.push(("X-Ticket".into(), "Nº 42 – offen".into()));
        let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        m.attachments.push(Attachment {
            file_name: "Jahresabschluß Übersicht 2026 – sehr langer Dateiname für Tests.pdf".into(),
            content_type: "application/pdf".into(),
            content: Content::Bytes(data.clone()),
        });
        let raw = m.to_vec(BccHeader::Omit).await.unwrap();
        for line in raw.split(|b| *b == b'\n') {
            assert!(line.len() <= 998, "line too long");
        }
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some(m.subject.as_str()));
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Jörg Müller"));
        assert!(parsed.bcc().is_none(), "Bcc stays out of the header");
        assert_eq!(
            parsed.body_text(0).unwrap().trim_end(),
            "Hallo\r\n.\r\nEnde"
        );
        assert!(parsed.body_html(0).unwrap().contains("<p>Hallo</p>"));
        // mail-parser keeps unknown headers raw: decode the encoded words as a subject.
        let ticket = parsed.header_raw("X-Ticket").unwrap().trim();
        let as_subject = format!("Subject: {ticket}\r\n\r\n");
        let decoded = MessageParser::default()
            .parse(as_subject.as_bytes())
            .unwrap();
        assert_eq!(decoded.subject(), Some("Nº 42 – offen"));
        let att = parsed.attachment(0).unwrap();
        assert_eq!(
            att.attachment_name(),
            Some(m.attachments[0].file_name.as_str())
        );
        assert_eq!(att.contents(), data.as_slice());
        assert_eq!(
            parsed.message_id(),
            Some(m.message_id.as_str()),
            "the Message-ID reported is the one sent"
        );
        let with_bcc = m.to_vec(BccHeader::Include).await.unwrap();
        let parsed = MessageParser::default().parse(&with_bcc).unwrap();
        assert_eq!(
            parsed.bcc().unwrap().first().unwrap().address(),
            Some("hidden@example.com")
        );
    }

    #[tokio::test]
    async fn base64_lines_are_76_characters() {
        let mut m = message();
        m.attachments.push(Attachment {
            file_name: "a.bin".into(),
            content_type: "application/octet-stream".into(),
            content: Content::Bytes(vec![7u8; CHUNK_INPUT * 2 + 100]),
        });
        let raw = String::from_utf8(m.to_vec(BccHeader::Omit).await.unwrap()).unwrap();
        let body = raw
            .split("Content-Transfer-Encoding: base64\r\n\r\n")
            .last()
            .unwrap();
        let lines: Vec<&str> = body
            .split("\r\n")
            .take_while(|l| !l.starts_with("--"))
            .collect();
        let (last, full) = lines.split_last().unwrap();
        assert!(full.iter().all(|l| l.len() == 76));
        assert!(last.len() <= 76 && !last.is_empty());
    }

    #[tokio::test]
    async fn header_injection_is_refused() {
        let cases: [fn(&mut Message); 4] = [
            |m| m.subject = "hi\r\nBcc: victim@example.com".into(),
            |m| {
                m.headers
                    .push(("X-A".into(), "v\nTo: x@example.com".into()));
            },
            |m| m.to.push(Address::with_name("c@example.com", "C\rD")),
            |m| {
                m.attachments.push(Attachment {
                    file_name: "a\n.txt".into(),
                    content_type: "text/plain".into(),
                    content: Content::Bytes(vec![]),
                });
            },
        ];
        for case in cases {
            let mut m = message();
            case(&mut m);
            let e = m.to_vec(BccHeader::Omit).await.unwrap_err();
            assert!(matches!(e, ComposeError::LineBreak { .. }), "{e}");
            assert!(e.to_string().contains("line break"), "{e}");
            assert_eq!(e.class(), ErrorClass::Permanent);
        }
        let mut m = message();
        m.headers.push(("Bad Name".into(), "v".into()));
        assert!(matches!(
            m.validate().unwrap_err(),
            ComposeError::HeaderName { .. }
        ));
        let mut m = message();
        m.headers.push(("bcc".into(), "x@example.com".into()));
        assert!(matches!(
            m.validate().unwrap_err(),
            ComposeError::ReservedHeader { .. }
        ));
        let mut m = message();
        m.to.push(Address::new("a@b.example>, evil@x.example"));
        assert!(matches!(
            m.validate().unwrap_err(),
            ComposeError::Address { .. }
        ));
    }
}
