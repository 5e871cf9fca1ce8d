//! `/apps`: the app registrations kept in the store, as the API lists them
//! ([`mailbridge_server::api_config::apps`]): client id, tenant, credential kind and
//! its expiry (flagged within 30 days), and the accounts that use each. An
//! administrator gives an app that signs in with a client secret a new secret (a
//! write-only field, never shown again) and its expiry, or any app a certificate (its
//! PEM and its private key's PEM, pasted; kept as files 0600 under the data
//! directory's `certificates/`), through the API's own function
//! ([`mailbridge_server::api_config::save_app`]), which checks, seals, and records
//! the audit log entry; auditors see the list without forms.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_server::api_config::{AppRequest, AppView, Secret, apps, save_app};
use mailbridge_types::access::Action;
use mailbridge_types::config::AppCredentialConfig;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Admin, daemon, page_of};
use crate::Web;
use crate::i18n::Tr;
use crate::pages::{Visit, Who, page};

/// A credential expiring within this is flagged.
const SOON: time::Duration = time::Duration::days(30);

/// The largest certificate file read to show its expiry, and the largest PEM taken.
const MAX_CERTIFICATE_BYTES: u64 = 256 * 1024;

/// One app as the page shows it.
#[derive(Debug)]
struct AppRow {
    id: String,
    name: String,
    client_id: String,
    tenant: String,
    /// The credential's kind, in the page's language.
    credential: String,
    /// When it expires, if known.
    expires: Option<String>,
    /// Expired or within 30 days.
    soon: bool,
    /// Whether a client secret can be set (the app signs in with one).
    takes_secret: bool,
    secret_stored: bool,
    accounts: String,
}

/// A refused secret: the app's id, the field at fault (none: the form) and why.
#[derive(Debug)]
struct FormError {
    app: String,
    field: Option<String>,
    text: String,
}

#[derive(Template)]
#[template(path = "admin_apps.html")]
struct AppsPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    can_write: bool,
    rows: Vec<AppRow>,
    prev: Option<usize>,
    next: Option<usize>,
    done: Option<String>,
    error: Option<FormError>,
}

impl AppsPage {
    /// The error of `field` of app `app`'s form, if any.
    fn error_of(&self, app: &str, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.app == app && e.field.as_deref() == Some(field))
            .map(|e| e.text.as_str())
    }

    /// The error of app `app`'s form no field is at fault for.
    fn form_error(&self, app: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.app == app && !matches!(e.field.as_deref(), Some("secret" | "expires")))
            .map(|e| e.text.as_str())
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AppsParams {
    #[serde(default)]
    page: usize,
    done: Option<String>,
}

pub(crate) async fn apps_page(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Query(params): Query<AppsParams>,
) -> Response {
    let admin = match Admin::of(&web, &visit).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let done = match params.done.as_deref() {
        Some("secret") => Some(admin.t.get("admin-apps-secret-saved")),
        Some("certificate") => Some(admin.t.get("admin-apps-certificate-saved")),
        _ => None,
    };
    render(&web, &admin, StatusCode::OK, params.page, done, None).await
}

async fn render(
    web: &Web,
    admin: &Admin,
    status: StatusCode,
    page_no: usize,
    done: Option<String>,
    error: Option<FormError>,
) -> Response {
    if let Err(r) = admin.require(Action::ReadSystem) {
        return r;
    }
    let daemon = match daemon(web, admin) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let views = match apps(&admin.caller, daemon).await {
        Ok(v) => v,
        Err(p) => return admin.problem_page(&p),
    };
    let now = web.store.now();
    let paged = page_of(views, page_no);
    let mut rows = Vec::with_capacity(paged.rows.len());
    for v in paged.rows {
        rows.push(row(admin.t, v, now).await);
    }
    page(
        status,
        &AppsPage {
            t: admin.t,
            who: Some(admin.who.clone()),
            csrf: admin.who.csrf.clone(),
            can_write: admin.may(Action::Administer),
            rows,
            prev: paged.prev,
            next: paged.next,
            done,
            error,
        },
    )
}

async fn row(t: Tr, v: AppView, now: OffsetDateTime) -> AppRow {
    let (credential, expires, takes_secret) = match &v.app.credential {
        AppCredentialConfig::None => (t.get("admin-apps-credential-none"), None, false),
        AppCredentialConfig::Secret { expires } => {
            (t.get("admin-apps-credential-secret"), *expires, true)
        }
        AppCredentialConfig::Certificate {
            certificate_file, ..
        } => (
            t.get("admin-apps-credential-certificate"),
            certificate_expiry(certificate_file).await,
            false,
        ),
    };
    AppRow {
        soon: expires.is_some_and(|e| e - now < SOON),
        expires: expires.map(super::when),
        id: v.id,
        name: v.app.name,
        client_id: v.app.client_id,
        tenant: v.app.tenant,
        credential,
        takes_secret,
        secret_stored: v.secret_stored,
        accounts: v.accounts.join(", "),
    }
}

/// The `notAfter` of the certificate in `path` (read within a bound), if it can be read.
async fn certificate_expiry(path: &std::path::Path) -> Option<OffsetDateTime> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut text = String::new();
    file.take(MAX_CERTIFICATE_BYTES)
        .read_to_string(&mut text)
        .await
        .ok()?;
    mailbridge_auth::credential::certificate_not_after(&text)
}

#[derive(Deserialize)]
pub(crate) struct SecretForm {
    csrf: Option<String>,
    #[serde(default)]
    secret: String,
    /// `YYYY-MM-DD`, or empty.
    #[serde(default)]
    expires: String,
}

/// `POST /apps/{id}/secret`: a new client secret (and its expiry) for the app.
pub(crate) async fn set_secret(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(form): Form<SecretForm>,
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
    let refuse = |field: Option<&str>, text: String, status| {
        render(
            &web,
            &admin,
            status,
            0,
            None,
            Some(FormError {
                app: id.clone(),
                field: field.map(str::to_owned),
                text,
            }),
        )
    };
    let expires = match form.expires.trim() {
        "" => None,
        text => match time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        ) {
            Ok(d) => Some(d.with_hms(23, 59, 59).unwrap_or(d.midnight()).assume_utc()),
            Err(_) => {
                return refuse(
                    Some("expires"),
                    t.get("admin-apps-expires-invalid"),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        },
    };
    let Some(secret) = Secret::from_form(form.secret) else {
        return refuse(
            Some("secret"),
            t.get("admin-apps-secret-missing"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let current = match apps(&admin.caller, daemon).await {
        Ok(v) => v.into_iter().find(|v| v.id == id),
        Err(p) => return admin.problem_page(&p),
    };
    let Some(current) = current else {
        return admin.text_page(
            StatusCode::NOT_FOUND,
            "error-title",
            t.get("admin-apps-unknown"),
        );
    };
    let app = current.app;
    let req = AppRequest {
        name: app.name,
        tenant: app.tenant,
        client_id: app.client_id,
        cloud: Some(app.cloud),
        authority_host: app.authority_host,
        graph_root: app.graph_root,
        extra_ca_file: app.extra_ca_file,
        credential: AppCredentialConfig::Secret { expires },
        secret: Some(secret),
    };
    match save_app(&admin.caller, daemon, &id, req).await {
        Ok(_) => Redirect::to("/apps?done=secret").into_response(),
        Err(p) => {
            let field = match p.field.as_deref() {
                Some("secret") => Some("secret"),
                Some(f) if f.starts_with("credential") => Some("expires"),
                _ => None,
            };
            refuse(field, p.detail.clone(), p.status).await
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CertificateForm {
    csrf: Option<String>,
    #[serde(default)]
    certificate: String,
    #[serde(default)]
    key: String,
}

/// `POST /apps/{id}/certificate`: the app signs in with this certificate from now on
/// (the Azure portal must have it under Certificates & secrets).
pub(crate) async fn set_certificate(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
    Form(form): Form<CertificateForm>,
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
    // Browsers send a text area's lines ending in CR LF.
    let form = CertificateForm {
        certificate: form.certificate.replace("\r\n", "\n"),
        key: form.key.replace("\r\n", "\n"),
        ..form
    };
    let refuse = |field: Option<&str>, text: String, status| {
        render(
            &web,
            &admin,
            status,
            0,
            None,
            Some(FormError {
                app: id.clone(),
                field: field.map(str::to_owned),
                text,
            }),
        )
    };
    let too_long = |s: &str| u64::try_from(s.len()).unwrap_or(u64::MAX) > MAX_CERTIFICATE_BYTES;
    if too_long(&form.certificate)
        || mailbridge_auth::credential::certificate_not_after(&form.certificate).is_none()
    {
        return refuse(
            Some("certificate"),
            t.get("admin-apps-certificate-invalid"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if too_long(&form.key)
        || !(form.key.contains("-----BEGIN") && form.key.contains("PRIVATE KEY-----"))
    {
        return refuse(
            Some("key"),
            t.get("admin-apps-key-invalid"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let current = match apps(&admin.caller, daemon).await {
        Ok(v) => v.into_iter().find(|v| v.id == id),
        Err(p) => return admin.problem_page(&p),
    };
    let Some(current) = current else {
        return admin.text_page(
            StatusCode::NOT_FOUND,
            "error-title",
            t.get("admin-apps-unknown"),
        );
    };
    let Some(data_dir) = &web.data_dir else {
        return admin.text_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "error-title",
            t.get("admin-no-daemon"),
        );
    };
    // A new pair of files for each upload: the app's settings name them, so the
    // change shows in its credential (and the audit log says so).
    let dir = data_dir.join("certificates");
    let stem = format!("{id}-{}", web.store.now().unix_timestamp());
    let (certificate_file, key_file) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let written = mailbridge_store::files::create_private_dir(&dir)
        .and_then(|()| {
            mailbridge_store::files::write_private_file(
                &certificate_file,
                form.certificate.as_bytes(),
            )
        })
        .and_then(|()| mailbridge_store::files::write_private_file(&key_file, form.key.as_bytes()));
    if let Err(e) = written {
        tracing::error!(error = %e, dir = %dir.display(), "failed to keep an uploaded certificate");
        let _ = std::fs::remove_file(&certificate_file);
        return refuse(
            Some("certificate"),
            t.get("admin-apps-certificate-not-kept"),
            StatusCode::INTERNAL_SERVER_ERROR,
        )
        .await;
    }
    let app = current.app;
    let before = app.credential.clone();
    let req = AppRequest {
        name: app.name,
        tenant: app.tenant,
        client_id: app.client_id,
        cloud: Some(app.cloud),
        authority_host: app.authority_host,
        graph_root: app.graph_root,
        extra_ca_file: app.extra_ca_file,
        credential: AppCredentialConfig::Certificate {
            certificate_file: certificate_file.clone(),
            key_file: key_file.clone(),
            rs256: false,
        },
        secret: None,
    };
    match save_app(&admin.caller, daemon, &id, req).await {
        Ok(_) => {
            // The files of the certificate uploaded before are no longer named.
            if let AppCredentialConfig::Certificate {
                certificate_file,
                key_file,
                ..
            } = before
            {
                for old in [certificate_file, key_file] {
                    if old.parent() == Some(dir.as_path()) {
                        let _ = std::fs::remove_file(old);
                    }
                }
            }
            Redirect::to("/apps?done=certificate").into_response()
        }
        Err(p) => {
            let _ = std::fs::remove_file(&certificate_file);
            let _ = std::fs::remove_file(&key_file);
            let field = match p.field.as_deref() {
                Some("credential.key_file") => Some("key"),
                Some(f) if f.starts_with("credential") => Some("certificate"),
                _ => None,
            };
            refuse(field, p.detail.clone(), p.status).await
        }
    }
}
