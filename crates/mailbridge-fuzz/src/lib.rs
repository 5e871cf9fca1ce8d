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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Rng, mutate, read_corpus};

    /// Every target over its seed corpus and 300 deterministic mutations of each seed
    /// (a smoke run in every `cargo test`; the long runs are `scripts/fuzz`'s). A
    /// finding added to the corpus stays a regression test here.
    #[test]
    fn every_target_takes_its_seeds_and_their_mutations() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for target in all() {
            let seeds = read_corpus(&root.join(target.name));
            assert!(
                seeds.len() >= 3,
                "{}: {} seeds in fuzz/corpus",
                target.name,
                seeds.len()
            );
            let mut rng = Rng::new(0x9e37_79b9);
            for seed in &seeds {
                (target.run)(seed);
                for _ in 0..300 {
                    let mut input = seed.clone();
                    for _ in 0..=rng.below(4) {
                        mutate(&mut rng, &mut input, &seeds);
                    }
                    (target.run)(&input);
                }
            }
        }
    }

    #[test]
    fn target_names_are_unique() {
        let mut names: Vec<_> = all().iter().map(|t| t.name).collect();
        names.dedup();
        assert_eq!(names.len(), all().len());
    }
}
