//! DeleteItem (<https://learn.microsoft.com/exchange/client-developer/web-service-reference/deleteitem-operation>):
//! `MoveToDeletedItems` moves the message to Deleted Items; `SoftDelete` and
//! `HardDelete` remove it (a soft-deleted item is only reachable through recovery
//! tools, which the emulator does not have).

use super::soap::{
    Element, Fault, ItemError, Ns, SchemaError, error_message, operation_response, success_message,
};
use super::{Ctx, OpResult, required_attr, required_child, resolve_item_id, store_fault};

/// Runs DeleteItem.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let delete_type = required_attr(op, "DeleteType")?;
    let to_deleted_items = match delete_type {
        "MoveToDeletedItems" => true,
        "SoftDelete" | "HardDelete" => false,
        other => {
            return Err(Fault::schema(SchemaError::new(format!(
                "The 'DeleteType' attribute is invalid - The value '{other}' is invalid according to its datatype 'DisposalType'."
            ))));
        }
    };
    let item_ids = required_child(op, Ns::Messages, "ItemIds")?;
    let store = ctx.store()?;
    let mut messages = String::new();
    for element in item_ids.children_named(Ns::Types, "ItemId") {
        let result = match resolve_item_id(ctx, element) {
            Err(e) => Err(e),
            Ok(id) => {
                let done = if to_deleted_items && id.folder != "Deleted Items" {
                    store
                        .move_to(&id, "Deleted Items")
                        .await
                        .map(|moved| moved.is_some())
                } else {
                    store.delete(&id).await
                };
                match done {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(ItemError::new("ErrorItemNotFound")),
                    Err(e) => return Err(store_fault(&e)),
                }
            }
        };
        match result {
            Ok(()) => messages.push_str(&success_message("DeleteItem", "")),
            Err(e) => messages.push_str(&error_message("DeleteItem", &e, "")),
        }
    }
    Ok(operation_response("DeleteItem", &messages))
}
