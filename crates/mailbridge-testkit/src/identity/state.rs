//! Flow state of the identity platform, kept in [`crate::Emulator::identity_state`]:
//! interactive sign-in flows and browser sessions, authorization codes, refresh tokens,
//! device codes and the client assertions already seen.
//!
//! Every interactive page carries an opaque flow id that is consumed when its form is
//! posted; the next page gets a fresh id, so a replayed form finds nothing.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::Segment;
use crate::crypto::random_token;

/// Flow state: authorization codes, refresh tokens, device codes, sign-in sessions.
#[derive(Debug, Default)]
pub struct IdentityState {
    pub(crate) flows: HashMap<String, Flow>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) codes: HashMap<String, AuthCode>,
    pub(crate) refresh_tokens: HashMap<String, RefreshToken>,
    /// Keyed by device code.
    pub(crate) device_codes: HashMap<String, DeviceCode>,
    /// `client_id jti` of client assertions seen, with their `exp`.
    pub(crate) assertions: HashMap<String, i64>,
}

impl IdentityState {
    /// Every refresh token issued so far (tests check none is stored in clear).
    pub fn refresh_token_values(&self) -> Vec<String> {
        self.refresh_tokens.keys().cloned().collect()
    }

    /// Stores a flow under a fresh id and returns the id.
    pub(crate) fn put_flow(&mut self, flow: Flow) -> String {
        let id = random_token(24);
        self.flows.insert(id.clone(), flow);
        id
    }

    /// The device code (the key) whose user code is `user_code` (case-insensitive,
    /// dashes and spaces ignored).
    pub(crate) fn device_by_user_code(&self, user_code: &str) -> Option<(String, DeviceCode)> {
        let wanted: String = user_code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_uppercase();
        self.device_codes
            .iter()
            .find(|(_, d)| d.user_code == wanted)
            .map(|(k, d)| (k.clone(), d.clone()))
    }

    /// Drops codes, flows and assertions past their lifetime.
    pub(crate) fn prune(&mut self, now: OffsetDateTime) {
        let hour = time::Duration::hours(1);
        self.flows.retain(|_, f| now - f.created < hour);
        self.codes.retain(|_, c| now - c.expires < hour);
        let unix = now.unix_timestamp();
        self.assertions
            .retain(|_, exp| exp.saturating_add(3600) > unix);
    }
}

/// A user who signed in in the browser (the `ESTSAUTH` cookie).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub upn: String,
    pub mfa_done: bool,
}

/// The signed-in user of a flow.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    pub upn: String,
    /// The user's home tenant.
    pub tenant_id: Uuid,
    pub mfa_done: bool,
}

/// Which interactive step a flow id is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    SignIn,
    Mfa,
    Confirm,
    Consent,
}

/// An interactive flow (one browser tab going through the pages).
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub kind: FlowKind,
    pub segment: Segment,
    pub client_id: Uuid,
    pub user: Option<SignedIn>,
    pub step: Step,
    pub login_hint: Option<String>,
    pub created: OffsetDateTime,
}

/// What the flow ends in.
#[derive(Debug, Clone)]
pub(crate) enum FlowKind {
    Authorize(AuthorizeRequest),
    Device { device_code: String },
    AdminConsent(AdminConsentRequest),
}

/// How the answer goes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// A validated `/authorize` request.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizeRequest {
    pub redirect_uri: String,
    /// The platform the redirect URI is registered under is a public client.
    pub public: bool,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub response_mode: ResponseMode,
    pub code_challenge: Option<(String, PkceMethod)>,
    pub prompt_consent: bool,
}

/// A validated `/adminconsent` request.
#[derive(Debug, Clone)]
pub(crate) struct AdminConsentRequest {
    pub redirect_uri: String,
    pub scope: Option<String>,
    pub state: Option<String>,
}

/// `code_challenge_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PkceMethod {
    S256,
    Plain,
}

/// An authorization code.
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub client_id: Uuid,
    pub redirect_uri: String,
    pub public: bool,
    pub code_challenge: Option<(String, PkceMethod)>,
    pub segment: Segment,
    pub user: SignedIn,
    pub scope: String,
    pub nonce: Option<String>,
    pub expires: OffsetDateTime,
    pub redeemed: bool,
}

/// A refresh token.
#[derive(Debug, Clone)]
pub(crate) struct RefreshToken {
    pub client_id: Uuid,
    pub user: SignedIn,
    pub segment: Segment,
    /// The scope of the grant it came from (used when a refresh names no scope).
    pub scope: String,
    pub public: bool,
    pub issued: OffsetDateTime,
    pub last_used: OffsetDateTime,
    pub revoked: bool,
}

/// Where a device code stands.
#[derive(Debug, Clone)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved(SignedIn),
    Declined,
    /// Tokens were issued, or the decline was reported.
    Finished,
}

/// A device code.
#[derive(Debug, Clone)]
pub(crate) struct DeviceCode {
    pub user_code: String,
    pub client_id: Uuid,
    pub segment: Segment,
    pub scope: String,
    pub expires: OffsetDateTime,
    pub status: DeviceStatus,
}
