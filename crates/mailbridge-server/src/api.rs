//! The daemon's resources under `/api/v1`: accounts (read), each account's watch
//! (its watcher's settings and routes), sinks, the outbox, and the watchers' states.
//!
//! Every handler asks the caller's role first ([`Caller::require`]); the store and the
//! daemon's work come from [`AppState::daemon`] (without it, as in the bare HTTP
//! tests, these resources answer 503 `not-running`). A change that affects what the
//! watchers do ([`Daemon::reload`](crate::daemon::Daemon::reload)) takes effect at
//! once. Secrets (a webhook's signing secret, a relay's password) are taken, sealed
//! and never given back: an answer says only whether one is set.
//!
//! Who reaches which account is [`crate::account_access`]'s: administrators every
//! account, auditors read every account, a `user` token its user's own accounts;
//! sinks are the system's (auditors read them, administrators change them).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mailbridge_connector::spec::{SecretNeed, SinkSpec, Watch};
use mailbridge_connector::watcher::WatcherEvent;
use mailbridge_mailbox::compose::{Address, BccHeader, Message};
use mailbridge_store::{
    AccountId, NewOutboxMessage, OutboxEntry, OutboxId, SecretKind, SinkId, Store,
};
use mailbridge_types::access::Action;
use mailbridge_types::config::AccountConfig;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::AppState;
use crate::account_access::{account_for, reach, require_account};
use crate::api_config::{Secret, invalid, store_failed, work};
use crate::api_token::Caller;
use crate::audit::{Change, record};
use crate::daemon::DaemonHandle;
use crate::json::ApiBody;
use crate::problem::Problem;

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

// ---- accounts ----

/// An account as the API shows it (never its secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub address: String,
    /// `password`, `app-only` or `delegated`.
    pub sign_in: String,
    /// The incoming side's transport (imap, pop3, graph, ews), if any.
    pub incoming: Option<String>,
    /// The outgoing side's transport (smtp, graph, ews), if any.
    pub outgoing: Option<String>,
    pub download: bool,
    pub send: bool,
    /// The user it belongs to (a `user` token acting for them reaches it); none:
    /// administrators' and auditors' alone.
    pub owner: Option<String>,
    /// The watcher's last state here (none: no watcher ran in this instance).
    #[schema(value_type = Option<Object>)]
    pub watcher: Option<WatcherEvent>,
}

fn account_view(
    daemon: &DaemonHandle,
    id: AccountId,
    a: &AccountConfig,
    owner: Option<String>,
) -> AccountView {
    AccountView {
        owner,
        id: id.to_string(),
        name: a.name.clone(),
        address: a.address.clone(),
        sign_in: serde_name(&a.sign_in),
        incoming: a.incoming.as_ref().map(|e| serde_name(&e.transport)),
        outgoing: a.outgoing_side().map(|e| serde_name(&e.transport)),
        download: a.download,
        send: a.send,
        watcher: daemon.state_of(&a.name),
    }
}

/// A value (an enum of the configuration) shown as its serde name.
fn serde_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Every account, by name.
#[utoipa::path(get, path = "/api/v1/accounts", security(("api_token" = [])),
    responses((status = 200, body = Vec<AccountView>), (status = 401, body = crate::problem::ProblemDocument), (status = 403, body = crate::problem::ProblemDocument)))]
pub async fn list_accounts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<AccountView>>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let accounts = mailbridge_accounts::catalog::by_id(daemon.store(), daemon.config_file())
        .await
        .map_err(|e| store_failed(&e))?;
    let reach = reach(&caller, daemon.store()).await?;
    let owners = daemon
        .store()
        .account_owners()
        .await
        .map_err(|e| store_failed(&e))?;
    let mut views: Vec<AccountView> = accounts
        .iter()
        .filter(|(id, _)| reach.as_ref().is_none_or(|own| own.contains(id)))
        .map(|(id, (a, _))| account_view(daemon, *id, a, owners.get(id).cloned()))
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(views))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    responses((status = 200, body = AccountView), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn get_account(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, account, _) = account_for(&caller, daemon, &id, false).await?;
    let owner = daemon
        .store()
        .account_owner(id)
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(Json(account_view(daemon, id, &account, owner)))
}

// ---- watch ----

/// The account's watch: whether its watcher runs, the folder, the poll interval
/// and the routes.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/watch", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    responses((status = 200, body = Object), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn get_watch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Watch>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, account, _) = account_for(&caller, daemon, &id, false).await?;
    daemon
        .store()
        .watch::<Watch>(id)
        .await
        .map_err(|e| store_failed(&e))?
        .map(Json)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "account {} has no watch; PUT one to start its watcher",
                account.name
            ))
        })
}

/// Sets the account's watch; its watcher starts, restarts or stops at once.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/watch", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    request_body(content = Object, description = "{enabled, folder, poll_interval_secs, routes: [{name, when, sinks, then}]}"),
    responses((status = 200, body = Object), (status = 404, body = crate::problem::ProblemDocument), (status = 422, body = crate::problem::ProblemDocument)))]
pub async fn put_watch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Json<Watch>, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, account, _) = account_for(&caller, daemon, &id, true).await?;
    let watch: Watch = body.json()?;
    let sinks = daemon
        .store()
        .sinks::<serde_json::Value>()
        .await
        .map_err(|e| store_failed(&e))?;
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    if let Some(p) = watch.problems(&names).into_iter().next() {
        return Err(invalid(p.field, p.message));
    }
    if watch.enabled && !account.download {
        return Err(invalid(
            "enabled",
            format!(
                "account {} has download switched off; turn it on first (`mailbridge account edit {} --download true`)",
                account.name, account.name
            ),
        ));
    }
    daemon
        .store()
        .put_watch(id, &watch)
        .await
        .map_err(|e| store_failed(&e))?;
    daemon.reload();
    let id = id.to_string();
    record(
        daemon.store(),
        &caller,
        Change::new("update", "watch").id(&id).name(&account.name),
    )
    .await;
    Ok(Json(watch))
}

/// Removes the account's watch; its watcher stops.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/watch", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id")),
    responses((status = 204), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn delete_watch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, account, _) = account_for(&caller, daemon, &id, true).await?;
    if !daemon
        .store()
        .remove_watch(id)
        .await
        .map_err(|e| store_failed(&e))?
    {
        return Err(Problem::not_found(format!(
            "account {} has no watch",
            account.name
        )));
    }
    daemon.reload();
    let id = id.to_string();
    record(
        daemon.store(),
        &caller,
        Change::new("delete", "watch").id(&id).name(&account.name),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- sinks ----

/// A sink to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkRequest {
    /// Unique; routes name the sink by it.
    pub name: String,
    /// `{kind: folder|attachments|webhook|relay, ...}`.
    #[schema(value_type = Object)]
    pub settings: SinkSpec,
    /// A webhook's signing secret or a relay's password: write-only. Leaving it out
    /// when replacing keeps the stored one.
    #[serde(default)]
    #[schema(value_type = Option<String>, write_only)]
    pub secret: Option<Secret>,
}

/// A sink as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SinkView {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub settings: SinkSpec,
    /// Whether a secret is stored (it is never shown).
    pub has_secret: bool,
}

async fn sink_view(
    store: &Store,
    id: SinkId,
    name: String,
    settings: SinkSpec,
) -> Result<SinkView, Problem> {
    let has_secret = store
        .get_secret(&mailbridge_store::sink_secret_id(id))
        .await
        .map_err(|e| store_failed(&e))?
        .is_some();
    Ok(SinkView {
        id: id.to_string(),
        name,
        settings,
        has_secret,
    })
}

fn check_sink_name(name: &str) -> Result<(), Problem> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "name",
            "1 to 64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

async fn save_sink(
    store: &Store,
    id: Option<SinkId>,
    req: SinkRequest,
) -> Result<SinkView, Problem> {
    check_sink_name(&req.name)?;
    if let Some(p) = req.settings.problems().into_iter().next() {
        return Err(invalid(format!("settings.{}", p.field), p.message));
    }
    let had_secret = match id {
        Some(id) => store
            .get_secret(&mailbridge_store::sink_secret_id(id))
            .await
            .map_err(|e| store_failed(&e))?
            .is_some(),
        None => false,
    };
    if req.settings.secret_needed() == SecretNeed::Required && req.secret.is_none() && !had_secret {
        return Err(invalid(
            "secret",
            match req.settings {
                SinkSpec::Webhook { .. } => {
                    "a webhook signs every request with its secret: give one (at least 16 characters)"
                }
                _ => "a relay that signs in needs its password",
            },
        ));
    }
    if let (SinkSpec::Webhook { .. }, Some(Secret(s))) = (&req.settings, &req.secret)
        && secrecy::ExposeSecret::expose_secret(s).len() < 16
    {
        return Err(invalid("secret", "at least 16 characters"));
    }
    let id = if let Some(id) = id {
        let found = store
            .update_sink(id, &req.name, &req.settings)
            .await
            .map_err(|e| match e {
                mailbridge_store::StoreError::Exists { .. } => conflict(&req.name),
                e => store_failed(&e),
            })?;
        if !found {
            return Err(Problem::not_found(format!("there is no sink with id {id}")));
        }
        id
    } else {
        if store
            .sinks::<serde_json::Value>()
            .await
            .map_err(|e| store_failed(&e))?
            .iter()
            .any(|s| s.name == req.name)
        {
            return Err(conflict(&req.name));
        }
        store
            .put_sink(&req.name, &req.settings)
            .await
            .map_err(|e| store_failed(&e))?
    };
    if let Some(Secret(secret)) = &req.secret {
        let kind = match req.settings {
            SinkSpec::Relay { .. } => SecretKind::Password,
            _ => SecretKind::ClientSecret,
        };
        store
            .put_secret(
                &mailbridge_store::sink_secret_id(id),
                kind,
                secret,
                None,
                store.now(),
            )
            .await
            .map_err(|e| store_failed(&e))?;
    }
    sink_view(store, id, req.name, req.settings).await
}

fn conflict(name: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "exists",
        "Exists already",
        format!("a sink called {name:?} exists already; PUT /api/v1/sinks/{{id}} changes it"),
    )
    .with_field("name")
}

/// Every sink, by name.
#[utoipa::path(get, path = "/api/v1/sinks", security(("api_token" = [])),
    responses((status = 200, body = Vec<SinkView>), (status = 403, body = crate::problem::ProblemDocument)))]
pub async fn list_sinks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<SinkView>>, Problem> {
    caller.require(Action::ReadSystem)?;
    let store = work(&state)?.store();
    let mut out = Vec::new();
    for s in store
        .sinks::<SinkSpec>()
        .await
        .map_err(|e| store_failed(&e))?
    {
        out.push(sink_view(store, s.id, s.name, s.config).await?);
    }
    Ok(Json(out))
}

/// Creates a sink.
#[utoipa::path(post, path = "/api/v1/sinks", security(("api_token" = [])), request_body = SinkRequest,
    responses((status = 201, body = SinkView), (status = 409, body = crate::problem::ProblemDocument), (status = 422, body = crate::problem::ProblemDocument)))]
pub async fn create_sink(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<(StatusCode, Json<SinkView>), Problem> {
    caller.require(Action::Administer)?;
    let req: SinkRequest = body.json()?;
    let daemon = work(&state)?;
    let view = save_sink(daemon.store(), None, req).await?;
    daemon.reload();
    record(
        daemon.store(),
        &caller,
        Change::new("create", "sink").id(&view.id).name(&view.name),
    )
    .await;
    Ok((StatusCode::CREATED, Json(view)))
}

fn sink_id(id: &str) -> Result<SinkId, Problem> {
    id.parse().map_err(|_| {
        Problem::not_found(format!(
            "there is no sink with id {id}; GET /api/v1/sinks lists them"
        ))
    })
}

/// One sink.
#[utoipa::path(get, path = "/api/v1/sinks/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the sink's id")),
    responses((status = 200, body = SinkView), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn get_sink(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SinkView>, Problem> {
    caller.require(Action::ReadSystem)?;
    let store = work(&state)?.store();
    let id = sink_id(&id)?;
    let s = store
        .sink::<SinkSpec>(id)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| Problem::not_found(format!("there is no sink with id {id}")))?;
    Ok(Json(sink_view(store, s.id, s.name, s.config).await?))
}

/// Replaces a sink's name, settings and (when given) secret; the watchers that use it
/// go on with the new settings at once.
#[utoipa::path(put, path = "/api/v1/sinks/{id}", security(("api_token" = [])), request_body = SinkRequest,
    params(("id" = String, Path, description = "the sink's id")),
    responses((status = 200, body = SinkView), (status = 404, body = crate::problem::ProblemDocument), (status = 422, body = crate::problem::ProblemDocument)))]
pub async fn put_sink(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Json<SinkView>, Problem> {
    caller.require(Action::Administer)?;
    let req: SinkRequest = body.json()?;
    let daemon = work(&state)?;
    let id = sink_id(&id)?;
    let old = daemon
        .store()
        .sink::<SinkSpec>(id)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| Problem::not_found(format!("there is no sink with id {id}")))?;
    if old.name != req.name
        && let Some(account) = route_users(daemon.store(), &old.name)
            .await?
            .into_iter()
            .next()
    {
        return Err(invalid(
            "name",
            format!(
                "routes of account {account} name this sink {:?}; change them first",
                old.name
            ),
        ));
    }
    let view = save_sink(daemon.store(), Some(id), req).await?;
    daemon.reload();
    record(
        daemon.store(),
        &caller,
        Change::new("update", "sink").id(&view.id).name(&view.name),
    )
    .await;
    Ok(Json(view))
}

/// The accounts (by id) whose routes name the sink `name`.
async fn route_users(store: &Store, name: &str) -> Result<Vec<AccountId>, Problem> {
    let watches = store
        .watches::<Watch>()
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(watches
        .into_iter()
        .filter(|(_, w)| w.routes.iter().any(|r| r.sinks.iter().any(|s| s == name)))
        .map(|(id, _)| id)
        .collect())
}

/// Removes a sink and its secret; refused while a route names it.
#[utoipa::path(delete, path = "/api/v1/sinks/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the sink's id")),
    responses((status = 204), (status = 404, body = crate::problem::ProblemDocument), (status = 409, body = crate::problem::ProblemDocument)))]
pub async fn delete_sink(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::Administer)?;
    let daemon = work(&state)?;
    let id = sink_id(&id)?;
    let Some(sink) = daemon
        .store()
        .sink::<serde_json::Value>(id)
        .await
        .map_err(|e| store_failed(&e))?
    else {
        return Err(Problem::not_found(format!("there is no sink with id {id}")));
    };
    if let Some(account) = route_users(daemon.store(), &sink.name)
        .await?
        .into_iter()
        .next()
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "in-use",
            "In use",
            format!(
                "routes of account {account} send messages to sink {:?}; change them first",
                sink.name
            ),
        ));
    }
    daemon
        .store()
        .remove_sink(id)
        .await
        .map_err(|e| store_failed(&e))?;
    daemon.reload();
    let id = id.to_string();
    record(
        daemon.store(),
        &caller,
        Change::new("delete", "sink").id(&id).name(&sink.name),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- outbox ----

/// A message of the outbox as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxView {
    pub id: String,
    pub account_id: String,
    /// queued, sending, sent, retrying, failed, outcome-unknown.
    pub state: String,
    pub created_at: String,
    pub size: u64,
    pub attempts: u32,
    /// When the next attempt is due (unfinished messages).
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub error_class: Option<String>,
    pub sent_at: Option<String>,
    pub server_reply: Option<String>,
    pub idempotency_key: Option<String>,
}

fn outbox_view(e: &OutboxEntry) -> OutboxView {
    OutboxView {
        id: e.id.to_string(),
        account_id: e.account.to_string(),
        state: e.state.as_str().to_owned(),
        created_at: time_text(e.created_at),
        size: e.size,
        attempts: e.attempts,
        next_attempt_at: (!e.state.is_final()).then(|| time_text(e.next_attempt_at)),
        last_error: e.last_error.clone(),
        error_class: e.error_class.clone(),
        sent_at: e.sent_at.map(time_text),
        server_reply: e.server_reply.clone(),
        idempotency_key: e.idempotency_key.clone(),
    }
}

/// A structured message to queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The sender; default: the account's address.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub reply_to: Vec<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    /// Extra header fields, e.g. `{"X-Ticket-Id": "4711"}`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// A queued message: its state, and whether this request queued it (false: the
/// `Idempotency-Key` was used before and that message is returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub created: bool,
    pub message: OutboxView,
}

fn addresses(field: &str, list: &[String]) -> Result<Vec<Address>, Problem> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            if mailbridge_mailbox::compose::is_address(a) {
                Ok(Address::new(a.clone()))
            } else {
                Err(invalid(
                    format!("{field}[{i}]"),
                    format!("{a:?} is not an email address"),
                ))
            }
        })
        .collect()
}

async fn compose(account: &AccountConfig, req: MessageRequest) -> Result<Vec<u8>, Problem> {
    let from = match &req.from {
        Some(a) if mailbridge_mailbox::compose::is_address(a) => Some(Address::new(a.clone())),
        Some(a) => return Err(invalid("from", format!("{a:?} is not an email address"))),
        None => None,
    };
    let mut m = Message::new(mailbridge_mailbox::connect::sender(account, from));
    m.to = addresses("to", &req.to)?;
    m.cc = addresses("cc", &req.cc)?;
    m.bcc = addresses("bcc", &req.bcc)?;
    m.reply_to = addresses("reply_to", &req.reply_to)?;
    if m.to.is_empty() && m.cc.is_empty() && m.bcc.is_empty() {
        return Err(invalid(
            "to",
            "a message needs at least one recipient (to, cc or bcc)",
        ));
    }
    m.subject = req.subject;
    m.text = req.text;
    m.html = req.html;
    m.headers = req.headers.into_iter().collect();
    m.validate()
        .map_err(|e| invalid("message", e.to_string()))?;
    m.to_vec(BccHeader::Include)
        .await
        .map_err(|e| invalid("message", e.to_string()))
}

/// Queues a message for sending through the account's outgoing side: a JSON message
/// (`application/json`) or raw MIME (`message/rfc822`). With an `Idempotency-Key`
/// used before for the account, nothing new is queued and that message is returned.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/outbox", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "the submitter's key; the same key again returns the message queued first")),
    request_body(content = MessageRequest, description = "JSON, or raw MIME as message/rfc822"),
    responses((status = 201, body = Queued), (status = 200, description = "queued before under this Idempotency-Key", body = Queued),
              (status = 413, body = crate::problem::ProblemDocument), (status = 415, body = crate::problem::ProblemDocument), (status = 422, body = crate::problem::ProblemDocument)))]
pub async fn queue_message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiBody,
) -> Result<Response, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let daemon = work(&state)?;
    let (id, account, _) = account_for(&caller, daemon, &id, true).await?;
    if !account.send {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "send-off",
            "Sending is off",
            format!(
                "account {} has sending switched off: turn it on with `mailbridge account edit {} --send true`",
                account.name, account.name
            ),
        ));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let v = v.to_str().ok().filter(|v| {
                !v.is_empty() && v.len() <= 200 && v.chars().all(|c| c.is_ascii_graphic())
            });
            Some(
                v.ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "invalid-header",
                        "Invalid header",
                        "Idempotency-Key: 1 to 200 visible ASCII characters",
                    )
                })?
                .to_owned(),
            )
        }
    };
    let max = account.limits.max_message_size;
    let message = match body.media_type.as_str() {
        _ if body.is_json() => compose(&account, body.json::<MessageRequest>()?).await?,
        "message/rfc822" => {
            mailbridge_mailbox::send::RawMime::from_reader(std::io::Cursor::new(
                body.bytes.to_vec(),
            ))
            .await
            .map_err(|e| invalid("message", e.detail()))?;
            body.bytes.to_vec()
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "JSON or MIME expected",
                "send a JSON message (Content-Type: application/json) or raw MIME (Content-Type: message/rfc822)",
            ));
        }
    };
    if message.len() as u64 > max {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message-too-large",
            "Message too large",
            format!(
                "the message has {} bytes, over account {}'s limit of {max}: send a smaller one or raise its limits.max_message_size",
                message.len(),
                account.name
            ),
        ));
    }
    let queued = daemon
        .store()
        .outbox_enqueue(
            NewOutboxMessage {
                account: id,
                idempotency_key: key,
                message,
                mail_from: None,
                recipients: Vec::new(),
            },
            max,
        )
        .await
        .map_err(|e| store_failed(&e))?;
    daemon.wake_outbox();
    let status = if queued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Queued {
            created: queued.created,
            message: outbox_view(&queued.entry),
        }),
    )
        .into_response())
}

/// Filters of an outbox listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// Only this account's messages (its id).
    pub account: Option<String>,
}

/// The outbox, oldest first.
#[utoipa::path(get, path = "/api/v1/outbox", security(("api_token" = [])), params(OutboxQuery),
    responses((status = 200, body = Vec<OutboxView>)))]
pub async fn list_outbox(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Vec<OutboxView>>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    Ok(Json(outbox(&caller, work(&state)?, &q).await?))
}

/// The outbox as `caller` may see it, oldest first (`GET /api/v1/outbox`'s answer;
/// the web UI's outbox page shows it).
pub async fn outbox(
    caller: &Caller,
    daemon: &DaemonHandle,
    q: &OutboxQuery,
) -> Result<Vec<OutboxView>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let filter = match &q.account {
        Some(id) => Some(account_for(caller, daemon, id, false).await?.0),
        None => None,
    };
    let reach = reach(caller, daemon.store()).await?;
    let entries = daemon
        .store()
        .outbox_list(filter)
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(entries
        .iter()
        .filter(|e| reach.as_ref().is_none_or(|own| own.contains(&e.account)))
        .map(outbox_view)
        .collect())
}

/// One message of the outbox.
#[utoipa::path(get, path = "/api/v1/outbox/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the message's id")),
    responses((status = 200, body = OutboxView), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn get_outbox(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OutboxView>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let not_found =
        || Problem::not_found(format!("there is no message with id {id} in the outbox"));
    let parsed: uuid::Uuid = id.parse().map_err(|_| not_found())?;
    let entry = daemon
        .store()
        .outbox_get(OutboxId::from_uuid(parsed))
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(not_found)?;
    require_account(&caller, daemon.store(), entry.account, false).await?;
    Ok(Json(outbox_view(&entry)))
}

// ---- watchers ----

/// The last state of every watcher that ran in this instance.
#[utoipa::path(get, path = "/api/v1/watchers", security(("api_token" = [])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_watchers(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<WatcherEvent>>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let names = reachable_names(&caller, daemon).await?;
    Ok(Json(
        daemon
            .states()
            .into_iter()
            .filter(|e| names.as_ref().is_none_or(|n| n.contains(&e.account)))
            .collect(),
    ))
}

// ---- parked deliveries ----

/// A parked delivery: a received message a sink kept refusing, kept with its bytes
/// (never shown here) until its remaining sinks accept it or someone drops it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedView {
    pub id: String,
    /// The cursor of the next page (`after`).
    pub seq: i64,
    pub account_id: String,
    pub account: String,
    pub folder: String,
    /// The message at its source (UID, Graph or EWS id, UIDL).
    pub source_id: String,
    pub idempotency_key: String,
    pub route: String,
    /// The sinks that have not accepted it yet.
    pub remaining_sinks: Vec<String>,
    pub size: u64,
    pub attempts: u32,
    /// What happened last, and what to do.
    pub last_error: String,
    pub error_class: String,
    pub parked_at: String,
    pub next_attempt_at: String,
    /// parked, or delivered (its source action is still to do).
    pub state: String,
}

fn parked_view(e: &mailbridge_store::ParkedEntry) -> ParkedView {
    ParkedView {
        id: e.id.to_string(),
        seq: e.seq,
        account_id: e.account.to_string(),
        account: e.account_name.clone(),
        folder: e.folder.clone(),
        source_id: e.source_id.clone(),
        idempotency_key: e.idempotency_key.clone(),
        route: e.route.clone(),
        remaining_sinks: e.remaining_sinks.clone(),
        size: e.size,
        attempts: e.attempts,
        last_error: e.last_error.clone(),
        error_class: e.error_class.clone(),
        parked_at: time_text(e.parked_at),
        next_attempt_at: time_text(e.next_attempt_at),
        state: e.state.as_str().to_owned(),
    }
}

/// A page of parked deliveries.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ParkedQuery {
    /// Only this account's (its id).
    pub account: Option<String>,
    /// The `seq` of the last row of the previous page.
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Parked deliveries, in the order they were parked, a page at a time.
#[utoipa::path(get, path = "/api/v1/parked", security(("api_token" = [])), params(ParkedQuery),
    responses((status = 200, body = Vec<ParkedView>)))]
pub async fn list_parked(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ParkedQuery>,
) -> Result<Json<Vec<ParkedView>>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    Ok(Json(parked_page(&caller, work(&state)?, &q).await?))
}

/// A page of the parked deliveries `caller` may see (`GET /api/v1/parked`'s answer;
/// the web UI's parked page shows it).
pub async fn parked_page(
    caller: &Caller,
    daemon: &DaemonHandle,
    q: &ParkedQuery,
) -> Result<Vec<ParkedView>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let account = match &q.account {
        Some(id) => Some(account_for(caller, daemon, id, false).await?.0),
        None => None,
    };
    let reach = reach(caller, daemon.store()).await?;
    let rows = daemon
        .store()
        .parked_list(account, q.after, q.limit.unwrap_or(100))
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(rows
        .iter()
        .filter(|e| reach.as_ref().is_none_or(|own| own.contains(&e.account)))
        .map(parked_view)
        .collect())
}

/// `Ok` with the account's name when `caller` may change the account of parked
/// delivery `id` (`Ok(None)` when there is no such delivery: the handler answers 404
/// then).
async fn parked_account_writable(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: mailbridge_store::ParkedId,
) -> Result<Option<String>, Problem> {
    if let Some(row) = daemon
        .store()
        .parked_get(id)
        .await
        .map_err(|e| store_failed(&e))?
    {
        require_account(caller, daemon.store(), row.account, true).await?;
        return Ok(Some(row.account_name));
    }
    Ok(None)
}

/// The names of the accounts `caller` may read (`None`: every account), for what is
/// keyed by name (watcher states and events).
async fn reachable_names(
    caller: &Caller,
    daemon: &DaemonHandle,
) -> Result<Option<std::collections::HashSet<String>>, Problem> {
    let Some(own) = reach(caller, daemon.store()).await? else {
        return Ok(None);
    };
    if own.is_empty() {
        return Ok(Some(std::collections::HashSet::new()));
    }
    let accounts = mailbridge_accounts::catalog::by_id(daemon.store(), daemon.config_file())
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(Some(
        accounts
            .into_iter()
            .filter(|(id, _)| own.contains(id))
            .map(|(_, (a, _))| a.name)
            .collect(),
    ))
}

fn parked_id(id: &str) -> Result<mailbridge_store::ParkedId, Problem> {
    id.parse().map_err(|_| {
        Problem::not_found(format!(
            "there is no parked delivery with id {id}; GET /api/v1/parked lists them"
        ))
    })
}

/// One parked delivery.
#[utoipa::path(get, path = "/api/v1/parked/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the parked delivery's id")),
    responses((status = 200, body = ParkedView), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn get_parked(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ParkedView>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let parsed = parked_id(&id)?;
    let row = daemon
        .store()
        .parked_get(parsed)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| Problem::not_found(format!("there is no parked delivery with id {id}")))?;
    require_account(&caller, daemon.store(), row.account, false).await?;
    Ok(Json(parked_view(&row)))
}

/// Retries a parked delivery now (its remaining sinks only).
#[utoipa::path(post, path = "/api/v1/parked/{id}/retry", security(("api_token" = [])),
    params(("id" = String, Path, description = "the parked delivery's id")),
    responses((status = 202, description = "due now; the worker retries it at once"), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn retry_parked(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    retry_parked_delivery(&caller, work(&state)?, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Makes parked delivery `id` due now, if `caller` may change its account
/// (`POST /api/v1/parked/{id}/retry`; the web UI's retry button).
pub async fn retry_parked_delivery(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: &str,
) -> Result<(), Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let parsed = parked_id(id)?;
    let account = parked_account_writable(caller, daemon, parsed).await?;
    if daemon
        .parked()
        .retry_now(parsed)
        .await
        .map_err(|e| store_failed(&e))?
    {
        let mut change = Change::new("retry", "parked").id(id);
        if let Some(account) = &account {
            change = change.name(account);
        }
        record(daemon.store(), caller, change).await;
        Ok(())
    } else {
        Err(Problem::not_found(format!(
            "there is no parked delivery with id {id} waiting (delivered or dropped meanwhile)"
        )))
    }
}

/// Drops a parked delivery: its remaining sinks never get the message.
#[utoipa::path(delete, path = "/api/v1/parked/{id}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the parked delivery's id")),
    responses((status = 204), (status = 404, body = crate::problem::ProblemDocument)))]
pub async fn drop_parked(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    drop_parked_delivery(&caller, work(&state)?, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops parked delivery `id`, if `caller` may change its account
/// (`DELETE /api/v1/parked/{id}`; the web UI's drop button).
pub async fn drop_parked_delivery(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: &str,
) -> Result<(), Problem> {
    caller.require(Action::WriteAccount { own: true })?;
    let parsed = parked_id(id)?;
    let account = parked_account_writable(caller, daemon, parsed).await?;
    if daemon
        .parked()
        .drop(parsed)
        .await
        .map_err(|e| store_failed(&e))?
    {
        tracing::warn!(parked = %parsed, by = caller.token.name.as_str(), "parked delivery dropped");
        let mut change = Change::new("drop", "parked").id(id);
        if let Some(account) = &account {
            change = change.name(account);
        }
        record(daemon.store(), caller, change).await;
        Ok(())
    } else {
        Err(Problem::not_found(format!(
            "there is no parked delivery with id {id}"
        )))
    }
}

// ---- events ----

/// Watcher state changes as Server-Sent Events (`event: watcher`, the data a JSON
/// object: account, state, at), from now on; first the current state of every
/// watcher. A client too slow to keep up gets `event: lagged` with how many it
/// missed and goes on. A comment every 15 s keeps proxies from closing the stream.
#[utoipa::path(get, path = "/api/v1/events", security(("api_token" = [])),
    responses((status = 200, description = "text/event-stream of watcher events", content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, Problem> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    use tokio::sync::broadcast::error::RecvError;
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    // A user's stream carries its own accounts' events, as they were named when it
    // was opened (an account renamed or given later: open the stream again).
    let names = std::sync::Arc::new(reachable_names(&caller, daemon).await?);
    let receiver = daemon.subscribe();
    let now: Vec<WatcherEvent> = daemon
        .states()
        .into_iter()
        .filter(|e| {
            names
                .as_ref()
                .as_ref()
                .is_none_or(|n| n.contains(&e.account))
        })
        .collect();
    let event = |e: &WatcherEvent| {
        Event::default()
            .event("watcher")
            .json_data(e)
            .unwrap_or_else(|_| Event::default().event("watcher"))
    };
    let first = futures::stream::iter(
        now.iter()
            .map(event)
            .map(Ok::<_, std::convert::Infallible>)
            .collect::<Vec<_>>(),
    );
    let rest = futures::stream::unfold(receiver, move |mut receiver| {
        let names = names.clone();
        async move {
            let item = loop {
                match receiver.recv().await {
                    Ok(e)
                        if names
                            .as_ref()
                            .as_ref()
                            .is_none_or(|n| n.contains(&e.account)) =>
                    {
                        break event(&e);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        break Event::default().event("lagged").data(n.to_string());
                    }
                    Err(RecvError::Closed) => return None,
                }
            };
            Some((Ok(item), receiver))
        }
    });
    Ok(Sse::new(first.chain(rest))
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}
