//! The device-code flow (`microsoft-protocols.md` §1.3.5): `POST
//! /{tenant}/oauth2/v2.0/devicecode` hands out a user code and a device code; the user
//! enters the code at `GET /devicelogin`, signs in (MFA, "Are you trying to sign in to
//! &lt;app&gt;?", consent) while the client polls the token endpoint.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::authorize::{app_for_segment, params};
use super::errors;
use super::pages;
use super::resolve_segment;
use super::signin::show_signin;
use super::state::{DeviceCode, DeviceStatus, Flow, FlowKind, Step};
use crate::aad::{AadError, json_response};
use crate::crypto::{random_bytes, random_token};
use crate::emulator::Emulator;
use crate::tokens::ScopeSet;

/// Letters and digits of user codes (no look-alikes).
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn user_code() -> String {
    random_bytes(9)
        .iter()
        .filter_map(|b| {
            USER_CODE_ALPHABET
                .get(usize::from(*b) % USER_CODE_ALPHABET.len())
                .map(|c| char::from(*c))
        })
        .collect()
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub async fn devicecode(
    State(emulator): State<Emulator>,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let now = emulator.now();
    match start(&emulator, &tenant, &String::from_utf8_lossy(&body)) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => e.into_response_at(now),
    }
}

fn start(emulator: &Emulator, tenant: &str, body: &str) -> Result<serde_json::Value, AadError> {
    let form = params(body);
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let segment = resolve_segment(emulator, tenant).map_err(|e| e.to_error(false))?;
    let client_id = get("client_id").ok_or_else(|| errors::missing_parameter("client_id"))?;
    let app = app_for_segment(emulator, segment, client_id)?;
    let scope = get("scope").ok_or_else(|| errors::missing_parameter("scope"))?;
    let set = ScopeSet::parse(scope);
    if let Some(unknown) = set.unknown_resources.first() {
        let directory = emulator.read(|m| segment.directory_name(m));
        return Err(errors::resource_not_found(unknown, &directory));
    }
    let knobs = emulator.knobs();
    let code = user_code();
    let device_code = format!("DAQABAAEAAAD--{}", random_token(96));
    let verification_uri = format!("{}/devicelogin", emulator.base_url());
    emulator.identity_state().device_codes.insert(
        device_code.clone(),
        DeviceCode {
            user_code: code.clone(),
            client_id: app.client_id,
            segment,
            scope: scope.to_owned(),
            expires: emulator
                .now()
                .saturating_add(time::Duration::seconds(knobs.device_code_expires_secs)),
            status: DeviceStatus::Pending,
        },
    );
    Ok(json!({
        "user_code": code,
        "device_code": device_code,
        "verification_uri": verification_uri,
        "expires_in": knobs.device_code_expires_secs,
        "interval": knobs.device_code_interval_secs,
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code {code} to authenticate."
        ),
    }))
}

/// `GET /devicelogin`: the page to enter the code.
pub async fn devicelogin_page() -> Response {
    pages::device_entry_page(None)
}

/// Form of the code-entry page.
#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    otc: String,
}

/// `POST /devicelogin`: checks the code and starts the sign-in.
pub async fn devicelogin_submit(
    State(emulator): State<Emulator>,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    let now = emulator.now();
    let found = emulator.identity_state().device_by_user_code(&form.otc);
    let Some((key, device)) = found else {
        return pages::device_entry_page(Some(
            "That code didn't work. Check the code and try again.",
        ));
    };
    if now >= device.expires {
        return pages::device_entry_page(Some(
            "AADSTS70019: Verification code expired. Go back to the app or device and restart the sign-in.",
        ));
    }
    if !matches!(device.status, DeviceStatus::Pending) {
        return pages::device_entry_page(Some(
            "That code was already used. Go back to the app or device and restart the sign-in.",
        ));
    }
    let (client_id, segment) = (device.client_id, device.segment);
    let flow = Flow {
        kind: FlowKind::Device { device_code: key },
        segment,
        client_id,
        user: None,
        step: Step::SignIn,
        login_hint: None,
        created: now,
    };
    show_signin(&emulator, flow, None)
}
