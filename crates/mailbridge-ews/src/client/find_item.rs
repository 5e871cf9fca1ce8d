//! FindItem on a distinguished folder, one item, for "test receive"
//! ([FindItem operation](https://learn.microsoft.com/exchange/client-developer/web-service-reference/finditem-operation)):
//! how many items the folder holds and the first one's id and subject.

use super::{EwsAuth, EwsClient, EwsError};
use crate::xml::escape;

/// What FindItem saw in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPeek {
    /// `TotalItemsInView`.
    pub total: u64,
    /// The first item, when the folder is not empty.
    pub first: Option<ItemSummary>,
}

/// One item as FindItem lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSummary {
    pub id: String,
    pub subject: Option<String>,
}

impl EwsClient {
    /// FindItem (`Shallow`, one entry) on a distinguished folder (`inbox`, ...).
    pub async fn find_first_item(
        &self,
        auth: &EwsAuth,
        folder: &str,
    ) -> Result<FolderPeek, EwsError> {
        let body = format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="1" Offset="0" BasePoint="Beginning" /><m:ParentFolderIds><t:DistinguishedFolderId Id="{}" /></m:ParentFolderIds></m:FindItem>"#,
            escape(folder)
        );
        let msg = self.call(auth, &body, "FindItemResponseMessage").await?;
        let root = msg
            .child("RootFolder")
            .ok_or_else(|| EwsError::Protocol("FindItem answered without RootFolder".into()))?;
        let total = root
            .attr("TotalItemsInView")
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        let first = root
            .find("ItemId")
            .and_then(|e| e.attr("Id"))
            .map(|id| ItemSummary {
                id: id.to_owned(),
                subject: root.find("Subject").map(|s| s.text.clone()),
            });
        Ok(FolderPeek { total, first })
    }
}
