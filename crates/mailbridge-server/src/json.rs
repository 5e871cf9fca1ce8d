//! [`ApiJson`]: a JSON request body read with bounds and answered, when wrong, with a
//! problem that names the field.
//!
//! - not `application/json` -> 415 `unsupported-media-type`;
//! - larger than the API's body limit -> 413 `body-too-large`;
//! - not JSON at all, or cut off -> 400 `malformed-json` (with line and column);
//! - a wrong type, a missing field or a bad value -> 422 `invalid-field` with the
//!   field's JSON path (`routes[2].when.subject`);
//! - a field the type does not have (request types deny unknown fields) -> 422
//!   `unknown-field` with its path.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::problem::Problem;

/// A JSON body of type `T`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "JSON expected",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                    rejection.body_text(),
                )
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "Request body could not be read",
                    rejection.body_text(),
                )
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// A request body read within the body limit, answered 413 `body-too-large` (or 400)
/// as a problem when it cannot be read; its media type kept. Handlers that must check
/// the caller's role before looking at the body take this, then [`ApiBody::json`].
#[derive(Debug, Clone)]
pub struct ApiBody {
    pub bytes: Bytes,
    /// The media type without parameters, lower case (`""` when none was sent).
    pub media_type: String,
}

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                    rejection.body_text(),
                )
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-body",
                    "Request body could not be read",
                    rejection.body_text(),
                )
            }
        })?;
        Ok(Self { bytes, media_type })
    }
}

impl ApiBody {
    /// Whether the body was declared JSON (`application/json` or `application/*+json`).
    pub fn is_json(&self) -> bool {
        let v = self.media_type.as_str();
        v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
    }

    /// The body as a `T`: 415 when it was not declared JSON, else as [`parse`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if !self.is_json() {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "JSON expected",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        parse(&self.bytes)
    }
}

/// `bytes` as a `T`, or the problem naming what is wrong and where.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                format!("the body is not valid JSON: {inner}"),
            ),
            Category::Data => {
                let text = inner.to_string();
                let unknown = text.starts_with("unknown field");
                // serde_path_to_error's path ends at the unknown field itself.
                let field = path;
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    if unknown {
                        "unknown-field"
                    } else {
                        "invalid-field"
                    },
                    if unknown {
                        "Unknown field"
                    } else {
                        "Invalid field"
                    },
                    format!("{field}: {}", strip_position(&text)),
                )
                .with_field(field)
            }
        }
    })?;
    de.end().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            format!("the body has more after its JSON value: {e}"),
        )
    })?;
    Ok(value)
}

/// serde_json's " at line 1 column 17" is noise next to a field path.
fn strip_position(text: &str) -> &str {
    text.rsplit_once(" at line ").map_or(text, |(head, _)| head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Route {
        name: String,
        when: When,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct When {
        max_size: Option<u64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        routes: Vec<Route>,
    }

    #[test]
    fn each_mistake_names_its_field() {
        for (body, status, code, field) in [
            (&br#"{"routes": [{"name": "a", "when": {}}, {"name": "b", "when": {"max_size": "big"}}]}"#[..], 422, "invalid-field", Some("routes[1].when.max_size")),
            (br#"{"routes": [{"name": "a", "when": {"sender": "x"}}]}"#, 422, "unknown-field", Some("routes[0].when.sender")),
            (br#"{"routes": [{"when": {}}]}"#, 422, "invalid-field", Some("routes[0]")),
            (br#"{"routes": [{"name": 7, "when": {}}]}"#, 422, "invalid-field", Some("routes[0].name")),
            (br#"{"extra": 1, "routes": []}"#, 422, "unknown-field", Some("extra")),
            (br#"{"routes": ["#, 400, "malformed-json", None),
            (br#"{"routes": []} trailing"#, 400, "malformed-json", None),
            (b"\xff\xfe", 400, "malformed-json", None),
        ] {
            let p = parse::<Body>(body).unwrap_err();
            assert_eq!((p.status.as_u16(), p.code, p.field.as_deref()), (status, code, field), "{}: {}", String::from_utf8_lossy(body), p.detail);
        }
        assert!(parse::<Body>(br#"{"routes": []}"#).is_ok());
    }
}
