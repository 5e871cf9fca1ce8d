//! Autodiscover v2 (`microsoft-protocols.md` §7.1).

use axum::Router;

use crate::emulator::Emulator;

/// The Autodiscover routes.
pub fn router() -> Router<Emulator> {
    Router::new()
}
