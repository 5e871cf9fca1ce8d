//! Sealing with XChaCha20-Poly1305: `version (1 byte) || nonce (24) || ciphertext+tag`,
//! with the record id as associated data.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};

use crate::master_key::{MasterKey, RandomError, random_fill};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Opening failed: wrong key, wrong record, or damaged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed value cannot be opened with this master key (wrong key, or the data was altered)")]
pub struct OpenError;

/// Seals and opens values under one master key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A sealer for `key`.
    pub fn new(key: &MasterKey) -> Self {
        let cipher = XChaCha20Poly1305::new(key.bytes().into());
        Self { cipher }
    }

    /// Seals `plaintext` bound to `record_id`.
    pub fn seal(&self, record_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, RandomError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        let ciphertext = self
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad: record_id.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a sealed value of `record_id`.
    pub fn open(&self, record_id: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (version, rest) = sealed.split_first().ok_or(OpenError)?;
        if *version != VERSION || rest.len() < NONCE_LEN + 16 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
        self.cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: record_id.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let s = Sealer::new(&MasterKey::generate().unwrap());
        let sealed = s.seal("secret:a", b"refresh-token").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"refresh"));
        assert_eq!(s.open("secret:a", &sealed).unwrap(), b"refresh-token");
        assert_eq!(s.open("secret:b", &sealed), Err(OpenError));
        let other = Sealer::new(&MasterKey::generate().unwrap());
        assert_eq!(other.open("secret:a", &sealed), Err(OpenError));
        let mut damaged = sealed.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert_eq!(s.open("secret:a", &damaged), Err(OpenError));
        for junk in [&b""[..], b"\x01", b"\x02abc", &[1u8; 30]] {
            assert_eq!(s.open("secret:a", junk), Err(OpenError));
        }
        assert_ne!(
            s.seal("x", b"same").unwrap(),
            s.seal("x", b"same").unwrap(),
            "fresh nonce each time"
        );
    }
}
