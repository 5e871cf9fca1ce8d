//! The add / edit account wizard, without JavaScript: plain forms posted with the
//! session's CSRF token; the state between steps travels in the form's fields, never
//! a secret (a password is taken from the last POST only and never written back).
//!
//! 1. the address -> autodetection (`mailbridge-accounts`' `detect`, as
//!    `mailbridge account add` runs it) shows the provider and the step that decided;
//! 2. the client type (preselected from the provider);
//! 3. only the fields that type needs -> Test receive, Test send (the API's
//!    `run_check` on the account as it would be saved) or Save (`add_account` /
//!    `change_account`): a refusal is shown next to its field, in the page's
//!    language, with the API's own words beside it.

#![expect(
    clippy::result_large_err,
    reason = "a helper that fails returns the finished page to answer with"
)]

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_accounts::autodetect::{DetectOptions, Detection, NoDns, Step, SystemDns, detect};
use mailbridge_accounts::provider::{Endpoint, ProviderTable};
use mailbridge_server::account_access::new_account_owner;
use mailbridge_server::api_config::{
    AccountRequest, add_account, change_account, new_account, run_check, stored_account,
};
use mailbridge_server::problem::Problem;
use mailbridge_types::access::Action;
use mailbridge_types::config::Transport;
use secrecy::SecretString;
use serde::Deserialize;

use super::form::{Fields, Kind, field_message, form_field, tls_word};
use super::{Outcome, Signed, daemon, not_run, outcome, refused, signed};
use crate::Web;
use crate::i18n::Tr;
use crate::pages::{Visit, Who, csrf_refused, page, store_failed};

/// How long each autodetection step may take in the wizard.
const DETECT_STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// A field's error: in the page's language, and the API's own detail.
pub(crate) struct FieldError {
    pub(crate) message: String,
    pub(crate) detail: String,
}

/// One option of a choice.
pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) selected: bool,
}

/// One field of the form.
pub(crate) struct Input {
    pub(crate) id: &'static str,
    pub(crate) label: String,
    pub(crate) value: String,
    /// text, password, url; `select` when `choices` is not empty.
    pub(crate) kind: &'static str,
    pub(crate) required: bool,
    pub(crate) autocomplete: &'static str,
    pub(crate) hint: Option<String>,
    pub(crate) choices: Vec<Choice>,
    pub(crate) error: Option<FieldError>,
}

/// A fieldset of the form.
pub(crate) struct Group {
    pub(crate) legend: String,
    pub(crate) inputs: Vec<Input>,
}

/// A value carried to the next step.
pub(crate) struct Hidden {
    pub(crate) name: &'static str,
    pub(crate) value: String,
}

#[derive(Template)]
#[template(path = "wizard_address.html")]
struct AddressPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    address: String,
    error: Option<String>,
}

pub(crate) struct StepView {
    name: String,
    outcome: String,
    ms: u128,
}

pub(crate) struct KindView {
    id: &'static str,
    label: String,
    hint: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "wizard_type.html")]
struct TypePage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    found: String,
    steps: Vec<StepView>,
    kinds: Vec<KindView>,
    hidden: Vec<Hidden>,
}

#[derive(Template)]
#[template(path = "wizard_fields.html")]
struct FieldsPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    action: String,
    title: String,
    kind_label: String,
    edit: bool,
    top_error: Option<FieldError>,
    groups: Vec<Group>,
    hidden: Vec<Hidden>,
    outcome: Option<Outcome>,
    /// Shown when a password was typed and is not sent back.
    password_note: bool,
}

#[derive(Deserialize)]
pub(crate) struct WizardPost {
    csrf: Option<String>,
    #[serde(default)]
    step: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    password: String,
    #[serde(flatten)]
    fields: Fields,
}

/// Refuses a role that may not change any account (auditors) before anything else.
fn may_write(s: &Signed) -> Result<(), Response> {
    s.caller
        .require(Action::WriteAccount { own: true })
        .map_err(|p| refused(s.t, &p))
}

/// `GET /accounts/new`: step 1, the address.
pub(crate) async fn start(State(web): State<Arc<Web>>, visit: Visit) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = may_write(&s) {
        return r;
    }
    address_page(&s, StatusCode::OK, String::new(), None)
}

fn address_page(
    s: &Signed,
    status: StatusCode,
    address: String,
    error: Option<String>,
) -> Response {
    page(
        status,
        &AddressPage {
            t: s.t,
            who: s.who(),
            csrf: s.session.csrf_token.clone(),
            address,
            error,
        },
    )
}

/// `POST /accounts/new`: the next step of the wizard.
pub(crate) async fn step(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(post): Form<WizardPost>,
) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.csrf_ok(post.csrf.as_deref()) {
        return csrf_refused(s.t);
    }
    if let Err(r) = may_write(&s) {
        return r;
    }
    match post.step.as_str() {
        "type" => match Kind::parse(&post.fields.kind) {
            Some(kind) => fields_page(&web, &s, &post.fields, kind, None, None, false, None).await,
            None => detect_page(&web, &s, &post.fields.address).await,
        },
        "fields" => fields_step(&web, &s, post, None).await,
        _ => detect_page(&web, &s, &post.fields.address).await,
    }
}

/// The step name of autodetection in the page's language.
fn step_name(t: Tr, step: Step) -> String {
    t.get(match step {
        Step::DomainTable => "wizard-step-domain-table",
        Step::Mx => "wizard-step-mx",
        Step::OpenIdConfiguration => "wizard-step-openid",
        Step::AutodiscoverV2 => "wizard-step-autodiscover",
        Step::Autoconfig => "wizard-step-autoconfig",
        Step::Srv => "wizard-step-srv",
    })
}

/// What the type step carries on: the address, the provider and the servers found.
fn prefill(address: &str, detection: &Detection, table: &ProviderTable) -> Fields {
    let provider = detection.provider.as_deref().and_then(|p| table.get(p));
    let mut endpoints: Vec<Endpoint> = detection.endpoints.clone();
    if let Some(p) = provider {
        endpoints.extend(p.incoming.iter().chain(p.outgoing.iter()).cloned());
    }
    let mut f = Fields {
        address: address.to_owned(),
        provider: detection.provider.clone().unwrap_or_default(),
        login: detection.login.clone().unwrap_or_default(),
        ..Fields::default()
    };
    for e in &endpoints {
        match e.transport {
            Transport::Graph if f.graph_url.is_empty() => e.host.clone_into(&mut f.graph_url),
            Transport::Ews if f.ews_url.is_empty() => e.host.clone_into(&mut f.ews_url),
            Transport::Imap | Transport::Pop3 if f.in_host.is_empty() => {
                f.protocol = if e.transport == Transport::Pop3 {
                    "pop3"
                } else {
                    "imap"
                }
                .into();
                e.host.clone_into(&mut f.in_host);
                f.in_port = e.port.to_string();
                f.in_tls = tls_word(Some(e.tls)).into();
            }
            Transport::Smtp if f.out_host.is_empty() => {
                e.host.clone_into(&mut f.out_host);
                f.out_port = e.port.to_string();
                f.out_tls = tls_word(Some(e.tls)).into();
            }
            _ => {}
        }
    }
    f
}

/// The fields carried in hidden inputs from the type step.
fn carried(f: &Fields) -> Vec<Hidden> {
    [
        ("address", &f.address),
        ("provider", &f.provider),
        ("graph_url", &f.graph_url),
        ("ews_url", &f.ews_url),
        ("protocol", &f.protocol),
        ("in_host", &f.in_host),
        ("in_port", &f.in_port),
        ("in_tls", &f.in_tls),
        ("out_host", &f.out_host),
        ("out_port", &f.out_port),
        ("out_tls", &f.out_tls),
        ("login", &f.login),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(name, value)| Hidden {
        name,
        value: value.clone(),
    })
    .collect()
}

/// Step 2: autodetection's result and the client types.
async fn detect_page(web: &Web, s: &Signed, address: &str) -> Response {
    let t = s.t;
    let address = address.trim();
    let daemon = match daemon(web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let table = match mailbridge_accounts::catalog::provider_table(daemon.store()).await {
        Ok(table) => table,
        Err(e) => return store_failed(t, &e),
    };
    let options = DetectOptions {
        step_timeout: DETECT_STEP_TIMEOUT,
        ..DetectOptions::default()
    };
    let detected = match SystemDns::new() {
        Ok(dns) => detect(address, &table, &dns, &options).await,
        Err(_) => detect(address, &table, &NoDns, &options).await,
    };
    let detection = match detected {
        Ok(d) => d,
        Err(mailbridge_accounts::autodetect::DetectError::NotAnAddress(_)) => {
            return address_page(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                address.to_owned(),
                Some(t.get("wizard-error-address")),
            );
        }
        Err(e) => {
            tracing::warn!(error = %mailbridge_types::error_chain(&e), "autodetection could not start");
            Detection::default()
        }
    };
    let provider = detection.provider.as_deref().and_then(|p| table.get(p));
    let found = match (provider, detection.decided_by) {
        (Some(p), Some(step)) => t.with2(
            "wizard-detected",
            ("provider", &p.name),
            ("step", &step_name(t, step)),
        ),
        _ => t.get("wizard-not-detected"),
    };
    let suggested = Kind::suggested(provider);
    let f = prefill(address, &detection, &table);
    page(
        StatusCode::OK,
        &TypePage {
            t,
            who: s.who(),
            csrf: s.session.csrf_token.clone(),
            found,
            steps: detection
                .steps
                .iter()
                .map(|r| StepView {
                    name: step_name(t, r.step),
                    outcome: mailbridge_types::printable(&r.outcome).into_owned(),
                    ms: r.elapsed_ms,
                })
                .collect(),
            kinds: Kind::ALL
                .into_iter()
                .map(|k| KindView {
                    id: k.id(),
                    label: t.get(k.label()),
                    hint: t.get(k.hint()),
                    checked: k == suggested,
                })
                .collect(),
            hidden: carried(&f),
        },
    )
}

fn text(id: &'static str, label: String, value: &str, required: bool) -> Input {
    Input {
        id,
        label,
        value: value.to_owned(),
        kind: "text",
        required,
        autocomplete: "off",
        hint: None,
        choices: Vec::new(),
        error: None,
    }
}

fn choice(id: &'static str, label: String, value: &str, options: &[(&str, String)]) -> Input {
    Input {
        choices: options
            .iter()
            .map(|(v, l)| Choice {
                value: (*v).to_owned(),
                label: l.clone(),
                selected: *v == value,
            })
            .collect(),
        kind: "select",
        ..text(id, label, value, true)
    }
}

fn tls_choices(t: Tr) -> Vec<(&'static str, String)> {
    vec![
        ("implicit", t.get("wizard-tls-implicit")),
        ("starttls", t.get("wizard-tls-starttls")),
        ("auto", t.get("wizard-tls-auto")),
        ("none", t.get("wizard-tls-none")),
    ]
}

/// The groups of fields a type needs, filled from `f` (defaults where empty).
fn groups(t: Tr, f: &Fields, kind: Kind, apps: &[String], edit: bool) -> Vec<Group> {
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_owned()
        } else {
            v.to_owned()
        }
    };
    let mut account = vec![];
    if !edit {
        account.push(Input {
            kind: "email",
            autocomplete: "email",
            ..text("address", t.get("wizard-address"), &f.address, true)
        });
    }
    account.push(Input {
        hint: Some(t.get("wizard-name-hint")),
        ..text("name", t.get("wizard-name"), &f.name, edit)
    });
    let mut groups = vec![Group {
        legend: t.get("wizard-group-account"),
        inputs: account,
    }];
    if kind.uses_app() {
        let mut options: Vec<(&str, String)> =
            apps.iter().map(|a| (a.as_str(), a.clone())).collect();
        if !apps.contains(&f.app) && !f.app.is_empty() {
            options.push((f.app.as_str(), f.app.clone()));
        }
        let mut inputs = vec![Input {
            hint: Some(t.get("wizard-app-hint")),
            ..if options.is_empty() {
                text("app", t.get("wizard-app"), &f.app, true)
            } else {
                choice("app", t.get("wizard-app"), &f.app, &options)
            }
        }];
        match kind {
            Kind::GraphAppOnly => {
                inputs.push(Input {
                    hint: Some(t.get("wizard-mailbox-id-hint")),
                    ..text(
                        "mailbox_id",
                        t.get("wizard-mailbox-id"),
                        &f.mailbox_id,
                        false,
                    )
                });
                inputs.push(Input {
                    kind: "url",
                    ..text(
                        "graph_url",
                        t.get("wizard-graph-url"),
                        &or(&f.graph_url, "https://graph.microsoft.com"),
                        true,
                    )
                });
            }
            Kind::Ews => inputs.push(Input {
                kind: "url",
                ..text(
                    "ews_url",
                    t.get("wizard-ews-url"),
                    &or(
                        &f.ews_url,
                        "https://outlook.office365.com/EWS/Exchange.asmx",
                    ),
                    true,
                )
            }),
            _ => {}
        }
        groups.push(Group {
            legend: t.get("wizard-group-sign-in"),
            inputs,
        });
    }
    if kind.uses_servers() {
        let microsoft = kind != Kind::Password;
        let mut incoming = vec![];
        if kind.chooses_protocol() {
            incoming.push(choice(
                "protocol",
                t.get("wizard-protocol"),
                &or(&f.protocol, "imap"),
                &[("imap", "IMAP".to_owned()), ("pop3", "POP3".to_owned())],
            ));
        }
        incoming.push(text(
            "in_host",
            t.get("wizard-host"),
            &or(
                &f.in_host,
                if microsoft {
                    "outlook.office365.com"
                } else {
                    ""
                },
            ),
            true,
        ));
        incoming.push(Input {
            kind: "text",
            hint: Some(t.get("wizard-port-hint")),
            ..text(
                "in_port",
                t.get("wizard-port"),
                &or(&f.in_port, "993"),
                false,
            )
        });
        incoming.push(choice(
            "in_tls",
            t.get("wizard-tls"),
            &or(&f.in_tls, "implicit"),
            &tls_choices(t),
        ));
        groups.push(Group {
            legend: t.get("wizard-group-incoming"),
            inputs: incoming,
        });
        let outgoing = vec![
            Input {
                hint: Some(t.get("wizard-out-host-hint")),
                ..text(
                    "out_host",
                    t.get("wizard-host"),
                    &or(
                        &f.out_host,
                        if microsoft { "smtp.office365.com" } else { "" },
                    ),
                    false,
                )
            },
            Input {
                hint: Some(t.get("wizard-port-hint")),
                ..text(
                    "out_port",
                    t.get("wizard-port"),
                    &or(&f.out_port, "587"),
                    false,
                )
            },
            choice(
                "out_tls",
                t.get("wizard-tls"),
                &or(&f.out_tls, "starttls"),
                &tls_choices(t),
            ),
        ];
        groups.push(Group {
            legend: t.get("wizard-group-outgoing"),
            inputs: outgoing,
        });
        let mut login = vec![Input {
            hint: Some(t.get("wizard-login-hint")),
            autocomplete: "username",
            ..text("login", t.get("wizard-login"), &f.login, false)
        }];
        if kind == Kind::Password {
            login.push(Input {
                kind: "password",
                autocomplete: "new-password",
                hint: Some(t.get(if edit {
                    "wizard-password-keep-hint"
                } else {
                    "wizard-password-hint"
                })),
                ..text("password", t.get("wizard-password"), "", false)
            });
        }
        groups.push(Group {
            legend: t.get("wizard-group-login"),
            inputs: login,
        });
        groups.push(Group {
            legend: t.get("wizard-group-tls"),
            inputs: vec![
                Input {
                    hint: Some(t.get("wizard-tls-name-hint")),
                    ..text("tls_name", t.get("wizard-tls-name"), &f.tls_name, false)
                },
                Input {
                    hint: Some(t.get("wizard-extra-ca-hint")),
                    ..text("extra_ca", t.get("wizard-extra-ca"), &f.extra_ca, false)
                },
            ],
        });
    }
    groups
}

/// Step 3: the fields of `kind`, with an error (by field or above the form) and a
/// test's outcome when there is one.
#[expect(clippy::too_many_arguments, reason = "one page, its parts")]
async fn fields_page(
    web: &Web,
    s: &Signed,
    f: &Fields,
    kind: Kind,
    problem: Option<&Problem>,
    outcome: Option<Outcome>,
    password_note: bool,
    edit: Option<&str>,
) -> Response {
    let t = s.t;
    let daemon = match daemon(web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let apps: Vec<String> =
        match mailbridge_accounts::catalog::catalog(daemon.store(), daemon.config_file()).await {
            Ok(c) => c.apps.into_iter().map(|a| a.name).collect(),
            Err(e) => return store_failed(t, &e),
        };
    let mut groups = groups(t, f, kind, &apps, edit.is_some());
    let mut top_error = None;
    if let Some(p) = problem {
        let error = |field: &str| FieldError {
            message: t.get(field_message(field)),
            detail: p.detail.clone(),
        };
        let target = p.field.as_deref().and_then(|api| form_field(api, kind));
        let placed = target.is_some_and(|field| {
            groups
                .iter_mut()
                .flat_map(|g| g.inputs.iter_mut())
                .find(|i| i.id == field)
                .map(|i| i.error = Some(error(field)))
                .is_some()
        });
        if !placed {
            top_error = Some(FieldError {
                message: t.get("wizard-error-other"),
                detail: p.detail.clone(),
            });
        }
    }
    let mut hidden = vec![
        Hidden {
            name: "kind",
            value: kind.id().to_owned(),
        },
        Hidden {
            name: "step",
            value: "fields".to_owned(),
        },
    ];
    if !f.provider.is_empty() {
        hidden.push(Hidden {
            name: "provider",
            value: f.provider.clone(),
        });
    }
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page(
        status,
        &FieldsPage {
            t,
            who: s.who(),
            csrf: s.session.csrf_token.clone(),
            action: edit.map_or_else(
                || "/accounts/new".to_owned(),
                |id| format!("/accounts/{id}/edit"),
            ),
            title: t.get(if edit.is_some() {
                "wizard-edit-title"
            } else {
                "wizard-title"
            }),
            kind_label: t.get(kind.label()),
            edit: edit.is_some(),
            top_error,
            groups,
            hidden,
            outcome,
            password_note,
        },
    )
}

/// The request a form makes, read by the API's own parser.
fn parse_request(
    f: &Fields,
    kind: Kind,
    password: &str,
    edit: bool,
) -> Result<AccountRequest, Problem> {
    let body = f.request(kind, Some(password), edit).to_string();
    mailbridge_server::json::parse::<AccountRequest>(body.as_bytes())
}

/// Step 3 posted: test or save; `edit` is the account's id when it exists.
async fn fields_step(web: &Web, s: &Signed, post: WizardPost, edit: Option<&str>) -> Response {
    let t = s.t;
    let f = &post.fields;
    let Some(kind) = Kind::parse(&f.kind) else {
        return detect_page(web, s, &f.address).await;
    };
    let daemon = match daemon(web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let typed = kind == Kind::Password && !post.password.is_empty();
    let show = |problem: Option<Problem>, outcome: Option<Outcome>| async move {
        fields_page(web, s, f, kind, problem.as_ref(), outcome, typed, edit).await
    };
    let req = match parse_request(f, kind, &post.password, edit.is_some()) {
        Ok(r) => r,
        Err(p) => return show(Some(p), None).await,
    };
    let receive = match post.action.as_str() {
        "test-receive" => true,
        "test-send" => false,
        _ => {
            // Save.
            let saved = match edit {
                None => match new_account_owner(&s.caller) {
                    Ok(owner) => add_account(daemon, &s.caller, owner, &req).await,
                    Err(p) => Err(p),
                },
                Some(id) => match stored_account(&s.caller, daemon, id).await {
                    Ok((id, before)) => change_account(daemon, &s.caller, id, &before, &req).await,
                    Err(p) => Err(p),
                },
            };
            return match saved {
                Ok(view) => Redirect::to(&format!("/accounts/{}", view.id)).into_response(),
                Err(p)
                    if p.status == StatusCode::UNPROCESSABLE_ENTITY
                        || p.status == StatusCode::CONFLICT =>
                {
                    show(Some(p), None).await
                }
                Err(p) => refused(t, &p),
            };
        }
    };
    // A test: the account as it would be saved, with the password typed now.
    let account = match new_account(daemon, &req).await {
        Ok(a) => a,
        Err(p)
            if p.status == StatusCode::UNPROCESSABLE_ENTITY || p.status == StatusCode::CONFLICT =>
        {
            return show(Some(p), None).await;
        }
        Err(p) => return refused(t, &p),
    };
    let app =
        match mailbridge_accounts::catalog::catalog(daemon.store(), daemon.config_file()).await {
            Ok(c) => c
                .apps
                .into_iter()
                .find(|a| account.app.as_deref() == Some(a.name.as_str())),
            Err(e) => return store_failed(t, &e),
        };
    let password = typed.then(|| SecretString::from(post.password.clone()));
    let to = (!receive).then(|| account.address.clone());
    let result = match run_check(daemon, &account, app.as_ref(), to, password).await {
        Ok(report) => outcome(t, receive, &report),
        Err(p) if p.status == StatusCode::CONFLICT => not_run(t, receive, &p),
        Err(p) => return refused(t, &p),
    };
    show(None, Some(result)).await
}

/// `GET /accounts/{id}/edit`: step 3 filled from the stored account.
pub(crate) async fn edit(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = may_write(&s) {
        return r;
    }
    let daemon = match daemon(&web, s.t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (_, account) = match stored_account(&s.caller, daemon, &id).await {
        Ok(a) => a,
        Err(p) => return refused(s.t, &p),
    };
    let f = Fields::of(&account);
    let kind = Kind::of(&account);
    fields_page(&web, &s, &f, kind, None, None, false, Some(&id)).await
}

/// `POST /accounts/{id}/edit`: saves the changes.
pub(crate) async fn edit_step(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(mut post): Form<WizardPost>,
) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.csrf_ok(post.csrf.as_deref()) {
        return csrf_refused(s.t);
    }
    if let Err(r) = may_write(&s) {
        return r;
    }
    // An edit only saves; the detail page tests the saved account.
    post.action = "save".into();
    fields_step(&web, &s, post, Some(&id)).await
}
