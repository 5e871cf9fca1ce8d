//! Apps, accounts and user-defined providers, kept as their configuration documents
//! (JSON of the `mailbridge-types` configuration types; secrets are never in them),
//! each under a stable id ([`crate::ids`]) and a unique name; the checkpoint where
//! each account folder's download stopped; and [`Store::import`], which writes a batch
//! of them with their sealed secrets all or nothing.
//!
//! Methods by name serve the CLI; methods by id (`*_by_id`, [`Store::rename_account`])
//! serve the daemon, whose API names records by id.

use mailbridge_types::config::{AccountConfig, AppConfig};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::{AccountId, AppId, ProviderId};
use crate::store::{PUT_SECRET, SecretKind, Store, StoreError, on_db, unix};

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

/// A batch for [`Store::import`]: written in one transaction, all or nothing.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Import {
    pub apps: Vec<AppConfig>,
    pub accounts: Vec<AccountConfig>,
    /// User-defined providers: name and JSON document.
    pub providers: Vec<(String, serde_json::Value)>,
    pub secrets: Vec<ImportSecret>,
    /// Overwrite apps, accounts and providers of the same name (keeping their ids);
    /// without it, a name the store has already fails the whole import.
    pub replace: bool,
}

/// A secret of an [`Import`], sealed when written.
#[derive(Debug)]
pub struct ImportSecret {
    pub id: String,
    pub kind: SecretKind,
    pub value: SecretString,
    pub expires_at: Option<OffsetDateTime>,
}

const UPSERT_APP: &str = "INSERT INTO apps (id, name, config, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at";
const INSERT_APP: &str = "INSERT INTO apps (id, name, config, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO NOTHING RETURNING id";

const UPSERT_ACCOUNT: &str =
    "INSERT INTO accounts (id, name, address, config, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (name) DO UPDATE SET address = excluded.address, config = excluded.config,
       updated_at = excluded.updated_at";
/// As [`UPSERT_ACCOUNT`] but only over an account known by name alone (no row comes
/// back when a stored account has the name).
const INSERT_ACCOUNT: &str =
    "INSERT INTO accounts (id, name, address, config, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (name) DO UPDATE SET address = excluded.address, config = excluded.config,
       updated_at = excluded.updated_at
     WHERE accounts.config IS NULL
     RETURNING id";

const UPSERT_PROVIDER: &str =
    "INSERT INTO providers (id, name, config, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at";
const INSERT_PROVIDER: &str =
    "INSERT INTO providers (id, name, config, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO NOTHING RETURNING id";

impl Store {
    /// Adds or replaces an app (by name; a replaced app keeps its id).
    pub async fn put_app(&self, app: &AppConfig) -> Result<(), StoreError> {
        let config = encode(&format!("app:{}", app.name), app)?;
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            sqlx::query(UPSERT_APP)
                .bind(AppId::generate().as_uuid())
                .bind(&app.name)
                .bind(config)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The id of the app with this name.
    pub async fn app_id(&self, name: &str) -> Result<Option<AppId>, StoreError> {
        let id: Option<Uuid> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM apps WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(id.map(AppId::from_uuid))
    }

    /// Every app, by name.
    pub async fn apps(&self) -> Result<Vec<AppConfig>, StoreError> {
        Ok(self
            .apps_with_ids()
            .await?
            .into_iter()
            .map(|(_, app)| app)
            .collect())
    }

    /// Every app with its id, by name.
    pub async fn apps_with_ids(&self) -> Result<Vec<(AppId, AppConfig)>, StoreError> {
        let rows: Vec<(Uuid, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, config FROM apps ORDER BY name")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, name, config)| {
                Ok((
                    AppId::from_uuid(id),
                    decode(&format!("app:{name}"), &config)?,
                ))
            })
            .collect()
    }

    /// Removes an app; true when it existed. Its client secret goes with it.
    pub async fn remove_app(&self, name: &str) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("DELETE FROM apps WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM secrets WHERE id = $1")
                .bind(format!("app:{name}:client-secret"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done
        });
        Ok(done > 0)
    }

    /// Adds or replaces an account (by name; a replaced account keeps its id, and so
    /// does an account known by name before, e.g. one from the configuration file
    /// that signed in).
    pub async fn put_account(&self, account: &AccountConfig) -> Result<(), StoreError> {
        let config = encode(&format!("account:{}", account.name), account)?;
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            sqlx::query(UPSERT_ACCOUNT)
                .bind(AccountId::generate().as_uuid())
                .bind(&account.name)
                .bind(&account.address)
                .bind(config)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The id of the account with this name: a stored account, or one known by name
    /// only (sign-in state or checkpoints kept for an account of the configuration
    /// file).
    pub async fn account_id(&self, name: &str) -> Result<Option<AccountId>, StoreError> {
        let id: Option<Uuid> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(id.map(AccountId::from_uuid))
    }

    /// The id of the account with this name, given one if the store does not know the
    /// name yet (an account of the configuration file).
    pub(crate) async fn account_id_or_register(&self, name: &str) -> Result<AccountId, StoreError> {
        let now = unix(self.now());
        let id: Uuid = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO accounts (id, name, address, config, created_at, updated_at)
                 VALUES ($1, $2, '', NULL, $3, $3)
                 ON CONFLICT (name) DO UPDATE SET name = excluded.name
                 RETURNING id",
            )
            .bind(AccountId::generate().as_uuid())
            .bind(name)
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        Ok(AccountId::from_uuid(id))
    }

    /// The user account `id` belongs to (`None`: nobody's, or no such account).
    pub async fn account_owner(&self, id: AccountId) -> Result<Option<String>, StoreError> {
        let owner: Option<Option<String>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT owner FROM accounts WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        Ok(owner.flatten())
    }

    /// Every account that belongs to a user, with its owner.
    pub async fn account_owners(
        &self,
    ) -> Result<std::collections::HashMap<AccountId, String>, StoreError> {
        let rows: Vec<(Uuid, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, owner FROM accounts WHERE owner IS NOT NULL")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, owner)| (AccountId::from_uuid(id), owner))
            .collect())
    }

    /// Gives account `id` to `owner` (`None`: to nobody); false when there is no such
    /// account.
    pub async fn set_account_owner(
        &self,
        id: AccountId,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = unix(self.now());
        let done = on_db!(&self.db, pool => {
            sqlx::query("UPDATE accounts SET owner = $1, updated_at = $2 WHERE id = $3")
                .bind(owner)
                .bind(now)
                .bind(id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Every stored account, by name.
    pub async fn accounts(&self) -> Result<Vec<AccountConfig>, StoreError> {
        Ok(self
            .accounts_with_ids()
            .await?
            .into_iter()
            .map(|(_, account)| account)
            .collect())
    }

    /// Every stored account with its id, by name.
    pub async fn accounts_with_ids(&self) -> Result<Vec<(AccountId, AccountConfig)>, StoreError> {
        let rows: Vec<(Uuid, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, name, config FROM accounts WHERE config IS NOT NULL ORDER BY name",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, name, config)| {
                Ok((
                    AccountId::from_uuid(id),
                    decode(&format!("account:{name}"), &config)?,
                ))
            })
            .collect()
    }

    /// The stored account with this name or address (any case).
    pub async fn account(
        &self,
        name_or_address: &str,
    ) -> Result<Option<AccountConfig>, StoreError> {
        let row: Option<(String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, config FROM accounts
                 WHERE config IS NOT NULL AND (name = $1 OR lower(address) = lower($1))
                 ORDER BY (name = $1) DESC, name LIMIT 1",
            )
            .bind(name_or_address)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(name, config)| decode(&format!("account:{name}"), &config))
            .transpose()
    }

    /// The stored account with this id.
    pub async fn account_by_id(&self, id: AccountId) -> Result<Option<AccountConfig>, StoreError> {
        let row: Option<(String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, config FROM accounts WHERE id = $1 AND config IS NOT NULL",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        row.map(|(name, config)| decode(&format!("account:{name}"), &config))
            .transpose()
    }

    /// Gives the stored account `id` the name `new_name`, in one transaction: its id,
    /// sign-in state and checkpoints stay; its secrets (`account:NAME:...`) are sealed
    /// again under their new ids. Fails with [`StoreError::Exists`] when another
    /// account has the name.
    pub async fn rename_account(&self, id: AccountId, new_name: &str) -> Result<(), StoreError> {
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<(String, String)> = sqlx::query_as(
                "SELECT name, config FROM accounts WHERE id = $1 AND config IS NOT NULL",
            )
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let Some((old_name, config)) = row else {
                return Err(StoreError::NotFound { kind: "account", id: id.to_string() });
            };
            if old_name != new_name {
                let taken: Option<Uuid> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
                    .bind(new_name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Exists { kind: "account", name: new_name.to_owned() });
                }
                let mut account: AccountConfig = decode(&format!("account:{old_name}"), &config)?;
                account.name = new_name.to_owned();
                sqlx::query("UPDATE accounts SET name = $1, config = $2, updated_at = $3 WHERE id = $4")
                    .bind(new_name)
                    .bind(encode(&format!("account:{new_name}"), &account)?)
                    .bind(now)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                let old_prefix = format!("account:{old_name}:");
                let secrets = sqlx::query(
                    "SELECT id, sealed FROM secrets WHERE id LIKE $1 ESCAPE '\\'",
                )
                .bind(format!("{}%", like_escape(&old_prefix)))
                .fetch_all(&mut *tx)
                .await?;
                for row in secrets {
                    let old_id: String = row.try_get("id")?;
                    let sealed: Vec<u8> = row.try_get("sealed")?;
                    let Some(rest) = old_id.strip_prefix(&old_prefix) else { continue };
                    let new_id = format!("account:{new_name}:{rest}");
                    let plain = zeroize::Zeroizing::new(self.open_sealed(&old_id, &sealed)?);
                    sqlx::query("UPDATE secrets SET id = $1, sealed = $2 WHERE id = $3")
                        .bind(&new_id)
                        .bind(self.seal_bytes(&new_id, &plain)?)
                        .bind(&old_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Removes an account with everything kept for it (password, refresh token,
    /// sign-in state, checkpoints), in one transaction; true when it was stored.
    pub async fn remove_account(&self, name: &str) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("DELETE FROM accounts WHERE name = $1 AND config IS NOT NULL")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // An account known by name only (its state and checkpoints) goes too.
            sqlx::query("DELETE FROM accounts WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM secrets WHERE id LIKE $1 ESCAPE '\\'")
                .bind(format!("account:{}:%", like_escape(name)))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done
        });
        Ok(done > 0)
    }

    /// Adds or replaces a user-defined provider (its JSON document) under its name
    /// `id`; a replaced provider keeps its stable id ([`Store::provider_id`]).
    pub async fn put_provider<T: Serialize>(
        &self,
        id: &str,
        provider: &T,
    ) -> Result<(), StoreError> {
        let config = encode(&format!("provider:{id}"), provider)?;
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            sqlx::query(UPSERT_PROVIDER)
                .bind(ProviderId::generate().as_uuid())
                .bind(id)
                .bind(config)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The stable id of the user-defined provider with this name.
    pub async fn provider_id(&self, name: &str) -> Result<Option<ProviderId>, StoreError> {
        let id: Option<Uuid> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM providers WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(id.map(ProviderId::from_uuid))
    }

    /// Every user-defined provider, by name.
    pub async fn providers<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        Ok(self
            .providers_with_ids()
            .await?
            .into_iter()
            .map(|(_, provider)| provider)
            .collect())
    }

    /// Every user-defined provider with its stable id, by name.
    pub async fn providers_with_ids<T: DeserializeOwned>(
        &self,
    ) -> Result<Vec<(ProviderId, T)>, StoreError> {
        let rows: Vec<(Uuid, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, config FROM providers ORDER BY name")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, name, config)| {
                Ok((
                    ProviderId::from_uuid(id),
                    decode(&format!("provider:{name}"), &config)?,
                ))
            })
            .collect()
    }

    /// Removes a user-defined provider; true when it existed. Callers check first
    /// that no account uses it.
    pub async fn remove_provider(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM providers WHERE name = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Stores where the download of an account's folder stopped (account by name; one
    /// of the configuration file gets an id here). Durable on return.
    pub async fn set_checkpoint<T: Serialize>(
        &self,
        account: &str,
        folder: &str,
        checkpoint: &T,
    ) -> Result<(), StoreError> {
        let id = self.account_id_or_register(account).await?;
        self.set_checkpoint_by_id(id, folder, checkpoint).await
    }

    /// Stores where the download of the folder of account `id` stopped. Durable on
    /// return.
    pub async fn set_checkpoint_by_id<T: Serialize>(
        &self,
        account: AccountId,
        folder: &str,
        checkpoint: &T,
    ) -> Result<(), StoreError> {
        let text = encode(&format!("checkpoint:{account}:{folder}"), checkpoint)?;
        let now = unix(self.now());
        let done = on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO checkpoints (account_id, folder, checkpoint, updated_at)
                 SELECT id, $2, $3, $4 FROM accounts WHERE id = $1
                 ON CONFLICT (account_id, folder) DO UPDATE SET checkpoint = excluded.checkpoint,
                   updated_at = excluded.updated_at",
            )
            .bind(account.as_uuid())
            .bind(folder)
            .bind(text)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound {
                kind: "account",
                id: account.to_string(),
            });
        }
        Ok(())
    }

    /// Where the download of an account's folder stopped (account by name); `None`
    /// before the first.
    pub async fn checkpoint<T: DeserializeOwned>(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.account_id(account).await? {
            Some(id) => self.checkpoint_by_id(id, folder).await,
            None => Ok(None),
        }
    }

    /// Where the download of the folder of account `id` stopped; `None` before the
    /// first.
    pub async fn checkpoint_by_id<T: DeserializeOwned>(
        &self,
        account: AccountId,
        folder: &str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT checkpoint FROM checkpoints WHERE account_id = $1 AND folder = $2",
            )
            .bind(account.as_uuid())
            .bind(folder)
            .fetch_optional(pool)
            .await?
        });
        text.map(|t| decode(&format!("checkpoint:{account}:{folder}"), &t))
            .transpose()
    }

    /// Writes a batch of apps, accounts, providers and sealed secrets in one
    /// transaction: when any part fails (a name the store has already without
    /// [`Import::replace`], a database error), nothing of the batch is kept.
    pub async fn import(&self, batch: &Import) -> Result<(), StoreError> {
        // Encode and seal first: a bad record fails before the database is touched.
        let apps = batch
            .apps
            .iter()
            .map(|a| Ok((a, encode(&format!("app:{}", a.name), a)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let accounts = batch
            .accounts
            .iter()
            .map(|a| Ok((a, encode(&format!("account:{}", a.name), a)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let providers = batch
            .providers
            .iter()
            .map(|(name, p)| Ok((name, encode(&format!("provider:{name}"), p)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let secrets = batch
            .secrets
            .iter()
            .map(|s| Ok((s, self.seal_secret(&s.id, &s.value)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for (app, config) in apps {
                let sql = if batch.replace { UPSERT_APP } else { INSERT_APP };
                let written = sqlx::query(sql)
                    .bind(AppId::generate().as_uuid())
                    .bind(&app.name)
                    .bind(config)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if written == 0 {
                    return Err(StoreError::Exists { kind: "app", name: app.name.clone() });
                }
            }
            for (account, config) in accounts {
                let sql = if batch.replace { UPSERT_ACCOUNT } else { INSERT_ACCOUNT };
                let written = sqlx::query(sql)
                    .bind(AccountId::generate().as_uuid())
                    .bind(&account.name)
                    .bind(&account.address)
                    .bind(config)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if written == 0 {
                    return Err(StoreError::Exists { kind: "account", name: account.name.clone() });
                }
            }
            for (name, config) in providers {
                let sql = if batch.replace { UPSERT_PROVIDER } else { INSERT_PROVIDER };
                let written = sqlx::query(sql)
                    .bind(ProviderId::generate().as_uuid())
                    .bind(name)
                    .bind(config)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if written == 0 {
                    return Err(StoreError::Exists { kind: "provider", name: name.clone() });
                }
            }
            for (secret, sealed) in secrets {
                sqlx::query(PUT_SECRET)
                    .bind(&secret.id)
                    .bind(secret.kind.as_str())
                    .bind(sealed)
                    .bind(now)
                    .bind(secret.expires_at.map(unix))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
