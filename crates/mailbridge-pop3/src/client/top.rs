//! `TOP msg n` ([RFC 1939 §7](https://www.rfc-editor.org/rfc/rfc1939#section-7)): a
//! message's header and the first `n` lines of its body, without downloading the rest.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::{Pop3Client, Pop3Error};

/// Most bytes of a `TOP` answer kept; longer answers are read to the end and cut.
pub const MAX_TOP_BYTES: usize = 256 * 1024;

impl Pop3Client {
    /// `TOP n lines`: the header of message `n` and its first `lines` body lines, dot
    /// stuffing removed, CR LF line ends kept, at most [`MAX_TOP_BYTES`] kept. The
    /// answer is read to its end within the account's bounds (message size, time per
    /// command).
    pub async fn top(&mut self, n: u32, lines: u32) -> Result<Vec<u8>, Pop3Error> {
        self.start_command();
        let max = self.limits.max_message_size;
        let result = async {
            self.command(&format!("TOP {n} {lines}"), "TOP").await?;
            let mut out = Capped(Vec::new());
            self.read_body(n, "TOP", max, &mut out).await?;
            Ok(out.0)
        }
        .await;
        self.end_command(result)
    }
}

/// Keeps the first [`MAX_TOP_BYTES`] written, drops the rest.
struct Capped(Vec<u8>);

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let room = MAX_TOP_BYTES.saturating_sub(this.0.len());
        this.0.extend_from_slice(buf.get(..room).unwrap_or(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
