//! Fuzz targets for the mailbox parsers: an Autodiscover v2 answer, a Thunderbird
//! autoconfig document, and raw MIME turned into a Graph draft.

use mailbridge_mailbox::autodetect::{autoconfig_servers, parse_autodiscover};
use mailbridge_mailbox::send::graph_draft_from_mime;

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "autodiscover_json",
        run: autodiscover_json,
    },
    Target {
        name: "autoconfig_xml",
        run: autoconfig_xml,
    },
    Target {
        name: "graph_draft_from_mime",
        run: graph_draft,
    },
];

fn autodiscover_json(data: &[u8]) {
    if let Some(url) = parse_autodiscover(data) {
        assert!(url.starts_with("http://") || url.starts_with("https://"));
    }
}

fn autoconfig_xml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for server in autoconfig_servers(&text, "jane.doe@example.org") {
        let host = &server.endpoint.host;
        assert!(!host.is_empty() && !host.contains('%') && host.len() <= 255);
        assert!(!host.contains(['<', '>', ' ', '/']), "{host:?}");
    }
}

fn graph_draft(data: &[u8]) {
    if let Ok(plan) = graph_draft_from_mime(data) {
        assert!(plan.message.is_object());
        assert!(
            plan.attachments
                .iter()
                .all(|(name, ct, _)| !name.is_empty() && !ct.is_empty())
        );
    }
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
