//! Signing accounts in: an app's authority, token client and credential (its client
//! secret opened from the store, or its certificate), the scopes of an account for a
//! transport, and [`SignIn`], the long-lived service that hands out what an account
//! signs in with (its stored password, or an access token through one `Sessions`, so
//! the token cache and its single flight last as long as the service).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::claims::{SignedInUser, signed_in_user};
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::{AssertionAlgorithm, CertificateCredential, ClientCredential};
use mailbridge_auth::scopes::{Grant, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions};
use mailbridge_auth::source::{AccountTokens, TokenSource};
use mailbridge_auth::token::{AuthError, TokenSet};
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_store::Store;
use mailbridge_types::config::{
    AccountConfig, AppConfig, AppCredentialConfig, SignInMethod, Transport,
};
use secrecy::SecretString;

use crate::error::{Error, ErrorKind, Result};

fn misconfigured(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::from_source(ErrorKind::Misconfigured, e)
}

/// The authority of an app (its cloud's or its own sign-in host, and its tenant).
pub fn authority(app: &AppConfig) -> Result<Authority> {
    let tenant = TenantSegment::parse(&app.tenant).map_err(misconfigured)?;
    Authority::new(app.authority_host(), tenant).map_err(misconfigured)
}

/// The token client of an app (its extra CA, if any).
pub fn token_client(app: &AppConfig) -> Result<TokenClient> {
    let extra_ca_pem = match &app.extra_ca_file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            Error::with_source(
                ErrorKind::Io,
                format!("failed to read the CA file {}", p.display()),
                e,
            )
        })?),
        None => None,
    };
    TokenClient::new(&HttpOptions {
        extra_ca_pem,
        timeout: None,
    })
    .map_err(misconfigured)
}

/// The app with its credential: its client secret opened from the store, or its
/// certificate and key read from their files.
pub async fn app_with_credential(app: &AppConfig, store: &Store) -> Result<App> {
    let credential = match &app.credential {
        AppCredentialConfig::None => ClientCredential::None,
        AppCredentialConfig::Secret { .. } => {
            let Some(secret) = store.get_secret(&app.secret_id()).await? else {
                return Err(Error::new(
                    ErrorKind::Misconfigured,
                    format!(
                        "app {} has no client secret stored: run `mailbridge secrets set-app-secret {}` and paste the secret's Value",
                        app.name, app.name
                    ),
                ));
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
            )
            .map_err(misconfigured)?;
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

/// The grant of an account that signs in with a token.
pub fn grant(account: &AccountConfig) -> Result<Grant> {
    match account.sign_in {
        SignInMethod::Delegated => Ok(Grant::Delegated),
        SignInMethod::AppOnly => Ok(Grant::AppOnly),
        SignInMethod::Password => Err(Error::new(
            ErrorKind::Misconfigured,
            format!(
                "account {} signs in with a password, not a token",
                account.name
            ),
        )),
    }
}

/// How an account gets tokens for `transport`: its app with the credential, the
/// authority, the scopes and whether a user signs in.
pub async fn account_sign_in(
    account: &AccountConfig,
    app: &AppConfig,
    store: &Store,
    transport: Transport,
) -> Result<AccountSignIn> {
    let grant = grant(account)?;
    Ok(AccountSignIn {
        account: account.name.clone(),
        app: app_with_credential(app, store).await?,
        authority: authority(app)?,
        scopes: scopes_for(transport, grant, app.graph_resource()),
        delegated: grant == Grant::Delegated,
    })
}

/// The scopes of a delegated account's other transports, asked for consent with the
/// sign-in of its first (a token request names one resource, `/authorize` and the
/// device code may name several); redeemed later with the refresh token.
pub fn extra_consent(account: &AccountConfig, app: &AppConfig) -> Vec<String> {
    account
        .transports
        .iter()
        .skip(1)
        .flat_map(|t| scopes_for(*t, Grant::Delegated, app.graph_resource()))
        .collect()
}

/// A token failure as this crate's error, with the token failure's class.
fn token_failure(account: &str, e: AuthError) -> Error {
    let class = e.class();
    Error::with_source(
        ErrorKind::SignIn,
        format!("could not get a token for account {account} [{class}]"),
        e,
    )
    .classed(class)
}

/// The sign-in service: the store and the token sessions, built once (per process
/// for the CLI, for its lifetime in the daemon) and shared by everything that signs
/// accounts in. Two requests for one account's token share one token request (single
/// flight) and then the cached token until it nears expiry.
///
/// There is one `Sessions` per token client: apps with the same extra CA (almost
/// always all of them) share it. The account and its app are given per call (from
/// [`crate::catalog`]), not kept: the daemon's accounts change while it runs.
#[derive(Debug)]
pub struct SignIn {
    store: Store,
    shared: Arc<Store>,
    retry: RetryPolicy,
    sessions: Mutex<BTreeMap<Option<PathBuf>, Arc<Sessions<Store>>>>,
}

impl SignIn {
    /// The service over `store`.
    pub fn new(store: Store) -> Self {
        Self::with_retry(store, RetryPolicy::default())
    }

    /// The same, with a retry policy for the token endpoint.
    pub fn with_retry(store: Store, retry: RetryPolicy) -> Self {
        Self {
            shared: Arc::new(store.clone()),
            store,
            retry,
            sessions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many requests went to the identity platform through this service.
    pub fn token_requests(&self) -> u64 {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|s| s.client().requests_made())
            .sum()
    }

    /// The sessions that hand out `app`'s tokens (made on first use, then kept).
    pub fn sessions(&self, app: &AppConfig) -> Result<Arc<Sessions<Store>>> {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(&app.extra_ca_file) {
            return Ok(Arc::clone(s));
        }
        let sessions = Arc::new(Sessions::new(
            token_client(app)?,
            Arc::clone(&self.shared),
            self.retry,
        ));
        map.insert(app.extra_ca_file.clone(), Arc::clone(&sessions));
        Ok(sessions)
    }

    /// Keeps what a person's sign-in of `account` returned (in a browser, with a device
    /// code or a pasted URL, from the command line or the web UI): the refresh token,
    /// sealed in the store, the account marked signed in, and who signed in as the answer
    /// names them (also returned; `None` when it names nobody, as personal accounts may
    /// not).
    pub async fn keep_sign_in(
        &self,
        app: &AppConfig,
        account: &str,
        tokens: &TokenSet,
    ) -> Result<Option<SignedInUser>> {
        self.sessions(app)?
            .persist(account, tokens)
            .await
            .map_err(|e| token_failure(account, e))?;
        let user = signed_in_user(
            tokens.id_token.as_deref(),
            secrecy::ExposeSecret::expose_secret(&tokens.access_token),
        );
        self.store
            .set_signed_in_user(account, user.as_ref().map(|u| u.name.as_str()))
            .await?;
        Ok(user)
    }

    /// A valid access token of `account` (signing in with `app`) for `transport`:
    /// cached, refreshed or requested.
    pub async fn access_token(
        &self,
        account: &AccountConfig,
        app: &AppConfig,
        transport: Transport,
    ) -> Result<SecretString> {
        let spec = account_sign_in(account, app, &self.store, transport).await?;
        self.sessions(app)?
            .access_token(&spec)
            .await
            .map_err(|e| token_failure(&account.name, e))
    }

    /// A token source of `account` (signing in with `app`) for `transport` over this
    /// service's sessions, whose first token is requested now (so a sign-in problem is
    /// reported before any connection); later tokens come from the source as the first
    /// one expires or is refused.
    pub async fn token_source(
        &self,
        account: &AccountConfig,
        app: &AppConfig,
        transport: Transport,
    ) -> Result<Arc<dyn TokenSource>> {
        let spec = account_sign_in(account, app, &self.store, transport).await?;
        let tokens: Arc<dyn TokenSource> = Arc::new(AccountTokens::new(self.sessions(app)?, spec));
        tokens
            .token()
            .await
            .map_err(|e| token_failure(&account.name, e))?;
        Ok(tokens)
    }

    /// What `account` signs in with for `transport` now: its stored password, or a
    /// token source ([`Self::token_source`]). What the send API and `open_incoming`
    /// take.
    pub async fn credentials(
        &self,
        account: &AccountConfig,
        app: Option<&AppConfig>,
        transport: Transport,
    ) -> Result<SenderSignIn> {
        match (account.sign_in, app) {
            (SignInMethod::Password, _) => {
                let Some(password) = self.store.get_secret(&account.password_id()).await? else {
                    return Err(Error::new(
                        ErrorKind::Misconfigured,
                        format!(
                            "account {} signs in with a password, but none is stored for it: run `mailbridge account edit {} --password-stdin` and type it",
                            account.name, account.name
                        ),
                    ));
                };
                Ok(SenderSignIn::Password {
                    user: account.login_name(),
                    password,
                })
            }
            (method, Some(app)) => {
                let tokens = self.token_source(account, app, transport).await?;
                Ok(if method == SignInMethod::AppOnly {
                    SenderSignIn::AppOnly(tokens)
                } else {
                    SenderSignIn::Delegated(tokens)
                })
            }
            (_, None) => Err(Error::new(
                ErrorKind::Misconfigured,
                format!("account {} has no app to sign in with", account.name),
            )),
        }
    }
}
