//! mailbridge-ews: Exchange Web Services for on-premises Exchange (and for Exchange
//! Online while Microsoft still allows it: blocked by default from 2026-10-01, switched
//! off on 2027-04-01; [`exchange_online_notice`] says so and how to move to Graph).
//!
//! Parts:
//! - [`xml`]: a small bounded element tree read from the answer with quick-xml (local
//!   names, attributes, text), so hostile XML is an error, never a panic.
//! - [`mime_stream`]: GetItem's MimeContent decoded as the answer arrives (a pure
//!   state machine over bytes), so a message's size does not become memory.
//! - [`client`]: SOAP requests for SyncFolderItems, FindItem (a folder's first item;
//!   ids received since a date), GetItem with MimeContent or only the header fields
//!   (InternetMessageHeaders),
//!   UpdateItem (IsRead), MoveItem, DeleteItem and CreateItem (send with or without a
//!   copy); bearer tokens with `ExchangeImpersonation` + `X-AnchorMailbox` for
//!   app-only, or Basic for on-premises; tokens come from a
//!   [`TokenSource`](mailbridge_auth::source::TokenSource) before each request, and a
//!   401 is retried once with the token the source replaces the refused one with; `ErrorServerBusy` retried after its
//!   `BackOffMilliseconds`; 401 answers read from `x-ms-diagnostics`; answers read
//!   with a bound ([`client::MAX_ANSWER`], [`client::MAX_MIME_ANSWER`] for GetItem
//!   with MimeContent).
//!
//! Hand-written SOAP: the `ews` crate (Thunderbird) has types only and is MPL-2.0;
//! the handful of operations here is small.

pub mod client;
pub mod mime_stream;
pub mod xml;

pub use client::{
    Change, ChangeKind, EwsAuth, EwsClient, EwsConfig, EwsError, SyncPage, exchange_online_notice,
};
