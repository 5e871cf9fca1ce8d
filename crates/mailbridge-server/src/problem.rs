//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.
//!
//! Every error the API answers is a [`Problem`]: `type`, `title`, `status`, `detail`,
//! a machine-readable `code` that never changes once published, and for invalid input
//! the `field` (a JSON path such as `routes[2].when.subject`) that caused it. Clients
//! match on `code` and `field`, people read `title` and `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable, machine-readable (see [`ProblemDocument::code`]).
    pub code: &'static str,
    /// A short summary of the kind of problem.
    pub title: &'static str,
    /// What happened here, and what to do.
    pub detail: String,
    /// The JSON path of the field at fault, for invalid input.
    pub field: Option<String>,
}

/// A [`Problem`] as it is sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDocument {
    /// A URI naming the kind of problem: `urn:mailbridge:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened here, and what to do.
    pub detail: String,
    /// Stable, machine-readable: `unauthenticated`, `forbidden`, `not-found`,
    /// `not-ready`, `not-running`, `malformed-json`, `malformed-body`,
    /// `invalid-field`, `unknown-field`, `invalid-header`, `body-too-large`,
    /// `message-too-large`, `unsupported-media-type`, `method-not-allowed`,
    /// `timeout`, `internal`; conflicts: `exists`, `in-use`, `in-config-file`,
    /// `builtin`, `pending-work`, `send-off`, `cannot-check`, `no-incoming-side`;
    /// the mailbox behind a request: `sign-in-failed`, `mailbox-failed`,
    /// `limit-exceeded`, `throttled`, `mailbox-timeout`.
    pub code: String,
    /// The JSON path of the field at fault, for invalid input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with this status, code, title and detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            field: None,
        }
    }

    /// The document sent.
    pub fn document(&self) -> ProblemDocument {
        ProblemDocument {
            kind: format!("urn:mailbridge:problem:{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            field: self.field.clone(),
        }
    }

    /// The same problem, naming the field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 401: no token, or one mailbridge does not know.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign-in required",
            detail,
        )
    }

    /// 403: a known token whose role does not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 500, logged with its detail; the answer says only where to look.
    pub fn internal(request_id: Option<&str>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            match request_id {
                Some(id) => format!(
                    "mailbridge could not complete the request; its log has the details under request id {id}"
                ),
                None => {
                    "mailbridge could not complete the request; its log has the details".to_owned()
                }
            },
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = serde_json::to_vec(&self.document()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
