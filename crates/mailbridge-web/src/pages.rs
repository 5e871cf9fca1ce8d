//! The pages: sign-in, sign-out and the first run's setup, and the helpers every
//! page uses (the dashboard is in `dashboard`).

#![expect(
    clippy::result_large_err,
    reason = "a helper that fails returns the finished page to answer with"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_connector::watcher::state::WatcherState;
use mailbridge_store::{NewUser, User, WebSession};
use mailbridge_types::access::Role;
use secrecy::SecretString;
use serde::Deserialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::Web;
use crate::i18n::{Tr, negotiate};
use crate::password;
use crate::session::{
    FORM_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, clear_cookie, cookie, random_token, same,
    set_cookie, sha256_hex,
};

/// The signed-in person as the page header shows them.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    /// "Signed in as NAME (ROLE)" in the page's language.
    pub(crate) line: String,
    pub(crate) csrf: String,
    /// Their role: which links the navigation shows.
    pub(crate) role: Role,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    error: Option<String>,
    name: String,
    no_users: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    token: String,
    error: Option<String>,
    name: String,
    min: usize,
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub(crate) t: Tr,
    pub(crate) who: Option<Who>,
    pub(crate) title: String,
    pub(crate) message: String,
}

/// A page with its status; a template that fails to render answers 500 in plain text.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// A message page (refusals and failures).
pub(crate) fn message(status: StatusCode, t: Tr, title: &str, text: &str) -> Response {
    page(
        status,
        &MessagePage {
            t,
            who: None,
            title: t.get(title),
            message: t.get(text),
        },
    )
}

/// The store failed: logged, and a page that says so.
pub(crate) fn store_failed(t: Tr, e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "the web UI could not reach the store");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        t,
        "error-title",
        "error-store",
    )
}

/// The 403 page of a form posted without its CSRF token (or with a wrong one).
pub(crate) fn csrf_refused(t: Tr) -> Response {
    message(StatusCode::FORBIDDEN, t, "forbidden-title", "csrf-refused")
}

/// What every page reads from the request: the cookies, the browser's languages
/// and the client's address.
pub(crate) struct Visit {
    cookies: String,
    accept_language: Option<String>,
    /// The peer's address ("unknown" when the server was not given it).
    pub(crate) addr: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let text = |h: &HeaderMap, name| {
            h.get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let accept = text(&parts.headers, header::ACCEPT_LANGUAGE);
        Ok(Self {
            cookies: text(&parts.headers, header::COOKIE),
            accept_language: (!accept.is_empty()).then_some(accept),
            addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string()),
        })
    }
}

impl Visit {
    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        cookie(&self.cookies, name)
    }

    /// The language for someone not signed in.
    pub(crate) fn tr(&self) -> Tr {
        Tr::new(negotiate(None, self.accept_language.as_deref()))
    }

    pub(crate) fn tr_for(&self, user: &User) -> Tr {
        Tr::new(negotiate(
            user.language.as_deref(),
            self.accept_language.as_deref(),
        ))
    }
}

/// The session of this visit, if its cookie names a live one.
pub(crate) async fn session(web: &Web, visit: &Visit) -> Result<Option<WebSession>, Response> {
    let Some(id) = visit.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    web.store
        .find_web_session(&sha256_hex(id))
        .await
        .map_err(|e| store_failed(visit.tr(), &e))
}

pub(crate) fn who(t: Tr, session: &WebSession) -> Who {
    let role = t.get(role_message(session.user.role));
    Who {
        line: t.with2(
            "signed-in-as",
            ("name", &session.user.name),
            ("role", &role),
        ),
        csrf: session.csrf_token.clone(),
        role: session.user.role,
    }
}

pub(crate) fn role_message(role: Role) -> &'static str {
    match role {
        Role::Administrator => "role-administrator",
        Role::User => "role-user",
        Role::Auditor => "role-auditor",
    }
}

/// The form token of a page shown without a session: the visit's `mb_form` cookie,
/// or a new one to set.
fn form_token(visit: &Visit) -> Result<(String, Option<String>), Response> {
    if let Some(existing) = visit.cookie(FORM_COOKIE).filter(|v| v.len() == 43) {
        return Ok((existing.to_owned(), None));
    }
    let token = random_token().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a form token");
        message(
            StatusCode::INTERNAL_SERVER_ERROR,
            visit.tr(),
            "error-title",
            "error-store",
        )
    })?;
    Ok((token.clone(), Some(token)))
}

fn with_cookie(mut response: Response, set: Option<String>) -> Response {
    if let Some(value) = set.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Whether a pre-session form carried the visit's `mb_form` token.
fn form_token_ok(visit: &Visit, sent: Option<&str>) -> bool {
    match (visit.cookie(FORM_COOKIE), sent) {
        (Some(cookie), Some(sent)) => same(cookie, sent),
        _ => false,
    }
}

// ---- sign-in ----

pub(crate) async fn signin_page(State(web): State<Arc<Web>>, visit: Visit) -> Response {
    match session(&web, &visit).await {
        Ok(Some(_)) => return Redirect::to("/").into_response(),
        Ok(None) => {}
        Err(r) => return r,
    }
    signin_form(&web, &visit, StatusCode::OK, None, String::new()).await
}

async fn signin_form(
    web: &Web,
    visit: &Visit,
    status: StatusCode,
    error: Option<String>,
    name: String,
) -> Response {
    let t = visit.tr();
    let (csrf, set) = match form_token(visit) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let no_users = match web.store.user_count().await {
        Ok(n) => n == 0,
        Err(e) => return store_failed(t, &e),
    };
    let set = set.map(|v| set_cookie(FORM_COOKIE, &v, SESSION_LIFETIME, web.secure_cookies));
    with_cookie(
        page(
            status,
            &SignInPage {
                t,
                who: None,
                csrf,
                error,
                name,
                no_users,
            },
        ),
        set,
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn signin(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(form): Form<SignInForm>,
) -> Response {
    let t = visit.tr();
    if !form_token_ok(&visit, form.csrf.as_deref()) {
        return csrf_refused(t);
    }
    let name = form.name.trim().to_owned();
    let password = SecretString::from(form.password);
    // No name is longer than 64 characters: the key is bounded whatever was sent.
    let name_key = format!("name:{}", name.chars().take(65).collect::<String>());
    let addr_key = format!("addr:{}", visit.addr);
    let now = Instant::now();
    let wait = [&name_key, &addr_key]
        .iter()
        .filter_map(|k| web.limiter.wait(k, now))
        .max();
    if let Some(wait) = wait {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let error = t.with("signin-throttled", "seconds", &seconds);
        let mut response = signin_form(
            &web,
            &visit,
            StatusCode::TOO_MANY_REQUESTS,
            Some(error),
            name,
        )
        .await;
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let found = match web.store.user_with_password(&name).await {
        Ok(found) => found,
        Err(e) => return store_failed(t, &e),
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let verified = password::verify(password, hash).await;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            web.limiter.failed(&name_key, now);
            web.limiter.failed(&addr_key, now);
            tracing::info!(
                addr = visit.addr,
                "web sign-in refused: wrong name or password"
            );
            let error = t.get("signin-wrong");
            return signin_form(&web, &visit, StatusCode::UNAUTHORIZED, Some(error), name).await;
        }
    };
    web.limiter.succeeded(&name_key);
    if user.disabled {
        let error = t.get("signin-disabled");
        return signin_form(&web, &visit, StatusCode::FORBIDDEN, Some(error), name).await;
    }
    start_session(&web, &visit, &user).await
}

/// Makes a session for `user`, sets its cookie and goes to the dashboard.
async fn start_session(web: &Web, visit: &Visit, user: &User) -> Response {
    let t = visit.tr_for(user);
    let (Ok(id), Ok(csrf)) = (random_token(), random_token()) else {
        tracing::error!("no randomness for a session");
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            t,
            "error-title",
            "error-store",
        );
    };
    // Expired sessions are cleared as new ones begin.
    if let Err(e) = web.store.delete_expired_web_sessions().await {
        tracing::warn!(error = %e, "failed to remove expired web sessions");
    }
    let expires = web.store.now() + SESSION_LIFETIME;
    if let Err(e) = web
        .store
        .add_web_session(&sha256_hex(&id), user.id, &csrf, expires)
        .await
    {
        return store_failed(t, &e);
    }
    tracing::info!(user = user.name.as_str(), addr = visit.addr, "web sign-in");
    let mut response = Redirect::to("/").into_response();
    let set = set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME, web.secure_cookies);
    if let Ok(v) = HeaderValue::from_str(&set) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(FORM_COOKIE, web.secure_cookies)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

// ---- sign-out ----

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    pub(crate) csrf: Option<String>,
}

pub(crate) async fn signout(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match session(&web, &visit).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(r) => return r,
    };
    let t = visit.tr_for(&session.user);
    if !form
        .csrf
        .as_deref()
        .is_some_and(|sent| same(sent, &session.csrf_token))
    {
        return csrf_refused(t);
    }
    if let Some(id) = visit.cookie(SESSION_COOKIE)
        && let Err(e) = web.store.delete_web_session(&sha256_hex(id)).await
    {
        return store_failed(t, &e);
    }
    let mut response = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(SESSION_COOKIE, web.secure_cookies)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

// ---- setup ----

#[derive(Deserialize)]
pub(crate) struct SetupQuery {
    #[serde(default)]
    token: String,
}

pub(crate) async fn setup_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(query): Query<SetupQuery>,
) -> Response {
    let t = visit.tr();
    match web.store.setup_token_valid(&sha256_hex(&query.token)).await {
        Ok(true) => {}
        Ok(false) => return message(StatusCode::NOT_FOUND, t, "forbidden-title", "setup-invalid"),
        Err(e) => return store_failed(t, &e),
    }
    setup_form(
        &web,
        &visit,
        StatusCode::OK,
        query.token,
        None,
        String::new(),
    )
}

fn setup_form(
    web: &Web,
    visit: &Visit,
    status: StatusCode,
    token: String,
    error: Option<String>,
    name: String,
) -> Response {
    let (csrf, set) = match form_token(visit) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let set = set.map(|v| set_cookie(FORM_COOKIE, &v, SESSION_LIFETIME, web.secure_cookies));
    with_cookie(
        page(
            status,
            &SetupPage {
                t: visit.tr(),
                who: None,
                csrf,
                token,
                error,
                name,
                min: password::MIN_LENGTH,
            },
        ),
        set,
    )
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    csrf: Option<String>,
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

/// Whether `name` is a acceptable user name: 1 to 64 letters, digits, `.`, `-`, `_`
/// or `@`.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

pub(crate) async fn setup(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(form): Form<SetupForm>,
) -> Response {
    let t = visit.tr();
    if !form_token_ok(&visit, form.csrf.as_deref()) {
        return csrf_refused(t);
    }
    let name = form.name.trim().to_owned();
    let token_hash = sha256_hex(&form.token);
    match web.store.setup_token_valid(&token_hash).await {
        Ok(true) => {}
        Ok(false) => return message(StatusCode::NOT_FOUND, t, "forbidden-title", "setup-invalid"),
        Err(e) => return store_failed(t, &e),
    }
    let refuse = |error: String| {
        setup_form(
            &web,
            &visit,
            StatusCode::UNPROCESSABLE_ENTITY,
            form.token.clone(),
            Some(error),
            name.clone(),
        )
    };
    if !valid_user_name(&name) {
        return refuse(t.get("setup-name-invalid"));
    }
    if form.password != form.password2 {
        return refuse(t.get("setup-mismatch"));
    }
    let hash = match password::hash(SecretString::from(form.password)).await {
        Ok(h) => h,
        Err(password::PasswordError::TooShort) => {
            return refuse(t.with("setup-too-short", "min", &password::MIN_LENGTH));
        }
        Err(password::PasswordError::TooLong) => {
            return refuse(t.with("setup-too-long", "max", &password::MAX_BYTES));
        }
        Err(e) => {
            tracing::error!(error = %e, "hashing a password failed");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                t,
                "error-title",
                "error-store",
            );
        }
    };
    let made = web
        .store
        .add_first_user_with_setup_token(
            &token_hash,
            NewUser {
                name: &name,
                role: Role::Administrator,
                password: &hash,
                language: None,
            },
        )
        .await;
    match made {
        Ok(Some(user)) => {
            tracing::info!(
                user = user.name.as_str(),
                addr = visit.addr,
                "first administrator made through the setup link"
            );
            start_session(&web, &visit, &user).await
        }
        Ok(None) => message(StatusCode::NOT_FOUND, t, "forbidden-title", "setup-invalid"),
        Err(e) => store_failed(t, &e),
    }
}

// ---- watcher state badges ----

const UNTIL: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

/// The badge of a watcher's state: class, text, detail.
pub(crate) fn badge(t: Tr, state: Option<&WatcherState>) -> (&'static str, String, Option<String>) {
    match state {
        None => ("off", t.get("state-not-watched"), None),
        Some(WatcherState::Connecting) => ("busy", t.get("state-connecting"), None),
        Some(WatcherState::Syncing) => ("busy", t.get("state-syncing"), None),
        Some(WatcherState::Idle) => ("ok", t.get("state-idle"), None),
        Some(WatcherState::WaitingUntil { until, reason }) => {
            let until = until
                .to_offset(time::UtcOffset::UTC)
                .format(UNTIL)
                .unwrap_or_default();
            (
                "wait",
                t.with("state-waiting", "until", &until),
                Some(reason.clone()),
            )
        }
        Some(WatcherState::NeedsSignIn { reason }) => {
            ("bad", t.get("state-needs-sign-in"), Some(reason.clone()))
        }
        Some(WatcherState::Disabled { reason }) => ("off", t.get("state-disabled"), reason.clone()),
    }
}
