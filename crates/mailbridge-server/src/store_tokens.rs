//! The daemon's API tokens and readiness over the store ([`mailbridge_store::Store`]):
//! [`StoreTokens`] (the store as [`ApiTokens`]), [`issue`] and [`issue_first`] (a new
//! token, stored by its hash and shown once), and [`store_ready`] (`/readyz` asks the
//! store a trivial query).

use std::sync::Arc;

use mailbridge_store::{ApiToken, Store, StoreError};
use mailbridge_types::access::Role;
use secrecy::SecretString;

use crate::ReadyCheck;
use crate::api_token::{ApiTokens, Lookup, TokenHash, TokenLookupError, TokenRecord, generate};

/// The name of the administrator token made on the daemon's first start.
pub const FIRST_TOKEN_NAME: &str = "first-admin";

/// The store's API tokens, as the HTTP layer checks them.
#[derive(Debug, Clone)]
pub struct StoreTokens {
    store: Store,
}

impl StoreTokens {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn record(token: ApiToken) -> TokenRecord {
    TokenRecord {
        id: token.id.to_string(),
        name: token.name,
        role: token.role,
        user: token.user,
    }
}

impl ApiTokens for StoreTokens {
    fn find<'a>(&'a self, hash: &'a TokenHash) -> Lookup<'a> {
        Box::pin(async move {
            self.store
                .find_api_token(hash.as_str())
                .await
                .map(|found| found.map(record))
                .map_err(|e| TokenLookupError(Box::new(e)))
        })
    }
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    #[error("the operating system gave no randomness for a new API token: {0}")]
    Random(getrandom::Error),
    #[error("failed to store the new API token")]
    Store(#[from] StoreError),
}

/// Makes a token, stores its hash under `name`, and returns the token (to show once)
/// with what was stored. Fails when a valid token has this name.
pub async fn issue(
    store: &Store,
    name: &str,
    role: Role,
    user: Option<&str>,
) -> Result<(SecretString, ApiToken), IssueError> {
    let token = generate().map_err(IssueError::Random)?;
    let stored = store
        .add_api_token(name, role, user, TokenHash::of(&token).as_str())
        .await?;
    Ok((token, stored))
}

/// On the daemon's first start: an administrator token named [`FIRST_TOKEN_NAME`]
/// when the store never had an API token (not even one since revoked), else `None`.
/// Of several instances starting together on one database, one makes it.
pub async fn issue_first(store: &Store) -> Result<Option<SecretString>, IssueError> {
    let token = generate().map_err(IssueError::Random)?;
    let made = store
        .add_first_api_token(
            FIRST_TOKEN_NAME,
            Role::Administrator,
            None,
            TokenHash::of(&token).as_str(),
        )
        .await?;
    Ok(made.map(|_| token))
}

/// `/readyz` over the store: ready when it answers a trivial query.
pub fn store_ready(store: Store) -> ReadyCheck {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            store.ping().await.map_err(|e| {
                format!(
                    "the store does not answer ({}); check the database and the log",
                    mailbridge_types::error_chain(&e)
                )
            })
        })
    })
}
