//! mailbridge-pop3: downloading mail over POP3 (RFC 1939) with STLS (RFC 2595) and
//! SASL (RFC 5034).
//!
//! Parts:
//! - [`response`]: status lines (`+OK` / `-ERR` with RFC 2449 response codes), the
//!   `UIDL` listing, and what a refusal means with the admin's fix; bounded, and
//!   never panicking on server bytes.
//! - [`client`]: the tokio client: plain, STLS or implicit TLS; `AUTH XOAUTH2` in the
//!   two steps Microsoft 365 requires (it refuses the token on the first line), and
//!   `USER`/`PASS`; `STAT`, `UIDL`, `RETR` streamed into any writer with the dot
//!   stuffing removed (a large message is never held in memory), `DELE`, `QUIT`.
//!
//! Written here rather than with async-pop, whose XOAUTH2 authenticator sends the
//! token on the first line, which Exchange Online refuses.

pub mod client;
pub mod response;

pub use client::{Credentials, Pop3Client, Pop3Config, Pop3Error, TlsMode};
pub use response::{Meaning, Status};
