//! mailbridge-server: the daemon as a library.
//!
//! [`app`] builds the whole HTTP surface as one axum `Router` over an [`AppState`], so
//! `mailbridge serve` and the tests run exactly the same thing.
//!
//! Parts:
//! - [`daemon`]: the daemon's work behind the API (a watcher per account whose watch
//!   is on, under a lease per account; the outbox sender; the parked delivery
//!   worker), started by `mailbridge serve` and reached through
//!   [`daemon::DaemonHandle`].
//! - [`api`]: the resources under `/api/v1`: accounts, watches, sinks (secrets
//!   write-only), the outbox, parked deliveries, watcher states and events (SSE).
//! - [`api_config`]: apps (client secrets write-only), creating, changing and
//!   removing accounts (passwords write-only), providers and the domain table, and
//!   an account's "test receive" / "test send" reports.
//! - [`api_messages`]: an account's messages: the newest of a folder, and one
//!   message's raw MIME streamed within the account's limits.
//! - [`problem`]: every error as `application/problem+json` with a stable `code` and,
//!   for invalid input, the `field` at fault.
//! - [`json`]: [`json::ApiJson`], request bodies read within the body limit, answered
//!   400 (not JSON), 413 (too large), 415 (not declared JSON) or 422 (wrong type,
//!   missing or unknown field, with its JSON path).
//! - [`audit`]: the audit log, recorded from one place ([`audit::record`]) by the
//!   API's changing handlers and the web UI's pages, and `GET /api/v1/audit`.
//! - [`api_token`]: `mbt_` tokens kept as SHA-256 only, the [`api_token::Caller`]
//!   extractor, and the role check every endpoint makes through
//!   [`mailbridge_types::access::allowed`].
//! - [`store_tokens`]: the store behind the tokens ([`store_tokens::StoreTokens`]) and
//!   readiness ([`store_tokens::store_ready`]), and making a token ([`store_tokens::issue`];
//!   the first administrator's on the first start, [`store_tokens::issue_first`]).
//! - [`activity`]: messages per hour, delivery latency and last sync per account,
//!   kept in memory by the daemon from the watchers' message hook (the dashboard's).
//! - [`metrics`]: the Prometheus registry behind `/metrics` (HTTP requests by route
//!   and status class; [`metrics::DaemonMetrics`], the daemon's families).
//! - The web UI's pages, when [`AppState::web`] holds them (`mailbridge-web`).
//! - `/healthz` (the process answers), `/readyz` (its store answers), the OpenAPI
//!   document at `/api/openapi.json` generated from the handlers (utoipa), and the
//!   API under `/api/v1`.
//!
//! Every request has a time limit and a body limit; answers carry
//! `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`.

pub mod account_access;
pub mod activity;
pub mod api;
pub mod api_config;
pub mod api_messages;
pub mod api_token;
pub mod audit;
pub mod daemon;
pub mod json;
pub mod metrics;
pub mod problem;
pub mod store_tokens;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

use crate::api_token::{ApiTokens, Caller};
use crate::metrics::{HttpLabels, Metrics};
use crate::problem::Problem;

/// Boxed future of a readiness check.
pub type ReadyFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Whether the daemon can serve (its store answers); the reason when not.
pub type ReadyCheck = Arc<dyn Fn() -> ReadyFuture + Send + Sync>;

/// Bounds on every request.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// The largest request body, in bytes.
    pub body_bytes: usize,
    /// The longest a request may take, start to answer.
    pub request_timeout: Duration,
    /// The largest message queued through the outbox in one request, in bytes (each
    /// account's `limits.max_message_size` bounds it too).
    pub message_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            message_bytes: 150 * 1024 * 1024,
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub tokens: Arc<dyn ApiTokens>,
    pub metrics: Arc<Metrics>,
    pub ready: ReadyCheck,
    pub limits: ApiLimits,
    /// The daemon's work (store, watchers, outbox); `None` serves only the HTTP
    /// surface (the resources under `/api/v1` that need it answer 503).
    pub daemon: Option<daemon::DaemonHandle>,
    /// The web UI's pages (`mailbridge-web`'s router), merged beside the API under
    /// the same limits; `None` serves the API only.
    pub web: Option<axum::Router>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailbridge",
        description = "Connects business applications to Microsoft 365 / Exchange and IMAP/POP3/SMTP mailboxes. Every error is application/problem+json with a stable `code`."
    ),
    components(schemas(crate::problem::ProblemDocument)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole HTTP surface.
pub fn app(mut state: AppState) -> axum::Router {
    let limits = state.limits;
    let web = state.web.take();
    let state = Arc::new(state);
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(whoami))
        .routes(routes!(api::list_accounts))
        .routes(routes!(api::get_account))
        .routes(routes!(api::get_watch, api::put_watch, api::delete_watch))
        .routes(routes!(api::list_sinks, api::create_sink))
        .routes(routes!(api::get_sink, api::put_sink, api::delete_sink))
        .routes(routes!(api::queue_message).layer(DefaultBodyLimit::max(limits.message_bytes)))
        .routes(routes!(api::list_outbox))
        .routes(routes!(api::get_outbox))
        .routes(routes!(api::list_watchers))
        .routes(routes!(api::list_parked))
        .routes(routes!(api::get_parked, api::drop_parked))
        .routes(routes!(api::retry_parked))
        .routes(routes!(api::events))
        .routes(routes!(api_config::list_apps, api_config::create_app))
        .routes(routes!(
            api_config::get_app,
            api_config::put_app,
            api_config::delete_app
        ))
        .routes(routes!(api_config::create_account))
        .routes(routes!(api_config::put_account, api_config::delete_account))
        .routes(routes!(api_config::put_account_owner))
        .routes(routes!(
            api_config::list_providers,
            api_config::create_provider
        ))
        .routes(routes!(api_config::delete_provider))
        .routes(routes!(api_config::list_domains))
        .routes(routes!(api_config::test_receive))
        .routes(routes!(api_config::test_send))
        .routes(routes!(api_messages::list_messages))
        .routes(routes!(api_messages::get_message))
        .routes(routes!(audit::list_audit))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let router = match web {
        Some(web) => router.merge(web.with_state(())),
        None => router,
    };
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(metrics_text))
        .fallback(|| async {
            Problem::not_found("there is nothing at this address; /api/openapi.json lists the API")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this address does not take that method; /api/openapi.json lists what it takes",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn(move |req, next| {
            within(limits.request_timeout, req, next)
        }))
        .layer(middleware::from_fn(safe_headers))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .with_state(state)
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The daemon can serve: its store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "ready", body = String),
        (status = 503, description = "not ready, with the reason", body = crate::problem::ProblemDocument, content_type = "application/problem+json")
    )
)]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match (state.ready)().await {
        Ok(()) => "ready".into_response(),
        Err(reason) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            reason,
        )
        .into_response(),
    }
}

/// Who the caller's token is.
#[derive(Debug, Serialize, ToSchema)]
struct WhoAmI {
    /// The token's name.
    token: String,
    /// administrator, user or auditor.
    role: String,
    /// The user it acts for, if any.
    user: Option<String>,
}

/// The token the request was made with: its name, role and user.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    security(("api_token" = [])),
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, body = crate::problem::ProblemDocument, content_type = "application/problem+json")
    )
)]
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        token: caller.token.name,
        role: caller.token.role.as_str().to_owned(),
        user: caller.token.user,
    })
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Counts each request by its route's pattern (never the raw path: ids would make
/// one series per request) and status class.
async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status,
        })
        .inc();
    response
}

/// A request that takes longer than the limit is answered 503 `timeout`.
async fn within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request took too long",
            format!(
                "mailbridge stopped this request after {} s; try again, and if it keeps happening look in the log",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

async fn safe_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
