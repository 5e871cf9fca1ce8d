//! mailbridge-auth against the emulated tenant: every flow over real HTTP, the cache,
//! and the rules for keeping or dropping tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod scripted;
mod support;

mod app_only;
mod delegated;
mod retry;
