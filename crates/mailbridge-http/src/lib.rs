//! mailbridge-http: reading an HTTP answer's body with a bound, for every client of
//! an HTTP endpoint (Microsoft Graph, EWS, autodetection), so a server that sends
//! more than it should cannot make mailbridge hold it all in memory.
//!
//! Parts:
//! - [`bounded_body`]: the body, chunk by chunk, up to a limit (`content-length` is
//!   not trusted, but one over the limit is refused before reading);
//! - [`BodyError`]: the answer broke off, or was larger than the limit.

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
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Http)? {
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
