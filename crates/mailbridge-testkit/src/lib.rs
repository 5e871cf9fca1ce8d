//! mailbridge-testkit: an emulated Microsoft 365 tenant for tests and for
//! `mailbridge sandbox`.
//!
//! Microsoft's HTTP endpoints are emulated in-process; mail itself lives in real
//! Dovecot and Postfix instances that the harness starts on free loopback ports, so a
//! message sent through any surface can be read through every other.
//!
//! Parts:
//! - [`model`]: the tenant model (tenants, users, mailboxes, app registrations,
//!   consents, Exchange service principals, mailbox permissions, access policies),
//!   built in code or read from TOML; [`knobs`]: lifetimes, delays, limits, faults.
//! - [`emulator`]: shared state, the clock, token minting and validation, the request
//!   log; [`server`]: the HTTP server with every surface.
//! - [`identity`]: the identity platform v2.0 (§1 of the protocol notes);
//!   [`graph`]: Graph mail (§3); [`ews`]: EWS (§4); [`autodiscover`]: Autodiscover v2
//!   (§7.1); [`exchange`]: Exchange's access rules, judged for Dovecot and Postfix.
//! - [`crypto`]: signing keys, JWTs, the per-run test CA, app certificates;
//!   [`tokens`]: scopes, resources, access tokens; [`aad`]: identity error answers.
//! - [`robot`]: a scripted person who signs in through the emulator's pages over HTTP.
//! - [`mailservers`]: the Dovecot + Postfix harness (IMAP, POP3, SMTP submission, LMTP)
//!   on free loopback ports with the per-run test CA; [`mailstore`]: the one mail store
//!   (Dovecot) that Graph and EWS read and write.
//! - [`memory`]: peak memory of a piece of work, measured in a child process.
//! - [`postgres`]: a private PostgreSQL cluster per test process (free loopback port,
//!   temporary directory, a fresh database per test, stopped when the process ends).
//! - [`browser`]: Debian's chromedriver on a free port and the headless Chromium
//!   arguments, for the web UI's browser tests.
//! - [`hostile`]: scripted hostile servers (a byte script per connection: greet, answer,
//!   never stop talking, stall, close) for the bounds tests of every client.

pub mod aad;
pub mod autodiscover;
pub mod browser;
pub mod crypto;
pub mod emulator;
pub mod ews;
pub mod exchange;
pub mod graph;
pub mod hostile;
pub mod identity;
pub mod knobs;
pub mod mailservers;
pub mod mailstore;
pub mod memory;
pub mod model;
pub mod postgres;
pub mod robot;
pub mod sandbox;
pub mod server;
pub mod tokens;

pub use emulator::{Emulator, RecordedRequest};
pub use knobs::{Faults, Knobs};
pub use model::TenantModel;
pub use server::EmulatorServer;
