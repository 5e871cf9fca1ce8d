//! Graph answers read as pure functions over bytes, apart from any I/O: a delta page
//! ([delta query for messages](https://learn.microsoft.com/graph/delta-query-messages)),
//! with a bound on the entries a page may hold. Error answers are read by
//! [`crate::GraphError::from_answer`], also a pure function.

use serde_json::Value;

/// One entry of a delta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaItem {
    pub id: String,
    /// `@removed`: deleted or moved out of the folder.
    pub removed: bool,
    pub is_read: Option<bool>,
    pub subject: Option<String>,
    pub received: Option<String>,
}

/// A page of a delta sync.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    pub items: Vec<DeltaItem>,
    /// Fetch this for the next page (`@odata.nextLink`).
    pub next_link: Option<String>,
    /// Store this as the checkpoint; fetch it for the next round (`@odata.deltaLink`).
    pub delta_link: Option<String>,
}

/// Why a page was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    #[error("the answer is not JSON ({0})")]
    NotJson(String),
    /// Not a delta page (a proxy's answer, an HTML page in JSON clothing): an empty
    /// page here would end the sync round as if the folder had no news.
    #[error("a delta page without a value array")]
    NoValue,
    #[error("a delta page with more than {limit} entries")]
    TooManyItems { limit: usize },
}

/// Reads a delta page of at most `max_items` entries. Entries without an `id` are
/// skipped.
pub fn parse_delta_page(body: &[u8], max_items: usize) -> Result<DeltaPage, PageError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| PageError::NotJson(e.to_string()))?;
    let Some(values) = v.get("value").and_then(Value::as_array) else {
        return Err(PageError::NoValue);
    };
    if values.len() > max_items {
        return Err(PageError::TooManyItems { limit: max_items });
    }
    let items = values
        .iter()
        .filter_map(|m| {
            Some(DeltaItem {
                id: m.get("id")?.as_str()?.to_owned(),
                removed: m.get("@removed").is_some(),
                is_read: m.get("isRead").and_then(Value::as_bool),
                subject: m.get("subject").and_then(Value::as_str).map(str::to_owned),
                received: m
                    .get("receivedDateTime")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        })
        .collect();
    let link = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(DeltaPage {
        items,
        next_link: link("@odata.nextLink"),
        delta_link: link("@odata.deltaLink"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_page_and_its_links() {
        let page = parse_delta_page(
            br##"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Collection(message)","@odata.nextLink":"https://graph.microsoft.com/v1.0/me/mailfolders('inbox')/messages/delta?$skiptoken=abc","value":[{"@odata.type":"#microsoft.graph.message","@odata.etag":"W/\"x\"","subject":"Hello","isRead":false,"receivedDateTime":"2026-12-01T08:00:00Z","id":"AAMkA="},{"@odata.type":"#microsoft.graph.message","id":"AAMkB=","@removed":{"reason":"deleted"}},{"subject":"no id"}]}"##,
            10,
        )
        .unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].subject.as_deref(), Some("Hello"));
        assert!(page.items[1].removed);
        assert!(page.next_link.unwrap().contains("skiptoken"));
        assert!(page.delta_link.is_none());
    }

    #[test]
    fn not_a_page_or_too_large_is_an_error() {
        assert_eq!(parse_delta_page(b"{}", 10).unwrap_err(), PageError::NoValue);
        assert_eq!(parse_delta_page(b"[]", 10).unwrap_err(), PageError::NoValue);
        assert!(matches!(
            parse_delta_page(b"<html>", 10).unwrap_err(),
            PageError::NotJson(_)
        ));
        assert_eq!(
            parse_delta_page(br#"{"value":[{},{},{}]}"#, 2).unwrap_err(),
            PageError::TooManyItems { limit: 2 }
        );
    }
}
