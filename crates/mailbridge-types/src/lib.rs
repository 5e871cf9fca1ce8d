//! Shared vocabulary of mailbridge: the injectable clock and (in later steps) typed ids,
//! secrets and error classes. This crate does no I/O.
//!
//! Parts:
//! - [`clock`]: the [`Clock`] trait every component reads time from, with a system
//!   clock and an [`OffsetClock`] that tests move forward to expire tokens and secrets
//!   without waiting.

pub mod clock;

pub use clock::{Clock, OffsetClock, SystemClock};
