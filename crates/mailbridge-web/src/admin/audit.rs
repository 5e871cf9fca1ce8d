//! `/audit`: the audit log, newest first, a bounded page at a time (administrators
//! and auditors), read through the API's own function
//! ([`mailbridge_server::audit::entries`]).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use mailbridge_server::audit::{AuditQuery, entries};
use mailbridge_types::access::Action;
use serde::Deserialize;

use super::{Admin, PAGE_SIZE, when};
use crate::Web;
use crate::i18n::Tr;
use crate::pages::{Visit, Who, page};

/// One row of the audit log.
#[derive(Debug)]
struct Row {
    seq: i64,
    at: String,
    actor: String,
    /// "person" or "API token", in the page's language.
    actor_kind: String,
    /// The action's code (`create`, `set-secret`, ...).
    action: String,
    /// The action in the page's language.
    action_text: String,
    object: String,
    client: String,
}

/// The actions the audit log records, each with a message `admin-action-<action>`.
const ACTIONS: &[&str] = &[
    "create",
    "update",
    "delete",
    "set-secret",
    "set-certificate",
    "set-owner",
    "retry",
    "drop",
    "disable",
    "enable",
    "set-role",
    "revoke",
];

/// The kinds of object, each with a message `admin-kind-<kind>`.
const KINDS: &[&str] = &[
    "app", "account", "provider", "sink", "watch", "parked", "user", "token", "setting",
];

/// The words for a code of the audit log in the page's language (the code itself
/// when it has none: an entry written by a later version).
fn words(t: Tr, prefix: &str, known: &[&str], code: &str) -> String {
    if known.contains(&code) {
        t.get(&format!("{prefix}{code}"))
    } else {
        code.to_owned()
    }
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    t: Tr,
    who: Option<Who>,
    rows: Vec<Row>,
    /// The `before` of the next (older) page.
    older: Option<i64>,
    /// Whether this is not the first page.
    paged: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditParams {
    before: Option<i64>,
}

pub(crate) async fn audit_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<AuditParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = admin.require(Action::ReadSystem) {
        return r;
    }
    let q = AuditQuery {
        before: params.before,
        limit: Some(u32::try_from(PAGE_SIZE).unwrap_or(50)),
    };
    let found = match entries(&admin.caller, &web.store, &q).await {
        Ok(found) => found,
        Err(p) => return admin.problem_page(&p),
    };
    let t = admin.t;
    let older = (found.len() == PAGE_SIZE)
        .then(|| found.last().map(|e| e.seq))
        .flatten();
    let rows = found
        .into_iter()
        .map(|e| Row {
            seq: e.seq,
            at: when(e.at),
            actor: e.actor,
            actor_kind: t.get(match e.actor_kind {
                mailbridge_store::Actor::Person => "admin-audit-person",
                _ => "admin-audit-token",
            }),
            action_text: words(t, "admin-action-", ACTIONS, &e.action),
            object: {
                let kind = words(t, "admin-kind-", KINDS, &e.object_kind);
                match (e.object_name, e.object_id) {
                    (Some(name), Some(id)) if name != id => t.with2(
                        "admin-audit-object",
                        ("kind", &kind),
                        ("name", &format!("{name} ({id})")),
                    ),
                    (Some(name), _) | (None, Some(name)) => {
                        t.with2("admin-audit-object", ("kind", &kind), ("name", &name))
                    }
                    (None, None) => kind,
                }
            },
            action: e.action,
            client: e.client,
        })
        .collect();
    page(
        StatusCode::OK,
        &AuditPage {
            t,
            who: Some(admin.who),
            rows,
            older,
            paged: params.before.is_some(),
        },
    )
}
