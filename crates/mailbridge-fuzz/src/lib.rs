//! mailbridge-fuzz: one fuzz target per parser of untrusted bytes (IMAP, POP3 and
//! SMTP responses, Graph JSON pages and errors, EWS SOAP answers, token-endpoint
//! answers, Autodiscover JSON, autoconfig XML, MIME into a Graph draft).
//!
//! Parts:
//! - [`Target`]: a named function over bytes that must never panic, whatever it is
//!   given; [`all`] lists every target;
//! - `targets::*`: the targets, one file per area, each calling the crate's pure
//!   parser (no I/O, explicit limits);
//! - the `mailbridge-fuzz` binary: a stable-Rust runner (corpus replay, then random
//!   mutations for a given time); `fuzz/` holds the cargo-fuzz (libFuzzer, nightly)
//!   wrappers over the same functions and the committed seed corpus.

pub mod runner;
pub mod targets;

/// A fuzz target: a name (also its corpus directory, `fuzz/corpus/<name>`) and a
/// function that must not panic on any input.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in a stable order.
pub fn all() -> Vec<Target> {
    let mut all: Vec<Target> = [
        targets::imap::TARGETS,
        targets::pop3::TARGETS,
        targets::smtp::TARGETS,
        targets::graph::TARGETS,
        targets::ews::TARGETS,
        targets::auth::TARGETS,
        targets::mailbox::TARGETS,
    ]
    .concat();
    all.sort_by_key(|t| t.name);
    all
}

/// The target with this name.
pub fn find(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}
