//! `POST /{tenant}/oauth2/v2.0/token` (`microsoft-protocols.md` §1.3-§1.5): the
//! authorization-code, refresh-token, client-credentials and device-code grants, client
//! authentication (secret in the body or HTTP Basic, or a client assertion), and the
//! injected faults (`token_5xx`, `token_429`, `token_delay_ms`).

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::assertion::{self, dotnet_time};
use super::authorize::{app_for_segment, params};
use super::errors;
use super::issue::{Delegated, MultiResource, delegated_token};
use super::state::{DeviceStatus, PkceMethod};
use super::{Segment, resolve_segment};
use crate::aad::{AadError, json_response};
use crate::crypto::{b64url, sha256};
use crate::emulator::Emulator;
use crate::model::{AppRegistration, PermissionKind};
use crate::tokens::{ScopeSet, Subject, TokenGrant};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The token endpoint.
pub async fn token(
    State(emulator): State<Emulator>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = emulator.knobs().faults.token_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let now = emulator.now();
    if emulator.take_fault(|f| &mut f.token_5xx) {
        return AadError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
        .into_response_at(now);
    }
    if emulator.take_fault(|f| &mut f.token_429) {
        let retry = emulator.knobs().faults.token_retry_after_secs;
        let mut resp = AadError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
        .into_response_at(now);
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let form = params(&String::from_utf8_lossy(&body));
    match handle(&emulator, &tenant, &headers, &form) {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(Answer::Error(e)) => e.into_response_at(now),
        Err(Answer::SlowDown) => slow_down(now),
    }
}

/// A token-endpoint failure.
enum Answer {
    Error(AadError),
    /// RFC 8628 `slow_down` (Microsoft documents no AADSTS number for it).
    SlowDown,
}

impl From<AadError> for Answer {
    fn from(e: AadError) -> Self {
        Answer::Error(e)
    }
}

fn slow_down(now: time::OffsetDateTime) -> Response {
    let mut body = AadError::new(
        StatusCode::BAD_REQUEST,
        "slow_down",
        0,
        "The client is polling too frequently. Increase the polling interval by 5 seconds.",
    )
    .body(now);
    if let Some(obj) = body.as_object_mut() {
        let desc = obj
            .get("error_description")
            .and_then(Value::as_str)
            .map(|d| d.trim_start_matches("AADSTS0: ").to_owned())
            .unwrap_or_default();
        obj.insert("error_description".into(), json!(desc));
        obj.insert("error_codes".into(), json!([]));
        obj.remove("error_uri");
    }
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// `client_id` and secret from an HTTP Basic header (`client_secret_basic`).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((unescape(id), unescape(secret)))
}

type Form = HashMap<String, String>;

fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn require<'a>(form: &'a Form, name: &str) -> Result<&'a str, AadError> {
    field(form, name).ok_or_else(|| errors::missing_parameter(name))
}

fn handle(
    emulator: &Emulator,
    tenant: &str,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Value, Answer> {
    let mut segment = resolve_segment(emulator, tenant).map_err(|e| e.to_error(false))?;
    let grant_type = require(form, "grant_type")?;
    let basic = basic_credentials(headers);
    let client_id = field(form, "client_id")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|(id, _)| id.clone()))
        .ok_or_else(|| errors::missing_parameter("client_id"))?;
    if !matches!(
        grant_type,
        "authorization_code" | "refresh_token" | "client_credentials" | DEVICE_CODE_GRANT
    ) {
        return Err(errors::unsupported_grant_type().into());
    }
    if grant_type == "client_credentials" {
        match segment {
            Segment::Common | Segment::Consumers => {
                return Err(errors::grant_not_on_common().into());
            }
            // `organizations` names no tenant: the emulator uses the app's home tenant.
            Segment::Organizations => {
                let home = emulator.read(|m| m.app(&client_id).map(|(t, _)| t.id));
                if let Some(home) = home {
                    segment = Segment::Tenant(home);
                }
            }
            Segment::Tenant(_) => {}
        }
    }
    let app = app_for_segment(emulator, segment, &client_id)?;
    let client = ClientContext {
        app: &app,
        segment,
        segment_raw: tenant,
        form,
        basic_secret: basic.map(|(_, s)| s),
    };
    match grant_type {
        "authorization_code" => authorization_code(emulator, &client),
        "refresh_token" => refresh_token(emulator, &client),
        "client_credentials" => client_credentials(emulator, &client),
        _ => device_code(emulator, &client),
    }
}

struct ClientContext<'a> {
    app: &'a AppRegistration,
    segment: Segment,
    segment_raw: &'a str,
    form: &'a Form,
    basic_secret: Option<String>,
}

impl ClientContext<'_> {
    fn secret(&self) -> Option<&str> {
        field(self.form, "client_secret").or(self.basic_secret.as_deref())
    }

    fn presents_credential(&self) -> bool {
        self.secret().is_some() || field(self.form, "client_assertion").is_some()
    }

    /// Authenticates the client; returns `appidacr` (0 public, 1 secret, 2 certificate).
    fn authenticate(&self, emulator: &Emulator, public: bool) -> Result<u8, AadError> {
        if let Some(a) = field(self.form, "client_assertion") {
            if public {
                return Err(errors::public_client_with_credential());
            }
            assertion::validate(
                emulator,
                self.app,
                self.segment.tenant_id(),
                self.segment_raw,
                field(self.form, "client_assertion_type"),
                a,
            )?;
            return Ok(2);
        }
        if let Some(secret) = self.secret() {
            if public {
                return Err(errors::public_client_with_credential());
            }
            let client_id = self.app.client_id.to_string();
            let Some(s) = self.app.secrets.iter().find(|s| s.value == secret) else {
                return Err(errors::invalid_secret(&client_id));
            };
            if emulator.now() >= s.expires {
                return Err(errors::secret_expired(&client_id));
            }
            return Ok(1);
        }
        if public {
            Ok(0)
        } else {
            Err(errors::credential_required())
        }
    }
}

fn pkce_matches(challenge: &str, method: PkceMethod, verifier: &str) -> bool {
    match method {
        PkceMethod::Plain => challenge == verifier,
        PkceMethod::S256 => b64url(&sha256(verifier.as_bytes())) == challenge,
    }
}

fn authorization_code(emulator: &Emulator, c: &ClientContext<'_>) -> Result<Value, Answer> {
    let code_value = require(c.form, "code")?;
    let redirect_uri = require(c.form, "redirect_uri")?;
    let now = emulator.now();
    let code = {
        let st = emulator.identity_state();
        let Some(code) = st.codes.get(code_value) else {
            return Err(errors::invalid_code().into());
        };
        if code.client_id != c.app.client_id {
            return Err(errors::invalid_code().into());
        }
        if code.redeemed {
            return Err(errors::code_redeemed().into());
        }
        if now >= code.expires {
            return Err(errors::code_expired().into());
        }
        code.clone()
    };
    if code.segment.canonical() != c.segment.canonical() {
        return Err(errors::code_other_tenant().into());
    }
    if redirect_uri != code.redirect_uri {
        return Err(errors::reply_address_mismatch(redirect_uri, &code.redirect_uri).into());
    }
    let client_auth = c.authenticate(emulator, code.public)?;
    if let Some((challenge, method)) = &code.code_challenge {
        let verifier = field(c.form, "code_verifier").unwrap_or_default();
        if !pkce_matches(challenge, *method, verifier) {
            return Err(errors::pkce_mismatch().into());
        }
    }
    {
        let mut st = emulator.identity_state();
        match st.codes.get_mut(code_value) {
            Some(stored) if !stored.redeemed => stored.redeemed = true,
            _ => return Err(errors::code_redeemed().into()),
        }
    }
    let (scope, multi) = match field(c.form, "scope") {
        Some(s) => (s.to_owned(), MultiResource::Reject),
        None => (code.scope.clone(), MultiResource::First),
    };
    let d = Delegated {
        client_id: c.app.client_id,
        user: code.user.clone(),
        segment: code.segment,
        public: code.public,
        client_auth,
        client_info: field(c.form, "client_info") == Some("1"),
        nonce: code.nonce.clone(),
    };
    Ok(delegated_token(emulator, &d, &scope, multi, false, false)?)
}

/// `d.hh:mm:ss` as .NET prints a `TimeSpan` (`90.00:00:00`).
fn timespan(secs: i64) -> String {
    let (d, rest) = (secs / 86_400, secs % 86_400);
    format!(
        "{d}.{:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

fn refresh_token(emulator: &Emulator, c: &ClientContext<'_>) -> Result<Value, Answer> {
    let rt_value = require(c.form, "refresh_token")?;
    let now = emulator.now();
    let knobs = emulator.knobs();
    let rt = {
        let st = emulator.identity_state();
        match st.refresh_tokens.get(rt_value) {
            Some(rt) if rt.client_id == c.app.client_id => rt.clone(),
            _ => return Err(errors::invalid_refresh_token().into()),
        }
    };
    if rt.revoked {
        return Err(errors::refresh_token_revoked().into());
    }
    // A refresh token is redeemed where its user can sign in: a personal account's on
    // `consumers`/`common`, a work account's on its tenant, `organizations` or `common`.
    let personal = emulator.read(|m| {
        m.tenant(&rt.user.tenant_id.to_string())
            .is_some_and(|t| t.personal)
    });
    let admitted = match c.segment {
        Segment::Common => true,
        Segment::Consumers => personal,
        Segment::Organizations => !personal,
        Segment::Tenant(t) => t == rt.user.tenant_id,
    };
    if !admitted {
        return Err(errors::invalid_refresh_token().into());
    }
    if (now - rt.last_used).whole_seconds() > knobs.refresh_token_idle_secs {
        return Err(errors::refresh_token_idle(
            &dotnet_time(rt.issued),
            &timespan(knobs.refresh_token_idle_secs),
        )
        .into());
    }
    let client_auth = c.authenticate(emulator, rt.public)?;
    let scope = field(c.form, "scope").map_or_else(|| rt.scope.clone(), str::to_owned);
    let d = Delegated {
        client_id: c.app.client_id,
        user: rt.user.clone(),
        segment: rt.segment,
        public: rt.public,
        client_auth,
        client_info: field(c.form, "client_info") == Some("1"),
        nonce: None,
    };
    let body = delegated_token(emulator, &d, &scope, MultiResource::First, true, true)?;
    if let Some(old) = emulator.identity_state().refresh_tokens.get_mut(rt_value) {
        old.last_used = now;
        if knobs.revoke_rotated_refresh_tokens {
            old.revoked = true;
        }
    }
    Ok(body)
}

fn client_credentials(emulator: &Emulator, c: &ClientContext<'_>) -> Result<Value, Answer> {
    let Some(tenant_id) = c.segment.tenant_id() else {
        return Err(errors::grant_not_on_common().into());
    };
    let client_auth = c.authenticate(emulator, false)?;
    let client_id = c.app.client_id.to_string();
    let (blocked, directory, home) = emulator.read(|m| {
        let t = m.tenant(&tenant_id.to_string());
        (
            t.is_some_and(|t| {
                t.conditional_access_blocked_apps
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&client_id))
            }),
            c.segment.directory_name(m),
            t.is_some_and(|t| t.app(&client_id).is_some()),
        )
    });
    if blocked {
        return Err(errors::conditional_access_blocked().into());
    }
    let scope = require(c.form, "scope")?;
    let set = ScopeSet::parse(scope);
    if let Some(unknown) = set.unknown_resources.first() {
        return Err(errors::resource_not_found(unknown, &directory).into());
    }
    if set.resources.len() > 1 {
        return Err(errors::multiple_resources().into());
    }
    let Some((resource, values)) = set.resources.first().cloned() else {
        return Err(errors::invalid_scope(scope).into());
    };
    if !set.oidc.is_empty() || values.iter().any(|v| v != ".default") {
        return Err(errors::invalid_scope(scope).into());
    }
    let roles: BTreeSet<String> = if home && c.app.admin_consent_granted {
        c.app
            .permissions_for(resource.api, PermissionKind::Application)
            .map(str::to_owned)
            .collect()
    } else {
        BTreeSet::new()
    };
    let lifetime = emulator.knobs().access_token_lifetime_secs;
    let grant = TokenGrant {
        resource,
        tenant_id,
        app_id: c.app.client_id,
        app_display_name: c.app.display_name.clone(),
        client_auth,
        subject: Subject::App {
            service_principal_id: c.app.service_principal_id,
        },
        roles,
        scopes: BTreeSet::new(),
        issued_at: emulator.now().unix_timestamp(),
        lifetime_secs: lifetime,
    };
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": emulator.issue_access_token(&grant, false),
    }))
}

/// What a device-code poll leads to.
enum Next {
    Pending,
    Declined,
    Approved(super::state::DeviceCode, super::state::SignedIn),
}

fn device_code(emulator: &Emulator, c: &ClientContext<'_>) -> Result<Value, Answer> {
    let device_code = require(c.form, "device_code")?;
    let public = c.app.public_client && !c.presents_credential();
    let client_auth = c.authenticate(emulator, public)?;
    let now = emulator.now();
    let next = {
        let mut st = emulator.identity_state();
        let Some(d) = st
            .device_codes
            .get_mut(device_code)
            .filter(|d| d.client_id == c.app.client_id)
        else {
            return Err(errors::bad_verification_code().into());
        };
        match d.status.clone() {
            DeviceStatus::Finished => return Err(errors::device_code_finished().into()),
            DeviceStatus::Declined => {
                d.status = DeviceStatus::Finished;
                Next::Declined
            }
            DeviceStatus::Approved(user) => {
                d.status = DeviceStatus::Finished;
                Next::Approved(d.clone(), user)
            }
            DeviceStatus::Pending if now >= d.expires => {
                return Err(errors::device_code_expired().into());
            }
            DeviceStatus::Pending => Next::Pending,
        }
    };
    match next {
        Next::Declined => Err(errors::authorization_declined().into()),
        Next::Pending => {
            let slow = emulator.update(|m| {
                let polls = &mut m.knobs.device_code_slow_down_polls;
                if *polls > 0 {
                    *polls -= 1;
                    true
                } else {
                    false
                }
            });
            if slow {
                Err(Answer::SlowDown)
            } else {
                Err(errors::authorization_pending().into())
            }
        }
        Next::Approved(d, user) => {
            let delegated = Delegated {
                client_id: c.app.client_id,
                user,
                segment: d.segment,
                public,
                client_auth,
                client_info: field(c.form, "client_info") == Some("1"),
                nonce: None,
            };
            Ok(delegated_token(
                emulator,
                &delegated,
                &d.scope,
                MultiResource::First,
                false,
                false,
            )?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_known_answer() {
        // microsoft-protocols.md §1.2
        assert!(pkce_matches(
            "qjrzSW9gMiUgpUvqgEPE4_-8swvyCtfOVvg55o5S_es",
            PkceMethod::S256,
            "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag"
        ));
        assert!(!pkce_matches("x", PkceMethod::S256, "x"));
        assert!(pkce_matches("x", PkceMethod::Plain, "x"));
    }

    #[test]
    fn timespan_like_dotnet() {
        assert_eq!(timespan(90 * 86_400), "90.00:00:00");
        assert_eq!(timespan(3661), "0.01:01:01");
    }
}
