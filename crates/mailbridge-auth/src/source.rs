//! Token sources: what a transport holds instead of a token.
//!
//! A Graph or EWS mailbox (and an SMTP, IMAP or POP3 connection when it signs in)
//! asks its [`TokenSource`] for a token before each request, so a long-lived object
//! keeps working after the first token has expired. When the server refuses a token
//! with HTTP 401 all the same (revoked, the server's clock ahead of ours, a policy
//! change), the transport hands it back through
//! [`TokenSource::refresh_after_rejection`] and retries once with the new one.
//!
//! - [`AccountTokens`]: an account's tokens from [`Sessions`]: cached until 5
//!   minutes before expiry, single flight, refresh-token rotation persisted, "needs
//!   sign-in" marked; a rejected token is replaced by one token request however many
//!   requests were refused with it together.
//! - [`SecretString`] itself is a fixed source (a token from `mailbridge auth token`,
//!   or a test's): handed out as is; it cannot be refreshed, so a 401 stays the error.
//!
//! No source shows a token in its `Debug`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use secrecy::SecretString;

use crate::session::{AccountSignIn, Sessions, TokenStore};
use crate::token::AuthError;

/// What a [`TokenSource`] method returns: a boxed future, so that sources can be
/// trait objects (`Arc<dyn TokenSource>`).
pub type TokenFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AuthError>> + Send + 'a>>;

/// Where a transport gets its access token, each time it needs one.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token to present now (cached until near its expiry, then renewed).
    fn token(&self) -> TokenFuture<'_, SecretString>;

    /// A new token after the server refused `rejected` with HTTP 401; `None` when this
    /// source cannot get another (a fixed token): the refusal is then the error.
    /// Sources share the work: callers refused with the same token together cause
    /// one token request.
    fn refresh_after_rejection<'a>(
        &'a self,
        rejected: &'a SecretString,
    ) -> TokenFuture<'a, Option<SecretString>>;
}

/// A fixed token: handed out as is, never refreshed.
impl TokenSource for SecretString {
    fn token(&self) -> TokenFuture<'_, SecretString> {
        let token = self.clone();
        Box::pin(async move { Ok(token) })
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        _rejected: &'a SecretString,
    ) -> TokenFuture<'a, Option<SecretString>> {
        Box::pin(async { Ok(None) })
    }
}

/// A shared source is a source (so `&Arc<dyn TokenSource>` is taken where a
/// `&dyn TokenSource` is asked for).
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn token(&self) -> TokenFuture<'_, SecretString> {
        (**self).token()
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        rejected: &'a SecretString,
    ) -> TokenFuture<'a, Option<SecretString>> {
        (**self).refresh_after_rejection(rejected)
    }
}

/// A fixed token as a shared source (for callers that only have a token).
pub fn fixed(token: SecretString) -> Arc<dyn TokenSource> {
    Arc::new(token)
}

/// An account's tokens, from shared [`Sessions`] (whose cache outlives any one
/// mailbox, so every transport of the account shares one token per resource).
pub struct AccountTokens<S> {
    sessions: Arc<Sessions<S>>,
    sign_in: AccountSignIn,
}

impl<S> AccountTokens<S> {
    /// The tokens of `sign_in` through `sessions`.
    pub fn new(sessions: Arc<Sessions<S>>, sign_in: AccountSignIn) -> Self {
        Self { sessions, sign_in }
    }

    /// How the account signs in.
    pub fn sign_in(&self) -> &AccountSignIn {
        &self.sign_in
    }
}

impl<S> std::fmt::Debug for AccountTokens<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountTokens")
            .field("account", &self.sign_in.account)
            .field("client_id", &self.sign_in.app.client_id)
            .field("scopes", &self.sign_in.scopes)
            .field("delegated", &self.sign_in.delegated)
            .finish_non_exhaustive()
    }
}

impl<S: TokenStore + 'static> TokenSource for AccountTokens<S> {
    fn token(&self) -> TokenFuture<'_, SecretString> {
        Box::pin(self.sessions.access_token(&self.sign_in))
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        rejected: &'a SecretString,
    ) -> TokenFuture<'a, Option<SecretString>> {
        Box::pin(async move {
            self.sessions
                .replace_rejected(&self.sign_in, rejected)
                .await
                .map(Some)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{Authority, TenantSegment};
    use crate::cache::RetryPolicy;
    use crate::client::{App, HttpOptions, TokenClient};
    use crate::credential::ClientCredential;
    use crate::session::StoreFailure;
    use secrecy::ExposeSecret;

    struct NoStore;

    impl TokenStore for NoStore {
        async fn load_refresh_token(&self, _: &str) -> Result<Option<SecretString>, StoreFailure> {
            Ok(None)
        }
        async fn save_refresh_token(&self, _: &str, _: &SecretString) -> Result<(), StoreFailure> {
            Ok(())
        }
        async fn mark_needs_sign_in(&self, _: &str, _: &str) -> Result<(), StoreFailure> {
            Ok(())
        }
        async fn mark_signed_in(&self, _: &str) -> Result<(), StoreFailure> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_fixed_token_is_handed_out_as_is_and_never_replaced() {
        let source = fixed(SecretString::from("eyJ.fixed-token-value"));
        assert_eq!(
            source.token().await.unwrap().expose_secret(),
            "eyJ.fixed-token-value"
        );
        let rejected = SecretString::from("eyJ.fixed-token-value");
        assert!(
            source
                .refresh_after_rejection(&rejected)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!format!("{source:?}").contains("fixed-token-value"));
    }

    #[test]
    fn account_tokens_show_the_account_and_never_a_secret() {
        let sessions = Sessions::new(
            TokenClient::new(&HttpOptions::default()).unwrap(),
            Arc::new(NoStore),
            RetryPolicy::default(),
        );
        let tokens = AccountTokens::new(
            Arc::new(sessions),
            AccountSignIn {
                account: "helpdesk".into(),
                app: App {
                    client_id: "6731de76-14a6-49ae-97bc-6eba6914391e".into(),
                    credential: ClientCredential::Secret(SecretString::from("app-secret-value")),
                },
                authority: Authority::new(
                    "https://login.microsoftonline.com",
                    TenantSegment::parse("contoso.example").unwrap(),
                )
                .unwrap(),
                scopes: vec!["https://graph.microsoft.com/.default".into()],
                delegated: false,
            },
        );
        let shown = format!("{tokens:?}");
        assert!(shown.contains("helpdesk"), "{shown}");
        assert!(!shown.contains("app-secret-value"), "{shown}");
    }
}
