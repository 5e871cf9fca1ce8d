//! Graph ids for messages, folders and attachments.
//!
//! Exchange ids are long base64 strings (`AAMkAD…` for items, `AQMkAD…` for folders)
//! with `-`/`_` in place of `+`/`/` in REST. The emulator's ids carry the
//! [`StoredMessageId`] itself, so they are stable for as long as the message stays in
//! its folder and change when it moves, as Graph's do (without `Prefer:
//! IdType="ImmutableId"`).
//!
//! <https://learn.microsoft.com/graph/outlook-immutable-id>

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

use crate::mailstore::StoredMessageId;

/// Decodes to `AAMkAD…`.
const MESSAGE_PREFIX: [u8; 5] = [0x00, 0x03, 0x24, 0x00, 0x30];
/// Decodes to `AQMkAD…`.
const FOLDER_PREFIX: [u8; 5] = [0x01, 0x03, 0x24, 0x00, 0x30];
/// Decodes to `AAMkAD…` too; the sixth byte tells attachments from messages.
const ATTACHMENT_PREFIX: [u8; 5] = [0x00, 0x03, 0x24, 0x00, 0x31];

/// Longest id accepted (ids are decoded from untrusted paths).
const MAX_ID_LEN: usize = 4096;

fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

/// A reader over untrusted id bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    fn string(&mut self) -> Option<String> {
        let len: [u8; 2] = self.take(2)?.try_into().ok()?;
        let bytes = self.take(usize::from(u16::from_be_bytes(len)))?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn encode_stored(out: &mut Vec<u8>, id: &StoredMessageId) {
    out.extend_from_slice(&id.uid_validity.to_be_bytes());
    out.extend_from_slice(&id.uid.to_be_bytes());
    push_str(out, &id.folder);
    push_str(out, &id.mailbox.to_ascii_lowercase());
}

fn decode_stored(r: &mut Reader<'_>) -> Option<StoredMessageId> {
    let uid_validity = r.u32()?;
    let uid = r.u32()?;
    let folder = r.string()?;
    let mailbox = r.string()?;
    Some(StoredMessageId {
        mailbox,
        folder,
        uid_validity,
        uid,
    })
}

fn decode_with_prefix(id: &str, prefix: &[u8]) -> Option<Vec<u8>> {
    if id.len() > MAX_ID_LEN {
        return None;
    }
    let bytes = URL_SAFE.decode(id).ok()?;
    bytes.strip_prefix(prefix).map(<[u8]>::to_vec)
}

/// The Graph id of a message.
pub fn message_id(id: &StoredMessageId) -> String {
    let mut out = MESSAGE_PREFIX.to_vec();
    encode_stored(&mut out, id);
    URL_SAFE.encode(out)
}

/// The stored message a Graph message id names, `None` when it is malformed.
pub fn parse_message_id(id: &str) -> Option<StoredMessageId> {
    let bytes = decode_with_prefix(id, &MESSAGE_PREFIX)?;
    let mut r = Reader(&bytes);
    let stored = decode_stored(&mut r)?;
    r.done().then_some(stored)
}

/// The Graph id of a folder of a mailbox.
pub fn folder_id(mailbox: &str, folder: &str) -> String {
    let mut out = FOLDER_PREFIX.to_vec();
    push_str(&mut out, folder);
    push_str(&mut out, &mailbox.to_ascii_lowercase());
    URL_SAFE.encode(out)
}

/// `(mailbox, folder)` of a Graph folder id, `None` when it is malformed.
pub fn parse_folder_id(id: &str) -> Option<(String, String)> {
    let bytes = decode_with_prefix(id, &FOLDER_PREFIX)?;
    let mut r = Reader(&bytes);
    let folder = r.string()?;
    let mailbox = r.string()?;
    r.done().then_some((mailbox, folder))
}

/// The Graph id of the `index`th attachment of a message.
pub fn attachment_id(message: &StoredMessageId, index: u32) -> String {
    let mut out = ATTACHMENT_PREFIX.to_vec();
    out.extend_from_slice(&index.to_be_bytes());
    encode_stored(&mut out, message);
    URL_SAFE.encode(out)
}

/// `(message, index)` of an attachment id.
pub fn parse_attachment_id(id: &str) -> Option<(StoredMessageId, u32)> {
    let bytes = decode_with_prefix(id, &ATTACHMENT_PREFIX)?;
    let mut r = Reader(&bytes);
    let index = r.u32()?;
    let stored = decode_stored(&mut r)?;
    r.done().then_some((stored, index))
}

/// A short, stable change key for a message state (`@odata.etag`, `changeKey`).
pub fn change_key(parts: &[&[u8]]) -> String {
    let mut data = Vec::new();
    for p in parts {
        data.extend_from_slice(p);
        data.push(0);
    }
    let digest = crate::crypto::sha256(&data);
    let mut key = b"\x09\x00\x00\x00\x16\x00\x00\x00".to_vec();
    key.extend_from_slice(digest.get(..12).unwrap_or_default());
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> StoredMessageId {
        StoredMessageId {
            mailbox: "Alice@Contoso.example".into(),
            folder: "Sent Items".into(),
            uid_validity: 1_700_000_000,
            uid: 42,
        }
    }

    #[test]
    fn message_ids_look_like_exchange_ids_and_round_trip() {
        let id = message_id(&sample());
        assert!(id.starts_with("AAMkAD"), "{id}");
        assert!(!id.contains('+') && !id.contains('/'), "{id}");
        let back = parse_message_id(&id).unwrap();
        assert_eq!(back.folder, "Sent Items");
        assert_eq!(back.uid, 42);
        assert_eq!(back.mailbox, "alice@contoso.example");
    }

    #[test]
    fn moving_changes_the_id() {
        let mut moved = sample();
        moved.folder = "Deleted Items".into();
        moved.uid = 1;
        assert_ne!(message_id(&sample()), message_id(&moved));
    }

    #[test]
    fn folder_and_attachment_ids_are_not_message_ids() {
        let f = folder_id("alice@contoso.example", "INBOX");
        assert!(f.starts_with("AQMkAD"), "{f}");
        assert_eq!(
            parse_folder_id(&f),
            Some(("alice@contoso.example".into(), "INBOX".into()))
        );
        assert_eq!(parse_message_id(&f), None);
        let a = attachment_id(&sample(), 3);
        assert_eq!(parse_message_id(&a), None);
        assert_eq!(parse_attachment_id(&a).unwrap().1, 3);
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = parse_message_id(&s);
            let _ = parse_folder_id(&s);
            let _ = parse_attachment_id(&s);
        }

        #[test]
        fn truncated_ids_are_rejected(cut in 1usize..20) {
            let id = message_id(&sample());
            let bytes = URL_SAFE.decode(&id).unwrap();
            let short = URL_SAFE.encode(&bytes[..bytes.len() - cut]);
            prop_assert_eq!(parse_message_id(&short), None);
        }
    }
}
