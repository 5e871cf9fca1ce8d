//! What every command needs: the configuration file, the data directory, the store,
//! the catalog and the process's sign-in service. The logic is in
//! `mailbridge-accounts`; this is where the command line meets it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mailbridge_accounts::signin::SignIn;
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_store::Store;
use mailbridge_types::config::{AccountConfig, AppConfig, ConfigFile, Transport};

pub use mailbridge_accounts::catalog::{DEFAULT_CONFIG, account_and_app};
pub use mailbridge_accounts::signin::{account_sign_in, grant};

/// Global options.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Apps and accounts (TOML).
    #[arg(
        long,
        global = true,
        env = "MAILBRIDGE_CONFIG",
        default_value = DEFAULT_CONFIG
    )]
    pub config: PathBuf,
    /// Where the database and the master key file live.
    #[arg(long, global = true, env = "MAILBRIDGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl GlobalArgs {
    /// The data directory in force.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .unwrap_or_else(|| PathBuf::from("."))
                .join("mailbridge")
        })
    }
}

/// Reads the configuration file ([`mailbridge_accounts::catalog::load_config`]).
pub fn load_config(path: &Path) -> anyhow::Result<ConfigFile> {
    Ok(mailbridge_accounts::catalog::load_config(path)?)
}

/// Opens the store in the data dir ([`mailbridge_accounts::master_key::open_store`]).
pub async fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    Ok(mailbridge_accounts::master_key::open_store(&global.data_dir()).await?)
}

/// The apps and accounts in force: the store's, then the configuration file's.
pub async fn catalog(global: &GlobalArgs, store: &Store) -> anyhow::Result<ConfigFile> {
    Ok(mailbridge_accounts::catalog::catalog(store, &global.config).await?)
}

/// The account and its app by name or address, from the [`catalog`].
pub async fn lookup_account(
    global: &GlobalArgs,
    store: &Store,
    name: &str,
) -> anyhow::Result<(AccountConfig, Option<AppConfig>)> {
    let catalog = catalog(global, store).await?;
    Ok(mailbridge_accounts::catalog::lookup_account(
        &catalog, name,
    )?)
}

/// The process's sign-in service: built on first use and kept until the process
/// ends, so every token a command asks for goes through one cache.
pub fn sign_in(store: &Store) -> &'static SignIn {
    static SIGN_IN: OnceLock<SignIn> = OnceLock::new();
    SIGN_IN.get_or_init(|| SignIn::new(store.clone()))
}

/// What the account signs in with for `transport` now (its stored password, or an
/// access token), through the process's [`sign_in`] service.
pub async fn sign_in_now(
    store: &Store,
    account: &AccountConfig,
    app: Option<&AppConfig>,
    transport: Transport,
) -> anyhow::Result<SenderSignIn> {
    Ok(sign_in(store).credentials(account, app, transport).await?)
}
