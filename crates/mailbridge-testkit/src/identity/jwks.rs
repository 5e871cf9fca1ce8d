//! The signing keys (`GET /{tenant}/discovery/v2.0/keys`), `microsoft-protocols.md` §1.1.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Segment, resolve_segment};
use crate::aad::json_response;
use crate::emulator::Emulator;

/// The JWKS document: the emulator's one RS256 key.
pub async fn keys(State(emulator): State<Emulator>, Path(tenant): Path<String>) -> Response {
    let segment = match resolve_segment(&emulator, &tenant) {
        Ok(s) => s,
        Err(e) => return e.to_error(true).into_response_at(emulator.now()),
    };
    let tid = match segment {
        Segment::Common | Segment::Organizations => "{tenantid}".to_owned(),
        other => other.tenant_id().map(|t| t.to_string()).unwrap_or_default(),
    };
    let issuer = format!("{}/{tid}/v2.0", emulator.base_url());
    super::discovery::cacheable(json_response(
        StatusCode::OK,
        &emulator.signing_key().jwks(&issuer),
    ))
}
