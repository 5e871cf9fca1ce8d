//! Authorize a delegated account from the web UI (`/accounts/{id}/authorize`), three
//! ways, all through the sign-in code `mailbridge auth login` uses
//! ([`mailbridge_auth::interactive`], [`mailbridge_auth::client::TokenClient`],
//! [`mailbridge_accounts::signin::SignIn::keep_sign_in`]):
//!
//! - **In this browser**: authorization code with PKCE (S256), redirected to the
//!   daemon's own `/oauth/callback` (a "Web" platform redirect URI built from
//!   `serve --public-url`). The form opens Microsoft's sign-in in a new tab. Its
//!   `state` is one-time, expires after [`FLOW_LIFETIME`], and is bound to the web
//!   session that started it and to that browser (a `SameSite=Lax` cookie scoped to
//!   `/oauth/callback`, so it comes back with Microsoft's cross-site redirect, which a
//!   `SameSite=Strict` session cookie would not). Before sending the person on, the
//!   daemon opens the authorize URL itself: errors Microsoft shows on its own page
//!   instead of redirecting (an unregistered redirect URI, AADSTS50011) are shown here
//!   with their fix.
//! - **Device code**: the code and the link are shown; a background task polls with
//!   the flow's deadline and the Retry-After and back-off rules of
//!   [`mailbridge_auth::client::TokenClient::poll_device_code`]; the page asks a JSON
//!   status endpoint (`authorize.js`) and reloads when it is done, or the person
//!   presses "Check".
//! - **Paste the URL**: the authorize URL with the public-client redirect
//!   `http://localhost/` (as `auth login --paste`); the person pastes the address the
//!   browser ended on; the code is redeemed without the app's secret (a public-client
//!   redirect refuses one, AADSTS700025).
//!
//! Waiting sign-ins live in this process's memory (bounded, expiring): the callback
//! must reach the instance that started it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_accounts::signin::{SignIn, account_sign_in, extra_consent, grant};
use mailbridge_auth::client::{App, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::diagnosis::TokenError;
use mailbridge_auth::interactive::{AuthorizationRequest, RedirectAnswer};
use mailbridge_auth::scopes::Grant;
use mailbridge_auth::session::AccountSignIn;
use mailbridge_auth::token::{AuthError, TokenSet};
use mailbridge_store::{AccountId, AccountState, WebSession};
use mailbridge_types::access::{Action, allowed};
use mailbridge_types::config::{AccountConfig, AppConfig, Transport};
use serde::Deserialize;

use crate::Web;
use crate::i18n::Tr;
use crate::pages::{Visit, Who, csrf_refused, message, page, session, store_failed, who};
use crate::session::{random_token, same, sha256_hex};

/// How long a started sign-in waits for its answer (Microsoft's codes live about 10
/// minutes).
pub const FLOW_LIFETIME: Duration = Duration::from_mins(10);
/// The most sign-ins waiting at once (older ones are dropped first).
const MAX_WAITING: usize = 1000;
/// The cookie that binds a browser sign-in to the browser that started it.
const BINDING_COOKIE: &str = "mb_authorize";
/// The callback's path.
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// The public-client redirect of the paste flow (as `auth login --paste`).
const PASTE_REDIRECT: &str = "http://localhost/";

/// A sign-in waiting for Microsoft's answer.
struct Waiting {
    account: AccountId,
    /// The SHA-256 of the web session's id.
    session: String,
    /// The SHA-256 of the binding cookie (browser flow only).
    binding: Option<String>,
    request: Arc<AuthorizationRequest>,
    started: Instant,
}

/// Where a device-code sign-in is.
#[derive(Clone)]
enum DeviceStatus {
    Waiting {
        user_code: String,
        uri: String,
        interval: u64,
    },
    Done(Signed),
    Failed(Failure),
}

struct Device {
    status: DeviceStatus,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

/// The outcome of a paste, shown once on the page.
#[derive(Default)]
struct FlowsInner {
    /// Browser sign-ins by `state`.
    callbacks: HashMap<String, Waiting>,
    /// Paste sign-ins by (session, account).
    pastes: HashMap<(String, AccountId), Waiting>,
    /// Device-code sign-ins by (session, account).
    devices: HashMap<(String, AccountId), Device>,
}

/// The sign-ins the web UI started and waits for.
#[derive(Default)]
pub(crate) struct Flows {
    inner: Mutex<FlowsInner>,
}

/// The device-code tasks end with the pages that own them.
impl Drop for Flows {
    fn drop(&mut self) {
        for device in self.lock().devices.values() {
            device.task.abort();
        }
    }
}

impl Flows {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlowsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FlowsInner {
    /// Drops what expired, and the oldest when too many wait.
    fn sweep(&mut self, now: Instant) {
        let live = |started: Instant| now.duration_since(started) < FLOW_LIFETIME;
        self.callbacks.retain(|_, w| live(w.started));
        self.pastes.retain(|_, w| live(w.started));
        // A device code lives at most an hour (the client bounds it); its result is
        // kept as long for the page to show.
        self.devices.retain(|_, d| {
            let keep = now.duration_since(d.started) < Duration::from_hours(1);
            if !keep {
                d.task.abort();
            }
            keep
        });
        while self.callbacks.len() > MAX_WAITING {
            let Some(oldest) = self
                .callbacks
                .iter()
                .min_by_key(|(_, w)| w.started)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.callbacks.remove(&oldest);
        }
        while self.devices.len() > MAX_WAITING {
            let Some(oldest) = self
                .devices
                .iter()
                .min_by_key(|(_, d)| d.started)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(d) = self.devices.remove(&oldest) {
                d.task.abort();
            }
        }
        while self.pastes.len() > MAX_WAITING {
            let Some(oldest) = self
                .pastes
                .iter()
                .min_by_key(|(_, w)| w.started)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.pastes.remove(&oldest);
        }
    }
}

/// Who a sign-in signed in.
#[derive(Clone, Debug)]
struct Signed {
    /// The user the answer named.
    user: Option<String>,
    /// The account's mailbox, when someone else signed in (who then needs Full
    /// Access to it).
    other_than: Option<String>,
}

impl Signed {
    /// "Signed in as ..." (with `tab`: the callback tab's sentence) and the warning
    /// when another user than the mailbox's signed in.
    fn texts(&self, t: Tr, tab: bool) -> (String, Option<String>) {
        let line = match (&self.user, tab) {
            (Some(u), true) => t.with("authorize-done", "user", u),
            (None, true) => t.get("authorize-done-nobody"),
            (Some(u), false) => t.with("authorize-signed-in-as", "user", u),
            (None, false) => t.get("authorize-signed-in"),
        };
        let warning = match (&self.user, &self.other_than) {
            (Some(u), Some(mailbox)) => {
                Some(t.with2("authorize-other-user", ("user", u), ("mailbox", mailbox)))
            }
            _ => None,
        };
        (line, warning)
    }
}

/// Why a sign-in did not complete.
#[derive(Clone, Debug)]
enum Failure {
    /// Microsoft's answer (on the callback, its error page, or the token endpoint).
    Microsoft(TokenError),
    /// The callback's state is unknown, used or expired.
    UnknownState,
    /// The callback came to another browser than the one that started it.
    OtherBrowser,
    /// The pasted address belongs to another (or an older) sign-in.
    PasteState,
    /// The pasted address has no code.
    PasteNoCode,
    /// No paste sign-in is waiting (expired, or none started).
    PasteExpired,
    /// No public URL to build the callback from.
    NoPublicUrl,
    /// Anything else, in the sign-in code's own words.
    Other(String),
}

impl Failure {
    fn from_auth(e: &AuthError) -> Self {
        match e {
            AuthError::Identity(f) => Failure::Microsoft(f.error.clone()),
            other => Failure::Other(mailbridge_types::error_chain(other)),
        }
    }
}

/// A failure as the page shows it.
#[derive(Debug)]
pub(crate) struct Shown {
    title: String,
    /// Microsoft's own text (verbatim), if any.
    server: Option<String>,
    cause: String,
    fix: Option<String>,
}

/// AADSTS codes whose fix names this server's redirect URI and platform (the others
/// are said from the AADSTS catalogue's messages, `crate::diagnosis`).
#[expect(
    clippy::unreadable_literal,
    reason = "AADSTS codes are written as Microsoft prints them"
)]
const LOCALIZED: [u32; 5] = [50011, 65001, 65004, 500113, 700025];

fn show(t: Tr, failure: &Failure, redirect_uri: &str, platform: &str) -> Shown {
    let plain = |cause: &str| Shown {
        title: t.get("authorize-failed-title"),
        server: None,
        cause: t.get(cause),
        fix: None,
    };
    match failure {
        Failure::Microsoft(e) => {
            let d = e.diagnose();
            let (cause, fix) = match d.code.filter(|c| LOCALIZED.contains(c)) {
                Some(code) => (
                    t.get(&format!("authorize-cause-{code}")),
                    t.with2(
                        &format!("authorize-fix-{code}"),
                        ("uri", redirect_uri),
                        ("platform", platform),
                    ),
                ),
                None => crate::diagnosis::token_error(t, e),
            };
            Shown {
                title: match d.code {
                    Some(code) => t.with("authorize-failed-code", "code", &code),
                    None => t.get("authorize-failed-title"),
                },
                server: (!d.server_message.is_empty()).then(|| d.server_message.clone()),
                cause,
                fix: Some(fix),
            }
        }
        Failure::UnknownState => plain("authorize-unknown-state"),
        Failure::OtherBrowser => plain("authorize-other-browser"),
        Failure::PasteState => plain("authorize-paste-state"),
        Failure::PasteNoCode => plain("authorize-paste-no-code"),
        Failure::PasteExpired => plain("authorize-paste-expired"),
        Failure::NoPublicUrl => plain("authorize-no-public-url"),
        Failure::Other(text) => Shown {
            title: t.get("authorize-failed-title"),
            server: Some(text.clone()),
            cause: t.get("authorize-failed-other"),
            fix: None,
        },
    }
}

/// The device-code part of the page.
#[derive(Debug)]
pub(crate) struct DeviceView {
    waiting: bool,
    user_code: String,
    uri: String,
    interval: u64,
    done: Option<String>,
    warning: Option<String>,
    error: Option<Shown>,
}

#[derive(Template)]
#[template(path = "authorize_page.html")]
struct AuthorizePage {
    t: Tr,
    who: Option<Who>,
    id: String,
    name: String,
    address: String,
    csrf: String,
    /// "Signed in as ..." or where the account is.
    state: String,
    signed_in: bool,
    /// The callback URI to register (none without a public URL).
    callback: Option<String>,
    /// "Register ... under the platform ..." for the callback and for the paste flow.
    register_web: String,
    register_paste: String,
    error: Option<Shown>,
    device: Option<DeviceView>,
    device_waiting: bool,
    /// The paste flow's authorize URL while one waits.
    paste_url: Option<String>,
    paste_value: String,
    paste_error: Option<Shown>,
    paste_done: Option<String>,
    paste_warning: Option<String>,
}

#[derive(Template)]
#[template(path = "authorize_go.html")]
struct GoPage {
    t: Tr,
    who: Option<Who>,
    url: String,
}

#[derive(Template)]
#[template(path = "authorize_done.html")]
struct DonePage {
    t: Tr,
    who: Option<Who>,
    title: String,
    signed_in: Option<String>,
    warning: Option<String>,
    error: Option<Shown>,
    back: Option<String>,
}

/// The public origin a trusted proxy forwarded ([`crate::ForwardedOrigin`]), if any.
pub(crate) struct Origin(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<crate::ForwardedOrigin>()
                .map(|o| o.0.clone()),
        ))
    }
}

/// What the page's handlers share: the signed-in person, their language, the account.
struct Ctx {
    t: Tr,
    session: WebSession,
    session_hash: String,
    id: AccountId,
    account: AccountConfig,
    app: AppConfig,
    /// The callback URI to register (none without a public URL).
    callback: Option<String>,
}

/// [`context`] for a form: its CSRF token must be the session's, else the 403 page.
async fn form_context(
    web: &Web,
    visit: &Visit,
    origin: Origin,
    id: &str,
    csrf: Option<&str>,
) -> Result<Ctx, Response> {
    let ctx = context(web, visit, origin, id).await?;
    if csrf_ok(&ctx.session, csrf) {
        Ok(ctx)
    } else {
        Err(csrf_refused(ctx.t))
    }
}

/// The web session, the right to change account `id`, and the account with its app
/// (a delegated account: else a page that says why not).
async fn context(web: &Web, visit: &Visit, origin: Origin, id: &str) -> Result<Ctx, Response> {
    let Some(session) = session(web, visit).await? else {
        return Err(Redirect::to("/signin").into_response());
    };
    let t = visit.tr_for(&session.user);
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            t,
            "forbidden-title",
            "authorize-no-account",
        )
    };
    let Ok(id) = id.parse::<AccountId>() else {
        return Err(not_found());
    };
    let role = session.user.role;
    if !allowed(role, Action::WriteAccount { own: true }) {
        return Err(message(
            StatusCode::FORBIDDEN,
            t,
            "forbidden-title",
            "authorize-read-only",
        ));
    }
    if !allowed(role, Action::WriteAccount { own: false }) {
        let owner = web
            .store
            .account_owner(id)
            .await
            .map_err(|e| store_failed(t, &e))?;
        if owner.as_deref() != Some(session.user.name.as_str()) {
            // The same answer as for no account: nothing is learnt about others'.
            return Err(not_found());
        }
    }
    let mut accounts = mailbridge_accounts::catalog::by_id(&web.store, &web.config_file)
        .await
        .map_err(|e| store_failed(t, &e))?;
    let Some((account, app)) = accounts.remove(&id) else {
        return Err(not_found());
    };
    let delegated = matches!(grant(&account), Ok(Grant::Delegated));
    let Some(app) = app.filter(|_| delegated) else {
        return Err(message(
            StatusCode::CONFLICT,
            t,
            "authorize-title-plain",
            "authorize-not-delegated",
        ));
    };
    let session_hash = visit
        .cookie(crate::session::SESSION_COOKIE)
        .map(sha256_hex)
        .unwrap_or_default();
    Ok(Ctx {
        t,
        session,
        session_hash,
        id,
        account,
        app,
        callback: callback_uri(web, origin),
    })
}

/// How the account signs in for its first transport, with the app's token client.
async fn spec(web: &Web, ctx: &Ctx) -> Result<(AccountSignIn, TokenClient), Failure> {
    let first = ctx
        .account
        .transports
        .first()
        .copied()
        .unwrap_or(Transport::Graph);
    let spec = account_sign_in(&ctx.account, &ctx.app, &web.store, first)
        .await
        .map_err(|e| Failure::Other(mailbridge_types::error_chain(&e)))?;
    let client = web
        .sign_in
        .sessions(&ctx.app)
        .map_err(|e| Failure::Other(mailbridge_types::error_chain(&e)))?
        .client()
        .clone();
    Ok((spec, client))
}

fn csrf_ok(session: &WebSession, sent: Option<&str>) -> bool {
    sent.is_some_and(|s| same(s, &session.csrf_token))
}

/// The callback URI of this daemon: from the origin a trusted proxy forwarded (there
/// is one only when `--public-url` was not given), else from the public URL; `None`
/// without either.
fn callback_uri(web: &Web, origin: Origin) -> Option<String> {
    origin
        .0
        .or_else(|| web.public_url.clone())
        .map(|u| format!("{}{CALLBACK_PATH}", u.trim_end_matches('/')))
}

/// Renders the page of `ctx` with what waits or happened.
async fn render(web: &Web, ctx: &Ctx, status: StatusCode, extra: Extra) -> Response {
    let t = ctx.t;
    let user = match web.store.signed_in_user(ctx.id).await {
        Ok(u) => u,
        Err(e) => return store_failed(t, &e),
    };
    let state = match web.store.account_state_by_id(ctx.id).await {
        Ok(s) => s,
        Err(e) => return store_failed(t, &e),
    };
    let (state, signed_in) = match (state, user) {
        (Some(AccountState::SignedIn), Some(user)) => {
            (t.with("authorize-signed-in-as", "user", &user), true)
        }
        (Some(AccountState::SignedIn), None) => (t.get("authorize-signed-in"), true),
        (Some(AccountState::NeedsSignIn { reason }), _) => {
            (t.with("authorize-needs-sign-in", "reason", &reason), false)
        }
        (None, _) => (t.get("authorize-not-signed-in"), false),
    };
    let key = (ctx.session_hash.clone(), ctx.id);
    let callback = ctx.callback.clone();
    let web_platform = t.get("authorize-platform-web");
    let desktop = t.get("authorize-platform-desktop");
    let (device, paste_url) = {
        let flows = web.flows.lock();
        let device = flows.devices.get(&key).map(|d| match &d.status {
            DeviceStatus::Waiting {
                user_code,
                uri,
                interval,
            } => DeviceView {
                waiting: true,
                user_code: user_code.clone(),
                uri: uri.clone(),
                interval: *interval,
                done: None,
                warning: None,
                error: None,
            },
            DeviceStatus::Done(signed) => {
                let (line, warning) = signed.texts(t, false);
                DeviceView {
                    waiting: false,
                    user_code: String::new(),
                    uri: String::new(),
                    interval: 0,
                    done: Some(line),
                    warning,
                    error: None,
                }
            }
            DeviceStatus::Failed(f) => DeviceView {
                waiting: false,
                user_code: String::new(),
                uri: String::new(),
                interval: 0,
                done: None,
                warning: None,
                error: Some(show(t, f, PASTE_REDIRECT, &desktop)),
            },
        });
        let paste_url = flows
            .pastes
            .get(&key)
            .filter(|w| w.started.elapsed() < FLOW_LIFETIME)
            .map(|w| w.request.url.clone());
        (device, paste_url)
    };
    let error = extra.error.map(|f| {
        show(
            t,
            &f,
            callback.as_deref().unwrap_or_default(),
            &web_platform,
        )
    });
    let paste_error = extra
        .paste_error
        .map(|f| show(t, &f, PASTE_REDIRECT, &desktop));
    page(
        status,
        &AuthorizePage {
            t,
            who: Some(who(t, &ctx.session)),
            id: ctx.id.to_string(),
            name: ctx.account.name.clone(),
            address: ctx.account.address.clone(),
            csrf: ctx.session.csrf_token.clone(),
            state,
            signed_in,
            register_web: t.with2(
                "authorize-register",
                ("uri", callback.as_deref().unwrap_or_default()),
                ("platform", &web_platform),
            ),
            register_paste: t.with2(
                "authorize-register",
                ("uri", "http://localhost"),
                ("platform", &desktop),
            ),
            callback,
            error,
            device_waiting: device.as_ref().is_some_and(|d| d.waiting),
            device,
            paste_url,
            paste_value: extra.paste_value,
            paste_error,
            paste_done: extra.paste_done,
            paste_warning: extra.paste_warning,
        },
    )
}

/// What a handler adds to the page.
#[derive(Default)]
struct Extra {
    error: Option<Failure>,
    paste_value: String,
    paste_error: Option<Failure>,
    paste_done: Option<String>,
    paste_warning: Option<String>,
}

/// `GET /accounts/{id}/authorize`
pub(crate) async fn authorize_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    origin: Origin,
) -> Response {
    let ctx = match context(&web, &visit, origin, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    render(&web, &ctx, StatusCode::OK, Extra::default()).await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /accounts/{id}/authorize/browser`: starts the browser sign-in (in the new tab
/// the form opened) and sends the person to Microsoft.
pub(crate) async fn start_browser(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    origin: Origin,
    Form(form): Form<CsrfForm>,
) -> Response {
    let ctx = match form_context(&web, &visit, origin, &id, form.csrf.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(callback) = ctx.callback.clone() else {
        let extra = Extra {
            error: Some(Failure::NoPublicUrl),
            ..Extra::default()
        };
        return render(&web, &ctx, StatusCode::CONFLICT, extra).await;
    };
    let (spec, client) = match spec(&web, &ctx).await {
        Ok(v) => v,
        Err(f) => return failed(&web, &ctx, f).await,
    };
    let request = AuthorizationRequest::with_extra_consent(
        &spec.app.client_id,
        &spec.authority,
        &spec.scopes,
        &extra_consent(&ctx.account, &ctx.app),
        &callback,
        Some(&ctx.account.address),
    );
    // Errors Microsoft shows on its own page never come back: look first.
    match client.probe_authorize(&request.url).await {
        Ok(Some(error)) => {
            tracing::info!(
                account = ctx.account.name.as_str(),
                code = error.code,
                "the identity platform refuses the web sign-in before it starts"
            );
            return failed(&web, &ctx, Failure::Microsoft(error)).await;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %mailbridge_types::error_chain(&e), "could not check the authorize URL first; sending the person on");
        }
    }
    let Ok(binding) = random_token() else {
        return failed(&web, &ctx, Failure::Other("no randomness".into())).await;
    };
    let url = request.url.clone();
    {
        let mut flows = web.flows.lock();
        flows.sweep(Instant::now());
        flows.callbacks.insert(
            request.state().to_owned(),
            Waiting {
                account: ctx.id,
                session: ctx.session_hash.clone(),
                binding: Some(sha256_hex(&binding)),
                request: Arc::new(request),
                started: Instant::now(),
            },
        );
    }
    tracing::info!(
        account = ctx.account.name.as_str(),
        user = ctx.session.user.name.as_str(),
        addr = visit.addr,
        "web sign-in started"
    );
    // A page, not a redirect: `form-action 'self'` forbids a form's answer to
    // redirect elsewhere; the `Refresh` header (and the link, without it) goes on.
    let mut response = page(
        StatusCode::OK,
        &GoPage {
            t: ctx.t,
            who: None,
            url: url.clone(),
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!("0; url={url}")) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("refresh"), v);
    }
    let cookie = format!(
        "{BINDING_COOKIE}={binding}; Max-Age={}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax{}",
        FLOW_LIFETIME.as_secs(),
        if web.secure_cookies { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The page with a failure of the browser flow.
async fn failed(web: &Web, ctx: &Ctx, failure: Failure) -> Response {
    let extra = Extra {
        error: Some(failure),
        ..Extra::default()
    };
    render(web, ctx, StatusCode::BAD_REQUEST, extra).await
}

/// Redeems a code of account `id`'s sign-in and keeps the tokens; who signed in.
async fn redeem(
    web: &Web,
    id: AccountId,
    request: &AuthorizationRequest,
    code: &secrecy::SecretString,
    public_redirect: bool,
) -> Result<Signed, Failure> {
    let mut accounts = mailbridge_accounts::catalog::by_id(&web.store, &web.config_file)
        .await
        .map_err(|e| Failure::Other(mailbridge_types::error_chain(&e)))?;
    let Some((account, Some(app))) = accounts.remove(&id) else {
        return Err(Failure::Other(
            "the account or its app was removed while signing in".into(),
        ));
    };
    let first = account
        .transports
        .first()
        .copied()
        .unwrap_or(Transport::Graph);
    let spec = account_sign_in(&account, &app, &web.store, first)
        .await
        .map_err(|e| Failure::Other(mailbridge_types::error_chain(&e)))?;
    let client = web
        .sign_in
        .sessions(&app)
        .map_err(|e| Failure::Other(mailbridge_types::error_chain(&e)))?
        .client()
        .clone();
    // A public-client redirect (paste) refuses the app's secret (AADSTS700025).
    let public_app;
    let app_for_code = if public_redirect {
        public_app = App {
            client_id: spec.app.client_id.clone(),
            credential: ClientCredential::None,
        };
        &public_app
    } else {
        &spec.app
    };
    let tokens = request
        .redeem(&client, app_for_code, &spec.authority, code)
        .await
        .map_err(|e| Failure::from_auth(&e))?;
    keep(&web.sign_in, &app, &account, &tokens).await
}

async fn keep(
    sign_in: &SignIn,
    app: &AppConfig,
    account: &AccountConfig,
    tokens: &TokenSet,
) -> Result<Signed, Failure> {
    let user = sign_in
        .keep_sign_in(app, &account.name, tokens)
        .await
        .map_err(|e| Failure::Other(mailbridge_types::error_chain(&e)))?;
    tracing::info!(
        account = account.name.as_str(),
        "signed in through the web UI"
    );
    // As `auth login` says it: someone else than the mailbox's user signed in.
    let other_than = user
        .as_ref()
        .filter(|u| !u.is(&account.address) && !u.is(&account.login_name()))
        .map(|_| account.address.clone());
    Ok(Signed {
        user: user.map(|u| u.name),
        other_than,
    })
}

/// `GET /oauth/callback`: Microsoft sends the new tab back here.
pub(crate) async fn callback(
    State(web): State<Arc<Web>>,
    visit: Visit,
    origin: Origin,
    RawQuery(query): RawQuery,
) -> Response {
    let uri = callback_uri(&web, origin).unwrap_or_default();
    let answer = RedirectAnswer::parse(query.as_deref().unwrap_or_default());
    let waiting = answer.state.as_deref().and_then(|state| {
        let mut flows = web.flows.lock();
        flows.sweep(Instant::now());
        flows.callbacks.remove(state)
    });
    let mut t = visit.tr();
    let done = |t: Tr, who: Option<Who>, result: Result<Signed, Failure>, back: Option<String>| {
        let (status, signed_in, warning, error) = match result {
            Ok(signed) => {
                let (line, warning) = signed.texts(t, true);
                (StatusCode::OK, Some(line), warning, None)
            }
            Err(f) => {
                let platform = t.get("authorize-platform-web");
                (
                    StatusCode::BAD_REQUEST,
                    None,
                    None,
                    Some(show(t, &f, &uri, &platform)),
                )
            }
        };
        let mut response = page(
            status,
            &DonePage {
                t,
                who,
                title: t.get("authorize-title-plain"),
                signed_in,
                warning,
                error,
                back,
            },
        );
        let clear = format!(
            "{BINDING_COOKIE}=; Max-Age=0; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax{}",
            if web.secure_cookies { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        response
    };
    let Some(waiting) = waiting else {
        return done(t, None, Err(Failure::UnknownState), None);
    };
    let binding_ok = match (&waiting.binding, visit.cookie(BINDING_COOKIE)) {
        (Some(expected), Some(sent)) => same(expected, &sha256_hex(sent)),
        _ => false,
    };
    if !binding_ok {
        return done(t, None, Err(Failure::OtherBrowser), None);
    }
    let person = match web.store.find_web_session(&waiting.session).await {
        Ok(Some(s)) => s,
        Ok(None) => return done(t, None, Err(Failure::UnknownState), None),
        Err(e) => return store_failed(t, &e),
    };
    t = visit.tr_for(&person.user);
    let back = Some(format!("/accounts/{}/authorize", waiting.account));
    if let Some(error) = answer.error {
        return done(t, None, Err(Failure::Microsoft(error)), back);
    }
    let Some(code) = answer.code else {
        return done(t, None, Err(Failure::UnknownState), back);
    };
    let result = redeem(&web, waiting.account, &waiting.request, &code, false).await;
    done(t, None, result, back)
}

/// `POST /accounts/{id}/authorize/device`: asks for a device code and starts polling.
pub(crate) async fn start_device(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    origin: Origin,
    Form(form): Form<CsrfForm>,
) -> Response {
    let ctx = match form_context(&web, &visit, origin, &id, form.csrf.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (spec, client) = match spec(&web, &ctx).await {
        Ok(v) => v,
        Err(f) => return failed(&web, &ctx, f).await,
    };
    let mut scopes = spec.scopes.clone();
    scopes.extend(extra_consent(&ctx.account, &ctx.app));
    let code = match client
        .start_device_code(&spec.app, &spec.authority, &scopes)
        .await
    {
        Ok(c) => c,
        Err(e) => return failed(&web, &ctx, Failure::from_auth(&e)).await,
    };
    let key = (ctx.session_hash.clone(), ctx.id);
    let status = DeviceStatus::Waiting {
        user_code: code.user_code.clone(),
        uri: code.verification_uri.clone(),
        interval: code.interval.clamp(1, 60),
    };
    let task = {
        let web = Arc::clone(&web);
        let key = key.clone();
        let app = ctx.app.clone();
        let account = ctx.account.clone();
        tokio::spawn(async move {
            let result = match client
                .poll_device_code(&spec.app, &spec.authority, &code)
                .await
            {
                Ok(tokens) => keep(&web.sign_in, &app, &account, &tokens).await,
                Err(e) => Err(Failure::from_auth(&e)),
            };
            let status = match result {
                Ok(signed) => DeviceStatus::Done(signed),
                Err(f) => DeviceStatus::Failed(f),
            };
            if let Some(d) = web.flows.lock().devices.get_mut(&key) {
                d.status = status;
            }
        })
    };
    {
        let mut flows = web.flows.lock();
        flows.sweep(Instant::now());
        if let Some(old) = flows.devices.insert(
            key,
            Device {
                status,
                started: Instant::now(),
                task,
            },
        ) {
            old.task.abort();
        }
    }
    Redirect::to(&format!("/accounts/{}/authorize#device", ctx.id)).into_response()
}

/// `GET /accounts/{id}/authorize/device/status`: `{"state": "waiting" | "done" |
/// "failed" | "none"}`, what `authorize.js` asks.
pub(crate) async fn device_status(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    origin: Origin,
) -> Response {
    let ctx = match context(&web, &visit, origin, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let state = match web
        .flows
        .lock()
        .devices
        .get(&(ctx.session_hash.clone(), ctx.id))
        .map(|d| &d.status)
    {
        Some(DeviceStatus::Waiting { .. }) => "waiting",
        Some(DeviceStatus::Done(_)) => "done",
        Some(DeviceStatus::Failed(_)) => "failed",
        None => "none",
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"state\":\"{state}\"}}"),
    )
        .into_response()
}

/// `POST /accounts/{id}/authorize/paste/start`: makes the authorize URL to open
/// elsewhere.
pub(crate) async fn start_paste(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    origin: Origin,
    Form(form): Form<CsrfForm>,
) -> Response {
    let ctx = match form_context(&web, &visit, origin, &id, form.csrf.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (spec, _) = match spec(&web, &ctx).await {
        Ok(v) => v,
        Err(f) => return failed(&web, &ctx, f).await,
    };
    let request = AuthorizationRequest::with_extra_consent(
        &spec.app.client_id,
        &spec.authority,
        &spec.scopes,
        &extra_consent(&ctx.account, &ctx.app),
        PASTE_REDIRECT,
        Some(&ctx.account.address),
    );
    {
        let mut flows = web.flows.lock();
        flows.sweep(Instant::now());
        flows.pastes.insert(
            (ctx.session_hash.clone(), ctx.id),
            Waiting {
                account: ctx.id,
                session: ctx.session_hash.clone(),
                binding: None,
                request: Arc::new(request),
                started: Instant::now(),
            },
        );
    }
    Redirect::to(&format!("/accounts/{}/authorize#paste", ctx.id)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct PasteForm {
    csrf: Option<String>,
    #[serde(default)]
    address: String,
}

/// `POST /accounts/{id}/authorize/paste`: the address the browser ended on.
pub(crate) async fn paste(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    origin: Origin,
    Form(form): Form<PasteForm>,
) -> Response {
    let ctx = match form_context(&web, &visit, origin, &id, form.csrf.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // At most what a browser's address bar holds.
    let pasted: String = form.address.trim().chars().take(16 * 1024).collect();
    let key = (ctx.session_hash.clone(), ctx.id);
    let request = web
        .flows
        .lock()
        .pastes
        .get(&key)
        .filter(|w| w.started.elapsed() < FLOW_LIFETIME && w.session == ctx.session_hash)
        .map(|w| Arc::clone(&w.request));
    let answer = RedirectAnswer::parse(&pasted);
    let outcome = match (request, answer.error) {
        (None, _) => Err(Failure::PasteExpired),
        (Some(_), Some(error)) => Err(Failure::Microsoft(error)),
        (Some(request), None) => {
            if answer
                .state
                .as_deref()
                .is_none_or(|s| !same(s, request.state()))
            {
                Err(Failure::PasteState)
            } else if let Some(code) = &answer.code {
                // One redemption per sign-in: the code and its state are used up.
                web.flows.lock().pastes.remove(&key);
                redeem(&web, ctx.id, &request, code, true).await
            } else {
                Err(Failure::PasteNoCode)
            }
        }
    };
    let (status, extra) = match outcome {
        Ok(signed) => {
            let (line, warning) = signed.texts(ctx.t, false);
            (
                StatusCode::OK,
                Extra {
                    paste_done: Some(line),
                    paste_warning: warning,
                    ..Extra::default()
                },
            )
        }
        Err(f) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Extra {
                paste_value: pasted,
                paste_error: Some(f),
                ..Extra::default()
            },
        ),
    };
    render(&web, &ctx, status, extra).await
}

const SCRIPT: &str = include_str!("../assets/authorize.js");

/// `GET /assets/authorize.js`
pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aadsts(code: u32, message: &str) -> Failure {
        Failure::Microsoft(TokenError {
            error: "invalid_request".into(),
            code: Some(code),
            message: message.into(),
            suberror: None,
            claims: None,
            trace_id: None,
            correlation_id: None,
        })
    }

    #[test]
    fn a_redirect_uri_mismatch_is_explained_in_the_viewers_language() {
        let uri = "https://mb.example.com/oauth/callback";
        let failure = aadsts(50011, "AADSTS50011: The redirect URI ... does not match");
        let en = show(Tr::new("en"), &failure, uri, "Web");
        assert_eq!(en.title, "The sign-in did not complete (AADSTS50011)");
        assert_eq!(
            en.server.as_deref(),
            Some("AADSTS50011: The redirect URI ... does not match")
        );
        assert_eq!(
            en.fix.as_deref(),
            Some(
                "In the Azure portal open App registrations → the app → Authentication → Add a platform → “Web” and add exactly https://mb.example.com/oauth/callback, then start again."
            )
        );
        let pl = show(Tr::new("pl"), &failure, uri, "Sieć Web");
        assert_eq!(pl.title, "Logowanie nie zostało ukończone (AADSTS50011)");
        let fix = pl.fix.unwrap();
        assert!(fix.contains("Dodaj platformę → „Sieć Web”"), "{fix}");
        assert!(fix.contains(uri), "{fix}");
    }

    #[test]
    fn other_codes_are_said_from_the_catalogues_messages() {
        let failure = aadsts(7_000_215, "AADSTS7000215: Invalid client secret provided.");
        let shown = show(Tr::new("de"), &failure, "", "Web");
        assert_eq!(shown.cause, "der geheime Schlüssel ist falsch");
        let fix = shown.fix.unwrap();
        assert!(fix.contains("Zertifikate & Geheimnisse"), "{fix}");
        let en = show(Tr::new("en"), &failure, "", "Web");
        let entry = mailbridge_auth::diagnosis::lookup(7_000_215).unwrap();
        assert_eq!(en.cause, entry.cause);
        assert_eq!(en.fix.as_deref(), Some(entry.fix));
        let unknown = show(Tr::new("ru"), &aadsts(1, "AADSTS1: ?"), "", "Web");
        assert_eq!(
            unknown.cause,
            "платформа удостоверений ответила invalid_request"
        );
        let plain = show(Tr::new("fr"), &Failure::PasteNoCode, "", "Web");
        assert!(
            plain
                .cause
                .starts_with("L’adresse collée ne contient pas de code")
        );
    }
}
