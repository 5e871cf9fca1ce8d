//! What every command needs: the configuration file, the data directory, the master
//! key and the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::{AssertionAlgorithm, CertificateCredential, ClientCredential};
use mailbridge_auth::scopes::{Grant, scopes_for};
use mailbridge_auth::session::AccountSignIn;
use mailbridge_auth::session::Sessions;
use mailbridge_auth::source::{AccountTokens, TokenSource};
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_store::{MasterKey, Store};
use mailbridge_types::config::{
    AccountConfig, AppConfig, AppCredentialConfig, ConfigFile, SignInMethod, Transport,
};

/// The configuration file read when none is named.
pub const DEFAULT_CONFIG: &str = "mailbridge.toml";

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

/// Reads the configuration file. The default `mailbridge.toml` may be absent (apps
/// and accounts then come from the store only); a file named on purpose may not.
pub fn load_config(path: &Path) -> anyhow::Result<ConfigFile> {
    if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
        return Ok(ConfigFile::default());
    }
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "failed to read the configuration {} (set --config or MAILBRIDGE_CONFIG; docs/configuration.md shows the format)",
            path.display()
        )
    })?;
    let config: ConfigFile = toml::from_str(&text)
        .with_context(|| format!("configuration {} is not valid", path.display()))?;
    let problems = config.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "configuration {} has settings that cannot work (fix them in the file):\n  {}",
        path.display(),
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    Ok(config)
}

/// The master key: `MAILBRIDGE_MASTER_KEY`, else a passphrase in
/// `MAILBRIDGE_MASTER_PASSPHRASE` (Argon2id with a salt kept in the data dir), else the
/// key file `master.key` in the data dir (created on first run, mode 0600).
pub fn master_key(data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Some(key) = MasterKey::from_env()? {
        return Ok(key);
    }
    if let Ok(pass) = std::env::var("MAILBRIDGE_MASTER_PASSPHRASE") {
        let salt = MasterKey::load_or_create_salt(&data_dir.join("master.salt"))?;
        return Ok(MasterKey::from_passphrase(
            &secrecy::SecretString::from(pass),
            &salt,
        )?);
    }
    Ok(MasterKey::load_or_create_file(
        &data_dir.join("master.key"),
    )?)
}

/// Opens the store in the data dir.
pub async fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    let dir = global.data_dir();
    mailbridge_store::files::create_private_dir(&dir)
        .with_context(|| format!("failed to create the data directory {}", dir.display()))?;
    mailbridge_store::files::make_private_dir(&dir).with_context(|| {
        format!(
            "failed to make the data directory {} private (mode 0700)",
            dir.display()
        )
    })?;
    let key = master_key(&dir)?;
    let db = dir.join("mailbridge.db");
    match Store::open(&db, &key).await {
        Err(mailbridge_store::StoreError::WrongMasterKey)
            if dir.join("master.key.new").exists() =>
        {
            // A key rotation stopped between the database commit and the rename.
            let new_path = dir.join("master.key.new");
            let new_key = MasterKey::load_or_create_file(&new_path)?;
            let store = Store::open(&db, &new_key)
                .await
                .with_context(|| format!("failed to open the store {}", db.display()))?;
            std::fs::rename(&new_path, dir.join("master.key"))?;
            Ok(store)
        }
        other => other.with_context(|| format!("failed to open the store {}", db.display())),
    }
}

/// The authority of an app.
pub fn authority(app: &AppConfig) -> anyhow::Result<Authority> {
    let tenant = TenantSegment::parse(&app.tenant)?;
    Ok(Authority::new(app.authority_host(), tenant)?)
}

/// The token client of an app (its extra CA, if any).
pub fn token_client(app: &AppConfig) -> anyhow::Result<TokenClient> {
    let extra_ca_pem = match &app.extra_ca_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("failed to read the CA file {}", p.display()))?,
        ),
        None => None,
    };
    Ok(TokenClient::new(&HttpOptions {
        extra_ca_pem,
        timeout: None,
    })?)
}

/// The app with its credential opened from the store.
pub async fn app_with_credential(app: &AppConfig, store: &Store) -> anyhow::Result<App> {
    let credential = match &app.credential {
        AppCredentialConfig::None => ClientCredential::None,
        AppCredentialConfig::Secret { .. } => {
            let Some(secret) = store.get_secret(&app.secret_id()).await? else {
                bail!(
                    "app {} has no client secret stored: run `mailbridge secrets set-app-secret {}` and paste the secret's Value",
                    app.name,
                    app.name
                );
            };
            ClientCredential::Secret(secret)
        }
        AppCredentialConfig::Certificate {
            certificate_file,
            key_file,
            rs256,
        } => {
            let mut c = CertificateCredential::from_pem_files(
                &certificate_file.display().to_string(),
                &key_file.display().to_string(),
            )?;
            if *rs256 {
                c.algorithm = AssertionAlgorithm::Rs256;
            }
            ClientCredential::Certificate(c)
        }
    };
    Ok(App {
        client_id: app.client_id.clone(),
        credential,
    })
}

/// Looks up an account and its app.
pub fn account_and_app<'a>(
    config: &'a ConfigFile,
    name: &str,
) -> anyhow::Result<(&'a AccountConfig, &'a AppConfig)> {
    let Some(account) = config.account(name) else {
        let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        bail!(
            "no account named {name:?} in the configuration (accounts: {})",
            known.join(", ")
        );
    };
    let Some(app_name) = &account.app else {
        bail!(
            "account {} signs in with a password; it has no app to sign in with",
            account.name
        );
    };
    let Some(app) = config.app(app_name) else {
        bail!(
            "account {} uses app {app_name:?}, which is not defined: `mailbridge app add {app_name} --tenant ... --client-id ...` defines it",
            account.name
        );
    };
    Ok((account, app))
}

/// The grant of an account.
pub fn grant(account: &AccountConfig) -> anyhow::Result<Grant> {
    match account.sign_in {
        SignInMethod::Delegated => Ok(Grant::Delegated),
        SignInMethod::AppOnly => Ok(Grant::AppOnly),
        SignInMethod::Password => bail!(
            "account {} signs in with a password, not a token",
            account.name
        ),
    }
}

/// How an account gets tokens for `transport`.
pub async fn account_sign_in(
    account: &AccountConfig,
    app: &AppConfig,
    store: &Store,
    transport: Transport,
) -> anyhow::Result<AccountSignIn> {
    let grant = grant(account)?;
    Ok(AccountSignIn {
        account: account.name.clone(),
        app: app_with_credential(app, store).await?,
        authority: authority(app)?,
        scopes: scopes_for(transport, grant, app.graph_resource()),
        delegated: grant == Grant::Delegated,
    })
}

/// The apps and accounts in force: those in the store, then those of the
/// configuration file that the store does not have (a name in both: the store's).
pub async fn catalog(global: &GlobalArgs, store: &Store) -> anyhow::Result<ConfigFile> {
    let file = load_config(&global.config)?;
    let mut apps = store
        .apps()
        .await
        .context("failed to read the apps in the store")?;
    let mut accounts = store
        .accounts()
        .await
        .context("failed to read the accounts in the store")?;
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

/// Shared pointer to the store, for sessions.
pub fn shared(store: &Store) -> Arc<Store> {
    Arc::new(store.clone())
}

/// The account and its app by name or address, from the store and then the
/// configuration file (as every command finds them: [`catalog`]).
pub async fn lookup_account(
    global: &GlobalArgs,
    store: &Store,
    name: &str,
) -> anyhow::Result<(AccountConfig, Option<AppConfig>)> {
    let catalog = catalog(global, store).await?;
    let Some(account) = catalog.account(name) else {
        let known: Vec<&str> = catalog.accounts.iter().map(|a| a.name.as_str()).collect();
        bail!(
            "no account named {name:?} (accounts: {}); `mailbridge account add` creates one",
            known.join(", ")
        );
    };
    let app = match account.sign_in {
        SignInMethod::Password => None,
        SignInMethod::AppOnly | SignInMethod::Delegated => {
            Some(account_and_app(&catalog, &account.name)?.1.clone())
        }
    };
    Ok((account.clone(), app))
}

/// Signs the account in for `transport` now: its stored password, or a token source
/// over the store's sessions whose first token is requested now (so a sign-in problem
/// is reported before any connection); later tokens come from the source as the
/// first one expires or is refused. What the send API and `open_incoming` take.
pub async fn sign_in_now(
    store: &Store,
    account: &AccountConfig,
    app: Option<&AppConfig>,
    transport: Transport,
) -> anyhow::Result<SenderSignIn> {
    match (account.sign_in, app) {
        (SignInMethod::Password, _) => {
            let Some(password) = store.get_secret(&account.password_id()).await? else {
                bail!(
                    "account {} signs in with a password, but none is stored for it: run `mailbridge account edit {} --password-stdin` and type it",
                    account.name,
                    account.name
                );
            };
            Ok(SenderSignIn::Password {
                user: account.login_name(),
                password,
            })
        }
        (method, Some(app)) => {
            let spec = account_sign_in(account, app, store, transport).await?;
            let sessions = Sessions::new(token_client(app)?, shared(store), RetryPolicy::default());
            let tokens: Arc<dyn TokenSource> =
                Arc::new(AccountTokens::new(Arc::new(sessions), spec));
            tokens.token().await.map_err(|e| {
                anyhow::anyhow!(
                    "could not get a token for account {} [{}]: {}",
                    account.name,
                    e.class(),
                    mailbridge_types::error_chain(&e)
                )
            })?;
            Ok(if method == SignInMethod::AppOnly {
                SenderSignIn::AppOnly(tokens)
            } else {
                SenderSignIn::Delegated(tokens)
            })
        }
        (_, None) => bail!("account {} has no app to sign in with", account.name),
    }
}
