//! The sinks against real things: files on disk, an HTTP receiver on loopback, real
//! Postfix delivering into Dovecot, and scripted hostile servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attachments;
mod folder;
mod relay;
mod webhook;

use std::path::Path;

use mailbridge_sinks::{Delivery, IdempotencyKey};

/// A delivery of `mime`, spooled under `dir`.
pub fn delivery(dir: &Path, source_id: &str, mime: &[u8]) -> Delivery {
    let spool = dir.join(format!("spool-{source_id}.eml"));
    std::fs::write(&spool, mime).unwrap();
    Delivery {
        key: IdempotencyKey::new("account-1", "INBOX", source_id, None),
        account: "alice".to_owned(),
        folder: "INBOX".to_owned(),
        source_id: source_id.to_owned(),
        spool,
        mime_link: None,
    }
}

/// The names in `dir`, sorted, without hidden ones.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}
