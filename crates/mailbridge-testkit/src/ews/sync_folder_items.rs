//! SyncFolderItems (`microsoft-protocols.md` §4.6;
//! <https://learn.microsoft.com/exchange/client-developer/web-service-reference/syncfolderitems-operation>):
//! incremental sync of one folder.
//!
//! The `SyncState` is an opaque token; what the client has seen is kept server-side
//! ([`super::EwsState`]). Each call compares that snapshot with the folder, reports at
//! most `MaxChangesReturned` changes (`Create`, `Delete`, `ReadFlagChange`) and hands
//! out a new token for the snapshot with those changes applied; older tokens stay
//! valid, so a client may repeat a call. An unknown token, or one for another folder,
//! is `ErrorInvalidSyncStateData`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::item::{Shape, StoredItem, message_xml};
use super::soap::{
    Element, Fault, ItemError, Ns, SchemaError, error_message, esc, operation_response,
    success_message,
};
use super::{
    Ctx, OpResult, SyncSnapshot, folder_ids, ids, required_child, resolve_folder, store_fault,
};
use crate::mailstore::{MessageSummary, StoredMessageId};

/// Most changes one call may return.
const MAX_CHANGES: usize = 512;

enum Change<'a> {
    Create(&'a MessageSummary),
    Delete(StoredMessageId),
    ReadFlag(StoredMessageId, bool),
}

fn new_token() -> String {
    // Exchange's states are gzip streams (`H4sI…`); this one only looks the part.
    format!(
        "H4sIAAAAAAAEAO29B2{}",
        STANDARD.encode(crate::crypto::random_bytes(33))
    )
}

/// Runs SyncFolderItems.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let shape = Shape::parse(op)?;
    let folder_parent = required_child(op, Ns::Messages, "SyncFolderId")?;
    let Some(folder_element) = folder_ids(folder_parent).into_iter().next() else {
        return Err(Fault::schema(SchemaError::new(
            "The element 'SyncFolderId' has incomplete content. List of possible elements expected: 'FolderId, DistinguishedFolderId'.",
        )));
    };
    let max_text = required_child(op, Ns::Messages, "MaxChangesReturned")?.text();
    let max = max_text
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CHANGES).contains(n))
        .ok_or_else(|| {
            Fault::schema(SchemaError::new(format!(
                "The element 'MaxChangesReturned' has an invalid value '{max_text}' - The MaxInclusive constraint failed."
            )))
        })?;
    let state_text = op
        .child_text(Ns::Messages, "SyncState")
        .filter(|s| !s.is_empty());
    let ignored: BTreeSet<StoredMessageId> = op
        .child(Ns::Messages, "Ignore")
        .map(|i| {
            i.children_named(Ns::Types, "ItemId")
                .filter_map(|e| ids::parse_item_id(e.attr("Id").unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();

    let (mailbox, folder) = match resolve_folder(ctx, folder_element).await {
        Ok(f) => f,
        Err(e) => {
            return Ok(operation_response(
                "SyncFolderItems",
                &error_message("SyncFolderItems", &e, ""),
            ));
        }
    };
    let previous = match state_text {
        None => Some(BTreeMap::new()),
        Some(token) => ctx
            .emulator
            .ews_state()
            .sync_state(token)
            .filter(|s| s.mailbox.eq_ignore_ascii_case(&mailbox) && s.folder == folder)
            .map(|s| s.items.clone()),
    };
    let Some(mut seen) = previous else {
        return Ok(operation_response(
            "SyncFolderItems",
            &error_message(
                "SyncFolderItems",
                &ItemError::new("ErrorInvalidSyncStateData"),
                "",
            ),
        ));
    };
    let list = ctx
        .store()?
        .list(&mailbox, &folder)
        .await
        .map_err(|e| store_fault(&e))?;
    let current: BTreeMap<&StoredMessageId, &MessageSummary> =
        list.iter().map(|m| (&m.id, m)).collect();

    let mut changes = Vec::new();
    for m in &list {
        match seen.get(&m.id) {
            None => changes.push(Change::Create(m)),
            Some(was) if *was != m.seen => changes.push(Change::ReadFlag(m.id.clone(), m.seen)),
            Some(_) => {}
        }
    }
    for id in seen.keys() {
        if !current.contains_key(id) {
            changes.push(Change::Delete(id.clone()));
        }
    }
    // Ignored items are taken as seen without being reported.
    changes.retain(|c| {
        let id = match c {
            Change::Create(m) => &m.id,
            Change::Delete(id) | Change::ReadFlag(id, _) => id,
        };
        if ignored.contains(id) {
            match c {
                Change::Create(m) => {
                    seen.insert(m.id.clone(), m.seen);
                }
                Change::Delete(id) => {
                    seen.remove(id);
                }
                Change::ReadFlag(id, flag) => {
                    seen.insert(id.clone(), *flag);
                }
            }
            false
        } else {
            true
        }
    });
    let complete = changes.len() <= max;
    let mut xml = String::new();
    for change in changes.into_iter().take(max) {
        match change {
            Change::Create(m) => {
                seen.insert(m.id.clone(), m.seen);
                let item = message_xml(
                    &StoredItem {
                        id: &m.id,
                        seen: m.seen,
                        received: m.received,
                        size: m.size,
                        raw: &m.header,
                        whole: false,
                    },
                    &shape,
                    true,
                );
                let _ = write!(xml, "<t:Create>{item}</t:Create>");
            }
            Change::Delete(id) => {
                seen.remove(&id);
                let _ = write!(xml, "<t:Delete>{}</t:Delete>", ids::item_id_element(&id));
            }
            Change::ReadFlag(id, flag) => {
                seen.insert(id.clone(), flag);
                let _ = write!(
                    xml,
                    "<t:ReadFlagChange>{}<t:IsRead>{flag}</t:IsRead></t:ReadFlagChange>",
                    ids::item_id_element(&id)
                );
            }
        }
    }
    let token = new_token();
    ctx.emulator.ews_state().remember_sync_state(
        token.clone(),
        SyncSnapshot {
            mailbox,
            folder,
            items: seen,
        },
    );
    let changes_xml = if xml.is_empty() {
        "<m:Changes />".to_owned()
    } else {
        format!("<m:Changes>{xml}</m:Changes>")
    };
    let inner = format!(
        "<m:SyncState>{}</m:SyncState><m:IncludesLastItemInRange>{complete}</m:IncludesLastItemInRange>{changes_xml}",
        esc(&token)
    );
    Ok(operation_response(
        "SyncFolderItems",
        &success_message("SyncFolderItems", &inner),
    ))
}
