//! Passwords of the web UI's people: hashed with Argon2id (the `argon2` crate's
//! defaults, RFC 9106's second recommended set: 19 MiB, 2 passes, 1 lane) into a PHC
//! string with a random 16-byte salt, and verified against it. Both run on a
//! blocking thread: a hash takes tens of milliseconds by design.

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use mailbridge_store::PasswordHash;
use secrecy::{ExposeSecret as _, SecretString};

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// The longest password accepted, in bytes (a bound on hashing work per request).
pub const MAX_BYTES: usize = 1024;

/// Why a password was not hashed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("the password is shorter than {MIN_LENGTH} characters: choose a longer one")]
    TooShort,
    #[error("the password is longer than {MAX_BYTES} bytes: choose a shorter one")]
    TooLong,
    #[error("failed to hash the password with Argon2id: {0}")]
    Hash(String),
}

/// Checks that `password` is acceptable (length only; a passphrase of any characters
/// is welcome).
pub fn check(password: &SecretString) -> Result<(), PasswordError> {
    let text = password.expose_secret();
    if text.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    if text.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Hashes an acceptable `password` (see [`check`]) with Argon2id.
pub async fn hash(password: SecretString) -> Result<PasswordHash, PasswordError> {
    check(&password)?;
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

fn hash_now(password: &SecretString) -> Result<PasswordHash, PasswordError> {
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map(|h| PasswordHash::new(h.to_string()))
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored`. With `stored` absent (no such user) the same
/// work is done against a fixed hash, so the answer's timing does not tell which names
/// exist; the answer is then false.
pub async fn verify(password: SecretString, stored: Option<PasswordHash>) -> bool {
    if password.expose_secret().len() > MAX_BYTES {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        let (phc, known) = match &stored {
            Some(h) => (h.as_str(), true),
            None => (DUMMY.as_str(), false),
        };
        let matches = argon2::PasswordHash::new(phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        });
        matches && known
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the name is unknown.
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 24];
    let _ = getrandom::fill(&mut bytes);
    let random = SecretString::from(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        bytes,
    ));
    hash_now(&random).map_or_else(|_| String::new(), |h| h.as_str().to_owned())
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(stored.as_str().starts_with("$argon2id$"), "{stored:?}");
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await);
        assert!(!verify("correct horse battery!".into(), Some(stored.clone())).await);
        // Two hashes of one password differ (salt).
        let again = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert_ne!(stored, again);
        // An unknown user never verifies, whatever the password.
        assert!(!verify("correct horse battery".into(), None).await);
        assert!(!verify(String::new().into(), None).await);
    }

    #[tokio::test]
    async fn short_and_huge_passwords_are_refused() {
        assert!(matches!(
            hash("short".into()).await,
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            hash("x".repeat(MAX_BYTES + 1).into()).await,
            Err(PasswordError::TooLong)
        ));
        // Ten characters, some of them not ASCII, are enough.
        assert!(hash("zażółć gęś".into()).await.is_ok());
    }
}
