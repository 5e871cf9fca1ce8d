//! The master key and the store: where the key comes from, opening the store in the
//! data directory (finishing a key rotation that stopped half-way), and the library
//! half of a key rotation.

use std::path::{Path, PathBuf};

use mailbridge_store::{MasterKey, Store, StoreError};
use secrecy::SecretString;

use crate::error::{Error, ErrorKind, Result};

/// The environment variable with a passphrase the master key is derived from.
pub const MASTER_PASSPHRASE_ENV: &str = "MAILBRIDGE_MASTER_PASSPHRASE";

fn store_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::from_source(ErrorKind::Store, e)
}

/// The master key: `MAILBRIDGE_MASTER_KEY`, else a passphrase in
/// `MAILBRIDGE_MASTER_PASSPHRASE` (Argon2id with a salt kept in the data dir), else the
/// key file `master.key` in the data dir (created on first run, mode 0600).
pub fn master_key(data_dir: &Path) -> Result<MasterKey> {
    if let Some(key) = MasterKey::from_env().map_err(store_error)? {
        return Ok(key);
    }
    if let Ok(pass) = std::env::var(MASTER_PASSPHRASE_ENV) {
        let salt =
            MasterKey::load_or_create_salt(&data_dir.join("master.salt")).map_err(store_error)?;
        return MasterKey::from_passphrase(&SecretString::from(pass), &salt).map_err(store_error);
    }
    MasterKey::load_or_create_file(&data_dir.join("master.key")).map_err(store_error)
}

/// Whether the master key comes from the environment (a key or a passphrase) rather
/// than the key file.
pub fn key_from_environment() -> bool {
    std::env::var_os(mailbridge_store::master_key::MASTER_KEY_ENV).is_some()
        || std::env::var_os(MASTER_PASSPHRASE_ENV).is_some()
}

/// Opens the store in `data_dir` (created private, mode 0700), with the master key in
/// force. When a key rotation stopped between the database commit and the rename of
/// `master.key.new`, the new key opens the store and the rename is finished.
pub async fn open_store(data_dir: &Path) -> Result<Store> {
    let dir = data_dir;
    mailbridge_store::files::create_private_dir(dir).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!("failed to create the data directory {}", dir.display()),
            e,
        )
    })?;
    mailbridge_store::files::make_private_dir(dir).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!(
                "failed to make the data directory {} private (mode 0700)",
                dir.display()
            ),
            e,
        )
    })?;
    let key = master_key(dir)?;
    let db = dir.join("mailbridge.db");
    let failed = |e: StoreError| {
        Error::with_source(
            ErrorKind::Store,
            format!("failed to open the store {}", db.display()),
            e,
        )
    };
    match Store::open(&db, &key).await {
        Err(StoreError::WrongMasterKey) if dir.join("master.key.new").exists() => {
            // A key rotation stopped between the database commit and the rename.
            let new_path = dir.join("master.key.new");
            let new_key = MasterKey::load_or_create_file(&new_path).map_err(store_error)?;
            let store = Store::open(&db, &new_key).await.map_err(failed)?;
            std::fs::rename(&new_path, dir.join("master.key"))
                .map_err(|e| Error::from_source(ErrorKind::Io, e))?;
            Ok(store)
        }
        other => other.map_err(failed),
    }
}

/// What a key rotation did.
#[derive(Debug)]
pub enum Rotation {
    /// The key came from the environment: every secret is re-sealed under `new_key`,
    /// which must be set as `MAILBRIDGE_MASTER_KEY` before the next run (show it once).
    Environment {
        resealed: usize,
        new_key: SecretString,
    },
    /// The key file: every secret is re-sealed and `key_file` holds the new key.
    KeyFile { resealed: usize, key_file: PathBuf },
}

/// Re-seals every secret of `store` (opened from `data_dir`) under a new master key.
///
/// With the key file, the new key is written beside the old one first
/// (`master.key.new`), so a crash between the database commit and the rename leaves
/// both keys on disk and [`open_store`] finishes the rotation.
pub async fn rotate_key(data_dir: &Path, store: &Store) -> Result<Rotation> {
    if key_from_environment() {
        let new_key = MasterKey::generate().map_err(store_error)?;
        let resealed = store.rotate_key(&new_key).await?;
        return Ok(Rotation::Environment {
            resealed,
            new_key: new_key.to_base64(),
        });
    }
    let key_file = data_dir.join("master.key");
    let new_path = data_dir.join("master.key.new");
    let _ = std::fs::remove_file(&new_path);
    let written = MasterKey::load_or_create_file(&new_path).map_err(store_error)?;
    let resealed = store.rotate_key(&written).await?;
    std::fs::rename(&new_path, &key_file).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!(
                "re-sealed, but failed to move {} to {}",
                new_path.display(),
                key_file.display()
            ),
            e,
        )
    })?;
    Ok(Rotation::KeyFile { resealed, key_file })
}
