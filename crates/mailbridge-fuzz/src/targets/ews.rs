//! Fuzz targets for the ews parsers: SOAP answers (the bounded element tree, then the
//! response message of each operation mailbridge reads, SyncFolderItems' changes),
//! `x-ms-diagnostics` of a 401, and GetItem's MimeContent decoded as it streams.

use mailbridge_ews::EwsError;
use mailbridge_ews::client::{read_response, sync_page};
use mailbridge_ews::mime_stream::MimeScanner;
use mailbridge_ews::xml::parse;

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "ews_soap",
        run: ews_soap,
    },
    Target {
        name: "ews_diagnostics",
        run: ews_diagnostics,
    },
    Target {
        name: "ews_mime_stream",
        run: ews_mime_stream,
    },
];

/// The response messages mailbridge reads.
const MESSAGES: &[&str] = &[
    "SyncFolderItemsResponseMessage",
    "GetItemResponseMessage",
    "FindItemResponseMessage",
    "UpdateItemResponseMessage",
    "MoveItemResponseMessage",
    "DeleteItemResponseMessage",
    "CreateItemResponseMessage",
];

fn ews_soap(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(root) = parse(&text) else {
        return;
    };
    for message in MESSAGES {
        match read_response(&root, message) {
            Ok(msg) if *message == "SyncFolderItemsResponseMessage" => {
                if let Ok(page) = sync_page(&msg) {
                    assert!(
                        page.changes
                            .iter()
                            .all(|c| !c.id.is_empty() || text.contains("Id"))
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                assert!(!e.to_string().is_empty());
                let _ = e.class();
            }
        }
    }
}

/// The header's value as a 401 carries it.
fn ews_diagnostics(data: &[u8]) {
    let diagnostics = String::from_utf8_lossy(data).into_owned();
    let e = EwsError::Unauthorized {
        diagnostics: Some(diagnostics),
    };
    assert!(!e.to_string().is_empty());
    let _ = e.class();
}

/// The first byte picks the piece size the answer is fed in; small bounds, so they
/// are exercised.
fn ews_mime_stream(data: &[u8]) {
    const MAX_ENVELOPE: usize = 4096;
    const MAX_MESSAGE: u64 = 1024;
    let (split, doc) = match data {
        [s, rest @ ..] => (usize::from(*s).max(1), rest),
        [] => (1, data),
    };
    let mut scanner = MimeScanner::new(MAX_ENVELOPE, MAX_MESSAGE);
    let mut out = Vec::new();
    for piece in doc.chunks(split) {
        if scanner.feed(piece, &mut out).is_err() {
            return;
        }
        assert!(
            out.len() as u64 <= MAX_MESSAGE,
            "more message than the bound"
        );
    }
    assert_eq!(scanner.decoded(), out.len() as u64);
    if let Ok(envelope) = scanner.finish() {
        assert!(envelope.len() <= MAX_ENVELOPE && envelope.len() <= doc.len());
    }
}
