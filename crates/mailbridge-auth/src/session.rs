//! Access tokens for accounts, end to end: the cache in front, the token endpoint
//! behind, and the refresh-token store on the side.
//!
//! For delegated accounts the rotated refresh token is persisted (durably) before the
//! new access token is handed out, so a crash cannot lose the only valid refresh token.
//! A failure that only a person can fix (expired, revoked, MFA now required, consent
//! withdrawn) marks the account "needs sign-in"; a transient one (network, 5xx,
//! throttling) leaves the stored tokens alone.

use std::future::Future;
use std::sync::Arc;

use mailbridge_types::ErrorClass;
use secrecy::SecretString;

use crate::authority::Authority;
use crate::cache::{CacheKey, RetryPolicy, TokenCache};
use crate::client::{App, TokenClient};
use crate::token::{AuthError, TokenSet};

/// Error of the refresh-token store.
#[derive(Debug, thiserror::Error)]
#[error("token store failed: {0}")]
pub struct StoreFailure(pub String);

/// Where refresh tokens and account sign-in state are kept (the sealed store).
pub trait TokenStore: Send + Sync {
    /// The account's refresh token, if any.
    fn load_refresh_token(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<Option<SecretString>, StoreFailure>> + Send;
    /// Stores the account's (rotated) refresh token durably.
    fn save_refresh_token(
        &self,
        account: &str,
        token: &SecretString,
    ) -> impl Future<Output = Result<(), StoreFailure>> + Send;
    /// Records that the account needs a person to sign in again, and why.
    fn mark_needs_sign_in(
        &self,
        account: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreFailure>> + Send;
    /// Records a successful sign-in or refresh (clears "needs sign-in").
    fn mark_signed_in(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<(), StoreFailure>> + Send;
}

/// How one account gets its tokens.
#[derive(Debug)]
pub struct AccountSignIn {
    /// The account's local name (the store key).
    pub account: String,
    pub app: App,
    pub authority: Authority,
    pub scopes: Vec<String>,
    pub delegated: bool,
}

/// Hands out access tokens for accounts.
#[derive(Debug)]
pub struct Sessions<S> {
    client: TokenClient,
    cache: TokenCache,
    store: Arc<S>,
}

impl<S: TokenStore> Sessions<S> {
    /// Sessions over `client` and `store`.
    pub fn new(client: TokenClient, store: Arc<S>, retry: RetryPolicy) -> Self {
        let cache = TokenCache::new(client.clock().clone(), retry);
        Self {
            client,
            cache,
            store,
        }
    }

    /// The token client.
    pub fn client(&self) -> &TokenClient {
        &self.client
    }

    fn key(sign_in: &AccountSignIn) -> CacheKey {
        let who = if sign_in.delegated {
            sign_in.account.as_str()
        } else {
            "app"
        };
        CacheKey::new(
            &sign_in.authority.to_string(),
            &sign_in.app.client_id,
            who,
            &sign_in.scopes,
        )
    }

    /// A valid access token for the account.
    pub async fn access_token(&self, sign_in: &AccountSignIn) -> Result<SecretString, AuthError> {
        let key = Self::key(sign_in);
        let result = self
            .cache
            .get_or_fetch(&key, || self.request(sign_in))
            .await;
        self.note_failure(sign_in, result).await
    }

    /// A new access token for the account after a resource refused `rejected` with
    /// HTTP 401 although it had not expired by our clock (revoked, the server's clock
    /// ahead, a policy change). Callers refused with the same token together cause one
    /// token request; one whose token was already replaced gets the replacement.
    pub async fn replace_rejected(
        &self,
        sign_in: &AccountSignIn,
        rejected: &SecretString,
    ) -> Result<SecretString, AuthError> {
        let key = Self::key(sign_in);
        let result = self
            .cache
            .replace_rejected(&key, rejected, || self.request(sign_in))
            .await;
        self.note_failure(sign_in, result).await
    }

    /// One token request: client credentials, or the stored refresh token.
    async fn request(&self, sign_in: &AccountSignIn) -> Result<TokenSet, AuthError> {
        if sign_in.delegated {
            self.refresh(sign_in).await
        } else {
            self.client
                .client_credentials(&sign_in.app, &sign_in.authority, &sign_in.scopes)
                .await
        }
    }

    /// Marks a delegated account "needs sign-in" when `result` says only a person can
    /// fix it.
    async fn note_failure(
        &self,
        sign_in: &AccountSignIn,
        result: Result<SecretString, AuthError>,
    ) -> Result<SecretString, AuthError> {
        if let Err(e) = &result
            && sign_in.delegated
            && e.class() == ErrorClass::NeedsSignIn
        {
            self.store
                .mark_needs_sign_in(&sign_in.account, &e.to_string())
                .await
                .map_err(|f| AuthError::Protocol(f.to_string()))?;
        }
        result
    }

    async fn refresh(&self, sign_in: &AccountSignIn) -> Result<TokenSet, AuthError> {
        let Some(refresh_token) = self
            .store
            .load_refresh_token(&sign_in.account)
            .await
            .map_err(|f| AuthError::Protocol(f.to_string()))?
        else {
            return Err(AuthError::Interaction(format!(
                "account {} has never signed in: run `mailbridge auth login {}`",
                sign_in.account, sign_in.account
            )));
        };
        let set = self
            .client
            .refresh(
                &sign_in.app,
                &sign_in.authority,
                &refresh_token,
                &sign_in.scopes,
            )
            .await?;
        self.persist(&sign_in.account, &set).await?;
        Ok(set)
    }

    /// Stores what a sign-in or refresh returned (the rotated refresh token first) and
    /// primes the cache. Call it after an interactive sign-in.
    pub async fn persist(&self, account: &str, set: &TokenSet) -> Result<(), AuthError> {
        if let Some(rt) = &set.refresh_token {
            self.store
                .save_refresh_token(account, rt)
                .await
                .map_err(|f| AuthError::Protocol(f.to_string()))?;
        }
        self.store
            .mark_signed_in(account)
            .await
            .map_err(|f| AuthError::Protocol(f.to_string()))
    }

    /// Forgets cached tokens of the account (after sign-out or a rejected token).
    pub async fn forget(&self, sign_in: &AccountSignIn) {
        self.cache.invalidate(&Self::key(sign_in)).await;
    }
}
