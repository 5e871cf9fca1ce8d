//! GetFolder (<https://learn.microsoft.com/exchange/client-developer/web-service-reference/getfolder-operation>):
//! the folder's id, display name and counts, which clients read first (the EWS Managed
//! API's `Folder.Bind`) to check a mailbox opens and how much it holds.

use std::fmt::Write as _;

use super::soap::{
    Element, ItemError, Ns, error_message, esc, operation_response, success_message,
};
use super::{Ctx, OpResult, folder_ids, ids, required_child, resolve_folder, store_fault};

/// The display name Exchange shows for a store folder.
fn display_name(folder: &str) -> &str {
    if folder == "INBOX" { "Inbox" } else { folder }
}

/// Runs GetFolder.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    required_child(op, Ns::Messages, "FolderShape")?;
    let folders = required_child(op, Ns::Messages, "FolderIds")?;
    let mut messages = String::new();
    for element in folder_ids(folders) {
        let (mailbox, folder) = match resolve_folder(ctx, element).await {
            Ok(f) => f,
            Err(e) => {
                messages.push_str(&error_message("GetFolder", &e, "<m:Folders />"));
                continue;
            }
        };
        let infos = ctx
            .store()?
            .folders(&mailbox)
            .await
            .map_err(|e| store_fault(&e))?;
        let Some(info) = infos.iter().find(|f| f.name == folder) else {
            messages.push_str(&error_message(
                "GetFolder",
                &ItemError::new("ErrorFolderNotFound"),
                "<m:Folders />",
            ));
            continue;
        };
        let mut xml = String::new();
        let _ = write!(
            xml,
            r#"<m:Folders><t:Folder><t:FolderId Id="{}" ChangeKey="{}"/><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{}</t:DisplayName><t:TotalCount>{}</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>{}</t:UnreadCount></t:Folder></m:Folders>"#,
            ids::folder_id(&mailbox, &folder),
            ids::folder_change_key(&mailbox, &folder),
            esc(display_name(&folder)),
            info.total,
            info.unread
        );
        messages.push_str(&success_message("GetFolder", &xml));
    }
    Ok(operation_response("GetFolder", &messages))
}
