//! The idempotency key of a received message.
//!
//! The key is a SHA-256 over the account's stable id, the folder, the transport's id of
//! the message and its `Message-ID` (each length-prefixed, so no two different inputs
//! run together), written as 32 hex digits (128 bits). It is the same every time the
//! same message is delivered again (after a crash, a retry or a resync that lists it
//! again), so a folder sink uses it as the file name and a webhook receiver can drop a
//! second delivery by its `Idempotency-Key` header. Two different messages get
//! different keys: a message without a `Message-ID` still differs by its source id.

use std::fmt;

use aws_lc_rs::digest;

/// The idempotency key: 32 lowercase hex digits, safe as a file name and a header.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of a message read from `folder` of the account with stable id
    /// `account_id`, with transport id `source_id` and `Message-ID` `message_id`.
    pub fn new(account_id: &str, folder: &str, source_id: &str, message_id: Option<&str>) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [
            "mailbridge-delivery-v1",
            account_id,
            folder,
            source_id,
            message_id.unwrap_or(""),
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let hash = ctx.finish();
        Self(crate::hex(hash.as_ref().get(..16).unwrap_or_default()))
    }

    /// A key read back (from a file name, a database row, a header): 32 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_message_gets_the_same_key() {
        let a = IdempotencyKey::new("acc-1", "INBOX", "42", Some("<m@x>"));
        let b = IdempotencyKey::new("acc-1", "INBOX", "42", Some("<m@x>"));
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(IdempotencyKey::parse(a.as_str()), Some(a));
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = IdempotencyKey::new("acc-1", "INBOX", "42", Some("<m@x>"));
        for other in [
            IdempotencyKey::new("acc-2", "INBOX", "42", Some("<m@x>")),
            IdempotencyKey::new("acc-1", "Archive", "42", Some("<m@x>")),
            IdempotencyKey::new("acc-1", "INBOX", "43", Some("<m@x>")),
            IdempotencyKey::new("acc-1", "INBOX", "42", Some("<n@x>")),
            IdempotencyKey::new("acc-1", "INBOX", "42", None),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn fields_do_not_run_together() {
        // "ab" + "c" and "a" + "bc" are different inputs.
        assert_ne!(
            IdempotencyKey::new("ab", "c", "1", None),
            IdempotencyKey::new("a", "bc", "1", None)
        );
    }

    #[test]
    fn only_hex_keys_parse() {
        assert!(IdempotencyKey::parse("../../etc/passwd").is_none());
        assert!(IdempotencyKey::parse(&"A".repeat(32)).is_none());
        assert!(IdempotencyKey::parse(&"a".repeat(31)).is_none());
    }
}
