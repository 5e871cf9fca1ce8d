//! API tokens of the daemon's HTTP API: a name, a role, an optional user, and the
//! token's SHA-256 (64 hex digits; the token itself is never stored, it is shown once
//! when it is made). A revoked token keeps its row with `revoked_at`, so the listing
//! says when; names are unique among tokens not revoked. Tables:
//! `migrations/sqlite/0005_api_tokens.sql`, `migrations/postgres/0002_api_tokens.sql`.
//!
//! The hash is computed by the caller (`mailbridge-server`'s `TokenHash`): the store
//! only keeps and compares it.

use mailbridge_types::access::Role;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError, on_db, unix};

/// An API token as stored (without its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its stable id.
    pub id: Uuid,
    /// Its name, unique among tokens not revoked.
    pub name: String,
    pub role: Role,
    /// The user it acts for, if any.
    pub user: Option<String>,
    pub created_at: OffsetDateTime,
    /// When it was revoked; `None` while it is valid.
    pub revoked_at: Option<OffsetDateTime>,
}

type Row = (Uuid, String, String, Option<String>, i64, Option<i64>);

/// The columns of a [`Row`], in order (in every query below).
macro_rules! columns {
    () => {
        "id, name, role, user_name, created_at, revoked_at"
    };
}

fn from_row((id, name, role, user, created, revoked): Row) -> Result<ApiToken, StoreError> {
    let role = Role::parse(&role).ok_or_else(|| StoreError::Record {
        id: format!("api-token:{id}"),
        source: serde::de::Error::custom(format!("unknown role {role:?}")),
    })?;
    Ok(ApiToken {
        id,
        name,
        role,
        user,
        created_at: crate::store::from_unix(created),
        revoked_at: revoked.map(crate::store::from_unix),
    })
}

/// Inserts a token unless a valid token has its name: `$1` id, `$2` name, `$3` role,
/// `$4` user, `$5` SHA-256, `$6` now. Returns the id when inserted.
const INSERT: &str = "INSERT INTO api_tokens (id, name, role, user_name, sha256, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
     RETURNING id";

/// As [`INSERT`], but only into a store that never had a token.
const INSERT_FIRST: &str = "INSERT INTO api_tokens (id, name, role, user_name, sha256, created_at)
     SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM api_tokens)
     ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
     RETURNING id";

impl Store {
    /// Stores a new API token by its SHA-256 (`sha256`, 64 hex digits). Fails with
    /// [`StoreError::Exists`] when a token not revoked has this name.
    pub async fn add_api_token(
        &self,
        name: &str,
        role: Role,
        user: Option<&str>,
        sha256: &str,
    ) -> Result<ApiToken, StoreError> {
        self.insert_api_token(INSERT, name, role, user, sha256)
            .await?
            .ok_or_else(|| StoreError::Exists {
                kind: "API token",
                name: name.to_owned(),
            })
    }

    /// Stores the token as [`Store::add_api_token`] only when the store never had an
    /// API token (not even a revoked one); `None` otherwise. Atomic: of several
    /// instances starting together on one database, one stores its token.
    pub async fn add_first_api_token(
        &self,
        name: &str,
        role: Role,
        user: Option<&str>,
        sha256: &str,
    ) -> Result<Option<ApiToken>, StoreError> {
        self.insert_api_token(INSERT_FIRST, name, role, user, sha256)
            .await
    }

    async fn insert_api_token(
        &self,
        sql: &'static str,
        name: &str,
        role: Role,
        user: Option<&str>,
        sha256: &str,
    ) -> Result<Option<ApiToken>, StoreError> {
        let now = self.now();
        let id: Option<Uuid> = on_db!(&self.db, pool => {
            sqlx::query_scalar(sql)
                .bind(Uuid::new_v4())
                .bind(name)
                .bind(role.as_str())
                .bind(user)
                .bind(sha256)
                .bind(unix(now))
                .fetch_optional(pool)
                .await?
        });
        Ok(id.map(|id| ApiToken {
            id,
            name: name.to_owned(),
            role,
            user: user.map(str::to_owned),
            created_at: crate::store::from_unix(unix(now)),
            revoked_at: None,
        }))
    }

    /// The valid (not revoked) token with this SHA-256.
    pub async fn find_api_token(&self, sha256: &str) -> Result<Option<ApiToken>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM api_tokens WHERE sha256 = $1 AND revoked_at IS NULL"
        );
        let row: Option<Row> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).bind(sha256).fetch_optional(pool).await?
        });
        row.map(from_row).transpose()
    }

    /// Every token, revoked ones too, by name then age (no hashes).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM api_tokens ORDER BY name, created_at, id"
        );
        let rows: Vec<Row> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await?
        });
        rows.into_iter().map(from_row).collect()
    }

    /// The number of valid (not revoked) tokens.
    pub async fn api_token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL")
                .fetch_one(pool)
                .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Revokes the valid token named `name_or_id`: by name, else (when no valid token
    /// has that name and it is a UUID) by id. From then on [`Store::find_api_token`]
    /// does not find it. Returns the token as revoked; [`StoreError::NotFound`] when
    /// no valid token has this name or id.
    pub async fn revoke_api_token(&self, name_or_id: &str) -> Result<ApiToken, StoreError> {
        const BY_NAME: &str = concat!(
            "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND name = $2 RETURNING ",
            columns!()
        );
        const BY_ID: &str = concat!(
            "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND id = $2 RETURNING ",
            columns!()
        );
        let now = unix(self.now());
        let id = Uuid::parse_str(name_or_id).ok();
        let row: Option<Row> = on_db!(&self.db, pool => {
            match sqlx::query_as(BY_NAME)
                .bind(now)
                .bind(name_or_id)
                .fetch_optional(pool)
                .await?
            {
                Some(row) => Some(row),
                None => match id {
                    Some(id) => sqlx::query_as(BY_ID).bind(now).bind(id).fetch_optional(pool).await?,
                    None => None,
                },
            }
        });
        match row {
            Some(row) => from_row(row),
            None => Err(StoreError::NotFound {
                kind: "valid API token",
                id: name_or_id.to_owned(),
            }),
        }
    }
}
