//! CreateItem for messages (`microsoft-protocols.md` §4.5;
//! <https://learn.microsoft.com/exchange/client-developer/web-service-reference/createitem-operation-email-message>).
//!
//! The message is given either as `MimeContent` (base64 RFC 5322) or as `Subject`,
//! `Body` and recipients, which the emulator turns into MIME. `MessageDisposition`:
//! `SaveOnly` appends it to `SavedItemFolderId` (default Drafts) and returns its id;
//! `SendOnly` delivers it through Postfix; `SendAndSaveCopy` delivers it and appends a
//! copy to `SavedItemFolderId` (default Sent Items). Send dispositions answer an empty
//! `<m:Items />`. A `From` other than the mailbox needs SendAs (`ErrorSendAsDenied`).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_parser::MessageParser;

use super::soap::{
    Element, Fault, ItemError, Ns, SchemaError, error_message, operation_response, success_message,
};
use super::{Ctx, OpResult, auth, folder_ids, ids, required_child, resolve_folder, store_fault};

/// Largest message accepted (Exchange Online's default send limit is 35 MB).
const MAX_MESSAGE_BYTES: usize = 35 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    SaveOnly,
    SendOnly,
    SendAndSaveCopy,
}

/// A message ready to store or send.
struct Outgoing {
    raw: Vec<u8>,
    from: String,
    recipients: Vec<String>,
}

/// RFC 2047 encoding of a header text when it is not plain ASCII.
fn encode_word(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(text.as_bytes()))
    }
}

fn mailbox_header(name: Option<&str>, address: &str) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(n) if n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') => {
            format!("{n} <{address}>")
        }
        Some(n) if n.is_ascii() => {
            format!("\"{}\" <{address}>", n.replace(['"', '\\'], ""))
        }
        Some(n) => format!("{} <{address}>", encode_word(n)),
        None => address.to_owned(),
    }
}

fn wrap76(text: &str) -> String {
    let mut out = String::new();
    let bytes = text.as_bytes();
    for chunk in bytes.chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

fn rfc2822_now(ctx: &Ctx) -> String {
    ctx.emulator
        .now()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

fn message_id(ctx: &Ctx) -> String {
    let domain = ctx
        .access
        .mailbox
        .rsplit_once('@')
        .map_or("emulator.invalid", |(_, d)| d);
    format!("<{}@{domain}>", uuid::Uuid::new_v4().simple())
}

/// Recipients of a `ToRecipients`/`CcRecipients`/`BccRecipients` element.
fn xml_recipients(message: &Element, tag: &str) -> Vec<(Option<String>, String)> {
    message
        .child(Ns::Types, tag)
        .map(|r| {
            r.children_named(Ns::Types, "Mailbox")
                .filter_map(|m| {
                    let address = m.child_text(Ns::Types, "EmailAddress")?.to_owned();
                    let name = m
                        .child_text(Ns::Types, "Name")
                        .map(str::to_owned)
                        .filter(|n| !n.is_empty());
                    Some((name, address))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn display_name(ctx: &Ctx, address: &str) -> Option<String> {
    ctx.emulator
        .read(|m| m.user(address).map(|(_, u)| u.display_name.clone()))
}

/// Builds MIME from `Subject`, `Body` and recipients.
fn from_properties(ctx: &Ctx, message: &Element) -> Outgoing {
    let from_address = message
        .child(Ns::Types, "From")
        .and_then(|f| f.child(Ns::Types, "Mailbox"))
        .and_then(|m| m.child_text(Ns::Types, "EmailAddress"))
        .map_or_else(|| ctx.access.mailbox.clone(), str::to_owned);
    let to = xml_recipients(message, "ToRecipients");
    let cc = xml_recipients(message, "CcRecipients");
    let bcc = xml_recipients(message, "BccRecipients");
    let subject = message.child_text(Ns::Types, "Subject").unwrap_or_default();
    let body_element = message.child(Ns::Types, "Body");
    let body = body_element.map(|b| b.text.as_str()).unwrap_or_default();
    let html = body_element.and_then(|b| b.attr("BodyType")) == Some("HTML");
    let list = |l: &[(Option<String>, String)]| {
        l.iter()
            .map(|(n, a)| mailbox_header(n.as_deref(), a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut raw = String::new();
    let from_name = display_name(ctx, &from_address);
    let _ = write!(
        raw,
        "From: {}\r\n",
        mailbox_header(from_name.as_deref(), &from_address)
    );
    if !to.is_empty() {
        let _ = write!(raw, "To: {}\r\n", list(&to));
    }
    if !cc.is_empty() {
        let _ = write!(raw, "Cc: {}\r\n", list(&cc));
    }
    if !bcc.is_empty() {
        let _ = write!(raw, "Bcc: {}\r\n", list(&bcc));
    }
    let _ = write!(
        raw,
        "Subject: {}\r\nDate: {}\r\nMessage-ID: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/{}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        encode_word(subject),
        rfc2822_now(ctx),
        message_id(ctx),
        if html { "html" } else { "plain" },
        wrap76(&STANDARD.encode(body.as_bytes()))
    );
    Outgoing {
        raw: raw.into_bytes(),
        from: from_address,
        recipients: to
            .into_iter()
            .chain(cc)
            .chain(bcc)
            .map(|(_, a)| a)
            .collect(),
    }
}

/// Takes the MIME a client sent, adding `From`, `Date` and `Message-ID` when missing.
fn from_mime(ctx: &Ctx, text: &str) -> Result<Outgoing, Fault> {
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let mime = STANDARD.decode(cleaned.as_bytes()).map_err(|_| {
        Fault::schema(SchemaError::new(
            "The element 'MimeContent' has an invalid value according to its datatype 'base64Binary'.",
        ))
    })?;
    if mime.len() > MAX_MESSAGE_BYTES {
        return Err(Fault::new("ErrorMessageSizeExceeded"));
    }
    let parsed = MessageParser::default().parse(&mime);
    let addresses = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    };
    let (from, recipients, has_date, has_id) = match &parsed {
        Some(m) => (
            addresses(m.from()).into_iter().next(),
            [m.to(), m.cc(), m.bcc()]
                .into_iter()
                .flat_map(addresses)
                .collect::<Vec<_>>(),
            m.date().is_some(),
            m.message_id().is_some(),
        ),
        None => (None, Vec::new(), false, false),
    };
    let mut prefix = String::new();
    let from = if let Some(f) = from {
        f
    } else {
        let address = ctx.access.mailbox.clone();
        let name = display_name(ctx, &address);
        let _ = write!(
            prefix,
            "From: {}\r\n",
            mailbox_header(name.as_deref(), &address)
        );
        address
    };
    if !has_date {
        let _ = write!(prefix, "Date: {}\r\n", rfc2822_now(ctx));
    }
    if !has_id {
        let _ = write!(prefix, "Message-ID: {}\r\n", message_id(ctx));
    }
    let mut raw = prefix.into_bytes();
    raw.extend_from_slice(&mime);
    Ok(Outgoing {
        raw,
        from,
        recipients,
    })
}

/// The message without its `Bcc` header, as recipients get it.
fn without_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_header = true;
    let mut skipping = false;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if in_header {
            if line == b"\r\n" || line == b"\n" {
                in_header = false;
            } else if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                if skipping {
                    continue;
                }
            } else {
                skipping = line
                    .get(..4)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"bcc:"));
                if skipping {
                    continue;
                }
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// Runs CreateItem.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let disposition = match op.attr("MessageDisposition") {
        Some("SaveOnly") => Some(Disposition::SaveOnly),
        Some("SendOnly") => Some(Disposition::SendOnly),
        Some("SendAndSaveCopy") => Some(Disposition::SendAndSaveCopy),
        None => None,
        Some(other) => {
            return Err(Fault::schema(SchemaError::new(format!(
                "The 'MessageDisposition' attribute is invalid - The value '{other}' is invalid according to its datatype 'MessageDispositionType'."
            ))));
        }
    };
    let items = required_child(op, Ns::Messages, "Items")?;
    let saved_folder = match op
        .child(Ns::Messages, "SavedItemFolderId")
        .and_then(|s| folder_ids(s).into_iter().next())
    {
        Some(element) => Some(resolve_folder(ctx, element).await),
        None => None,
    };
    let mut messages = String::new();
    for message in &items.children {
        match create_one(ctx, message, disposition, saved_folder.as_ref()).await? {
            Ok(xml) => messages.push_str(&success_message("CreateItem", &xml)),
            Err(e) => messages.push_str(&error_message("CreateItem", &e, "<m:Items />")),
        }
    }
    Ok(operation_response("CreateItem", &messages))
}

async fn create_one(
    ctx: &Ctx,
    message: &Element,
    disposition: Option<Disposition>,
    saved_folder: Option<&Result<(String, String), ItemError>>,
) -> Result<Result<String, ItemError>, Fault> {
    if message.ns != Ns::Types || message.name != "Message" {
        return Ok(Err(ItemError {
            code: "ErrorInvalidRequest",
            message: format!(
                "The request is invalid. (The emulator creates only messages, not '{}'.)",
                message.name
            ),
        }));
    }
    let Some(disposition) = disposition else {
        return Ok(Err(ItemError {
            code: "ErrorMessageDispositionRequired",
            message: "MessageDisposition attribute is required.".to_owned(),
        }));
    };
    let outgoing = match message.child(Ns::Types, "MimeContent") {
        Some(mime) => from_mime(ctx, &mime.text)?,
        None => from_properties(ctx, message),
    };
    let mailbox = ctx.access.mailbox.clone();
    if disposition != Disposition::SaveOnly {
        if !outgoing.from.eq_ignore_ascii_case(&mailbox)
            && !auth::has_send_as(
                &ctx.emulator,
                ctx.access.tenant_id(),
                &outgoing.from,
                ctx.access.user().unwrap_or(&mailbox),
            )
        {
            return Ok(Err(ItemError::new("ErrorSendAsDenied")));
        }
        if outgoing.recipients.is_empty() {
            return Ok(Err(ItemError::new("ErrorInvalidRecipients")));
        }
    }
    let default_folder = if disposition == Disposition::SaveOnly {
        "Drafts"
    } else {
        "Sent Items"
    };
    let (target_mailbox, target_folder) = match saved_folder {
        Some(Ok(f)) => f.clone(),
        Some(Err(e)) => return Ok(Err(e.clone())),
        None => (mailbox.clone(), default_folder.to_owned()),
    };
    let store = ctx.store()?;
    if disposition != Disposition::SaveOnly {
        store
            .deliver(
                &outgoing.from,
                &outgoing.recipients,
                &without_bcc(&outgoing.raw),
            )
            .await
            .map_err(|e| store_fault(&e))?;
    }
    if disposition == Disposition::SendOnly {
        return Ok(Ok("<m:Items />".to_owned()));
    }
    // A saved item is read unless the request says `<t:IsRead>false</t:IsRead>`.
    let seen = !matches!(message.child_text(Ns::Types, "IsRead"), Some("false" | "0"));
    let id = store
        .append(&target_mailbox, &target_folder, &outgoing.raw, seen)
        .await
        .map_err(|e| store_fault(&e))?;
    if disposition == Disposition::SaveOnly {
        Ok(Ok(format!(
            "<m:Items><t:Message>{}</t:Message></m:Items>",
            ids::item_id_element(&id)
        )))
    } else {
        Ok(Ok("<m:Items />".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_is_removed_with_its_continuation_lines() {
        let raw = b"From: a@x\r\nBcc: b@x,\r\n c@x\r\nTo: d@x\r\n\r\nBcc: stays in body\r\n";
        assert_eq!(
            without_bcc(raw),
            b"From: a@x\r\nTo: d@x\r\n\r\nBcc: stays in body\r\n".to_vec()
        );
    }

    #[test]
    fn non_ascii_subjects_are_encoded_words() {
        assert_eq!(encode_word("Hello"), "Hello");
        assert_eq!(encode_word("Grüße"), "=?UTF-8?B?R3LDvMOfZQ==?=");
    }
}
