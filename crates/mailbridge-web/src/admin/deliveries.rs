//! `/outbox` and `/parked`: the messages waiting to be sent and the received
//! messages a sink kept refusing, each a bounded page at a time, as the API shows
//! them to the person ([`mailbridge_server::api::outbox`],
//! [`mailbridge_server::api::parked_page`]: a user sees their own accounts'). A
//! parked delivery has Retry and Drop buttons (POST with the session's CSRF token)
//! for whoever may change its account, through the API's own functions
//! ([`mailbridge_server::api::retry_parked_delivery`],
//! [`mailbridge_server::api::drop_parked_delivery`]), which check the account and
//! record the audit log entry.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_server::api::{
    OutboxQuery, ParkedQuery, ParkedView, drop_parked_delivery, outbox, parked_page,
    retry_parked_delivery,
};
use mailbridge_types::access::Action;
use serde::Deserialize;

use super::{Admin, PAGE_SIZE, daemon, page_of};
use crate::Web;
use crate::i18n::Tr;
use crate::pages::{CsrfForm, Visit, Who, page};

/// One message of the outbox.
#[derive(Debug)]
struct OutboxRow {
    id: String,
    account: String,
    state: String,
    created_at: String,
    attempts: u32,
    last_error: Option<String>,
}

/// A state of the outbox or of a parked delivery in the page's language (the code
/// itself when it has no message: a state of a later version).
fn state_text(t: Tr, code: &str) -> String {
    const STATES: [&str; 8] = [
        "queued",
        "sending",
        "sent",
        "retrying",
        "failed",
        "outcome-unknown",
        "parked",
        "delivered",
    ];
    if STATES.contains(&code) {
        t.get(&format!("admin-state-{code}"))
    } else {
        code.to_owned()
    }
}

#[derive(Template)]
#[template(path = "admin_outbox.html")]
struct OutboxPage {
    t: Tr,
    who: Option<Who>,
    rows: Vec<OutboxRow>,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    #[serde(default)]
    page: usize,
}

pub(crate) async fn outbox_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<PageParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = admin.require(Action::ReadAccount { own: true }) {
        return r;
    }
    let daemon = match daemon(&web, &admin) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let views = match outbox(&admin.caller, daemon, &OutboxQuery { account: None }).await {
        Ok(v) => v,
        Err(p) => return admin.problem_page(&p),
    };
    let names =
        match mailbridge_accounts::catalog::by_id(daemon.store(), daemon.config_file()).await {
            Ok(a) => a,
            Err(e) => return crate::pages::store_failed(admin.t, &e),
        };
    // Newest first: what waits now is what a person looks for.
    let mut views = views;
    views.reverse();
    let paged = page_of(views, params.page);
    let rows = paged
        .rows
        .into_iter()
        .map(|v| OutboxRow {
            account: v
                .account_id
                .parse()
                .ok()
                .and_then(|id| names.get(&id))
                .map_or_else(|| v.account_id.clone(), |(a, _)| a.name.clone()),
            id: v.id,
            state: state_text(admin.t, &v.state),
            created_at: v.created_at,
            attempts: v.attempts,
            last_error: v.last_error,
        })
        .collect();
    page(
        StatusCode::OK,
        &OutboxPage {
            t: admin.t,
            who: Some(admin.who),
            rows,
            prev: paged.prev,
            next: paged.next,
        },
    )
}

#[derive(Template)]
#[template(path = "admin_parked.html")]
struct ParkedPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    rows: Vec<ParkedView>,
    /// Whether the person may retry and drop (the API checks each account too).
    can_write: bool,
    /// What the last action did.
    done: Option<String>,
    /// A refused action: the delivery's id and why.
    error: Option<(String, String)>,
    /// The `after` of the next page.
    next: Option<i64>,
    paged: bool,
}

impl ParkedPage {
    /// The refusal of a delivery this page does not list.
    fn error_elsewhere(&self) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(id, _)| !self.rows.iter().any(|r| &r.id == id))
            .map(|(_, text)| text.as_str())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ParkedParams {
    after: Option<i64>,
    done: Option<String>,
}

pub(crate) async fn parked(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<ParkedParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let done = match params.done.as_deref() {
        Some("retry") => Some(admin.t.get("admin-parked-retried")),
        Some("drop") => Some(admin.t.get("admin-parked-dropped")),
        _ => None,
    };
    parked_list(&web, &admin, params.after, done, None).await
}

async fn parked_list(
    web: &Web,
    admin: &Admin,
    after: Option<i64>,
    done: Option<String>,
    error: Option<(String, String, StatusCode)>,
) -> Response {
    if let Err(r) = admin.require(Action::ReadAccount { own: true }) {
        return r;
    }
    let daemon = match daemon(web, admin) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let q = ParkedQuery {
        account: None,
        after,
        limit: Some(u32::try_from(PAGE_SIZE).unwrap_or(50)),
    };
    let mut rows = match parked_page(&admin.caller, daemon, &q).await {
        Ok(rows) => rows,
        Err(p) => return admin.problem_page(&p),
    };
    for row in &mut rows {
        row.state = state_text(admin.t, &row.state);
    }
    let next = (rows.len() == PAGE_SIZE)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.2);
    page(
        status,
        &ParkedPage {
            t: admin.t,
            who: Some(admin.who.clone()),
            csrf: admin.who.csrf.clone(),
            rows,
            can_write: admin.may(Action::WriteAccount { own: true }),
            done,
            error: error.map(|(id, text, _)| (id, text)),
            next,
            paged: after.is_some(),
        },
    )
}

/// `POST /parked/{id}/retry`.
pub(crate) async fn retry(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&web, &visit, &id, form, true).await
}

/// `POST /parked/{id}/drop`.
pub(crate) async fn drop(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&web, &visit, &id, form, false).await
}

async fn act(web: &Web, visit: &Visit, id: &str, form: CsrfForm, retry: bool) -> Response {
    let admin = match Admin::of(web, visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = admin.csrf(form.csrf.as_deref()) {
        return r;
    }
    if let Err(r) = admin.require(Action::WriteAccount { own: true }) {
        return r;
    }
    let daemon = match daemon(web, &admin) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let done = if retry {
        retry_parked_delivery(&admin.caller, daemon, id).await
    } else {
        drop_parked_delivery(&admin.caller, daemon, id).await
    };
    match done {
        Ok(()) => Redirect::to(if retry {
            "/parked?done=retry"
        } else {
            "/parked?done=drop"
        })
        .into_response(),
        Err(p) => {
            parked_list(
                web,
                &admin,
                None,
                None,
                Some((id.to_owned(), p.detail, p.status)),
            )
            .await
        }
    }
}
