//! The sync loop against real Dovecot and SQLite: a checkpoint never covers what the
//! sink did not make durable, a re-run goes on from it without duplicating, and a
//! Maildir written by earlier versions is recognised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod outbox;
mod parked;
mod scenarios;
mod sync;
mod transports;
mod watcher;
