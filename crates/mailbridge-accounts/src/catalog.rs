//! The catalog: the apps, accounts and providers in force. Apps and accounts come from
//! the store, then from the configuration file (`mailbridge.toml`) for names the
//! store does not have; providers are the built-in ones and those in the store.

use std::path::Path;

use mailbridge_store::{AccountId, Store};
use mailbridge_types::config::{AccountConfig, AppConfig, ConfigFile, SignInMethod};

use crate::error::{Error, ErrorKind, Result};
use crate::provider::{Provider, ProviderTable};

/// The configuration file read when none is named.
pub const DEFAULT_CONFIG: &str = "mailbridge.toml";

/// Reads the configuration file. The default `mailbridge.toml` may be absent (apps
/// and accounts then come from the store only); a file named on purpose may not.
pub fn load_config(path: &Path) -> Result<ConfigFile> {
    if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
        return Ok(ConfigFile::default());
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!(
                "failed to read the configuration {} (set --config or MAILBRIDGE_CONFIG; docs/configuration.md shows the format)",
                path.display()
            ),
            e,
        )
    })?;
    let config: ConfigFile = toml::from_str(&text).map_err(|e| {
        Error::with_source(
            ErrorKind::Invalid,
            format!("configuration {} is not valid", path.display()),
            e,
        )
    })?;
    // What can be found wrong without connecting (a malformed tls_pin, port 0, ...)
    // is named now, not at the first connection.
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "configuration {} has settings that cannot work (fix them in the file):\n  {}",
                path.display(),
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ),
        ));
    }
    Ok(config)
}

/// The apps and accounts in force: those in the store, then those of the
/// configuration file at `config` that the store does not have (a name in both: the
/// store's).
pub async fn catalog(store: &Store, config: &Path) -> Result<ConfigFile> {
    let file = load_config(config)?;
    let mut apps = store.apps().await.map_err(|e| {
        Error::with_source(ErrorKind::Store, "failed to read the apps in the store", e)
    })?;
    let mut accounts = store.accounts().await.map_err(|e| {
        Error::with_source(
            ErrorKind::Store,
            "failed to read the accounts in the store",
            e,
        )
    })?;
    for app in file.apps {
        if !apps.iter().any(|a| a.name == app.name) {
            apps.push(app);
        }
    }
    for account in file.accounts {
        if !accounts.iter().any(|a| a.name == account.name) {
            accounts.push(account);
        }
    }
    Ok(ConfigFile { apps, accounts })
}

/// An account that signs in with a token, and its app.
pub fn account_and_app<'a>(
    catalog: &'a ConfigFile,
    name: &str,
) -> Result<(&'a AccountConfig, &'a AppConfig)> {
    let Some(account) = catalog.account(name) else {
        let known: Vec<&str> = catalog.accounts.iter().map(|a| a.name.as_str()).collect();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no account named {name:?} in the configuration (accounts: {})",
                known.join(", ")
            ),
        ));
    };
    let Some(app_name) = &account.app else {
        return Err(Error::new(
            ErrorKind::Misconfigured,
            format!(
                "account {} signs in with a password; it has no app to sign in with",
                account.name
            ),
        ));
    };
    let Some(app) = catalog.app(app_name) else {
        return Err(Error::new(
            ErrorKind::Misconfigured,
            format!(
                "account {} uses app {app_name:?}, which is not defined: `mailbridge app add {app_name} --tenant ... --client-id ...` defines it",
                account.name
            ),
        ));
    };
    Ok((account, app))
}

/// The account by name or address, and its app when it signs in with a token.
pub fn lookup_account(
    catalog: &ConfigFile,
    name: &str,
) -> Result<(AccountConfig, Option<AppConfig>)> {
    let Some(account) = catalog.account(name) else {
        let known: Vec<&str> = catalog.accounts.iter().map(|a| a.name.as_str()).collect();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no account named {name:?} (accounts: {}); `mailbridge account add` creates one",
                known.join(", ")
            ),
        ));
    };
    let app = match account.sign_in {
        SignInMethod::Password => None,
        SignInMethod::AppOnly | SignInMethod::Delegated => {
            Some(account_and_app(catalog, &account.name)?.1.clone())
        }
    };
    Ok((account.clone(), app))
}

/// The provider table: built-in providers and those kept in the store.
pub async fn provider_table(store: &Store) -> Result<ProviderTable> {
    let mut table = ProviderTable::default();
    let stored: Vec<Provider> = store.providers().await.map_err(|e| {
        Error::with_source(
            ErrorKind::Store,
            "failed to read the providers in the store",
            e,
        )
    })?;
    for p in stored {
        table.add(p);
    }
    Ok(table)
}

/// Every account in force ([`catalog`]) by its stable id, with its app when it signs
/// in with a token (an account whose app is missing comes without one: signing it in
/// says so). An account of the configuration file gets its id here.
pub async fn by_id(
    store: &Store,
    config: &Path,
) -> Result<std::collections::HashMap<AccountId, (AccountConfig, Option<AppConfig>)>> {
    let catalog = catalog(store, config).await?;
    // The stored accounts' ids in one read; only an account of the configuration file
    // that has none yet is registered (a write), so a daemon asking every few seconds
    // writes nothing once every account has its id.
    let stored: std::collections::HashMap<String, AccountId> = store
        .accounts_with_ids()
        .await
        .map_err(|e| Error::with_source(ErrorKind::Store, "failed to read the accounts' ids", e))?
        .into_iter()
        .map(|(id, a)| (a.name, id))
        .collect();
    let mut out = std::collections::HashMap::with_capacity(catalog.accounts.len());
    for account in &catalog.accounts {
        let app = lookup_account(&catalog, &account.name)
            .ok()
            .and_then(|(_, app)| app);
        let id = if let Some(id) = stored.get(&account.name) {
            *id
        } else {
            let known = store.account_id(&account.name).await.map_err(|e| {
                Error::with_source(
                    ErrorKind::Store,
                    format!("failed to read the id of account {}", account.name),
                    e,
                )
            })?;
            match known {
                Some(id) => id,
                None => store.outbox_account_id(&account.name).await.map_err(|e| {
                    Error::with_source(
                        ErrorKind::Store,
                        format!("failed to give account {} an id", account.name),
                        e,
                    )
                })?,
            }
        };
        out.insert(id, (account.clone(), app));
    }
    Ok(out)
}
