//! The Mailbox and send APIs against real Dovecot and Postfix, the emulated tenant and
//! scripted hostile servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod download;
mod imap_hostile;
mod mailbox;
mod matrix;
mod pop3_session;
mod prop;
mod send;
mod since;
mod token_source;
