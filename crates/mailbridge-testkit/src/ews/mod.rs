//! Exchange Web Services (`microsoft-protocols.md` §4), served from the Dovecot mailboxes.

use axum::Router;

use crate::emulator::Emulator;

/// The EWS routes.
pub fn router() -> Router<Emulator> {
    Router::new()
}
