//! Exchange Online's rules for who may open which mailbox over which protocol, used by
//! the Dovecot/Postfix judge hook.

use axum::Router;

use crate::emulator::Emulator;

/// The judge routes (`/_testkit/judge`).
pub fn router() -> Router<Emulator> {
    Router::new()
}
