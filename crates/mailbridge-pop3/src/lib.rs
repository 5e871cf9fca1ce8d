//! mailbridge-pop3: downloading mail over POP3 (RFC 1939) with STLS (RFC 2595) and
//! SASL (RFC 5034).
//!
//! Parts:
//! - [`response`]: pure parsers over bytes with explicit limits: status lines (`+OK` /
//!   `-ERR` with RFC 2449 response codes, server text made printable), the `UIDL` and
//!   `LIST` listings (at most `max_list_items` entries), and multi-line messages
//!   decoded as a stream (dot stuffing, terminator, at most `max_message_size` bytes,
//!   lines of any length); what a refusal means with the admin's fix. Never panicking
//!   on server bytes.
//! - [`client`]: the thin tokio driver: plain, STLS or implicit TLS; `AUTH XOAUTH2`
//!   in the two steps Microsoft 365 requires (it refuses the token on the first
//!   line), and `USER`/`PASS` (a refusal names the login and the mechanism);
//!   `STAT`, `UIDL`, `LIST`, `RETR` streamed into any writer (a large message is
//!   never held in memory), `TOP`, `DELE`, `QUIT`. Every listing and message is
//!   bounded by the account's [`mailbridge_types::config::Limits`], and each command
//!   by its time per command; a bound reached is [`Pop3Error::LimitExceeded`].
//!
//! Written here rather than with async-pop, whose XOAUTH2 authenticator sends the
//! token on the first line, which Exchange Online refuses.

pub mod client;
pub mod response;

pub use client::{
    Credentials, Limit, Mechanism, Pop3Client, Pop3Config, Pop3Error, SignIn, TlsMode,
};
pub use response::{Meaning, Status};
