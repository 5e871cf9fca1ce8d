//! mailbridge-graph: Microsoft Graph v1.0 mail, with our own serde types for the
//! dozen endpoints mailbridge needs (there is no maintained Rust Graph SDK).
//!
//! Parts:
//! - [`error`]: Graph's error envelope and what each answer means (throttled with
//!   `Retry-After`, token problems, missing admin consent or access policy,
//!   unlicensed mailbox, delta state lost) with the admin's fix.
//! - [`page`]: delta pages read as a pure function over bytes, with a bound.
//! - [`client`]: the client: a mailbox addressed by object id or UPN (app-only) or
//!   `/me` (delegated); per-folder delta sync; `$value` MIME streamed into a writer;
//!   mark read, move, delete; `sendMail` with MIME; drafts, attachments and upload
//!   sessions (chunks without the Graph token), sending a draft; at most 4 requests in flight per
//!   mailbox and 429/503 retried after `Retry-After`, a bounded number of times.
//!   Every method takes a [`TokenSource`](mailbridge_auth::source::TokenSource), not a
//!   token: it is asked before each request, and a 401 is retried once with the token
//!   the source replaces the refused one with (a second 401 is the error).

pub mod client;
pub mod error;
pub mod page;

pub use client::{
    ClientError, DeltaItem, DeltaPage, DeltaRound, Draft, GraphClient, GraphConfig, Mailbox,
    REQUEST_LIMIT, UPLOAD_CHUNK_UNIT, UPLOAD_SESSION_MAX, UPLOAD_SESSION_MIN,
};
pub use error::{GraphError, Meaning};
