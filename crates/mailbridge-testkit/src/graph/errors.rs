//! The Graph error envelope (`microsoft-protocols.md` §3.7) and the per-request
//! correlation headers every Graph answer carries.
//!
//! <https://learn.microsoft.com/graph/errors>

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::mailstore::MailStoreError;

/// `Content-Type` of Graph's JSON answers.
pub const ODATA_JSON: &str = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8";

/// The `WWW-Authenticate` value that accompanies Graph's 401 answers.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"";

/// `x-ms-ags-diagnostic` as Graph sends it (fixed emulator values).
const AGS_DIAGNOSTIC: &str = r#"{"ServerInfo":{"DataCenter":"Emulated","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"EMULATOR","ADSiteName":"LOC"}}"#;

/// `request-id` and `client-request-id` of one request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    /// The caller's `client-request-id` when it sent one, else the request id.
    pub client_request_id: String,
}

impl RequestIds {
    /// Fresh ids for a request with these headers.
    pub fn for_request(headers: &HeaderMap) -> Self {
        let request_id = uuid::Uuid::new_v4().to_string();
        let client_request_id = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(|| request_id.clone(), str::to_owned);
        Self {
            request_id,
            client_request_id,
        }
    }

    /// Adds `request-id`, `client-request-id` and `x-ms-ags-diagnostic` to an answer.
    pub fn decorate(&self, response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in [
            ("request-id", self.request_id.as_str()),
            ("client-request-id", self.client_request_id.as_str()),
            ("x-ms-ags-diagnostic", AGS_DIAGNOSTIC),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

/// One Graph error answer.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`, `Location`).
    pub headers: Vec<(HeaderName, String)>,
    /// The mail store connection broke (worth one more try for a read).
    pub transient: bool,
}

impl GraphError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            headers: Vec::new(),
            transient: false,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 401 `InvalidAuthenticationToken` with `WWW-Authenticate`.
    pub fn invalid_token(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
        .with_header(header::WWW_AUTHENTICATE, WWW_AUTHENTICATE)
    }

    /// 403 `ErrorAccessDenied`: the token lacks the permission for the operation.
    pub fn access_denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    }

    /// 403 `ErrorAccessDenied`: an application access policy excludes the mailbox.
    pub fn odata_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access to OData is disabled.",
        )
    }

    /// 404 `ErrorItemNotFound`.
    pub fn item_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    /// 400 `ErrorInvalidIdMalformed`.
    pub fn malformed_id() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
        )
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 400 `InefficientFilter` for `$filter` / `$orderby` the service will not run.
    pub fn inefficient_filter() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InefficientFilter",
            "The restriction or sort order is too complex for this operation.",
        )
    }

    /// 400 for a body that is not the JSON the operation takes.
    pub fn invalid_body(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            format!("The request body could not be read: {detail}"),
        )
    }

    /// 429 `ApplicationThrottled` with `Retry-After`.
    pub fn throttled(message: &str, retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ApplicationThrottled",
            message,
        )
        .with_header(header::RETRY_AFTER, retry_after_secs.to_string())
    }

    /// The mail store failed: 503 `ServiceNotAvailable` (clients retry).
    pub fn store(error: &MailStoreError) -> Self {
        tracing::warn!(error = %error, "graph: mail store failed");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceNotAvailable",
            format!("The mailbox store is not available: {error}"),
        )
        .with_header(header::RETRY_AFTER, "1");
        e.transient = matches!(error, MailStoreError::Io(_));
        e
    }

    /// The answer, with the envelope of §3.7.
    pub fn into_response(self, ids: &RequestIds, now: OffsetDateTime) -> Response {
        let date = now
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]"
            ))
            .unwrap_or_default();
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": date,
                    "request-id": ids.request_id,
                    "client-request-id": ids.client_request_id,
                }
            }
        });
        let mut response = Response::new(axum::body::Body::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        ids.decorate(&mut response);
        response
    }
}

impl From<MailStoreError> for GraphError {
    fn from(e: MailStoreError) -> Self {
        Self::store(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn envelope_has_inner_error_with_both_ids_and_a_date_without_zone() {
        let mut headers = HeaderMap::new();
        headers.insert("client-request-id", HeaderValue::from_static("abc-123"));
        let ids = RequestIds::for_request(&headers);
        let now = time::macros::datetime!(2024-05-14 09:30:12 UTC);
        let response = GraphError::access_denied().into_response(&ids, now);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()["client-request-id"], "abc-123");
        let request_id = response.headers()["request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "ErrorAccessDenied");
        assert_eq!(
            v["error"]["message"],
            "Access is denied. Check credentials and try again."
        );
        assert_eq!(v["error"]["innerError"]["date"], "2024-05-14T09:30:12");
        assert_eq!(v["error"]["innerError"]["request-id"], request_id.as_str());
        assert_eq!(v["error"]["innerError"]["client-request-id"], "abc-123");
    }
}
