//! The emulator's shared state: the tenant model behind a lock, the clock, the
//! token-signing key, per-surface flow state and the log of every request received.
//!
//! [`Emulator`] is cheap to clone (an `Arc`) and is the state of every HTTP handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use mailbridge_types::{Clock, SystemClock};
use serde::Serialize;
use time::OffsetDateTime;

use crate::crypto::{CryptoError, SigningKey, random_token};
use crate::knobs::{Faults, Knobs};
use crate::model::TenantModel;
use crate::tokens::{AccessToken, TokenGrant, TokenRejection, validate_jwt};

/// One request the emulator received, for tests to assert on.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// `http`, `imap-judge`, ...
    pub surface: String,
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Header names and values (lower-case names, in arrival order).
    pub headers: Vec<(String, String)>,
    /// The body, cut at 64 KiB, lossily decoded as UTF-8.
    pub body: String,
    /// HTTP status answered (0 when not answered yet).
    pub status: u16,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl RecordedRequest {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    /// A form or query parameter of the request (query first, then an urlencoded body).
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
        url::form_urlencoded::parse(query.as_bytes())
            .chain(url::form_urlencoded::parse(self.body.as_bytes()))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

struct Inner {
    model: RwLock<TenantModel>,
    clock: Arc<dyn Clock>,
    signing_key: SigningKey,
    base_url: OnceLock<String>,
    opaque_tokens: Mutex<HashMap<String, AccessToken>>,
    requests: Mutex<Vec<RecordedRequest>>,
    identity: Mutex<crate::identity::IdentityState>,
    mail_store: OnceLock<crate::mailstore::MailStore>,
    graph: crate::graph::GraphState,
    ews: Mutex<crate::ews::EwsState>,
}

/// The emulated Microsoft 365 world. Clone freely.
#[derive(Clone)]
pub struct Emulator(Arc<Inner>);

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.0.base_url.get())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Emulator {
    /// An emulator on the system clock.
    pub fn new(model: TenantModel) -> Result<Self, CryptoError> {
        Self::with_clock(model, Arc::new(SystemClock))
    }

    /// An emulator reading time from `clock` (an [`mailbridge_types::OffsetClock`] in tests).
    pub fn with_clock(model: TenantModel, clock: Arc<dyn Clock>) -> Result<Self, CryptoError> {
        Ok(Self(Arc::new(Inner {
            model: RwLock::new(model),
            clock,
            signing_key: SigningKey::generate()?,
            base_url: OnceLock::new(),
            opaque_tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            identity: Mutex::new(crate::identity::IdentityState::default()),
            mail_store: OnceLock::new(),
            graph: crate::graph::GraphState::default(),
            ews: Mutex::new(crate::ews::EwsState::default()),
        })))
    }

    /// Reads the model.
    pub fn read<R>(&self, f: impl FnOnce(&TenantModel) -> R) -> R {
        f(&self.0.model.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Changes the model. Exchange-side changes should stamp `added_at` with
    /// [`Emulator::now`] so the propagation delay applies.
    pub fn update<R>(&self, f: impl FnOnce(&mut TenantModel) -> R) -> R {
        f(&mut self.0.model.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of the knobs.
    pub fn knobs(&self) -> Knobs {
        self.read(|m| m.knobs.clone())
    }

    /// Changes the knobs.
    pub fn update_knobs(&self, f: impl FnOnce(&mut Knobs)) {
        self.update(|m| f(&mut m.knobs));
    }

    /// Fires a fault counter: true (and the counter decremented) when it was above zero.
    pub fn take_fault(&self, pick: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        self.update(|m| {
            let counter = pick(&mut m.knobs.faults);
            if *counter > 0 {
                *counter -= 1;
                true
            } else {
                false
            }
        })
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        self.0.clock.now()
    }

    /// Whether an Exchange-side change made at `added_at` has propagated.
    pub fn exchange_change_effective(&self, added_at: Option<OffsetDateTime>) -> bool {
        let delay = self.read(|m| m.knobs.exchange_propagation_delay_secs);
        added_at.is_none_or(|at| self.now() >= at + time::Duration::seconds(delay))
    }

    /// The token-signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0.signing_key
    }

    /// Sets the base URL once the HTTP server is bound.
    pub(crate) fn set_base_url(&self, url: String) {
        let _ = self.0.base_url.set(url);
    }

    /// The base URL of the HTTP endpoints (authority host, Graph root, EWS and
    /// Autodiscover are all served from it), e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        self.0.base_url.get().cloned().unwrap_or_default()
    }

    /// Mints an access token: an RS256 JWT, or an opaque ticket for personal accounts.
    pub fn issue_access_token(&self, grant: &TokenGrant, personal: bool) -> String {
        let claims = grant.claims();
        if personal {
            let ticket = format!("EwB{}", random_token(96));
            if let Some(token) = AccessToken::from_claims(&claims) {
                lock(&self.0.opaque_tokens).insert(ticket.clone(), token);
            }
            return ticket;
        }
        let kid = &self.0.signing_key.kid;
        let mut header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid});
        if grant.resource.api == crate::model::Api::Graph {
            header["nonce"] = serde_json::json!(random_token(32));
        }
        self.0
            .signing_key
            .sign_jwt(&header, &claims)
            .unwrap_or_default()
    }

    /// An app-only token for `app` in the first tenant, as client credentials would
    /// issue it, but with the `roles` given (tests of the resource side).
    pub fn app_token(
        &self,
        app: &crate::model::AppRegistration,
        resource: crate::tokens::Resource,
        roles: &[&str],
    ) -> String {
        let grant = TokenGrant {
            resource,
            tenant_id: self.read(|m| m.tenants.first().map(|t| t.id).unwrap_or_default()),
            app_id: app.client_id,
            app_display_name: app.display_name.clone(),
            client_auth: 1,
            subject: crate::tokens::Subject::App {
                service_principal_id: app.service_principal_id,
            },
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            scopes: std::collections::BTreeSet::new(),
            issued_at: self.clock().unix(),
            lifetime_secs: self.read(|m| m.knobs.access_token_lifetime_secs),
        };
        self.issue_access_token(&grant, false)
    }

    /// A delegated token of `upn` for `app` with the `scopes` given.
    pub fn user_token(
        &self,
        app: &crate::model::AppRegistration,
        upn: &str,
        resource: crate::tokens::Resource,
        scopes: &[&str],
    ) -> String {
        let (tenant_id, object_id, name) = self.read(|m| {
            m.user(upn)
                .map(|(t, u)| (t.id, u.object_id, u.display_name.clone()))
                .unwrap_or_default()
        });
        let grant = TokenGrant {
            resource,
            tenant_id,
            app_id: app.client_id,
            app_display_name: app.display_name.clone(),
            client_auth: 0,
            subject: crate::tokens::Subject::User {
                object_id,
                upn: upn.to_owned(),
                name,
            },
            roles: std::collections::BTreeSet::new(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            issued_at: self.clock().unix(),
            lifetime_secs: self.read(|m| m.knobs.access_token_lifetime_secs),
        };
        self.issue_access_token(&grant, false)
    }

    /// Validates a bearer token presented to a protected resource: signature (or a
    /// known opaque ticket) and lifetime by the emulator's clock. Audience, roles and
    /// scopes are for the caller to judge.
    pub fn validate_access_token(&self, token: &str) -> Result<AccessToken, TokenRejection> {
        let now = self.0.clock.unix();
        if token.starts_with("EwB") {
            let t = lock(&self.0.opaque_tokens)
                .get(token)
                .cloned()
                .ok_or(TokenRejection::Malformed)?;
            return if now >= t.expires {
                Err(TokenRejection::Expired)
            } else {
                Ok(t)
            };
        }
        validate_jwt(token, &self.0.signing_key, now)
    }

    /// Records a request.
    pub fn record(&self, request: RecordedRequest) {
        lock(&self.0.requests).push(request);
    }

    /// Sets the status of the most recent request matching `uri` that has none yet.
    pub(crate) fn record_status(&self, index: usize, status: u16) {
        if let Some(r) = lock(&self.0.requests).get_mut(index) {
            r.status = status;
        }
    }

    /// Number of recorded requests (the index the next one gets).
    pub(crate) fn request_count(&self) -> usize {
        lock(&self.0.requests).len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.0.requests).clone()
    }

    /// Requests whose path ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path().ends_with(suffix))
            .collect()
    }

    /// Connects the emulator to the mail store (done once by the harness).
    pub fn attach_mail_store(&self, store: crate::mailstore::MailStore) {
        let _ = self.0.mail_store.set(store);
    }

    /// The mail store, when mail servers are attached.
    pub fn mail_store(&self) -> Option<&crate::mailstore::MailStore> {
        self.0.mail_store.get()
    }

    /// Graph's state (throttling counters, delta sync state, upload sessions).
    pub fn graph_state(&self) -> &crate::graph::GraphState {
        &self.0.graph
    }

    /// The identity platform's flow state (codes, refresh tokens, device codes, sign-in
    /// sessions).
    pub fn identity_state(&self) -> MutexGuard<'_, crate::identity::IdentityState> {
        lock(&self.0.identity)
    }

    /// EWS state (SyncFolderItems sync states).
    pub fn ews_state(&self) -> MutexGuard<'_, crate::ews::EwsState> {
        lock(&self.0.ews)
    }
}
