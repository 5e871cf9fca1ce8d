//! mailbridge-imap: reading mailboxes over IMAP4rev1 (RFC 3501).
//!
//! Parts:
//! - [`response`]: response lines (tagged, untagged, continuation), literal markers,
//!   status codes (`UIDVALIDITY`, `UIDNEXT`, `APPENDUID`, `COPYUID`), and what a
//!   refusal means with the admin's fix; bounded, never panicking on server bytes.
//! - [`client`]: the tokio client: plain, STARTTLS or implicit TLS; `AUTHENTICATE
//!   XOAUTH2` (SASL-IR when offered, else the continuation form), `OAUTHBEARER`,
//!   `LOGIN`; `SELECT` with UIDVALIDITY/UIDNEXT; new messages since a UID checkpoint
//!   or received since a date (`SINCE`); `UID FETCH BODY.PEEK[]` streamed straight
//!   into a writer (the literal is never held in memory), or only the header
//!   (`BODY.PEEK[HEADER]`); flags, `UID MOVE`, expunge; `APPEND` from a reader; `IDLE`.
//!
//! Written here because the mail must stream: async-imap returns whole messages.

pub mod client;
pub mod response;

pub use client::{Credentials, Folder, ImapClient, ImapConfig, ImapError, TlsMode};
pub use response::Meaning;
