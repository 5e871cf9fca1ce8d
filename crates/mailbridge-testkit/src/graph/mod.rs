//! Microsoft Graph v1.0 mail (`microsoft-protocols.md` §3), served from the Dovecot
//! mailboxes through [`crate::mailstore::MailStore`].
//!
//! Parts, one file per endpoint group:
//! - [`messages`]: list, get, `$value`, PATCH, move, copy, DELETE, drafts, `mailFolders`;
//! - [`delta`]: `mailFolders/{id}/messages/delta` with server-side sync state;
//! - [`send`]: `sendMail` (JSON and base64 MIME) and `messages/{id}/send`;
//! - [`attachments`]: attachments and upload sessions (the `uploadUrl` is served here);
//! - [`auth`]: bearer tokens, `Mail.*` permissions, access policies, licensing;
//! - [`throttle`]: per app+mailbox concurrency and request budget, injected faults;
//! - [`errors`]: the error envelope and correlation headers; [`ids`]: Graph ids;
//!   [`json`]: MIME -> message JSON; [`compose`]: message JSON -> MIME; [`query`]: OData
//!   query options and `Prefer`.

pub mod attachments;
pub mod auth;
pub mod compose;
pub mod delta;
pub mod errors;
pub mod ids;
pub mod json;
pub mod messages;
pub mod query;
pub mod send;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use serde_json::Value;

use crate::emulator::Emulator;
use crate::mailstore::{MailStore, StoredMessageId};
use crate::tokens::AccessToken;
use auth::{Mailbox, Need, Target};
use errors::{GraphError, ODATA_JSON, RequestIds};

pub use throttle::{HoldGuard, hold_requests, in_flight};

/// Largest request body read on `/v1.0` (Graph: 4 MB; the rest is for a clear 413).
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Graph's request size limit: larger bodies need an upload session.
pub const REQUEST_LIMIT: usize = 4 * 1024 * 1024;

/// Graph's per-emulator state: throttling counters, delta sync state, upload sessions
/// and the ids of rewritten drafts.
#[derive(Debug, Default)]
pub struct GraphState {
    pub(crate) throttle: throttle::Throttle,
    pub(crate) delta: Mutex<HashMap<String, delta::DeltaToken>>,
    pub(crate) uploads: Mutex<HashMap<String, attachments::UploadSession>>,
    pub(crate) aliases: Mutex<Aliases>,
}

/// Drafts rewritten in the store (an attachment added) get a new UID; Graph keeps
/// their id. `forward` maps the id Graph exposes to where the message is now,
/// `reverse` the other way.
#[derive(Debug, Default)]
pub struct Aliases {
    forward: HashMap<StoredMessageId, StoredMessageId>,
    reverse: HashMap<StoredMessageId, StoredMessageId>,
}

impl Aliases {
    /// Where the message Graph calls `exposed` is now.
    pub(crate) fn current(&self, exposed: &StoredMessageId) -> StoredMessageId {
        self.forward
            .get(exposed)
            .cloned()
            .unwrap_or_else(|| exposed.clone())
    }

    /// The id Graph shows for the message stored at `current`.
    pub(crate) fn exposed(&self, current: &StoredMessageId) -> StoredMessageId {
        self.reverse
            .get(current)
            .cloned()
            .unwrap_or_else(|| current.clone())
    }

    /// The message at `old` was rewritten to `new`.
    pub(crate) fn rewritten(&mut self, old: &StoredMessageId, new: &StoredMessageId) {
        let exposed = self.exposed(old);
        self.reverse.remove(old);
        self.reverse.insert(new.clone(), exposed.clone());
        self.forward.insert(exposed, new.clone());
    }

    /// The message at `current` moved or was deleted: it gets a new Graph id.
    pub(crate) fn forget(&mut self, current: &StoredMessageId) {
        if let Some(exposed) = self.reverse.remove(current) {
            self.forward.remove(&exposed);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Graph routes: `/v1.0/...` and the upload-session URLs (`/api/v2.0/...`).
pub fn router() -> Router<Emulator> {
    Router::new()
        .route("/v1.0/{*rest}", any(dispatch))
        .route("/api/v2.0/{*rest}", any(attachments::upload_url))
}

/// One Graph request after authentication.
#[derive(Debug)]
pub struct Ctx {
    pub emulator: Emulator,
    pub token: AccessToken,
    pub target: Target,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    /// The request path below `/v1.0/`, as sent (for `@odata.nextLink`).
    pub path: String,
}

/// A mailbox opened for one request, holding its throttling permit.
#[derive(Debug)]
pub struct Opened {
    pub mailbox: Mailbox,
    _permit: throttle::Permit,
}

impl Ctx {
    /// Checks access to the addressed mailbox, admits the request (or 429s it) and
    /// waits while tests hold requests in flight.
    pub async fn open(&self, need: Need) -> Result<Opened, GraphError> {
        let mailbox = auth::open_mailbox(&self.emulator, &self.token, &self.target, need)?;
        let permit = throttle::admit(&self.emulator, self.token.app_id, &mailbox.upn)?;
        throttle::wait_if_held(&self.emulator).await;
        Ok(Opened {
            mailbox,
            _permit: permit,
        })
    }

    /// The mail store.
    pub fn store(&self) -> Result<MailStore, GraphError> {
        self.emulator.mail_store().cloned().ok_or_else(|| {
            GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceNotAvailable",
                "The mailbox store is not attached to the emulator.",
            )
        })
    }

    /// The `Prefer` header.
    pub fn prefer(&self) -> query::Prefer {
        query::Prefer::parse(
            self.headers
                .get_all("prefer")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }

    /// The Graph root as clients see it (`{base}/v1.0`).
    pub fn root(&self) -> String {
        format!("{}/v1.0", self.emulator.base_url())
    }

    /// The body as JSON.
    pub fn json_body(&self) -> Result<Value, GraphError> {
        if self.body.is_empty() {
            return Err(GraphError::invalid_body("empty body"));
        }
        serde_json::from_slice(&self.body).map_err(|_| {
            GraphError::bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )
        })
    }

    /// `@odata.context` prefix for this mailbox: `{root}/$metadata#users('x')`.
    pub fn context_prefix(&self, mailbox: &Mailbox) -> String {
        let who = match &self.target {
            Target::Me => mailbox.object_id.to_string(),
            Target::User(id) => id.clone(),
        };
        format!(
            "{}/$metadata#users('{}')",
            self.root(),
            percent_encoding::utf8_percent_encode(&who, percent_encoding::NON_ALPHANUMERIC)
        )
    }
}

/// A JSON answer with Graph's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
    r
}

/// An empty answer.
pub fn empty_response(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

async fn dispatch(State(emulator): State<Emulator>, request: Request) -> Response {
    let ids = RequestIds::for_request(request.headers());
    let mut response = match handle(emulator.clone(), request).await {
        Ok(r) => r,
        Err(e) => e.into_response(&ids, emulator.now()),
    };
    ids.decorate(&mut response);
    response
}

/// Splits `/v1.0/...` into decoded segments, turning `name('key')` into `name`, `key`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned();
        match decoded.split_once('(') {
            Some((name, rest)) if rest.ends_with(')') && !name.is_empty() => {
                out.push(name.to_owned());
                let key = rest.trim_end_matches(')').trim_matches('\'');
                out.push(key.replace("''", "'"));
            }
            _ => out.push(decoded),
        }
    }
    out
}

/// What a path asks for below the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Messages { folder: Option<String> },
    Delta { folder: Option<String> },
    Message(String),
    MessageValue(String),
    Action(String, &'static str),
    Attachments(String),
    UploadSession(String),
    Attachment(String, String),
    AttachmentValue(String, String),
    Folders,
    Folder(String),
    SendMail,
}

fn route(rest: &[String]) -> Result<Route, GraphError> {
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let arg = |i: usize| rest.get(i).cloned().unwrap_or_default();
    // `mailFolders/{f}/messages/...` addresses messages like `messages/...`.
    let (folder, m, base) = match l.as_slice() {
        ["mailfolders"] => return Ok(Route::Folders),
        ["mailfolders", _] => return Ok(Route::Folder(arg(1))),
        ["mailfolders", _, "messages", ..] => (Some(arg(1)), l.get(3..).unwrap_or_default(), 3),
        ["messages", ..] => (None, l.get(1..).unwrap_or_default(), 1),
        ["sendmail"] => return Ok(Route::SendMail),
        _ => {
            let seg = rest.first().cloned().unwrap_or_default();
            return Err(GraphError::bad_request(format!(
                "Resource not found for the segment '{seg}'."
            )));
        }
    };
    let id = arg(base);
    let r = match m {
        [] => Route::Messages { folder },
        ["delta"] => Route::Delta { folder },
        [_] => Route::Message(id),
        [_, "$value"] => Route::MessageValue(id),
        [_, "move"] => Route::Action(id, "move"),
        [_, "copy"] => Route::Action(id, "copy"),
        [_, "send"] => Route::Action(id, "send"),
        [_, "permanentdelete"] => Route::Action(id, "permanentDelete"),
        [_, "attachments"] => Route::Attachments(id),
        [_, "attachments", "createuploadsession"] => Route::UploadSession(id),
        [_, "attachments", _] => Route::Attachment(id, arg(base + 2)),
        [_, "attachments", _, "$value"] => Route::AttachmentValue(id, arg(base + 2)),
        _ => {
            let seg = rest.last().cloned().unwrap_or_default();
            return Err(GraphError::bad_request(format!(
                "Resource not found for the segment '{seg}'."
            )));
        }
    };
    Ok(r)
}

fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

async fn handle(emulator: Emulator, request: Request) -> Result<Response, GraphError> {
    let (parts, body) = request.into_parts();
    let token = auth::authenticate(&emulator, &parts.headers)?;
    let path = parts
        .uri
        .path()
        .strip_prefix("/v1.0/")
        .unwrap_or_default()
        .to_owned();
    let segs = segments(&path);
    let (target, rest) = match segs.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("me") => (Target::Me, segs.get(1..).unwrap_or_default()),
        Some("users") if segs.len() >= 2 => (
            Target::User(segs.get(1).cloned().unwrap_or_default()),
            segs.get(2..).unwrap_or_default(),
        ),
        _ => {
            let seg = segs.first().cloned().unwrap_or_default();
            return Err(GraphError::bad_request(format!(
                "Resource not found for the segment '{seg}'."
            )));
        }
    };
    let route = route(rest)?;
    let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ErrorRequestEntityTooLarge",
            "The request body is too large. Use an upload session for large attachments.",
        )
    })?;
    let ctx = Ctx {
        emulator,
        token,
        target,
        method: parts.method.clone(),
        headers: parts.headers,
        query: query::pairs(parts.uri.query()),
        body,
        path,
    };
    // A read whose store connection broke (Dovecot restarts a crashed process) is
    // tried again, as Exchange retries internally.
    let mut result = run(&ctx, &route).await;
    for attempt in 1..=3u64 {
        match &result {
            Err(e) if e.transient && ctx.method == Method::GET => {
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                result = run(&ctx, &route).await;
            }
            _ => break,
        }
    }
    result
}

async fn run(ctx: &Ctx, route: &Route) -> Result<Response, GraphError> {
    let m = &ctx.method;
    match route.clone() {
        Route::Messages { folder } if m == Method::GET => {
            messages::list(ctx, folder.as_deref()).await
        }
        Route::Messages { folder: None } if m == Method::POST => messages::create_draft(ctx).await,
        Route::Delta { folder } if m == Method::GET => delta::delta(ctx, folder.as_deref()).await,
        Route::Message(id) if m == Method::GET => messages::get(ctx, &id).await,
        Route::Message(id) if m == Method::PATCH => messages::patch(ctx, &id).await,
        Route::Message(id) if m == Method::DELETE => messages::delete(ctx, &id).await,
        Route::MessageValue(id) if m == Method::GET => messages::value(ctx, &id).await,
        Route::Action(id, "move") if m == Method::POST => {
            messages::move_or_copy(ctx, &id, true).await
        }
        Route::Action(id, "copy") if m == Method::POST => {
            messages::move_or_copy(ctx, &id, false).await
        }
        Route::Action(id, "permanentDelete") if m == Method::POST => {
            messages::permanent_delete(ctx, &id).await
        }
        Route::Action(id, "send") if m == Method::POST => send::send_draft(ctx, &id).await,
        Route::Attachments(id) if m == Method::GET => attachments::list(ctx, &id).await,
        Route::Attachments(id) if m == Method::POST => attachments::add(ctx, &id).await,
        Route::UploadSession(id) if m == Method::POST => {
            attachments::create_upload_session(ctx, &id).await
        }
        Route::Attachment(id, att) if m == Method::GET => {
            attachments::get(ctx, &id, &att, false).await
        }
        Route::AttachmentValue(id, att) if m == Method::GET => {
            attachments::get(ctx, &id, &att, true).await
        }
        Route::Folders if m == Method::GET => messages::folders(ctx).await,
        Route::Folders if m == Method::POST => messages::create_folder(ctx).await,
        Route::Folder(f) if m == Method::GET => messages::folder(ctx, &f).await,
        Route::Folder(f) if m == Method::DELETE => messages::delete_folder(ctx, &f).await,
        Route::SendMail if m == Method::POST => send::send_mail(ctx).await,
        _ => Err(method_not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str) -> Result<Route, GraphError> {
        route(&segments(path))
    }

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(r("messages").unwrap(), Route::Messages { folder: None });
        assert_eq!(
            r("mailFolders/inbox/messages").unwrap(),
            Route::Messages {
                folder: Some("inbox".into())
            }
        );
        assert_eq!(
            r("mailfolders('AQMk%3D')/messages/delta").unwrap(),
            Route::Delta {
                folder: Some("AQMk=".into())
            }
        );
        assert_eq!(
            r("messages/AAMk=/$value").unwrap(),
            Route::MessageValue("AAMk=".into())
        );
        assert_eq!(
            r("messages/X/move").unwrap(),
            Route::Action("X".into(), "move")
        );
        assert_eq!(
            r("messages/X/attachments/createUploadSession").unwrap(),
            Route::UploadSession("X".into())
        );
        assert_eq!(
            r("mailFolders/inbox/messages/X/attachments/Y/$value").unwrap(),
            Route::AttachmentValue("X".into(), "Y".into())
        );
        assert_eq!(r("sendMail").unwrap(), Route::SendMail);
        assert_eq!(
            r("calendar").unwrap_err().message,
            "Resource not found for the segment 'calendar'."
        );
    }
}
