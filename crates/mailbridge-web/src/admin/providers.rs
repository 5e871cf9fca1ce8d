//! `/providers`: the mail providers (built in and defined here) with their servers,
//! domains and the accounts made from each, and the domain table, as the API lists
//! them ([`mailbridge_server::api_config::providers`],
//! [`mailbridge_server::api_config::domains`]). Administrators remove a provider
//! defined here through the API's own function
//! ([`mailbridge_server::api_config::remove_provider`]): a built-in one, or one
//! accounts still use, is refused with the reason (naming those accounts) next to
//! its row. Auditors read; users may not open the page.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_server::api_config::{DomainView, domains, providers, remove_provider};
use mailbridge_types::access::Action;
use mailbridge_types::config::Transport;
use serde::Deserialize;

use super::{Admin, daemon, page_of};
use crate::Web;
use crate::i18n::Tr;
use crate::pages::{CsrfForm, Visit, Who, page};

/// One provider as the page shows it.
#[derive(Debug)]
struct ProviderRow {
    id: String,
    name: String,
    builtin: bool,
    incoming: String,
    outgoing: String,
    domains: String,
    accounts: String,
}

#[derive(Template)]
#[template(path = "admin_providers.html")]
struct ProvidersPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    can_write: bool,
    rows: Vec<ProviderRow>,
    prev: Option<usize>,
    next: Option<usize>,
    domains: Vec<DomainView>,
    domains_prev: Option<usize>,
    domains_next: Option<usize>,
    done: Option<String>,
    /// A refused removal: the provider's id and why.
    error: Option<(String, String)>,
}

impl ProvidersPage {
    /// The refusal of a provider this page does not list.
    fn error_elsewhere(&self) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(id, _)| !self.rows.iter().any(|r| &r.id == id))
            .map(|(_, text)| text.as_str())
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProvidersParams {
    #[serde(default)]
    page: usize,
    #[serde(default)]
    domains: usize,
    done: Option<String>,
}

pub(crate) async fn providers_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<ProvidersParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let done =
        (params.done.as_deref() == Some("removed")).then(|| admin.t.get("admin-providers-removed"));
    render(&web, &admin, StatusCode::OK, &params, done, None).await
}

async fn render(
    web: &Web,
    admin: &Admin,
    status: StatusCode,
    params: &ProvidersParams,
    done: Option<String>,
    error: Option<(String, String)>,
) -> Response {
    if let Err(r) = admin.require(Action::ReadSystem) {
        return r;
    }
    let daemon = match daemon(web, admin) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (list, table) = match (
        providers(&admin.caller, daemon).await,
        domains(&admin.caller, daemon).await,
    ) {
        (Ok(p), Ok(d)) => (p, d),
        (Err(p), _) | (_, Err(p)) => return admin.problem_page(&p),
    };
    let accounts =
        match mailbridge_accounts::catalog::catalog(daemon.store(), daemon.config_file()).await {
            Ok(c) => c.accounts,
            Err(e) => return crate::pages::store_failed(admin.t, &e),
        };
    let side = |e: &Option<mailbridge_accounts::provider::Endpoint>| {
        e.as_ref().map_or_else(String::new, |e| {
            let transport = match e.transport {
                Transport::Graph => "Graph",
                Transport::Imap => "IMAP",
                Transport::Pop3 => "POP3",
                Transport::Smtp => "SMTP",
                Transport::Ews => "EWS",
            };
            format!("{transport} {}:{}", e.host, e.port)
        })
    };
    let paged = page_of(list, params.page);
    let rows = paged
        .rows
        .into_iter()
        .map(|p| ProviderRow {
            accounts: accounts
                .iter()
                .filter(|a| a.provider.as_deref() == Some(p.id.as_str()))
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            incoming: side(&p.incoming),
            outgoing: side(&p.outgoing),
            domains: p.domains.join(", "),
            builtin: p.builtin,
            name: p.name,
            id: p.id,
        })
        .collect();
    let table = page_of(table, params.domains);
    page(
        status,
        &ProvidersPage {
            t: admin.t,
            who: Some(admin.who.clone()),
            csrf: admin.who.csrf.clone(),
            can_write: admin.may(Action::Administer),
            rows,
            prev: paged.prev,
            next: paged.next,
            domains: table.rows,
            domains_prev: table.prev,
            domains_next: table.next,
            done,
            error,
        },
    )
}

/// `POST /providers/{id}/delete`.
pub(crate) async fn delete(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = admin.csrf(form.csrf.as_deref()) {
        return r;
    }
    if let Err(r) = admin.require(Action::Administer) {
        return r;
    }
    let daemon = match daemon(&web, &admin) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match remove_provider(&admin.caller, daemon, &id).await {
        Ok(()) => Redirect::to("/providers?done=removed").into_response(),
        Err(p) => {
            render(
                &web,
                &admin,
                p.status,
                &ProvidersParams::default(),
                None,
                Some((id, p.detail)),
            )
            .await
        }
    }
}
