//! UpdateItem (<https://learn.microsoft.com/exchange/client-developer/web-service-reference/updateitem-operation>):
//! the emulator supports `SetItemField` of `message:IsRead`, which is what mail
//! connectors use it for. Any other change is answered with
//! `ErrorInvalidPropertySet` rather than silently ignored.

use super::soap::{
    Element, Fault, ItemError, Ns, SchemaError, error_message, operation_response, success_message,
};
use super::{Ctx, OpResult, ids, required_attr, required_child, resolve_item_id, store_fault};

/// Reads the `IsRead` value an `ItemChange` sets, or why it cannot be applied.
fn requested_read_flag(change: &Element) -> Result<bool, ItemError> {
    let unsupported = || ItemError {
        code: "ErrorInvalidPropertySet",
        message: "The property set is invalid. (The emulator only updates message:IsRead.)"
            .to_owned(),
    };
    let updates = change.child(Ns::Types, "Updates").ok_or_else(unsupported)?;
    let mut value = None;
    for update in &updates.children {
        let field = update
            .child(Ns::Types, "FieldURI")
            .and_then(|f| f.attr("FieldURI"));
        if update.name != "SetItemField" || field != Some("message:IsRead") {
            return Err(unsupported());
        }
        let text = update
            .child(Ns::Types, "Message")
            .and_then(|m| m.child_text(Ns::Types, "IsRead"));
        value = match text {
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            _ => return Err(ItemError::new("ErrorInvalidPropertyRequest")),
        };
    }
    value.ok_or_else(unsupported)
}

/// Runs UpdateItem.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let resolution = required_attr(op, "ConflictResolution")?;
    if !matches!(
        resolution,
        "NeverOverwrite" | "AutoResolve" | "AlwaysOverwrite"
    ) {
        return Err(Fault::schema(SchemaError::new(format!(
            "The 'ConflictResolution' attribute is invalid - The value '{resolution}' is invalid according to its datatype 'ConflictResolutionType'."
        ))));
    }
    let changes = required_child(op, Ns::Messages, "ItemChanges")?;
    let disposition = op.attr("MessageDisposition");
    let store = ctx.store()?;
    let mut messages = String::new();
    for change in changes.children_named(Ns::Types, "ItemChange") {
        let result = async {
            let id_element = change
                .child(Ns::Types, "ItemId")
                .ok_or_else(|| ItemError::new("ErrorInvalidIdMalformed"))?;
            let id = resolve_item_id(ctx, id_element)?;
            if disposition.is_none() {
                return Err(ItemError {
                    code: "ErrorMessageDispositionRequired",
                    message: "MessageDisposition attribute is required.".to_owned(),
                });
            }
            let seen = requested_read_flag(change)?;
            match store.set_seen(&id, seen).await {
                Ok(true) => Ok(Ok(id)),
                Ok(false) => Err(ItemError::new("ErrorItemNotFound")),
                Err(e) => Ok(Err(store_fault(&e))),
            }
        }
        .await;
        match result {
            Ok(Ok(id)) => messages.push_str(&success_message(
                "UpdateItem",
                &format!(
                    "<m:Items><t:Message>{}</t:Message></m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
                    ids::item_id_element(&id)
                ),
            )),
            Ok(Err(fault)) => return Err(fault),
            Err(e) => messages.push_str(&error_message("UpdateItem", &e, "<m:Items />")),
        }
    }
    Ok(operation_response("UpdateItem", &messages))
}
