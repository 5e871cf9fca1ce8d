//! Attachments (§3.3, §3.6): list, get (JSON with `contentBytes`, or `$value`), add
//! (< 3 MB in one request) and upload sessions for 3-150 MB, whose `uploadUrl` is served
//! here without a bearer token, as Outlook's is.
//!
//! Attachments are added to drafts only: the draft's MIME is rewritten in the store at
//! once (a new UID in Dovecot, the same Graph id through [`super::Aliases`]), so IMAP
//! sees them as Exchange's clients would.
//!
//! <https://learn.microsoft.com/graph/outlook-large-attachments>,
//! <https://learn.microsoft.com/graph/api/attachment-createuploadsession>

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::auth::Need;
use super::compose::{FileAttachment, add_attachments};
use super::errors::{GraphError, RequestIds};
use super::json::{Attachment, attachments, graph_date};
use super::messages::{DRAFTS, exposed, parse_id, rewrite, summary};
use super::{Ctx, empty_response, ids, json_response, lock};
use crate::emulator::Emulator;
use crate::mailstore::StoredMessageId;

/// Smallest attachment an upload session takes (3 MB).
pub const MIN_SESSION_SIZE: u64 = 3 * 1024 * 1024;
/// Largest attachment (150 MB).
pub const MAX_SESSION_SIZE: u64 = 150 * 1024 * 1024;
/// Largest chunk per PUT (4 MB).
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// How long an upload session lives.
const SESSION_LIFETIME: time::Duration = time::Duration::hours(6);

/// An open upload session.
#[derive(Debug, Clone)]
pub struct UploadSession {
    /// The draft, by the id Graph shows for it.
    pub message: StoredMessageId,
    /// The `Users('…')/Messages('…')` part of the upload URL.
    pub resource: String,
    pub name: String,
    pub content_type: String,
    pub is_inline: bool,
    pub content_id: Option<String>,
    pub size: u64,
    pub data: Vec<u8>,
    pub expires: OffsetDateTime,
}

/// Every attachment of a message, in MIME order.
async fn all_attachments(ctx: &Ctx, sid: &StoredMessageId) -> Result<Vec<Attachment>, GraphError> {
    let store = ctx.store()?;
    let raw = store
        .fetch(sid)
        .await?
        .ok_or_else(GraphError::item_not_found)?;
    Ok(attachments(&raw))
}

/// Adds an attachment to a draft by rewriting its MIME; the attachment's index.
async fn attach_to_draft(
    emulator: &Emulator,
    current: &StoredMessageId,
    attachment: Attachment,
) -> Result<u32, GraphError> {
    if current.folder != DRAFTS {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidOperation",
            "Attachments can only be added to draft messages.",
        ));
    }
    let store = emulator
        .mail_store()
        .cloned()
        .ok_or_else(GraphError::item_not_found)?;
    let raw = store
        .fetch(current)
        .await?
        .ok_or_else(GraphError::item_not_found)?;
    let index = attachments(&raw).len();
    let raw = add_attachments(&raw, &[attachment]);
    rewrite(emulator, &store, current, &raw).await?;
    Ok(u32::try_from(index).unwrap_or(u32::MAX))
}

/// `GET messages/{id}/attachments`.
pub async fn list(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let store = ctx.store()?;
    let s = summary(&store, &sid).await?;
    let values: Vec<Value> = all_attachments(ctx, &sid)
        .await?
        .iter()
        .zip(0u32..)
        .map(|(a, i)| a.to_json(&ids::attachment_id(&exposed(ctx, &sid), i), s.received))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{}/messages('{id}')/attachments", ctx.context_prefix(&opened.mailbox)),
            "value": values,
        }),
    ))
}

/// `GET messages/{id}/attachments/{id}` and `.../$value`.
pub async fn get(ctx: &Ctx, id: &str, attachment: &str, raw: bool) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let (owner, index) =
        ids::parse_attachment_id(attachment).ok_or_else(GraphError::malformed_id)?;
    let shown = exposed(ctx, &sid);
    if owner.uid != shown.uid
        || owner.uid_validity != shown.uid_validity
        || owner.folder != shown.folder
    {
        return Err(GraphError::item_not_found());
    }
    let store = ctx.store()?;
    let s = summary(&store, &sid).await?;
    let list = all_attachments(ctx, &sid).await?;
    let a = usize::try_from(index)
        .ok()
        .and_then(|i| list.get(i))
        .ok_or_else(GraphError::item_not_found)?;
    if raw {
        let mut r = Response::new(Body::from(a.bytes.clone()));
        if let Ok(v) = HeaderValue::from_str(&a.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        return Ok(r);
    }
    let mut v = a.to_json(attachment, s.received);
    v["@odata.context"] = json!(format!(
        "{}/messages('{id}')/attachments/$entity",
        ctx.context_prefix(&opened.mailbox)
    ));
    Ok(json_response(StatusCode::OK, &v))
}

/// `POST messages/{id}/attachments` with a `fileAttachment`: 201.
pub async fn add(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    if ctx.body.len() > super::REQUEST_LIMIT {
        return Err(super::send::too_large());
    }
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let file: FileAttachment =
        serde_json::from_value(ctx.json_body()?).map_err(GraphError::invalid_body)?;
    let attachment = file.decode().ok_or_else(|| {
        GraphError::invalid_body("a fileAttachment with base64 contentBytes is required")
    })?;
    let store = ctx.store()?;
    let s = summary(&store, &sid).await?;
    let shown = exposed(ctx, &sid);
    let json_of = attachment.clone();
    let index = attach_to_draft(&ctx.emulator, &sid, attachment).await?;
    let mut v = json_of.to_json(&ids::attachment_id(&shown, index), s.received);
    v["@odata.context"] = json!(format!(
        "{}/messages('{id}')/attachments/$entity",
        ctx.context_prefix(&opened.mailbox)
    ));
    Ok(json_response(StatusCode::CREATED, &v))
}

/// `POST messages/{id}/attachments/createUploadSession`: 201 with the `uploadUrl`.
pub async fn create_upload_session(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let body = ctx.json_body()?;
    let item = body
        .get("AttachmentItem")
        .or_else(|| body.get("attachmentItem"))
        .ok_or_else(|| GraphError::invalid_body("AttachmentItem is required"))?;
    let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
    let size = item
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| GraphError::invalid_body("AttachmentItem.size is required"))?;
    let name =
        s("name").ok_or_else(|| GraphError::invalid_body("AttachmentItem.name is required"))?;
    let is_inline = item
        .get("isInline")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if size < MIN_SESSION_SIZE && !is_inline {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        ));
    }
    if size > MAX_SESSION_SIZE {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ErrorRequestEntityTooLarge",
            "The attachment exceeds the maximum size of 150 MB.",
        ));
    }
    let store = ctx.store()?;
    summary(&store, &sid).await?;
    if sid.folder != DRAFTS {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidOperation",
            "Attachments can only be added to draft messages.",
        ));
    }
    let now = ctx.emulator.now();
    let mb = &opened.mailbox;
    let resource = format!(
        "Users('{}@{}')/Messages('{}')",
        mb.object_id,
        mb.tenant_id,
        ids::message_id(&sid)
    );
    let session_id = crate::crypto::random_token(32);
    let auth_token = crate::crypto::random_token(64);
    let upload_url = format!(
        "{}/api/v2.0/{resource}/AttachmentSessions('{session_id}')?authtoken={auth_token}",
        ctx.emulator.base_url()
    );
    let expires = now + SESSION_LIFETIME;
    lock(&ctx.emulator.graph_state().uploads).insert(
        auth_token,
        UploadSession {
            message: exposed(ctx, &sid),
            resource,
            name,
            content_type: s("contentType").unwrap_or_else(|| "application/octet-stream".to_owned()),
            is_inline,
            content_id: s("contentId"),
            size,
            data: Vec::new(),
            expires,
        },
    );
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "@odata.context": format!("{}/$metadata#microsoft.graph.uploadSession", ctx.root()),
            "uploadUrl": upload_url,
            "expirationDateTime": graph_date(expires),
            "nextExpectedRanges": ["0-"],
        }),
    ))
}

/// Parses `bytes a-b/total`.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, total) = (
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (a <= b && b < total).then_some((a, b, total))
}

fn invalid_range(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message)
}

/// The upload URL: `PUT` a chunk, `DELETE` to cancel.
pub async fn upload_url(State(emulator): State<Emulator>, request: Request) -> Response {
    let ids = RequestIds::for_request(request.headers());
    let mut r = match upload(&emulator, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(&ids, emulator.now()),
    };
    ids.decorate(&mut r);
    r
}

async fn upload(emulator: &Emulator, request: Request) -> Result<Response, GraphError> {
    let (parts, body) = request.into_parts();
    let token = super::query::pairs(parts.uri.query())
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authtoken"))
        .map(|(_, v)| v)
        .unwrap_or_default();
    let uploads = &emulator.graph_state().uploads;
    let now = emulator.now();
    let expired = lock(uploads).get(&token).map(|s| s.expires <= now);
    match expired {
        None => return Err(GraphError::item_not_found()),
        Some(true) => {
            lock(uploads).remove(&token);
            return Err(GraphError::item_not_found());
        }
        Some(false) => {}
    }
    if parts.method == Method::DELETE {
        lock(uploads).remove(&token);
        return Ok(empty_response(StatusCode::NO_CONTENT));
    }
    if parts.method != Method::PUT {
        return Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ErrorInvalidRequest",
            "The upload URL takes PUT and DELETE.",
        ));
    }
    let range = parts
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(content_range)
        .ok_or_else(|| invalid_range("The Content-Range header is missing or malformed."))?;
    let chunk: Bytes = axum::body::to_bytes(body, MAX_CHUNK + 1)
        .await
        .map_err(|_| invalid_range("A chunk may not be larger than 4 MB."))?;
    let (start, end, total) = range;
    let base = emulator.base_url();
    let session = {
        let mut sessions = lock(uploads);
        let Some(session) = sessions.get_mut(&token) else {
            return Err(GraphError::item_not_found());
        };
        let received = session.data.len() as u64;
        if total != session.size {
            return Err(invalid_range(format!(
                "The total size in Content-Range ({total}) differs from the session's size ({}).",
                session.size
            )));
        }
        if start != received {
            return Err(GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "ErrorInvalidRequest",
                format!(
                    "The Content-Range starts at {start}; the next expected range is {received}-."
                ),
            ));
        }
        if chunk.len() as u64 != end - start + 1 {
            return Err(invalid_range(
                "The body length differs from the length given in Content-Range.",
            ));
        }
        session.data.extend_from_slice(&chunk);
        let received = session.data.len() as u64;
        if received < session.size {
            let body = json!({
                "@odata.context": format!("{base}/api/v2.0/$metadata#{}/AttachmentSessions/$entity", session.resource),
                "ExpirationDateTime": graph_date(session.expires),
                "NextExpectedRanges": [received.to_string()],
            });
            return Ok(json_response(StatusCode::OK, &body));
        }
        let Some(session) = sessions.remove(&token) else {
            return Err(GraphError::item_not_found());
        };
        session
    };
    let current = lock(&emulator.graph_state().aliases).current(&session.message);
    let index = attach_to_draft(
        emulator,
        &current,
        Attachment {
            name: session.name,
            content_type: session.content_type,
            is_inline: session.is_inline,
            content_id: session.content_id,
            bytes: session.data,
        },
    )
    .await?;
    let location = format!(
        "{base}/api/v2.0/{}/Attachments('{}')",
        session.resource,
        ids::attachment_id(&session.message, index)
    );
    let mut r = empty_response(StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            content_range("bytes 0-2097151/3483322"),
            Some((0, 2_097_151, 3_483_322))
        );
        assert_eq!(content_range("bytes 5-4/10"), None);
        assert_eq!(content_range("bytes 0-10/10"), None);
        assert_eq!(content_range("bytes */10"), None);
        assert_eq!(content_range("0-1/2"), None);
    }
}
