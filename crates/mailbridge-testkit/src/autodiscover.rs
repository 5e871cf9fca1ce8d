//! Autodiscover v2 (`microsoft-protocols.md` §7.1): unauthenticated JSON lookups of a
//! protocol's URL for a mailbox.
//!
//! - `GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS` and the legacy
//!   query form `GET /autodiscover/autodiscover.json?Email=…&Protocol=…`.
//! - A user with a licensed mailbox: 200 `{"Protocol":"EWS","Url":"{base}/EWS/Exchange.asmx"}`,
//!   the protocol echoed as sent (matched case-insensitively).
//! - Any other address: 302 to the query form with `RedirectCount` one higher, as
//!   Exchange Online does for addresses it has no mailbox for (so a client that does not
//!   cap redirects loops, as it would against Microsoft).
//! - An unknown protocol (IMAP, POP and SMTP are not discoverable): 400 `InvalidProtocol`.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::emulator::Emulator;

/// The Autodiscover routes.
pub fn router() -> Router<Emulator> {
    Router::new()
        .route("/autodiscover/autodiscover.json/v1.0/{email}", get(by_path))
        .route("/autodiscover/autodiscover.json", get(by_query))
}

/// Query parameters, names matched case-insensitively.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

async fn by_path(
    State(emulator): State<Emulator>,
    Path(email): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let protocol = param(query.as_deref(), "Protocol").unwrap_or_default();
    answer(&emulator, &email, &protocol, 0)
}

async fn by_query(State(emulator): State<Emulator>, RawQuery(query): RawQuery) -> Response {
    let q = query.as_deref();
    let email = param(q, "Email").unwrap_or_default();
    let protocol = param(q, "Protocol").unwrap_or_default();
    let redirects = param(q, "RedirectCount")
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    answer(&emulator, &email, &protocol, redirects)
}

/// The path of a protocol's endpoint under the base URL.
fn endpoint(protocol: &str) -> Option<&'static str> {
    match protocol.to_ascii_lowercase().as_str() {
        "ews" => Some("/EWS/Exchange.asmx"),
        "activesync" => Some("/Microsoft-Server-ActiveSync"),
        "autodiscoverv1" => Some("/autodiscover/autodiscover.xml"),
        "rest" => Some("/api"),
        _ => None,
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("request-id", id);
    }
    response
}

fn answer(emulator: &Emulator, email: &str, protocol: &str, redirects: u32) -> Response {
    let Some(path) = endpoint(protocol) else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({
                "ErrorCode": "InvalidProtocol",
                "ErrorMessage": format!(
                    "The given protocol value '{protocol}' is invalid. Supported values are 'Rest,ActiveSync,Ews,AutodiscoverV1'"
                ),
            }),
        );
    };
    let known = emulator.read(|m| {
        m.user(email.trim())
            .is_some_and(|(_, u)| u.mailbox.licensed)
    });
    let base = emulator.base_url();
    if known {
        return json(
            StatusCode::OK,
            &serde_json::json!({"Protocol": protocol, "Url": format!("{base}{path}")}),
        );
    }
    let encoded = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let location = format!(
        "{base}/autodiscover/autodiscover.json?Email={}&Protocol={}&RedirectCount={}",
        encoded(email),
        encoded(protocol),
        redirects.saturating_add(1)
    );
    let body = format!(
        "<html><head><title>Object moved</title></head><body>\r\n<h2>Object moved to <a href=\"{}\">here</a>.</h2>\r\n</body></html>\r\n",
        quick_xml::escape::escape(location.as_str())
    );
    let mut response = (StatusCode::FOUND, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    response
}
