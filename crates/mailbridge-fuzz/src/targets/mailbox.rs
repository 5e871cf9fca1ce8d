//! Fuzz targets for the parsers of mailbridge-accounts and mailbridge-mailbox: an
//! Autodiscover v2 answer, a Thunderbird autoconfig document, and raw MIME turned into
//! a Graph draft.

use mailbridge_accounts::autodetect::{autoconfig_servers, parse_autodiscover};
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
