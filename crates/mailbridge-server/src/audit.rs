//! The audit log: every administrative change, recorded from one place
//! ([`record`]) by the API's changing handlers and by the web UI's pages (which call
//! the same functions, with the signed-in person as the [`Caller`]), and read back
//! at `GET /api/v1/audit` by administrators and auditors.
//!
//! An entry says who (the API token's or the person's name, and which of the two),
//! what (an action on an object: its kind, id and name), when, and from where (the
//! client's address). It never holds a secret value: setting an app's client secret
//! is recorded as an update of the app.
//!
//! An entry is written after its change succeeded. When the store refuses the entry
//! the change stands (it is done) and the failure is logged as an error naming the
//! change, so the log in the journal still shows it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use mailbridge_store::{AuditEntry, NewAuditEntry, Store};
use mailbridge_types::access::Action;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::AppState;
use crate::api_config::{store_failed, work};
use crate::api_token::Caller;
use crate::problem::Problem;

/// What was changed: an action on one object.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// `create`, `update`, `delete`, `retry`, `set-secret`, `set-owner`, ...
    pub action: &'a str,
    /// `app`, `account`, `provider`, `sink`, `watch`, `parked`, `user`, `token`,
    /// `setting`, ...
    pub kind: &'a str,
    pub id: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl<'a> Change<'a> {
    /// `action` on an object of `kind`.
    pub fn new(action: &'a str, kind: &'a str) -> Self {
        Self {
            action,
            kind,
            id: None,
            name: None,
        }
    }

    /// With the object's id.
    #[must_use]
    pub fn id(mut self, id: &'a str) -> Self {
        self.id = Some(id);
        self
    }

    /// With the object's name.
    #[must_use]
    pub fn name(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }
}

/// Records `change`, made by `caller`, in the audit log.
pub async fn record(store: &Store, caller: &Caller, change: Change<'_>) {
    let entry = NewAuditEntry {
        actor_kind: caller.kind,
        actor: &caller.token.name,
        action: change.action,
        object_kind: change.kind,
        object_id: change.id,
        object_name: change.name,
        client: &caller.from,
    };
    if let Err(e) = store.audit_record(entry).await {
        tracing::error!(
            error = %mailbridge_types::error_chain(&e),
            actor = caller.token.name.as_str(),
            action = change.action,
            kind = change.kind,
            id = change.id,
            name = change.name,
            from = caller.from.as_str(),
            "the audit log refused an entry for a change that was made"
        );
    }
}

/// An entry of the audit log as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Its place: larger is newer (`before` of the next page).
    pub seq: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// `person` (the web UI) or `token` (the API).
    pub actor_kind: String,
    /// The person's or the token's name.
    pub actor: String,
    pub action: String,
    /// The kind of object changed.
    pub object_kind: String,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    /// The client's address.
    pub client: String,
}

impl From<&AuditEntry> for AuditView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: e.at.format(&Rfc3339).unwrap_or_else(|_| e.at.to_string()),
            actor_kind: e.actor_kind.as_str().to_owned(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            object_kind: e.object_kind.clone(),
            object_id: e.object_id.clone(),
            object_name: e.object_name.clone(),
            client: e.client.clone(),
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this `seq` (the last `seq` of the previous page).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<u32>,
}

/// A page of the audit log, newest first, for `caller` (administrators and auditors).
pub async fn entries(
    caller: &Caller,
    store: &Store,
    q: &AuditQuery,
) -> Result<Vec<AuditEntry>, Problem> {
    caller.require(Action::ReadSystem)?;
    store
        .audit_list(q.before, q.limit.unwrap_or(100))
        .await
        .map_err(|e| store_failed(&e))
}

/// The audit log, newest first, a page at a time: who changed what, when and from
/// where. Administrators and auditors.
#[utoipa::path(get, path = "/api/v1/audit", security(("api_token" = [])), params(AuditQuery),
    responses((status = 200, body = Vec<AuditView>), (status = 401, body = crate::problem::ProblemDocument), (status = 403, body = crate::problem::ProblemDocument)))]
pub async fn list_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditView>>, Problem> {
    caller.require(Action::ReadSystem)?;
    let daemon = work(&state)?;
    let rows = entries(&caller, daemon.store(), &q).await?;
    Ok(Json(rows.iter().map(AuditView::from).collect()))
}
