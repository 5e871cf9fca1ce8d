//! FindItem (`microsoft-protocols.md` §4.3;
//! <https://learn.microsoft.com/exchange/client-developer/web-service-reference/finditem-operation>):
//! lists a folder's messages, newest first by default, with `IndexedPageItemView`
//! paging (at most 1,000 per page, `EWSFindCountLimit`), and a `Restriction` made of
//! comparisons of `item:DateTimeReceived` (others are refused as unsupported).

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::item::{Shape, StoredItem, message_xml};
use super::soap::{
    Element, Fault, ItemError, Ns, SchemaError, error_message, operation_response, success_message,
};
use super::{
    Ctx, OpResult, folder_ids, required_attr, required_child, resolve_folder, store_fault,
};

/// `EWSFindCountLimit`.
const FIND_COUNT_LIMIT: usize = 1000;

/// The paging asked for.
#[derive(Debug, Clone, Copy)]
struct Paging {
    max: usize,
    offset: usize,
    from_end: bool,
}

fn parse_count(element: &Element, name: &str, default: usize) -> Result<usize, Fault> {
    match element.attr(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            Fault::schema(SchemaError::new(format!(
                "The '{name}' attribute is invalid - The value '{v}' is invalid according to its datatype 'http://www.w3.org/2001/XMLSchema:int'."
            )))
        }),
    }
}

fn parse_paging(op: &Element) -> Result<Paging, Fault> {
    let Some(view) = op.child(Ns::Messages, "IndexedPageItemView") else {
        return Ok(Paging {
            max: FIND_COUNT_LIMIT,
            offset: 0,
            from_end: false,
        });
    };
    let max = parse_count(view, "MaxEntriesReturned", FIND_COUNT_LIMIT)?;
    let offset = parse_count(view, "Offset", 0)?;
    let from_end = match required_attr(view, "BasePoint")? {
        "Beginning" => false,
        "End" => true,
        other => {
            return Err(Fault::schema(SchemaError::new(format!(
                "The 'BasePoint' attribute is invalid - The value '{other}' is invalid according to its datatype 'IndexBasePointType'."
            ))));
        }
    };
    Ok(Paging {
        max: max.clamp(1, FIND_COUNT_LIMIT),
        offset,
        from_end,
    })
}

/// Whether the sort order asks for oldest first (only `item:DateTimeReceived` and
/// `item:DateTimeSent` are honoured; the default is newest first).
fn ascending(op: &Element) -> bool {
    op.child(Ns::Messages, "SortOrder")
        .and_then(|s| s.child(Ns::Types, "FieldOrder"))
        .is_some_and(|f| f.attr("Order") == Some("Ascending"))
}

/// A comparison of `item:DateTimeReceived` with a constant.
#[derive(Debug, Clone, Copy)]
struct ReceivedCmp {
    /// `Ordering`s of (received, constant) that pass.
    pass: [Option<std::cmp::Ordering>; 2],
    at: OffsetDateTime,
}

impl ReceivedCmp {
    fn matches(self, received: OffsetDateTime) -> bool {
        self.pass.contains(&Some(received.cmp(&self.at)))
    }
}

/// The `Restriction` as comparisons of `item:DateTimeReceived` (one, or several under
/// `And`); `None` for anything else.
/// <https://learn.microsoft.com/exchange/client-developer/web-service-reference/restriction>
fn received_restriction(restriction: &Element) -> Option<Vec<ReceivedCmp>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    fn walk(e: &Element, out: &mut Vec<ReceivedCmp>) -> Option<()> {
        if e.name == "And" {
            for c in &e.children {
                walk(c, out)?;
            }
            return Some(());
        }
        let pass = match e.name.as_str() {
            "IsGreaterThan" => [Some(Greater), None],
            "IsGreaterThanOrEqualTo" => [Some(Greater), Some(Equal)],
            "IsLessThan" => [Some(Less), None],
            "IsLessThanOrEqualTo" => [Some(Less), Some(Equal)],
            "IsEqualTo" => [Some(Equal), None],
            _ => return None,
        };
        if e.child(Ns::Types, "FieldURI")?.attr("FieldURI")? != "item:DateTimeReceived" {
            return None;
        }
        let value = e
            .child(Ns::Types, "FieldURIOrConstant")?
            .child(Ns::Types, "Constant")?
            .attr("Value")?;
        let at = OffsetDateTime::parse(value.trim(), &Rfc3339).ok()?;
        out.push(ReceivedCmp { pass, at });
        Some(())
    }
    let mut out = Vec::new();
    for c in &restriction.children {
        walk(c, &mut out)?;
    }
    Some(out)
}

/// Runs FindItem.
pub async fn run(ctx: &Ctx, op: &Element) -> OpResult {
    let traversal = required_attr(op, "Traversal")?;
    if !matches!(traversal, "Shallow" | "SoftDeleted" | "Associated") {
        return Err(Fault::schema(SchemaError::new(format!(
            "The 'Traversal' attribute is invalid - The value '{traversal}' is invalid according to its datatype 'ItemQueryTraversalType'."
        ))));
    }
    let shape = Shape::parse(op)?;
    let paging = parse_paging(op)?;
    let ascending = ascending(op);
    let parents = required_child(op, Ns::Messages, "ParentFolderIds")?;
    // Comparisons of `item:DateTimeReceived` are evaluated; other restrictions and
    // query strings are refused as unsupported.
    let received = match op.child(Ns::Messages, "Restriction") {
        Some(r) => received_restriction(r),
        None => Some(Vec::new()),
    };
    let restricted = received.is_none() || op.child(Ns::Messages, "QueryString").is_some();
    let received = received.unwrap_or_default();
    let mut messages = String::new();
    for folder in folder_ids(parents) {
        let (mailbox, folder) = match resolve_folder(ctx, folder).await {
            Ok(f) => f,
            Err(e) => {
                messages.push_str(&error_message("FindItem", &e, ""));
                continue;
            }
        };
        if restricted {
            let e = ItemError {
                code: "ErrorUnsupportedQueryFilter",
                message: "The restriction or query string is not supported. (The emulator evaluates only comparisons of item:DateTimeReceived.)".to_owned(),
            };
            messages.push_str(&error_message("FindItem", &e, ""));
            continue;
        }
        let mut list = if traversal == "Shallow" {
            let mut list = ctx
                .store()?
                .list(&mailbox, &folder)
                .await
                .map_err(|e| store_fault(&e))?;
            list.retain(|m| received.iter().all(|c| c.matches(m.received)));
            list
        } else {
            Vec::new()
        };
        list.sort_by(|a, b| a.received.cmp(&b.received).then(a.id.uid.cmp(&b.id.uid)));
        if !ascending {
            list.reverse();
        }
        let total = list.len();
        let (start, end) = if paging.from_end {
            let end = total.saturating_sub(paging.offset);
            (end.saturating_sub(paging.max), end)
        } else {
            let start = paging.offset.min(total);
            (start, start.saturating_add(paging.max).min(total))
        };
        let mut items = String::new();
        for m in list.get(start..end).unwrap_or_default() {
            items.push_str(&message_xml(
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
            ));
        }
        let (next_offset, includes_last) = if paging.from_end {
            (paging.offset + (end - start), start == 0)
        } else {
            (end, end >= total)
        };
        let mut root = String::new();
        let _ = write!(
            root,
            r#"<m:RootFolder IndexedPagingOffset="{next_offset}" TotalItemsInView="{total}" IncludesLastItemInRange="{includes_last}"><t:Items>{items}</t:Items></m:RootFolder>"#
        );
        messages.push_str(&success_message("FindItem", &root));
    }
    Ok(operation_response("FindItem", &messages))
}
