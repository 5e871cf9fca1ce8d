//! The configuration resources under `/api/v1`: apps (client secrets write-only),
//! accounts (create, edit, remove; passwords write-only), providers and the domain
//! table, and an account's "test receive" / "test send" checks.
//!
//! Every handler asks the caller's role first ([`Caller::require`]), then reads its
//! body. Apps, providers and domains are the system's: auditors read them,
//! administrators change them. Accounts are reached as [`crate::account_access`]
//! says: administrators change any, auditors read any, a `user` token changes its
//! user's own (an account it creates is its user's). What is saved is checked by the same
//! functions as `mailbridge app|account|provider ...` (`mailbridge_accounts::account`),
//! and a refusal names the field at fault. A change to an account reloads the daemon
//! so its watcher follows at once.
//!
//! Apps and accounts of the configuration file are shown but not changed here: they
//! are edited in the file.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mailbridge_accounts::account::{
    from_provider, provider_for_sides, transports_of, validate, validate_app,
};
use mailbridge_accounts::catalog::provider_table;
use mailbridge_accounts::check::{
    Identity, Report, SignIn as CheckSignIn, TokenFailure, receive_ews, receive_graph,
    receive_imap, receive_pop3, send_ews, send_graph, send_smtp,
};
use mailbridge_accounts::provider::{Endpoint, Provider, ProviderDefaults, ProviderError};
use mailbridge_store::{AccountId, AppId, SecretKind, Store};
use mailbridge_types::access::Action;
use mailbridge_types::config::{
    AccountConfig, AppConfig, AppCredentialConfig, Cloud, ConfigFile, EndpointConfig, Limits,
    LoginFormat, SignInMethod, Transport, Usage,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::account_access::{account_for, new_account_owner};
use crate::api_token::Caller;
use crate::audit::{Change, record};
use crate::daemon::DaemonHandle;
use crate::json::ApiBody;
use crate::problem::{Problem, ProblemDocument};

/// The daemon's work, or 503 `not-running`.
pub(crate) fn work(state: &AppState) -> Result<&DaemonHandle, Problem> {
    state.daemon.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-running",
            "Not running",
            "this server runs without the daemon's work (store, watchers); start it with `mailbridge serve`",
        )
    })
}

/// A failure of the store (or of reading the configuration): logged whole, answered
/// without detail.
pub(crate) fn store_failed(e: &(dyn std::error::Error + 'static)) -> Problem {
    tracing::error!(error = %mailbridge_types::error_chain(e), "store failure while answering a request");
    Problem::internal(None)
}

/// 422 `invalid-field` naming `field`.
pub(crate) fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Problem {
    let field = field.into();
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
        "Invalid field",
        format!("{field}: {}", detail.into()),
    )
    .with_field(field)
}

fn conflict(code: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::CONFLICT, code, title, detail)
}

/// The first of the library's problems as a 422 naming its field (under `prefix`).
fn first_problem(
    problems: Vec<mailbridge_accounts::account::Problem>,
    prefix: &str,
) -> Result<(), Problem> {
    match problems.into_iter().next() {
        Some(p) => Err(invalid(format!("{prefix}{}", p.field), p.message)),
        None => Ok(()),
    }
}

async fn catalog(daemon: &DaemonHandle) -> Result<ConfigFile, Problem> {
    mailbridge_accounts::catalog::catalog(daemon.store(), daemon.config_file())
        .await
        .map_err(|e| store_failed(&e))
}

/// The account with this id (stored or of the configuration file) and its app.
pub(crate) async fn account_by_id(
    daemon: &DaemonHandle,
    id: &str,
) -> Result<(AccountId, AccountConfig, Option<AppConfig>), Problem> {
    let parsed = account_id(id)?;
    let mut accounts = mailbridge_accounts::catalog::by_id(daemon.store(), daemon.config_file())
        .await
        .map_err(|e| store_failed(&e))?;
    let (account, app) = accounts.remove(&parsed).ok_or_else(|| no_account(id))?;
    Ok((parsed, account, app))
}

/// The 404 for an account id that names no account.
fn no_account(id: &str) -> Problem {
    Problem::not_found(format!(
        "there is no account with id {id}; GET /api/v1/accounts lists them"
    ))
}

/// The account id of a request's path (404 when it is not an id).
pub(crate) fn account_id(id: &str) -> Result<AccountId, Problem> {
    id.parse().map_err(|_| no_account(id))
}

/// A secret taken from a request: never shown, not even in Debug.
#[derive(Clone)]
pub struct Secret(pub(crate) SecretString);

impl Secret {
    /// A secret typed into a form of the web UI; `None` when it is blank (as the
    /// API refuses an empty one).
    pub fn from_form(value: String) -> Option<Self> {
        (!value.trim().is_empty()).then(|| Secret(SecretString::from(value)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("a secret cannot be empty"));
        }
        Ok(Secret(SecretString::from(s)))
    }
}

// ---- apps ----

/// An app registration to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRequest {
    /// Local name, used by accounts; an app keeps its name.
    pub name: String,
    /// Directory (tenant) ID, a verified domain, or common / organizations /
    /// consumers (delegated sign-in only).
    pub tenant: String,
    /// Application (client) ID (Azure portal -> App registrations -> the app ->
    /// Overview).
    pub client_id: String,
    /// global, us-gov-high, us-gov-dod or china.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub cloud: Option<Cloud>,
    /// Sign-in host replacing the cloud's (a sandbox, a proxy).
    #[serde(default)]
    pub authority_host: Option<String>,
    /// Graph root replacing the cloud's.
    #[serde(default)]
    pub graph_root: Option<String>,
    /// Extra trusted CA (PEM file on the daemon's machine) for the sign-in host.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub extra_ca_file: Option<PathBuf>,
    /// `{type: none}`, `{type: secret, expires}` or `{type: certificate,
    /// certificate_file, key_file, rs256}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub credential: AppCredentialConfig,
    /// The client secret's Value (App registrations -> Certificates & secrets):
    /// write-only. Leaving it out when replacing keeps the stored one.
    #[serde(default)]
    #[schema(value_type = Option<String>, write_only)]
    pub secret: Option<Secret>,
}

/// An app as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub id: String,
    /// The settings, as in the configuration file.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub app: AppConfig,
    /// The sign-in host in force (the cloud's unless replaced).
    pub authority_host_in_force: String,
    /// The Graph root in force.
    pub graph_root_in_force: String,
    /// Whether a client secret is stored (it is never shown).
    pub secret_stored: bool,
    /// The accounts that sign in with it.
    pub accounts: Vec<String>,
}

async fn app_view(
    store: &Store,
    catalog: &ConfigFile,
    id: AppId,
    app: AppConfig,
) -> Result<AppView, Problem> {
    let secret_stored = store
        .get_secret(&app.secret_id())
        .await
        .map_err(|e| store_failed(&e))?
        .is_some();
    Ok(AppView {
        id: id.to_string(),
        authority_host_in_force: app.authority_host().to_owned(),
        graph_root_in_force: app.graph_root().to_owned(),
        secret_stored,
        accounts: accounts_using_app(catalog, &app.name),
        app,
    })
}

fn accounts_using_app(catalog: &ConfigFile, app: &str) -> Vec<String> {
    catalog
        .accounts
        .iter()
        .filter(|a| a.app.as_deref() == Some(app))
        .map(|a| a.name.clone())
        .collect()
}

async fn app_by_id(store: &Store, id: &str) -> Result<(AppId, AppConfig), Problem> {
    let not_found = || {
        Problem::not_found(format!(
            "there is no app with id {id}; GET /api/v1/apps lists them"
        ))
    };
    let parsed: AppId = id.parse().map_err(|_| not_found())?;
    store
        .apps_with_ids()
        .await
        .map_err(|e| store_failed(&e))?
        .into_iter()
        .find(|(i, _)| *i == parsed)
        .ok_or_else(not_found)
}

fn trimmed(v: Option<String>) -> Option<String> {
    v.map(|v| v.trim().trim_end_matches('/').to_owned())
        .filter(|v| !v.is_empty())
}

/// The request as an app, checked; its secret.
fn app_from(req: AppRequest) -> Result<(AppConfig, Option<Secret>), Problem> {
    let app = AppConfig {
        name: req.name,
        tenant: req.tenant.trim().to_owned(),
        client_id: req.client_id.trim().to_owned(),
        cloud: req.cloud.unwrap_or_default(),
        authority_host: trimmed(req.authority_host),
        graph_root: trimmed(req.graph_root),
        extra_ca_file: req.extra_ca_file.filter(|p| !p.as_os_str().is_empty()),
        credential: req.credential,
    };
    first_problem(validate_app(&app), "")?;
    if req.secret.is_some() && !matches!(app.credential, AppCredentialConfig::Secret { .. }) {
        return Err(invalid(
            "secret",
            "only an app whose credential is {\"type\": \"secret\"} takes a client secret",
        ));
    }
    Ok((app, req.secret))
}

async fn put_app_secret(
    store: &Store,
    app: &AppConfig,
    secret: &SecretString,
) -> Result<(), Problem> {
    let expires = match &app.credential {
        AppCredentialConfig::Secret { expires } => *expires,
        _ => None,
    };
    store
        .put_secret(
            &app.secret_id(),
            SecretKind::ClientSecret,
            secret,
            expires,
            store.now(),
        )
        .await
        .map_err(|e| store_failed(&e))
}

fn secret_missing(app: &str) -> Problem {
    invalid(
        "secret",
        format!(
            "app {app} signs in with a client secret: give its Value (Azure portal -> App registrations -> Certificates & secrets)"
        ),
    )
}

/// Every app kept in the store, by name.
#[utoipa::path(get, path = "/api/v1/apps", security(("api_token" = [])),
    responses((status = 200, body = Vec<AppView>), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument)))]
pub async fn list_apps(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<AppView>>, Problem> {
    caller.require(Action::ReadSystem)?;
    Ok(Json(apps(&caller, work(&state)?).await?))
}

/// Every app kept in the store, by name (`GET /api/v1/apps`; the web UI's apps page).
pub async fn apps(caller: &Caller, daemon: &DaemonHandle) -> Result<Vec<AppView>, Problem> {
    caller.require(Action::ReadSystem)?;
    let catalog = catalog(daemon).await?;
    let mut out = Vec::new();
    for (id, app) in daemon
        .store()
        .apps_with_ids()
        .await
        .map_err(|e| store_failed(&e))?
    {
        out.push(app_view(daemon.store(), &catalog, id, app).await?);
    }
    Ok(out)
}

/// Adds an app; a client secret is sealed in the store and never shown again.
#[utoipa::path(post, path = "/api/v1/apps", security(("api_token" = [])),
    request_body = AppRequest,
    responses((status = 201, body = AppView), (status = 409, body = ProblemDocument), (status = 422, body = ProblemDocument)))]
pub async fn create_app(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, Problem> {
    caller.require(Action::Administer)?;
    let req: AppRequest = body.json()?;
    let daemon = work(&state)?;
    let store = daemon.store();
    let (app, secret) = app_from(req)?;
    let catalog = catalog(daemon).await?;
    if catalog.app(&app.name).is_some() {
        return Err(conflict(
            "exists",
            "Exists already",
            format!(
                "an app named {:?} exists already; PUT /api/v1/apps/{{id}} changes it",
                app.name
            ),
        )
        .with_field("name"));
    }
    if matches!(app.credential, AppCredentialConfig::Secret { .. }) && secret.is_none() {
        return Err(secret_missing(&app.name));
    }
    store.put_app(&app).await.map_err(|e| store_failed(&e))?;
    if let Some(Secret(s)) = &secret {
        put_app_secret(store, &app, s).await?;
    }
    let id = store
        .app_id(&app.name)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| Problem::internal(None))?;
    tracing::info!(app = %app.name, "app added through the API");
    record(
        store,
        &caller,
        Change::new("create", "app")
            .id(&id.to_string())
            .name(&app.name),
    )
    .await;
    let view = app_view(store, &catalog, id, app).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// One app.
#[utoipa::path(get, path = "/api/v1/apps/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the app's id")),
    responses((status = 200, body = AppView), (status = 404, body = ProblemDocument)))]
pub async fn get_app(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AppView>, Problem> {
    caller.require(Action::ReadSystem)?;
    let daemon = work(&state)?;
    let (id, app) = app_by_id(daemon.store(), &id).await?;
    let catalog = catalog(daemon).await?;
    Ok(Json(app_view(daemon.store(), &catalog, id, app).await?))
}

/// Replaces an app's settings (its name stays); a new secret replaces the stored one,
/// none keeps it; a credential that is no longer a secret removes it.
#[utoipa::path(put, path = "/api/v1/apps/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the app's id")),
    request_body = AppRequest,
    responses((status = 200, body = AppView), (status = 404, body = ProblemDocument), (status = 422, body = ProblemDocument)))]
pub async fn put_app(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Json<AppView>, Problem> {
    caller.require(Action::Administer)?;
    let req: AppRequest = body.json()?;
    Ok(Json(save_app(&caller, work(&state)?, &id, req).await?))
}

/// Replaces app `id`'s settings, and its secret when one is given
/// (`PUT /api/v1/apps/{id}`; the web UI's "add a secret" form).
pub async fn save_app(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: &str,
    req: AppRequest,
) -> Result<AppView, Problem> {
    caller.require(Action::Administer)?;
    let store = daemon.store();
    let new_secret = req.secret.is_some();
    let (id, before) = app_by_id(store, id).await?;
    if req.name != before.name {
        return Err(invalid(
            "name",
            format!(
                "an app keeps its name ({}); accounts name it: add a new app and move the accounts to it instead",
                before.name
            ),
        ));
    }
    let (app, secret) = app_from(req)?;
    let was_secret = matches!(before.credential, AppCredentialConfig::Secret { .. });
    let is_secret = matches!(app.credential, AppCredentialConfig::Secret { .. });
    let stored = store
        .get_secret(&app.secret_id())
        .await
        .map_err(|e| store_failed(&e))?;
    let secret = match (secret, is_secret) {
        (Some(Secret(s)), _) => Some(s),
        // A new expiry goes to the stored secret.
        (None, true) => Some(stored.ok_or_else(|| secret_missing(&app.name))?),
        (None, false) => None,
    };
    store.put_app(&app).await.map_err(|e| store_failed(&e))?;
    if let Some(s) = &secret {
        put_app_secret(store, &app, s).await?;
    } else if was_secret {
        store
            .delete_secret(&app.secret_id())
            .await
            .map_err(|e| store_failed(&e))?;
    }
    daemon.reload();
    let new_certificate = matches!(app.credential, AppCredentialConfig::Certificate { .. })
        && app.credential != before.credential;
    let action = if new_secret {
        "set-secret"
    } else if new_certificate {
        "set-certificate"
    } else {
        "update"
    };
    record(
        store,
        caller,
        Change::new(action, "app")
            .id(&id.to_string())
            .name(&app.name),
    )
    .await;
    let catalog = catalog(daemon).await?;
    app_view(store, &catalog, id, app).await
}

/// Removes an app and its stored client secret; refused (409) while accounts use it.
#[utoipa::path(delete, path = "/api/v1/apps/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the app's id")),
    responses((status = 204), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn delete_app(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::Administer)?;
    let daemon = work(&state)?;
    let (_, app) = app_by_id(daemon.store(), &id).await?;
    let using = accounts_using_app(&catalog(daemon).await?, &app.name);
    if !using.is_empty() {
        return Err(conflict(
            "in-use",
            "In use",
            format!(
                "app {} is used by the accounts {}: give them another app or remove them first",
                app.name,
                using.join(", ")
            ),
        ));
    }
    daemon
        .store()
        .remove_app(&app.name)
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(app = %app.name, "app removed through the API");
    record(
        daemon.store(),
        &caller,
        Change::new("delete", "app").id(&id).name(&app.name),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- accounts ----

/// An account to create (`address` and a `provider` or the sides needed) or the
/// settings to change (only those given change). The fields are those of
/// `[[account]]` in the configuration file.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    /// Local name (default: the address). Renaming keeps the account's id.
    pub name: Option<String>,
    /// The mailbox address (required to create).
    pub address: Option<String>,
    pub display_name: Option<String>,
    /// A provider id (GET /api/v1/providers) to take the servers from (create only).
    pub provider: Option<String>,
    /// password, delegated or app-only.
    #[schema(value_type = Option<String>)]
    pub sign_in: Option<SignInMethod>,
    /// The app (by name) for delegated and app-only sign-in.
    pub app: Option<String>,
    /// The login name, when it is not the address (sets the format to manual).
    pub login: Option<String>,
    /// manual, email or mailbox-name.
    #[schema(value_type = Option<String>)]
    pub login_format: Option<LoginFormat>,
    /// Graph app-only: the mailbox's Object ID.
    pub mailbox_id: Option<String>,
    /// notifications, helpdesk, connector, documents.
    #[schema(value_type = Option<Vec<String>>)]
    pub usages: Option<Vec<Usage>>,
    /// Where mail is read: `{transport, host, port, tls, tls_name, extra_ca_file,
    /// tls_pin}`; giving it turns download on.
    #[schema(value_type = Option<Object>)]
    pub incoming: Option<EndpointConfig>,
    /// Where mail is sent (same fields); giving it turns sending on.
    #[schema(value_type = Option<Object>)]
    pub outgoing: Option<EndpointConfig>,
    pub download: Option<bool>,
    pub send: Option<bool>,
    /// `{max_message_size, max_list_items, max_pages, command_timeout_secs}`.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Limits>,
    /// Password sign-in: the password, write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<Secret>,
}

/// An account's settings as the API shows them after a change (never its secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSettingsView {
    pub id: String,
    /// The settings, as in the configuration file.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub account: AccountConfig,
    /// Whether a password is stored (it is never shown).
    pub password_stored: bool,
    /// The user it belongs to; none: administrators' and auditors' alone.
    pub owner: Option<String>,
}

async fn account_settings_view(
    store: &Store,
    id: AccountId,
    account: AccountConfig,
) -> Result<AccountSettingsView, Problem> {
    let password_stored = store
        .get_secret(&account.password_id())
        .await
        .map_err(|e| store_failed(&e))?
        .is_some();
    let owner = store
        .account_owner(id)
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(AccountSettingsView {
        id: id.to_string(),
        account,
        password_stored,
        owner,
    })
}

/// Applies the settings given (as `mailbridge account edit` does with its options).
fn apply_account(account: &mut AccountConfig, req: &AccountRequest) {
    if let Some(v) = &req.name {
        v.trim().clone_into(&mut account.name);
    }
    if let Some(v) = &req.address {
        v.trim().clone_into(&mut account.address);
    }
    if let Some(v) = &req.display_name {
        account.display_name = Some(v.clone());
    }
    if let Some(v) = req.sign_in {
        account.sign_in = v;
    }
    if let Some(v) = &req.app {
        account.app = Some(v.clone());
    }
    if let Some(v) = &req.login {
        account.login = Some(v.clone());
        account.login_format = Some(LoginFormat::Manual);
    }
    if let Some(v) = req.login_format {
        account.login_format = Some(v);
    }
    if let Some(v) = &req.mailbox_id {
        account.mailbox_id = Some(v.clone());
    }
    if let Some(v) = &req.usages {
        account.usages.clone_from(v);
    }
    if let Some(v) = &req.incoming {
        account.incoming = Some(v.clone());
        account.download = true;
    }
    if let Some(v) = &req.outgoing {
        account.outgoing = Some(v.clone());
        account.send = true;
    }
    if let Some(v) = req.limits {
        account.limits = v;
    }
    if let Some(v) = req.download {
        account.download = v;
    }
    if let Some(v) = req.send {
        account.send = v;
    }
    account.transports = transports_of(account);
}

fn check_account(
    account: &AccountConfig,
    apps: &[AppConfig],
    req: &AccountRequest,
) -> Result<(), Problem> {
    first_problem(validate(account, apps), "")?;
    if req.password.is_some() && account.sign_in != SignInMethod::Password {
        return Err(invalid(
            "password",
            "only an account whose sign_in is \"password\" takes a password",
        ));
    }
    Ok(())
}

async fn put_password(
    store: &Store,
    account: &AccountConfig,
    req: &AccountRequest,
) -> Result<(), Problem> {
    if let Some(Secret(p)) = &req.password {
        store
            .put_secret(
                &account.password_id(),
                SecretKind::Password,
                p,
                None,
                store.now(),
            )
            .await
            .map_err(|e| store_failed(&e))?;
    }
    Ok(())
}

/// Adds an account from a provider or from the sides given (autodetection is
/// `mailbridge account add`'s); a password is sealed in the store, never shown.
#[utoipa::path(post, path = "/api/v1/accounts", security(("api_token" = [])),
    request_body = AccountRequest,
    responses((status = 201, body = AccountSettingsView), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 422, body = ProblemDocument)))]
pub async fn create_account(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let owner = new_account_owner(&caller)?;
    let req: AccountRequest = body.json()?;
    let daemon = work(&state)?;
    let view = add_account(daemon, &caller, owner, &req).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The account `req` makes (from a provider or the sides given), checked as it would
/// be saved, without saving it: 422 naming the field at fault, 409 when the name is
/// taken. The web UI's wizard tests an account with it before saving.
pub async fn new_account(
    daemon: &DaemonHandle,
    req: &AccountRequest,
) -> Result<AccountConfig, Problem> {
    let store = daemon.store();
    let Some(address) = req.address.as_deref().map(str::trim) else {
        return Err(invalid("address", "give the account's mail address"));
    };
    let table = provider_table(store).await.map_err(|e| store_failed(&e))?;
    let mut account = if let Some(id) = &req.provider {
        let Some(p) = table.get(id) else {
            let ids: Vec<&str> = table.providers().map(|p| p.id.as_str()).collect();
            return Err(invalid(
                "provider",
                format!("no provider {id:?}; the providers are {}", ids.join(", ")),
            ));
        };
        from_provider(address, p)
    } else if req.incoming.is_some() || req.outgoing.is_some() {
        // The provider that fits the sides given: its sign-in methods and login
        // format; the sides are these.
        let id = provider_for_sides(req.incoming.as_ref());
        let p = table.get(id).ok_or_else(|| Problem::internal(None))?;
        let mut a = from_provider(address, p);
        a.incoming = None;
        a.outgoing = None;
        a.download = false;
        a.send = false;
        a
    } else {
        return Err(invalid(
            "provider",
            "give a provider (GET /api/v1/providers) or the servers (incoming, outgoing); `mailbridge account add` also detects them",
        ));
    };
    apply_account(&mut account, req);
    // Graph and EWS send through the incoming side unless another is given.
    if req.send.is_none()
        && account.outgoing.is_none()
        && account
            .incoming
            .as_ref()
            .is_some_and(|e| matches!(e.transport, Transport::Graph | Transport::Ews))
    {
        account.send = true;
    }
    let catalog = catalog(daemon).await?;
    if catalog
        .account(&account.name)
        .is_some_and(|a| a.name == account.name)
    {
        return Err(conflict(
            "exists",
            "Exists already",
            format!(
                "an account named {:?} exists already; PUT /api/v1/accounts/{{id}} changes it",
                account.name
            ),
        )
        .with_field("name"));
    }
    check_account(&account, &catalog.apps, req)?;
    Ok(account)
}

/// Adds the account `req` makes ([`new_account`]) for `owner`; its password is sealed
/// in the store. What `POST /api/v1/accounts` does after checking the caller.
pub async fn add_account(
    daemon: &DaemonHandle,
    caller: &Caller,
    owner: Option<String>,
    req: &AccountRequest,
) -> Result<AccountSettingsView, Problem> {
    let store = daemon.store();
    let account = new_account(daemon, req).await?;
    store
        .put_account(&account)
        .await
        .map_err(|e| store_failed(&e))?;
    put_password(store, &account, req).await?;
    let id = store
        .account_id(&account.name)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| Problem::internal(None))?;
    if let Some(owner) = &owner {
        store
            .set_account_owner(id, Some(owner))
            .await
            .map_err(|e| store_failed(&e))?;
    }
    tracing::info!(account = %account.name, account_id = %id, owner = owner.as_deref(), "account added through the API");
    daemon.reload();
    record(
        store,
        caller,
        Change::new("create", "account")
            .id(&id.to_string())
            .name(&account.name),
    )
    .await;
    account_settings_view(store, id, account).await
}

/// The stored account `id`, or 404 / 409 for one of the configuration file.
pub async fn stored_account(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: &str,
) -> Result<(AccountId, AccountConfig), Problem> {
    let (id, account, _) = account_for(caller, daemon, id, true).await?;
    match daemon
        .store()
        .account_by_id(id)
        .await
        .map_err(|e| store_failed(&e))?
    {
        Some(stored) => Ok((id, stored)),
        None => Err(conflict(
            "in-config-file",
            "Defined in the configuration file",
            format!(
                "account {} is defined in the configuration file {}: change it there",
                account.name,
                daemon.config_file().display()
            ),
        )),
    }
}

/// Changes an account's settings (only those given); a new name keeps its id, sign-in
/// state, checkpoints and secrets. Its watcher follows at once.
#[utoipa::path(put, path = "/api/v1/accounts/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    request_body = AccountRequest,
    responses((status = 200, body = AccountSettingsView), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 422, body = ProblemDocument)))]
pub async fn put_account(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Json<AccountSettingsView>, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, before) = stored_account(&caller, daemon, &id).await?;
    let req: AccountRequest = body.json()?;
    change_account(daemon, &caller, id, &before, &req)
        .await
        .map(Json)
}

/// Changes the stored account `id` (as it was: `before`, from [`stored_account`]) as
/// `req` says: what `PUT /api/v1/accounts/{id}` does after checking the caller.
pub async fn change_account(
    daemon: &DaemonHandle,
    caller: &Caller,
    id: AccountId,
    before: &AccountConfig,
    req: &AccountRequest,
) -> Result<AccountSettingsView, Problem> {
    let store = daemon.store();
    if req.provider.is_some() {
        return Err(invalid(
            "provider",
            "the provider is chosen when the account is made; give incoming or outgoing to change its servers",
        ));
    }
    let mut account = before.clone();
    apply_account(&mut account, req);
    let catalog = catalog(daemon).await?;
    check_account(&account, &catalog.apps, req)?;
    if account.name != before.name {
        store
            .rename_account(id, &account.name)
            .await
            .map_err(|e| match e {
                mailbridge_store::StoreError::Exists { .. } => conflict(
                    "exists",
                    "Exists already",
                    format!("an account named {:?} exists already", account.name),
                )
                .with_field("name"),
                e => store_failed(&e),
            })?;
    }
    store
        .put_account(&account)
        .await
        .map_err(|e| store_failed(&e))?;
    put_password(store, &account, req).await?;
    tracing::info!(account = %account.name, account_id = %id, "account changed through the API");
    daemon.reload();
    record(
        store,
        caller,
        Change::new("update", "account")
            .id(&id.to_string())
            .name(&account.name),
    )
    .await;
    account_settings_view(store, id, account).await
}

/// Whether to remove an account that still has work.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountQuery {
    /// Remove it even while messages wait in its outbox or its parked deliveries:
    /// they go with it, never sent or delivered.
    pub force: Option<bool>,
}

/// Removes an account with its password, refresh token, sign-in state, checkpoints,
/// watch, outbox and parked deliveries; its watcher stops. While messages wait to be
/// sent or delivered it is refused (409 `pending-work`) unless `force=true`.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id"), DeleteAccountQuery),
    responses((status = 204), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn delete_account(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteAccountQuery>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, account) = stored_account(&caller, daemon, &id).await?;
    if q.force != Some(true) {
        use mailbridge_store::OutboxState;
        let store = daemon.store();
        let waiting = store
            .outbox_list(Some(id))
            .await
            .map_err(|e| store_failed(&e))?
            .iter()
            .filter(|m| {
                matches!(
                    m.state,
                    OutboxState::Queued | OutboxState::Sending | OutboxState::Retrying
                )
            })
            .count();
        let parked = store
            .parked_list(Some(id), None, 1)
            .await
            .map_err(|e| store_failed(&e))?
            .len();
        if waiting > 0 || parked > 0 {
            return Err(conflict(
                "pending-work",
                "Messages are waiting",
                format!(
                    "account {} has {waiting} message(s) waiting in its outbox{}: removing it would drop them; wait for them (GET /api/v1/outbox?account={id}, GET /api/v1/parked?account={id}) or remove it with ?force=true",
                    account.name,
                    if parked > 0 {
                        " and parked deliveries"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    daemon
        .store()
        .remove_account(&account.name)
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(account = %account.name, account_id = %id, "account removed through the API");
    daemon.reload();
    record(
        daemon.store(),
        &caller,
        Change::new("delete", "account")
            .id(&id.to_string())
            .name(&account.name),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Who an account belongs to.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountOwner {
    /// The user's name (as API tokens name it: `mailbridge token add --user`); null:
    /// nobody's, administrators' and auditors' alone.
    pub owner: Option<String>,
}

/// Gives an account to a user (their `user` tokens then read and change it) or, with
/// `null`, to nobody. Administrators only.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/owner", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    request_body = AccountOwner,
    responses((status = 200, body = AccountOwner), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 422, body = ProblemDocument)))]
pub async fn put_account_owner(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Json<AccountOwner>, Problem> {
    caller.require(Action::Administer)?;
    let req: AccountOwner = body.json()?;
    let owner = match req.owner.as_deref().map(str::trim) {
        Some("") => {
            return Err(invalid(
                "owner",
                "give the user's name, or null to give the account to nobody",
            ));
        }
        Some(o) if o.len() > 200 || o.chars().any(char::is_control) => {
            return Err(invalid(
                "owner",
                "a user's name has at most 200 characters and no control characters",
            ));
        }
        other => other.map(str::to_owned),
    };
    let daemon = work(&state)?;
    let (id, account, _) = account_by_id(daemon, &id).await?;
    if !daemon
        .store()
        .set_account_owner(id, owner.as_deref())
        .await
        .map_err(|e| store_failed(&e))?
    {
        return Err(no_account(&id.to_string()));
    }
    tracing::info!(account = %account.name, account_id = %id, owner = owner.as_deref(), "account given through the API");
    record(
        daemon.store(),
        &caller,
        Change::new("set-owner", "account")
            .id(&id.to_string())
            .name(&account.name),
    )
    .await;
    Ok(Json(AccountOwner { owner }))
}

// ---- providers and domains ----

/// Every provider: the built-in ones and those defined here, by id.
#[utoipa::path(get, path = "/api/v1/providers", security(("api_token" = [])),
    responses((status = 200, body = Vec<Object>), (status = 403, body = ProblemDocument)))]
pub async fn list_providers(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<Provider>>, Problem> {
    caller.require(Action::ReadSystem)?;
    Ok(Json(providers(&caller, work(&state)?).await?))
}

/// Every provider, by id (`GET /api/v1/providers`; the web UI's providers page).
pub async fn providers(caller: &Caller, daemon: &DaemonHandle) -> Result<Vec<Provider>, Problem> {
    caller.require(Action::ReadSystem)?;
    let table = provider_table(daemon.store())
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(table.providers().cloned().collect())
}

/// A provider to define (or one of yours to replace).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRequest {
    /// Stable id, used by accounts: 1 to 64 of letters, digits, '-', '_', '.'.
    pub id: String,
    /// Name shown to people.
    pub name: String,
    /// Where mail is read: `{transport, host, port, tls}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub incoming: Option<Endpoint>,
    /// Where mail is sent: `{transport, host, port, tls}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub outgoing: Option<Endpoint>,
    /// Sign-in methods it offers, best first (default: password).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub sign_in: Option<Vec<SignInMethod>>,
    /// manual, email (default) or mailbox-name.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub login: Option<LoginFormat>,
    /// Domains it serves (the domain table).
    #[serde(default)]
    pub domains: Vec<String>,
    /// `{app, extra_ca_file, incoming_tls_pin, outgoing_tls_pin}` its accounts take.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub defaults: ProviderDefaults,
}

/// Defines a provider (201), or replaces one defined before (200). Its servers and
/// defaults pass the account checks first.
#[utoipa::path(post, path = "/api/v1/providers", security(("api_token" = [])),
    request_body = ProviderRequest,
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 409, body = ProblemDocument), (status = 422, body = ProblemDocument)))]
pub async fn create_provider(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, Problem> {
    caller.require(Action::Administer)?;
    let req: ProviderRequest = body.json()?;
    let (provider, created) = save_provider(&caller, work(&state)?, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(provider)).into_response())
}

/// Defines a provider, or replaces one defined before (`true`: it is new), after the
/// checks `POST /api/v1/providers` makes (the web UI's providers page).
pub async fn save_provider(
    caller: &Caller,
    daemon: &DaemonHandle,
    req: ProviderRequest,
) -> Result<(Provider, bool), Problem> {
    caller.require(Action::Administer)?;
    let store = daemon.store();
    if req.id.is_empty()
        || req.id.len() > 64
        || !req
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "id",
            "1 to 64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    if req.name.trim().is_empty() || req.name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "a name people read, without control characters",
        ));
    }
    if mailbridge_accounts::provider::builtin()
        .iter()
        .any(|p| p.id == req.id)
    {
        return Err(conflict(
            "builtin",
            "Built in",
            format!("{} is a built-in provider: choose another id", req.id),
        )
        .with_field("id"));
    }
    if req.incoming.is_none() && req.outgoing.is_none() {
        return Err(invalid(
            "incoming",
            "a provider needs incoming, outgoing or both",
        ));
    }
    if let Some((i, _)) =
        req.domains.iter().enumerate().find(|(_, d)| {
            mailbridge_accounts::account::host_problem(d).is_some() || !d.contains('.')
        })
    {
        return Err(invalid(
            format!("domains[{i}]"),
            "a domain name such as example.org",
        ));
    }
    let provider = Provider {
        id: req.id.clone(),
        name: req.name.trim().to_owned(),
        incoming: req.incoming,
        outgoing: req.outgoing,
        sign_in: req.sign_in.unwrap_or_else(|| vec![SignInMethod::Password]),
        login: req.login.unwrap_or(LoginFormat::Email),
        domains: req.domains,
        builtin: false,
        defaults: req.defaults,
        notice: None,
    };
    if provider.sign_in.is_empty() {
        return Err(invalid("sign_in", "give at least one sign-in method"));
    }
    // What its accounts would get must pass the account checks: the sides (hosts,
    // ports, CA file, pins) and the app.
    let catalog = catalog(daemon).await?;
    let sample = from_provider("someone@example.org", &provider);
    first_problem(
        validate(&sample, &catalog.apps)
            .into_iter()
            .filter(|p| p.field.starts_with("incoming") || p.field.starts_with("outgoing"))
            .collect(),
        "",
    )?;
    if let Some(app) = &provider.defaults.app
        && catalog.app(app).is_none()
    {
        return Err(invalid(
            "defaults.app",
            format!("app {app:?} is not defined; POST /api/v1/apps defines it"),
        ));
    }
    let existed = store
        .provider_id(&provider.id)
        .await
        .map_err(|e| store_failed(&e))?
        .is_some();
    store
        .put_provider(&provider.id, &provider)
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(provider = %provider.id, "provider saved through the API");
    record(
        store,
        caller,
        Change::new(if existed { "update" } else { "create" }, "provider")
            .id(&provider.id)
            .name(&provider.name),
    )
    .await;
    Ok((provider, !existed))
}

/// Removes a provider defined here; refused for built-in ones and while accounts use
/// it (409).
#[utoipa::path(delete, path = "/api/v1/providers/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the provider's id")),
    responses((status = 204), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn delete_provider(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::Administer)?;
    remove_provider(&caller, work(&state)?, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes provider `id`: refused for built-in ones and while accounts use it, naming
/// them (`DELETE /api/v1/providers/{id}`; the web UI's providers page).
pub async fn remove_provider(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: &str,
) -> Result<(), Problem> {
    caller.require(Action::Administer)?;
    let mut table = provider_table(daemon.store())
        .await
        .map_err(|e| store_failed(&e))?;
    let using: Vec<String> = catalog(daemon)
        .await?
        .accounts
        .iter()
        .filter(|a| a.provider.as_deref() == Some(id))
        .map(|a| a.name.clone())
        .collect();
    table.remove(id, &using).map_err(|e| match e {
        ProviderError::Unknown(_) => Problem::not_found(format!(
            "there is no provider {id}; GET /api/v1/providers lists them"
        )),
        ProviderError::Builtin(_) => conflict("builtin", "Built in", e.to_string()),
        e => conflict("in-use", "In use", e.to_string()),
    })?;
    daemon
        .store()
        .remove_provider(id)
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(provider = %id, "provider removed");
    record(
        daemon.store(),
        caller,
        Change::new("delete", "provider").id(id),
    )
    .await;
    Ok(())
}

/// One row of the domain table.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    /// The domain (its subdomains follow it).
    pub domain: String,
    /// The id of the provider that serves it.
    pub provider: String,
}

/// The domain table: which provider serves which domain, by domain.
#[utoipa::path(get, path = "/api/v1/domains", security(("api_token" = [])),
    responses((status = 200, body = Vec<DomainView>), (status = 403, body = ProblemDocument)))]
pub async fn list_domains(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<DomainView>>, Problem> {
    caller.require(Action::ReadSystem)?;
    Ok(Json(domains(&caller, work(&state)?).await?))
}

/// The domain table, by domain (`GET /api/v1/domains`; the web UI's providers page).
pub async fn domains(caller: &Caller, daemon: &DaemonHandle) -> Result<Vec<DomainView>, Problem> {
    caller.require(Action::ReadSystem)?;
    let table = provider_table(daemon.store())
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(table
        .domains()
        .map(|(domain, provider)| DomainView {
            domain: domain.to_owned(),
            provider: provider.to_owned(),
        })
        .collect())
}

// ---- test receive / send ----

/// The recipient of a test message.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TestSendQuery {
    /// Recipient (the account itself when absent).
    pub to: Option<String>,
}

/// Signs in to the account's incoming side, opens the inbox and reads one message's
/// header, step by step: the report `mailbridge test receive --json` prints (`ok`
/// false names the failed step, its cause and fix).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/test/receive", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    responses((status = 200, description = "the steps (ok or not)", body = Object), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn test_receive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Report>, Problem> {
    // Signing in and connecting is work done for the account, as sending is: not
    // an auditor's.
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (_, account, app) = account_for(&caller, daemon, &id, true).await?;
    run_check(daemon, &account, app.as_ref(), None, None)
        .await
        .map(Json)
}

/// Signs in to the account's outgoing side and sends a test message, step by step:
/// the report `mailbridge test send --json` prints.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/test/send", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id"), TestSendQuery),
    responses((status = 200, description = "the steps (ok or not)", body = Object), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn test_send(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TestSendQuery>,
) -> Result<Json<Report>, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (_, account, app) = account_for(&caller, daemon, &id, true).await?;
    let to = match q.to {
        Some(to) => {
            let to = to.trim().to_owned();
            if to.is_empty()
                || to.len() > mailbridge_accounts::account::MAX_ADDRESS
                || !to.contains('@')
                || to.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(invalid("to", "a mail address such as someone@example.org"));
            }
            Some(to)
        }
        None => Some(account.address.clone()),
    };
    run_check(daemon, &account, app.as_ref(), to, None)
        .await
        .map(Json)
}

/// 409: the account cannot be checked as it is set up.
fn cannot_check(detail: impl Into<String>) -> Problem {
    conflict("cannot-check", "Cannot run the check", detail)
}

/// Runs the receive check (`to` none) or the send check, signing in with a token from
/// a sign-in service made for this request (its sessions last as long as it). A
/// password sign-in uses `password` when given (an account not saved yet), else the
/// stored one.
pub async fn run_check(
    daemon: &DaemonHandle,
    account: &AccountConfig,
    app: Option<&AppConfig>,
    to: Option<String>,
    password: Option<SecretString>,
) -> Result<Report, Problem> {
    let receive = to.is_none();
    let side = if receive {
        account.incoming_side().cloned()
    } else {
        account.outgoing_side().cloned()
    };
    let Some(endpoint) = side else {
        return Err(cannot_check(format!(
            "account {} has no {} side in force: give it {} and turn {} on",
            account.name,
            if receive { "incoming" } else { "outgoing" },
            if receive { "incoming" } else { "outgoing" },
            if receive { "download" } else { "send" }
        )));
    };
    let store = daemon.store();
    let who = Identity::of(account);
    let to = to.unwrap_or_default();
    let report = match account.sign_in {
        SignInMethod::Password => {
            let stored = match password {
                Some(p) => Some(p),
                None => store
                    .get_secret(&account.password_id())
                    .await
                    .map_err(|e| store_failed(&e))?,
            };
            let Some(password) = stored else {
                return Err(cannot_check(format!(
                    "account {} has no password stored: PUT /api/v1/accounts/{{id}} with a password",
                    account.name
                )));
            };
            let sign_in =
                CheckSignIn::<fn() -> std::future::Ready<Result<SecretString, String>>>::Password {
                    user: who.login.clone(),
                    password,
                };
            check(receive, &endpoint, &who, &to, sign_in).await?
        }
        SignInMethod::Delegated | SignInMethod::AppOnly => {
            let Some(app) = app else {
                return Err(cannot_check(format!(
                    "account {} signs in with app {:?}, which is not defined: POST /api/v1/apps defines it",
                    account.name,
                    account.app.as_deref().unwrap_or_default()
                )));
            };
            let setup = async {
                let spec = mailbridge_accounts::signin::account_sign_in(
                    account,
                    app,
                    store,
                    endpoint.transport,
                )
                .await?;
                let grant = mailbridge_accounts::signin::grant(account)?;
                let sessions =
                    mailbridge_accounts::signin::SignIn::new(store.clone()).sessions(app)?;
                Ok::<_, mailbridge_accounts::error::Error>((spec, grant, sessions))
            };
            let (spec, grant, sessions) = setup
                .await
                .map_err(|e| cannot_check(mailbridge_types::error_chain(&e)))?;
            let get = || async move {
                sessions
                    .access_token(&spec)
                    .await
                    .map_err(TokenFailure::from)
            };
            check(
                receive,
                &endpoint,
                &who,
                &to,
                CheckSignIn::Token { grant, get },
            )
            .await?
        }
    };
    tracing::info!(account = %account.name, check = if receive { "receive" } else { "send" }, ok = report.ok, "account check run through the API");
    Ok(report)
}

async fn check<F, Fut, E>(
    receive: bool,
    endpoint: &EndpointConfig,
    who: &Identity,
    to: &str,
    sign_in: CheckSignIn<F>,
) -> Result<Report, Problem>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    Ok(match (receive, endpoint.transport) {
        (true, Transport::Imap) => receive_imap(endpoint, who, sign_in).await,
        (true, Transport::Pop3) => receive_pop3(endpoint, who, sign_in).await,
        (true, Transport::Graph) => receive_graph(endpoint, who, sign_in).await,
        (true, Transport::Ews) => receive_ews(endpoint, who, sign_in).await,
        (false, Transport::Smtp) => send_smtp(endpoint, who, to, sign_in).await,
        (false, Transport::Graph) => send_graph(endpoint, who, to, sign_in).await,
        (false, Transport::Ews) => send_ews(endpoint, who, to, sign_in).await,
        (true, Transport::Smtp) => {
            return Err(cannot_check(
                "the account's incoming side is SMTP, which only sends: set incoming to imap, pop3, graph or ews",
            ));
        }
        (false, t @ (Transport::Imap | Transport::Pop3)) => {
            return Err(cannot_check(format!(
                "the account's outgoing side is {t:?}, which only receives: set outgoing to smtp (or use graph or ews)"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_and_requests_name_unknown_fields() {
        let req: AppRequest = crate::json::parse(
            br#"{"name": "a", "tenant": "t", "client_id": "c", "credential": {"type": "secret"}, "secret": "hunter2-hunter2"}"#,
        )
        .unwrap();
        assert!(!format!("{req:?}").contains("hunter2"));
        let p = crate::json::parse::<AccountRequest>(br#"{"address": "a@b.c", "passwd": "x"}"#)
            .unwrap_err();
        assert_eq!(
            (p.code, p.field.as_deref()),
            ("unknown-field", Some("passwd"))
        );
        let p = crate::json::parse::<AppRequest>(
            br#"{"name": "a", "tenant": "t", "client_id": "c", "secret": ""}"#,
        )
        .unwrap_err();
        assert_eq!(p.field.as_deref(), Some("secret"));
    }

    #[test]
    fn applying_sides_turns_their_direction_on() {
        let mut a = from_provider(
            "a@example.org",
            mailbridge_accounts::provider::ProviderTable::default()
                .get("generic-imap")
                .unwrap(),
        );
        a.download = false;
        a.send = false;
        let req = AccountRequest {
            incoming: Some(EndpointConfig {
                transport: Transport::Imap,
                host: "imap.example.org".into(),
                port: Some(993),
                tls: Some(mailbridge_types::config::TlsMode::Implicit),
                tls_name: None,
                extra_ca_file: None,
                tls_pin: None,
            }),
            name: Some("renamed".into()),
            ..AccountRequest::default()
        };
        apply_account(&mut a, &req);
        assert!(a.download && !a.send);
        assert_eq!(a.name, "renamed");
        assert_eq!(a.transports, vec![Transport::Imap]);
    }
}
