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

#[cfg(test)]
mod tests {
    /// Each target over its seed corpus, and over cut and bit-flipped copies of it
    /// (a deterministic smoke run; the long runs are the fuzzer's).
    #[test]
    fn seeds_and_their_mutations_never_panic() {
        for target in super::TARGETS {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fuzz/corpus")
                .join(target.name);
            let mut seeds = 0;
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let data = std::fs::read(entry.unwrap().path()).unwrap();
                seeds += 1;
                (target.run)(&data);
                let mut state = 0x9e37_79b9_u32;
                for i in 0..64usize {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    let at = state as usize % data.len().max(1);
                    (target.run)(data.get(..at).unwrap_or_default());
                    let mut flipped = data.clone();
                    if let Some(b) = flipped.get_mut(at) {
                        *b ^= 1 << (i % 8);
                    }
                    (target.run)(&flipped);
                }
            }
            assert!(seeds > 0, "{}: no seeds", target.name);
        }
    }
}
