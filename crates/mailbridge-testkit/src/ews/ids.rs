//! EWS item and folder ids (`ItemId Id`/`ChangeKey`, `FolderId Id`).
//!
//! Exchange ids are base64 of a binary store entry id (`AAMkA…`); here the binary form
//! carries the [`StoredMessageId`] (mailbox, folder, UIDVALIDITY, UID), so an id is
//! stable for as long as the message stays where it is and changes when it moves, as
//! Exchange's do. The change key is derived from the id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::mailstore::StoredMessageId;

/// Start of an item id's binary form (base64 `AAMkA…`, as Exchange's).
const ITEM_MAGIC: [u8; 4] = [0x00, 0x03, 0x24, 0x00];
/// Start of a folder id's binary form (base64 `AAMuA…`).
const FOLDER_MAGIC: [u8; 4] = [0x00, 0x03, 0x2e, 0x00];
/// Start of a change key (base64 `CQAAABYAAAA…`).
const CHANGE_KEY_MAGIC: [u8; 9] = [0x09, 0, 0, 0, 0x16, 0, 0, 0, 0];
/// Longest id accepted, in characters.
const MAX_ID_LEN: usize = 4096;

fn push_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes().get(..usize::from(len)).unwrap_or_default());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u16()?;
        String::from_utf8(self.take(usize::from(len))?.to_vec()).ok()
    }
}

fn item_bytes(id: &StoredMessageId) -> Vec<u8> {
    let mut out = ITEM_MAGIC.to_vec();
    out.push(1);
    out.extend_from_slice(&id.uid_validity.to_be_bytes());
    out.extend_from_slice(&id.uid.to_be_bytes());
    push_str(&mut out, &id.mailbox);
    push_str(&mut out, &id.folder);
    out
}

/// The `ItemId Id` of a stored message.
pub fn item_id(id: &StoredMessageId) -> String {
    STANDARD.encode(item_bytes(id))
}

/// The `ChangeKey` of a stored message.
pub fn change_key(id: &StoredMessageId) -> String {
    let mut out = CHANGE_KEY_MAGIC.to_vec();
    out.extend_from_slice(
        crate::crypto::sha256(&item_bytes(id))
            .get(..12)
            .unwrap_or_default(),
    );
    STANDARD.encode(out)
}

/// `<t:ItemId Id="…" ChangeKey="…"/>`.
pub fn item_id_element(id: &StoredMessageId) -> String {
    format!(
        r#"<t:ItemId Id="{}" ChangeKey="{}"/>"#,
        item_id(id),
        change_key(id)
    )
}

/// Reads an `ItemId Id`; `None` when it is malformed (`ErrorInvalidIdMalformed`).
pub fn parse_item_id(text: &str) -> Option<StoredMessageId> {
    if text.len() > MAX_ID_LEN {
        return None;
    }
    let bytes = STANDARD.decode(text.trim()).ok()?;
    let mut c = Cursor(&bytes);
    if c.take(4)? != ITEM_MAGIC || c.take(1)? != [1] {
        return None;
    }
    let uid_validity = c.u32()?;
    let uid = c.u32()?;
    let mailbox = c.string()?;
    let folder = c.string()?;
    c.0.is_empty().then_some(StoredMessageId {
        mailbox,
        folder,
        uid_validity,
        uid,
    })
}

/// The `FolderId Id` of a folder of a mailbox.
pub fn folder_id(mailbox: &str, folder: &str) -> String {
    let mut out = FOLDER_MAGIC.to_vec();
    out.push(1);
    push_str(&mut out, mailbox);
    push_str(&mut out, folder);
    STANDARD.encode(out)
}

/// The change key of a folder.
pub fn folder_change_key(mailbox: &str, folder: &str) -> String {
    let mut out = CHANGE_KEY_MAGIC.to_vec();
    out.extend_from_slice(
        crate::crypto::sha256(folder_id(mailbox, folder).as_bytes())
            .get(..12)
            .unwrap_or_default(),
    );
    STANDARD.encode(out)
}

/// Reads a `FolderId Id` into (mailbox, folder).
pub fn parse_folder_id(text: &str) -> Option<(String, String)> {
    if text.len() > MAX_ID_LEN {
        return None;
    }
    let bytes = STANDARD.decode(text.trim()).ok()?;
    let mut c = Cursor(&bytes);
    if c.take(4)? != FOLDER_MAGIC || c.take(1)? != [1] {
        return None;
    }
    let mailbox = c.string()?;
    let folder = c.string()?;
    c.0.is_empty().then_some((mailbox, folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(folder: &str, uid: u32) -> StoredMessageId {
        StoredMessageId {
            mailbox: "alice@contoso.example".into(),
            folder: folder.into(),
            uid_validity: 1_700_000_000,
            uid,
        }
    }

    #[test]
    fn item_ids_round_trip_look_like_exchange_and_change_on_move() {
        let a = id("INBOX", 7);
        let text = item_id(&a);
        assert!(text.starts_with("AAMkA"), "{text}");
        assert!(change_key(&a).starts_with("CQAAABYAAAA"));
        assert_eq!(parse_item_id(&text), Some(a.clone()));
        assert_eq!(item_id(&a), text, "stable");
        let moved = id("Archive", 1);
        assert_ne!(item_id(&moved), text);
        assert_ne!(change_key(&moved), change_key(&a));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "AAMkAGI2TG93AAA=", "not base64!", "AAAA"] {
            assert_eq!(parse_item_id(bad), None, "{bad}");
        }
        let folder = folder_id("alice@contoso.example", "Sent Items");
        assert_eq!(parse_item_id(&folder), None);
        assert_eq!(
            parse_folder_id(&folder),
            Some(("alice@contoso.example".into(), "Sent Items".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn random_ids_never_panic(s in ".{0,200}") {
            let _ = parse_item_id(&s);
            let _ = parse_folder_id(&s);
        }
    }
}
