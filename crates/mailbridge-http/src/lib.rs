//! mailbridge-http: reading an HTTP answer's body with a bound, for every client of
//! an HTTP endpoint (Microsoft Graph, EWS, autodetection), so a server that sends
//! more than it should cannot make mailbridge hold it all in memory.
//!
//! Parts:
//! - [`bounded_body`]: the body, chunk by chunk, up to a limit (`content-length` is
//!   not trusted, but one over the limit is refused before reading);
//! - [`BodyError`]: the answer broke off, or was larger than the limit;
//! - [`redact_url`] / [`redact`]: a URL as it may be shown in an error, a log line or
//!   an event (no query, fragment or user info: an upload session's URL, a SAS link
//!   or a delta token carry their own credential there);
//! - [`same_origin`] / [`check_origin`]: whether a URL a server handed out (a Graph
//!   `@odata.nextLink`, an EWS redirect, an Autodiscover answer) is on the scheme,
//!   host and port of the endpoint that was configured, so a token goes nowhere else;
//! - [`without_url`]: a reqwest error without the URL its Display would print.

/// `url` as it may be shown: scheme, host, port and path, without user info, query
/// or fragment (which may carry a credential: an upload session's `uploadUrl`, a
/// SAS signature, a delta token). A query or fragment removed is marked `?…`.
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let had_extra = url.query().is_some() || url.fragment().is_some();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_extra {
        text.push_str("?…");
    }
    text
}

/// [`redact_url`] of a URL given as text. Text that is not a URL is cut at the first
/// `?` or `#` and loses anything before an `@` in its authority, so nothing that could
/// be a credential is shown either way.
pub fn redact(url: &str) -> String {
    if let Ok(parsed) = url::Url::parse(url) {
        return redact_url(&parsed);
    }
    let (base, cut) = match url.find(['?', '#']) {
        Some(at) => (url.get(..at).unwrap_or_default(), true),
        None => (url, false),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if rest.contains('/') {
                format!("{scheme}://{authority}/{path}")
            } else {
                format!("{scheme}://{authority}")
            }
        }
        None => base.to_owned(),
    };
    if cut { format!("{base}?…") } else { base }
}

/// True when `a` and `b` have the same scheme, host and port (the default port of the
/// scheme when none is written).
pub fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme().eq_ignore_ascii_case(b.scheme())
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.host_str().is_some()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A URL a server handed out that is not on the configured endpoint's origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{link} is not on {endpoint}: mailbridge sends credentials only to the scheme, host and port it was configured with"
)]
pub struct ForeignUrl {
    /// The configured endpoint, redacted.
    pub endpoint: String,
    /// The URL the server gave, redacted.
    pub link: String,
}

/// `link` parsed, when it has the scheme, host and port of `endpoint`; both redacted
/// in the error otherwise (a link that is not a URL at all is foreign too).
pub fn check_origin(endpoint: &url::Url, link: &str) -> Result<url::Url, ForeignUrl> {
    match url::Url::parse(link) {
        Ok(parsed) if same_origin(endpoint, &parsed) => Ok(parsed),
        _ => Err(ForeignUrl {
            endpoint: redact_url(endpoint),
            link: redact(link),
        }),
    }
}

/// `error` without the URL it carries (reqwest prints the request's URL, query and
/// all, in its Display and Debug).
pub fn without_url(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the answer broke off")]
    Http(#[source] reqwest::Error),
    #[error("an answer larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// The body of `response`, read chunk by chunk up to `limit` bytes.
pub async fn bounded_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Http(e.without_url()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A one-answer HTTP server: `body` in chunks, with or without `content-length`.
    async fn serve(body: Vec<u8>, with_length: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = if with_length {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
            } else {
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
            };
            let _ = s.write_all(head.as_bytes()).await;
            if with_length {
                let _ = s.write_all(&body).await;
            } else {
                for part in body.chunks(1000) {
                    let _ = s
                        .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .await;
                    let _ = s.write_all(part).await;
                    let _ = s.write_all(b"\r\n").await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        });
        format!("http://{addr}/")
    }

    #[test]
    fn redacted_urls_keep_no_query_fragment_or_user_info() {
        let upload = "https://outlook.office.com/api/v2.0/Users('x')/Messages('y')/AttachmentSessions('z')?authtoken=eyJhbGciOiJSUzI1NiJ9.secret";
        let shown = redact(upload);
        assert!(
            !shown.contains("authtoken") && !shown.contains("secret"),
            "{shown}"
        );
        assert!(
            shown.starts_with("https://outlook.office.com/api/v2.0/"),
            "{shown}"
        );
        assert!(shown.ends_with("?…"), "{shown}");
        let shown = redact("https://user:pw@example.com:8443/a/b#frag");
        assert_eq!(shown, "https://example.com:8443/a/b?…");
        assert_eq!(
            redact("https://graph.microsoft.com/v1.0/me"),
            "https://graph.microsoft.com/v1.0/me"
        );
        // Not a URL: still cut.
        assert_eq!(redact("not a url?sig=abc"), "not a url?…");
        assert_eq!(redact("x://u:p@h/p?q"), "x://h/p?…");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let root = url::Url::parse("https://graph.microsoft.com/v1.0").unwrap();
        assert!(
            check_origin(
                &root,
                "https://GRAPH.microsoft.com:443/v1.0/me/x?$deltatoken=1"
            )
            .is_ok()
        );
        for foreign in [
            "http://graph.microsoft.com/v1.0/me",
            "https://graph.microsoft.com:8443/v1.0/me",
            "https://evil.example/v1.0/me",
            "https://graph.microsoft.com.evil.example/v1.0/me",
            "/v1.0/me",
            "",
        ] {
            let err = check_origin(&root, foreign).unwrap_err();
            assert_eq!(err.endpoint, "https://graph.microsoft.com/v1.0");
        }
        let err = check_origin(&root, "http://127.0.0.1:9/steal?$skiptoken=secret").unwrap_err();
        assert_eq!(err.link, "http://127.0.0.1:9/steal?…");
        assert!(!err.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn bodies_up_to_the_limit_are_read_and_larger_ones_refused() {
        for with_length in [true, false] {
            let url = serve(vec![b'x'; 5000], with_length).await;
            let r = reqwest::get(&url).await.unwrap();
            assert_eq!(bounded_body(r, 5000).await.unwrap().len(), 5000);
            let url = serve(vec![b'x'; 5001], with_length).await;
            let r = reqwest::get(&url).await.unwrap();
            let err = bounded_body(r, 5000).await.unwrap_err();
            assert!(
                matches!(err, BodyError::TooLarge { limit: 5000 }),
                "{err:?}"
            );
            assert_eq!(err.to_string(), "an answer larger than 5000 bytes");
        }
    }
}
