//! MoveItem (<https://learn.microsoft.com/exchange/client-developer/web-service-reference/moveitem-operation>):
//! moves messages to another folder of the same mailbox; the answer carries each
//! message's new `ItemId` (ids change on move, as Exchange's do).

use super::soap::{
    Element, Fault, ItemError, Ns, SchemaError, error_message, operation_response, success_message,
};
use super::{
    Ctx, OpResult, folder_ids, ids, required_child, resolve_folder, resolve_item_id, store_fault,
};

/// Runs MoveItem.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let to = required_child(op, Ns::Messages, "ToFolderId")?;
    let Some(target) = folder_ids(to).into_iter().next() else {
        return Err(Fault::schema(SchemaError::new(
            "The element 'ToFolderId' has incomplete content. List of possible elements expected: 'FolderId, DistinguishedFolderId'.",
        )));
    };
    let item_ids = required_child(op, Ns::Messages, "ItemIds")?;
    let target = resolve_folder(ctx, target).await;
    let store = ctx.store()?;
    let mut messages = String::new();
    for element in item_ids.children_named(Ns::Types, "ItemId") {
        let result = match (&target, resolve_item_id(ctx, element)) {
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
            (Ok((mailbox, _)), Ok(id)) if !mailbox.eq_ignore_ascii_case(&id.mailbox) => {
                Err(ItemError {
                    code: "ErrorMoveCopyFailed",
                    message: "The move or copy operation failed. (The emulator moves items only within one mailbox.)".to_owned(),
                })
            }
            (Ok((_, folder)), Ok(id)) => match store.move_to(&id, folder).await {
                Ok(Some(new_id)) => Ok(new_id),
                Ok(None) => Err(ItemError::new("ErrorItemNotFound")),
                Err(e) => return Err(store_fault(&e)),
            },
        };
        match result {
            Ok(new_id) => messages.push_str(&success_message(
                "MoveItem",
                &format!(
                    "<m:Items><t:Message>{}</t:Message></m:Items>",
                    ids::item_id_element(&new_id)
                ),
            )),
            Err(e) => messages.push_str(&error_message("MoveItem", &e, "<m:Items />")),
        }
    }
    Ok(operation_response("MoveItem", &messages))
}
