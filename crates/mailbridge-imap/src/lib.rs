//! mailbridge-imap: reading mailboxes over IMAP4rev1 (RFC 3501).
//!
//! Parts:
//! - [`response`]: pure parsers over bytes with explicit limits (no I/O, never
//!   panicking on server bytes): one line out of a buffer, literal announcements,
//!   tagged status, continuation, greeting, `CAPABILITY`, `SELECT` data (`EXISTS`,
//!   `UIDVALIDITY`, `UIDNEXT`), `SEARCH` and `ESEARCH` (RFC 4731) listings bounded
//!   by an item count, the items of a `FETCH` response between its literals (UID,
//!   `BODY[section]`), what a refusal means with the admin's fix, and server text
//!   made printable for error messages. Property-tested and fuzzed
//!   (`mailbridge-fuzz`: `imap_response`, `imap_fetch`, `imap_search`).
//! - [`client`]: the thin tokio driver over those parsers, held to the account's
//!   [`mailbridge_types::config::Limits`] (time per command, largest message, longest
//!   listing) and to fixed bounds on untagged lines, bytes and continuation requests
//!   per command: plain, STARTTLS or implicit TLS; `AUTHENTICATE
//!   XOAUTH2` (SASL-IR when offered, else the continuation form), `OAUTHBEARER`,
//!   `LOGIN`; `SELECT` with UIDVALIDITY/UIDNEXT; new messages since a UID checkpoint
//!   or received since a date (`SINCE`), listed with `ESEARCH` or in windows of
//!   message sequence numbers so the cost follows the number of messages, not the
//!   UID space; `UID FETCH BODY.PEEK[]` streamed straight
//!   into a writer (the literal is never held in memory), or only the header
//!   (`BODY.PEEK[HEADER]`); flags, `UID MOVE`, expunge; `APPEND` from a reader; `IDLE`
//!   (answering at once when mail was announced in another command's answer since
//!   `SELECT`, which the server would not announce again).
//!
//! Written here because the mail must stream: async-imap returns whole messages.

pub mod client;
pub mod response;

pub use client::{Credentials, FetchError, Folder, ImapClient, ImapConfig, ImapError, TlsMode};
pub use response::Meaning;
