//! `t:Message` as FindItem, GetItem and SyncFolderItems return it: the item shape
//! (`BaseShape`, `AdditionalProperties`, `IncludeMimeContent`, `BodyType`) and the
//! rendering of a stored message's properties, in the order of the EWS schema's
//! `ItemType`/`MessageType` sequences.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_parser::{Address, MessageParser};
use time::OffsetDateTime;
use time::macros::format_description;

use super::soap::{Element, Fault, Ns, SchemaError, esc};
use super::{ids, required_child};
use crate::mailstore::StoredMessageId;

/// `BaseShape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseShape {
    IdOnly,
    Default,
    AllProperties,
}

/// `BodyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Best,
    Html,
    Text,
}

/// An `ItemShape`.
#[derive(Debug, Clone)]
pub struct Shape {
    pub base: BaseShape,
    /// `FieldURI` values of `AdditionalProperties`.
    pub additional: BTreeSet<String>,
    pub include_mime: bool,
    pub body_type: BodyType,
}

impl Shape {
    /// Reads `m:ItemShape` (required).
    pub fn parse(operation: &Element) -> Result<Self, Fault> {
        let shape = required_child(operation, Ns::Messages, "ItemShape")?;
        let base = match required_child(shape, Ns::Types, "BaseShape")?.text() {
            "IdOnly" => BaseShape::IdOnly,
            "Default" => BaseShape::Default,
            "AllProperties" => BaseShape::AllProperties,
            other => {
                return Err(Fault::schema(SchemaError::new(format!(
                    "The element 'BaseShape' has an invalid value '{other}' according to its datatype 'DefaultShapeNamesType'."
                ))));
            }
        };
        let include_mime = match shape.child_text(Ns::Types, "IncludeMimeContent") {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(Fault::schema(SchemaError::new(format!(
                    "The element 'IncludeMimeContent' has an invalid value '{other}' according to its datatype 'boolean'."
                ))));
            }
        };
        let body_type = match shape.child_text(Ns::Types, "BodyType") {
            None | Some("Best") => BodyType::Best,
            Some("HTML") => BodyType::Html,
            Some("Text") => BodyType::Text,
            Some(other) => {
                return Err(Fault::schema(SchemaError::new(format!(
                    "The element 'BodyType' has an invalid value '{other}' according to its datatype 'BodyTypeResponseType'."
                ))));
            }
        };
        let additional = shape
            .child(Ns::Types, "AdditionalProperties")
            .map(|a| {
                a.children_named(Ns::Types, "FieldURI")
                    .filter_map(|f| f.attr("FieldURI"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            base,
            additional,
            include_mime,
            body_type,
        })
    }

    /// Whether a property (by `FieldURI`) is part of the shape. `find` is true for
    /// FindItem and SyncFolderItems, which never return bodies or MIME.
    fn wants(&self, field: &str, find: bool) -> bool {
        if find
            && matches!(
                field,
                "item:Body" | "item:MimeContent" | "item:InternetMessageHeaders"
            )
        {
            return false;
        }
        if self.additional.contains(field) {
            return true;
        }
        match self.base {
            BaseShape::IdOnly => false,
            BaseShape::AllProperties => true,
            BaseShape::Default => matches!(
                field,
                "item:ParentFolderId"
                    | "item:ItemClass"
                    | "item:Subject"
                    | "item:Sensitivity"
                    | "item:Body"
                    | "item:DateTimeReceived"
                    | "item:Size"
                    | "item:Importance"
                    | "item:DateTimeSent"
                    | "item:DateTimeCreated"
                    | "item:DisplayCc"
                    | "item:DisplayTo"
                    | "item:HasAttachments"
                    | "message:Sender"
                    | "message:ToRecipients"
                    | "message:CcRecipients"
                    | "message:From"
                    | "message:IsRead"
            ),
        }
    }
}

/// A stored message with what the listing knows about it.
#[derive(Debug)]
pub struct StoredItem<'a> {
    pub id: &'a StoredMessageId,
    pub seen: bool,
    pub received: OffsetDateTime,
    pub size: u64,
    /// The whole message (GetItem) or only its header (FindItem, SyncFolderItems).
    pub raw: &'a [u8],
    pub whole: bool,
}

/// An EWS `dateTime`: `2024-05-14T09:21:37Z`.
pub fn ews_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

fn mailbox_xml(name: Option<&str>, address: &str) -> String {
    format!(
        "<t:Mailbox><t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox>",
        esc(name.filter(|n| !n.is_empty()).unwrap_or(address)),
        esc(address)
    )
}

fn addresses(address: Option<&Address<'_>>) -> Vec<(Option<String>, String)> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    Some((addr.name().map(str::to_owned), addr.address()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn recipients_xml(tag: &str, list: &[(Option<String>, String)]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let mut out = format!("<t:{tag}>");
    for (name, address) in list {
        out.push_str(&mailbox_xml(name.as_deref(), address));
    }
    let _ = write!(out, "</t:{tag}>");
    out
}

fn display(list: &[(Option<String>, String)]) -> String {
    list.iter()
        .map(|(n, a)| {
            n.clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| a.clone())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The header fields of a message (unfolded), as `InternetMessageHeaders` lists them.
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// Renders `<t:Message>…</t:Message>` for `item` in `shape`.
pub fn message_xml(item: &StoredItem<'_>, shape: &Shape, find: bool) -> String {
    let parsed = MessageParser::default().parse(item.raw);
    let header = |name: &str| -> Option<String> {
        parsed
            .as_ref()
            .and_then(|m| m.header_raw(name))
            .map(|v| v.trim().to_owned())
    };
    let want = |field: &str| shape.wants(field, find);
    let mut out = String::from("<t:Message>");
    if shape.include_mime && !find && item.whole {
        let _ = write!(
            out,
            r#"<t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent>"#,
            STANDARD.encode(item.raw)
        );
    }
    out.push_str(&ids::item_id_element(item.id));
    if want("item:ParentFolderId") {
        let _ = write!(
            out,
            r#"<t:ParentFolderId Id="{}" ChangeKey="{}"/>"#,
            ids::folder_id(&item.id.mailbox, &item.id.folder),
            ids::folder_change_key(&item.id.mailbox, &item.id.folder)
        );
    }
    if want("item:ItemClass") {
        out.push_str("<t:ItemClass>IPM.Note</t:ItemClass>");
    }
    let subject = parsed
        .as_ref()
        .and_then(|m| m.subject())
        .unwrap_or_default()
        .to_owned();
    if want("item:Subject") {
        let _ = write!(out, "<t:Subject>{}</t:Subject>", esc(&subject));
    }
    if want("item:Sensitivity") {
        out.push_str("<t:Sensitivity>Normal</t:Sensitivity>");
    }
    if want("item:Body") && item.whole {
        // A part that is really text/html, and one that is really text/plain (the
        // parser converts between them when only one exists).
        let html = parsed.as_ref().and_then(|m| {
            m.html_part(0)
                .filter(|p| p.is_text_html())
                .and_then(|p| p.text_contents())
                .map(str::to_owned)
        });
        let text = parsed.as_ref().and_then(|m| {
            m.text_part(0)
                .filter(|p| !p.is_text_html())
                .and_then(|p| p.text_contents())
                .map(str::to_owned)
        });
        let text = text.or_else(|| {
            parsed
                .as_ref()
                .and_then(|m| m.body_text(0))
                .map(std::borrow::Cow::into_owned)
        });
        let (kind, body) = match (shape.body_type, html, text) {
            (BodyType::Text, _, Some(text)) | (_, None, Some(text)) => ("Text", text),
            (_, Some(html), _) => ("HTML", html),
            (_, None, None) => ("Text", String::new()),
        };
        let _ = write!(out, r#"<t:Body BodyType="{kind}">{}</t:Body>"#, esc(&body));
    }
    if want("item:DateTimeReceived") {
        let _ = write!(
            out,
            "<t:DateTimeReceived>{}</t:DateTimeReceived>",
            ews_time(item.received)
        );
    }
    if want("item:Size") {
        let _ = write!(out, "<t:Size>{}</t:Size>", item.size);
    }
    if want("item:Importance") {
        out.push_str("<t:Importance>Normal</t:Importance>");
    }
    let in_drafts = item.id.folder == "Drafts";
    if want("item:IsSubmitted") {
        out.push_str("<t:IsSubmitted>false</t:IsSubmitted>");
    }
    if want("item:IsDraft") {
        let _ = write!(out, "<t:IsDraft>{in_drafts}</t:IsDraft>");
    }
    if want("item:InternetMessageHeaders") {
        out.push_str("<t:InternetMessageHeaders>");
        for (name, value) in header_fields(item.raw) {
            let _ = write!(
                out,
                r#"<t:InternetMessageHeader HeaderName="{}">{}</t:InternetMessageHeader>"#,
                esc(&name),
                esc(&value)
            );
        }
        out.push_str("</t:InternetMessageHeaders>");
    }
    let sent = parsed
        .as_ref()
        .and_then(|m| m.date())
        .and_then(|d| OffsetDateTime::from_unix_timestamp(d.to_timestamp()).ok())
        .unwrap_or(item.received);
    if want("item:DateTimeSent") {
        let _ = write!(out, "<t:DateTimeSent>{}</t:DateTimeSent>", ews_time(sent));
    }
    if want("item:DateTimeCreated") {
        let _ = write!(
            out,
            "<t:DateTimeCreated>{}</t:DateTimeCreated>",
            ews_time(item.received)
        );
    }
    let to = addresses(parsed.as_ref().and_then(|m| m.to()));
    let cc = addresses(parsed.as_ref().and_then(|m| m.cc()));
    let bcc = addresses(parsed.as_ref().and_then(|m| m.bcc()));
    let from = addresses(parsed.as_ref().and_then(|m| m.from()));
    let sender = {
        let s = addresses(parsed.as_ref().and_then(|m| m.sender()));
        if s.is_empty() { from.clone() } else { s }
    };
    if want("item:DisplayCc") {
        let _ = write!(out, "<t:DisplayCc>{}</t:DisplayCc>", esc(&display(&cc)));
    }
    if want("item:DisplayTo") {
        let _ = write!(out, "<t:DisplayTo>{}</t:DisplayTo>", esc(&display(&to)));
    }
    if want("item:HasAttachments") {
        let has = match &parsed {
            Some(m) if item.whole => m.attachment_count() > 0,
            _ => header("Content-Type")
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/mixed")),
        };
        let _ = write!(out, "<t:HasAttachments>{has}</t:HasAttachments>");
    }
    if want("message:Sender")
        && let Some((name, address)) = sender.first()
    {
        let _ = write!(
            out,
            "<t:Sender>{}</t:Sender>",
            mailbox_xml(name.as_deref(), address)
        );
    }
    if want("message:ToRecipients") {
        out.push_str(&recipients_xml("ToRecipients", &to));
    }
    if want("message:CcRecipients") {
        out.push_str(&recipients_xml("CcRecipients", &cc));
    }
    if want("message:BccRecipients") {
        out.push_str(&recipients_xml("BccRecipients", &bcc));
    }
    if want("message:From")
        && let Some((name, address)) = from.first()
    {
        let _ = write!(
            out,
            "<t:From>{}</t:From>",
            mailbox_xml(name.as_deref(), address)
        );
    }
    if want("message:InternetMessageId")
        && let Some(mid) = parsed.as_ref().and_then(|m| m.message_id())
    {
        let _ = write!(
            out,
            "<t:InternetMessageId>&lt;{}&gt;</t:InternetMessageId>",
            esc(mid)
        );
    }
    if want("message:IsRead") {
        let _ = write!(out, "<t:IsRead>{}</t:IsRead>", item.seen);
    }
    out.push_str("</t:Message>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(base: BaseShape) -> Shape {
        Shape {
            base,
            additional: BTreeSet::new(),
            include_mime: false,
            body_type: BodyType::Best,
        }
    }

    #[test]
    fn renders_properties_in_schema_order() {
        let id = StoredMessageId {
            mailbox: "alice@contoso.example".into(),
            folder: "INBOX".into(),
            uid_validity: 1,
            uid: 2,
        };
        let raw = b"From: Bob <bob@fabrikam.example>\r\nTo: Alice <alice@contoso.example>\r\nSubject: Quarterly & report\r\nDate: Tue, 14 May 2024 09:21:37 +0000\r\nMessage-ID: <x@y>\r\n\r\nHi\r\n";
        let item = StoredItem {
            id: &id,
            seen: false,
            received: OffsetDateTime::from_unix_timestamp(1_715_678_497).unwrap(),
            size: 120,
            raw,
            whole: true,
        };
        let xml = message_xml(&item, &shape(BaseShape::AllProperties), false);
        let order = [
            "<t:ItemId",
            "<t:Subject>Quarterly &amp; report</t:Subject>",
            r#"<t:Body BodyType="Text">Hi"#,
            "<t:DateTimeReceived>2024-05-14T09:21:37Z</t:DateTimeReceived>",
            "<t:From>",
            "<t:InternetMessageId>&lt;x@y&gt;</t:InternetMessageId>",
            "<t:IsRead>false</t:IsRead>",
        ];
        let mut at = 0;
        for part in order {
            let found = xml[at..]
                .find(part)
                .unwrap_or_else(|| panic!("{part} in {xml}"));
            at += found;
        }
        let id_only = message_xml(&item, &shape(BaseShape::IdOnly), true);
        assert!(!id_only.contains("Subject"));
        let find = message_xml(&item, &shape(BaseShape::AllProperties), true);
        assert!(!find.contains("<t:Body"));
    }
}
