//! Exchange Web Services (`microsoft-protocols.md` §4), served from the Dovecot mailboxes.
//!
//! `POST /EWS/Exchange.asmx` takes a SOAP 1.1 envelope ([`soap`]), authenticates the
//! caller and decides the mailbox ([`auth`]), answers `ErrorServerBusy` when the
//! `ews_server_busy` fault fires, and runs one operation, each in its own file:
//! [`find_item`], [`get_item`], [`create_item`], [`sync_folder_items`],
//! [`update_item`], [`move_item`], [`delete_item`], and [`get_folder`] (which clients
//! call first to open a folder). Item and folder ids are in [`ids`];
//! the `t:Message` rendering shared by the operations is in [`item`].

pub mod auth;
pub mod create_item;
pub mod delete_item;
pub mod find_item;
pub mod get_folder;
pub mod get_item;
pub mod ids;
pub mod item;
pub mod move_item;
pub mod soap;
pub mod sync_folder_items;
pub mod update_item;

use std::collections::{BTreeMap, HashMap, VecDeque};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use self::auth::Access;
use self::soap::{Element, Fault, ItemError, Ns, SchemaError};
use crate::emulator::Emulator;
use crate::mailstore::{MailStore, MailStoreError, StoredMessageId};

/// The EWS routes.
pub fn router() -> Router<Emulator> {
    Router::new().route("/EWS/Exchange.asmx", post(exchange_asmx))
}

/// Sync states kept; the oldest is forgotten beyond this (its token then answers
/// `ErrorInvalidSyncStateData` and the client resyncs, as with a stale Exchange state).
const MAX_SYNC_STATES: usize = 1024;

/// What the server remembers between EWS calls.
#[derive(Debug, Default)]
pub struct EwsState {
    /// SyncFolderItems states by their opaque token.
    sync_states: HashMap<String, SyncSnapshot>,
    /// Tokens oldest first.
    sync_order: VecDeque<String>,
}

impl EwsState {
    /// The snapshot behind a sync state token.
    pub(crate) fn sync_state(&self, token: &str) -> Option<&SyncSnapshot> {
        self.sync_states.get(token)
    }

    /// Remembers a snapshot under a new token, forgetting the oldest beyond the limit.
    pub(crate) fn remember_sync_state(&mut self, token: String, snapshot: SyncSnapshot) {
        self.sync_order.push_back(token.clone());
        self.sync_states.insert(token, snapshot);
        while self.sync_order.len() > MAX_SYNC_STATES {
            if let Some(old) = self.sync_order.pop_front() {
                self.sync_states.remove(&old);
            }
        }
    }
}

/// What a client had seen of a folder when a sync state was handed out.
#[derive(Debug, Clone)]
pub(crate) struct SyncSnapshot {
    pub mailbox: String,
    pub folder: String,
    /// Each message and whether it was read.
    pub items: BTreeMap<StoredMessageId, bool>,
}

/// One request in progress.
pub struct Ctx {
    pub emulator: Emulator,
    pub access: Access,
    store: Option<MailStore>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The mail store; a fault when no mail servers are attached.
    pub fn store(&self) -> Result<&MailStore, Fault> {
        self.store.as_ref().ok_or_else(|| {
            Fault::with_message(
                "ErrorInternalServerError",
                "An internal server error occurred. The operation failed. (The emulator has no mail servers attached.)",
            )
        })
    }
}

/// A mail-store failure, answered as Exchange answers an internal error.
pub fn store_fault(error: &MailStoreError) -> Fault {
    tracing::warn!(error = %error, "EWS mail store operation failed");
    Fault::new("ErrorInternalServerError")
}

/// What an operation returns: its `m:…Response` element, or a request-level fault.
pub type OpResult = Result<String, Fault>;

async fn exchange_asmx(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut response = handle(emulator, &headers, &body).await;
    // Exchange Online front ends stamp every answer with a `request-id`, and echo
    // `client-request-id` when asked to (§4.1, §4.2).
    let out = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        out.insert("request-id", id);
    }
    let echo = headers
        .get("return-client-request-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if echo && let Some(id) = headers.get("client-request-id") {
        out.insert("client-request-id", id.clone());
    }
    response
}

async fn handle(emulator: Emulator, headers: &HeaderMap, body: &[u8]) -> Response {
    let caller = match auth::authenticate(&emulator, headers) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    if emulator.take_fault(|f| &mut f.ews_server_busy) {
        return Fault::server_busy(emulator.knobs().ews_backoff_ms).into_response();
    }
    let envelope = match soap::parse_envelope(body).and_then(|e| {
        check_distinguished_ids(&e.operation)?;
        Ok(e)
    }) {
        Ok(e) => e,
        Err(e) => return Fault::schema(e).into_response(),
    };
    let access = match auth::resolve(&emulator, caller, envelope.impersonation.as_ref(), headers) {
        Ok(a) => a,
        Err(fault) => return fault.into_response(),
    };
    let ctx = Ctx {
        store: emulator.mail_store().cloned(),
        emulator,
        access,
    };
    let op = &envelope.operation;
    let result = match op.name.as_str() {
        "FindItem" => find_item::run(&ctx, op).await,
        "GetItem" => get_item::run(&ctx, op).await,
        "GetFolder" => get_folder::run(&ctx, op).await,
        "CreateItem" => create_item::run(&ctx, op).await,
        "SyncFolderItems" => sync_folder_items::run(&ctx, op).await,
        "UpdateItem" => update_item::run(&ctx, op).await,
        "MoveItem" => move_item::run(&ctx, op).await,
        "DeleteItem" => delete_item::run(&ctx, op).await,
        other => Err(Fault::with_message(
            "ErrorInvalidRequest",
            format!(
                "The request is invalid. (The emulator does not implement the EWS operation '{other}'.)"
            ),
        )),
    };
    match result {
        Ok(inner) => soap::response(&inner),
        Err(fault) => fault.into_response(),
    }
}

/// The values of EWS's `DistinguishedFolderIdNameType` (case-sensitive, as the schema
/// is), plus `archive`, which the store has and Graph names so.
const DISTINGUISHED_FOLDERS: [&str; 41] = [
    "calendar",
    "contacts",
    "deleteditems",
    "drafts",
    "inbox",
    "journal",
    "notes",
    "outbox",
    "sentitems",
    "tasks",
    "msgfolderroot",
    "publicfoldersroot",
    "root",
    "junkemail",
    "searchfolders",
    "voicemail",
    "recoverableitemsroot",
    "recoverableitemsdeletions",
    "recoverableitemsversions",
    "recoverableitemspurges",
    "archiveroot",
    "archivemsgfolderroot",
    "archivedeleteditems",
    "archiveinbox",
    "archiverecoverableitemsroot",
    "archiverecoverableitemsdeletions",
    "archiverecoverableitemsversions",
    "archiverecoverableitemspurges",
    "syncissues",
    "conflicts",
    "localfailures",
    "serverfailures",
    "recipientcache",
    "quickcontacts",
    "conversationhistory",
    "adminauditlogs",
    "todosearch",
    "mycontacts",
    "directory",
    "favorites",
    "archive",
];

/// Every `DistinguishedFolderId/@Id` in the request must be one of the schema's names.
fn check_distinguished_ids(element: &Element) -> Result<(), SchemaError> {
    if element.ns == Ns::Types && element.name == "DistinguishedFolderId" {
        let id = element.attr("Id").unwrap_or_default();
        if !DISTINGUISHED_FOLDERS.contains(&id) {
            return Err(SchemaError::new(format!(
                "The 'Id' attribute is invalid - The value '{id}' is invalid according to its datatype 'http://schemas.microsoft.com/exchange/services/2006/types:DistinguishedFolderIdNameType' - The Enumeration constraint failed."
            )));
        }
    }
    element
        .children
        .iter()
        .try_for_each(check_distinguished_ids)
}

/// A required attribute, or a schema error naming it.
pub fn required_attr<'a>(element: &'a Element, name: &str) -> Result<&'a str, Fault> {
    element.attr(name).ok_or_else(|| {
        Fault::schema(SchemaError::new(format!(
            "The required attribute '{name}' is missing on '{}'.",
            element.name
        )))
    })
}

/// A required child element, or a schema error naming it.
pub fn required_child<'a>(element: &'a Element, ns: Ns, name: &str) -> Result<&'a Element, Fault> {
    element.child(ns, name).ok_or_else(|| {
        Fault::schema(SchemaError::new(format!(
            "The element '{}' has incomplete content. List of possible elements expected: '{name}'.",
            element.name
        )))
    })
}

/// A folder a request names: (mailbox, IMAP folder).
pub type FolderRef = (String, String);

/// Reads the folder ids under `parent` (`DistinguishedFolderId` / `FolderId`), in order.
pub fn folder_ids(parent: &Element) -> Vec<&Element> {
    parent
        .children
        .iter()
        .filter(|c| {
            c.ns == Ns::Types && matches!(c.name.as_str(), "DistinguishedFolderId" | "FolderId")
        })
        .collect()
}

/// Resolves one `DistinguishedFolderId` or `FolderId` element to a folder the caller
/// may open.
pub async fn resolve_folder(ctx: &Ctx, element: &Element) -> Result<FolderRef, ItemError> {
    let id = element.attr("Id").unwrap_or_default();
    if element.name == "DistinguishedFolderId" {
        let mailbox = match element
            .child(Ns::Types, "Mailbox")
            .and_then(|m| m.child_text(Ns::Types, "EmailAddress"))
        {
            Some(address) => ctx.access.open(&ctx.emulator, address)?,
            None => ctx.access.mailbox.clone(),
        };
        let folder = crate::mailstore::folder_for_well_known(id)
            .ok_or_else(|| ItemError::new("ErrorFolderNotFound"))?;
        return Ok((mailbox, folder.to_owned()));
    }
    let (mailbox, folder) =
        ids::parse_folder_id(id).ok_or_else(|| ItemError::new("ErrorInvalidIdMalformed"))?;
    let mailbox = ctx.access.open(&ctx.emulator, &mailbox)?;
    let store = ctx
        .store
        .as_ref()
        .ok_or_else(|| ItemError::new("ErrorInternalServerError"))?;
    let folders = store
        .folders(&mailbox)
        .await
        .map_err(|_| ItemError::new("ErrorInternalServerError"))?;
    if folders.iter().any(|f| f.name == folder) {
        Ok((mailbox, folder))
    } else {
        Err(ItemError::new("ErrorFolderNotFound"))
    }
}

/// Reads an `ItemId` element to a message the caller may open.
pub fn resolve_item_id(ctx: &Ctx, element: &Element) -> Result<StoredMessageId, ItemError> {
    let id = ids::parse_item_id(element.attr("Id").unwrap_or_default())
        .ok_or_else(|| ItemError::new("ErrorInvalidIdMalformed"))?;
    let mailbox = ctx.access.open(&ctx.emulator, &id.mailbox)?;
    Ok(StoredMessageId { mailbox, ..id })
}

/// Finds the listing entry of a message (for its flags and dates); `None` when it is gone.
pub async fn find_summary(
    store: &MailStore,
    id: &StoredMessageId,
) -> Result<Option<crate::mailstore::MessageSummary>, MailStoreError> {
    let list = match store.list(&id.mailbox, &id.folder).await {
        Ok(l) => l,
        // The folder itself may be gone.
        Err(MailStoreError::Server(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(list.into_iter().find(|m| m.id == *id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_sync_states_are_forgotten() {
        let mut state = EwsState::default();
        for n in 0..=MAX_SYNC_STATES {
            state.remember_sync_state(
                format!("t{n}"),
                SyncSnapshot {
                    mailbox: "a@b".into(),
                    folder: "INBOX".into(),
                    items: BTreeMap::new(),
                },
            );
        }
        assert!(state.sync_state("t0").is_none());
        assert!(state.sync_state("t1").is_some());
        assert!(state.sync_state(&format!("t{MAX_SYNC_STATES}")).is_some());
    }
}
