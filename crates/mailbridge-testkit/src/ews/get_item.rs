//! GetItem (`microsoft-protocols.md` §4.4;
//! <https://learn.microsoft.com/exchange/client-developer/web-service-reference/getitem-operation-email-message>):
//! one response message per `ItemId`, with the item's properties and, on request, its
//! MIME content (base64, `CharacterSet="UTF-8"`).

use super::item::{Shape, StoredItem, message_xml};
use super::soap::{Element, ItemError, Ns, error_message, operation_response, success_message};
use super::{Ctx, OpResult, find_summary, required_child, resolve_item_id, store_fault};

/// Runs GetItem.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let shape = Shape::parse(op)?;
    let item_ids = required_child(op, Ns::Messages, "ItemIds")?;
    let store = ctx.store()?;
    let mut messages = String::new();
    for element in item_ids.children_named(Ns::Types, "ItemId") {
        let id = match resolve_item_id(ctx, element) {
            Ok(id) => id,
            Err(e) => {
                messages.push_str(&error_message("GetItem", &e, "<m:Items />"));
                continue;
            }
        };
        let summary = find_summary(store, &id)
            .await
            .map_err(|e| store_fault(&e))?;
        let raw = match &summary {
            Some(_) => store.fetch(&id).await.map_err(|e| store_fault(&e))?,
            None => None,
        };
        let (Some(summary), Some(raw)) = (summary, raw) else {
            messages.push_str(&error_message(
                "GetItem",
                &ItemError::new("ErrorItemNotFound"),
                "<m:Items />",
            ));
            continue;
        };
        let xml = message_xml(
            &StoredItem {
                id: &id,
                seen: summary.seen,
                received: summary.received,
                size: summary.size,
                raw: &raw,
                whole: true,
            },
            &shape,
            false,
        );
        messages.push_str(&success_message(
            "GetItem",
            &format!("<m:Items>{xml}</m:Items>"),
        ));
    }
    Ok(operation_response("GetItem", &messages))
}
