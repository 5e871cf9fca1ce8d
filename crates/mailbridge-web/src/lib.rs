//! mailbridge-web: the web admin UI that `mailbridge serve` serves beside the API.
//!
//! [`router`] builds the pages as one axum `Router` over a [`WebConfig`];
//! `mailbridge-server`'s `app()` merges it, so the pages get the same request limits
//! and logging as the API.
//!
//! Parts:
//! - [`password`]: Argon2id hashing and verifying of people's passwords (PHC
//!   strings; the store keeps only those).
//! - [`session`]: session ids (only their SHA-256 stored), CSRF tokens and cookies
//!   (`HttpOnly; SameSite=Strict; Path=/`, `Secure` over TLS).
//! - [`limit`]: sign-in rate limiting per user name and per client address, with
//!   "try again in N s".
//! - [`i18n`]: English, Polish, German, French and Russian with Project Fluent
//!   (`fluent-bundle`); the user's language, else `Accept-Language`, else English.
//! - `pages`: sign-in, sign-out (POST with the session's CSRF token), the first
//!   run's setup page (a one-time link `mailbridge serve` prints while there is no
//!   user; it makes the first administrator).
//! - `dashboard`: the accounts the person may see with their watcher's state, last
//!   error, last sync, queue and parked counts, messages per hour (server-drawn SVG)
//!   and latency, totals, and what expires soon.
//! - `accounts`: the accounts list, an account's page (watcher state and history,
//!   routes, messages, Test receive / Test send) and the add/edit wizard, through
//!   `mailbridge-server`'s own functions (`account_access`, `api_config`).
//! - `admin`: the navigation of every signed-in page and the administration pages
//!   (apps, providers and domains, outbox, parked deliveries, users and API tokens,
//!   settings, the audit log), which call `mailbridge-server`'s own functions with
//!   the person as the caller.
//! - `authorize`: signing a delegated account in from the browser
//!   (`/accounts/{id}/authorize`): Microsoft's sign-in in a new tab back to the
//!   daemon's `/oauth/callback`, a device code, or a pasted redirect URL.
//!
//! Pages are askama templates (`templates/`, checked at compile time); the one
//! stylesheet is embedded (`assets/style.css`), and so are two small scripts
//! (`assets/accounts.js`: times in the viewer's zone, the "Testing…" notice, and a
//! test run's steps appended as they finish;
//! `assets/authorize.js`: refreshes the Authorize page when a device-code sign-in
//! ends); there is no inline script or style. Every response of the router carries a strict Content-Security-Policy
//! ([`CONTENT_SECURITY_POLICY`]), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`. Who may see what is decided by
//! [`mailbridge_types::access::allowed`], as for the API.

mod accounts;
mod admin;
mod authorize;
mod dashboard;
pub mod diagnosis;
pub mod i18n;
pub mod limit;
mod pages;
pub mod password;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mailbridge_accounts::signin::SignIn;
use mailbridge_connector::watcher::state::WatcherEvent;
use mailbridge_store::Store;
use secrecy::SecretString;

pub use pages::valid_user_name;

/// The Content-Security-Policy of every page and asset: nothing from elsewhere, no
/// inline script or style, no framing; scripts may ask only this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How long the first run's setup link works.
pub const SETUP_LINK_LIFETIME: std::time::Duration = std::time::Duration::from_hours(1);

/// Why no setup link could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupLinkError {
    #[error(transparent)]
    Random(#[from] session::RandomError),
    #[error("failed to store the setup link's token")]
    Store(#[from] mailbridge_store::StoreError),
}

/// While the store has no user: a new one-time setup token (stored as its SHA-256,
/// valid for [`SETUP_LINK_LIFETIME`], replacing any earlier one) for the link
/// `/setup?token=...`; `None` once someone exists.
pub async fn setup_token(store: &Store) -> Result<Option<SecretString>, SetupLinkError> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let token = session::random_token()?;
    store
        .put_setup_token(
            &session::sha256_hex(&token),
            store.now() + SETUP_LINK_LIFETIME,
        )
        .await?;
    Ok(Some(SecretString::from(token)))
}

/// The scheme and host a trusted reverse proxy says the request came to
/// (`https://mb.example.com`), put in the request's extensions by `mailbridge serve`
/// when no public URL is set: the Authorize page's callback is built from it.
#[derive(Debug, Clone)]
pub struct ForwardedOrigin(pub String);

/// The daemon's watcher states, as the dashboard asks for them.
pub type Watchers = Arc<dyn Fn() -> Vec<WatcherEvent> + Send + Sync>;

/// What the pages work on.
pub struct WebConfig {
    /// The store (people, sessions, accounts).
    pub store: Store,
    /// The configuration file whose accounts join the store's.
    pub config_file: PathBuf,
    /// The watchers' last states (`DaemonHandle::states`).
    pub watchers: Watchers,
    /// Whether the pages are served over TLS: cookies then get `Secure`.
    pub secure_cookies: bool,
    /// The daemon's work, whose functions (the API's) the account and administration
    /// pages call; `None`: those pages say the daemon is not running (503).
    pub daemon: Option<mailbridge_server::daemon::DaemonHandle>,
    /// The data directory: certificates uploaded on the apps page are kept in its
    /// `certificates/` (files 0600); `None`: uploads are refused.
    pub data_dir: Option<PathBuf>,
    /// The sign-in service the daemon uses (the Authorize page keeps tokens through it).
    pub sign_in: Arc<SignIn>,
    /// The address people and Microsoft reach the daemon at (`serve --public-url`,
    /// else its listening address): the Authorize page's callback
    /// `PUBLIC_URL/oauth/callback` (a [`ForwardedOrigin`] goes first); `None`: no
    /// browser sign-in (device code and paste still work).
    pub public_url: Option<String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("config_file", &self.config_file)
            .field("secure_cookies", &self.secure_cookies)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The state behind the pages.
pub(crate) struct Web {
    store: Store,
    config_file: PathBuf,
    watchers: Watchers,
    secure_cookies: bool,
    limiter: limit::Limiter,
    daemon: Option<mailbridge_server::daemon::DaemonHandle>,
    /// Recent watcher events per account, for the account pages.
    history: accounts::History,
    data_dir: Option<PathBuf>,
    sign_in: Arc<SignIn>,
    public_url: Option<String>,
    flows: authorize::Flows,
    /// Test receive / Test send runs going on or recently ended.
    runs: accounts::live::Runs,
}

const STYLE: &str = include_str!("../assets/style.css");

/// The pages: `/` (dashboard), `/signin`, `/signout`, `/setup`, `/accounts...`, the
/// Authorize pages (`/accounts/{id}/authorize...`, `/oauth/callback`), the
/// administration pages, and the assets.
pub fn router(config: WebConfig) -> Router {
    let web = Arc::new(Web {
        store: config.store,
        config_file: config.config_file,
        watchers: config.watchers,
        secure_cookies: config.secure_cookies,
        limiter: limit::Limiter::default(),
        history: accounts::History::follow(config.daemon.as_ref()),
        daemon: config.daemon,
        data_dir: config.data_dir,
        sign_in: config.sign_in,
        public_url: config.public_url,
        flows: authorize::Flows::default(),
        runs: accounts::live::Runs::default(),
    });
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route("/signin", get(pages::signin_page).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/setup", get(pages::setup_page).post(pages::setup))
        .route("/apps", get(admin::apps::apps_page))
        .route("/apps/{id}/secret", post(admin::apps::set_secret))
        .route("/apps/{id}/certificate", post(admin::apps::set_certificate))
        .route(
            "/providers",
            get(admin::providers::providers_page).post(admin::providers::add),
        )
        .route("/providers/{id}/delete", post(admin::providers::delete))
        .route("/outbox", get(admin::deliveries::outbox_page))
        .route("/parked", get(admin::deliveries::parked))
        .route("/parked/{id}/retry", post(admin::deliveries::retry))
        .route("/parked/{id}/drop", post(admin::deliveries::drop))
        .route(
            "/users",
            get(admin::users::users_page).post(admin::users::add_user),
        )
        .route("/users/{name}/disable", post(admin::users::disable_user))
        .route("/users/{name}/enable", post(admin::users::enable_user))
        .route("/users/{name}/role", post(admin::users::set_role))
        .route("/tokens", post(admin::users::add_token))
        .route("/tokens/{id}/revoke", post(admin::users::revoke_token))
        .route(
            "/settings",
            get(admin::settings::settings_page).post(admin::settings::save),
        )
        .route("/audit", get(admin::audit::audit_page))
        .route("/assets/style.css", get(style))
        .route("/accounts", get(accounts::list))
        .route(
            "/accounts/new",
            get(accounts::wizard::start).post(accounts::wizard::step),
        )
        .route("/accounts/{id}", get(accounts::detail))
        .route(
            "/accounts/{id}/edit",
            get(accounts::wizard::edit).post(accounts::wizard::edit_step),
        )
        .route("/accounts/{id}/test/{kind}", post(accounts::test))
        .route("/accounts/{id}/test/{kind}/{run}", get(accounts::test_run))
        .route("/assets/accounts.js", get(accounts::script))
        .route("/accounts/{id}/authorize", get(authorize::authorize_page))
        .route(
            "/accounts/{id}/authorize/browser",
            post(authorize::start_browser),
        )
        .route(
            "/accounts/{id}/authorize/device",
            post(authorize::start_device),
        )
        .route(
            "/accounts/{id}/authorize/device/status",
            get(authorize::device_status),
        )
        .route(
            "/accounts/{id}/authorize/paste/start",
            post(authorize::start_paste),
        )
        .route("/accounts/{id}/authorize/paste", post(authorize::paste))
        .route(authorize::CALLBACK_PATH, get(authorize::callback))
        .route("/assets/authorize.js", get(authorize::script))
        .layer(axum::middleware::map_response(page_headers))
        .with_state(web)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
