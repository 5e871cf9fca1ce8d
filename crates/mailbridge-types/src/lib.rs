//! Shared vocabulary of mailbridge: the injectable clock and (in later steps) typed ids,
//! secrets and error classes. This crate does no I/O.
//!
//! Parts:
//! - [`clock`]: the [`Clock`] trait every component reads time from, with a system
//!   clock and an [`OffsetClock`] that tests move forward to expire tokens and secrets
//!   without waiting.
//! - [`error_class`]: [`ErrorClass`], what to do about an error (retry, wait, sign in,
//!   ask an admin, fix the configuration, give up).
//! - [`config`]: apps (tenant, client id, cloud, endpoints, credential) and accounts
//!   (address, sign-in method, app, transports), as read from the configuration file,
//!   and what such a file gets wrong that is found without connecting
//!   ([`config::ConfigFile::problems`], [`config::pin_digest`]).
//! - [`access`]: roles (administrator, user, auditor) and [`access::allowed`], the one
//!   rule of who may do what that the API and the pages ask.
//! - [`backoff`]: the one retry rule (exponential, full jitter, capped, never shorter
//!   than a server's `Retry-After`) for reconnecting, redelivering and resending.
//! - [`text`]: [`printable`], a server's words made safe to show on a terminal
//!   (control characters written as visible escapes).

pub mod access;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod error_class;
pub mod text;

pub use clock::{Clock, OffsetClock, SystemClock};
pub use error_class::{ErrorClass, error_chain};
pub use text::{printable, printable_lines};
