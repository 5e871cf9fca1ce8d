//! The admin-consent endpoint `GET /{tenant}/v2.0/adminconsent` (`microsoft-protocols.md`
//! §1.2): an administrator signs in, reviews every permission of the app (application
//! and delegated) and accepts for the organization; the answer goes back as
//! `?admin_consent=True&tenant={tid}&scope=...&state=...`.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;

use super::authorize::{app_for_segment, params};
use super::errors;
use super::pages;
use super::resolve_segment;
use super::signin::show_signin;
use super::state::{AdminConsentRequest, Flow, FlowKind, Step};
use crate::emulator::Emulator;

/// `GET /{tenant}/v2.0/adminconsent`.
pub async fn adminconsent(
    State(emulator): State<Emulator>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let now = emulator.now();
    let p = params(query.as_deref().unwrap_or_default());
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let segment = match resolve_segment(&emulator, &tenant) {
        Ok(s) => s,
        Err(e) => return pages::error_page(&e.to_error(false), now),
    };
    let Some(client_id) = get("client_id") else {
        return pages::error_page(&errors::missing_parameter("client_id"), now);
    };
    let app = match app_for_segment(&emulator, segment, client_id) {
        Ok(a) => a,
        Err(e) => return pages::error_page(&e, now),
    };
    let redirect_uri = match get("redirect_uri") {
        Some(r) => r.to_owned(),
        None => match app.redirect_uris.first() {
            Some(r) => r.uri.clone(),
            None => return pages::error_page(&errors::no_reply_address(), now),
        },
    };
    if app.redirect_platform(&redirect_uri).is_none() {
        return pages::error_page(
            &errors::redirect_mismatch(&redirect_uri, &app.client_id.to_string()),
            now,
        );
    }
    let flow = Flow {
        kind: FlowKind::AdminConsent(AdminConsentRequest {
            redirect_uri,
            scope: get("scope").map(str::to_owned),
            state: get("state").map(str::to_owned),
        }),
        segment,
        client_id: app.client_id,
        user: None,
        step: Step::SignIn,
        login_hint: get("login_hint").map(str::to_owned),
        created: now,
    };
    show_signin(&emulator, flow, None)
}
