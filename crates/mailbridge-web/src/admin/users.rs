//! `/users`: the people of the web UI and the API tokens. Administrators add a person
//! (name, role, language, initial password), disable or enable them, change their
//! role, make an API token (its value shown once, on this answer only) and revoke one;
//! auditors see the lists without forms. Tokens are listed without their values
//! (only their hashes are stored). Every change is recorded in the audit log through
//! [`mailbridge_server::audit::record`], as the API records its own.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_server::audit::{Change, record};
use mailbridge_store::{ApiToken, NewUser, StoreError, User};
use mailbridge_types::access::{Action, Role};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::{Admin, page_of, when};
use crate::Web;
use crate::i18n::{LANGUAGES, Tr, supported};
use crate::pages::{CsrfForm, Visit, Who, page, role_message, valid_user_name};
use crate::password;

/// A person as the list shows them.
#[derive(Debug)]
struct UserRow {
    name: String,
    role: &'static str,
    role_text: String,
    language: String,
    created: String,
    disabled: bool,
    yourself: bool,
}

/// A token as the list shows it (never its value).
#[derive(Debug)]
struct TokenRow {
    id: String,
    name: String,
    role_text: String,
    user: String,
    created: String,
    revoked: Option<String>,
}

/// What the add-person form was sent with, and its errors by field.
#[derive(Debug, Default)]
struct AddUser {
    name: String,
    role: String,
    language: String,
    name_error: Option<String>,
    password_error: Option<String>,
}

/// What the new-token form was sent with, and its errors by field.
#[derive(Debug, Default)]
struct AddToken {
    name: String,
    role: String,
    user: String,
    name_error: Option<String>,
    user_error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    can_write: bool,
    users: Vec<UserRow>,
    users_prev: Option<usize>,
    users_next: Option<usize>,
    tokens: Vec<TokenRow>,
    tokens_prev: Option<usize>,
    tokens_next: Option<usize>,
    roles: Vec<(&'static str, String)>,
    languages: Vec<(&'static str, String)>,
    add: AddUser,
    token_form: AddToken,
    /// A token made by this request: shown this once.
    new_token: Option<String>,
    done: Option<String>,
    /// A refused change of one person: their name and why.
    row_error: Option<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct UsersParams {
    #[serde(default)]
    users: usize,
    #[serde(default)]
    tokens: usize,
    done: Option<String>,
}

/// The first page of both lists.
const FIRST_PAGES: UsersParams = UsersParams {
    users: 0,
    tokens: 0,
    done: None,
};

const ROLES: [Role; 3] = [Role::Administrator, Role::User, Role::Auditor];

/// What else a page of `/users` shows besides the lists.
#[derive(Default)]
struct Extra {
    add: AddUser,
    token_form: AddToken,
    new_token: Option<String>,
    done: Option<String>,
    row_error: Option<(String, String)>,
}

pub(crate) async fn users_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<UsersParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let done = params.done.as_deref().and_then(|d| match d {
        "added" | "disabled" | "enabled" | "role" | "revoked" => {
            Some(admin.t.get(&format!("admin-users-done-{d}")))
        }
        _ => None,
    });
    render(
        &web,
        &admin,
        StatusCode::OK,
        &params,
        Extra {
            done,
            ..Extra::default()
        },
    )
    .await
}

async fn render(
    web: &Web,
    admin: &Admin,
    status: StatusCode,
    params: &UsersParams,
    extra: Extra,
) -> Response {
    if let Err(r) = admin.require(Action::ReadSystem) {
        return r;
    }
    let t = admin.t;
    let (users, tokens) = match (web.store.users().await, web.store.api_tokens().await) {
        (Ok(u), Ok(k)) => (u, k),
        (Err(e), _) | (_, Err(e)) => return crate::pages::store_failed(t, &e),
    };
    let users = page_of(users, params.users);
    let tokens = page_of(tokens, params.tokens);
    let me = &admin.caller.token.name;
    let user_row = |u: User| UserRow {
        yourself: &u.name == me,
        role: u.role.as_str(),
        role_text: t.get(role_message(u.role)),
        language: u
            .language
            .unwrap_or_else(|| t.get("admin-users-language-browser")),
        created: when(u.created_at),
        disabled: u.disabled,
        name: u.name,
    };
    let token_row = |k: ApiToken| TokenRow {
        id: k.id.to_string(),
        role_text: t.get(role_message(k.role)),
        user: k.user.unwrap_or_default(),
        created: when(k.created_at),
        revoked: k.revoked_at.map(when),
        name: k.name,
    };
    let mut add = extra.add;
    if add.role.is_empty() {
        Role::User.as_str().clone_into(&mut add.role);
    }
    if add.language.is_empty() {
        add.language = match web.store.setting(super::settings::DEFAULT_LANGUAGE).await {
            Ok(l) => l.unwrap_or_default(),
            Err(e) => return crate::pages::store_failed(t, &e),
        };
    }
    let mut token_form = extra.token_form;
    if token_form.role.is_empty() {
        Role::User.as_str().clone_into(&mut token_form.role);
    }
    page(
        status,
        &UsersPage {
            t,
            who: Some(admin.who.clone()),
            csrf: admin.who.csrf.clone(),
            can_write: admin.may(Action::Administer),
            users: users.rows.into_iter().map(user_row).collect(),
            users_prev: users.prev,
            users_next: users.next,
            tokens: tokens.rows.into_iter().map(token_row).collect(),
            tokens_prev: tokens.prev,
            tokens_next: tokens.next,
            roles: ROLES
                .iter()
                .map(|r| (r.as_str(), t.get(role_message(*r))))
                .collect(),
            languages: LANGUAGES
                .iter()
                .map(|(tag, _)| (*tag, t.get(&format!("admin-language-{tag}"))))
                .collect(),
            add,
            token_form,
            new_token: extra.new_token,
            done: extra.done,
            row_error: extra.row_error,
        },
    )
}

/// The person, allowed to change people and tokens, with a form that carried its
/// token.
async fn writer(web: &Web, visit: &Visit, csrf: Option<&str>) -> Result<Admin, Response> {
    let admin = Admin::of(web, visit).await?;
    admin.csrf(csrf)?;
    admin.require(Action::Administer)?;
    Ok(admin)
}

#[derive(Deserialize)]
pub(crate) struct AddUserForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    password: String,
}

/// `POST /users`: adds a person.
pub(crate) async fn add_user(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(form): Form<AddUserForm>,
) -> Response {
    let admin = match writer(&web, &visit, form.csrf.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = admin.t;
    let name = form.name.trim().to_owned();
    let mut add = AddUser {
        name: name.clone(),
        role: form.role.clone(),
        language: form.language.clone(),
        ..AddUser::default()
    };
    let role = Role::parse(&form.role).unwrap_or(Role::User);
    let language = supported(&form.language);
    if !valid_user_name(&name) {
        add.name_error = Some(t.get("setup-name-invalid"));
    }
    let hash = match password::hash(SecretString::from(form.password)).await {
        Ok(h) => Some(h),
        Err(password::PasswordError::TooShort) => {
            add.password_error = Some(t.with("setup-too-short", "min", &password::MIN_LENGTH));
            None
        }
        Err(password::PasswordError::TooLong) => {
            add.password_error = Some(t.with("setup-too-long", "max", &password::MAX_BYTES));
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "hashing a password failed");
            add.password_error = Some(t.get("error-store"));
            None
        }
    };
    let refuse = |add| {
        render(
            &web,
            &admin,
            StatusCode::UNPROCESSABLE_ENTITY,
            &FIRST_PAGES,
            Extra {
                add,
                ..Extra::default()
            },
        )
    };
    let Some(hash) = hash.filter(|_| add.name_error.is_none()) else {
        return refuse(add).await;
    };
    let added = web
        .store
        .add_user(NewUser {
            name: &name,
            role,
            password: &hash,
            language,
        })
        .await;
    match added {
        Ok(user) => {
            record(
                &web.store,
                &admin.caller,
                Change::new("create", "user")
                    .id(&user.id.to_string())
                    .name(&user.name),
            )
            .await;
            Redirect::to("/users?done=added").into_response()
        }
        Err(StoreError::Exists { .. }) => {
            add.name_error = Some(t.with("admin-users-exists", "name", &name));
            refuse(add).await
        }
        Err(e) => crate::pages::store_failed(t, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct RoleForm {
    csrf: Option<String>,
    #[serde(default)]
    role: String,
}

/// `POST /users/{name}/disable`.
pub(crate) async fn disable_user(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    change_user(
        &web,
        &visit,
        &name,
        form.csrf.as_deref(),
        UserChange::Disabled(true),
    )
    .await
}

/// `POST /users/{name}/enable`.
pub(crate) async fn enable_user(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    change_user(
        &web,
        &visit,
        &name,
        form.csrf.as_deref(),
        UserChange::Disabled(false),
    )
    .await
}

/// `POST /users/{name}/role`.
pub(crate) async fn set_role(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Response {
    let Some(role) = Role::parse(&form.role) else {
        return Redirect::to("/users").into_response();
    };
    change_user(
        &web,
        &visit,
        &name,
        form.csrf.as_deref(),
        UserChange::Role(role),
    )
    .await
}

#[derive(Debug, Clone, Copy)]
enum UserChange {
    Disabled(bool),
    Role(Role),
}

async fn change_user(
    web: &Web,
    visit: &Visit,
    name: &str,
    csrf: Option<&str>,
    change: UserChange,
) -> Response {
    let admin = match writer(web, visit, csrf).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = admin.t;
    if name == admin.caller.token.name {
        // Disabling oneself, or giving up one's role, would lock the only
        // administrator out; another administrator does it.
        return render(
            web,
            &admin,
            StatusCode::CONFLICT,
            &FIRST_PAGES,
            Extra {
                row_error: Some((name.to_owned(), t.get("admin-users-not-yourself"))),
                ..Extra::default()
            },
        )
        .await;
    }
    let (done, action) = match change {
        UserChange::Disabled(true) => ("disabled", "disable"),
        UserChange::Disabled(false) => ("enabled", "enable"),
        UserChange::Role(_) => ("role", "set-role"),
    };
    let changed = match change {
        UserChange::Disabled(d) => web.store.set_user_disabled(name, d).await,
        UserChange::Role(r) => web.store.set_user_role(name, r).await,
    };
    match changed {
        Ok(user) => {
            record(
                &web.store,
                &admin.caller,
                Change::new(action, "user")
                    .id(&user.id.to_string())
                    .name(&user.name),
            )
            .await;
            Redirect::to(&format!("/users?done={done}")).into_response()
        }
        Err(StoreError::NotFound { .. }) => {
            render(
                web,
                &admin,
                StatusCode::NOT_FOUND,
                &FIRST_PAGES,
                Extra {
                    row_error: Some((
                        name.to_owned(),
                        t.with("admin-users-unknown", "name", &name),
                    )),
                    ..Extra::default()
                },
            )
            .await
        }
        Err(e) => crate::pages::store_failed(t, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct AddTokenForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    user: String,
}

/// `POST /tokens`: makes an API token and shows it this once.
pub(crate) async fn add_token(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Form(form): Form<AddTokenForm>,
) -> Response {
    let admin = match writer(&web, &visit, form.csrf.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = admin.t;
    let role = Role::parse(&form.role).unwrap_or(Role::User);
    let name = form.name.trim().to_owned();
    let user = form.user.trim().to_owned();
    let mut token_form = AddToken {
        name: name.clone(),
        role: role.as_str().to_owned(),
        user: user.clone(),
        ..AddToken::default()
    };
    if !valid_user_name(&name) {
        token_form.name_error = Some(t.get("admin-tokens-name-invalid"));
    }
    if !user.is_empty() && !valid_user_name(&user) {
        token_form.user_error = Some(t.get("setup-name-invalid"));
    } else if role == Role::User && user.is_empty() {
        token_form.user_error = Some(t.get("admin-tokens-user-needed"));
    }
    let refuse = |token_form, status| {
        render(
            &web,
            &admin,
            status,
            &FIRST_PAGES,
            Extra {
                token_form,
                ..Extra::default()
            },
        )
    };
    if token_form.name_error.is_some() || token_form.user_error.is_some() {
        return refuse(token_form, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let issued = mailbridge_server::store_tokens::issue(
        &web.store,
        &name,
        role,
        (!user.is_empty()).then_some(user.as_str()),
    )
    .await;
    match issued {
        Ok((token, stored)) => {
            record(
                &web.store,
                &admin.caller,
                Change::new("create", "token")
                    .id(&stored.id.to_string())
                    .name(&stored.name),
            )
            .await;
            render(
                &web,
                &admin,
                StatusCode::CREATED,
                &FIRST_PAGES,
                Extra {
                    new_token: Some(token.expose_secret().to_owned()),
                    ..Extra::default()
                },
            )
            .await
        }
        Err(mailbridge_server::store_tokens::IssueError::Store(StoreError::Exists { .. })) => {
            token_form.name_error = Some(t.with("admin-tokens-exists", "name", &name));
            refuse(token_form, StatusCode::CONFLICT).await
        }
        Err(e) => {
            tracing::error!(error = %mailbridge_types::error_chain(&e), "making an API token failed");
            crate::pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                t,
                "error-title",
                "error-store",
            )
        }
    }
}

/// `POST /tokens/{id}/revoke`.
pub(crate) async fn revoke_token(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let admin = match writer(&web, &visit, form.csrf.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // By id only: a name could be another token's made since the page was shown.
    if uuid_like(&id) {
        match web.store.revoke_api_token(&id).await {
            Ok(token) => {
                record(
                    &web.store,
                    &admin.caller,
                    Change::new("revoke", "token")
                        .id(&token.id.to_string())
                        .name(&token.name),
                )
                .await;
                return Redirect::to("/users?done=revoked").into_response();
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return crate::pages::store_failed(admin.t, &e),
        }
    }
    render(
        &web,
        &admin,
        StatusCode::NOT_FOUND,
        &FIRST_PAGES,
        Extra {
            row_error: Some((id, admin.t.get("admin-tokens-unknown"))),
            ..Extra::default()
        },
    )
    .await
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
