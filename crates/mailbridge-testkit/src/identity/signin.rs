//! The interactive steps shared by `/authorize`, `/devicelogin` and `/adminconsent`:
//! sign-in (username + password), MFA, the device-flow confirmation, and consent.
//!
//! Each page carries an opaque flow id in a hidden field. Posting a form removes the
//! flow from the state (so a replayed form finds nothing) and the next page carries a
//! fresh id. A successful sign-in sets the `ESTSAUTH` session cookie, which later
//! `/authorize` requests use for single sign-on and `prompt=none`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Segment;
use super::errors;
use super::issue::missing_consent;
use super::pages::{self, PermissionGroup};
use super::state::{
    AuthCode, AuthorizeRequest, DeviceStatus, Flow, FlowKind, ResponseMode, Session, SignedIn, Step,
};
use crate::aad::AadError;
use crate::crypto::random_token;
use crate::emulator::Emulator;
use crate::model::{Api, PermissionKind, SignInAudience, TenantModel, UserConsent};
use crate::tokens::ScopeSet;

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "ESTSAUTH";

/// The value of the request's `ESTSAUTH` cookie.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The session named by the request's `ESTSAUTH` cookie.
pub(crate) fn session_from(emulator: &Emulator, headers: &HeaderMap) -> Option<Session> {
    let id = session_id(headers)?;
    emulator.identity_state().sessions.get(&id).cloned()
}

fn with_session_cookie(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A 302 to `location`.
pub(crate) fn found(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Sends parameters back to the client's redirect URI in the request's response mode.
pub(crate) fn redirect_to_client(
    redirect_uri: &str,
    mode: ResponseMode,
    params: &[(&str, String)],
) -> Response {
    match mode {
        ResponseMode::FormPost => pages::form_post_page(redirect_uri, params),
        ResponseMode::Query | ResponseMode::Fragment => {
            let Ok(mut url) = url::Url::parse(redirect_uri) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            if mode == ResponseMode::Query {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            } else {
                let frag = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish();
                url.set_fragment(Some(&frag));
            }
            found(url.as_str())
        }
    }
}

/// An error sent back to the client as Microsoft does: `error`, `error_description`
/// (with the Trace ID / Correlation ID / Timestamp lines), `error_uri`, `state`,
/// `trace_id`, `correlation_id`.
pub(crate) fn redirect_error(
    redirect_uri: &str,
    mode: ResponseMode,
    state: Option<&str>,
    error: &AadError,
    now: OffsetDateTime,
) -> Response {
    let body = error.body(now);
    let s = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut params = vec![
        ("error", s("error")),
        ("error_description", s("error_description")),
        ("error_uri", s("error_uri")),
    ];
    if let Some(st) = state {
        params.push(("state", st.to_owned()));
    }
    params.push(("trace_id", s("trace_id")));
    params.push(("correlation_id", s("correlation_id")));
    if let Some(sub) = error.suberror {
        params.push(("error_subcode", sub.to_owned()));
    }
    redirect_to_client(redirect_uri, mode, &params)
}

/// The app's display name (for page titles).
fn app_name(emulator: &Emulator, client_id: Uuid) -> String {
    emulator.read(|m| {
        m.app(&client_id.to_string())
            .map(|(_, a)| a.display_name.clone())
            .unwrap_or_default()
    })
}

/// Renders the sign-in page for a (new) flow.
pub(crate) fn show_signin(emulator: &Emulator, flow: Flow, error: Option<&AadError>) -> Response {
    let name = app_name(emulator, flow.client_id);
    let hint = flow.login_hint.clone();
    let mut flow = flow;
    flow.step = Step::SignIn;
    let id = emulator.identity_state().put_flow(flow);
    pages::signin_page(&id, &name, hint.as_deref(), error)
}

/// Takes the flow `id` expecting `step`; `None` when unknown, used or at another step.
fn take_flow(emulator: &Emulator, id: &str, step: Step) -> Option<Flow> {
    let mut st = emulator.identity_state();
    st.prune(emulator.now());
    match st.flows.remove(id) {
        Some(f) if f.step == step => Some(f),
        _ => None,
    }
}

fn flow_expired_page(emulator: &Emulator) -> Response {
    pages::error_page(&errors::flow_expired(), emulator.now())
}

/// Who may sign in at this segment: the user and their home tenant, or the AADSTS error.
pub(crate) fn check_user(
    model: &TenantModel,
    segment: Segment,
    client_id: Uuid,
    upn: &str,
) -> Result<SignedIn, AadError> {
    let (app_id, app_display) = model
        .app(&client_id.to_string())
        .map(|(_, a)| (a.client_id.to_string(), a.display_name.clone()))
        .unwrap_or_default();
    let audience = model
        .app(&client_id.to_string())
        .map_or(SignInAudience::SingleTenant, |(_, a)| a.audience);
    let directory = segment.directory_name(model);
    let Some((tenant, user)) = model.user(upn) else {
        let dir = match segment {
            Segment::Tenant(_) => directory,
            Segment::Consumers => "Microsoft Services".to_owned(),
            _ => upn
                .rsplit_once('@')
                .map_or_else(|| directory.clone(), |(_, d)| d.to_owned()),
        };
        return Err(errors::user_not_found(upn, &dir));
    };
    let idp = if tenant.personal {
        "live.com".to_owned()
    } else {
        format!("https://sts.windows.net/{}/", tenant.id)
    };
    let other_idp =
        || errors::user_from_other_idp(&user.upn, &idp, &directory, &app_id, &app_display);
    let ok = match segment {
        Segment::Tenant(id) => tenant.id == id,
        Segment::Organizations => !tenant.personal,
        Segment::Consumers => tenant.personal,
        Segment::Common => {
            if tenant.personal {
                matches!(
                    audience,
                    SignInAudience::MultiTenantAndPersonal | SignInAudience::PersonalOnly
                )
            } else {
                audience != SignInAudience::PersonalOnly
            }
        }
    };
    if !ok {
        if segment == Segment::Consumers {
            return Err(errors::user_not_found(upn, "Microsoft Services"));
        }
        return Err(other_idp());
    }
    Ok(SignedIn {
        upn: user.upn.clone(),
        tenant_id: tenant.id,
        mfa_done: false,
    })
}

/// Form of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    passwd: String,
}

/// `POST /login/signin`.
pub async fn signin_submit(
    State(emulator): State<Emulator>,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    let Some(mut flow) = take_flow(&emulator, &form.flow, Step::SignIn) else {
        return flow_expired_page(&emulator);
    };
    let login = form.login.trim().to_owned();
    flow.login_hint = Some(login.clone());
    let checked = emulator.read(|m| {
        let signed = check_user(m, flow.segment, flow.client_id, &login)?;
        let password_ok = m
            .user(&login)
            .is_some_and(|(_, u)| u.password == form.passwd);
        if password_ok {
            Ok(signed)
        } else {
            Err(errors::wrong_password())
        }
    });
    let signed = match checked {
        Ok(s) => s,
        Err(e) => return show_signin(&emulator, flow, Some(&e)),
    };
    let session_id = random_token(32);
    emulator.identity_state().sessions.insert(
        session_id.clone(),
        Session {
            upn: signed.upn.clone(),
            mfa_done: false,
        },
    );
    flow.user = Some(signed);
    with_session_cookie(after_password(&emulator, flow), &session_id)
}

/// After the password: MFA when the user needs it, then the rest.
pub(crate) fn after_password(emulator: &Emulator, mut flow: Flow) -> Response {
    let Some(user) = flow.user.clone() else {
        return show_signin(emulator, flow, None);
    };
    let mfa = emulator.read(|m| m.user(&user.upn).is_some_and(|(_, u)| u.mfa_required));
    if mfa && !user.mfa_done {
        flow.step = Step::Mfa;
        let id = emulator.identity_state().put_flow(flow);
        return pages::mfa_page(&id, &user.upn, None);
    }
    after_mfa(emulator, flow)
}

/// Form of the MFA page.
#[derive(Debug, Deserialize)]
pub struct MfaForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    otc: String,
}

/// `POST /login/mfa`.
pub async fn mfa_submit(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<MfaForm>,
) -> Response {
    let Some(mut flow) = take_flow(&emulator, &form.flow, Step::Mfa) else {
        return flow_expired_page(&emulator);
    };
    let Some(mut user) = flow.user.clone() else {
        return flow_expired_page(&emulator);
    };
    let ok = emulator.read(|m| {
        m.user(&user.upn)
            .is_some_and(|(_, u)| u.mfa_code == form.otc.trim())
    });
    if !ok {
        let id = emulator.identity_state().put_flow(flow);
        return pages::mfa_page(&id, &user.upn, Some(&errors::wrong_mfa_code()));
    }
    user.mfa_done = true;
    flow.user = Some(user.clone());
    // Mark the browser session as having passed MFA.
    if let Some(id) = session_id(&headers)
        && let Some(s) = emulator.identity_state().sessions.get_mut(&id)
        && s.upn.eq_ignore_ascii_case(&user.upn)
    {
        s.mfa_done = true;
    }
    after_mfa(&emulator, flow)
}

/// After sign-in and MFA: the device confirmation, the admin check, or consent.
pub(crate) fn after_mfa(emulator: &Emulator, mut flow: Flow) -> Response {
    let Some(user) = flow.user.clone() else {
        return show_signin(emulator, flow, None);
    };
    match &flow.kind {
        FlowKind::Device { .. } => {
            flow.step = Step::Confirm;
            let name = app_name(emulator, flow.client_id);
            let id = emulator.identity_state().put_flow(flow);
            pages::device_confirm_page(&id, &name, &user.upn)
        }
        FlowKind::AdminConsent(_) => {
            let admin = emulator.read(|m| m.user(&user.upn).is_some_and(|(_, u)| u.is_admin));
            if !admin {
                return pages::error_page(
                    &errors::admin_required_for_admin_consent(&user.upn),
                    emulator.now(),
                );
            }
            let groups = emulator.read(|m| {
                m.app(&flow.client_id.to_string())
                    .map(|(_, app)| {
                        let mut by_api: BTreeMap<Api, Vec<(String, &'static str)>> =
                            BTreeMap::new();
                        for p in &app.permissions {
                            let kind = match p.kind {
                                PermissionKind::Delegated => "Delegated",
                                PermissionKind::Application => "Application",
                            };
                            by_api
                                .entry(p.api)
                                .or_default()
                                .push((p.value.clone(), kind));
                        }
                        by_api
                            .into_iter()
                            .map(|(api, permissions)| PermissionGroup {
                                api: api.portal_name().to_owned(),
                                permissions,
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            });
            flow.step = Step::Consent;
            let name = app_name(emulator, flow.client_id);
            let id = emulator.identity_state().put_flow(flow);
            pages::consent_page(&id, &name, &user.upn, &groups, true)
        }
        FlowKind::Authorize(_) => consent_or_finish(emulator, flow),
    }
}

/// The scope a user flow asks consent for.
fn flow_scope(emulator: &Emulator, flow: &Flow) -> String {
    match &flow.kind {
        FlowKind::Authorize(a) => a.scope.clone(),
        FlowKind::Device { device_code } => emulator
            .identity_state()
            .device_codes
            .get(device_code)
            .map(|d| d.scope.clone())
            .unwrap_or_default(),
        FlowKind::AdminConsent(_) => String::new(),
    }
}

/// Shows consent (or "Need admin approval") when some requested delegated permission
/// has no consent, else finishes the flow.
pub(crate) fn consent_or_finish(emulator: &Emulator, mut flow: Flow) -> Response {
    let Some(user) = flow.user.clone() else {
        return show_signin(emulator, flow, None);
    };
    let scope = flow_scope(emulator, &flow);
    let forced = matches!(&flow.kind, FlowKind::Authorize(a) if a.prompt_consent);
    let decided = emulator.read(|m| {
        let (_, app) = m.app(&flow.client_id.to_string())?;
        let missing = missing_consent(m, &user, app, &scope);
        let tenant = m.tenant(&user.tenant_id.to_string())?;
        let is_admin = tenant.user(&user.upn).is_some_and(|u| u.is_admin);
        let may_consent = tenant.personal || tenant.user_consent_allowed || is_admin;
        Some((missing, may_consent, app.display_name.clone()))
    });
    let Some((missing, may_consent, name)) = decided else {
        return flow_expired_page(emulator);
    };
    if missing.is_empty() && !forced {
        return finish(emulator, flow);
    }
    if !missing.is_empty() && !may_consent {
        return pages::need_admin_approval_page(
            &name,
            &user.upn,
            &errors::admin_approval_required(),
        );
    }
    let set = ScopeSet::parse(&scope);
    let mut groups = Vec::new();
    let mut openid: Vec<(String, &'static str)> = Vec::new();
    for o in &set.oidc {
        openid.push((o.clone(), "Delegated"));
    }
    let app = emulator.read(|m| m.app(&flow.client_id.to_string()).map(|(_, a)| a.clone()));
    for (resource, values) in &set.resources {
        let values = app.as_ref().map_or_else(
            || values.clone(),
            |a| super::issue::expand(a, resource.api, values),
        );
        groups.push(PermissionGroup {
            api: resource.api.portal_name().to_owned(),
            permissions: values.into_iter().map(|v| (v, "Delegated")).collect(),
        });
    }
    if !openid.is_empty() {
        groups.push(PermissionGroup {
            api: String::new(),
            permissions: openid,
        });
    }
    flow.step = Step::Consent;
    let id = emulator.identity_state().put_flow(flow);
    pages::consent_page(&id, &name, &user.upn, &groups, false)
}

/// Records the user's consent to every permission of `scope`.
fn record_consent(emulator: &Emulator, user: &SignedIn, client_id: Uuid, scope: &str) {
    let set = ScopeSet::parse(scope);
    emulator.update(|m| {
        let app = m.app(&client_id.to_string()).map(|(_, a)| a.clone());
        let mut values: Vec<String> = set.oidc.iter().cloned().collect();
        for (resource, vals) in &set.resources {
            let vals = app.as_ref().map_or_else(
                || vals.clone(),
                |a| super::issue::expand(a, resource.api, vals),
            );
            values.extend(vals);
        }
        let Some(tenant) = m.tenant_mut(&user.tenant_id.to_string()) else {
            return;
        };
        if let Some(c) = tenant
            .user_consents
            .iter_mut()
            .find(|c| c.client_id == client_id && c.user.eq_ignore_ascii_case(&user.upn))
        {
            for v in values {
                if !c.scopes.iter().any(|s| s.eq_ignore_ascii_case(&v)) {
                    c.scopes.push(v);
                }
            }
        } else {
            tenant.user_consents.push(UserConsent {
                user: user.upn.clone(),
                client_id,
                scopes: values,
            });
        }
    });
}

/// Form of the consent and confirmation pages.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    accept: String,
}

/// `POST /login/confirm` (device flow: "Are you trying to sign in to &lt;app&gt;?").
pub async fn confirm_submit(
    State(emulator): State<Emulator>,
    axum::Form(form): axum::Form<DecisionForm>,
) -> Response {
    let Some(flow) = take_flow(&emulator, &form.flow, Step::Confirm) else {
        return flow_expired_page(&emulator);
    };
    if form.accept == "true" {
        consent_or_finish(&emulator, flow)
    } else {
        decline(&emulator, &flow)
    }
}

/// `POST /login/consent`.
pub async fn consent_submit(
    State(emulator): State<Emulator>,
    axum::Form(form): axum::Form<DecisionForm>,
) -> Response {
    let Some(flow) = take_flow(&emulator, &form.flow, Step::Consent) else {
        return flow_expired_page(&emulator);
    };
    let Some(user) = flow.user.clone() else {
        return flow_expired_page(&emulator);
    };
    if form.accept != "true" {
        return decline(&emulator, &flow);
    }
    if let FlowKind::AdminConsent(req) = &flow.kind {
        let tenant_id = user.tenant_id;
        emulator.update(|m| {
            if let Some(t) = m.tenant_mut(&tenant_id.to_string())
                && let Some(app) = t.app_mut(&flow.client_id.to_string())
            {
                app.admin_consent_granted = true;
            }
        });
        let mut params = vec![
            ("admin_consent", "True".to_owned()),
            ("tenant", tenant_id.to_string()),
        ];
        if let Some(s) = &req.scope {
            params.push(("scope", s.clone()));
        }
        if let Some(s) = &req.state {
            params.push(("state", s.clone()));
        }
        return redirect_to_client(&req.redirect_uri, ResponseMode::Query, &params);
    }
    let scope = flow_scope(&emulator, &flow);
    record_consent(&emulator, &user, flow.client_id, &scope);
    finish(&emulator, flow)
}

/// Cancel: `access_denied` back to the client, or a declined device code.
fn decline(emulator: &Emulator, flow: &Flow) -> Response {
    let now = emulator.now();
    match &flow.kind {
        FlowKind::Authorize(a) => redirect_error(
            &a.redirect_uri,
            a.response_mode,
            a.state.as_deref(),
            &errors::consent_declined(),
            now,
        ),
        FlowKind::AdminConsent(a) => redirect_error(
            &a.redirect_uri,
            ResponseMode::Query,
            a.state.as_deref(),
            &errors::consent_declined(),
            now,
        ),
        FlowKind::Device { device_code } => {
            if let Some(d) = emulator.identity_state().device_codes.get_mut(device_code)
                && matches!(d.status, DeviceStatus::Pending)
            {
                d.status = DeviceStatus::Declined;
            }
            pages::device_declined_page(&app_name(emulator, flow.client_id))
        }
    }
}

/// The end of a user flow: a code back to the client, or an approved device code.
pub(crate) fn finish(emulator: &Emulator, flow: Flow) -> Response {
    let Some(user) = flow.user.clone() else {
        return show_signin(emulator, flow, None);
    };
    match &flow.kind {
        FlowKind::Authorize(a) => issue_code(emulator, &flow, a, user),
        FlowKind::Device { device_code } => {
            let now = emulator.now();
            let approved = {
                let mut st = emulator.identity_state();
                match st.device_codes.get_mut(device_code) {
                    Some(d) if matches!(d.status, DeviceStatus::Pending) && now < d.expires => {
                        d.status = DeviceStatus::Approved(user);
                        true
                    }
                    _ => false,
                }
            };
            if approved {
                pages::device_done_page(&app_name(emulator, flow.client_id))
            } else {
                pages::device_entry_page(Some(
                    "That code has expired. Go back to the app or device and restart the sign-in.",
                ))
            }
        }
        FlowKind::AdminConsent(_) => flow_expired_page(emulator),
    }
}

/// Mints an authorization code and sends it to the redirect URI.
fn issue_code(emulator: &Emulator, flow: &Flow, a: &AuthorizeRequest, user: SignedIn) -> Response {
    let code = format!("0.A{}", random_token(120));
    let lifetime = emulator.knobs().authorization_code_lifetime_secs;
    emulator.identity_state().codes.insert(
        code.clone(),
        AuthCode {
            client_id: flow.client_id,
            redirect_uri: a.redirect_uri.clone(),
            public: a.public,
            code_challenge: a.code_challenge.clone(),
            segment: flow.segment,
            user,
            scope: a.scope.clone(),
            nonce: a.nonce.clone(),
            expires: emulator
                .now()
                .saturating_add(time::Duration::seconds(lifetime)),
            redeemed: false,
        },
    );
    let mut params = vec![("code", code)];
    if let Some(s) = &a.state {
        params.push(("state", s.clone()));
    }
    params.push(("session_state", uuid::Uuid::new_v4().to_string()));
    redirect_to_client(&a.redirect_uri, a.response_mode, &params)
}

/// `GET /{tenant}/oauth2/v2.0/logout`: ends the browser session; goes back to
/// `post_logout_redirect_uri` when it is a redirect URI registered for `client_id`.
pub async fn logout(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let p = super::authorize::params(query.as_deref().unwrap_or_default());
    if let Some(id) = session_id(&headers) {
        emulator.identity_state().sessions.remove(&id);
    }
    let back = match (p.get("post_logout_redirect_uri"), p.get("client_id")) {
        (Some(uri), Some(client_id)) => emulator
            .read(|m| {
                m.app(client_id)
                    .is_some_and(|(_, a)| a.redirect_platform(uri).is_some())
            })
            .then(|| uri.clone()),
        _ => None,
    };
    let mut resp = match back {
        Some(uri) => found(&uri),
        None => pages::page(
            StatusCode::OK,
            "Sign out",
            "<h1>You signed out of your account</h1>\n<p id=\"done\">It's a good idea to close all browser windows.</p>",
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
