//! Fuzz targets for the graph parsers: a delta page (`parse_delta_page`, with an
//! entry bound) and an error answer (`GraphError::from_answer`).

use std::time::Duration;

use mailbridge_graph::GraphError;
use mailbridge_graph::page::{PageError, parse_delta_page};

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "graph_delta_page",
        run: graph_delta_page,
    },
    Target {
        name: "graph_error",
        run: graph_error,
    },
];

/// The entry bound the target uses: small, so the bound itself is exercised.
const MAX_ITEMS: usize = 8;

fn graph_delta_page(data: &[u8]) {
    match parse_delta_page(data, MAX_ITEMS) {
        Ok(page) => {
            assert!(page.items.len() <= MAX_ITEMS, "more entries than the bound");
            assert!(
                page.items
                    .iter()
                    .all(|i| !i.id.is_empty() || data.contains(&b'"'))
            );
        }
        Err(PageError::TooManyItems { limit }) => assert_eq!(limit, MAX_ITEMS),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The first two bytes are the status (400-599), the rest the body.
fn graph_error(data: &[u8]) {
    let (status, body) = match data {
        [a, b, rest @ ..] => (400 + u16::from_be_bytes([*a, *b]) % 200, rest),
        _ => (500, data),
    };
    let e = GraphError::from_answer(status, Some(Duration::from_secs(1)), None, body);
    assert!(!e.to_string().is_empty());
    let _ = e.class();
}
