//! Messages and folders: list, get, `$value`, PATCH `isRead`, move, copy, DELETE,
//! `permanentDelete`, drafts (`POST messages`) and `mailFolders` (§3.1, §3.3, §3.4).
//!
//! <https://learn.microsoft.com/graph/api/user-list-messages>,
//! <https://learn.microsoft.com/graph/api/message-move>,
//! <https://learn.microsoft.com/graph/api/message-get>

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::auth::{Mailbox, Need};
use super::errors::GraphError;
use super::json::{MessageMeta, message_json, select};
use super::query::{ListQuery, Order};
use super::{Ctx, empty_response, ids, json_response, lock};
use crate::mailstore::{
    MailStore, MessageSummary, StoredMessageId, WELL_KNOWN_FOLDERS, folder_for_well_known,
};

/// The IMAP folder holding drafts.
pub const DRAFTS: &str = "Drafts";
/// The IMAP folder of Sent Items.
pub const SENT_ITEMS: &str = "Sent Items";
/// The IMAP folder of Deleted Items.
pub const DELETED_ITEMS: &str = "Deleted Items";

/// Resolves a folder id or well-known name to the IMAP folder of `mailbox`.
pub fn resolve_folder(mailbox: &Mailbox, folder: &str) -> Result<String, GraphError> {
    if let Some(f) = folder_for_well_known(folder) {
        return Ok(f.to_owned());
    }
    if let Some((owner, name)) = ids::parse_folder_id(folder) {
        if !owner.eq_ignore_ascii_case(&mailbox.upn) {
            return Err(GraphError::item_not_found());
        }
        return Ok(name);
    }
    if folder.len() < 40 && folder.bytes().all(|b| b.is_ascii_alphabetic()) {
        // A well-known name Exchange has but the harness does not create (outbox, ...).
        return Err(GraphError::item_not_found());
    }
    Err(GraphError::malformed_id())
}

/// A Graph message id of this mailbox, parsed: where the message is stored now.
pub fn parse_id(ctx: &Ctx, mailbox: &Mailbox, id: &str) -> Result<StoredMessageId, GraphError> {
    let mut stored = ids::parse_message_id(id).ok_or_else(GraphError::malformed_id)?;
    if !stored.mailbox.eq_ignore_ascii_case(&mailbox.upn) {
        return Err(GraphError::item_not_found());
    }
    stored.mailbox.clone_from(&mailbox.upn);
    Ok(lock(&ctx.emulator.graph_state().aliases).current(&stored))
}

/// The stored id Graph shows for the message stored at `current`.
pub fn exposed(ctx: &Ctx, current: &StoredMessageId) -> StoredMessageId {
    lock(&ctx.emulator.graph_state().aliases).exposed(current)
}

/// Replaces a draft's MIME in the store, keeping its Graph id.
pub async fn rewrite(
    emulator: &crate::emulator::Emulator,
    store: &MailStore,
    current: &StoredMessageId,
    raw: &[u8],
) -> Result<StoredMessageId, GraphError> {
    let s = summary(store, current).await?;
    let new = store
        .append(&current.mailbox, &current.folder, raw, s.seen)
        .await?;
    store.delete(current).await?;
    lock(&emulator.graph_state().aliases).rewritten(current, &new);
    Ok(new)
}

/// The message at `current` moved or went away.
fn forget(ctx: &Ctx, current: &StoredMessageId) {
    lock(&ctx.emulator.graph_state().aliases).forget(current);
}

/// The summary of a stored message, `ErrorItemNotFound` when it is gone.
pub async fn summary(
    store: &MailStore,
    id: &StoredMessageId,
) -> Result<MessageSummary, GraphError> {
    store
        .summary(id)
        .await?
        .ok_or_else(GraphError::item_not_found)
}

/// Whether a summary carries an IMAP flag.
pub fn has_flag(s: &MessageSummary, flag: &str) -> bool {
    s.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// The message's metadata for [`message_json`].
pub fn meta(ctx: &Ctx, s: &MessageSummary) -> MessageMeta {
    MessageMeta {
        id: ids::message_id(&exposed(ctx, &s.id)),
        parent_folder_id: ids::folder_id(&s.id.mailbox, &s.id.folder),
        is_read: s.seen,
        flagged: has_flag(s, "\\Flagged"),
        is_draft: s.id.folder == DRAFTS || has_flag(s, "\\Draft"),
        received: s.received,
        revision: s.id.uid,
    }
}

/// The full JSON of a stored message (`None` when it vanished meanwhile).
pub async fn message_value(
    ctx: &Ctx,
    store: &MailStore,
    s: &MessageSummary,
) -> Result<Option<Map<String, Value>>, GraphError> {
    let Some(raw) = store.fetch(&s.id).await? else {
        return Ok(None);
    };
    let meta = meta(ctx, s);
    Ok(Some(
        message_json(&raw, &meta, ctx.prefer().body).unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert("id".into(), json!(meta.id));
            m
        }),
    ))
}

/// Adds `Preference-Applied` for a body-type preference.
pub fn preference_applied(ctx: &Ctx, response: &mut Response) {
    if let Some(b) = ctx.prefer().body {
        let v = match b {
            super::json::BodyPreference::Text => "outlook.body-content-type=\"text\"",
            super::json::BodyPreference::Html => "outlook.body-content-type=\"html\"",
        };
        response
            .headers_mut()
            .insert("preference-applied", HeaderValue::from_static(v));
    }
}

/// `GET messages`, `GET mailFolders/{id}/messages`.
pub async fn list(ctx: &Ctx, folder: Option<&str>) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let mb = &opened.mailbox;
    let q = ListQuery::parse(ctx.query.clone())?;
    let folders = match folder {
        Some(f) => vec![resolve_folder(mb, f)?],
        None => Vec::new(),
    };
    let store = ctx.store()?;
    let folders = if folder.is_some() {
        folders
    } else {
        store
            .folders(&mb.upn)
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect()
    };
    let mut all = Vec::new();
    for f in &folders {
        all.extend(store.list(&mb.upn, f).await?);
    }
    all.retain(|s| q.filter.matches(s.seen, s.received));
    all.sort_by_key(|a| (a.received, a.id.uid));
    if q.order == Order::NewestFirst {
        all.reverse();
    }
    let total = all.len();
    let mut values = Vec::new();
    for s in all.iter().skip(q.skip).take(q.top) {
        if let Some(v) = message_value(ctx, &store, s).await? {
            values.push(Value::Object(select(v, q.select.as_deref())));
        }
    }
    let where_ = match folder {
        Some(f) => format!("/mailFolders('{f}')/messages"),
        None => "/messages".to_owned(),
    };
    let selected = q
        .select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let mut body = json!({
        "@odata.context": format!("{}{where_}{selected}", ctx.context_prefix(mb)),
        "value": values,
    });
    if q.skip + q.top < total {
        body["@odata.nextLink"] = json!(format!("{}/{}?{}", ctx.root(), ctx.path, q.next_query()));
    }
    let mut r = json_response(StatusCode::OK, &body);
    preference_applied(ctx, &mut r);
    Ok(r)
}

/// `GET messages/{id}`.
pub async fn get(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let store = ctx.store()?;
    let s = summary(&store, &sid).await?;
    let v = message_value(ctx, &store, &s)
        .await?
        .ok_or_else(GraphError::item_not_found)?;
    let sel = super::query::parse_select(&ctx.query)?;
    let mut v = select(v, sel.as_deref());
    v.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/messages/$entity",
            ctx.context_prefix(&opened.mailbox)
        )),
    );
    let mut r = json_response(StatusCode::OK, &Value::Object(v));
    preference_applied(ctx, &mut r);
    Ok(r)
}

/// `GET messages/{id}/$value`: the MIME, served as `text/plain` as Graph does.
pub async fn value(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let store = ctx.store()?;
    let raw = store
        .fetch(&sid)
        .await?
        .ok_or_else(GraphError::item_not_found)?;
    let mut r = Response::new(Body::from(raw));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

/// The message JSON of a just-changed message, answered with `status`.
async fn answer_message(
    ctx: &Ctx,
    store: &MailStore,
    mailbox: &Mailbox,
    sid: &StoredMessageId,
    status: StatusCode,
) -> Result<Response, GraphError> {
    let s = summary(store, sid).await?;
    let v = message_value(ctx, store, &s)
        .await?
        .ok_or_else(GraphError::item_not_found)?;
    let mut v = select(v, None);
    v.insert(
        "@odata.context".into(),
        json!(format!("{}/messages/$entity", ctx.context_prefix(mailbox))),
    );
    Ok(json_response(status, &Value::Object(v)))
}

/// `PATCH messages/{id}`: `isRead` and `flag.flagStatus` (IMAP `\Flagged`) are applied;
/// other properties are accepted and ignored.
pub async fn patch(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let body = ctx.json_body()?;
    let store = ctx.store()?;
    if let Some(flag) = body.get("flag") {
        let status = flag
            .get("flagStatus")
            .and_then(Value::as_str)
            .ok_or_else(|| GraphError::invalid_body("flag.flagStatus is required"))?;
        let on = match status.to_ascii_lowercase().as_str() {
            "flagged" => true,
            "notflagged" | "complete" => false,
            _ => {
                return Err(GraphError::invalid_body(format!(
                    "The value '{status}' is not valid for flagStatus."
                )));
            }
        };
        if !store.set_flag(&sid, "\\Flagged", on).await? {
            return Err(GraphError::item_not_found());
        }
    }
    if let Some(v) = body.get("isRead") {
        let read = v.as_bool().ok_or_else(|| {
            GraphError::invalid_body(
                "Cannot convert the literal to the expected type 'Edm.Boolean'.",
            )
        })?;
        if !store.set_seen(&sid, read).await? {
            return Err(GraphError::item_not_found());
        }
    }
    answer_message(ctx, &store, &opened.mailbox, &sid, StatusCode::OK).await
}

/// `POST messages/{id}/move` and `/copy`: 201 with the message in its new folder.
pub async fn move_or_copy(ctx: &Ctx, id: &str, is_move: bool) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let body = ctx.json_body()?;
    let dest = body
        .get("destinationId")
        .or_else(|| body.get("DestinationId"))
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::invalid_body("destinationId is required"))?;
    let folder = resolve_folder(&opened.mailbox, dest)?;
    let store = ctx.store()?;
    let new_id = if is_move {
        store
            .move_to(&sid, &folder)
            .await?
            .ok_or_else(GraphError::item_not_found)?
    } else {
        let s = summary(&store, &sid).await?;
        let raw = store
            .fetch(&sid)
            .await?
            .ok_or_else(GraphError::item_not_found)?;
        store
            .append(&opened.mailbox.upn, &folder, &raw, s.seen)
            .await?
    };
    if is_move {
        forget(ctx, &sid);
    }
    answer_message(ctx, &store, &opened.mailbox, &new_id, StatusCode::CREATED).await
}

/// `DELETE messages/{id}`: moves to Deleted Items (or removes it from there), 204.
pub async fn delete(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let store = ctx.store()?;
    if sid.folder == DELETED_ITEMS {
        if !store.delete(&sid).await? {
            return Err(GraphError::item_not_found());
        }
        forget(ctx, &sid);
    } else {
        store
            .move_to(&sid, DELETED_ITEMS)
            .await?
            .ok_or_else(GraphError::item_not_found)?;
        forget(ctx, &sid);
    }
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `POST messages/{id}/permanentDelete`: gone for good, 204.
pub async fn permanent_delete(ctx: &Ctx, id: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let sid = parse_id(ctx, &opened.mailbox, id)?;
    let store = ctx.store()?;
    if !store.delete(&sid).await? {
        return Err(GraphError::item_not_found());
    }
    forget(ctx, &sid);
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `POST messages`: a draft in Drafts, 201.
pub async fn create_draft(ctx: &Ctx) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    if ctx.body.len() > super::REQUEST_LIMIT {
        return Err(super::send::too_large());
    }
    let message: super::compose::OutgoingMessage =
        serde_json::from_value(ctx.json_body()?).map_err(GraphError::invalid_body)?;
    message.check_headers()?;
    let raw = super::compose::build_mime(
        &message,
        &opened.mailbox.display_name,
        &opened.mailbox.upn,
        &[],
        ctx.emulator.now(),
    );
    let store = ctx.store()?;
    let sid = store
        .append(&opened.mailbox.upn, DRAFTS, &raw, true)
        .await?;
    answer_message(ctx, &store, &opened.mailbox, &sid, StatusCode::CREATED).await
}

fn display_name(folder: &str) -> String {
    if folder.eq_ignore_ascii_case("INBOX") {
        "Inbox".to_owned()
    } else {
        folder.to_owned()
    }
}

fn folder_json(mailbox: &Mailbox, f: &crate::mailstore::FolderInfo) -> Value {
    json!({
        "id": ids::folder_id(&mailbox.upn, &f.name),
        "displayName": display_name(&f.name),
        "parentFolderId": ids::folder_id(&mailbox.upn, ""),
        "childFolderCount": 0,
        "unreadItemCount": f.unread,
        "totalItemCount": f.total,
        "sizeInBytes": 0,
        "isHidden": false,
    })
}

/// Orders folders as Outlook lists them: the well-known ones first.
fn folder_rank(name: &str) -> usize {
    WELL_KNOWN_FOLDERS
        .iter()
        .position(|(_, f)| f.eq_ignore_ascii_case(name))
        .unwrap_or(WELL_KNOWN_FOLDERS.len())
}

/// `GET mailFolders`.
pub async fn folders(ctx: &Ctx) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    // Paging only: `$select`/`$filter` name folder properties, not message ones.
    let paging: Vec<(String, String)> = ctx
        .query
        .iter()
        .filter(|(k, _)| {
            let bare = k.trim_start_matches('$').to_ascii_lowercase();
            matches!(bare.as_str(), "top" | "skip" | "skiptoken")
        })
        .cloned()
        .collect();
    let q = ListQuery::parse(paging)?;
    let store = ctx.store()?;
    let mut list = store.folders(&opened.mailbox.upn).await?;
    list.sort_by(|a, b| (folder_rank(&a.name), &a.name).cmp(&(folder_rank(&b.name), &b.name)));
    let total = list.len();
    let values: Vec<Value> = list
        .iter()
        .skip(q.skip)
        .take(q.top)
        .map(|f| folder_json(&opened.mailbox, f))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/mailFolders", ctx.context_prefix(&opened.mailbox)),
        "value": values,
    });
    if q.skip + q.top < total {
        body["@odata.nextLink"] = json!(format!("{}/{}?{}", ctx.root(), ctx.path, q.next_query()));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET mailFolders/{id}`.
pub async fn folder(ctx: &Ctx, folder: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let name = resolve_folder(&opened.mailbox, folder)?;
    let store = ctx.store()?;
    let f = store
        .folders(&opened.mailbox.upn)
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(GraphError::item_not_found)?;
    let mut v = folder_json(&opened.mailbox, &f);
    v["@odata.context"] = json!(format!(
        "{}/mailFolders/$entity",
        ctx.context_prefix(&opened.mailbox)
    ));
    Ok(json_response(StatusCode::OK, &v))
}

/// `POST mailFolders` `{"displayName": …}`: 201 with the new folder.
pub async fn create_folder(ctx: &Ctx) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let body = ctx.json_body()?;
    let name = body
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GraphError::invalid_body("displayName is required"))?;
    let store = ctx.store()?;
    let info = match store.create_folder(&opened.mailbox.upn, name).await {
        Ok(info) => info,
        Err(crate::mailstore::MailStoreError::FolderExists(_)) => {
            return Err(GraphError::new(
                StatusCode::CONFLICT,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut v = folder_json(&opened.mailbox, &info);
    v["@odata.context"] = json!(format!(
        "{}/mailFolders/$entity",
        ctx.context_prefix(&opened.mailbox)
    ));
    Ok(json_response(StatusCode::CREATED, &v))
}

/// `DELETE mailFolders/{id}`: 204; well-known folders cannot be deleted.
pub async fn delete_folder(ctx: &Ctx, folder: &str) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Write).await?;
    let name = resolve_folder(&opened.mailbox, folder)?;
    if WELL_KNOWN_FOLDERS
        .iter()
        .any(|(_, f)| f.eq_ignore_ascii_case(&name))
    {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "ErrorDeleteDistinguishedFolder",
            "Distinguished folders cannot be deleted.",
        ));
    }
    let store = ctx.store()?;
    if !store.delete_folder(&opened.mailbox.upn, &name).await? {
        return Err(GraphError::item_not_found());
    }
    Ok(empty_response(StatusCode::NO_CONTENT))
}
