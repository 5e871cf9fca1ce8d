//! mailbridge-mailbox: one Mailbox API over every transport, with accounts, providers
//! and autodetection.
//!
//! Parts (this step has providers and autodetection; the Mailbox API, accounts in the
//! store and "test receive / test send" follow):
//! - [`provider`]: built-in providers (Microsoft 365 over Graph, IMAP/SMTP, POP/SMTP;
//!   Outlook.com; Exchange on-premises over EWS; Gmail; generic IMAP/SMTP) and the
//!   domain -> provider table.
//! - [`mailbox`]: the [`mailbox::Mailbox`] trait (new since a checkpoint, fetch MIME
//!   streamed, mark read, move, delete) over IMAP, Graph, EWS and POP3.
//! - [`check`]: "test receive" (IMAP) and "test send" (SMTP), step by step with
//!   times, naming the cause and fix from the token's claims and the server's reply.
//! - [`autodetect`]: from an address to a provider and endpoints, step by step (domain
//!   table, MX, the tenant's OpenID configuration, Autodiscover v2, Thunderbird
//!   autoconfig, SRV records), each with a timeout and an injectable base URL or
//!   resolver; the result says which step decided.
//! - [`download`]: new messages of a folder into a local Maildir, durably (fsync,
//!   rename, directory fsync before the checkpoint moves), crash-safe on re-run;
//!   pipelined over IMAP.

pub mod autodetect;
pub mod check;
pub mod download;
pub mod mailbox;
pub mod provider;
