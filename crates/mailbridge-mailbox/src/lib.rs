//! mailbridge-mailbox: one Mailbox API over every transport, and one send API.
//!
//! Parts:
//! - [`mailbox`]: the [`mailbox::Mailbox`] trait (new since a checkpoint, fetch MIME
//!   streamed, mark read, move, delete) over IMAP, Graph, EWS and POP3; messages named
//!   by a typed [`mailbox::MessageRef`] (IMAP UID with its UIDVALIDITY, Graph id, EWS
//!   id, POP3 UIDL); errors as [`mailbox::MailboxError`] (class, typed kind, the
//!   transport's error as source). An account's POP3 mailbox takes each listing after
//!   the first in a new session (a POP3 session never sees later mail), the old
//!   session's `QUIT` committing its deletions.
//! - [`connect`]: an account's incoming side opened as one [`connect::AnyMailbox`]
//!   from its configuration and a password or token; who an account is on the wire
//!   ([`connect::Identity`]) and the sender-address rule ([`connect::sender`]); the
//!   trust settings and Graph root of an endpoint.
//! - [`compose`]: a structured outgoing message (from, to/cc/bcc, reply-to, subject,
//!   text/HTML, attachments streamed from files, extra headers checked for CR/LF
//!   injection) and its MIME, written through mail-builder with attachments streamed.
//! - [`send`]: one send API over SMTP (connection reused), Graph (`sendMail` MIME, or
//!   a draft with upload sessions for large attachments) and EWS (`CreateItem`), for
//!   structured messages and raw MIME.
//! - [`download`]: a listing of a folder into a local Maildir, durably (fsync,
//!   rename, directory fsync before each checkpoint goes to the caller's
//!   [`download::Durable`] hook), crash-safe on re-run; pipelined over IMAP; the
//!   Maildir's failures typed as its own. The loop that lists, downloads and stores
//!   checkpoints is `mailbridge-connector`'s `sync`.
//!
//! Accounts, providers, autodetection and the checks (test receive / test send) are in
//! `mailbridge-accounts`, which builds on this crate.

pub mod compose;
pub mod connect;
pub mod download;
pub mod mailbox;
pub mod send;
