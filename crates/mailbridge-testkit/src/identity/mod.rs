//! Microsoft identity platform v2.0 (`microsoft-protocols.md` §1): discovery, JWKS,
//! `/authorize` with HTML sign-in, MFA and consent pages, `/token` for every grant,
//! `/devicecode` with its verification page, and `/adminconsent`.
//!
//! Parts, one file per endpoint:
//! - [`discovery`]: `/.well-known/openid-configuration` and MSAL instance discovery;
//!   [`jwks`]: `/discovery/v2.0/keys`.
//! - [`authorize`]: `GET /{tenant}/oauth2/v2.0/authorize`; [`signin`]: the shared
//!   interactive steps (sign-in, MFA, device confirmation, consent) behind the form
//!   routes under `/login/...`; [`pages`]: the HTML of those steps.
//! - [`token`]: `POST /{tenant}/oauth2/v2.0/token` and its grants; [`assertion`]: client
//!   assertion (certificate credential) checks; [`issue`]: minting the token answer.
//! - [`devicecode`]: `POST /{tenant}/oauth2/v2.0/devicecode` and `/devicelogin`;
//!   [`adminconsent`]: `GET /{tenant}/v2.0/adminconsent`.
//! - [`errors`]: the AADSTS messages; [`state`]: flow state (codes, refresh tokens,
//!   device codes, sign-in flows and sessions).

use axum::Router;
use axum::routing::{get, post};
use uuid::Uuid;

use crate::emulator::Emulator;
use crate::model::{CONSUMERS_TENANT_ID, Cloud, TenantModel};

pub mod adminconsent;
pub mod assertion;
pub mod authorize;
pub mod devicecode;
pub mod discovery;
pub mod errors;
pub mod issue;
pub mod jwks;
pub mod pages;
pub mod signin;
pub mod state;
pub mod token;

pub use state::IdentityState;

/// The identity routes.
pub fn router() -> Router<Emulator> {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/instance", get(discovery::instance))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks::keys))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route("/{tenant}/oauth2/v2.0/logout", get(signin::logout))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(devicecode::devicecode),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(adminconsent::adminconsent),
        )
        .route(
            "/devicelogin",
            get(devicecode::devicelogin_page).post(devicecode::devicelogin_submit),
        )
        .route("/login/signin", post(signin::signin_submit))
        .route("/login/mfa", post(signin::mfa_submit))
        .route("/login/confirm", post(signin::confirm_submit))
        .route("/login/consent", post(signin::consent_submit))
}

/// The `{tenant}` path segment, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// `common`: work, school and personal accounts.
    Common,
    /// `organizations`: work and school accounts.
    Organizations,
    /// `consumers` (or the personal-account tenant's GUID): personal accounts.
    Consumers,
    /// A tenant GUID or verified domain.
    Tenant(Uuid),
}

impl Segment {
    /// The canonical form (tenant GUID or the keyword), used to compare where a code
    /// was issued and where it is redeemed.
    pub fn canonical(self) -> String {
        match self {
            Segment::Common => "common".to_owned(),
            Segment::Organizations => "organizations".to_owned(),
            Segment::Consumers => "consumers".to_owned(),
            Segment::Tenant(id) => id.to_string(),
        }
    }

    /// The tenant id this segment names, if it names one (`consumers` names the
    /// personal-account directory).
    pub fn tenant_id(self) -> Option<Uuid> {
        match self {
            Segment::Tenant(id) => Some(id),
            Segment::Consumers => Uuid::parse_str(CONSUMERS_TENANT_ID).ok(),
            Segment::Common | Segment::Organizations => None,
        }
    }

    /// The directory name used in AADSTS texts.
    pub fn directory_name(self, model: &TenantModel) -> String {
        match self {
            Segment::Tenant(id) => model
                .tenant(&id.to_string())
                .map_or_else(|| id.to_string(), |t| t.display_name.clone()),
            other => other.canonical(),
        }
    }

    /// The cloud of the tenant (global for the keywords).
    pub fn cloud(self, model: &TenantModel) -> Cloud {
        match self {
            Segment::Tenant(id) => model
                .tenant(&id.to_string())
                .map_or(Cloud::Global, |t| t.cloud),
            _ => Cloud::Global,
        }
    }
}

/// Why a `{tenant}` segment names no directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentError {
    /// Neither a GUID nor a DNS name (AADSTS900023).
    Malformed(String),
    /// Well formed but unknown (AADSTS90002).
    Unknown(String),
}

impl SegmentError {
    /// The AADSTS error for this segment problem; `on_discovery` picks Microsoft's
    /// `invalid_tenant` (discovery) over `invalid_request` (token, devicecode).
    pub fn to_error(&self, on_discovery: bool) -> crate::aad::AadError {
        match self {
            SegmentError::Malformed(s) => errors::malformed_tenant(s),
            SegmentError::Unknown(s) => errors::tenant_not_found(s, on_discovery),
        }
    }
}

/// True when `s` could be a DNS name (letters, digits, hyphens, dots).
fn looks_like_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Resolves a `{tenant}` path segment against the model.
pub fn resolve_segment(emulator: &Emulator, raw: &str) -> Result<Segment, SegmentError> {
    match raw.to_ascii_lowercase().as_str() {
        "common" => return Ok(Segment::Common),
        "organizations" => return Ok(Segment::Organizations),
        "consumers" => return Ok(Segment::Consumers),
        _ => {}
    }
    if raw.eq_ignore_ascii_case(CONSUMERS_TENANT_ID) {
        return Ok(Segment::Consumers);
    }
    if Uuid::parse_str(raw).is_err() && !looks_like_dns_name(raw) {
        return Err(SegmentError::Malformed(raw.to_owned()));
    }
    emulator.read(|m| match m.tenant(raw) {
        Some(t) if t.personal => Ok(Segment::Consumers),
        Some(t) => Ok(Segment::Tenant(t.id)),
        None => Err(SegmentError::Unknown(raw.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_and_garbage() {
        assert!(looks_like_dns_name("contoso.onmicrosoft.com"));
        assert!(looks_like_dns_name("contoso"));
        assert!(!looks_like_dns_name("contoso corp"));
        assert!(!looks_like_dns_name("https:"));
        assert!(!looks_like_dns_name("a..b"));
        assert!(!looks_like_dns_name(""));
    }
}
