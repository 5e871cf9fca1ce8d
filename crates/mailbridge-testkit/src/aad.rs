//! Error answers of the identity platform, in Microsoft's exact shape
//! (`microsoft-protocols.md` §1.5):
//! `error`, `error_description` (`AADSTS<code>: <text>` then `Trace ID`, `Correlation ID`
//! and `Timestamp` lines joined by CR LF), `error_codes`, `timestamp`, `trace_id`,
//! `correlation_id`, `error_uri`, and `suberror` / `claims` where Microsoft sends them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

/// One identity-platform error.
#[derive(Debug, Clone)]
pub struct AadError {
    pub status: StatusCode,
    /// OAuth `error` (`invalid_client`, `invalid_grant`, ...).
    pub error: &'static str,
    /// The AADSTS number, e.g. `7000215`.
    pub code: u32,
    /// The message after `AADSTS<code>: `.
    pub message: String,
    pub suberror: Option<&'static str>,
    pub claims: Option<String>,
}

impl AadError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
            claims: None,
        }
    }

    /// Adds a `suberror`.
    #[must_use]
    pub fn suberror(mut self, suberror: &'static str) -> Self {
        self.suberror = Some(suberror);
        self
    }

    /// Adds a claims challenge (a JSON string).
    #[must_use]
    pub fn claims(mut self, claims: impl Into<String>) -> Self {
        self.claims = Some(claims.into());
        self
    }

    /// `AADSTS<code>: <message>`, the text shown on error pages.
    pub fn headline(&self) -> String {
        format!("AADSTS{}: {}", self.code, self.message)
    }

    /// The JSON body at time `now`.
    pub fn body(&self, now: OffsetDateTime) -> Value {
        let ts = now
            .format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .unwrap_or_default();
        let trace = Uuid::new_v4().to_string();
        let correlation = Uuid::new_v4().to_string();
        let mut body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let Some(obj) = body.as_object_mut() {
            if let Some(s) = self.suberror {
                obj.insert("suberror".into(), json!(s));
            }
            if let Some(c) = &self.claims {
                obj.insert("claims".into(), json!(c));
            }
        }
        body
    }

    /// The HTTP answer at time `now`.
    pub fn into_response_at(self, now: OffsetDateTime) -> Response {
        json_response(self.status, &self.body(now))
    }
}

/// A JSON answer with the identity platform's headers.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(&Uuid::new_v4().to_string()) {
        h.insert("x-ms-request-id", v);
    }
    h.insert(
        "x-ms-ests-server",
        HeaderValue::from_static("2.1.0 - mailbridge-testkit"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_microsofts_fields_and_crlf_lines() {
        let now = time::macros::datetime!(2016-01-09 02:02:12 UTC);
        let e = AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' is not valid.",
        );
        let b = e.body(now);
        let d = b["error_description"].as_str().unwrap();
        assert!(d.starts_with("AADSTS70011: The provided value"));
        assert!(d.contains("\r\nTrace ID: "));
        assert!(d.ends_with("\r\nTimestamp: 2016-01-09 02:02:12Z"));
        assert_eq!(b["timestamp"], "2016-01-09 02:02:12Z");
        assert_eq!(b["error_codes"], json!([70011]));
        assert_eq!(
            b["error_uri"],
            "https://login.microsoftonline.com/error?code=70011"
        );
        assert!(b.get("suberror").is_none());
    }
}
