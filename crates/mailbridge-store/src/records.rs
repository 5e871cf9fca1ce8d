//! Apps, accounts and user-defined providers, kept as their configuration documents
//! (JSON of the `mailbridge-types` configuration types; secrets are never in them),
//! and the checkpoint where each account folder's download stopped.

use mailbridge_types::config::{AccountConfig, AppConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row as _;

use crate::store::{Store, StoreError, unix};

fn encode<T: Serialize>(id: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(id: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

impl Store {
    /// Adds or replaces an app.
    pub async fn put_app(&self, app: &AppConfig) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO apps (name, config, updated_at) VALUES (?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(&app.name)
        .bind(encode(&format!("app:{}", app.name), app)?)
        .bind(unix(self.now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every app, by name.
    pub async fn apps(&self) -> Result<Vec<AppConfig>, StoreError> {
        let rows = sqlx::query("SELECT name, config FROM apps ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                decode(&format!("app:{name}"), &r.try_get::<String, _>("config")?)
            })
            .collect()
    }

    /// Removes an app; true when it existed. Its client secret goes with it.
    pub async fn remove_app(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM apps WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM secrets WHERE id = ?")
            .bind(format!("app:{name}:client-secret"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds or replaces an account (by name).
    pub async fn put_account(&self, account: &AccountConfig) -> Result<(), StoreError> {
        let now = unix(self.now());
        sqlx::query(
            "INSERT INTO accounts (name, address, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET address = excluded.address, config = excluded.config,
               updated_at = excluded.updated_at",
        )
        .bind(&account.name)
        .bind(&account.address)
        .bind(encode(&format!("account:{}", account.name), account)?)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<AccountConfig>, StoreError> {
        let rows = sqlx::query("SELECT name, config FROM accounts ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                decode(
                    &format!("account:{name}"),
                    &r.try_get::<String, _>("config")?,
                )
            })
            .collect()
    }

    /// The account with this name or address.
    pub async fn account(
        &self,
        name_or_address: &str,
    ) -> Result<Option<AccountConfig>, StoreError> {
        let row = sqlx::query(
            "SELECT name, config FROM accounts WHERE name = ? OR address = ? COLLATE NOCASE
             ORDER BY name = ? DESC LIMIT 1",
        )
        .bind(name_or_address)
        .bind(name_or_address)
        .bind(name_or_address)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let name: String = r.try_get("name")?;
            decode(
                &format!("account:{name}"),
                &r.try_get::<String, _>("config")?,
            )
        })
        .transpose()
    }

    /// Removes an account with everything kept for it (password, refresh token,
    /// sign-in state, checkpoints), in one transaction; true when it existed.
    pub async fn remove_account(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM accounts WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM secrets WHERE id LIKE ? ESCAPE '\\'")
            .bind(format!("account:{}:%", like_escape(name)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM account_state WHERE account = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM checkpoints WHERE account = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds or replaces a user-defined provider (its JSON document).
    pub async fn put_provider<T: Serialize>(
        &self,
        id: &str,
        provider: &T,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO providers (id, config, updated_at) VALUES (?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(encode(&format!("provider:{id}"), provider)?)
        .bind(unix(self.now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every user-defined provider, by id.
    pub async fn providers<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let rows = sqlx::query("SELECT id, config FROM providers ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                decode(
                    &format!("provider:{id}"),
                    &r.try_get::<String, _>("config")?,
                )
            })
            .collect()
    }

    /// Removes a user-defined provider; true when it existed. Callers check first
    /// that no account uses it.
    pub async fn remove_provider(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM providers WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores where the download of an account's folder stopped. Durable on return.
    pub async fn set_checkpoint<T: Serialize>(
        &self,
        account: &str,
        folder: &str,
        checkpoint: &T,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (account, folder, checkpoint, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(account, folder) DO UPDATE SET checkpoint = excluded.checkpoint,
               updated_at = excluded.updated_at",
        )
        .bind(account)
        .bind(folder)
        .bind(encode(
            &format!("checkpoint:{account}:{folder}"),
            checkpoint,
        )?)
        .bind(unix(self.now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Where the download of an account's folder stopped; `None` before the first.
    pub async fn checkpoint<T: DeserializeOwned>(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT checkpoint FROM checkpoints WHERE account = ? AND folder = ?",
        )
        .bind(account)
        .bind(folder)
        .fetch_optional(&self.pool)
        .await?;
        text.map(|t| decode(&format!("checkpoint:{account}:{folder}"), &t))
            .transpose()
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
