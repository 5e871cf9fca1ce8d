//! Sending (§3.5): `POST sendMail` with a JSON message or a base64 MIME body, and
//! `POST messages/{id}/send` for drafts (with attachments added through Graph).
//! Messages go out through [`crate::mailstore::MailStore::deliver`] (Postfix, then
//! LMTP into Dovecot) and a copy lands in Sent Items.
//!
//! <https://learn.microsoft.com/graph/api/user-sendmail>,
//! <https://learn.microsoft.com/graph/api/message-send>

use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine;
use mail_parser::MessageParser;
use serde_json::Value;

use super::auth::Need;
use super::compose::{self, OutgoingMessage};
use super::errors::GraphError;
use super::messages::{SENT_ITEMS, parse_id};
use super::{Ctx, empty_response, lock};

/// 413 for bodies over Graph's 4 MB request limit.
pub fn too_large() -> GraphError {
    GraphError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ErrorRequestEntityTooLarge",
        "The request body is too large. Use an upload session for attachments over 3 MB.",
    )
}

fn no_recipients() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "ErrorInvalidRecipients",
        "At least one recipient is required, but none were found.",
    )
}

/// `saveToSentItems`: a boolean or the strings `"true"` / `"false"` (the doc sample
/// sends a string); default true.
fn save_to_sent(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
        _ => true,
    }
}

/// Every recipient (To, Cc, Bcc) of a MIME message.
pub fn mime_recipients(raw: &[u8]) -> Vec<String> {
    let Some(m) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    [m.to(), m.cc(), m.bcc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address.as_deref())
        .map(str::to_owned)
        .collect()
}

/// Delivers `raw` (Bcc removed) and keeps a copy in Sent Items when asked.
async fn submit(
    ctx: &Ctx,
    from: &str,
    recipients: &[String],
    raw: &[u8],
    save_copy: bool,
) -> Result<(), GraphError> {
    let store = ctx.store()?;
    store
        .deliver(from, recipients, &compose::without_bcc(raw))
        .await?;
    if save_copy {
        store.append(from, SENT_ITEMS, raw, true).await?;
    }
    Ok(())
}

/// `POST sendMail`: 202 with an empty body.
pub async fn send_mail(ctx: &Ctx) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Send).await?;
    let mb = &opened.mailbox;
    if ctx.body.len() > super::REQUEST_LIMIT {
        return Err(too_large());
    }
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let now = ctx.emulator.now();
    if content_type.starts_with("text/plain") {
        let text: Vec<u8> = ctx
            .body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "ErrorMimeContentInvalidBase64String",
                    "Invalid base64 string for MIME content.",
                )
            })?;
        if MessageParser::default().parse(&raw).is_none() || raw.is_empty() {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorMimeContentInvalid",
                "The MIME content is invalid.",
            ));
        }
        let raw = compose::complete_headers(&raw, &mb.upn, now);
        let recipients = mime_recipients(&raw);
        if recipients.is_empty() {
            return Err(no_recipients());
        }
        submit(ctx, &mb.upn, &recipients, &raw, true).await?;
        return Ok(empty_response(StatusCode::ACCEPTED));
    }
    let body = ctx.json_body()?;
    let message: OutgoingMessage = serde_json::from_value(
        body.get("message")
            .or_else(|| body.get("Message"))
            .cloned()
            .ok_or_else(|| GraphError::invalid_body("the message property is required"))?,
    )
    .map_err(GraphError::invalid_body)?;
    message.check_headers()?;
    if message.attachments.iter().any(|a| a.decode().is_none()) {
        return Err(GraphError::invalid_body(
            "an attachment is not a fileAttachment with base64 contentBytes",
        ));
    }
    let recipients = message.envelope_recipients();
    if recipients.is_empty() {
        return Err(no_recipients());
    }
    let raw = compose::build_mime(&message, &mb.display_name, &mb.upn, &[], now);
    let save = save_to_sent(body.get("saveToSentItems"));
    submit(ctx, &mb.upn, &recipients, &raw, save).await?;
    Ok(empty_response(StatusCode::ACCEPTED))
}

/// `POST messages/{id}/send`: sends a draft with the attachments added to it, then
/// moves it to Sent Items; 202.
pub async fn send_draft(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Send).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let store = ctx.store()?;
    let raw = store
        .fetch(&sid)
        .await?
        .ok_or_else(GraphError::item_not_found)?;
    let recipients = mime_recipients(&raw);
    if recipients.is_empty() {
        return Err(no_recipients());
    }
    submit(ctx, &opened.mailbox.upn, &recipients, &raw, true).await?;
    store.delete(&sid).await?;
    lock(&ctx.emulator.graph_state().aliases).forget(&sid);
    Ok(empty_response(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_to_sent_items_takes_bools_and_strings() {
        assert!(save_to_sent(None));
        assert!(!save_to_sent(Some(&Value::Bool(false))));
        assert!(!save_to_sent(Some(&Value::String("false".into()))));
        assert!(save_to_sent(Some(&Value::String("true".into()))));
    }

    #[test]
    fn recipients_of_mime_include_bcc() {
        let raw = b"From: a@x.example\r\nTo: B <b@x.example>\r\nCc: c@x.example\r\nBcc: d@x.example\r\nSubject: s\r\n\r\nhi\r\n";
        assert_eq!(
            mime_recipients(raw),
            ["b@x.example", "c@x.example", "d@x.example"]
        );
    }
}
