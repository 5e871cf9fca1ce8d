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

/// One page of item ids from [`EwsClient::find_received_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPage {
    pub ids: Vec<String>,
    /// The offset of the next page.
    pub next_offset: u32,
    /// `IncludesLastItemInRange`: no page follows.
    pub includes_last: bool,
}

impl EwsClient {
    /// FindItem (`Shallow`, ids only, oldest first) on a distinguished folder, with a
    /// `Restriction` on `item:DateTimeReceived` at or after `since` (an `xs:dateTime`,
    /// e.g. `2026-12-01T00:00:00Z`): one page of at most `max` ids from `offset`.
    pub async fn find_received_since(
        &self,
        auth: &EwsAuth,
        folder: &str,
        since: &str,
        offset: u32,
        max: u32,
    ) -> Result<FoundPage, EwsError> {
        let body = format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="{}" Offset="{offset}" BasePoint="Beginning" /><m:Restriction><t:IsGreaterThanOrEqualTo><t:FieldURI FieldURI="item:DateTimeReceived" /><t:FieldURIOrConstant><t:Constant Value="{}" /></t:FieldURIOrConstant></t:IsGreaterThanOrEqualTo></m:Restriction><m:SortOrder><t:FieldOrder Order="Ascending"><t:FieldURI FieldURI="item:DateTimeReceived" /></t:FieldOrder></m:SortOrder><m:ParentFolderIds><t:DistinguishedFolderId Id="{}" /></m:ParentFolderIds></m:FindItem>"#,
            max.clamp(1, 1000),
            escape(since),
            escape(folder)
        );
        let msg = self.call(auth, &body, "FindItemResponseMessage").await?;
        let root = msg
            .child("RootFolder")
            .ok_or_else(|| EwsError::Protocol("FindItem answered without RootFolder".into()))?;
        let mut ids = Vec::new();
        if let Some(items) = root.child("Items") {
            for item in &items.children {
                if let Some(id) = item.child("ItemId").and_then(|e| e.attr("Id")) {
                    ids.push(id.to_owned());
                }
            }
        }
        let next_offset = root
            .attr("IndexedPagingOffset")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| offset.saturating_add(u32::try_from(ids.len()).unwrap_or(u32::MAX)));
        let includes_last = root
            .attr("IncludesLastItemInRange")
            .is_none_or(|v| v == "true")
            || ids.is_empty();
        Ok(FoundPage {
            ids,
            next_offset,
            includes_last,
        })
    }
}

impl EwsClient {
    /// Every id [`Self::find_received_since`] lists, page after page of at most
    /// `page_size`. Bounded by [`Limits::max_pages`](mailbridge_types::config::Limits),
    /// `max_list_items` and the command timeout.
    pub async fn find_all_received_since(
        &self,
        auth: &EwsAuth,
        folder: &str,
        since: &str,
        page_size: u32,
    ) -> Result<Vec<String>, EwsError> {
        let mut budget = super::Budget::new(
            self.config.limits,
            format!("the listing of folder {folder} since {since}"),
        );
        let mut ids = Vec::new();
        let mut offset = 0;
        loop {
            budget.page()?;
            let page = budget
                .timed(self.find_received_since(auth, folder, since, offset, page_size))
                .await??;
            let got = page.ids.len();
            budget.items(ids.len() + got)?;
            ids.extend(page.ids);
            if page.includes_last || got == 0 || page.next_offset <= offset {
                return Ok(ids);
            }
            offset = page.next_offset;
        }
    }
}
