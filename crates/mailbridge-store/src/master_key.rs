//! The master key that seals every secret. It never lives in the database.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Environment variable holding the master key (32 bytes, base64).
pub const MASTER_KEY_ENV: &str = "MAILBRIDGE_MASTER_KEY";

/// A 256-bit master key. `Debug` never shows it; it is zeroed on drop.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// Error obtaining the master key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    #[error(
        "{MASTER_KEY_ENV} must be 32 bytes in base64 (for example the output of `openssl rand -base64 32`)"
    )]
    BadEnvValue,
    #[error("master key file {path} must hold 32 bytes in base64")]
    BadFile { path: String },
    #[error("failed to read or create the master key file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "master key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    OpenPermissions { path: String, mode: u32 },
    #[error("deriving the master key from the passphrase failed")]
    Passphrase,
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, RandomError> {
        let mut k = Zeroizing::new([0u8; 32]);
        random_fill(k.as_mut())?;
        Ok(Self(k))
    }

    /// Parses base64 text (the form of `MAILBRIDGE_MASTER_KEY` and of the key file).
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).ok()?);
        let array: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    /// The key as base64 (to show once when creating a key for the environment).
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.as_ref()))
    }

    /// From the environment variable, when it is set.
    pub fn from_env() -> Result<Option<Self>, MasterKeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) => Self::from_base64(&v)
                .map(Some)
                .ok_or(MasterKeyError::BadEnvValue),
            Err(_) => Ok(None),
        }
    }

    /// Reads the key file, or creates it with a fresh key and mode 0600 when missing.
    /// Refuses a file that others can read.
    pub fn load_or_create_file(path: &Path) -> Result<Self, MasterKeyError> {
        let shown = path.display().to_string();
        let file_err = |source| MasterKeyError::File {
            path: shown.clone(),
            source,
        };
        if path.exists() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(path)
                    .map_err(file_err)?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(MasterKeyError::OpenPermissions { path: shown, mode });
                }
            }
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(file_err)?);
            return Self::from_base64(&text).ok_or(MasterKeyError::BadFile { path: shown });
        }
        if let Some(parent) = path.parent() {
            crate::files::create_private_dir(parent).map_err(file_err)?;
        }
        let key = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(file_err)?;
        file.write_all(key.to_base64().expose_secret().as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(file_err)?;
        Ok(key)
    }

    /// The per-store salt for [`MasterKey::from_passphrase`] in `path` (`master.salt`),
    /// created with 32 random bytes (as base64) and mode 0600 when missing; an existing
    /// salt file is tightened to 0600.
    pub fn load_or_create_salt(path: &Path) -> Result<Vec<u8>, MasterKeyError> {
        let shown = path.display().to_string();
        let file_err = |source| MasterKeyError::File {
            path: shown.clone(),
            source,
        };
        if path.exists() {
            crate::files::make_private(path).map_err(file_err)?;
            return std::fs::read(path).map_err(file_err);
        }
        if let Some(parent) = path.parent() {
            crate::files::create_private_dir(parent).map_err(file_err)?;
        }
        let salt = Self::generate()?.to_base64();
        let bytes = salt.expose_secret().as_bytes().to_vec();
        crate::files::write_private_file(path, &bytes).map_err(file_err)?;
        Ok(bytes)
    }

    /// Derives the key from a passphrase with Argon2id and a per-store salt.
    pub fn from_passphrase(passphrase: &SecretString, salt: &[u8]) -> Result<Self, MasterKeyError> {
        let mut k = Zeroizing::new([0u8; 32]);
        argon2::Argon2::default()
            .hash_password_into(passphrase.expose_secret().as_bytes(), salt, k.as_mut())
            .map_err(|_| MasterKeyError::Passphrase)?;
        Ok(Self(k))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The operating system has no working random source.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct RandomError;

/// Fills `buf` with random bytes from the operating system.
pub(crate) fn random_fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let k1 = MasterKey::load_or_create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let k2 = MasterKey::load_or_create_file(&path).unwrap();
        assert_eq!(k1.bytes(), k2.bytes());
        assert_eq!(format!("{k1:?}"), "MasterKey([REDACTED])");
    }

    #[cfg(unix)]
    #[test]
    fn readable_key_file_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::load_or_create_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create_file(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn passphrase_derivation_is_deterministic_per_salt() {
        let p = SecretString::from("correct horse battery staple");
        let a = MasterKey::from_passphrase(&p, b"salt-salt-salt-1").unwrap();
        let b = MasterKey::from_passphrase(&p, b"salt-salt-salt-1").unwrap();
        let c = MasterKey::from_passphrase(&p, b"salt-salt-salt-2").unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_ne!(a.bytes(), c.bytes());
    }

    #[test]
    fn base64_round_trip_and_bad_values() {
        let k = MasterKey::generate().unwrap();
        let back = MasterKey::from_base64(k.to_base64().expose_secret()).unwrap();
        assert_eq!(k.bytes(), back.bytes());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_none());
        assert!(MasterKey::from_base64("not base64!").is_none());
    }
}
