//! Reading one message's header for "test receive": a sink that keeps only the start
//! of a streamed message, the header block parsed from it, and the line the report
//! shows.

use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes of a message kept to find its header.
const HEADER_LIMIT: usize = 64 * 1024;

/// An `AsyncWrite` that keeps the first [`HEADER_LIMIT`] bytes and drops the rest.
#[derive(Debug, Default)]
pub(super) struct HeaderSink(pub Vec<u8>);

impl tokio::io::AsyncWrite for HeaderSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let room = HEADER_LIMIT.saturating_sub(self.0.len());
        let keep = buf.get(..room.min(buf.len())).unwrap_or_default();
        self.0.extend_from_slice(keep);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The header fields of a message (unfolded), up to the first empty line.
pub(super) fn parse(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// "N header fields; Subject: ...; From: ..." for the report; `None` when there are
/// no header fields at all.
pub(super) fn summary(headers: &[(String, String)]) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    let mut parts = vec![format!("{} header fields", headers.len())];
    for wanted in ["Subject", "From", "Date", "Message-ID"] {
        if let Some((name, value)) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(wanted)) {
            let short: String = value.chars().take(80).collect();
            parts.push(format!("{name}: {short}"));
        }
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_headers_and_the_body_boundary() {
        let h = parse(b"Subject: a\r\n  b\r\nFrom: x@y\r\n\r\nBody: not a header\r\n");
        assert_eq!(
            h,
            [
                ("Subject".to_owned(), "a b".to_owned()),
                ("From".to_owned(), "x@y".to_owned())
            ]
        );
        assert_eq!(
            summary(&h).unwrap(),
            "2 header fields; Subject: a b; From: x@y"
        );
        assert!(summary(&parse(b"\r\nno header")).is_none());
    }
}
