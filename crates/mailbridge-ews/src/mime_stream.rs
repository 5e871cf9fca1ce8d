//! GetItem's `MimeContent` read as the answer arrives: the base64 text of the one
//! `MimeContent` element is decoded piece by piece into the caller's writer, and only
//! the SOAP envelope around it (bounded) is kept, to be read as any other answer.
//! Peak memory therefore does not follow the message size (up to 201 MiB of base64
//! for a 150 MB message).
//!
//! A pure state machine over bytes ([`MimeScanner::feed`], [`MimeScanner::finish`]),
//! apart from any I/O, so it is fuzzed and tested without a server.
//! <https://learn.microsoft.com/exchange/client-developer/web-service-reference/mimecontent>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Base64 characters decoded at once (a multiple of 4).
const DECODE_BLOCK: usize = 64 * 1024;
/// Longest character reference accepted inside the base64 text (`&#x0000D;`).
const MAX_REFERENCE: usize = 10;

/// Why the answer was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The envelope around the message is larger than `limit` bytes.
    #[error("the SOAP envelope around the message is larger than {limit} bytes")]
    EnvelopeTooLarge { limit: usize },
    /// The message decodes to more than `limit` bytes.
    #[error("the message is larger than {limit} bytes")]
    MessageTooLarge { limit: u64 },
    #[error("MimeContent is not base64: {0}")]
    NotBase64(String),
    #[error("the answer ends inside MimeContent")]
    Truncated,
}

#[derive(Debug)]
enum State {
    /// Before the `MimeContent` start tag's end; `scanned` bytes of the envelope
    /// hold no `<` that starts it.
    Head { scanned: usize },
    /// In the base64 text; `reference` holds a character reference being read.
    Body { reference: Option<Vec<u8>> },
    /// After the text (from its end tag on), or after an empty `MimeContent/`.
    Tail,
}

/// Reads one GetItem answer: the decoded MIME goes out of [`Self::feed`], the
/// envelope (with `MimeContent` left empty) comes back from [`Self::finish`].
#[derive(Debug)]
pub struct MimeScanner {
    state: State,
    /// The envelope: everything but the base64 text.
    envelope: Vec<u8>,
    /// Base64 characters not yet decoded (fewer than a block, or not a multiple of 4).
    pending: Vec<u8>,
    /// Bytes decoded so far.
    decoded: u64,
    max_envelope: usize,
    max_message: u64,
    found: bool,
}

impl MimeScanner {
    /// A scanner keeping at most `max_envelope` bytes of envelope and decoding at most
    /// `max_message` bytes of message.
    pub fn new(max_envelope: usize, max_message: u64) -> Self {
        Self {
            state: State::Head { scanned: 0 },
            envelope: Vec::new(),
            pending: Vec::new(),
            decoded: 0,
            max_envelope,
            max_message,
            found: false,
        }
    }

    /// True once a `MimeContent` element was seen (its text may be empty).
    pub fn found(&self) -> bool {
        self.found
    }

    /// Bytes of message decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Reads the next piece of the answer; decoded message bytes are appended to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ScanError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Head { scanned } => {
                    let start = *scanned;
                    self.push_envelope(input)?;
                    input = &[];
                    if let Some(after_tag) = find_mime_start(&self.envelope, start) {
                        let (end, empty) = after_tag;
                        // What followed the start tag is message text, not envelope.
                        let rest = self.envelope.split_off(end);
                        self.found = true;
                        if empty {
                            self.state = State::Tail;
                            self.push_envelope(&rest)?;
                        } else {
                            self.state = State::Body { reference: None };
                            self.feed(&rest, out)?;
                        }
                        return Ok(());
                    }
                    // Keep scanning from a point that cannot split a start tag.
                    let last_lt = self
                        .envelope
                        .iter()
                        .rposition(|&b| b == b'<')
                        .unwrap_or(self.envelope.len());
                    if let State::Head { scanned } = &mut self.state {
                        *scanned = last_lt;
                    }
                }
                State::Body { reference } => {
                    let mut used = 0;
                    let mut end_of_text = false;
                    for &b in input {
                        used += 1;
                        if let Some(r) = reference {
                            if b == b';' {
                                if !is_whitespace_reference(r) {
                                    return Err(ScanError::NotBase64(format!(
                                        "the character reference &{};",
                                        String::from_utf8_lossy(r)
                                    )));
                                }
                                *reference = None;
                            } else if r.len() >= MAX_REFERENCE {
                                return Err(ScanError::NotBase64(
                                    "an unterminated character reference".into(),
                                ));
                            } else {
                                r.push(b);
                            }
                            continue;
                        }
                        match b {
                            b'<' => {
                                end_of_text = true;
                                used -= 1;
                                break;
                            }
                            b'&' => *reference = Some(Vec::new()),
                            b' ' | b'\t' | b'\r' | b'\n' => {}
                            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => {
                                self.pending.push(b);
                            }
                            other => {
                                return Err(ScanError::NotBase64(format!(
                                    "the byte 0x{other:02x}"
                                )));
                            }
                        }
                    }
                    let rest = input.get(used..).unwrap_or_default();
                    input = &[];
                    if end_of_text {
                        if reference.is_some() {
                            return Err(ScanError::NotBase64(
                                "an unterminated character reference".into(),
                            ));
                        }
                        self.decode(out, true)?;
                        self.state = State::Tail;
                        self.push_envelope(rest)?;
                    } else if self.pending.len() >= DECODE_BLOCK {
                        self.decode(out, false)?;
                    }
                }
                State::Tail => {
                    self.push_envelope(input)?;
                    input = &[];
                }
            }
        }
        Ok(())
    }

    /// The end of the answer: the envelope, `MimeContent` left empty (the whole
    /// answer when there was none, e.g. an error).
    pub fn finish(self) -> Result<Vec<u8>, ScanError> {
        match self.state {
            State::Body { .. } => Err(ScanError::Truncated),
            State::Head { .. } | State::Tail => Ok(self.envelope),
        }
    }

    fn push_envelope(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if self.envelope.len() + bytes.len() > self.max_envelope {
            return Err(ScanError::EnvelopeTooLarge {
                limit: self.max_envelope,
            });
        }
        self.envelope.extend_from_slice(bytes);
        Ok(())
    }

    /// Decodes the pending characters: all of them at the end of the text, else the
    /// largest multiple of 4.
    fn decode(&mut self, out: &mut Vec<u8>, last: bool) -> Result<(), ScanError> {
        let take = if last {
            self.pending.len()
        } else {
            self.pending.len() / 4 * 4
        };
        if take == 0 {
            return Ok(());
        }
        let chars = self.pending.get(..take).unwrap_or_default();
        // Checked before decoding: 4 characters are at most 3 bytes.
        let most = (take as u64).div_ceil(4) * 3;
        if self.decoded + most.saturating_sub(2) > self.max_message {
            return Err(ScanError::MessageTooLarge {
                limit: self.max_message,
            });
        }
        let before = out.len();
        STANDARD
            .decode_vec(chars, out)
            .map_err(|e| ScanError::NotBase64(e.to_string()))?;
        self.decoded += (out.len() - before) as u64;
        if self.decoded > self.max_message {
            out.truncate(before);
            return Err(ScanError::MessageTooLarge {
                limit: self.max_message,
            });
        }
        self.pending.drain(..take);
        Ok(())
    }
}

/// `&#13;`, `&#xA;` and the like: whitespace, which base64 text may hold.
fn is_whitespace_reference(r: &[u8]) -> bool {
    let value = match r {
        [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok()),
        [b'#', dec @ ..] => std::str::from_utf8(dec).ok().and_then(|d| d.parse().ok()),
        _ => None,
    };
    matches!(value, Some(9 | 10 | 13 | 32))
}

/// Where the first `MimeContent` start tag (any prefix) ends, searching from `from`,
/// and whether it is empty (`<t:MimeContent/>`).
fn find_mime_start(doc: &[u8], from: usize) -> Option<(usize, bool)> {
    const NAME: &[u8] = b"MimeContent";
    let mut at = from;
    while let Some(offset) = doc.get(at..)?.iter().position(|&b| b == b'<') {
        let lt = at + offset;
        at = lt + 1;
        // `<name` or `<prefix:name`, then whitespace, `>` or `/`.
        let tag = doc.get(lt + 1..)?;
        let name_len = tag
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))?;
        let name = tag.get(..name_len)?;
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        if local != NAME {
            continue;
        }
        // The end of the tag, outside quoted attribute values.
        let mut quote: Option<u8> = None;
        for (i, &b) in tag.iter().enumerate().skip(name_len) {
            match (quote, b) {
                (Some(q), b) if b == q => quote = None,
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'>') => {
                    let empty = i > 0 && tag.get(i - 1) == Some(&b'/');
                    return Some((lt + 1 + i + 1, empty));
                }
                _ => {}
            }
        }
        // The tag is not complete yet.
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(mime_b64: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:GetItemResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages><m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{mime_b64}</t:MimeContent><t:ItemId Id="AAA=" ChangeKey="B" /></t:Message></m:Items></m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse></s:Body></s:Envelope>"#
        )
    }

    fn scan(doc: &[u8], split: usize, max: u64) -> Result<(Vec<u8>, Vec<u8>), ScanError> {
        let mut s = MimeScanner::new(64 * 1024, max);
        let mut out = Vec::new();
        for piece in doc.chunks(split.max(1)) {
            s.feed(piece, &mut out)?;
        }
        Ok((out, s.finish()?))
    }

    #[test]
    fn the_message_is_decoded_and_the_envelope_kept_in_any_pieces() {
        let message = b"Subject: hi\r\n\r\nbody \xe2\x82\xac\r\n".repeat(50);
        let mut b64 = STANDARD.encode(&message);
        // Line breaks as written by some servers, and as references.
        b64.insert_str(76, "\r\n");
        b64.insert_str(20, "&#13;&#xA;");
        let doc = answer(&b64);
        for split in [1, 2, 3, 7, 64, 1000, doc.len()] {
            let (out, envelope) = scan(doc.as_bytes(), split, 1 << 20).unwrap();
            assert_eq!(out, message, "split {split}");
            let envelope = String::from_utf8(envelope).unwrap();
            assert!(
                envelope.contains(r#"<t:MimeContent CharacterSet="UTF-8"></t:MimeContent>"#),
                "{envelope}"
            );
            let root = crate::xml::parse(&envelope).unwrap();
            assert!(root.find("MimeContent").unwrap().text.is_empty());
        }
    }

    #[test]
    fn errors_and_empty_content_pass_through() {
        let error = r#"<s:Envelope><s:Body><m:GetItemResponseMessage ResponseClass="Error"><m:ResponseCode>ErrorItemNotFound</m:ResponseCode></m:GetItemResponseMessage></s:Body></s:Envelope>"#;
        let (out, envelope) = scan(error.as_bytes(), 5, 100).unwrap();
        assert!(out.is_empty());
        assert_eq!(envelope, error.as_bytes());
        let (out, _) = scan(b"<a><t:MimeContent CharacterSet='a>b'/></a>", 3, 100).unwrap();
        assert!(out.is_empty());
        let (out, _) = scan(answer("").as_bytes(), 4, 100).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn bounds_and_bad_text_are_errors() {
        let doc = answer(&STANDARD.encode(vec![b'x'; 1000]));
        assert_eq!(
            scan(doc.as_bytes(), 100, 999).unwrap_err(),
            ScanError::MessageTooLarge { limit: 999 }
        );
        assert!(scan(doc.as_bytes(), 100, 1000).is_ok());
        let cut = doc.get(..doc.len() / 2).unwrap();
        assert_eq!(
            scan(cut.as_bytes(), 100, 1000).unwrap_err(),
            ScanError::Truncated
        );
        for bad in ["QUJD*", "QUJ", "&lt;QUJD", "&#x41;QUJD", "&#1234567890123;"] {
            assert!(
                matches!(
                    scan(answer(bad).as_bytes(), 3, 1000).unwrap_err(),
                    ScanError::NotBase64(_)
                ),
                "{bad}"
            );
        }
        let mut s = MimeScanner::new(10, 10);
        assert_eq!(
            s.feed(b"<a>0123456789</a>", &mut Vec::new()).unwrap_err(),
            ScanError::EnvelopeTooLarge { limit: 10 }
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_pieces_never_panic(
            doc in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            split in 1usize..50,
        ) {
            if let Ok((out, envelope)) = scan(&doc, split, 100) {
                proptest::prop_assert!(out.len() <= 100);
                proptest::prop_assert!(envelope.len() <= doc.len());
            }
        }
    }
}
