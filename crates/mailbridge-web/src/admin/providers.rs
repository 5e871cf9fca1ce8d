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
use mailbridge_accounts::provider::{Endpoint, ProviderDefaults};
use mailbridge_server::api_config::{
    DomainView, ProviderRequest, domains, providers, remove_provider, save_provider,
};
use mailbridge_types::access::Action;
use mailbridge_types::config::{TlsMode, Transport};
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
    /// The new-provider form as sent, with its errors.
    form: NewProvider,
}

/// The new-provider form: what was typed, and the error of each field.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewProvider {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    incoming_transport: String,
    #[serde(default)]
    incoming_host: String,
    #[serde(default)]
    incoming_port: String,
    #[serde(default)]
    incoming_tls: String,
    #[serde(default)]
    outgoing_host: String,
    #[serde(default)]
    outgoing_port: String,
    #[serde(default)]
    outgoing_tls: String,
    #[serde(default)]
    domains: String,
    #[serde(skip)]
    errors: std::collections::BTreeMap<&'static str, String>,
}

impl NewProvider {
    /// The error of `field`, if any.
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

impl ProvidersPage {
    /// The TLS modes a side may use, in the page's language.
    fn tls_modes(&self) -> Vec<(&'static str, String)> {
        ["implicit", "starttls", "auto", "none"]
            .into_iter()
            .map(|m| (m, self.t.get(&format!("admin-providers-tls-{m}"))))
            .collect()
    }

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
    let done = match params.done.as_deref() {
        Some("removed") => Some(admin.t.get("admin-providers-removed")),
        Some("saved") => Some(admin.t.get("admin-providers-saved")),
        _ => None,
    };
    render(
        &web,
        &admin,
        StatusCode::OK,
        &params,
        done,
        None,
        NewProvider::default(),
    )
    .await
}

async fn render(
    web: &Web,
    admin: &Admin,
    status: StatusCode,
    params: &ProvidersParams,
    done: Option<String>,
    error: Option<(String, String)>,
    form: NewProvider,
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
            form,
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
                NewProvider::default(),
            )
            .await
        }
    }
}

/// One side of the form as an endpoint: none when its host is empty; the field at
/// fault when its port is not one.
fn side(
    transport: Transport,
    host: &str,
    port: &str,
    tls: &str,
    port_field: &'static str,
) -> Result<Option<Endpoint>, &'static str> {
    let host = host.trim();
    if host.is_empty() {
        return Ok(None);
    }
    let port: u16 = port
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or(port_field)?;
    let tls = match tls {
        "starttls" => TlsMode::StartTls,
        "none" => TlsMode::None,
        "auto" => TlsMode::Auto,
        _ => TlsMode::Implicit,
    };
    Ok(Some(Endpoint {
        transport,
        host: host.to_owned(),
        port,
        tls,
    }))
}

/// `POST /providers`: defines a provider (or replaces one defined here).
pub(crate) async fn add(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(mut form): Form<NewProvider>,
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
    let t = admin.t;
    let transport = if form.incoming_transport == "pop3" {
        Transport::Pop3
    } else {
        Transport::Imap
    };
    let incoming = side(
        transport,
        &form.incoming_host,
        &form.incoming_port,
        &form.incoming_tls,
        "incoming_port",
    );
    let outgoing = side(
        Transport::Smtp,
        &form.outgoing_host,
        &form.outgoing_port,
        &form.outgoing_tls,
        "outgoing_port",
    );
    let (incoming, outgoing) = match (incoming, outgoing) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(field), _) | (_, Err(field)) => {
            form.errors
                .insert(field, t.get("admin-providers-port-invalid"));
            return refuse(&web, &admin, StatusCode::UNPROCESSABLE_ENTITY, form).await;
        }
    };
    let req = ProviderRequest {
        id: form.id.trim().to_owned(),
        name: form.name.clone(),
        incoming,
        outgoing,
        sign_in: None,
        login: None,
        domains: form
            .domains
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        defaults: ProviderDefaults::default(),
    };
    match save_provider(&admin.caller, daemon, req).await {
        Ok(_) => Redirect::to("/providers?done=saved").into_response(),
        Err(p) => {
            let field = match p.field.as_deref() {
                Some("id") => "id",
                Some("name") => "name",
                Some(f) if f.starts_with("incoming") => "incoming_host",
                Some(f) if f.starts_with("outgoing") => "outgoing_host",
                Some(f) if f.starts_with("domains") => "domains",
                _ => "form",
            };
            form.errors.insert(field, p.detail.clone());
            refuse(&web, &admin, p.status, form).await
        }
    }
}

async fn refuse(web: &Web, admin: &Admin, status: StatusCode, form: NewProvider) -> Response {
    render(
        web,
        admin,
        status,
        &ProvidersParams::default(),
        None,
        None,
        form,
    )
    .await
}
