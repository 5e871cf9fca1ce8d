//! Integration tests of the emulated tenant. They talk to it only through HTTP, IMAP,
//! POP3 and SMTP clients, and to real Dovecot and Postfix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ews;
mod graph;
mod identity;
mod mail_servers;
mod mime;
