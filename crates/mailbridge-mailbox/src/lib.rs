//! mailbridge-mailbox: one Mailbox API over every transport, with accounts, providers
//! and autodetection.
//!
//! Parts:
//! - [`account`]: accounts made from a provider, and the validation of accounts and
//!   apps (each problem names the setting and what to change; host names, ports, URLs,
//!   pins and name lengths included).
//! - [`provider`]: built-in providers (Microsoft 365 over Graph, IMAP/SMTP, POP/SMTP and
//!   EWS, the last with Exchange Online's retirement notice; Outlook.com; Exchange
//!   on-premises over EWS; Gmail; generic IMAP/SMTP), the defaults a provider gives its
//!   accounts (app, extra CA file, TLS pins), and the domain -> provider table.
//! - [`mailbox`]: the [`mailbox::Mailbox`] trait (new since a checkpoint, fetch MIME
//!   streamed, mark read, move, delete) over IMAP, Graph, EWS and POP3; messages named
//!   by a typed [`mailbox::MessageRef`] (IMAP UID with its UIDVALIDITY, Graph id, EWS
//!   id, POP3 UIDL); errors as [`mailbox::MailboxError`] (class, typed kind, the
//!   transport's error as source).
//! - [`connect`]: an account's incoming side opened as one [`connect::AnyMailbox`]
//!   from its configuration and a password or token.
//! - [`check`]: "test receive" (IMAP, POP3, Graph, EWS: open the inbox and read one
//!   header) and "test send" (SMTP, Graph, EWS), step by step with times, naming the
//!   cause and fix of every §8.2 admin mistake from the token's claims and the
//!   server's reply.
//! - [`compose`]: a structured outgoing message (from, to/cc/bcc, reply-to, subject,
//!   text/HTML, attachments streamed from files, extra headers checked for CR/LF
//!   injection) and its MIME, written through mail-builder with attachments streamed.
//! - [`send`]: one send API over SMTP (connection reused), Graph (`sendMail` MIME, or
//!   a draft with upload sessions for large attachments) and EWS (`CreateItem`), for
//!   structured messages and raw MIME.
//! - [`autodetect`]: from an address to a provider and endpoints, step by step (domain
//!   table, MX, the tenant's OpenID configuration, Autodiscover v2, Thunderbird
//!   autoconfig, SRV records), each with a timeout and an injectable base URL or
//!   resolver; the result says which step decided.
//! - [`download`]: a listing of a folder into a local Maildir, durably (fsync,
//!   rename, directory fsync before each checkpoint goes to the caller's
//!   [`download::Durable`] hook), crash-safe on re-run; pipelined over IMAP; the
//!   Maildir's failures typed as its own. The loop that lists, downloads and stores
//!   checkpoints is `mailbridge-connector`'s `sync`.

pub mod account;
pub mod autodetect;
pub mod check;
pub mod compose;
pub mod connect;
pub mod download;
pub mod mailbox;
pub mod provider;
pub mod send;
