//! `/settings`: the system's own settings, kept in the store's settings table: which
//! account sends the system's own notifications, and the default language (the one
//! preselected for a new person on `/users`). Administrators change them; auditors
//! read them. Each change is recorded in the audit log
//! ([`mailbridge_server::audit::record`]).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_server::audit::{Change, record};
use mailbridge_types::access::Action;
use serde::Deserialize;

use super::Admin;
use crate::Web;
use crate::i18n::{LANGUAGES, Tr, supported};
use crate::pages::{Visit, Who, page};

/// The setting naming the account (by id) that sends the system's own notifications.
pub(crate) const NOTIFICATION_ACCOUNT: &str = "notifications.account";
/// The setting holding the default language tag.
pub(crate) const DEFAULT_LANGUAGE: &str = "default_language";

#[derive(Template)]
#[template(path = "admin_settings.html")]
struct SettingsPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    can_write: bool,
    /// The accounts that may send (id, name), by name.
    accounts: Vec<(String, String)>,
    account: String,
    languages: Vec<(&'static str, String)>,
    language: String,
    done: bool,
    account_error: Option<String>,
    language_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SettingsParams {
    done: Option<String>,
}

pub(crate) async fn settings_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<SettingsParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    render(
        &web,
        &admin,
        StatusCode::OK,
        params.done.is_some(),
        None,
        None,
    )
    .await
}

/// The accounts that send (id, name), by name: sending on, with an outgoing side.
async fn sending_accounts(web: &Web, admin: &Admin) -> Result<Vec<(String, String)>, Response> {
    let all = mailbridge_accounts::catalog::by_id(&web.store, &web.config_file)
        .await
        .map_err(|e| crate::pages::store_failed(admin.t, &e))?;
    let mut out: Vec<(String, String)> = all
        .into_iter()
        .filter(|(_, (a, _))| a.send && a.outgoing_side().is_some())
        .map(|(id, (a, _))| (id.to_string(), a.name))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

async fn render(
    web: &Web,
    admin: &Admin,
    status: StatusCode,
    done: bool,
    account_error: Option<String>,
    language_error: Option<String>,
) -> Response {
    if let Err(r) = admin.require(Action::ReadSystem) {
        return r;
    }
    let accounts = match sending_accounts(web, admin).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (account, language) = match (
        web.store.setting(NOTIFICATION_ACCOUNT).await,
        web.store.setting(DEFAULT_LANGUAGE).await,
    ) {
        (Ok(a), Ok(l)) => (a.unwrap_or_default(), l.unwrap_or_default()),
        (Err(e), _) | (_, Err(e)) => return crate::pages::store_failed(admin.t, &e),
    };
    let t = admin.t;
    page(
        status,
        &SettingsPage {
            t,
            who: Some(admin.who.clone()),
            csrf: admin.who.csrf.clone(),
            can_write: admin.may(Action::Administer),
            accounts,
            account,
            languages: LANGUAGES
                .iter()
                .map(|(tag, _)| (*tag, t.get(&format!("admin-language-{tag}"))))
                .collect(),
            language,
            done,
            account_error,
            language_error,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    csrf: Option<String>,
    #[serde(default)]
    notification_account: String,
    #[serde(default)]
    default_language: String,
}

/// `POST /settings`.
pub(crate) async fn save(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(form): Form<SettingsForm>,
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
    let accounts = match sending_accounts(&web, &admin).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = admin.t;
    let account = form.notification_account.trim();
    let account_name = accounts
        .iter()
        .find(|(id, _)| id == account)
        .map(|(_, name)| name.clone());
    let account_error = (!account.is_empty() && account_name.is_none())
        .then(|| t.get("admin-settings-account-invalid"));
    let language = match form.default_language.trim() {
        "" => Some(None),
        tag => supported(tag).filter(|s| *s == tag).map(Some),
    };
    let language_error = language
        .is_none()
        .then(|| t.get("admin-settings-language-invalid"));
    let Some(language) = language.filter(|_| account_error.is_none()) else {
        return render(
            &web,
            &admin,
            StatusCode::UNPROCESSABLE_ENTITY,
            false,
            account_error,
            language_error,
        )
        .await;
    };
    let account = (!account.is_empty()).then_some(account);
    let before = (
        web.store.setting(NOTIFICATION_ACCOUNT).await,
        web.store.setting(DEFAULT_LANGUAGE).await,
    );
    let (before_account, before_language) = match before {
        (Ok(a), Ok(l)) => (a, l),
        (Err(e), _) | (_, Err(e)) => return crate::pages::store_failed(t, &e),
    };
    if before_account.as_deref() != account {
        if let Err(e) = web.store.put_setting(NOTIFICATION_ACCOUNT, account).await {
            return crate::pages::store_failed(t, &e);
        }
        let mut change = Change::new("update", "setting").id(NOTIFICATION_ACCOUNT);
        if let Some(name) = &account_name {
            change = change.name(name);
        }
        record(&web.store, &admin.caller, change).await;
    }
    if before_language.as_deref() != language {
        if let Err(e) = web.store.put_setting(DEFAULT_LANGUAGE, language).await {
            return crate::pages::store_failed(t, &e);
        }
        let mut change = Change::new("update", "setting").id(DEFAULT_LANGUAGE);
        if let Some(l) = language {
            change = change.name(l);
        }
        record(&web.store, &admin.caller, change).await;
    }
    Redirect::to("/settings?done=1").into_response()
}
