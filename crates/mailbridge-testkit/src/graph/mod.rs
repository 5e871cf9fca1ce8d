//! Microsoft Graph v1.0 mail (`microsoft-protocols.md` §3), served from the Dovecot
//! mailboxes.

use axum::Router;

use crate::emulator::Emulator;

/// The Graph routes.
pub fn router() -> Router<Emulator> {
    Router::new()
}
