//! `TOP msg n` ([RFC 1939 §7](https://www.rfc-editor.org/rfc/rfc1939#section-7)): a
//! message's header and the first `n` lines of its body, without downloading the rest.

use super::{Pop3Client, Pop3Error};

/// Most bytes of a `TOP` answer kept; longer answers are read to the end and cut.
pub const MAX_TOP_BYTES: usize = 256 * 1024;

impl Pop3Client {
    /// `TOP n lines`: the header of message `n` and its first `lines` body lines, dot
    /// stuffing removed, CR LF line ends kept, at most [`MAX_TOP_BYTES`].
    pub async fn top(&mut self, n: u32, lines: u32) -> Result<Vec<u8>, Pop3Error> {
        self.command(&format!("TOP {n} {lines}"), "TOP").await?;
        let mut out = Vec::new();
        loop {
            let line = self.read_line("TOP").await?;
            if line == b"." {
                return Ok(out);
            }
            let content = line.strip_prefix(b".").unwrap_or(&line);
            if out.len() + content.len() + 2 <= MAX_TOP_BYTES {
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}
