//! The store as the refresh-token store of `mailbridge-auth`.

use mailbridge_auth::session::{StoreFailure, TokenStore};
use secrecy::SecretString;

use crate::store::{AccountState, SecretKind, Store};

/// Store id of an account's refresh token.
pub fn refresh_token_id(account: &str) -> String {
    format!("account:{account}:refresh-token")
}

fn failure(e: impl std::error::Error + 'static) -> StoreFailure {
    StoreFailure(mailbridge_types::error_chain(&e))
}

impl TokenStore for Store {
    async fn load_refresh_token(
        &self,
        account: &str,
    ) -> Result<Option<SecretString>, StoreFailure> {
        let id = refresh_token_id(account);
        let token = self.get_secret(&id).await.map_err(failure)?;
        if token.is_some() {
            self.touch_secret(&id, self.now()).await.map_err(failure)?;
        }
        Ok(token)
    }

    async fn save_refresh_token(
        &self,
        account: &str,
        token: &SecretString,
    ) -> Result<(), StoreFailure> {
        let id = refresh_token_id(account);
        self.put_secret(&id, SecretKind::RefreshToken, token, None, self.now())
            .await
            .map_err(failure)?;
        self.touch_secret(&id, self.now()).await.map_err(failure)
    }

    async fn mark_needs_sign_in(&self, account: &str, reason: &str) -> Result<(), StoreFailure> {
        self.set_account_state(
            account,
            AccountState::NeedsSignIn {
                reason: reason.to_owned(),
            },
        )
        .await
        .map_err(failure)
    }

    async fn mark_signed_in(&self, account: &str) -> Result<(), StoreFailure> {
        self.set_account_state(account, AccountState::SignedIn)
            .await
            .map_err(failure)
    }
}
