//! mailbridge-smtp: sending mail over SMTP submission (RFC 6409).
//!
//! Parts:
//! - [`reply`]: pure parsers over bytes with explicit limits: replies (multi-line,
//!   at most 4 KiB per line, 256 lines and 64 KiB per reply, text made printable),
//!   enhanced status codes, EHLO capabilities; and what a reply means
//!   ([`reply::Meaning`]: SMTP AUTH disabled, authentication failed, SendAs denied,
//!   throttled, ...), with the admin's fix. Never panics on server bytes.
//! - [`client`]: the thin tokio driver: plain, STARTTLS or implicit TLS with an
//!   extra trusted CA, EHLO capabilities, `AUTH XOAUTH2` (initial response, as
//!   Exchange accepts it), `PLAIN` and `LOGIN` (a refusal names the login and the
//!   mechanism), the envelope (`MAIL FROM`, `RCPT TO`, `DATA`) in one write when the
//!   server offers `PIPELINING` (RFC 2920), each reply still taken as the answer to
//!   its own command, and `DATA` streamed from any reader with dot stuffing, so a
//!   large message is never held in memory. A message larger than the account's
//!   `limits.max_message_size` or the server's EHLO `SIZE` is refused before
//!   `MAIL FROM` when its size is known (then sent as `SIZE=n`, RFC 1870), else
//!   stopped while streaming, before its final `.`, so nothing is delivered
//!   ([`SmtpError::MessageTooLarge`]). Each reply must come whole within the
//!   timeout; the reply to the final `.` gets 10 minutes (RFC 5321 §4.5.3.2.6), and
//!   no reply to it is [`SmtpError::OutcomeUnknown`] (the server may have accepted
//!   the message), never a passing failure.
//!
//! Hand-written rather than lettre: lettre's send takes the whole message in memory,
//! and Exchange's replies need classifying beyond 4xx/5xx.

pub mod client;
pub mod reply;

pub use client::{
    Credentials, FINAL_REPLY_TIMEOUT, Mechanism, SignIn, SizeLimit, SmtpClient, SmtpConfig,
    SmtpError, TlsMode,
};
pub use reply::{Meaning, Reply};
