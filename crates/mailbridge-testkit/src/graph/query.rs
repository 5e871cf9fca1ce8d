//! OData query options of message lists (`$select`, `$top`, `$skip`, `$skiptoken`,
//! `$filter`, `$orderby`) and the `Prefer` header.
//!
//! <https://learn.microsoft.com/graph/query-parameters>

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::errors::GraphError;
use super::json::BodyPreference;

/// Default page size of message lists (Graph: 10).
pub const DEFAULT_TOP: usize = 10;
/// Largest `$top` (Graph: 1000).
pub const MAX_TOP: usize = 1000;

/// A comparison on `receivedDateTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// The `$filter` forms the emulator evaluates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub is_read: Option<bool>,
    pub received: Vec<(Cmp, OffsetDateTime)>,
    /// The property of the first clause (for the `$orderby` rule).
    pub first_property: Option<&'static str>,
}

impl Filter {
    /// True when a message with these properties passes.
    pub fn matches(&self, is_read: bool, received: OffsetDateTime) -> bool {
        self.is_read.is_none_or(|r| r == is_read)
            && self.received.iter().all(|(op, at)| match op {
                Cmp::Ge => received >= *at,
                Cmp::Gt => received > *at,
                Cmp::Le => received <= *at,
                Cmp::Lt => received < *at,
                Cmp::Eq => received == *at,
            })
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.is_read.is_none() && self.received.is_empty()
    }
}

fn invalid_filter() -> GraphError {
    GraphError::bad_request("Invalid filter clause")
}

fn parse_date(value: &str) -> Option<OffsetDateTime> {
    let v = value.trim().trim_matches('\'');
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t);
    }
    // Graph also takes a date-time without zone (UTC) or a bare date.
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    if let Ok(t) = time::PrimitiveDateTime::parse(v, &fmt) {
        return Some(t.assume_utc());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// Parses `$filter`. Only `isRead eq true|false` and `receivedDateTime ge|gt|le|lt|eq
/// <date>`, joined by `and`, are evaluated; other well-formed clauses are answered with
/// `InefficientFilter`, malformed ones with `BadRequest`.
pub fn parse_filter(text: &str) -> Result<Filter, GraphError> {
    let mut filter = Filter::default();
    let lower = text.to_ascii_lowercase();
    let mut clauses = Vec::new();
    let mut rest = text;
    let mut rest_lower = lower.as_str();
    while let Some(pos) = rest_lower.find(" and ") {
        clauses.push(rest.get(..pos).unwrap_or_default());
        rest = rest.get(pos + 5..).unwrap_or_default();
        rest_lower = rest_lower.get(pos + 5..).unwrap_or_default();
    }
    clauses.push(rest);
    for clause in clauses {
        let words: Vec<&str> = clause.split_whitespace().collect();
        let [property, op, value] = words.as_slice() else {
            return Err(if clause.to_ascii_lowercase().contains(" or ") {
                GraphError::inefficient_filter()
            } else {
                invalid_filter()
            });
        };
        let property_name = if property.eq_ignore_ascii_case("isRead") {
            "isRead"
        } else if property.eq_ignore_ascii_case("receivedDateTime") {
            "receivedDateTime"
        } else {
            return Err(GraphError::inefficient_filter());
        };
        filter.first_property.get_or_insert(property_name);
        let op = match op.to_ascii_lowercase().as_str() {
            "eq" => Cmp::Eq,
            "ge" => Cmp::Ge,
            "gt" => Cmp::Gt,
            "le" => Cmp::Le,
            "lt" => Cmp::Lt,
            "ne" => return Err(GraphError::inefficient_filter()),
            _ => return Err(invalid_filter()),
        };
        if property_name == "isRead" {
            let v = match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid_filter()),
            };
            if op != Cmp::Eq {
                return Err(GraphError::inefficient_filter());
            }
            filter.is_read = Some(v);
        } else {
            let at = parse_date(value).ok_or_else(invalid_filter)?;
            filter.received.push((op, at));
        }
    }
    Ok(filter)
}

/// `$orderby`: only `receivedDateTime` (desc or asc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// The query options of a message list.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub select: Option<Vec<String>>,
    pub top: usize,
    pub skip: usize,
    pub filter: Filter,
    pub order: Order,
    /// The raw query pairs, to rebuild `@odata.nextLink`.
    pub pairs: Vec<(String, String)>,
}

/// The value of query parameter `name` (with or without `$`, case-insensitive).
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let bare = name.trim_start_matches('$');
    pairs
        .iter()
        .find(|(k, _)| k.trim_start_matches('$').eq_ignore_ascii_case(bare))
        .map(|(_, v)| v.as_str())
}

/// Parses a query string into decoded pairs.
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `$select` as a list of property names; an unknown property is Graph's 400.
pub fn parse_select(pairs: &[(String, String)]) -> Result<Option<Vec<String>>, GraphError> {
    let Some(s) = param(pairs, "$select") else {
        return Ok(None);
    };
    let fields: Vec<String> = s
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(bad) = super::json::unknown_property(&fields) {
        return Err(GraphError::bad_request(format!(
            "Could not find a property named '{bad}' on type 'microsoft.graph.message'."
        )));
    }
    Ok(Some(fields))
}

impl ListQuery {
    /// Parses the options of a list request.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, GraphError> {
        let number = |name: &str| -> Result<Option<usize>, GraphError> {
            param(&pairs, name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        GraphError::bad_request(format!(
                            "Invalid value '{v}' for query option '{name}'."
                        ))
                    })
                })
                .transpose()
        };
        let top = number("$top")?.unwrap_or(DEFAULT_TOP).clamp(1, MAX_TOP);
        let skip = match number("$skip")? {
            Some(s) => s,
            None => param(&pairs, "$skiptoken")
                .map(|t| {
                    t.parse::<usize>()
                        .map_err(|_| GraphError::bad_request("Invalid skip token."))
                })
                .transpose()?
                .unwrap_or(0),
        };
        let filter = match param(&pairs, "$filter") {
            Some(f) => parse_filter(f)?,
            None => Filter::default(),
        };
        let order = match param(&pairs, "$orderby") {
            None => Order::NewestFirst,
            Some(o) => {
                let words: Vec<String> =
                    o.split_whitespace().map(str::to_ascii_lowercase).collect();
                let order = match words
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    ["receiveddatetime", "desc"] => Order::NewestFirst,
                    ["receiveddatetime"] | ["receiveddatetime", "asc"] => Order::OldestFirst,
                    _ => return Err(GraphError::inefficient_filter()),
                };
                if !filter.is_empty() && filter.first_property != Some("receivedDateTime") {
                    return Err(GraphError::inefficient_filter());
                }
                order
            }
        };
        Ok(Self {
            select: parse_select(&pairs)?,
            top,
            skip,
            filter,
            order,
            pairs,
        })
    }

    /// The query string of the next page.
    pub fn next_query(&self) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            let bare = k.trim_start_matches('$');
            if bare.eq_ignore_ascii_case("skip") || bare.eq_ignore_ascii_case("skiptoken") {
                continue;
            }
            ser.append_pair(k, v);
        }
        ser.append_pair("$skip", &(self.skip + self.top).to_string());
        ser.finish()
    }
}

/// What the `Prefer` header asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefer {
    pub body: Option<BodyPreference>,
    pub max_page_size: Option<usize>,
}

impl Prefer {
    /// Parses every `Prefer` header value.
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> Self {
        let mut p = Self::default();
        for value in values {
            for item in value.split(',') {
                let Some((k, v)) = item.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "outlook.body-content-type" => {
                        p.body = match v.to_ascii_lowercase().as_str() {
                            "text" => Some(BodyPreference::Text),
                            "html" => Some(BodyPreference::Html),
                            _ => p.body,
                        };
                    }
                    "odata.maxpagesize" => {
                        p.max_page_size = v.parse::<usize>().ok().filter(|n| *n > 0);
                    }
                    _ => {}
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<ListQuery, GraphError> {
        ListQuery::parse(pairs(Some(s)))
    }

    #[test]
    fn filters_combine_with_and() {
        let f =
            parse_filter("isRead eq false and receivedDateTime ge 2024-05-01T00:00:00Z").unwrap();
        assert_eq!(f.is_read, Some(false));
        let may = time::macros::datetime!(2024-05-02 00:00 UTC);
        let april = time::macros::datetime!(2024-04-30 00:00 UTC);
        assert!(f.matches(false, may));
        assert!(!f.matches(true, may));
        assert!(!f.matches(false, april));
        let f = parse_filter("receivedDateTime lt 2024-05-01").unwrap();
        assert!(f.matches(true, april));
        assert!(!f.matches(true, may));
    }

    #[test]
    fn unsupported_filters_are_refused_as_graph_does() {
        assert_eq!(
            parse_filter("subject eq 'x'").unwrap_err().code,
            "InefficientFilter"
        );
        assert_eq!(
            parse_filter("isRead eq maybe").unwrap_err().code,
            "BadRequest"
        );
        assert_eq!(parse_filter("isRead").unwrap_err().code, "BadRequest");
        assert_eq!(
            parse_filter("isRead eq true or isRead eq false")
                .unwrap_err()
                .code,
            "InefficientFilter"
        );
    }

    #[test]
    fn orderby_property_must_lead_the_filter() {
        assert!(q("$filter=receivedDateTime ge 2024-01-01 and isRead eq false&$orderby=receivedDateTime desc").is_ok());
        assert_eq!(
            q("$filter=isRead eq false&$orderby=receivedDateTime desc")
                .unwrap_err()
                .code,
            "InefficientFilter"
        );
        assert_eq!(q("$orderby=subject").unwrap_err().code, "InefficientFilter");
    }

    #[test]
    fn paging_options_and_next_link_query() {
        let l = q("%24select=id,subject&%24top=2000&%24skip=5").unwrap();
        assert_eq!(l.top, MAX_TOP);
        assert_eq!(l.skip, 5);
        assert_eq!(
            l.select.as_deref(),
            Some(&["id".to_owned(), "subject".to_owned()][..])
        );
        let next = l.next_query();
        assert!(next.contains("%24skip=1005"), "{next}");
        assert!(!next.contains("skip=5&"), "{next}");
        assert_eq!(q("$top=x").unwrap_err().code, "BadRequest");
        assert_eq!(
            q("$select=subject,bogus").unwrap_err().message,
            "Could not find a property named 'bogus' on type 'microsoft.graph.message'."
        );
    }

    #[test]
    fn prefer_header_values() {
        let p =
            Prefer::parse(["outlook.body-content-type=\"text\", odata.maxpagesize=2"].into_iter());
        assert_eq!(p.body, Some(BodyPreference::Text));
        assert_eq!(p.max_page_size, Some(2));
    }
}
