//! Import and export of apps and accounts: the configuration file's tables
//! (`[[app]]`, `[[account]]`) plus, on request, secrets (`[[secret]]`) in clear text.
//! An import is checked whole before anything is written (all or nothing for what
//! can be checked); the rows are then written one by one.

use std::io::Write as _;
use std::path::Path;

use mailbridge_store::{SecretKind, Store};
use mailbridge_types::config::{AccountConfig, AppConfig, ConfigFile};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::account::validate;
use crate::error::{Error, ErrorKind, Result};

/// One exported secret. Its `Debug` shows the id and the kind, never the value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedSecret {
    pub id: String,
    /// `password`, `refresh-token`, `client-secret` or `certificate-key`.
    pub kind: String,
    pub value: String,
}

impl std::fmt::Debug for ExportedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSecret")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

/// The import/export file: the configuration file's tables plus, on request, secrets.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    #[serde(default, rename = "app", skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppConfig>,
    #[serde(default, rename = "account", skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountConfig>,
    #[serde(default, rename = "secret", skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<ExportedSecret>,
}

fn kind_name(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::RefreshToken => "refresh-token",
        SecretKind::ClientSecret => "client-secret",
        SecretKind::CertificateKey => "certificate-key",
        _ => "password",
    }
}

fn kind_of(name: &str) -> Option<SecretKind> {
    Some(match name {
        "refresh-token" => SecretKind::RefreshToken,
        "client-secret" => SecretKind::ClientSecret,
        "certificate-key" => SecretKind::CertificateKey,
        "password" => SecretKind::Password,
        _ => return None,
    })
}

/// Reads an accounts file.
pub fn read(path: &Path) -> Result<AccountsFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!("failed to read {}", path.display()),
            e,
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        Error::with_source(
            ErrorKind::Invalid,
            format!("{} is not a valid accounts file", path.display()),
            e,
        )
    })
}

/// What is wrong with importing `file` into `store`, whose apps and accounts in force
/// are `catalog`: names that exist already (unless `replace`), accounts that fail
/// validation (against the file's apps, then the catalog's), secrets of an unknown
/// kind or of no app or account in the file.
pub async fn problems(
    store: &Store,
    catalog: &ConfigFile,
    file: &AccountsFile,
    replace: bool,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if !replace {
        let stored_apps = store.apps().await?;
        let stored_accounts = store.accounts().await?;
        for a in &file.apps {
            if stored_apps.iter().any(|s| s.name == a.name) {
                problems.push(format!(
                    "app {} exists already (use --replace to overwrite)",
                    a.name
                ));
            }
        }
        for a in &file.accounts {
            if stored_accounts.iter().any(|s| s.name == a.name) {
                problems.push(format!(
                    "account {} exists already (use --replace to overwrite)",
                    a.name
                ));
            }
        }
    }
    let mut apps: Vec<AppConfig> = file.apps.clone();
    for a in &catalog.apps {
        if !apps.iter().any(|x| x.name == a.name) {
            apps.push(a.clone());
        }
    }
    for a in &file.accounts {
        for p in validate(a, &apps) {
            problems.push(format!("account {}: {p}", a.name));
        }
    }
    let known: Vec<String> = file
        .apps
        .iter()
        .map(AppConfig::secret_id)
        .chain(
            file.accounts
                .iter()
                .flat_map(|a| [a.password_id(), a.refresh_token_id()]),
        )
        .collect();
    for s in &file.secrets {
        if kind_of(&s.kind).is_none() {
            problems.push(format!("secret {}: unknown kind {:?}", s.id, s.kind));
        }
        if !known.contains(&s.id) {
            problems.push(format!(
                "secret {} belongs to no app or account in the file",
                s.id
            ));
        }
    }
    Ok(problems)
}

/// Imports `file` (read from `origin`, named in the error) into `store`: nothing is
/// written when [`problems`] finds any; then apps, accounts and secrets in one transaction (`Store::import`: all or
/// nothing).
pub async fn import(
    store: &Store,
    catalog: &ConfigFile,
    file: &AccountsFile,
    replace: bool,
    origin: &str,
) -> Result<()> {
    let problems = problems(store, catalog, file, replace).await?;
    if !problems.is_empty() {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "nothing was imported from {origin}:\n{}",
                problems
                    .iter()
                    .map(|p| format!("  - {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        ));
    }
    // One transaction: a failure anywhere (a name taken since the check, a database
    // error) leaves the store as it was.
    let mut batch = mailbridge_store::Import::default();
    batch.apps.clone_from(&file.apps);
    batch.accounts.clone_from(&file.accounts);
    batch.secrets = file
        .secrets
        .iter()
        .map(|s| mailbridge_store::ImportSecret {
            id: s.id.clone(),
            kind: kind_of(&s.kind).unwrap_or(SecretKind::Password),
            value: SecretString::from(s.value.clone()),
            expires_at: None,
        })
        .collect();
    batch.replace = replace;
    store.import(&batch).await?;
    Ok(())
}

/// The apps and accounts of `catalog` as an accounts file, with their passwords,
/// refresh tokens and client secrets when `with_secrets`.
pub async fn export(
    store: &Store,
    catalog: ConfigFile,
    with_secrets: bool,
) -> Result<AccountsFile> {
    let ConfigFile { apps, accounts } = catalog;
    let mut secrets = Vec::new();
    if with_secrets {
        let metas = store.secrets().await?;
        let wanted: Vec<String> = apps
            .iter()
            .map(AppConfig::secret_id)
            .chain(
                accounts
                    .iter()
                    .flat_map(|a| [a.password_id(), a.refresh_token_id()]),
            )
            .collect();
        for meta in metas.iter().filter(|m| wanted.contains(&m.id)) {
            if let Some(value) = store.get_secret(&meta.id).await? {
                secrets.push(ExportedSecret {
                    id: meta.id.clone(),
                    kind: kind_name(meta.kind).to_owned(),
                    value: value.expose_secret().to_owned(),
                });
            }
        }
    }
    Ok(AccountsFile {
        apps,
        accounts,
        secrets,
    })
}

/// The file as TOML, with a header saying what reads it (and, when exported
/// `with_secrets`, to keep it private).
pub fn to_toml(file: &AccountsFile, with_secrets: bool) -> Result<String> {
    let mut text = String::from(
        "# mailbridge apps and accounts (`mailbridge account import` reads this file)\n",
    );
    if with_secrets {
        text.push_str("# This file holds secrets in clear text: keep it private.\n");
    }
    text.push_str(
        &toml::to_string_pretty(file)
            .map_err(|e| Error::with_source(ErrorKind::Invalid, "failed to write TOML", e))?,
    );
    Ok(text)
}

/// Writes `bytes` to `path` and syncs it; mode 0600 when `private`.
pub fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_an_exported_secret_and_its_file_shows_no_value() {
        let secret = ExportedSecret {
            id: "account:alice:refresh".into(),
            kind: "refresh-token".into(),
            value: "0.AXoA-refresh-token-that-must-not-leak".into(),
        };
        let file = AccountsFile {
            secrets: vec![secret],
            ..Default::default()
        };
        let shown = format!("{file:?} {file:#?}");
        assert!(!shown.contains("must-not-leak"), "{shown}");
        assert!(shown.contains("account:alice:refresh"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn secret_kinds_are_written_and_read_back() {
        for kind in [
            SecretKind::Password,
            SecretKind::RefreshToken,
            SecretKind::ClientSecret,
            SecretKind::CertificateKey,
        ] {
            assert_eq!(kind_of(kind_name(kind)), Some(kind));
        }
        assert_eq!(kind_of("api-key"), None);
    }
}
