//! mailbridge-smtp: sending mail over SMTP submission (RFC 6409).
//!
//! Parts:
//! - [`reply`]: the reply parser (multi-line replies, enhanced status codes, size
//!   limits; never panics on server bytes) and what a reply means
//!   ([`reply::Meaning`]: SMTP AUTH disabled, authentication failed, SendAs denied,
//!   throttled, ...), with the admin's fix.
//! - [`client`]: the tokio client: plain, STARTTLS or implicit TLS with an extra
//!   trusted CA, EHLO capabilities, `AUTH XOAUTH2` (initial response, as Exchange
//!   accepts it), `PLAIN` and `LOGIN`, the envelope (`MAIL FROM`, `RCPT TO`, `DATA`)
//!   in one write when the server offers `PIPELINING` (RFC 2920), each reply still
//!   taken as the answer to its own command, and `DATA` streamed from any reader with
//!   dot stuffing, so a large message is never held in memory.
//!
//! Hand-written rather than lettre: lettre's send takes the whole message in memory,
//! and Exchange's replies need classifying beyond 4xx/5xx.

pub mod client;
pub mod reply;

pub use client::{Credentials, SmtpClient, SmtpConfig, SmtpError, TlsMode};
pub use reply::{Meaning, Reply};
